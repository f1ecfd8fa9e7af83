// Shared by the asynchronous disk tests of the mapped formats (qcow2, VHD, VHDX): a
// randomized workload at depth 32 against an in-memory model of the disk, checked request
// by request, and a check that reads of allocated data are on the file queue together.
#pragma once

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "disk/aligned_io.h"
#include "disk/async_disk.h"
#include "disk/block_device.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"

namespace berth::test::async {

using disk::AlignedBytes;
using disk::aligned_alloc_bytes;
using disk::AsyncCompletion;
using disk::AsyncDisk;
using disk::AsyncOp;

inline constexpr unsigned kDepth = 32;
inline constexpr uint64_t kHot = 8;  // clusters most requests aim at, so they share clusters in flight

// The disk's asynchronous path on backend b; SKIP when this host refuses io_uring.
inline std::unique_ptr<AsyncDisk> open_aio(disk::BlockDevice& dev, disk::AsyncBackend b, unsigned depth = kDepth) {
  try {
    auto a = dev.open_async(depth, b);
    CHECK(a != nullptr);
    return a;
  } catch (const berth::Error& e) {
    if (b == disk::AsyncBackend::kIoUring && e.code() == "DISK_UNSUPPORTED") SKIP(std::string("io_uring: ") + e.what());
    throw;
  }
}

struct Req {
  AsyncOp op = AsyncOp::kRead;
  uint64_t offset = 0, length = 0;
  AlignedBytes memory;
  uint8_t* data = nullptr;
  std::vector<uint8_t> expected;
};

// Drives an AsyncDisk at depth 32 with random reads, writes and flushes (requests in flight
// never overlap byte-wise where one writes, but often share a cluster or block: `cluster`
// is the format's allocation unit). Keeps `model` (what a completed write leaves) and calls
// on_flush(ok) when a flush completes. After a simulated crash results are no longer checked.
struct Driver {
  Driver(AsyncDisk& a, std::vector<uint8_t>& m, uint64_t cluster_size, uint64_t seed)
      : aio(a), model(m), cluster(cluster_size), rng(seed) {}
  AsyncDisk& aio;
  std::vector<uint8_t>& model;
  uint64_t cluster;
  std::mt19937_64 rng;
  std::map<uint64_t, Req> pending;
  uint64_t next_tag = 1, max_in_flight = 0, same_cluster = 0;
  uint64_t hot_percent = 67;  // of the requests, those that aim at the hot clusters
  // True once fault injection has simulated power loss: results are no longer checked.
  std::function<bool()> crashed = [] { return false; };
  std::function<void()> on_flush_submit = [] {};
  std::function<void(bool)> on_flush = [](bool) {};
  std::function<void(uint64_t, uint64_t)> on_write = [](uint64_t, uint64_t) {};

  uint64_t pick(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); }

  void complete(unsigned wait_for) {
    AsyncCompletion got[kDepth];
    size_t n = aio.harvest(got, wait_for);
    for (size_t i = 0; i < n; ++i) {
      auto it = pending.find(got[i].tag);
      CHECK(it != pending.end());
      if (it == pending.end()) continue;
      Req& p = it->second;
      bool ok = got[i].result == int64_t(p.op == AsyncOp::kFlush ? 0 : p.length);
      if (!crashed()) {
        if (!ok) CHECK_STR(aio.error_for(got[i]).what(), "");
        if (ok && p.op == AsyncOp::kRead) CHECK(std::memcmp(p.data, p.expected.data(), p.length) == 0);
      }
      if (p.op == AsyncOp::kFlush) on_flush(ok);
      pending.erase(it);
    }
  }
  bool conflicts(AsyncOp op, uint64_t off, uint64_t len) const {
    for (const auto& [tag, p] : pending) {
      if (p.op == AsyncOp::kFlush || (op == AsyncOp::kRead && p.op == AsyncOp::kRead)) continue;
      if (off < p.offset + p.length && p.offset < off + len) return true;
    }
    return false;
  }
  bool shares_cluster(uint64_t off, uint64_t len) const {
    for (const auto& [tag, p] : pending) {
      if (p.op != AsyncOp::kWrite) continue;
      if (off / cluster <= (p.offset + p.length - 1) / cluster && p.offset / cluster <= (off + len - 1) / cluster) return true;
    }
    return false;
  }
  bool flush_pending() const {
    return std::any_of(pending.begin(), pending.end(), [](const auto& e) { return e.second.op == AsyncOp::kFlush; });
  }

