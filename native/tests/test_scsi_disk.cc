// The SCSI hard disk (devices/scsi/disk.h) command by command, over real raw and qcow2
// images; planned I/O is carried out synchronously through the image's own disk, and
// qemu-img judges what was written.
#include <cstring>

#include "devices/scsi/disk.h"
#include "disk/block_device.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"
#include "tests/scsi_test_helpers.h"

using namespace berth;
using namespace berth::devices::scsi;
using berth::test::rvh::TempDir;
using berth::test::run_cdb;
using berth::test::sense_is;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kBlocks = 2048;  // 1 MiB of 512-byte blocks

std::string make_image(TempDir& dir, const char* name, disk::Format format) {
  const std::string path = dir.file(name);
  disk::CreateOptions o;
  o.format = format;
  o.size = kBlocks * 512;
  disk::create_disk(path, o);
  return path;
}

std::unique_ptr<ScsiDisk> open_target(const std::string& path, bool read_only = false) {
  disk::OpenOptions o;
  o.read_only = read_only;
  return std::make_unique<ScsiDisk>(disk::open_disk(path, o), "berth-slot-3", read_only);
}

Bytes cdb16(uint8_t opcode, uint64_t lba, uint32_t count) {
  Bytes c(16, 0);
  c[0] = opcode;
  put_be64(&c[2], lba);
  put_be32(&c[10], count);
  return c;
}
Bytes cdb10(uint8_t opcode, uint32_t lba, uint16_t count) {
  Bytes c(10, 0);
  c[0] = opcode;
  put_be32(&c[2], lba);
  put_be16(&c[7], count);
  return c;
}
Bytes cdb12(uint8_t opcode, uint32_t lba, uint32_t count) {
  Bytes c(12, 0);
  c[0] = opcode;
  put_be32(&c[2], lba);
  put_be32(&c[6], count);
  return c;
}
Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 13);
  return b;
}

// Runs a command whose planned I/O is a write (data from `out`), a read or a flush.
test::ScsiResult run_io(ScsiDisk& t, const Bytes& cdb, const Bytes& out = {}) {
  Command c = t.execute(cdb);
  if (!c.io || c.io->op == disk::AsyncOp::kRead) return run_cdb(t, cdb);
  int64_t result = 0;
  std::string error;
  try {
    if (c.io->op == disk::AsyncOp::kWrite) {
      CHECK(out.size() >= c.io->length);
      c.io->medium->disk->write(c.io->offset, std::span(out).first(c.io->length));
      result = static_cast<int64_t>(c.io->length);
    } else {
      c.io->medium->disk->flush();
    }
  } catch (const std::exception& e) {
    result = -5;
    error = e.what();
  }
  Reply r = t.finish_io(*c.io, result, error);
  return {r.status, r.sense, r.data};
}

const Sense kLbaOut = sense::kLbaOutOfRange;
bool sense_eq(const test::ScsiResult& r, const Sense& s) { return sense_is(r, s.key, s.asc, s.ascq); }

}  // namespace

