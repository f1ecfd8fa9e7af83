// virtio-blk's request path without a guest: a driver side written into guest memory
// (tests/virtio_driver.h) offers many requests at once, and the device keeps them on the
// disk together (io_uring, the thread pool, or the serial path of a driver without a
// parallel one), answers each on the queue it came from, keeps overlapping writes in
// arrival order, lets DISCARD wait for the writes before it, and drops what is in flight
// on a reset without touching guest memory afterwards. The real KVM path is in test/specs/kvm/virtio-blk.test.ts.
#include <sys/eventfd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "devices/virtio/blk.h"
#include "disk/block_device.h"
#include "tests/async_test_helpers.h"
#include "tests/check.h"
#include "tests/virtio_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using berth::test::TestRing;
using berth::test::rvh::TempDir;

namespace {

constexpr uint64_t kRam = 8 << 20;
constexpr uint64_t kHeaders = 0x100000;  // 16 bytes per request
constexpr uint64_t kStatus = 0x110000;   // 1 byte per request
constexpr uint64_t kData = 0x200000;     // 4 KiB per request
constexpr uint32_t kBlock = 4096;

class TestContext final : public DeviceContext {
 public:
  void signal_used(uint16_t queue) override { ++signalled[queue]; }
  void kick() override {}
  void post_completion() override {}
  int completion_fd() override { return events.get(); }
  void fail(const std::string& why) override { failure = why; }
  void config_changed() override {}
  int signalled[VirtioBlk::kMaxQueues] = {};
  std::string failure;
  UniqueFd events{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
};

// One device with its queues activated over rings in guest memory.
struct Rig {
  vmm::GuestMemory mem{kRam};
  TestContext context;
  std::vector<Virtqueue> queues;
  std::vector<TestRing> rings;
  std::unique_ptr<VirtioBlk> blk;

  Rig(std::unique_ptr<disk::BlockDevice> disk, uint16_t nqueues = 1, bool read_only = false) {
    blk = std::make_unique<VirtioBlk>(std::move(disk), "test-serial", read_only, nqueues);
    blk->bind(context);
    for (uint16_t q = 0; q < nqueues; ++q) {
      queues.emplace_back(mem);
      rings.emplace_back(mem, VirtioBlk::kQueueSize, 0x10000 + 0x10000ull * q);
    }
    for (uint16_t q = 0; q < nqueues; ++q) {
      rings[q].attach(queues[q]);
      CHECK(queues[q].activate(false, VirtioBlk::kQueueSize));
    }
    blk->activate(queues, 0);
  }

  // Offers request `i` (header, optional data of `len` bytes at kData + i * kBlock, status)
  // on queue q, using descriptors 3i..3i+2 of that queue.
  void offer(uint16_t q, uint32_t i, uint32_t type, uint64_t sector, uint32_t len = kBlock) {
    TestRing& r = rings[q];
    uint64_t hdr = kHeaders + 16ull * i;
    mem.write_obj<uint32_t>(hdr, type);
    mem.write_obj<uint32_t>(hdr + 4, 0);
    mem.write_obj<uint64_t>(hdr + 8, sector);
    mem.write_obj<uint8_t>(kStatus + i, 0xff);
    uint16_t d = static_cast<uint16_t>(3 * (i % 80));
    if (len) {
      r.set_desc(d, hdr, 16, kDescNext, d + 1);
      r.set_desc(d + 1, kData + uint64_t{kBlock} * i, len, (type == kBlkTypeIn ? kDescWrite : 0) | kDescNext, d + 2);
      r.set_desc(d + 2, kStatus + i, 1, kDescWrite);
    } else {
      r.set_desc(d, hdr, 16, kDescNext, d + 1);
      r.set_desc(d + 1, kStatus + i, 1, kDescWrite);
    }
    r.offer(d);
  }
  void fill(uint32_t i, uint8_t seed) {
    for (uint32_t k = 0; k < kBlock; ++k) mem.write_obj<uint8_t>(kData + uint64_t{kBlock} * i + k, test::async::pattern(seed, k));
  }
  bool holds(uint32_t i, uint8_t seed) {
    for (uint32_t k = 0; k < kBlock; ++k) {
      if (mem.read_obj<uint8_t>(kData + uint64_t{kBlock} * i + k) != test::async::pattern(seed, k)) return false;
    }
    return true;
  }
  uint8_t status(uint32_t i) { return mem.read_obj<uint8_t>(kStatus + i); }
};

std::unique_ptr<disk::BlockDevice> new_disk(const TempDir& dir, disk::Format format, bool direct, const char* name) {
  disk::CreateOptions co;
  co.format = format;
  co.size = 16 << 20;
  std::string path = dir.file(name);
  disk::create_disk(path, co);
  disk::OpenOptions oo;
  oo.direct = direct;
  return disk::open_disk(path, oo);
}

// A device that forwards everything but open_async: the driver without a parallel path
// that BlockDevice::open_async's serial default is for.
class SerialOnly final : public disk::BlockDevice {
 public:
  explicit SerialOnly(std::unique_ptr<disk::BlockDevice> d) : d_(std::move(d)) {}
  uint64_t capacity() const override { return d_->capacity(); }
  bool read_only() const override { return d_->read_only(); }
  void read(uint64_t offset, std::span<uint8_t> buf) override { d_->read(offset, buf); }
  void write(uint64_t offset, std::span<const uint8_t> buf) override { d_->write(offset, buf); }
  void flush() override { d_->flush(); }
  void discard(uint64_t offset, uint64_t length) override { d_->discard(offset, length); }
  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override { d_->write_zeroes(offset, length, may_unmap); }
  disk::Extent block_status(uint64_t offset, uint64_t length) override { return d_->block_status(offset, length); }
  disk::ImageInfo info() const override { return d_->info(); }

