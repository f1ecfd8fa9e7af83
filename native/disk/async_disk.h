// Asynchronous I/O on a virtual disk: BlockDevice::open_async hands out an AsyncDisk.
// Completions carry the tag and either the request's full length (0 for a flush) or -errno;
// error_for() turns the latter into the berth::Error the synchronous path would have thrown.
// Requests in flight at the same time complete in any order and must not overlap when one
// of them writes; a flush covers every write submitted before it, metadata included.
//
// FileAsyncDisk serves disks whose virtual disk is a file or device byte for byte (raw
// images, host block devices), and the data clusters of other formats. It adds to
// AsyncQueue what the synchronous drivers do: range and read-only checks (thrown by submit,
// nothing queued), short transfers continued until done, bytes past the end of the file
// read as zeroes, and O_DIRECT's alignment: aligned requests go to the queue, others take a
// synchronous bounce path (disk/aligned_io.h), a write only after the requests in flight
// have completed, since it rewrites whole blocks around its bytes. Destroying one waits for
// its requests; it keeps its own descriptor, so it may outlive the BlockDevice.
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
  AsyncDisk() = default;
  virtual ~AsyncDisk() = default;
  AsyncDisk(const AsyncDisk&) = delete;
  AsyncDisk& operator=(const AsyncDisk&) = delete;

  virtual const char* backend() const = 0;  // the AsyncQueue's: "io_uring" or "threads"
  virtual const std::string& fallback_reason() const = 0;
  virtual unsigned depth() const = 0;
  virtual unsigned in_flight() const = 0;  // submitted and not yet harvested
  virtual uint64_t capacity() const = 0;
  virtual bool direct() const = 0;

  // Throws DISK_RANGE, DISK_READ_ONLY or DISK_QUEUE_FULL; otherwise the request is queued
  // (or already done) and its completion comes from harvest.
  virtual void submit(const DiskRequest& request) = 0;
  virtual void commit() = 0;
  // As AsyncQueue::harvest: up to out.size() completions, after waiting for
  // min(wait_for, out.size(), in_flight()).
  virtual size_t harvest(std::span<AsyncCompletion> out, unsigned wait_for) = 0;

  // The error a failed completion stands for (DISK_NO_SPACE or DISK_IO, naming the file).
  virtual Error error_for(const AsyncCompletion& completion) const = 0;

  // For event loops (AsyncQueue::set_completion_fd): the eventfd `fd` gets 1 added whenever
  // the kernel or the pool finishes a request later. Completions a submit() or commit()
  // produced at once (answered without I/O, run synchronously, or by io_uring inside the
  // submission) signal nothing: harvest after committing.
  virtual void set_completion_fd(int fd) = 0;
};

class FileAsyncDisk final : public AsyncDisk {
 public:
  FileAsyncDisk(const AsyncTarget& target, unsigned depth, AsyncBackend backend = AsyncBackend::kAuto);

  const char* backend() const override { return queue_->backend(); }
  const std::string& fallback_reason() const override { return queue_->fallback_reason(); }
  unsigned depth() const override { return queue_->depth(); }
  unsigned in_flight() const override { return busy_; }
  uint64_t capacity() const override { return target_.capacity; }
  bool direct() const override { return target_.direct; }

  void submit(const DiskRequest& request) override;
  void commit() override { queue_->commit(); }
  size_t harvest(std::span<AsyncCompletion> out, unsigned wait_for) override;
  Error error_for(const AsyncCompletion& completion) const override;
  void set_completion_fd(int fd) override { queue_->set_completion_fd(fd); }

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
