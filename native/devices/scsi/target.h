// A SCSI logical unit as a transport (virtio-scsi) sees it: commands in, replies out, and
// the bulk transfers of the medium (reads, writes, cache flushes) carried out by the
// transport on the disk layer's asynchronous path, so large I/O never runs under the
// target's lock or on a vCPU.
//
// Threading: execute(), finish_io(), bus_reset() run on the transport's I/O thread; the
// host's own calls (a DVD drive's insert/eject) may come from any other thread, so targets
// guard their state with a lock of their own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/state_stream.h"
#include "devices/scsi/scsi.h"
#include "disk/async_disk.h"
#include "disk/block_device.h"

namespace berth::devices::scsi {

// Requests on one medium's asynchronous path at once.
constexpr unsigned kMediumDepth = 16;

// An image opened for a target. Shared: a read in flight keeps the medium it started on
// alive (and its asynchronous path open) after the host ejected it.
struct Medium {
  std::unique_ptr<disk::BlockDevice> disk;
  std::unique_ptr<disk::AsyncDisk> aio;  // after disk: destroyed (waiting for its requests) first
  std::string path;
  uint64_t bytes = 0;
  bool completion_fd_set = false;  // the transport's I/O thread only
};

// Bytes of a medium the transport moves: a read fills the command's data-in buffers, a
// write takes its data-out buffers (the transport answers OVERRUN when the buffers are
// shorter than length), a flush moves nothing (offset and length 0). The transport keeps
// requests that overlap where either writes apart, in arrival order.
struct IoPlan {
  std::shared_ptr<Medium> medium;
  disk::AsyncOp op = disk::AsyncOp::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// What execute() decided: a reply now, or I/O whose outcome finish_io() turns into one.
struct Command {
  Reply reply;
  std::optional<IoPlan> io;
};

class Target {
 public:
  virtual ~Target() = default;

  // One command for LUN 0. cdb holds the transport's CDB bytes (it may be longer than the
  // command; a shorter one is refused with CHECK CONDITION). Never throws.
  virtual Command execute(std::span<const uint8_t> cdb) = 0;
  // The I/O execute() planned is done: result is its byte count (0 for a flush) or -errno,
  // error the disk layer's message for a failure. Never throws.
  virtual Reply finish_io(const IoPlan& plan, int64_t result, const std::string& error) = 0;
  // A bus or logical unit reset (virtio reset, task management): drops what a reset drops.
  virtual void bus_reset() = 0;

  // Saved state, one record per target. prepare_load reads the record and does the work
  // that may fail (STATE_INVALID), then returns what commits it: a transport loading many
  // targets commits only once every record was accepted.
  virtual void save_state(state::Writer& w) const = 0;
  virtual std::function<void()> prepare_load(state::Reader& r) = 0;
};

}  // namespace berth::devices::scsi
