#include "tools/disk_bench_async.h"

#include <sys/uio.h>

#include <cstring>
#include <vector>

#include "disk/aligned_io.h"

namespace berth::tools {

AsyncBenchResult run_async_bench(disk::AsyncDisk& aio, const AsyncBenchSpec& spec,
                                 const std::function<uint64_t()>& next_offset) {
  using disk::AsyncCompletion;
  using disk::AsyncOp;
  const unsigned depth = aio.depth();
  // One page-aligned buffer per request in flight (so O_DIRECT needs no bounce buffer);
  // a request's tag is its buffer's index.
  std::vector<disk::AlignedBytes> buffers;
  std::vector<iovec> iov(depth);
  for (unsigned i = 0; i < depth; ++i) {
    buffers.push_back(disk::aligned_alloc_bytes(spec.size));
    std::memset(buffers.back().get(), spec.write ? spec.pattern : 0, spec.size);
    iov[i] = {buffers.back().get(), spec.size};
  }
  std::vector<unsigned> idle;
  for (unsigned i = depth; i-- > 0;) idle.push_back(i);
  std::vector<AsyncCompletion> done(depth);
  AsyncBenchResult result;
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
  return result;
}

}  // namespace berth::tools