TEST(scsi_disk_inquiry_and_vpd) {
  TempDir dir;
  auto d = open_target(make_image(dir, "a.raw", disk::Format::kRaw));
  auto std_inq = run_cdb(*d, {0x12, 0, 0, 0, 96, 0});
  CHECK(std_inq.ok());
  CHECK_EQ(std_inq.data.size(), 36u);
  CHECK_EQ(std_inq.data[0], 0x00);  // direct access block device
  CHECK_EQ(std_inq.data[1], 0x00);  // not removable
  CHECK_STR(std::string(std_inq.data.begin() + 8, std_inq.data.begin() + 32), std::string("BERTH   Virtual Disk    "));
  CHECK_EQ(run_cdb(*d, {0x12, 0, 0, 0, 5, 0}).data.size(), 5u);  // cut to the allocation length

  auto pages = run_cdb(*d, {0x12, 1, 0x00, 0, 64, 0});
  CHECK(pages.ok());
  CHECK(pages.data == (Bytes{0, 0, 0, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}));
  auto serial = run_cdb(*d, {0x12, 1, 0x80, 0, 64, 0});
  CHECK_STR(std::string(serial.data.begin() + 4, serial.data.end()), std::string("berth-slot-3"));
  auto id = run_cdb(*d, {0x12, 1, 0x83, 0, 64, 0});
  CHECK_EQ(id.data[4], 0x02);
  CHECK_STR(std::string(id.data.begin() + 8, id.data.end()), std::string("BERTH   berth-slot-3"));
  auto limits = run_cdb(*d, {0x12, 1, 0xb0, 0, 64, 0});
  CHECK_EQ(limits.data.size(), 64u);
  CHECK_EQ(be16(&limits.data[2]), 0x3cu);
  CHECK_EQ(be32(&limits.data[8]), 0xffffu);  // maximum transfer length in blocks
  CHECK_EQ(be32(&limits.data[20]), 0u);      // no UNMAP
  CHECK_EQ(run_cdb(*d, {0x12, 1, 0xb1, 0, 64, 0}).data.size(), 64u);
  CHECK_EQ(run_cdb(*d, {0x12, 1, 0xb2, 0, 64, 0}).data.size(), 8u);
  CHECK(sense_eq(run_cdb(*d, {0x12, 1, 0x89, 0, 64, 0}), sense::kInvalidFieldInCdb));  // no ATA page
  CHECK(sense_eq(run_cdb(*d, {0x12, 0, 0x80, 0, 64, 0}), sense::kInvalidFieldInCdb));  // page without EVPD
  CHECK(sense_eq(run_cdb(*d, {0x12, 2, 0, 0, 64, 0}), sense::kInvalidFieldInCdb));     // CMDDT
}

TEST(scsi_disk_unit_ready_sense_luns_start_stop) {
  TempDir dir;
  auto d = open_target(make_image(dir, "a.raw", disk::Format::kRaw));
  CHECK(run_cdb(*d, {0, 0, 0, 0, 0, 0}).ok());
  auto s = run_cdb(*d, {0x03, 0, 0, 0, 252, 0});
  CHECK(s.ok());
  CHECK_EQ(s.data.size(), 18u);
  CHECK_EQ(s.data[0], 0x70);
  CHECK_EQ(s.data[2], 0x00);
  auto luns = run_cdb(*d, {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0});
  CHECK(luns.ok());
  CHECK_EQ(be32(&luns.data[0]), 8u);
  CHECK(run_cdb(*d, {0x1b, 0, 0, 0, 0x01, 0}).ok());
  CHECK(run_cdb(*d, {0x1b, 0, 0, 0, 0x00, 0}).ok());
  CHECK(run_cdb(*d, {0, 0, 0, 0, 0, 0}).ok());  // still ready after a stop
}

