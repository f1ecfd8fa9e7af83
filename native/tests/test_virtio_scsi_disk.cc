// A SCSI hard disk behind virtio-scsi (virtio-mmio transport and its I/O thread), beside a
// DVD drive: writes from scattered data-out buffers on the asynchronous disk path, reads
// back, flushes, short buffers, write protect, and what qemu-img finds in the image.
#include <chrono>
#include <cstring>
#include <thread>

#include "devices/scsi/cdrom.h"
#include "devices/scsi/disk.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/scsi.h"
#include "disk/block_device.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"
#include "tests/mmio_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using berth::devices::scsi::ScsiCdrom;
using berth::devices::scsi::ScsiDisk;
using berth::test::TestRing;
using berth::test::rvh::TempDir;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kRam = 8 << 20;
constexpr uint64_t kReq = 0x100000;
constexpr uint64_t kResp = 0x101000;
constexpr uint64_t kData = 0x200000;
constexpr uint32_t kRespBytes = 108;
constexpr uint64_t kDiskBytes = 1 << 20;

struct Rig {
  TempDir dir;
  std::string path;
  vmm::GuestMemory mem{kRam};
  test::CountingInterrupt irq;
  std::shared_ptr<ScsiDisk> disk;
  std::unique_ptr<VirtioMmio> m;
  TestRing control{mem, 16, 0x10000}, events{mem, 16, 0x20000}, requests{mem, 128, 0x30000};

  Rig(disk::Format format, bool read_only) {
    path = dir.file(format == disk::Format::kRaw ? "d.raw" : "d.qcow2");
    disk::CreateOptions o;
    o.format = format;
    o.size = kDiskBytes;
    disk::create_disk(path, o);
    disk::OpenOptions oo;
    oo.read_only = read_only;
    disk = std::make_shared<ScsiDisk>(disk::open_disk(path, oo), "berth-slot-1", read_only);
    auto dvd = std::make_shared<ScsiCdrom>("dvd");
    m = std::make_unique<VirtioMmio>(mem, std::make_shared<VirtioScsi>(std::vector<std::shared_ptr<devices::scsi::Target>>{disk, dvd}), irq);
    CHECK(test::negotiate(*m));
    test::setup_queue(*m, 0, control);
    test::setup_queue(*m, 1, events);
    test::setup_queue(*m, 2, requests);
    test::driver_ok(*m);
  }

  // One command to target 0: header, data-out buffers (readable), response, data-in buffers.
  void command(const Bytes& cdb, const std::vector<Bytes>& data_out, std::vector<uint32_t> data_in = {}) {
    Bytes req(51, 0);
    req[0] = 1;
    req[2] = 0x40;
    std::memcpy(req.data() + 19, cdb.data(), cdb.size());
    mem.write(kReq, req);
    mem.write(kResp, Bytes(kRespBytes, 0xee));
    uint32_t d = 0;
    requests.set_desc(d, kReq, 51, kDescNext, static_cast<uint16_t>(d + 1));
    ++d;
    uint64_t at = kData;
    for (const Bytes& b : data_out) {
      mem.write(at, b);
      requests.set_desc(d, at, static_cast<uint32_t>(b.size()), kDescNext, static_cast<uint16_t>(d + 1));
      ++d;
      at += b.size() + 16;
    }
    requests.set_desc(d, kResp, kRespBytes, static_cast<uint16_t>(kDescWrite | (data_in.empty() ? 0 : kDescNext)),
                      static_cast<uint16_t>(d + 1));
    ++d;
    for (size_t i = 0; i < data_in.size(); ++i) {
      const bool last = i + 1 == data_in.size();
      requests.set_desc(d, at, data_in[i], static_cast<uint16_t>(kDescWrite | (last ? 0 : kDescNext)), static_cast<uint16_t>(d + 1));
      ++d;
      at += data_in[i] + 16;
    }
    const uint16_t before = requests.used_idx();
    requests.offer(0);
    test::wr(*m, kMmioQueueNotify, 2);
    for (int i = 0; i < 5000 && requests.used_idx() != static_cast<uint16_t>(before + 1); ++i) {
      m->sync();
      if (requests.used_idx() != static_cast<uint16_t>(before + 1)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CHECK_EQ(requests.used_idx(), static_cast<uint16_t>(before + 1));
  }
  // Where data-in starts after `out` data-out buffers.
  uint64_t data_in_at(const std::vector<Bytes>& out) {
    uint64_t at = kData;
    for (const Bytes& b : out) at += b.size() + 16;
    return at;
  }
  uint32_t resp32(uint32_t at) { return mem.read_obj<uint32_t>(kResp + at); }
  uint8_t status() { return mem.read_obj<uint8_t>(kResp + 10); }
  uint8_t response() { return mem.read_obj<uint8_t>(kResp + 11); }
  uint8_t sense(uint32_t i) { return mem.read_obj<uint8_t>(kResp + 12 + i); }
  uint32_t used_len() { return requests.used_len(static_cast<uint16_t>(requests.used_idx() - 1)); }
};

Bytes cdb10(uint8_t opcode, uint32_t lba, uint16_t count) {
  Bytes c(10, 0);
  c[0] = opcode;
  c[2] = static_cast<uint8_t>(lba >> 24);
  c[3] = static_cast<uint8_t>(lba >> 16);
  c[4] = static_cast<uint8_t>(lba >> 8);
  c[5] = static_cast<uint8_t>(lba);
  c[7] = static_cast<uint8_t>(count >> 8);
  c[8] = static_cast<uint8_t>(count);
  return c;
}

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed ^ (i * 7));
  return b;
}

}  // namespace