  void step() {
    const uint64_t size = model.size();
    uint64_t kind = pick(0, 99);
    AsyncOp op = kind < 60 ? AsyncOp::kWrite : kind < 97 ? AsyncOp::kRead : AsyncOp::kFlush;
    Req p;
    p.op = op;
    std::vector<iovec> iov;
    if (op == AsyncOp::kFlush) {
      while (pending.size() >= kDepth || flush_pending()) complete(1);  // one flush at a time
      on_flush_submit();
    } else {
      uint64_t unit = pick(0, 9) < 7 ? 4096 : pick(0, 1) ? 512 : 1;
      p.length = std::min<uint64_t>(size, pick(1, pick(0, 9) == 0 ? 64 : 8) * unit * (unit == 1 ? pick(1, 3000) : 1));
      if (pick(0, 99) < hot_percent) {  // within a few hot clusters
        uint64_t c = pick(0, kHot - 1) * (size / cluster / kHot);
        p.offset = std::min(size - p.length, c * cluster + pick(0, cluster / unit - 1) * unit);
      } else {
        p.offset = pick(0, (size - p.length) / unit) * unit;
      }
      size_t shift = unit == 4096 ? 0 : pick(0, 64);
      p.memory = aligned_alloc_bytes(p.length + shift);
      p.data = p.memory.get() + shift;
      uint64_t at = 0, pieces = pick(1, 3);
      for (uint64_t k = 0; k < pieces && at < p.length; ++k) {
        uint64_t rest = p.length - at;
        uint64_t n = k + 1 == pieces ? rest : std::min(rest, std::max<uint64_t>(unit, rest / unit / 2 * unit));
        iov.push_back({p.data + at, n});
        at += n;
      }
      while (pending.size() >= kDepth || conflicts(op, p.offset, p.length)) complete(1);
      if (op == AsyncOp::kWrite) {
        same_cluster += shares_cluster(p.offset, p.length);
        for (uint64_t k = 0; k < p.length; ++k) p.data[k] = static_cast<uint8_t>(rng());
        std::memcpy(model.data() + p.offset, p.data, p.length);
        on_write(p.offset, p.length);
      } else {
        p.expected.assign(model.begin() + static_cast<std::ptrdiff_t>(p.offset),
                          model.begin() + static_cast<std::ptrdiff_t>(p.offset + p.length));
      }
    }
    uint64_t tag = next_tag++;
    auto& stored = pending.emplace(tag, std::move(p)).first->second;
    aio.submit({op, stored.offset, iov, tag});
    max_in_flight = std::max<uint64_t>(max_in_flight, aio.in_flight());
    if (pick(0, 7) == 0) complete(0);
  }
  void finish() {
    while (!pending.empty()) complete(kDepth);
  }
};

// `steps` random requests through a Driver, then every request completed: at least half the
// queue was in flight at once and, when `expect_shared`, more than 50 writes shared a
// cluster with a write in flight (the case the formats must serialize). Prints both counts.
inline void run_random_workload(AsyncDisk& aio, std::vector<uint8_t>& model, uint64_t cluster, uint64_t seed, int steps,
                                const char* name, bool expect_shared = true, uint64_t hot_percent = 67) {
  Driver d(aio, model, cluster, seed);
  d.hot_percent = hot_percent;
  for (int i = 0; i < steps; ++i) d.step();
  d.finish();
  CHECK_EQ(aio.in_flight(), 0u);
  CHECK(d.max_in_flight >= kDepth / 2);
  if (expect_shared) CHECK(d.same_cluster > 50);
  std::fprintf(stderr, "  %s: %llu writes shared a cluster with a write in flight, at most %llu requests in flight\n", name,
               static_cast<unsigned long long>(d.same_cluster), static_cast<unsigned long long>(d.max_in_flight));
}

// The starting bytes of a workload case, written to `folder`/base.raw; when `make` is not
// empty it is run in the folder (it makes the image from base.raw) and `model` starts as
// those bytes. Returns them.
inline std::string prepare_base(const std::string& folder, const char* make, uint32_t seed, std::vector<uint8_t>& model);