TEST(scsi_disk_read_capacity) {
  TempDir dir;
  auto d = open_target(make_image(dir, "a.qcow2", disk::Format::kQcow2));
  auto c10 = run_cdb(*d, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(c10.ok());
  CHECK_EQ(be32(&c10.data[0]), kBlocks - 1);
  CHECK_EQ(be32(&c10.data[4]), 512u);
  CHECK(sense_eq(run_cdb(*d, {0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0}), sense::kInvalidFieldInCdb));  // LBA without PMI
  Bytes rc16(16, 0);
  rc16[0] = 0x9e;
  rc16[1] = 0x10;
  rc16[13] = 32;
  auto c16 = run_cdb(*d, rc16);
  CHECK(c16.ok());
  CHECK_EQ(c16.data.size(), 32u);
  CHECK_EQ(be64(&c16.data[0]), kBlocks - 1);
  CHECK_EQ(be32(&c16.data[8]), 512u);
  CHECK_EQ(c16.data[14] & 0x80, 0);  // LBPME 0
  rc16[13] = 12;
  CHECK_EQ(run_cdb(*d, rc16).data.size(), 12u);
  rc16[1] = 0x11;  // another service action
  CHECK(sense_eq(run_cdb(*d, rc16), sense::kInvalidFieldInCdb));
}

TEST(scsi_disk_mode_sense) {
  TempDir dir;
  const std::string path = make_image(dir, "a.raw", disk::Format::kRaw);
  auto d = open_target(path);
  auto all = run_cdb(*d, {0x1a, 0, 0x3f, 0, 255, 0});
  CHECK(all.ok());
  CHECK_EQ(all.data.size(), 4u + 8 + 20 + 12);
  CHECK_EQ(all.data[0], all.data.size() - 1);
  CHECK_EQ(all.data[2], 0x00);  // not write protected, no DPOFUA
  CHECK_EQ(all.data[3], 8);     // one short block descriptor
  CHECK_EQ(be32(&all.data[4]), kBlocks);
  CHECK_EQ(all.data[12], 0x08);
  CHECK_EQ(all.data[14] & 0x04, 0x04);  // WCE
  CHECK_EQ(all.data[32], 0x0a);
  auto caching = run_cdb(*d, {0x1a, 0x08, 0x08, 0, 255, 0});  // DBD
  CHECK_EQ(caching.data.size(), 4u + 20);
  CHECK_EQ(caching.data[4], 0x08);
  auto changeable = run_cdb(*d, {0x1a, 0x08, 0x48, 0, 255, 0});
  CHECK_EQ(changeable.data[6] & 0x04, 0);  // WCE cannot be changed
  CHECK(sense_eq(run_cdb(*d, {0x1a, 0, 0xc8, 0, 255, 0}), sense::kSavingNotSupported));
  CHECK(sense_eq(run_cdb(*d, {0x1a, 0, 0x1c, 0, 255, 0}), sense::kInvalidFieldInCdb));  // unknown page
  CHECK(sense_eq(run_cdb(*d, {0x1a, 0, 0x08, 1, 255, 0}), sense::kInvalidFieldInCdb));  // subpage
  CHECK(run_cdb(*d, {0x1a, 0, 0x3f, 0xff, 255, 0}).ok());
  CHECK_EQ(run_cdb(*d, {0x1a, 0, 0x3f, 0, 4, 0}).data.size(), 4u);
  auto ten = run_cdb(*d, {0x5a, 0x10, 0x0a, 0, 0, 0, 0, 1, 0, 0});  // LLBAA
  CHECK(ten.ok());
  CHECK_EQ(ten.data.size(), 8u + 16 + 12);
  CHECK_EQ(be16(&ten.data[0]), ten.data.size() - 2);
  CHECK_EQ(ten.data[4] & 0x01, 0x01);  // LONGLBA
  CHECK_EQ(be16(&ten.data[6]), 16u);
  CHECK_EQ(be64(&ten.data[8]), kBlocks);

  auto ro = open_target(path, true);
  CHECK_EQ(run_cdb(*ro, {0x1a, 0x08, 0x3f, 0, 255, 0}).data[2], 0x80);  // WP
  CHECK_EQ(run_cdb(*ro, {0x5a, 0x08, 0x3f, 0, 0, 0, 0, 1, 0, 0}).data[3], 0x80);
}

TEST(scsi_disk_write_then_read_every_size_raw_and_qcow2) {
  for (disk::Format f : {disk::Format::kRaw, disk::Format::kQcow2}) {
    TempDir dir;
    const std::string path = make_image(dir, f == disk::Format::kRaw ? "a.raw" : "a.qcow2", f);
    {
      auto d = open_target(path);
      Bytes w6 = pattern(512, 1), w10 = pattern(2 * 512, 2), w12 = pattern(3 * 512, 3), w16 = pattern(4 * 512, 4);
      CHECK(run_io(*d, {0x0a, 0, 0, 10, 1, 0}, w6).ok());  // WRITE(6) LBA 10
      CHECK(run_io(*d, cdb10(0x2a, 100, 2), w10).ok());
      CHECK(run_io(*d, cdb12(0xaa, 1000, 3), w12).ok());
      CHECK(run_io(*d, cdb16(0x8a, kBlocks - 4, 4), w16).ok());  // the last blocks
      CHECK(run_io(*d, cdb10(0x2e, 200, 1), w6).ok());           // WRITE AND VERIFY(10)
      CHECK(run_io(*d, cdb10(0x35, 0, 0)).ok());                 // SYNCHRONIZE CACHE(10)
      CHECK(run_io(*d, cdb16(0x91, 0, 0)).ok());
      CHECK(run_cdb(*d, {0x08, 0, 0, 10, 1, 0}).data == w6);
      CHECK(run_cdb(*d, cdb10(0x28, 100, 2)).data == w10);
      CHECK(run_cdb(*d, cdb12(0xa8, 1000, 3)).data == w12);
      CHECK(run_cdb(*d, cdb16(0x88, kBlocks - 4, 4)).data == w16);
      CHECK(run_cdb(*d, cdb10(0x28, 200, 1)).data == w6);
      CHECK_EQ(run_cdb(*d, {0x08, 0, 0, 0, 0, 0}).data.size(), 256u * 512);  // READ(6) length 0 is 256
      CHECK(run_cdb(*d, cdb10(0x28, 5, 0)).ok());  // zero blocks: nothing moves
      CHECK(!d->execute(cdb10(0x28, 5, 0)).io);
    }
    const std::string fmt = f == disk::Format::kRaw ? "raw" : "qcow2";
    if (f == disk::Format::kQcow2) CHECK_EQ(test::rvh::run("qemu-img check -q -f qcow2 '" + path + "'").rc, 0);
    const std::string flat = dir.file("flat.raw");
    CHECK_EQ(test::rvh::run("qemu-img convert -f " + fmt + " -O raw '" + path + "' '" + flat + "'").rc, 0);
    const std::string bytes = test::rvh::read_whole(flat);
    CHECK_EQ(bytes.size(), kBlocks * 512);
    Bytes w12 = pattern(3 * 512, 3), w16 = pattern(4 * 512, 4);
    CHECK(std::memcmp(bytes.data() + 1000 * 512, w12.data(), w12.size()) == 0);
    CHECK(std::memcmp(bytes.data() + (kBlocks - 4) * 512, w16.data(), w16.size()) == 0);
    CHECK_EQ(bytes[99 * 512], 0);  // untouched
  }
}

TEST(scsi_disk_out_of_range_and_bad_cdbs) {
  TempDir dir;
  auto d = open_target(make_image(dir, "a.raw", disk::Format::kRaw));
  CHECK(sense_eq(run_cdb(*d, cdb10(0x28, kBlocks, 1)), kLbaOut));
  CHECK(sense_eq(run_cdb(*d, cdb10(0x28, kBlocks - 1, 2)), kLbaOut));
  CHECK(run_cdb(*d, cdb10(0x28, kBlocks - 1, 1)).ok());
  CHECK(run_cdb(*d, cdb10(0x28, kBlocks, 0)).ok());  // an empty range at the end
  CHECK(sense_eq(run_cdb(*d, cdb16(0x88, ~0ull, 1)), kLbaOut));
  CHECK(sense_eq(run_cdb(*d, cdb16(0x88, 1, 0xffffffffu)), kLbaOut));
  CHECK(sense_eq(run_io(*d, cdb16(0x8a, kBlocks, 1), pattern(512, 0)), kLbaOut));
  CHECK(sense_eq(run_cdb(*d, cdb10(0x35, kBlocks, 1)), kLbaOut));
  CHECK(sense_eq(run_cdb(*d, cdb10(0x2f, kBlocks - 1, 2)), kLbaOut));
  CHECK(run_cdb(*d, cdb10(0x2f, 0, 16)).ok());                                   // VERIFY
  CHECK(sense_eq(run_cdb(*d, Bytes{0x2f, 0x02, 0, 0, 0, 0, 0, 0, 1, 0}), sense::kInvalidFieldInCdb));  // BYTCHK
  Bytes protect = cdb10(0x28, 0, 1);
  protect[1] = 0x20;  // RDPROTECT
  CHECK(sense_eq(run_cdb(*d, protect), sense::kInvalidFieldInCdb));
  CHECK(sense_eq(run_cdb(*d, {0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0}), sense::kInvalidOpcode));  // UNMAP
  CHECK(sense_eq(run_cdb(*d, cdb10(0x41, 0, 1)), sense::kInvalidOpcode));                  // WRITE SAME
  CHECK(sense_eq(run_cdb(*d, {0x43, 0, 0, 0, 0, 0, 0, 0, 0, 0}), sense::kInvalidOpcode));  // an MMC command
  CHECK(sense_eq(run_cdb(*d, {0x28, 0, 0}), sense::kInvalidFieldInCdb));                   // cut short
  CHECK(sense_eq(run_cdb(*d, {0, 0, 0, 0, 0, 0x04}), sense::kInvalidFieldInCdb));          // NACA
  CHECK(sense_eq(run_cdb(*d, {0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0}), sense::kInvalidOpcode));  // variable length
  CHECK(sense_eq(run_cdb(*d, {}), sense::kInvalidOpcode));
  // More than one transfer may carry (the limit in the Block Limits page).
  TempDir big;
  const std::string path = big.file("big.raw");
  disk::CreateOptions bo;
  bo.format = disk::Format::kRaw;
  bo.size = 64ull << 20;
  disk::create_disk(path, bo);
  auto b = open_target(path);
  CHECK(sense_eq(run_cdb(*b, cdb12(0xa8, 0, 0x10000)), sense::kInvalidFieldInCdb));
  Command c = b->execute(cdb12(0xa8, 0, 0xffff));
  CHECK(c.io.has_value());
  CHECK_EQ(c.io->length, 0xffffull * 512);
}

TEST(scsi_disk_read_only_refuses_writes) {
  TempDir dir;
  const std::string path = make_image(dir, "a.raw", disk::Format::kRaw);
  auto d = open_target(path, true);
  CHECK(d->read_only());
  CHECK(sense_eq(run_cdb(*d, {0x0a, 0, 0, 0, 1, 0}), sense::kWriteProtected));
  for (uint8_t opcode : {0x2a, 0x2e}) CHECK(sense_eq(run_cdb(*d, cdb10(opcode, 0, 1)), sense::kWriteProtected));
  for (uint8_t opcode : {0xaa, 0xae}) CHECK(sense_eq(run_cdb(*d, cdb12(opcode, 0, 1)), sense::kWriteProtected));
  for (uint8_t opcode : {0x8a, 0x8e}) CHECK(sense_eq(run_cdb(*d, cdb16(opcode, 0, 1)), sense::kWriteProtected));
  CHECK_EQ(sense::kWriteProtected.key, 0x7);
  CHECK(run_cdb(*d, cdb10(0x28, 0, 1)).ok());
  CHECK(run_cdb(*d, cdb10(0x35, 0, 0)).ok());          // nothing to flush
  CHECK(!d->execute(cdb10(0x35, 0, 0)).io.has_value());
  // An image the disk layer opened read-only is write protected even if not asked.
  disk::OpenOptions o;
  o.read_only = true;
  ScsiDisk implied(disk::open_disk(path, o), "s");
  CHECK(implied.read_only());
}

TEST(scsi_disk_io_errors_become_medium_errors) {
  TempDir dir;
  auto d = open_target(make_image(dir, "a.raw", disk::Format::kRaw));
  Command r = d->execute(cdb10(0x28, 0, 1));
  CHECK(r.io.has_value());
  Reply bad = d->finish_io(*r.io, -5, "reading a.raw failed: Input/output error");
  CHECK(bad.status == kStatusCheckCondition && bad.sense == sense::kUnrecoveredRead);
  CHECK(d->last_error().find("Input/output error") != std::string::npos);
  Command w = d->execute(cdb10(0x2a, 0, 1));
  CHECK(d->finish_io(*w.io, -5, "x").sense == sense::kWriteError);
  CHECK(d->finish_io(*w.io, 100, "").sense == sense::kWriteError);  // short
  CHECK(d->finish_io(*w.io, -28, "no space").sense == sense::kSpaceAllocationFailed);
  Command f = d->execute(cdb10(0x35, 0, 0));
  CHECK(f.io && f.io->op == disk::AsyncOp::kFlush);
  CHECK(d->finish_io(*f.io, -5, "x").sense == sense::kWriteError);
  CHECK(d->finish_io(*f.io, 0, "").status == kStatusGood);
}

TEST(scsi_disk_refuses_empty_image) {
  TempDir dir;
  const std::string path = dir.file("empty.raw");
  test::rvh::run("truncate -s 100 '" + path + "'");
  CHECK_THROWS_CODE(ScsiDisk(disk::open_disk(path), "s"), "DISK_SIZE", "at least one 512-byte block");
}

TEST(scsi_disk_saved_state) {
  TempDir dir;
  const std::string path = make_image(dir, "a.raw", disk::Format::kRaw);
  auto d = open_target(path);
  state::Writer w;
  d->save_state(w);
  {
    state::Reader r(w.data(), "test");
    auto commit = d->prepare_load(r);
    commit();
  }
  // A record of a read-only attachment, or of another size, is refused.
  auto ro = open_target(path, true);
  {
    state::Reader r(w.data(), "test");
    CHECK_THROWS_CODE(ro->prepare_load(r), "STATE_INVALID", "read_only");
  }
  TempDir other;
  disk::CreateOptions so;
  so.format = disk::Format::kRaw;
  so.size = 4096;
  disk::create_disk(other.file("b.raw"), so);
  auto small = open_target(other.file("b.raw"));
  {
    state::Reader r(w.data(), "test");
    CHECK_THROWS_CODE(small->prepare_load(r), "STATE_INVALID", "blocks");
  }
  Bytes cut = w.data();
  cut.resize(cut.size() - 1);
  state::Reader r(cut, "test");
  CHECK_THROWS_CODE(d->prepare_load(r), "STATE_INVALID", "");
}

TEST(scsi_disk_replace_and_close) {
  TempDir dir;
  const std::string a = make_image(dir, "a.raw", disk::Format::kRaw);
  const std::string b = make_image(dir, "b.qcow2", disk::Format::kQcow2);
  auto d = open_target(a);
  const Bytes data = pattern(512, 77);
  CHECK(run_io(*d, cdb10(0x2a, 3, 1), data).ok());
  d->flush_disk();
  // Another size, or a read-only image behind a read-write disk: refused, nothing changes.
  TempDir other;
  disk::CreateOptions so;
  so.format = disk::Format::kRaw;
  so.size = 4096;
  disk::create_disk(other.file("small.raw"), so);
  CHECK_THROWS_CODE(d->replace_disk(disk::open_disk(other.file("small.raw"))), "DISK_SIZE_MISMATCH", "bytes");
  disk::OpenOptions ro;
  ro.read_only = true;
  CHECK_THROWS_CODE(d->replace_disk(disk::open_disk(b, ro)), "DISK_READ_ONLY", "read-only");
  CHECK_STR(d->path(), a);
  d->replace_disk(disk::open_disk(b));
  CHECK_STR(d->path(), b);
  CHECK_EQ(run_cdb(*d, cdb10(0x28, 3, 1)).data[0], 0);  // b is empty
  CHECK(run_io(*d, cdb10(0x2a, 5, 1), data).ok());
  CHECK(run_cdb(*d, cdb10(0x28, 5, 1)).data == data);
  d->close_disk();
  CHECK_STR(d->path(), "");
  CHECK(sense_eq(run_cdb(*d, cdb10(0x28, 5, 1)), sense::kNoMedium));
  CHECK(sense_eq(run_cdb(*d, {0x12, 0, 0, 0, 36, 0}), sense::kNoMedium));
  CHECK_EQ(test::rvh::run("qemu-img check -q -f qcow2 '" + b + "'").rc, 0);
}
