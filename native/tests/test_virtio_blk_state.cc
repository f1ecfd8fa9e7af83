// virtio-blk's saved state, freeze and image replacement behind the real transport: a
// driver whose requests completed before the save carries on against a restored device
// and reads back what it wrote; freeze waits for a request the disk still holds; a live
// checkpoint moves the running device onto an overlay of its image; and records made for
// another disk are refused.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "disk/block_device.h"
#include "tests/async_test_helpers.h"
#include "tests/check.h"
#include "tests/mmio_driver.h"
#include "tests/state_helpers.h"
#include "tests/virtio_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using namespace berth::test;
using namespace berth::test::state_bytes;
using berth::test::rvh::TempDir;

namespace {

constexpr uint64_t kRam = 8 << 20;
constexpr uint64_t kRing = 0x10000;
constexpr uint64_t kHeaders = 0x100000;  // 16 bytes per request
constexpr uint64_t kStatus = 0x110000;   // 1 byte per request
constexpr uint64_t kData = 0x200000;     // 4 KiB per request
constexpr uint32_t kBlock = 4096;
constexpr uint64_t kDiskSize = 16 << 20;

std::string new_image(const TempDir& dir, const char* name, disk::Format format = disk::Format::kRaw,
                      uint64_t size = kDiskSize, const std::string& backing = "") {
  disk::CreateOptions co;
  co.format = format;
  co.size = size;
  co.backing_path = backing;
  std::string path = dir.file(name);
  disk::create_disk(path, co);
  return path;
}

// The guest side of one virtio-blk queue: request i uses descriptors 3i..3i+2, its header
// at kHeaders + 16i, its data at kData + 4 KiB * i and its status at kStatus + i.
struct BlkDriver {
  vmm::GuestMemory& mem;
  TestRing ring{mem, VirtioBlk::kQueueSize, kRing};

