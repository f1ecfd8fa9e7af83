// AsyncDisk (disk/async_disk.h) through BlockDevice::open_async on raw images, on both
// backends, buffered and O_DIRECT: a randomized workload at depth 32 (aligned and unaligned,
// vectored, with flushes) checked request by request and at the end against an in-memory
// model (and the same on a host block device, a loop device, where one can be set up); the
// end of a file that shrank behind the disk's back; range, read-only and queue
// errors; destruction with requests in flight; and the serial path (over the VHDX and VHD
// drivers).
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>

#include "disk/aligned_io.h"
#include "disk/async_disk.h"
#include "common/unique_fd.h"
#include "disk/block_device.h"
#include "disk/serial_async_disk.h"
#include "tests/async_test_helpers.h"

using namespace berth::disk;
using namespace berth::test::async;
using berth::test::rvh::Loop;
using berth::test::rvh::TempDir;
using berth::test::rvh::write_whole;

namespace {

std::unique_ptr<BlockDevice> make_raw(const TempDir& dir, uint64_t size, bool direct, bool read_only = false) {
  CreateOptions co;
  co.format = Format::kRaw;
  co.size = size;
  std::string path = dir.file("disk.raw");
  if (!std::filesystem::exists(path)) create_disk(path, co);
  OpenOptions oo;
  oo.direct = direct;
  oo.read_only = read_only;
  return open_disk(path, oo);
}

std::unique_ptr<AsyncDisk> open_async_or_skip(BlockDevice& disk, unsigned depth, AsyncBackend b) {
  try {
    auto a = disk.open_async(depth, b);
    CHECK(a != nullptr);
    return a;
  } catch (const berth::Error& e) {
    if (b == AsyncBackend::kIoUring && e.code() == "DISK_UNSUPPORTED") SKIP(std::string("io_uring: ") + e.what());
    throw;
  }
}

// One request of the randomized workload, kept until its completion is checked.
struct Pending {
  AsyncOp op;
  uint64_t offset = 0;
  uint64_t length = 0;
  AlignedBytes memory;
  uint8_t* data = nullptr;
  std::vector<uint8_t> expected;  // reads: the model's bytes when it was submitted
};

// The disk starts as zeroes; its AsyncDisk is destroyed at the end, and then the disk's
// synchronous read must see the model.
void random_workload(BlockDevice& disk, std::unique_ptr<AsyncDisk> aio, uint32_t seed) {
  const uint64_t size = disk.capacity();
  constexpr unsigned kDepth = 32;
  CHECK_EQ(aio->depth(), kDepth);
  std::vector<uint8_t> model(size, 0);
  std::mt19937 rng(seed);
  auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
  std::map<uint64_t, Pending> pending;
  uint64_t next_tag = 1, completed = 0, unaligned = 0, max_in_flight = 0;
  auto complete = [&](unsigned wait_for) {
    AsyncCompletion got[kDepth];
    size_t n = aio->harvest(got, wait_for);
    for (size_t i = 0; i < n; ++i) {
      auto it = pending.find(got[i].tag);
      CHECK(it != pending.end());
      if (it == pending.end()) continue;
      Pending& p = it->second;
      CHECK_EQ(got[i].result, int64_t(p.op == AsyncOp::kFlush ? 0 : p.length));
      if (p.op == AsyncOp::kRead) CHECK(std::memcmp(p.data, p.expected.data(), p.length) == 0);
      pending.erase(it);
      ++completed;
    }
  };
  // Requests in flight together never overlap where one of them writes.
  auto conflicts = [&](AsyncOp op, uint64_t off, uint64_t len) {
    for (const auto& [tag, p] : pending) {
      if (p.op == AsyncOp::kFlush || (op == AsyncOp::kRead && p.op == AsyncOp::kRead)) continue;
      if (off < p.offset + p.length && p.offset < off + len) return true;
    }
    return false;
  };
  for (int i = 0; i < 3000; ++i) {
    uint64_t kind = pick(0, 99);
    AsyncOp op = kind < 55 ? AsyncOp::kWrite : kind < 97 ? AsyncOp::kRead : AsyncOp::kFlush;
    Pending p;
    p.op = op;
    std::vector<iovec> iov;
    if (op != AsyncOp::kFlush) {
      bool aligned_request = pick(0, 9) < 8;
      uint64_t unit = aligned_request ? 4096 : pick(0, 1) ? 512 : 1;
      p.length = pick(1, 16) * unit * (unit == 1 ? pick(1, 3000) : 1);
      p.offset = pick(0, (size - p.length) / unit) * unit;
      unaligned += !aligned_request;
      // Buffer memory: page-aligned, or (for an unaligned request) shifted by a few bytes.
      size_t shift = aligned_request ? 0 : pick(0, 64);
      p.memory = aligned_alloc_bytes(p.length + shift);
      p.data = p.memory.get() + shift;
      // One to three buffers, split at unit boundaries.
      uint64_t at = 0, pieces = pick(1, 3);
      for (uint64_t k = 0; k < pieces && at < p.length; ++k) {
        uint64_t rest = p.length - at;
        uint64_t n = k + 1 == pieces ? rest : std::max<uint64_t>(unit, rest / unit / 2 * unit);
        n = std::min(n, rest);
        iov.push_back({p.data + at, n});
        at += n;
      }
      while (pending.size() >= kDepth || conflicts(op, p.offset, p.length)) complete(1);
      if (op == AsyncOp::kWrite) {
        for (uint64_t k = 0; k < p.length; ++k) p.data[k] = static_cast<uint8_t>(rng());
        std::memcpy(model.data() + p.offset, p.data, p.length);
      } else {
        p.expected.assign(model.begin() + static_cast<std::ptrdiff_t>(p.offset),
                          model.begin() + static_cast<std::ptrdiff_t>(p.offset + p.length));
      }
    } else {
      while (pending.size() >= kDepth) complete(1);
    }
    uint64_t tag = next_tag++;
    pending.emplace(tag, std::move(p));
    aio->submit({op, pending.at(tag).offset, iov, tag});
    max_in_flight = std::max<uint64_t>(max_in_flight, aio->in_flight());
    if (pick(0, 7) == 0) complete(0);  // take what is there, without waiting
  }
  while (!pending.empty()) complete(kDepth);
  CHECK_EQ(completed, next_tag - 1);
  CHECK_EQ(aio->in_flight(), 0u);
  CHECK(unaligned > 0);
  CHECK(max_in_flight >= kDepth / 2);
  aio.reset();
  std::vector<uint8_t> back(size);
  disk.read(0, back);
  CHECK(back == model);
}

void raw_workload(AsyncBackend b, bool direct, uint32_t seed) {
  TempDir dir;
  auto disk = make_raw(dir, 8 << 20, direct);
  auto aio = open_async_or_skip(*disk, 32, b);
  CHECK_STR(aio->backend(), backend_name(b));
  CHECK_EQ(aio->direct(), direct);
  random_workload(*disk, std::move(aio), seed);
}

void workload_buffered(AsyncBackend b) { raw_workload(b, false, 15); }
void workload_direct(AsyncBackend b) { raw_workload(b, true, 1532); }

// A host block device (a loop device over a file of zeroes; O_DIRECT at its block size).
void host_device_workload(AsyncBackend b) {
  TempDir dir;
  std::string backing = dir.file("backing.raw");
  write_whole(backing, std::string(8 << 20, '\0'));
  Loop loop(backing);
  if (!loop.ok()) SKIP("no loop device (needs root and losetup)");
  auto disk = open_disk(loop.dev);
  CHECK(disk->info().format == Format::kHostDevice);
  auto aio = open_async_or_skip(*disk, 32, b);
  CHECK(aio->direct());
  random_workload(*disk, std::move(aio), 77);
}

}  // namespace

