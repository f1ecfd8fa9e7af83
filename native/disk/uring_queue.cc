#include "disk/uring_queue.h"

#include <fcntl.h>

#include <cerrno>

#include "common/error.h"

namespace berth::disk {

IoUring::~IoUring() {
  if (ready_) io_uring_queue_exit(&ring_);
}

int IoUring::init(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) return -rc;
  ready_ = true;
  return 0;
}

std::unique_ptr<UringQueue> UringQueue::open(unsigned depth, int* error) {
  std::unique_ptr<UringQueue> q(new UringQueue(depth));
  *error = q->ring_.init(depth);
  if (*error != 0) return nullptr;
  return q;
}

UringQueue::~UringQueue() {
  // The kernel may still be reading into or writing from the callers' buffers: wait.
  try {
    AsyncCompletion sink[16];
    while (in_flight() > 0) harvest(sink, 1);
  } catch (...) {
    // The ring is torn down below; io_uring_queue_exit lets the kernel cancel what is left.
  }
}

void UringQueue::set_completion_fd(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw SystemError("DISK_IO", "cannot duplicate the disk completion eventfd", errno);
  UniqueFd owned(copy);
  io_uring* ring = ring_.get();
  if (completion_fd_.valid()) io_uring_unregister_eventfd(ring);
  // Every completion signals. (The _async variant signals only those io_uring's worker
  // threads post: O_DIRECT requests and reads that miss the page cache complete elsewhere
  // and would never wake the event loop.) What completes inside io_uring_submit is
  // harvested right after the commit; its signal costs the loop one empty round.
  int rc = io_uring_register_eventfd(ring, owned.get());
  if (rc < 0) throw SystemError("DISK_IO", "io_uring refused the disk completion eventfd", -rc);
  completion_fd_ = std::move(owned);
}

void UringQueue::enqueue(const AsyncRequest& request) {
  io_uring* ring = ring_.get();
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (!sqe) {  // cannot happen while in_flight < depth <= entries; committing frees the ring
    commit();
    sqe = io_uring_get_sqe(ring);
    if (!sqe) throw queue_full_error(depth());
  }
  switch (request.op) {
    case AsyncOp::kRead:
      io_uring_prep_readv(sqe, request.fd, request.iov, request.iovcnt, request.offset);
      break;
    case AsyncOp::kWrite:
      io_uring_prep_writev(sqe, request.fd, request.iov, request.iovcnt, request.offset);
      break;
    case AsyncOp::kFlush:
      io_uring_prep_fsync(sqe, request.fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_flags(sqe, IOSQE_IO_DRAIN);
      break;
  }
  io_uring_sqe_set_data64(sqe, request.tag);
}

void UringQueue::commit() {
  io_uring* ring = ring_.get();
  while (io_uring_sq_ready(ring) > 0) {
    int rc = io_uring_submit(ring);
    if (rc > 0 || rc == -EINTR) continue;
    if (rc == 0 || rc == -EAGAIN || rc == -EBUSY) return;  // the kernel is short of resources: retried at harvest
    throw SystemError("DISK_IO", "submitting disk requests to io_uring failed", -rc);
  }
}

size_t UringQueue::take_ready(std::span<AsyncCompletion> out) {
  io_uring* ring = ring_.get();
  size_t n = 0;
  unsigned head = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(ring, head, cqe) {
    if (n == out.size()) break;
    out[n++] = {io_uring_cqe_get_data64(cqe), cqe->res};
  }
  io_uring_cq_advance(ring, static_cast<unsigned>(n));
  return n;
}

size_t UringQueue::collect(std::span<AsyncCompletion> out, unsigned wait_for) {
  io_uring* ring = ring_.get();
  if (wait_for == 0) commit();
  size_t n = take_ready(out);
  while (n < wait_for) {
    unsigned want = wait_for - static_cast<unsigned>(n);
    int rc = 0;
    if (io_uring_sq_ready(ring) > 0) {
      rc = io_uring_submit_and_wait(ring, want);  // one system call for both
    } else {
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_wait_cqe_nr(ring, &cqe, want);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
      throw SystemError("DISK_IO", "waiting for disk completions from io_uring failed", -rc);
    }
    n += take_ready(out.subspan(n));
  }
  return n;
}

}  // namespace berth::disk
