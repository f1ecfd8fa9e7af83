// The portable backend of AsyncQueue: a small pool of threads, each issuing one preadv,
// pwritev or fdatasync at a time, used where io_uring is missing or refused (or forced
// through kBackendEnvVar). Requests start in submission order; a flush waits until every
// request started before it has finished, and holds back later ones until it is done.
// Destroying the queue waits for every request submitted, started or not (as io_uring's
// does): a write handed to the queue is never silently dropped.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "disk/async_queue.h"

namespace berth::disk {

// Threads a pool runs: enough to keep a disk busy, few enough to stay small.
inline constexpr unsigned kMaxPoolThreads = 8;

class ThreadQueue final : public AsyncQueue {
 public:
  explicit ThreadQueue(unsigned depth);
  ~ThreadQueue() override;

  const char* backend() const override { return "threads"; }
  void commit() override {}  // workers start requests as they are submitted
  void set_completion_fd(int fd) override;

 private:
  void enqueue(const AsyncRequest& request) override;
  size_t collect(std::span<AsyncCompletion> out, unsigned wait_for) override;
  void work();
  bool can_start() const;  // under mutex_

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable done_ready_;
  std::deque<AsyncRequest> queued_;
  std::deque<AsyncCompletion> done_;
  unsigned running_ = 0;
  bool flush_running_ = false;
  bool stopping_ = false;
  UniqueFd completion_fd_;  // under mutex_
  std::vector<std::jthread> workers_;  // last: joined before the state above goes
};

}  // namespace berth::disk
