// The DVD-ROM target's media: insert and eject as the host does them, the media change as
// Linux's sr driver sees it (one unit attention, a media event, then ready), the guest's
// tray lock against its own and the host's eject, images refused at insert, an image cut
// short while in the drive, saved state (including a saved medium that has gone).
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "common/state_stream.h"
#include "devices/scsi/cdrom.h"
#include "disk/block_device.h"
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

const Bytes kTur{0, 0, 0, 0, 0, 0};
const Bytes kGesnMedia{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0};
const Bytes kLock{0x1e, 0, 0, 0, 1, 0};
const Bytes kUnlock{0x1e, 0, 0, 0, 0, 0};
const Bytes kEject{0x1b, 0, 0, 0, 0x02, 0};
const Bytes kLoad{0x1b, 0, 0, 0, 0x03, 0};

// GESN's media event code and media status byte.
std::pair<int, int> media_event(ScsiCdrom& d) {
  auto r = run_cdb(d, kGesnMedia);
  CHECK(r.ok() && r.data.size() == 8);
  return {r.data[4], r.data[5]};
}

}  // namespace

TEST(scsi_cdrom_media_change_as_linux_sees_it) {
  TempDir dir;
  test::write_iso(dir.file("a.iso"), 4);
  test::write_iso(dir.file("b.iso"), 8);
  ScsiCdrom d;
  d.insert(dir.file("a.iso"));
  CHECK_STR(d.media_path(), dir.file("a.iso"));
  // INQUIRY, GET CONFIGURATION and GESN pass a pending unit attention by.
  CHECK(run_cdb(d, {0x12, 0, 0, 0, 36, 0}).ok());
  CHECK(run_cdb(d, {0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0}).ok());
  CHECK((media_event(d) == std::pair{2, 2}));  // NewMedia, medium present
  CHECK((media_event(d) == std::pair{0, 2}));  // reported once
  CHECK(sense_is(run_cdb(d, kTur), 6, 0x28, 0));
  CHECK(run_cdb(d, kTur).ok());
  // A swap: the new capacity after one unit attention.
  d.insert(dir.file("b.iso"));
  CHECK(sense_is(run_cdb(d, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 6, 0x28, 0));
  CHECK_EQ(run_cdb(d, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}).data[3], 7);
  // Host eject: a unit attention, MediaRemoval, then not ready with the tray closed.
  CHECK(d.eject());
  CHECK(!d.eject());
  CHECK((media_event(d) == std::pair{3, 0}));
  // REQUEST SENSE reports (and clears) the unit attention as data.
  auto s = run_cdb(d, {0x03, 0, 0, 0, 18, 0});
  CHECK(s.ok() && s.data[2] == 6 && s.data[12] == 0x3a);
  CHECK(sense_is(run_cdb(d, kTur), 2, 0x3a, 0));
  CHECK_STR(d.media_path(), "");
}

TEST(scsi_cdrom_tray_lock_against_ejects) {
  TempDir dir;
  test::write_iso(dir.file("a.iso"), 4);
  ScsiCdrom d;
  int guest_ejects = 0;
  d.set_guest_eject_handler([&] { ++guest_ejects; });
  d.insert(dir.file("a.iso"));
  run_cdb(d, kTur);  // the insert's unit attention
  media_event(d);    // and its event
  CHECK(run_cdb(d, kLock).ok());
  CHECK(d.locked());
  CHECK(sense_is(run_cdb(d, kEject), 5, 0x53, 0x02));
  CHECK(run_cdb(d, kTur).ok());
  // A polite host eject asks the guest instead.
  CHECK(!d.request_eject());
  CHECK((media_event(d) == std::pair{1, 2}));  // EjectRequest
  CHECK_STR(d.media_path(), dir.file("a.iso"));
  CHECK(run_cdb(d, kUnlock).ok());
  CHECK(run_cdb(d, kEject).ok());
  CHECK_EQ(guest_ejects, 1);
  CHECK_STR(d.media_path(), "");
  CHECK(sense_is(run_cdb(d, kTur), 2, 0x3a, 0x02));  // tray open
  CHECK((media_event(d) == std::pair{0, 1}));
  auto mech = run_cdb(d, {0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0});
  CHECK_EQ(mech.data[1], 0x10);  // door open
  CHECK(run_cdb(d, kLoad).ok());
  CHECK(sense_is(run_cdb(d, kTur), 2, 0x3a, 0));
  // The host wins over a locked tray.
  d.insert(dir.file("a.iso"));
  run_cdb(d, kTur);
  CHECK(run_cdb(d, kLock).ok());
  CHECK(d.eject());
  CHECK_EQ(guest_ejects, 1);  // the handler is for the guest's ejects only
  CHECK(sense_is(run_cdb(d, kTur), 6, 0x3a, 0));
  CHECK(sense_is(run_cdb(d, kTur), 2, 0x3a, 0));
  // A bus reset (a rebooting guest) releases the lock.
  CHECK(d.locked());
  d.bus_reset();
  CHECK(!d.locked());
  // Ejecting an empty unlocked drive, and a spin-up without LoEj, are fine.
  CHECK(run_cdb(d, kEject).ok());
  CHECK(run_cdb(d, {0x1b, 0, 0, 0, 0x01, 0}).ok());
}

