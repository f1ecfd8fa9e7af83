#include "worker/event_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "common/error.h"
#include "worker/run_files.h"

namespace berth::worker {

EventQueue::EventQueue() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!fd_.valid()) throw SystemError("START_FAILED", "eventfd", errno);
}

void EventQueue::post(Event e) {
  std::lock_guard lock(mu_);
  events_.push_back(std::move(e));
  wake();
}

std::deque<Event> EventQueue::take(std::vector<uint8_t>& console) {
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(fd_.get(), &count, sizeof count);
  std::lock_guard lock(mu_);
  console.swap(console_);
  console_.clear();
  return std::exchange(events_, {});
}

void EventQueue::on_console_output(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  bool was_empty = console_.empty();
  console_.insert(console_.end(), bytes.begin(), bytes.end());
  if (was_empty) wake();  // one wake-up per burst, not per byte
}

void EventQueue::on_reset(const std::string& reason) { log("guest reset (" + reason + ")"); }

void EventQueue::wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(fd_.get(), &one, sizeof one);
}

}  // namespace berth::worker
