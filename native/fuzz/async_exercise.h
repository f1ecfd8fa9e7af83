// For the disk harnesses: drives a disk's asynchronous path (BlockDevice::open_async) over
// offsets the input chooses, so the run mapping of the mapped formats sees damaged images
// too: reads at three places (unaligned lengths among them), then, when writable, a write
// and a flush. Failures come back as completions or berth::Error; none may crash.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "disk/async_disk.h"
#include "disk/block_device.h"

inline void exercise_async(berth::disk::BlockDevice& dev, uint64_t seed) {
  using berth::disk::AsyncOp;
  const uint64_t cap = dev.capacity();
  if (cap == 0) return;
  auto aio = dev.open_async(4);
  std::vector<uint8_t> buf(3 * 8192, 0x3c);
  iovec iov[3];
  uint64_t at[3];
  berth::disk::AsyncCompletion got[4];
  auto drain = [&] {
    while (aio->in_flight() > 0) aio->harvest(got, 1);
  };
  for (uint64_t k = 0; k < 3; ++k) {
    uint64_t len = std::min<uint64_t>(8192 - k * 1000, cap);
    at[k] = (seed * 7919 + k * 1048573) % (cap - len + 1);
    iov[k] = {buf.data() + k * 8192, len};
    aio->submit({AsyncOp::kRead, at[k], {&iov[k], 1}, k});
  }
  drain();
  if (dev.read_only()) return;
  aio->submit({AsyncOp::kWrite, at[1], {&iov[1], 1}, 3});
  drain();
  aio->submit({AsyncOp::kFlush, 0, {}, 4});
  drain();
}