TEST(scsi_cdrom_insert_refuses_what_is_not_an_iso) {
  TempDir dir;
  test::write_iso(dir.file("good.iso"), 2);
  ScsiCdrom d;
  d.insert(dir.file("good.iso"));
  CHECK_THROWS_CODE(d.insert(dir.file("missing.iso")), "DVD_MEDIA_NOT_FOUND", "missing.iso");
  test::write_iso(dir.file("empty.iso"), 0);
  CHECK_THROWS_CODE(d.insert(dir.file("empty.iso")), "DVD_MEDIA_INVALID", "empty.iso");
  test::write_iso(dir.file("odd.iso"), 2, 1);
  CHECK_THROWS_CODE(d.insert(dir.file("odd.iso")), "DVD_MEDIA_INVALID", "2048");
  disk::CreateOptions q;
  q.format = disk::Format::kQcow2;
  q.size = 1 << 20;
  disk::create_disk(dir.file("disk.qcow2"), q);
  CHECK_THROWS_CODE(d.insert(dir.file("disk.qcow2")), "DVD_MEDIA_INVALID", "qcow2");
  CHECK_THROWS_CODE(d.insert(""), "DVD_MEDIA_NOT_FOUND", "ISO");
  // The drive kept its medium through every refusal.
  CHECK_STR(d.media_path(), dir.file("good.iso"));
  CHECK(sense_is(run_cdb(d, kTur), 6, 0x28, 0));
  CHECK(run_cdb(d, kTur).ok());
}

TEST(scsi_cdrom_image_cut_short_while_inserted) {
  TempDir dir;
  const std::string path = dir.file("a.iso");
  test::write_iso(path, 16);
  ScsiCdrom d;
  d.insert(path);
  run_cdb(d, kTur);
  CHECK(::truncate(path.c_str(), 4 * 2048) == 0);
  CHECK(run_cdb(d, test::read10(1, 3)).ok());  // still inside the file
  CHECK(sense_is(run_cdb(d, test::read10(10, 1)), 3, 0x11, 0));
  CHECK(d.last_error().find("cut to 8192 bytes") != std::string::npos);
  CHECK(sense_is(run_cdb(d, test::read10(3, 2)), 3, 0x11, 0));  // straddles the new end
  // The path going away does not matter: the open image is read.
  test::write_iso(dir.file("b.iso"), 4);
  d.insert(dir.file("b.iso"));
  CHECK(d.last_error().empty());
  run_cdb(d, kTur);
  CHECK(::unlink(dir.file("b.iso").c_str()) == 0);
  CHECK(run_cdb(d, test::read10(3, 1)).ok());
  // An I/O error reported by the disk layer.
  Command c = d.execute(test::read10(0, 1));
  CHECK(c.io.has_value());
  Reply r = d.finish_io(*c.io, -5, "reading x failed: Input/output error");
  CHECK(r.status == kStatusCheckCondition && r.sense == sense::kUnrecoveredRead);
  CHECK(d.last_error().find("Input/output error") != std::string::npos);
}

TEST(scsi_cdrom_media_changed_while_a_read_was_on_the_disk) {
  TempDir dir;
  test::write_iso(dir.file("a.iso"), 4);
  ScsiCdrom d;
  d.insert(dir.file("a.iso"));
  run_cdb(d, kTur);
  Command c = d.execute(test::read10(0, 1));
  CHECK(c.io.has_value());
  d.eject();
  Reply r = d.finish_io(*c.io, 2048, "");
  CHECK(r.status == kStatusCheckCondition && r.sense == sense::kMediumRemoved);
  c = d.execute(test::read10(0, 1));
  CHECK(!c.io && c.reply.sense == sense::kNoMedium);
}

