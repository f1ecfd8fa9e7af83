#include "tools/disk_bench_async.h"

#include <sys/mman.h>
#include <sys/uio.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <vector>

#include "disk/aligned_io.h"

namespace berth::tools {

AsyncBenchResult run_async_bench(disk::AsyncDisk& aio, const AsyncBenchSpec& spec,
                                 const std::function<uint64_t()>& next_offset) {
  using disk::AsyncCompletion;
  using disk::AsyncOp;
  const unsigned depth = aio.depth();
  // One buffer for all requests in flight, a page-aligned slice each (so O_DIRECT needs no
  // bounce buffer), made and filled before the clock starts, as qemu-img bench's is (it
  // fills its buffer with the pattern for reads too). Inside the clock, the page faults of
  // filling 64 MiB at depth 64 of 1 MiB cost Berth up to half its 1 MiB figures.
  // A request's tag is its slice's index.
  const size_t bytes = size_t{depth} * spec.size;
  void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) throw SystemError("BENCH_MEMORY", "cannot map the request buffers", errno);
  std::unique_ptr<void, std::function<void(void*)>> unmap(map, [bytes](void* p) { ::munmap(p, bytes); });
  std::memset(map, spec.pattern, bytes);
  std::vector<iovec> iov(depth);
  for (unsigned i = 0; i < depth; ++i) iov[i] = {static_cast<uint8_t*>(map) + size_t{i} * spec.size, spec.size};
  std::vector<unsigned> idle;
  for (unsigned i = depth; i-- > 0;) idle.push_back(i);
  std::vector<AsyncCompletion> done(depth);
  AsyncBenchResult result;
  const auto start = std::chrono::steady_clock::now();
  auto reap = [&](unsigned wait_for) {
    size_t n = aio.harvest(done, wait_for);
    for (size_t i = 0; i < n; ++i) {
      if (done[i].result != static_cast<int64_t>(spec.size)) throw aio.error_for(done[i]);
      idle.push_back(static_cast<unsigned>(done[i].tag));
    }
  };
  for (uint64_t issued = 0; issued < spec.count;) {
    while (idle.empty()) reap(1);
    unsigned slot = idle.back();
    idle.pop_back();
    aio.submit({spec.write ? AsyncOp::kWrite : AsyncOp::kRead, next_offset(), {&iov[slot], 1}, slot});
    ++issued;
    if (aio.in_flight() > result.max_in_flight) result.max_in_flight = aio.in_flight();
    if (spec.write && spec.flush_interval && issued % spec.flush_interval == 0) {
      reap(aio.in_flight());
      aio.submit({AsyncOp::kFlush, 0, {}, depth});
      AsyncCompletion c;
      aio.harvest(std::span<AsyncCompletion>(&c, 1), 1);
      if (c.result != 0) throw aio.error_for(c);
      ++result.flushes;
    } else {
      // Each request goes to the kernel at once, as qemu-img bench's do: measured here,
      // batching them until the next harvest let the device's queue run dry between
      // bursts (0.8 of qemu-img at depth 32-64 instead of about 1.0).
      aio.commit();
    }
  }
  while (aio.in_flight() > 0) reap(aio.in_flight());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace berth::tools
