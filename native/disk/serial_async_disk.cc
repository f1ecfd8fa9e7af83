#include "disk/serial_async_disk.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "disk/aligned_io.h"

namespace berth::disk {

SerialAsyncDisk::SerialAsyncDisk(BlockDevice& device, unsigned depth)
    : device_(device), depth_(depth), path_(device.info().path) {
  if (depth == 0 || depth > kMaxInFlight) {
    throw Error("DISK_UNSUPPORTED", "a disk queue depth of " + std::to_string(depth) + " is not supported (1 to " +
                                        std::to_string(kMaxInFlight) + ")");
  }
  reason_ = std::string("the ") + format_name(device.info().format) + " driver has no parallel path";
  thread_ = std::jthread([this] { work(); });
}

SerialAsyncDisk::~SerialAsyncDisk() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;  // the thread carries out what is queued, then ends
  }
  work_ready_.notify_all();
}

void SerialAsyncDisk::submit(const DiskRequest& r) {
  if (r.op != AsyncOp::kFlush) {
    uint64_t length = 0;
    for (const iovec& v : r.iov) length += v.iov_len;
    if (r.offset > capacity() || length > capacity() - r.offset) {
      throw Error("DISK_RANGE", "request at offset " + std::to_string(r.offset) + " (" + std::to_string(length) +
                                    " bytes) is outside " + path_ + " (" + std::to_string(capacity()) + " bytes)");
    }
    if (r.op == AsyncOp::kWrite && device_.read_only()) throw Error("DISK_READ_ONLY", path_ + " is open read-only");
  }
  if (in_flight_ >= depth_) throw queue_full_error(depth_);
  {
    std::lock_guard lock(mutex_);
    queued_.push_back({r.op, r.offset, r.tag, std::vector<iovec>(r.iov.begin(), r.iov.end())});
  }
  ++in_flight_;
  work_ready_.notify_one();
}

int64_t SerialAsyncDisk::execute(const Job& job, std::optional<Error>& error) {
  try {
    uint64_t total = 0;
    if (job.op == AsyncOp::kFlush) {
      if (!device_.read_only()) device_.flush();
      return 0;
    }
    if (job.op == AsyncOp::kRead) {
      std::vector<std::span<uint8_t>> bufs;
      for (const iovec& v : job.iov) {
        bufs.emplace_back(static_cast<uint8_t*>(v.iov_base), v.iov_len);
        total += v.iov_len;
      }
      device_.readv(job.offset, bufs);
    } else {
      std::vector<std::span<const uint8_t>> bufs;
      for (const iovec& v : job.iov) {
        bufs.emplace_back(static_cast<const uint8_t*>(v.iov_base), v.iov_len);
        total += v.iov_len;
      }
      device_.writev(job.offset, bufs);
    }
    return static_cast<int64_t>(total);
  } catch (const Error& e) {
    error = e;
    return e.code() == "DISK_NO_SPACE" ? -ENOSPC : -EIO;
  } catch (const std::exception& e) {
    error = Error("DISK_IO", "I/O on " + path_ + " failed: " + e.what());
    return -EIO;
  }
}

void SerialAsyncDisk::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_ready_.wait(lock, [this] { return stopping_ || !queued_.empty(); });
    if (queued_.empty()) return;  // stopping, nothing left
    Job job = std::move(queued_.front());
    queued_.pop_front();
    lock.unlock();
    std::optional<Error> error;
    int64_t result = execute(job, error);
    lock.lock();
    if (error) errors_.insert_or_assign(job.tag, *error);
    done_.push_back({job.tag, result});
    done_ready_.notify_one();
    if (completion_fd_.valid()) {
      uint64_t one = 1;
      (void)!::write(completion_fd_.get(), &one, sizeof one);  // a full counter still wakes the reader
    }
  }
}

size_t SerialAsyncDisk::harvest(std::span<AsyncCompletion> out, unsigned wait_for) {
  if (out.empty() || in_flight_ == 0) return 0;
  unsigned need = std::min<unsigned>({wait_for, in_flight_, static_cast<unsigned>(std::min<size_t>(out.size(), depth_))});
  std::unique_lock lock(mutex_);
  done_ready_.wait(lock, [&] { return done_.size() >= need; });
  size_t n = std::min(out.size(), done_.size());
  std::copy_n(done_.begin(), n, out.begin());
  done_.erase(done_.begin(), done_.begin() + static_cast<std::ptrdiff_t>(n));
  in_flight_ -= static_cast<unsigned>(n);
  return n;
}

Error SerialAsyncDisk::error_for(const AsyncCompletion& c) const {
  std::lock_guard lock(mutex_);
  if (auto it = errors_.find(c.tag); it != errors_.end()) return it->second;
  return io_error("I/O on " + path_ + " failed", path_, c.result < 0 ? static_cast<int>(-c.result) : EIO);
}

void SerialAsyncDisk::set_completion_fd(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw SystemError("DISK_IO", "cannot duplicate the disk completion eventfd", errno);
  std::lock_guard lock(mutex_);
  completion_fd_ = UniqueFd(copy);
}

}  // namespace berth::disk
