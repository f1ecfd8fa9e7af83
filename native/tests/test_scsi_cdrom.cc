// The DVD-ROM target's commands, byte for byte against SPC-4 / MMC-6, over a small image
// of 16 patterned 2048-byte sectors; hostile CDBs. Media handling and saved state are in
// test_scsi_cdrom_media.cc; the virtio-scsi path in test_virtio_scsi.cc.
#include <string>
#include <vector>

#include "devices/scsi/cdrom.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"
#include "tests/scsi_test_helpers.h"

using namespace berth;
using namespace berth::devices::scsi;
using berth::test::run_cdb;
using berth::test::sense_is;
using berth::test::rvh::TempDir;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kSectors = 16;

// A drive with the 16-sector image inserted and the insert's unit attention consumed.
struct Loaded {
  TempDir dir;
  ScsiCdrom drive{"SN-0001"};
  Loaded() {
    test::write_iso(dir.file("a.iso"), kSectors);
    drive.insert(dir.file("a.iso"));
    CHECK(sense_is(run_cdb(drive, {0, 0, 0, 0, 0, 0}), 6, 0x28, 0));
    CHECK(run_cdb(drive, {0, 0, 0, 0, 0, 0}).ok());
  }
};

bool equal(const Bytes& got, const Bytes& want) { return got == want; }

Bytes slice(const Bytes& b, size_t at, size_t n) { return Bytes(b.begin() + at, b.begin() + at + n); }

}  // namespace

TEST(scsi_fixed_sense_format) {
  uint8_t s[kFixedSenseBytes];
  write_fixed_sense({3, 0x11, 0x00}, s);
  CHECK(equal(Bytes(s, s + 18), Bytes{0x70, 0, 3, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0}));
  CHECK_EQ(cdb_length(0x00), 6u);
  CHECK_EQ(cdb_length(0x28), 10u);
  CHECK_EQ(cdb_length(0x5a), 10u);
  CHECK_EQ(cdb_length(0x88), 16u);
  CHECK_EQ(cdb_length(0xa8), 12u);
  CHECK_EQ(cdb_length(0x7f), 0u);
  CHECK_EQ(cdb_length(0xc0), 0u);
}

TEST(scsi_cdrom_inquiry_standard_data) {
  ScsiCdrom drive("SN-0001");
  auto r = run_cdb(drive, {0x12, 0, 0, 0, 0xff, 0});
  CHECK(r.ok());
  CHECK_EQ(r.data.size(), 36u);
  CHECK(equal(slice(r.data, 0, 8), Bytes{0x05, 0x80, 0x05, 0x02, 31, 0, 0, 0}));
  CHECK_STR(std::string(r.data.begin() + 8, r.data.begin() + 36), "BERTH   Virtual DVD-ROM 1.0 ");
  // The allocation length cuts the data; a huge one does not grow it.
  CHECK_EQ(run_cdb(drive, {0x12, 0, 0, 0, 5, 0}).data.size(), 5u);
  CHECK_EQ(run_cdb(drive, {0x12, 0, 0, 0xff, 0xff, 0}).data.size(), 36u);
  CHECK(run_cdb(drive, {0x12, 0, 0, 0, 0, 0}).data.empty());
  // A page code without EVPD, and CMDDT, are invalid fields.
  CHECK(sense_is(run_cdb(drive, {0x12, 0, 0x80, 0, 36, 0}), 5, 0x24, 0));
  CHECK(sense_is(run_cdb(drive, {0x12, 2, 0, 0, 36, 0}), 5, 0x24, 0));
}

TEST(scsi_cdrom_inquiry_vpd_pages) {
  ScsiCdrom drive("SN-0001");
  CHECK(equal(run_cdb(drive, {0x12, 1, 0x00, 0, 0xff, 0}).data, Bytes{0x05, 0x00, 0, 3, 0x00, 0x80, 0x83}));
  CHECK(equal(run_cdb(drive, {0x12, 1, 0x80, 0, 0xff, 0}).data, Bytes{0x05, 0x80, 0, 7, 'S', 'N', '-', '0', '0', '0', '1'}));
  auto id = run_cdb(drive, {0x12, 1, 0x83, 0, 0xff, 0});
  CHECK(equal(slice(id.data, 0, 8), Bytes{0x05, 0x83, 0, 19, 0x02, 0x01, 0x00, 15}));
  CHECK_STR(std::string(id.data.begin() + 8, id.data.end()), "BERTH   SN-0001");
  CHECK(sense_is(run_cdb(drive, {0x12, 1, 0xb0, 0, 0xff, 0}), 5, 0x24, 0));
  // Serial numbers are cut to 20 bytes.
  ScsiCdrom longer(std::string(40, 'x'));
  CHECK_EQ(run_cdb(longer, {0x12, 1, 0x80, 0, 0xff, 0}).data.size(), 24u);
}