TEST_BOTH_BACKENDS(disk_async_raw_random_workload_depth32_buffered, workload_buffered)
TEST_BOTH_BACKENDS(disk_async_raw_random_workload_depth32_direct, workload_direct)
TEST_BOTH_BACKENDS(disk_async_host_device_random_workload_depth32, host_device_workload)

namespace {

// The image file shrinks behind the open disk: what is past its new end reads as zeroes,
// with or without O_DIRECT (a short read ending mid-block there).
void end_of_file_reads_as_zeroes(AsyncBackend b) {
  for (bool direct : {false, true}) {
    TempDir dir;
    auto disk = make_raw(dir, 64 * 1024, direct);
    std::vector<uint8_t> ones(64 * 1024, 1);
    disk->write(0, ones);
    disk->flush();
    auto aio = open_async_or_skip(*disk, 4, b);
    CHECK_EQ(::truncate(dir.file("disk.raw").c_str(), 40000), 0);
    AlignedBytes buf = aligned_alloc_bytes(64 * 1024);
    std::memset(buf.get(), 0xee, 64 * 1024);
    iovec iov[2] = {{buf.get(), 32 * 1024}, {buf.get() + 32 * 1024, 32 * 1024}};
    aio->submit({AsyncOp::kRead, 0, iov, 5});
    AsyncCompletion c;
    CHECK_EQ(aio->harvest(std::span<AsyncCompletion>(&c, 1), 1), size_t(1));
    CHECK_EQ(c.tag, uint64_t(5));
    CHECK_EQ(c.result, int64_t(64 * 1024));
    CHECK(std::all_of(buf.get(), buf.get() + 40000, [](uint8_t v) { return v == 1; }));
    CHECK(std::all_of(buf.get() + 40000, buf.get() + 64 * 1024, [](uint8_t v) { return v == 0; }));
  }
}

void refusals(AsyncBackend b) {
  TempDir dir;
  auto disk = make_raw(dir, 1 << 20, false);
  auto aio = open_async_or_skip(*disk, 2, b);
  std::vector<uint8_t> buf(8192);
  iovec iov{buf.data(), buf.size()};
  CHECK_THROWS_CODE(aio->submit({AsyncOp::kRead, (1 << 20) - 4096, {&iov, 1}, 1}), "DISK_RANGE", "outside");
  aio->submit({AsyncOp::kWrite, 0, {&iov, 1}, 1});
  aio->submit({AsyncOp::kRead, 8192, {&iov, 1}, 2});
  CHECK_THROWS_CODE(aio->submit({AsyncOp::kFlush, 0, {}, 3}), "DISK_QUEUE_FULL", "2 requests in flight");
  AsyncCompletion out[2];
  size_t n = 0;
  while (n < 2) n += aio->harvest(std::span<AsyncCompletion>(out + n, 2 - n), 1);
  CHECK_EQ(out[0].result + out[1].result, int64_t(2 * 8192));
  CHECK_STR(aio->error_for({1, -ENOSPC}).code(), "DISK_NO_SPACE");
  berth::Error io = aio->error_for({1, -EIO});
  CHECK_STR(io.code(), "DISK_IO");
  CHECK(std::string(io.what()).find("disk.raw") != std::string::npos);
  aio.reset();
  disk.reset();
  auto ro = make_raw(dir, 1 << 20, false, true);
  auto ro_aio = open_async_or_skip(*ro, 2, b);
  CHECK_THROWS_CODE(ro_aio->submit({AsyncOp::kWrite, 0, {&iov, 1}, 1}), "DISK_READ_ONLY", "read-only");
  ro_aio->submit({AsyncOp::kFlush, 0, {}, 9});  // nothing to make durable
  CHECK_EQ(ro_aio->harvest(out, 1), size_t(1));
  CHECK_EQ(out[0].result, int64_t(0));
}

// The AsyncDisk keeps its own descriptor, and waits for its requests when destroyed.
void destroyed_with_requests_in_flight(AsyncBackend b) {
  TempDir dir;
  auto disk = make_raw(dir, 32 << 20, true);
  std::vector<AlignedBytes> bufs;
  std::vector<iovec> iov(32);
  auto aio = open_async_or_skip(*disk, 32, b);
  disk.reset();  // the AsyncDisk outlives the BlockDevice
  for (unsigned i = 0; i < 32; ++i) {
    bufs.push_back(aligned_alloc_bytes(1 << 20));
    std::memset(bufs.back().get(), int(i + 1), 1 << 20);
    iov[i] = {bufs.back().get(), 1 << 20};
    aio->submit({AsyncOp::kWrite, uint64_t(i) << 20, {&iov[i], 1}, i});
  }
  aio.reset();
}

}  // namespace

