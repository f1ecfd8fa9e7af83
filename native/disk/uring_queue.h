// The io_uring backend of AsyncQueue (liburing). Reads and writes are IORING_OP_READV/
// WRITEV; a flush is an fdatasync marked IOSQE_IO_DRAIN, which gives it the barrier
// semantics async_queue.h describes. Queued requests reach the kernel in one
// io_uring_submit (commit or harvest). Destroying the queue waits for the requests in flight.
#pragma once

#include <liburing.h>

#include <memory>

#include "common/unique_fd.h"
#include "disk/async_queue.h"

namespace berth::disk {

// Owns one io_uring instance: set up by init, torn down (io_uring_queue_exit) by the destructor.
class IoUring {
 public:
  IoUring() = default;
  ~IoUring();
  IoUring(const IoUring&) = delete;
  IoUring& operator=(const IoUring&) = delete;

  // 0, or the positive errno io_uring_queue_init failed with.
  int init(unsigned entries);
  io_uring* get() { return ready_ ? &ring_ : nullptr; }

 private:
  io_uring ring_{};
  bool ready_ = false;
};

class UringQueue final : public AsyncQueue {
 public:
  // nullptr with *error set (a positive errno) when the kernel will not set up a ring.
  static std::unique_ptr<UringQueue> open(unsigned depth, int* error);
  ~UringQueue() override;

  const char* backend() const override { return "io_uring"; }
  void commit() override;
  void set_completion_fd(int fd) override;

 private:
  explicit UringQueue(unsigned depth) : AsyncQueue(depth) {}
  void enqueue(const AsyncRequest& request) override;
  size_t collect(std::span<AsyncCompletion> out, unsigned wait_for) override;
  size_t take_ready(std::span<AsyncCompletion> out);

  UniqueFd completion_fd_;  // registered with the ring; io_uring keeps its own reference
  IoUring ring_;
};

}  // namespace berth::disk
