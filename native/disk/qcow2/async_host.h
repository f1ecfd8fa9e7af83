// What the qcow2 driver offers its asynchronous path (disk/qcow2/async.h): where a run of
// guest bytes lives, and the synchronous driver for everything that changes metadata.
#pragma once

#include <cstdint>

#include "disk/block_device.h"

namespace berth::disk::qcow2 {

enum class RunKind : uint8_t {
  kHost,    // data clusters, contiguous in the file from `host`: plain file I/O
  kZero,    // reads as zeroes (zero clusters; unallocated without a backing file)
  kDriver,  // through the synchronous driver: reads through a backing file or of compressed
            // clusters; writes that allocate or copy a cluster (and so change metadata)
};

struct Run {
  RunKind kind = RunKind::kDriver;
  uint64_t host = 0;    // kHost only
  uint64_t length = 0;  // at least 1 byte, at most what was asked for
  // kDriver writes that replace a cluster others may be reading (compressed, or shared):
  // the requests in flight complete first.
  bool settle_first = false;
};

class AsyncHost {
 public:
  virtual ~AsyncHost() = default;
  // The run that starts at guest offset `offset`, at most `max` bytes, for a read or a write.
  virtual Run read_run(uint64_t offset, uint64_t max) = 0;
  virtual Run write_run(uint64_t offset, uint64_t max) = 0;
  // Before a data write of [host, host + length) is queued: the next flush syncs it (and, in
  // test builds, the fault injection counts it; it throws once the simulated power is lost).
  virtual void before_data_write(uint64_t host, uint64_t length) = 0;
  // Everything written so far durable: data (whichever descriptor wrote it), then metadata
  // in the driver's order, as BlockDevice::flush.
  virtual void flush_all() = 0;
  virtual BlockDevice& device() = 0;
};

}  // namespace berth::disk::qcow2