TEST_BOTH_BACKENDS(disk_async_raw_end_of_file_reads_as_zeroes, end_of_file_reads_as_zeroes)
TEST_BOTH_BACKENDS(disk_async_raw_refusals, refusals)
TEST_BOTH_BACKENDS(disk_async_raw_destroyed_with_requests_in_flight, destroyed_with_requests_in_flight)

// The serial path (disk/serial_async_disk.h, open_async's default for a driver without a
// parallel path) over the VHDX and VHD drivers: their synchronous calls on a thread of its
// own. Eight writes in flight at once, a flush and eight reads come back through the
// completion eventfd; qemu-img then finds the image clean and the data where it was written.
TEST(disk_async_serial_path_runs_the_driver_on_a_thread_of_its_own) {
  TempDir dir;
  for (Format f : {Format::kVhdx, Format::kVhd}) {
    CreateOptions co;
    co.format = f;
    co.size = 4 << 20;
    std::string path = dir.file(std::string("d.") + format_name(f));
    create_disk(path, co);
    auto disk = open_disk(path);
    std::unique_ptr<AsyncDisk> aio = std::make_unique<SerialAsyncDisk>(*disk, 8);
    CHECK_STR(aio->backend(), "serial");
    CHECK_STR(aio->fallback_reason(), std::string("the ") + format_name(f) + " driver has no parallel path");
    berth::UniqueFd done(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    aio->set_completion_fd(done.get());

    constexpr unsigned kN = 8, kBlock = 4096;
    std::vector<std::vector<uint8_t>> data(kN, std::vector<uint8_t>(kBlock));
    std::vector<iovec> iov(kN);
    for (unsigned i = 0; i < kN; ++i) {
      for (unsigned j = 0; j < kBlock; ++j) data[i][j] = pattern(i, j);
      iov[i] = {data[i].data(), kBlock};
      // Every other block, spread over the disk so several blocks get allocated.
      aio->submit({AsyncOp::kWrite, uint64_t{i} * (512 << 10), std::span<const iovec>(&iov[i], 1), i});
    }
    CHECK_THROWS_CODE(aio->submit({AsyncOp::kFlush, 0, {}, 99}), "DISK_QUEUE_FULL", "8 requests in flight");
    CHECK_THROWS_CODE(aio->submit({AsyncOp::kRead, co.size - 512, std::span<const iovec>(&iov[0], 1), 98}),
                      "DISK_RANGE", "outside");
    pollfd p{done.get(), POLLIN, 0};
    CHECK_EQ(::poll(&p, 1, 10000), 1);  // the eventfd says completions are there
    AsyncCompletion got[kN];
    size_t n = 0;
    while (n < kN) n += aio->harvest(std::span<AsyncCompletion>(got + n, kN - n), 1);
    for (const auto& c : got) CHECK_EQ(c.result, int64_t{kBlock});
    aio->submit({AsyncOp::kFlush, 0, {}, 100});
    CHECK_EQ(aio->harvest(std::span<AsyncCompletion>(got, 1), 1), size_t{1});
    CHECK_EQ(got[0].result, int64_t{0});

    std::vector<std::vector<uint8_t>> back(kN, std::vector<uint8_t>(kBlock));
    for (unsigned i = 0; i < kN; ++i) {
      iov[i] = {back[i].data(), kBlock};
      aio->submit({AsyncOp::kRead, uint64_t{i} * (512 << 10), std::span<const iovec>(&iov[i], 1), i});
    }
    n = 0;
    while (n < kN) n += aio->harvest(std::span<AsyncCompletion>(got + n, kN - n), 1);
    for (unsigned i = 0; i < kN; ++i) CHECK(back[i] == data[i]);
    aio.reset();
    disk.reset();

    std::string fmt = f == Format::kVhd ? "vpc" : "vhdx";
    if (f == Format::kVhdx) CHECK_EQ(berth::test::rvh::run("qemu-img check -q -f vhdx '" + path + "'").rc, 0);
    std::string raw = path + ".raw";
    CHECK_EQ(berth::test::rvh::run("qemu-img convert -f " + fmt + " -O raw '" + path + "' '" + raw + "'").rc, 0);
    std::string all = berth::test::rvh::read_whole(raw);
    for (unsigned i = 0; i < kN; ++i) {
      CHECK(std::memcmp(all.data() + uint64_t{i} * (512 << 10), data[i].data(), kBlock) == 0);
    }
  }
}

TEST(disk_async_serial_path_refuses_writes_to_a_read_only_image) {
  TempDir dir;
  CreateOptions co;
  co.format = Format::kVhd;
  co.size = 1 << 20;
  std::string path = dir.file("ro.vhd");
  create_disk(path, co);
  auto disk = open_disk(path, {.read_only = true});
  SerialAsyncDisk serial(*disk, 2);
  AsyncDisk* aio = &serial;
  uint8_t buf[512] = {};
  iovec v{buf, sizeof buf};
  CHECK_THROWS_CODE(aio->submit({AsyncOp::kWrite, 0, std::span<const iovec>(&v, 1), 1}), "DISK_READ_ONLY",
                    "read-only");
  CHECK_EQ(aio->in_flight(), 0u);
}