// Random bytes, with every third 64 KiB left zero (unallocated once qemu-img converts it).
inline std::string pattern_bytes(uint64_t size, uint32_t seed) {
  std::string s(size, '\0');
  std::mt19937 rng(seed);
  for (uint64_t off = 0; off < size; off += 65536) {
    if ((off / 65536) % 3 == 1) continue;
    for (uint64_t i = off; i < std::min(size, off + 65536); ++i) s[i] = static_cast<char>(rng());
  }
  return s;
}

inline std::string prepare_base(const std::string& folder, const char* make, uint32_t seed, std::vector<uint8_t>& model) {
  std::string base = pattern_bytes(model.size(), seed);
  rvh::write_whole(folder + "/base.raw", base);
  if (*make) {
    CHECK_EQ(rvh::run("cd '" + folder + "' && " + make).rc, 0);
    model.assign(base.begin(), base.end());
  }
  return base;
}

// The whole disk, read through aio in 1 MiB requests, up to its depth at once.
inline std::vector<uint8_t> read_all(AsyncDisk& aio) {
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<uint8_t> all(aio.capacity());
  std::vector<iovec> iov((all.size() + kChunk - 1) / kChunk);
  AsyncCompletion got[kDepth];
  size_t next = 0, done = 0;
  while (done < iov.size()) {
    while (next < iov.size() && aio.in_flight() < aio.depth()) {
      uint64_t off = next * kChunk;
      iov[next] = {all.data() + off, std::min<uint64_t>(kChunk, all.size() - off)};
      aio.submit({AsyncOp::kRead, off, std::span<const iovec>(&iov[next], 1), next});
      ++next;
    }
    aio.commit();
    size_t n = aio.harvest(got, 1);
    for (size_t i = 0; i < n; ++i) CHECK_EQ(got[i].result, static_cast<int64_t>(iov[got[i].tag].iov_len));
    done += n;
  }
  return all;
}

// Reads of allocated data are file I/O on the queue, all in flight together, none carried
// out inside submit(): sixteen 4 KiB chunks written `stride` apart are read through io_uring
// without committing; the file then gets new bytes where the chunks lie (found by content)
// and only then is the queue committed. Every read must return the new bytes.
inline void expect_reads_queued_together(disk::BlockDevice& dev, const std::string& path, uint64_t stride) {
  constexpr unsigned kN = 16;
  constexpr size_t kLen = 4096;
  std::mt19937_64 rng(stride);
  std::vector<std::vector<uint8_t>> before(kN, std::vector<uint8_t>(kLen)), after = before;
  for (unsigned i = 0; i < kN; ++i) {
    for (size_t k = 0; k < kLen; ++k) before[i][k] = static_cast<uint8_t>(rng()), after[i][k] = static_cast<uint8_t>(rng());
    dev.write(i * stride, before[i]);
  }
  dev.flush();
  auto aio = open_aio(dev, disk::AsyncBackend::kIoUring);
  std::string file = rvh::read_whole(path);
  std::vector<uint64_t> at(kN);
  for (unsigned i = 0; i < kN; ++i) {
    const void* found = ::memmem(file.data(), file.size(), before[i].data(), kLen);
    CHECK(found != nullptr);
    if (!found) return;
    at[i] = static_cast<uint64_t>(static_cast<const char*>(found) - file.data());
  }
  std::vector<std::vector<uint8_t>> got(kN, std::vector<uint8_t>(kLen));
  std::vector<iovec> iov(kN);
  for (unsigned i = 0; i < kN; ++i) {
    iov[i] = {got[i].data(), kLen};
    aio->submit({AsyncOp::kRead, i * stride, std::span<const iovec>(&iov[i], 1), i});
  }
  CHECK_EQ(aio->in_flight(), kN);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  for (unsigned i = 0; i < kN; ++i) CHECK_EQ(::pwrite(fd, after[i].data(), kLen, static_cast<off_t>(at[i])), static_cast<ssize_t>(kLen));
  ::close(fd);
  aio->commit();
  AsyncCompletion done[kN];
  size_t n = 0;
  while (n < kN) n += aio->harvest(std::span<AsyncCompletion>(done + n, kN - n), 1);
  for (const auto& c : done) CHECK_EQ(c.result, static_cast<int64_t>(kLen));
  for (unsigned i = 0; i < kN; ++i) CHECK(got[i] == after[i]);
}

}  // namespace berth::test::async