 private:
  std::unique_ptr<disk::BlockDevice> d_;
};

// The backend a disk with a parallel path gets here: io_uring unless the environment forces
// the thread pool or the kernel refuses it.
std::string parallel_backend() {
  const char* saved = std::getenv(disk::kBackendEnvVar);
  std::string backend = saved && std::string(saved) == "threads" ? "threads" : "io_uring";
  try {
    disk::open_async_queue(1);
  } catch (const Error& e) {
    SKIP(std::string("no asynchronous queue: ") + e.what());
  }
  if (backend == "io_uring") {
    try {
      disk::open_async_queue(1, disk::AsyncBackend::kIoUring);
    } catch (const Error&) {
      backend = "threads";
    }
  }
  return backend;
}

// 64 writes offered in one go are on the disk together, then 64 reads of them.
void many_in_flight(disk::Format format, bool direct, const char* expected_backend, bool serial_only = false) {
  TempDir dir;
  auto dev = new_disk(dir, format, direct, "many.img");
  if (serial_only) dev = std::make_unique<SerialOnly>(std::move(dev));
  Rig rig(std::move(dev));
  CHECK_STR(rig.blk->io_backend(), expected_backend);
  constexpr uint32_t kN = 64;
  for (uint32_t i = 0; i < kN; ++i) {
    rig.fill(i, static_cast<uint8_t>(i));
    rig.offer(0, i, kBlkTypeOut, uint64_t{i} * 40);  // every 20 KiB: scattered over clusters
  }
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  CHECK_EQ(rig.rings[0].used_idx(), uint16_t{kN});
  for (uint32_t i = 0; i < kN; ++i) CHECK_EQ(rig.status(i), kBlkStatusOk);
  if (std::string(expected_backend) != "serial") CHECK_EQ(rig.blk->peak_in_flight(), kN);
  // Reads into fresh buffers (indices kN..2kN-1), then a flush.
  for (uint32_t i = 0; i < kN; ++i) rig.offer(0, kN + i, kBlkTypeIn, uint64_t{i} * 40);
  rig.offer(0, 2 * kN, kBlkTypeFlush, 0, 0);
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  CHECK_EQ(rig.rings[0].used_idx(), uint16_t{2 * kN + 1});
  for (uint32_t i = 0; i < kN; ++i) {
    CHECK_EQ(rig.status(kN + i), kBlkStatusOk);
    CHECK(rig.holds(kN + i, static_cast<uint8_t>(i)));
  }
  CHECK_EQ(rig.status(2 * kN), kBlkStatusOk);
  CHECK_EQ(rig.blk->completed_requests(), uint64_t{2 * kN + 1});
  CHECK(rig.context.failure.empty());
}

// Writes to the same sectors offered together land in arrival order: the later one waits
// for the earlier one instead of racing it on the disk.
void overlapping_writes_keep_arrival_order(disk::Format format, bool direct) {
  TempDir dir;
  Rig rig(new_disk(dir, format, direct, "overlap.img"));
  for (uint32_t round = 0; round < 20; ++round) {
    for (uint32_t i = 0; i < 8; ++i) {
      rig.fill(i, static_cast<uint8_t>(round * 8 + i));
      rig.offer(0, i, kBlkTypeOut, 0);  // all to sector 0
    }
    rig.blk->queue_notify(0);
    rig.blk->run_until_idle();
    CHECK_EQ(rig.blk->peak_in_flight(), 1u);  // never two of them on the disk together
    rig.offer(0, 9, kBlkTypeIn, 0);
    rig.blk->queue_notify(0);
    rig.blk->run_until_idle();
    CHECK_EQ(rig.status(9), kBlkStatusOk);
    CHECK(rig.holds(9, static_cast<uint8_t>(round * 8 + 7)));  // the last one offered
  }
}

}  // namespace

TEST(virtio_blk_keeps_64_raw_requests_on_io_uring_at_once) {
  const char* saved = std::getenv(disk::kBackendEnvVar);
  if (saved && std::string(saved) == "threads") SKIP("the thread pool is forced by the environment");
  try {
    disk::open_async_queue(1, disk::AsyncBackend::kIoUring);
  } catch (const Error& e) {
    SKIP(std::string("io_uring: ") + e.what());
  }
  many_in_flight(disk::Format::kRaw, true, "io_uring");
}

TEST(virtio_blk_keeps_64_raw_requests_in_the_thread_pool_at_once) {
  ::setenv(disk::kBackendEnvVar, "threads", 1);
  many_in_flight(disk::Format::kRaw, false, "threads");
  ::unsetenv(disk::kBackendEnvVar);
}

TEST(virtio_blk_keeps_64_qcow2_requests_on_the_disk_at_once) {
  many_in_flight(disk::Format::kQcow2, true, parallel_backend().c_str());
}

TEST(virtio_blk_keeps_64_vhd_and_vhdx_requests_on_the_disk_at_once) {
  std::string backend = parallel_backend();
  many_in_flight(disk::Format::kVhd, false, backend.c_str());
  many_in_flight(disk::Format::kVhdx, false, backend.c_str());
}

TEST(virtio_blk_serves_a_driver_without_a_parallel_path_serially) {
  many_in_flight(disk::Format::kVhd, false, "serial", true);
}

TEST(virtio_blk_overlapping_writes_land_in_arrival_order_raw) {
  overlapping_writes_keep_arrival_order(disk::Format::kRaw, true);
}

TEST(virtio_blk_overlapping_writes_land_in_arrival_order_qcow2) {
  overlapping_writes_keep_arrival_order(disk::Format::kQcow2, true);
}

TEST(virtio_blk_overlapping_writes_land_in_arrival_order_vhd_and_vhdx) {
  overlapping_writes_keep_arrival_order(disk::Format::kVhd, false);
  overlapping_writes_keep_arrival_order(disk::Format::kVhdx, false);
}

// Several queues: MQ and num_queues are offered, and each request is answered on its own
// queue's used ring, with that queue's interrupt.
TEST(virtio_blk_answers_each_queue_on_its_own_ring) {
  TempDir dir;
  Rig rig(new_disk(dir, disk::Format::kRaw, true, "mq.img"), 4);
  CHECK((rig.blk->device_features() & kBlkFeatureMq) != 0);
  uint8_t cfg[2] = {};
  rig.blk->read_config(34, cfg);
  CHECK_EQ(cfg[0] | (cfg[1] << 8), 4);
  for (uint16_t q = 0; q < 4; ++q) {
    for (uint32_t k = 0; k < 5; ++k) {
      uint32_t i = q * 5 + k;
      rig.fill(i, static_cast<uint8_t>(i));
      rig.offer(q, i, kBlkTypeOut, uint64_t{i} * 8);
    }
  }
  for (uint16_t q = 0; q < 4; ++q) rig.blk->queue_notify(q);
  rig.blk->run_until_idle();
  for (uint16_t q = 0; q < 4; ++q) {
    CHECK_EQ(rig.rings[q].used_idx(), uint16_t{5});
    CHECK(rig.context.signalled[q] >= 1);
  }
  for (uint32_t i = 0; i < 20; ++i) CHECK_EQ(rig.status(i), kBlkStatusOk);
  // One queue is the default, and offers no MQ.
  TempDir dir1;
  Rig single(new_disk(dir1, disk::Format::kRaw, false, "one.img"));
  CHECK((single.blk->device_features() & kBlkFeatureMq) == 0);
  CHECK_THROWS_CODE(VirtioBlk(new_disk(dir1, disk::Format::kRaw, false, "nine.img"), "x", false, 9), "VIRTIO_SETUP",
                    "1 to 8 queues");
}

// A DISCARD behind writes to the same range waits for them: the range reads as zeroes after.
TEST(virtio_blk_discard_waits_for_the_writes_before_it) {
  TempDir dir;
  Rig rig(new_disk(dir, disk::Format::kQcow2, true, "discard.qcow2"));
  constexpr uint64_t kSeg = 0x120000;
  for (uint32_t i = 0; i < 16; ++i) {
    rig.fill(i, static_cast<uint8_t>(i + 1));
    rig.offer(0, i, kBlkTypeOut, uint64_t{i} * 8);
  }
  // One segment: sectors 0..127 (the 16 writes), no flags.
  rig.mem.write_obj<uint64_t>(kSeg, 0);
  rig.mem.write_obj<uint32_t>(kSeg + 8, 128);
  rig.mem.write_obj<uint32_t>(kSeg + 12, 0);
  TestRing& r = rig.rings[0];
  rig.mem.write_obj<uint32_t>(kHeaders + 16 * 20, kBlkTypeDiscard);
  rig.mem.write_obj<uint64_t>(kHeaders + 16 * 20 + 8, 0);
  rig.mem.write_obj<uint8_t>(kStatus + 20, 0xff);
  r.set_desc(200, kHeaders + 16 * 20, 16, kDescNext, 201);
  r.set_desc(201, kSeg, 16, kDescNext, 202);
  r.set_desc(202, kStatus + 20, 1, kDescWrite);
  r.offer(200);
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  CHECK_EQ(rig.status(20), kBlkStatusOk);
  for (uint32_t i = 0; i < 16; ++i) CHECK_EQ(rig.status(i), kBlkStatusOk);
  for (uint32_t i = 0; i < 16; ++i) rig.offer(0, 30 + i, kBlkTypeIn, uint64_t{i} * 8);
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  for (uint32_t i = 0; i < 16; ++i) {
    for (uint32_t k = 0; k < kBlock; k += 512) CHECK_EQ(rig.mem.read_obj<uint8_t>(kData + uint64_t{kBlock} * (30 + i) + k), uint8_t{0});
  }
}

// A reset with requests on the disk returns once they are done and answers none of them:
// the used ring is untouched, and the device serves a fresh start.
TEST(virtio_blk_reset_drops_requests_in_flight_without_answering_them) {
  TempDir dir;
  Rig rig(new_disk(dir, disk::Format::kRaw, true, "reset.img"));
  for (uint32_t i = 0; i < 64; ++i) {
    rig.fill(i, static_cast<uint8_t>(i));
    rig.offer(0, i, kBlkTypeOut, uint64_t{i} * 8);
  }
  rig.blk->queue_notify(0);  // submitted; completions not taken
  uint16_t used_before = rig.rings[0].used_idx();
  rig.blk->reset();
  CHECK_EQ(rig.rings[0].used_idx(), used_before);
  rig.blk->run_until_idle();  // nothing left: returns at once
  // A fresh start of the same queue.
  for (auto& q : rig.queues) q.reset();
  rig.mem.write(0x10000, std::vector<uint8_t>(0x3000, 0));
  rig.rings[0].avail_idx = 0;
  rig.rings[0].attach(rig.queues[0]);
  CHECK(rig.queues[0].activate(false, VirtioBlk::kQueueSize));
  rig.blk->activate(rig.queues, 0);
  rig.offer(0, 0, kBlkTypeIn, 0);
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  CHECK_EQ(rig.rings[0].used_idx(), uint16_t{1});
  CHECK_EQ(rig.status(0), kBlkStatusOk);
}

// A read-only disk: FLUSH is answered at once, a write is IOERR, and a closed disk answers
// IOERR instead of crashing.
TEST(virtio_blk_read_only_and_closed_disks_answer_with_a_status) {
  TempDir dir;
  disk::CreateOptions co;
  co.format = disk::Format::kRaw;
  co.size = 1 << 20;
  std::string path = dir.file("ro.img");
  disk::create_disk(path, co);
  Rig rig(disk::open_disk(path, {.read_only = true}), 1, true);
  rig.offer(0, 0, kBlkTypeFlush, 0, 0);
  rig.offer(0, 1, kBlkTypeOut, 0);
  rig.offer(0, 2, kBlkTypeIn, 0);
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  CHECK_EQ(rig.status(0), kBlkStatusOk);
  CHECK_EQ(rig.status(1), kBlkStatusIoErr);
  CHECK_EQ(rig.status(2), kBlkStatusOk);
  rig.blk->close_disk();
  rig.offer(0, 3, kBlkTypeIn, 0);
  rig.blk->queue_notify(0);
  rig.blk->run_until_idle();
  CHECK_EQ(rig.status(3), kBlkStatusIoErr);
}