TEST(scsi_cdrom_saved_state_round_trip) {
  TempDir dir;
  test::write_iso(dir.file("a.iso"), 4);
  ScsiCdrom d;
  d.insert(dir.file("a.iso"));
  CHECK(sense_is(run_cdb(d, kLock), 6, 0x28, 0));  // the unit attention stops PREVENT
  CHECK(run_cdb(d, kLock).ok());
  d.insert(dir.file("a.iso"));  // a unit attention and a media event pending
  state::Writer w;
  d.save_state(w);
  ScsiCdrom e;
  state::Reader r(w.data(), "test");
  e.prepare_load(r)();
  CHECK_STR(e.media_path(), dir.file("a.iso"));
  CHECK(e.locked());
  CHECK((media_event(e) == std::pair{2, 2}));
  CHECK(sense_is(run_cdb(e, kTur), 6, 0x28, 0));
  CHECK(run_cdb(e, kTur).ok());
  CHECK(e.last_error().empty());
}

TEST(scsi_cdrom_saved_state_with_the_medium_gone) {
  TempDir dir;
  test::write_iso(dir.file("a.iso"), 4);
  ScsiCdrom d;
  d.insert(dir.file("a.iso"));
  run_cdb(d, kTur);
  media_event(d);
  state::Writer w;
  d.save_state(w);
  CHECK(::unlink(dir.file("a.iso").c_str()) == 0);
  ScsiCdrom e;
  state::Reader r(w.data(), "test");
  e.prepare_load(r)();
  CHECK_STR(e.media_path(), "");
  CHECK(e.last_error().find("could not be opened") != std::string::npos);
  CHECK(sense_is(run_cdb(e, kTur), 6, 0x3a, 0));
  CHECK(sense_is(run_cdb(e, kTur), 2, 0x3a, 0));
  // Another size now: the image as it is, announced as a new disc.
  test::write_iso(dir.file("a.iso"), 6);
  ScsiCdrom f;
  state::Reader r2(w.data(), "test");
  f.prepare_load(r2)();
  CHECK(f.last_error().find("bytes now") != std::string::npos);
  CHECK(sense_is(run_cdb(f, kTur), 6, 0x28, 0));
  CHECK_EQ(run_cdb(f, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}).data[3], 5);
}

TEST(scsi_cdrom_saved_state_refuses_bad_records) {
  auto record = [](auto body) {
    state::Writer w;
    size_t t = w.begin("scsi-cdrom", 1);
    body(w);
    w.end(t);
    return w.take();
  };
  auto fields = [](state::Writer& w, uint64_t bytes, uint8_t ua_key, uint8_t event) {
    w.str("");
    w.u64(bytes);
    w.boolean(false);
    w.boolean(false);
    w.boolean(true);
    w.u8(ua_key);
    w.u8(0x28);
    w.u8(0);
    w.u8(event);
  };
  ScsiCdrom d;
  CHECK(run_cdb(d, kLock).ok());
  auto refused = [&](const std::vector<uint8_t>& bytes) {
    state::Reader r(bytes, "test");
    bool threw = false;
    try {
      d.prepare_load(r);
    } catch (const Error& e) {
      threw = e.code() == "STATE_INVALID";
    }
    return threw;
  };
  CHECK(refused(record([&](state::Writer& w) { fields(w, 2048, 6, 0); })));  // media_bytes without a medium
  CHECK(refused(record([&](state::Writer& w) { fields(w, 0, 5, 0); })));     // not a unit attention
  CHECK(refused(record([&](state::Writer& w) { fields(w, 0, 6, 4); })));     // no such event
  CHECK(refused(record([&](state::Writer& w) {
    fields(w, 0, 6, 0);
    w.u8(0);  // a trailing byte
  })));
  CHECK(refused(record([&](state::Writer& w) { w.str(""); })));  // cut short
  CHECK(d.locked());                                             // unchanged
  auto good = record([&](state::Writer& w) { fields(w, 0, 6, 0); });
  state::Reader r(good, "test");
  d.prepare_load(r)();
  CHECK(!d.locked());
  CHECK(sense_is(run_cdb(d, kTur), 6, 0x28, 0));
}

TEST(scsi_cdrom_host_and_io_threads_together) {
  TempDir dir;
  test::write_iso(dir.file("a.iso"), 8);
  ScsiCdrom d;
  std::atomic<bool> stop{false};
  std::thread host([&] {
    for (int i = 0; i < 200; ++i) {
      d.insert(dir.file("a.iso"));
      d.eject();
    }
    stop = true;
  });
  int answered = 0;
  while (!stop) {
    auto r = run_cdb(d, test::read10(static_cast<uint32_t>(answered % 8), 1));
    CHECK(r.ok() || r.sense.key == kKeyUnitAttention || r.sense.key == kKeyNotReady);
    if (r.ok()) CHECK(r.data.size() == 2048 && r.data[0] == test::iso_byte(answered % 8, 0));
    ++answered;
  }
  host.join();
  CHECK(answered > 0);
}
