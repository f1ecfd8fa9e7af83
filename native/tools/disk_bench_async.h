// berth-disk-bench's asynchronous run: the same offsets as the synchronous one (qemu-img
// bench's stride, or seeded random), with up to `depth` requests in flight through an
// AsyncDisk, the way `qemu-img bench -d N` keeps N in flight.
#pragma once

#include <cstdint>
#include <functional>

#include "disk/async_disk.h"

namespace berth::tools {

struct AsyncBenchSpec {
  uint64_t count = 0;
  uint64_t size = 0;
  bool write = false;
  int pattern = 0;
  uint64_t flush_interval = 0;  // writes: drain and flush after every n requests (0: never)
};

struct AsyncBenchResult {
  uint64_t flushes = 0;
  unsigned max_in_flight = 0;
  // From the first submission until the last completion. Setting up the buffers comes
  // before, as in qemu-img bench, which allocates and fills its buffer before its clock
  // starts: at depth 64 with 1 MiB requests that is 64 MiB of page faults.
  double seconds = 0;
};

// next_offset() yields the offset of each request in issue order. Throws the request's
// error (AsyncDisk::error_for) if one fails or transfers less than asked.
AsyncBenchResult run_async_bench(disk::AsyncDisk& aio, const AsyncBenchSpec& spec,
                                 const std::function<uint64_t()>& next_offset);

}  // namespace berth::tools