  void offer(uint32_t i, uint32_t type, uint64_t sector) {
    uint64_t hdr = kHeaders + 16ull * i;
    mem.write_obj<uint32_t>(hdr, type);
    mem.write_obj<uint32_t>(hdr + 4, 0);
    mem.write_obj<uint64_t>(hdr + 8, sector);
    mem.write_obj<uint8_t>(kStatus + i, 0xff);
    uint16_t d = static_cast<uint16_t>(3 * (i % 80));
    ring.set_desc(d, hdr, 16, kDescNext, d + 1);
    ring.set_desc(d + 1, kData + uint64_t{kBlock} * i, kBlock, (type == kBlkTypeIn ? kDescWrite : 0) | kDescNext, d + 2);
    ring.set_desc(d + 2, kStatus + i, 1, kDescWrite);
    ring.offer(d);
  }
  void fill(uint32_t i, uint8_t seed) {
    for (uint32_t k = 0; k < kBlock; ++k) mem.write_obj<uint8_t>(kData + uint64_t{kBlock} * i + k, async::pattern(seed, k));
  }
  bool holds(uint32_t i, uint8_t seed) {
    for (uint32_t k = 0; k < kBlock; ++k) {
      if (mem.read_obj<uint8_t>(kData + uint64_t{kBlock} * i + k) != async::pattern(seed, k)) return false;
    }
    return true;
  }
  uint8_t status(uint32_t i) { return mem.read_obj<uint8_t>(kStatus + i); }
  // Completions arrive from the disk on their own time: waits (up to 10 s) for n answers.
  bool wait_used(uint16_t n) {
    for (int i = 0; i < 10000; ++i) {
      if (ring.used_idx() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
};

// A device behind the transport, brought up by the driver. Images are opened buffered, as
// the machine opens them; every batch a test waits for ends in a write or a flush, whose
// completion wakes the I/O thread (io_uring signals the completion eventfd only for
// requests its workers finish).
struct Rig {
  std::shared_ptr<VirtioBlk> blk;
  CountingInterrupt irq;
  VirtioMmio mmio;
  Rig(vmm::GuestMemory& mem, std::unique_ptr<disk::BlockDevice> disk, uint16_t queues = 1, bool bring_up = true)
      : blk(std::make_shared<VirtioBlk>(std::move(disk), "state-test", false, queues)), mmio(mem, blk, irq) {
    if (!bring_up) return;
    CHECK(negotiate(mmio, kFeatureVersion1 | kFeatureEventIdx | kBlkFeatureFlush));
    setup_queue(mmio, 0, TestRing(mem, VirtioBlk::kQueueSize, kRing));
    driver_ok(mmio);
  }
};

// A raw image whose writes wait until the test opens the gate: the disk "still holds" a
// request for as long as the test likes. It has no parallel path of its own, so the
// device's requests run on the serial path's thread and only that thread waits.
class GatedDisk final : public disk::BlockDevice {
 public:
  explicit GatedDisk(std::unique_ptr<disk::BlockDevice> d) : d_(std::move(d)) {}
  uint64_t capacity() const override { return d_->capacity(); }
  bool read_only() const override { return d_->read_only(); }
  void read(uint64_t offset, std::span<uint8_t> buf) override { d_->read(offset, buf); }
  void write(uint64_t offset, std::span<const uint8_t> buf) override {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    lock.unlock();
    d_->write(offset, buf);
  }
  void flush() override { d_->flush(); }
  void discard(uint64_t offset, uint64_t length) override { d_->discard(offset, length); }
  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override { d_->write_zeroes(offset, length, may_unmap); }
  disk::Extent block_status(uint64_t offset, uint64_t length) override { return d_->block_status(offset, length); }
  disk::ImageInfo info() const override { return d_->info(); }

  bool wait_entered() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::unique_ptr<disk::BlockDevice> d_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

}  // namespace

TEST(virtio_blk_state_restored_driver_reads_what_it_wrote_and_keeps_writing) {
  TempDir dir;
  const std::string path = new_image(dir, "disk.qcow2", disk::Format::kQcow2);
  vmm::GuestMemory mem(kRam);
  BlkDriver driver{mem};
  std::vector<uint8_t> bytes;
  {
    Rig a(mem, disk::open_disk(path));
    for (uint32_t i = 0; i < 8; ++i) {
      driver.fill(i, static_cast<uint8_t>(i + 1));
      driver.offer(i, kBlkTypeOut, uint64_t{i} * 64);
    }
    wr(a.mmio, kMmioQueueNotify, 0);
    CHECK(driver.wait_used(8));
    a.mmio.freeze();
    bytes = save(a.mmio);
    CHECK_EQ(a.blk->completed_requests(), uint64_t{8});
  }  // the old machine is gone: its image is closed
  Rig b(mem, disk::open_disk(path), 1, false);
  load(b.mmio, bytes);
  CHECK_EQ(b.blk->completed_requests(), uint64_t{8});
  CHECK_EQ(rd(b.mmio, kMmioStatus) & kStatusDriverOk, kStatusDriverOk);
  for (uint32_t i = 0; i < 8; ++i) driver.offer(8 + i, kBlkTypeIn, uint64_t{i} * 64);
  driver.fill(16, 0x77);
  driver.offer(16, kBlkTypeOut, 1024);
  driver.offer(17, kBlkTypeFlush, 0);
  wr(b.mmio, kMmioQueueNotify, 0);
  CHECK(driver.wait_used(18));
  for (uint32_t i = 0; i < 8; ++i) {
    CHECK_EQ(driver.status(8 + i), kBlkStatusOk);
    CHECK(driver.holds(8 + i, static_cast<uint8_t>(i + 1)));
  }
  CHECK_EQ(driver.status(16), kBlkStatusOk);
  CHECK_EQ(driver.status(17), kBlkStatusOk);
  b.mmio.freeze();
  b.blk->flush_disk();
  b.mmio.thaw();
  std::vector<uint8_t> back(kBlock);
  disk::open_disk(path, {.read_only = true})->read(1024 * 512, back);
  CHECK_EQ(back[100], async::pattern(0x77, 100));
}

TEST(virtio_blk_freeze_waits_for_the_request_on_the_disk) {
  TempDir dir;
  vmm::GuestMemory mem(kRam);
  BlkDriver driver{mem};
  auto gated = std::make_unique<GatedDisk>(disk::open_disk(new_image(dir, "gated.img")));
  GatedDisk* gate = gated.get();
  Rig a(mem, std::move(gated));
  CHECK_STR(a.blk->io_backend(), "serial");
  driver.fill(0, 9);
  driver.offer(0, kBlkTypeOut, 8);
  wr(a.mmio, kMmioQueueNotify, 0);
  CHECK(gate->wait_entered());  // the write is on the disk
  CHECK_THROWS_CODE(a.blk->replace_disk(disk::open_disk(new_image(dir, "other.img"))), "VIRTIO_SETUP",
                    "replacing the disk needs a frozen device");
  std::atomic<bool> frozen{false};
  std::thread freezer([&] {
    a.mmio.freeze();
    frozen = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(!frozen.load());  // still waiting for the disk
  CHECK_EQ(driver.ring.used_idx(), 0);
  gate->open();
  freezer.join();
  // freeze returned with the request answered and nothing left on the disk.
  CHECK_EQ(driver.ring.used_idx(), 1);
  CHECK_EQ(driver.status(0), kBlkStatusOk);
  CHECK((rd(a.mmio, kMmioInterruptStatus) & kInterruptUsedBuffer) != 0);
  auto bytes = save(a.mmio);
  CHECK(!bytes.empty());
  a.mmio.thaw();
}

TEST(virtio_blk_replace_disk_moves_a_running_device_onto_an_overlay) {
  TempDir dir;
  const std::string base = new_image(dir, "base.qcow2", disk::Format::kQcow2);
  vmm::GuestMemory mem(kRam);
  BlkDriver driver{mem};
  Rig a(mem, disk::open_disk(base));
  driver.fill(0, 3);
  driver.offer(0, kBlkTypeOut, 0);
  wr(a.mmio, kMmioQueueNotify, 0);
  CHECK(driver.wait_used(1));

  a.mmio.freeze();
  a.blk->flush_disk();  // the base's metadata on disk before the overlay reads it
  const std::string overlay = new_image(dir, "overlay.qcow2", disk::Format::kQcow2, 0, base);
  CHECK_THROWS_CODE(a.blk->replace_disk(disk::open_disk(new_image(dir, "small.img", disk::Format::kRaw, 8 << 20))),
                    "DISK_SIZE_MISMATCH", "is 8388608 bytes, but the guest's disk");
  CHECK_THROWS_CODE(a.blk->replace_disk(disk::open_disk(overlay, {.read_only = true})), "DISK_READ_ONLY",
                    "is read-only, but the guest writes to");
  CHECK_STR(a.blk->path(), base);
  a.blk->replace_disk(disk::open_disk(overlay));
  CHECK_STR(a.blk->path(), overlay);
  a.mmio.thaw();

  driver.offer(1, kBlkTypeIn, 0);  // through the overlay, from the base
  driver.fill(2, 4);
  driver.offer(2, kBlkTypeOut, 64);  // into the overlay only
  driver.offer(3, kBlkTypeFlush, 0);
  wr(a.mmio, kMmioQueueNotify, 0);
  CHECK(driver.wait_used(4));
  CHECK(driver.holds(1, 3));
  CHECK_EQ(driver.status(2), kBlkStatusOk);
  std::vector<uint8_t> block(kBlock);
  disk::open_disk(base, {.read_only = true})->read(64 * 512, block);
  CHECK_EQ(block[7], 0);  // the base did not change
  disk::open_disk(overlay, {.read_only = true})->read(64 * 512, block);
  CHECK_EQ(block[7], async::pattern(4, 7));
}

TEST(virtio_blk_state_refuses_a_record_made_for_another_disk) {
  TempDir dir;
  vmm::GuestMemory mem(kRam);
  Rig a(mem, disk::open_disk(new_image(dir, "a.img")));
  a.mmio.freeze();
  auto bytes = save(a.mmio);
  Rig two_queues(mem, disk::open_disk(new_image(dir, "b.img")), 2, false);
  CHECK_THROWS_CODE(load(two_queues.mmio, bytes), "STATE_INVALID", "queue_count is 1, but this virtio-blk has 2");
  const std::string small = new_image(dir, "small.img", disk::Format::kRaw, 8 << 20);
  Rig smaller(mem, disk::open_disk(small), 1, false);
  CHECK_THROWS_CODE(load(smaller.mmio, bytes), "STATE_INVALID",
                    "virtio-blk: capacity_sectors is 32768, but " + small + " has 16384");
  auto ro = std::make_shared<VirtioBlk>(disk::open_disk(new_image(dir, "c.img")), "ro", true);
  CountingInterrupt irq;
  VirtioMmio read_only(mem, ro, irq);
  CHECK_THROWS_CODE(load(read_only, bytes), "STATE_INVALID", "read_only is false, but the disk is attached read-only");
  a.mmio.thaw();
}