TEST(virtio_scsi_disk_writes_reads_and_flushes) {
  for (disk::Format f : {disk::Format::kRaw, disk::Format::kQcow2}) {
    Rig r(f, false);
    // INQUIRY through the controller says disk; the DVD drive is target 1.
    r.command({0x12, 0, 0, 0, 36, 0}, {}, {36});
    CHECK_EQ(r.mem.read_obj<uint8_t>(kData), 0x00);
    // 3 blocks written from three scattered data-out buffers.
    const Bytes data = pattern(3 * 512, 0x5a);
    std::vector<Bytes> out = {Bytes(data.begin(), data.begin() + 700), Bytes(data.begin() + 700, data.begin() + 1000),
                              Bytes(data.begin() + 1000, data.end())};
    r.command(cdb10(0x2a, 7, 3), out);
    CHECK_EQ(r.response(), kScsiSOk);
    CHECK_EQ(r.status(), 0);
    CHECK_EQ(r.resp32(4), 0u);               // residual
    CHECK_EQ(r.used_len(), kRespBytes);      // nothing of the writable part beyond the response
    r.command(cdb10(0x35, 0, 0), {});        // SYNCHRONIZE CACHE
    CHECK_EQ(r.status(), 0);
    r.command(cdb10(0x28, 7, 3), {}, {512, 1024});
    CHECK_EQ(r.status(), 0);
    CHECK_EQ(r.used_len(), kRespBytes + 3 * 512);
    Bytes back(512), back2(1024);
    r.mem.read(kData, back);
    r.mem.read(kData + 512 + 16, back2);
    back.insert(back.end(), back2.begin(), back2.end());
    CHECK(back == data);
    // Data-out larger than the write: the residual is what was left over.
    r.command(cdb10(0x2a, 20, 1), {pattern(2048, 1)});
    CHECK_EQ(r.status(), 0);
    CHECK_EQ(r.resp32(4), 2048u - 512);
    // Smaller: OVERRUN, nothing written.
    r.command(cdb10(0x2a, 30, 2), {pattern(512, 2)});
    CHECK_EQ(r.response(), kScsiSOverrun);
    // Out of range: CHECK CONDITION with ILLEGAL REQUEST / LBA OUT OF RANGE as autosense.
    r.command(cdb10(0x2a, kDiskBytes / 512, 1), {pattern(512, 3)});
    CHECK_EQ(r.status(), 2);
    CHECK_EQ(r.sense(2), 5);
    CHECK_EQ(r.sense(12), 0x21);
    CHECK_EQ(r.m->status() & kStatusNeedsReset, 0u);
    r.m.reset();  // the controller closes; the image is judged by qemu-img
    r.disk.reset();
    const std::string fmt = f == disk::Format::kRaw ? "raw" : "qcow2";
    if (f == disk::Format::kQcow2) CHECK_EQ(test::rvh::run("qemu-img check -q -f qcow2 '" + r.path + "'").rc, 0);
    const std::string flat = r.dir.file("flat.raw");
    CHECK_EQ(test::rvh::run("qemu-img convert -f " + fmt + " -O raw '" + r.path + "' '" + flat + "'").rc, 0);
    const std::string bytes = test::rvh::read_whole(flat);
    CHECK(std::memcmp(bytes.data() + 7 * 512, data.data(), data.size()) == 0);
    const Bytes first = pattern(512, 1);
    CHECK(std::memcmp(bytes.data() + 20 * 512, first.data(), 512) == 0);
    CHECK_EQ(bytes[30 * 512], 0);
  }
}

TEST(virtio_scsi_disk_many_writes_in_flight_keep_their_order) {
  Rig r(disk::Format::kRaw, false);
  // Many overlapping writes offered at once, then a read: the last write wins.
  constexpr uint16_t kCount = 8;
  Bytes req(51, 0);
  req[0] = 1;
  req[2] = 0x40;
  const Bytes cdb = cdb10(0x2a, 4, 2);
  std::memcpy(req.data() + 19, cdb.data(), cdb.size());
  for (uint16_t i = 0; i < kCount; ++i) {
    const uint64_t base = kData + i * 0x2000;
    r.mem.write(base, req);
    r.mem.write(base + 0x100, pattern(1024, static_cast<uint8_t>(i)));
    const uint16_t d = static_cast<uint16_t>(i * 3);
    r.requests.set_desc(d, base, 51, kDescNext, static_cast<uint16_t>(d + 1));
    r.requests.set_desc(d + 1u, base + 0x100, 1024, kDescNext, static_cast<uint16_t>(d + 2));
    r.requests.set_desc(d + 2u, base + 0x800, kRespBytes, kDescWrite, 0);
    r.requests.offer(d);
  }
  const uint16_t before = r.requests.used_idx();
  test::wr(*r.m, kMmioQueueNotify, 2);
  for (int i = 0; i < 5000 && r.requests.used_idx() != static_cast<uint16_t>(before + kCount); ++i) {
    r.m->sync();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK_EQ(r.requests.used_idx(), static_cast<uint16_t>(before + kCount));
  r.command(cdb10(0x28, 4, 2), {}, {1024});
  Bytes back(1024);
  r.mem.read(r.data_in_at({}), back);
  CHECK(back == pattern(1024, kCount - 1));
}

TEST(virtio_scsi_disk_read_only) {
  Rig r(disk::Format::kRaw, true);
  r.command(cdb10(0x2a, 0, 1), {pattern(512, 9)});
  CHECK_EQ(r.response(), kScsiSOk);
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.sense(2), 7);  // DATA PROTECT
  CHECK_EQ(r.sense(12), 0x27);
  r.command({0x1a, 0x08, 0x3f, 0, 255, 0}, {}, {255});
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData + 2), 0x80);  // WP
  r.command(cdb10(0x28, 0, 1), {}, {512});
  CHECK_EQ(r.status(), 0);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData), 0);
}
