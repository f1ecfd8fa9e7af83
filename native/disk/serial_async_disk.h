// The asynchronous interface over a driver's synchronous calls, for formats without a
// parallel path of their own (BlockDevice::open_async's default): one thread of its own
// carries the requests out one at a time, in submission order, through the BlockDevice's
// readv, writev and flush. The caller's thread never blocks on the disk, and the order is
// the order the driver would have seen from synchronous calls, so every ordering guarantee
// of the driver holds. backend() is "serial".
//
// The BlockDevice must outlive this object, and its synchronous calls must not be used
// while requests are in flight. Destroying it carries out every request submitted.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/unique_fd.h"
#include "disk/async_disk.h"
#include "disk/block_device.h"

namespace berth::disk {

class SerialAsyncDisk final : public AsyncDisk {
 public:
  // Throws DISK_UNSUPPORTED for a depth outside 1..kMaxInFlight.
  SerialAsyncDisk(BlockDevice& device, unsigned depth);
  ~SerialAsyncDisk() override;

  const char* backend() const override { return "serial"; }
  const std::string& fallback_reason() const override { return reason_; }
  unsigned depth() const override { return depth_; }
  unsigned in_flight() const override { return in_flight_; }
  uint64_t capacity() const override { return device_.capacity(); }
  bool direct() const override { return false; }

  void submit(const DiskRequest& request) override;
  void commit() override {}  // the thread starts requests as they are submitted
  size_t harvest(std::span<AsyncCompletion> out, unsigned wait_for) override;
  Error error_for(const AsyncCompletion& completion) const override;
  void set_completion_fd(int fd) override;

 private:
  struct Job {
    AsyncOp op = AsyncOp::kRead;
    uint64_t offset = 0;
    uint64_t tag = 0;
    std::vector<iovec> iov;
  };

  void work();
  int64_t execute(const Job& job, std::optional<Error>& error);

  BlockDevice& device_;
  unsigned depth_;
  std::string reason_;
  std::string path_;
  unsigned in_flight_ = 0;  // caller's thread only

  mutable std::mutex mutex_;
  std::condition_variable work_ready_, done_ready_;
  std::deque<Job> queued_;
  std::deque<AsyncCompletion> done_;
  std::unordered_map<uint64_t, Error> errors_;  // by tag, of failed requests not yet asked about
  UniqueFd completion_fd_;
  bool stopping_ = false;
  std::jthread thread_;  // last: joined before the state above goes
};

}  // namespace berth::disk
