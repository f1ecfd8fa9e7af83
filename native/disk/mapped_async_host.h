// What a format driver offers the mapped asynchronous path (disk/mapped_async_disk.h): where
// a run of guest bytes lives, and the synchronous driver for everything that changes
// metadata. qcow2, VHD and VHDX implement it.
#pragma once

#include <cstdint>
#include <functional>

#include "disk/block_device.h"

namespace berth::disk {

enum class MappedRunKind : uint8_t {
  kHost,    // allocated data, contiguous in the image file from `host`: plain file I/O
  kZero,    // reads as zeroes, known without reading (unallocated without a backing file)
  kDriver,  // through the synchronous driver: reads through a backing file or of data the
            // driver must assemble; writes that allocate or change metadata
};

struct MappedRun {
  MappedRunKind kind = MappedRunKind::kDriver;
  uint64_t host = 0;    // kHost only
  uint64_t length = 0;  // at least 1 byte, at most what was asked for
  // kDriver writes that replace data others may be reading (a qcow2 compressed or shared
  // cluster): the requests in flight complete first.
  bool settle_first = false;
};

class MappedAsyncHost {
 public:
  virtual ~MappedAsyncHost() = default;
  // The run that starts at guest offset `offset`, at most `max` bytes, for a read or a
  // write. They may do synchronous driver work first (VHDX records a new DataWriteGuid
  // before the first write); what they throw fails the request.
  virtual MappedRun read_run(uint64_t offset, uint64_t max) = 0;
  virtual MappedRun write_run(uint64_t offset, uint64_t max) = 0;
  // Before a data write of [host, host + length) is queued: the next flush (or metadata
  // commit that needs it) syncs it. Fault injection may throw here.
  virtual void before_data_write(uint64_t host, uint64_t length) = 0;
  // Everything written so far durable: data (whichever descriptor wrote it), then metadata
  // in the driver's order, as BlockDevice::flush.
  virtual void flush_all() = 0;
  virtual BlockDevice& device() = 0;
  // The disk hands its host a way to wait for the data I/O it has in flight (an empty
  // function when it goes), for test builds whose fault injection simulates power loss.
  virtual void set_settle_hook(std::function<void()> /*settle*/) {}
};

}  // namespace berth::disk