TEST(scsi_cdrom_empty_drive) {
  ScsiCdrom drive;
  CHECK(sense_is(run_cdb(drive, {0, 0, 0, 0, 0, 0}), 2, 0x3a, 0));
  // REQUEST SENSE reports the same as data, and keeps reporting it.
  for (int i = 0; i < 2; ++i) {
    auto s = run_cdb(drive, {0x03, 0, 0, 0, 0xff, 0});
    CHECK(s.ok());
    CHECK(equal(s.data, Bytes{0x70, 0, 2, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3a, 0, 0, 0, 0, 0}));
  }
  CHECK(sense_is(run_cdb(drive, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 2, 0x3a, 0));
  CHECK(sense_is(run_cdb(drive, test::read10(0, 1)), 2, 0x3a, 0));
  CHECK(sense_is(run_cdb(drive, {0x43, 0, 0, 0, 0, 0, 0, 0, 20, 0}), 2, 0x3a, 0));
  CHECK(sense_is(run_cdb(drive, {0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0}), 2, 0x3a, 0));
  CHECK(run_cdb(drive, {0x12, 0, 0, 0, 36, 0}).ok());
  CHECK(run_cdb(drive, {0x1e, 0, 0, 0, 1, 0}).ok());  // lock and unlock work without media
  CHECK(run_cdb(drive, {0x1e, 0, 0, 0, 0, 0}).ok());
  // No current profile, nothing current beyond the persistent features.
  auto cfg = run_cdb(drive, {0x46, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0});
  CHECK(cfg.ok());
  CHECK(equal(slice(cfg.data, 4, 4), Bytes{0, 0, 0, 0}));
  CHECK_EQ(cfg.data.size(), 8u + 12 + 12 + 8 + 8);
  // The media event descriptor: no event, tray closed, no medium.
  CHECK(equal(run_cdb(drive, {0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0}).data, Bytes{0, 6, 0x04, 0x10, 0, 0, 0, 0}));
  CHECK(equal(run_cdb(drive, {0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}).data, Bytes(8, 0)));
  CHECK_STR(drive.media_path(), "");
}

TEST(scsi_cdrom_read_capacity_and_reads) {
  Loaded l;
  auto cap = run_cdb(l.drive, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(equal(cap.data, Bytes{0, 0, 0, 15, 0, 0, 0x08, 0}));
  auto r = run_cdb(l.drive, test::read10(3, 2));
  CHECK(r.ok());
  CHECK_EQ(r.data.size(), 4096u);
  bool same = true;
  for (size_t i = 0; i < r.data.size(); ++i) same &= r.data[i] == test::iso_byte(3 + i / 2048, i % 2048);
  CHECK(same);
  auto r12 = run_cdb(l.drive, {0xa8, 0, 0, 0, 0, 15, 0, 0, 0, 1, 0, 0});
  CHECK(r12.ok() && r12.data.size() == 2048 && r12.data[5] == test::iso_byte(15, 5));
  auto r16 = run_cdb(l.drive, {0x88, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0});
  CHECK(r16.ok() && r16.data.size() == 2048 && r16.data[100] == test::iso_byte(7, 100));
  // Zero blocks: GOOD, nothing read, also at the end of the medium.
  CHECK(run_cdb(l.drive, test::read10(16, 0)).ok());
  CHECK(run_cdb(l.drive, test::read10(16, 0)).data.empty());
  // Out of range, including sums that overflow 32 and 64 bits.
  CHECK(sense_is(run_cdb(l.drive, test::read10(15, 2)), 5, 0x21, 0));
  CHECK(sense_is(run_cdb(l.drive, test::read10(17, 0)), 5, 0x21, 0));
  CHECK(sense_is(run_cdb(l.drive, test::read10(0xffffffff, 0xffff)), 5, 0x21, 0));
  CHECK(sense_is(run_cdb(l.drive, {0xa8, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0}), 5, 0x21, 0));
  CHECK(sense_is(run_cdb(l.drive, {0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 0}), 5, 0x21, 0));
}

TEST(scsi_cdrom_read_toc) {
  Loaded l;
  CHECK(equal(run_cdb(l.drive, {0x43, 0, 0, 0, 0, 0, 0, 0, 0xff, 0}).data,
              Bytes{0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x14, 0xaa, 0, 0, 0, 0, 16}));
  // MSF: track 1 at 00:02:00, the lead-out at 166 frames = 00:02:16.
  CHECK(equal(run_cdb(l.drive, {0x43, 2, 0, 0, 0, 0, 0, 0, 0xff, 0}).data,
              Bytes{0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 2, 0, 0, 0x14, 0xaa, 0, 0, 0, 2, 16}));
  CHECK(equal(run_cdb(l.drive, {0x43, 0, 0, 0, 0, 0, 0xaa, 0, 0xff, 0}).data,
              Bytes{0, 10, 1, 1, 0, 0x14, 0xaa, 0, 0, 0, 0, 16}));
  const Bytes session{0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0};
  CHECK(equal(run_cdb(l.drive, {0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0}).data, session));
  CHECK(equal(run_cdb(l.drive, {0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40}).data, session));  // format in byte 9
  CHECK_EQ(run_cdb(l.drive, {0x43, 0, 0, 0, 0, 0, 0, 0, 4, 0}).data.size(), 4u);
  CHECK(sense_is(run_cdb(l.drive, {0x43, 0, 0, 0, 0, 0, 2, 0, 0xff, 0}), 5, 0x24, 0));  // no track 2
  CHECK(sense_is(run_cdb(l.drive, {0x43, 0, 5, 0, 0, 0, 0, 0, 0xff, 0}), 5, 0x24, 0));
}

TEST(scsi_cdrom_get_configuration) {
  Loaded l;
  const Bytes profiles{0, 0, 0x03, 8, 0, 0x10, 1, 0, 0, 0x08, 0, 0};
  const Bytes core{0, 1, 0x0b, 8, 0, 0, 0, 1, 1, 0, 0, 0};
  const Bytes morphing{0, 2, 0x07, 4, 0, 0, 0, 0};
  const Bytes removable{0, 3, 0x03, 4, 0x29, 0, 0, 0};
  const Bytes random{0, 0x10, 0x01, 8, 0, 0, 0x08, 0, 0, 16, 0, 0};
  const Bytes dvd_read{0, 0x1f, 0x01, 0};
  Bytes want{0, 0, 0, 60, 0, 0, 0, 0x10};
  for (const Bytes* f : {&profiles, &core, &morphing, &removable, &random, &dvd_read}) want.insert(want.end(), f->begin(), f->end());
  CHECK(equal(run_cdb(l.drive, {0x46, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0}).data, want));
  // RT 2: the one feature asked for; RT 0 from a starting feature.
  Bytes one{0, 0, 0, 12, 0, 0, 0, 0x10};
  one.insert(one.end(), removable.begin(), removable.end());
  CHECK(equal(run_cdb(l.drive, {0x46, 2, 0, 3, 0, 0, 0, 0xff, 0xff, 0}).data, one));
  CHECK_EQ(run_cdb(l.drive, {0x46, 0, 0, 0x10, 0, 0, 0, 0xff, 0xff, 0}).data.size(), 8u + 12 + 4);
  CHECK_EQ(run_cdb(l.drive, {0x46, 2, 0, 0x55, 0, 0, 0, 0xff, 0xff, 0}).data.size(), 8u);
  CHECK_EQ(run_cdb(l.drive, {0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0}).data.size(), 8u);
  CHECK(sense_is(run_cdb(l.drive, {0x46, 3, 0, 0, 0, 0, 0, 0, 8, 0}), 5, 0x24, 0));
}

TEST(scsi_cdrom_mode_sense) {
  Loaded l;
  const Bytes caps{0x2a, 0x14, 0x0b, 0, 0x70, 0, 0x29, 0, 0x21, 0x00, 0, 0, 0x02, 0x00, 0x21, 0x00, 0, 0, 0, 0, 0, 0};
  Bytes want{0, 28, 0, 0, 0, 0, 0, 0};
  want.insert(want.end(), caps.begin(), caps.end());
  CHECK(equal(run_cdb(l.drive, {0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff, 0}).data, want));
  // MODE SENSE(6), all pages: error recovery then capabilities.
  auto all = run_cdb(l.drive, {0x1a, 0, 0x3f, 0, 0xff, 0});
  CHECK_EQ(all.data.size(), 4u + 12 + 22);
  CHECK(equal(slice(all.data, 0, 6), Bytes{37, 0, 0, 0, 0x01, 0x0a}));
  CHECK(equal(slice(all.data, 16, 22), caps));
  CHECK_EQ(run_cdb(l.drive, {0x1a, 0, 0x3f, 0xff, 0xff, 0}).data.size(), 38u);  // all subpages
  // Changeable values: nothing is.
  auto mask = run_cdb(l.drive, {0x5a, 0, 0x40 | 0x2a, 0, 0, 0, 0, 0, 0xff, 0});
  CHECK(equal(slice(mask.data, 8, 4), Bytes{0x2a, 0x14, 0, 0}));
  // The lock shows in the capabilities page.
  CHECK(run_cdb(l.drive, {0x1e, 0, 0, 0, 1, 0}).ok());
  CHECK_EQ(run_cdb(l.drive, {0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff, 0}).data[8 + 6], 0x2b);
  CHECK(sense_is(run_cdb(l.drive, {0x5a, 0, 0xc0 | 0x2a, 0, 0, 0, 0, 0, 0xff, 0}), 5, 0x39, 0));
  CHECK(sense_is(run_cdb(l.drive, {0x5a, 0, 0x08, 0, 0, 0, 0, 0, 0xff, 0}), 5, 0x24, 0));
  CHECK(sense_is(run_cdb(l.drive, {0x5a, 0, 0x2a, 1, 0, 0, 0, 0, 0xff, 0}), 5, 0x24, 0));
}

TEST(scsi_cdrom_disc_information_and_mechanism_status) {
  Loaded l;
  Bytes want(34, 0);
  want[1] = 32;
  want[2] = 0x0e;
  want[3] = want[4] = want[5] = want[6] = 1;
  CHECK(equal(run_cdb(l.drive, {0x51, 0, 0, 0, 0, 0, 0, 0, 0xff, 0}).data, want));
  CHECK(sense_is(run_cdb(l.drive, {0x51, 1, 0, 0, 0, 0, 0, 0, 0xff, 0}), 5, 0x24, 0));
  CHECK(equal(run_cdb(l.drive, {0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0}).data, Bytes(8, 0)));
}

TEST(scsi_cdrom_report_luns_and_event_status) {
  Loaded l;
  CHECK(equal(run_cdb(l.drive, {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}).data, Bytes{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  CHECK(sense_is(run_cdb(l.drive, {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0}), 5, 0x24, 0));
  CHECK(sense_is(run_cdb(l.drive, {0xa0, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 5, 0x24, 0));
  // GESN: polled only; a request without the media class gets NEA.
  CHECK(sense_is(run_cdb(l.drive, {0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0}), 5, 0x24, 0));
  CHECK(equal(run_cdb(l.drive, {0x4a, 1, 0, 0, 0x02, 0, 0, 0, 8, 0}).data, Bytes{0, 2, 0x80, 0x10}));
  CHECK(equal(run_cdb(l.drive, {0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0}).data, Bytes{0, 6, 0x04, 0x10, 2, 2, 0, 0}));
  CHECK(equal(run_cdb(l.drive, {0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0}).data, Bytes{0, 6, 0x04, 0x10, 0, 2, 0, 0}));
}

TEST(scsi_cdrom_hostile_cdbs) {
  Loaded l;
  CHECK(sense_is(run_cdb(l.drive, {}), 5, 0x20, 0));
  CHECK(sense_is(run_cdb(l.drive, {0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}), 5, 0x20, 0));  // WRITE(10)
  CHECK(sense_is(run_cdb(l.drive, {0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 5, 0x20, 0));  // group 3
  CHECK(sense_is(run_cdb(l.drive, {0xff}), 5, 0x20, 0));
  CHECK(sense_is(run_cdb(l.drive, {0x28, 0, 0, 0, 0, 0}), 5, 0x24, 0));              // READ(10) cut short
  CHECK(sense_is(run_cdb(l.drive, {0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 5, 0x24, 0));  // READ(16) cut short
  CHECK(sense_is(run_cdb(l.drive, {0, 0, 0, 0, 0, 0x04}), 5, 0x24, 0));              // NACA
  // Longer CDBs than the command (a transport's fixed 32 bytes) are fine.
  Bytes tur(32, 0);
  CHECK(run_cdb(l.drive, tur).ok());
  // Huge allocation lengths never produce more than the data.
  CHECK_EQ(run_cdb(l.drive, {0x03, 0, 0, 0, 0xff, 0}).data.size(), 18u);
  CHECK_EQ(run_cdb(l.drive, {0x43, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0}).data.size(), 20u);
  CHECK_EQ(run_cdb(l.drive, {0xbd, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}).data.size(), 8u);
}
