// Asynchronous I/O on a disk whose virtual disk is a file or device byte for byte (raw images,
// host block devices): BlockDevice::open_async hands one out. It adds to AsyncQueue what the
// synchronous drivers do: range and read-only checks (thrown by submit, nothing queued),
// short transfers continued until done, bytes past the end of the file read as zeroes, and
// O_DIRECT's alignment: aligned requests go to the queue, others take a synchronous bounce
// path (disk/aligned_io.h), a write only after the requests in flight have completed, since
// it rewrites whole blocks around its bytes.
//
// Completions carry the tag and either the request's full length (0 for a flush) or -errno;
// error_for() turns the latter into the berth::Error the synchronous path would have thrown.
// Requests in flight at the same time complete in any order and must not overlap when one
// of them writes; a flush covers every write submitted before it. Destroying an AsyncDisk
// waits for its requests; it keeps its own descriptor, so it may outlive the BlockDevice.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "disk/async_queue.h"

namespace berth::disk {

// What an AsyncDisk works on; fd is duplicated.
struct AsyncTarget {
  int fd = -1;
  bool direct = false;        // fd is O_DIRECT
  uint32_t alignment = 512;   // offsets, lengths and buffers O_DIRECT needs aligned
  uint64_t capacity = 0;      // as of open_async (a later resize is not seen)
  bool read_only = false;
  std::string path;
};

struct DiskRequest {
  AsyncOp op = AsyncOp::kRead;
  uint64_t offset = 0;
  std::span<const iovec> iov;  // copied; the memory it points to stays valid until harvested
  uint64_t tag = 0;
};

class AsyncDisk {
 public:
  AsyncDisk(const AsyncTarget& target, unsigned depth, AsyncBackend backend = AsyncBackend::kAuto);
  ~AsyncDisk() = default;
  AsyncDisk(const AsyncDisk&) = delete;
  AsyncDisk& operator=(const AsyncDisk&) = delete;

  const char* backend() const { return queue_->backend(); }
  const std::string& fallback_reason() const { return queue_->fallback_reason(); }
  unsigned depth() const { return queue_->depth(); }
  unsigned in_flight() const { return busy_; }  // submitted and not yet harvested
  uint64_t capacity() const { return target_.capacity; }
  bool direct() const { return target_.direct; }

  // Throws DISK_RANGE, DISK_READ_ONLY or DISK_QUEUE_FULL; otherwise the request is queued
  // (or, unaligned under O_DIRECT, already done) and its completion comes from harvest.
  void submit(const DiskRequest& request);
  void commit() { queue_->commit(); }
  // As AsyncQueue::harvest: up to out.size() completions, after waiting for
  // min(wait_for, out.size(), in_flight()).
  size_t harvest(std::span<AsyncCompletion> out, unsigned wait_for);

  // The error a failed completion stands for (DISK_NO_SPACE or DISK_IO, naming the file).
  Error error_for(const AsyncCompletion& completion) const;

 private:
  struct Slot {
    AsyncOp op = AsyncOp::kRead;
    uint64_t tag = 0;
    uint64_t offset = 0;     // of the part not yet transferred
    std::vector<iovec> iov;  // the part not yet transferred starts at iov[first]
    size_t first = 0;
    uint64_t total = 0;
    uint64_t done = 0;
    int64_t result = 0;
  };

  void check(const DiskRequest& request) const;
  bool aligned(const Slot& slot) const;
  void start(unsigned slot);
  void restart(unsigned slot);
  void run_bounced(unsigned slot);
  void pump(unsigned wait_for);
  void on_completion(unsigned slot, int64_t result);
  void advance(Slot& slot, uint64_t bytes);
  void finish(unsigned slot, int64_t result);
  void drain();

  UniqueFd fd_;
  AsyncTarget target_;
  std::vector<Slot> slots_;
  std::vector<unsigned> free_;
  std::deque<unsigned> ready_;  // finished, waiting for harvest
  unsigned busy_ = 0;
  std::unique_ptr<AsyncQueue> queue_;  // last: destroyed (waiting for the kernel or the pool) first
};

}  // namespace berth::disk
