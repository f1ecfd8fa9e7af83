#include "disk/thread_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/error.h"

namespace berth::disk {

namespace {

// One system call (repeated only when a signal interrupted it): the result as io_uring
// would report it.
int64_t execute(const AsyncRequest& r) {
  for (;;) {
    ssize_t rc = 0;
    switch (r.op) {
      case AsyncOp::kRead: rc = ::preadv(r.fd, r.iov, static_cast<int>(r.iovcnt), static_cast<off_t>(r.offset)); break;
      case AsyncOp::kWrite: rc = ::pwritev(r.fd, r.iov, static_cast<int>(r.iovcnt), static_cast<off_t>(r.offset)); break;
      case AsyncOp::kFlush: rc = ::fdatasync(r.fd); break;
    }
    if (rc >= 0) return rc;
    if (errno != EINTR) return -errno;
  }
}

}  // namespace

ThreadQueue::ThreadQueue(unsigned depth) : AsyncQueue(depth) {
  unsigned threads = std::min(depth, kMaxPoolThreads);
  workers_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

ThreadQueue::~ThreadQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;  // the workers finish what is queued, then end
  }
  work_ready_.notify_all();
  workers_.clear();  // joins
}

void ThreadQueue::enqueue(const AsyncRequest& request) {
  {
    std::lock_guard lock(mutex_);
    queued_.push_back(request);
  }
  work_ready_.notify_one();
}

bool ThreadQueue::can_start() const {
  if (queued_.empty() || flush_running_) return false;
  return queued_.front().op != AsyncOp::kFlush || running_ == 0;
}

void ThreadQueue::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_ready_.wait(lock, [this] { return (stopping_ && queued_.empty()) || can_start(); });
    if (stopping_ && queued_.empty()) return;
    AsyncRequest request = queued_.front();
    queued_.pop_front();
    bool flush = request.op == AsyncOp::kFlush;
    flush_running_ = flush;
    ++running_;
    lock.unlock();
    int64_t result = execute(request);
    lock.lock();
    --running_;
    if (flush) flush_running_ = false;
    done_.push_back({request.tag, result});
    done_ready_.notify_one();
    if (completion_fd_.valid()) {
      uint64_t one = 1;
      (void)!::write(completion_fd_.get(), &one, sizeof one);  // a full counter still wakes the reader
    }
    // A flush waiting for the running requests to drain, requests held back by a flush, or
    // (stopping) workers waiting for the queue to empty.
    if (flush || stopping_) work_ready_.notify_all();
    else if (running_ == 0 && !queued_.empty() && queued_.front().op == AsyncOp::kFlush) work_ready_.notify_one();
  }
}

void ThreadQueue::set_completion_fd(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw SystemError("DISK_IO", "cannot duplicate the disk completion eventfd", errno);
  std::lock_guard lock(mutex_);
  completion_fd_ = UniqueFd(copy);
}

size_t ThreadQueue::collect(std::span<AsyncCompletion> out, unsigned wait_for) {
  std::unique_lock lock(mutex_);
  done_ready_.wait(lock, [&] { return done_.size() >= wait_for; });
  size_t n = std::min(out.size(), done_.size());
  std::copy_n(done_.begin(), n, out.begin());
  done_.erase(done_.begin(), done_.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

}  // namespace berth::disk
