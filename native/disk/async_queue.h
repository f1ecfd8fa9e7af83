// Asynchronous positioned I/O on file descriptors: requests (read, write, flush; vectored;
// each with an opaque tag) are submitted, and their completions harvested later, with at
// most depth() of them in flight. Two backends do the work: io_uring (through liburing) and,
// where io_uring is missing or refused, a small pool of threads issuing preadv/pwritev/
// fdatasync. Which one a queue uses is decided when it is opened and reported by backend().
//
// A queue belongs to one thread (the one that submits and harvests). Results are those of
// one system call: a read or write may transfer fewer bytes than asked (a read at the end of
// a file does); disk/async_disk.h completes short transfers and turns results into disk
// semantics. A flush is a barrier: it starts once every request submitted before it has
// completed, and requests submitted after it start once it has completed.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/error.h"

namespace berth::disk {

// The most requests one queue may keep in flight: the upper bound of every queue's depth.
// A request counts as in flight from submit() until harvest() has handed out its completion.
inline constexpr unsigned kMaxInFlight = 128;

// Set to "threads" to force the thread pool (tests, or a host whose io_uring misbehaves);
// "io_uring" or unset: io_uring where the kernel allows it.
inline constexpr const char* kBackendEnvVar = "BERTH_DISK_IO_BACKEND";

enum class AsyncOp : uint8_t { kRead, kWrite, kFlush };

// kAuto: io_uring unless it is missing or refused, or kBackendEnvVar says "threads".
enum class AsyncBackend : uint8_t { kAuto, kIoUring, kThreads };

struct AsyncRequest {
  AsyncOp op = AsyncOp::kRead;
  int fd = -1;
  uint64_t offset = 0;
  // Buffers of a read or write. The array and the memory it points to must stay valid until
  // the request's completion has been harvested (or the queue destroyed).
  const iovec* iov = nullptr;
  unsigned iovcnt = 0;
  uint64_t tag = 0;  // returned with the completion, otherwise unused
};

struct AsyncCompletion {
  uint64_t tag = 0;
  int64_t result = 0;  // bytes transferred (reads and writes), 0 (flush), or -errno
};

class AsyncQueue {
 public:
  virtual ~AsyncQueue() = default;
  AsyncQueue(const AsyncQueue&) = delete;
  AsyncQueue& operator=(const AsyncQueue&) = delete;

  virtual const char* backend() const = 0;  // "io_uring" or "threads"
  // Why the thread pool was chosen ("" for io_uring).
  const std::string& fallback_reason() const { return fallback_reason_; }
  unsigned depth() const { return depth_; }
  unsigned in_flight() const { return in_flight_; }

  // Queues a request. When depth() requests are already in flight it throws berth::Error
  // DISK_QUEUE_FULL and queues nothing.
  void submit(const AsyncRequest& request);
  // Starts the queued requests (harvest does this too); io_uring batches them in one call.
  // Committing after each submit gives the lowest latency and keeps the device busiest:
  // measured on a virtio disk, batching until the next harvest let the device's queue run
  // dry between bursts (about 0.8 of eager submission's IOPS at depth 32-64).
  virtual void commit() = 0;
  // Moves up to out.size() completions into out, in the order they completed, after waiting
  // until at least min(wait_for, out.size(), in_flight()) are there. Returns how many.
  size_t harvest(std::span<AsyncCompletion> out, unsigned wait_for);

  void set_fallback_reason(std::string reason) { fallback_reason_ = std::move(reason); }

  // From now on every completion the backend produces also adds 1 to the eventfd `fd`
  // (duplicated), so an event loop can wait for completions among its other sources
  // instead of blocking in harvest(). Completions that happen inside commit() (io_uring
  // answers a read from the page cache at once) add nothing: harvest after committing.
  // Throws DISK_IO if the kernel refuses.
  virtual void set_completion_fd(int fd) = 0;

 protected:
  explicit AsyncQueue(unsigned depth);
  virtual void enqueue(const AsyncRequest& request) = 0;
  // Completions into out (at most out.size()), waiting until wait_for are there.
  virtual size_t collect(std::span<AsyncCompletion> out, unsigned wait_for) = 0;

 private:
  unsigned depth_;
  unsigned in_flight_ = 0;
  std::string fallback_reason_;
};

// The refusal of a request beyond the bound: berth::Error DISK_QUEUE_FULL.
Error queue_full_error(unsigned depth);

// Opens a queue of the given depth (1..kMaxInFlight; DISK_UNSUPPORTED otherwise). With
// kIoUring, a host without usable io_uring is refused (DISK_UNSUPPORTED); kAuto falls back
// to the thread pool when io_uring_queue_init fails with ENOSYS, EPERM or ENOMEM.
std::unique_ptr<AsyncQueue> open_async_queue(unsigned depth, AsyncBackend backend = AsyncBackend::kAuto);

}  // namespace berth::disk
