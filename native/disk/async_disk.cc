#include "disk/async_disk.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "disk/aligned_io.h"

namespace berth::disk {

namespace {

int duplicate(const AsyncTarget& target) {
  int fd = ::fcntl(target.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw SystemError("DISK_IO", "cannot open an asynchronous path to " + target.path, errno);
  return fd;
}

bool is_aligned(uint64_t value, uint32_t alignment) { return (value & (alignment - 1)) == 0; }

}  // namespace

FileAsyncDisk::FileAsyncDisk(const AsyncTarget& target, unsigned depth, AsyncBackend backend)
    : fd_(duplicate(target)), target_(target) {
  target_.fd = fd_.get();
  queue_ = open_async_queue(depth, backend);
  slots_.resize(depth);
  free_.reserve(depth);
  for (unsigned i = depth; i-- > 0;) free_.push_back(i);
}

void FileAsyncDisk::check(const DiskRequest& r) const {
  if (r.op == AsyncOp::kFlush) return;
  uint64_t length = 0;
  for (const iovec& v : r.iov) length += v.iov_len;
  if (r.offset > target_.capacity || length > target_.capacity - r.offset) {
    throw Error("DISK_RANGE", "request at offset " + std::to_string(r.offset) + " (" + std::to_string(length) +
                                  " bytes) is outside " + target_.path + " (" + std::to_string(target_.capacity) +
                                  " bytes)");
  }
  if (r.op == AsyncOp::kWrite && target_.read_only) {
    throw Error("DISK_READ_ONLY", target_.path + " is open read-only");
  }
}

void FileAsyncDisk::submit(const DiskRequest& r) {
  check(r);
  if (free_.empty()) throw queue_full_error(depth());
  unsigned index = free_.back();
  free_.pop_back();
  ++busy_;
  Slot& s = slots_[index];
  s.op = r.op;
  s.tag = r.tag;
  s.offset = r.offset;
  s.iov.assign(r.iov.begin(), r.iov.end());
  s.first = 0;
  s.total = 0;
  for (const iovec& v : s.iov) s.total += v.iov_len;
  s.done = 0;
  s.result = 0;
  try {
    if (r.op == AsyncOp::kFlush ? target_.read_only : s.total == 0) {
      finish(index, 0);  // nothing to do
    } else if (r.op != AsyncOp::kFlush && target_.direct && !aligned(s)) {
      run_bounced(index);
    } else {
      start(index);
    }
  } catch (...) {  // not queued (the queue could not take it): the slot is free again
    free_.push_back(index);
    --busy_;
    throw;
  }
}

bool FileAsyncDisk::aligned(const Slot& s) const {
  if (!is_aligned(s.offset, target_.alignment)) return false;
  return std::all_of(s.iov.begin(), s.iov.end(), [&](const iovec& v) {
    return is_aligned(reinterpret_cast<uintptr_t>(v.iov_base), target_.alignment) &&
           is_aligned(v.iov_len, target_.alignment);
  });
}

void FileAsyncDisk::start(unsigned index) {
  Slot& s = slots_[index];
  AsyncRequest q;
  q.op = s.op;
  q.fd = fd_.get();
  q.offset = s.offset;
  q.iov = s.iov.data() + s.first;
  q.iovcnt = static_cast<unsigned>(s.iov.size() - s.first);
  q.tag = index;
  queue_->submit(q);  // cannot be full: the queue is as deep as the slots
}

// Unaligned under O_DIRECT: through aligned_io's bounce buffers, synchronously. A write
// reads and rewrites the blocks at its edges, so nothing may be in flight around it.
void FileAsyncDisk::run_bounced(unsigned index) {
  Slot& s = slots_[index];
  if (s.op == AsyncOp::kWrite) drain();
  int64_t result = static_cast<int64_t>(s.total);
  try {
    uint64_t at = s.offset;
    for (const iovec& v : s.iov) {
      auto* p = static_cast<uint8_t*>(v.iov_base);
      if (s.op == AsyncOp::kRead) {
        aligned_read(fd_.get(), true, target_.alignment, at, std::span<uint8_t>(p, v.iov_len), target_.path);
      } else {
        aligned_write(fd_.get(), true, target_.alignment, at, std::span<const uint8_t>(p, v.iov_len), target_.path);
      }
      at += v.iov_len;
    }
  } catch (const Error& e) {
    result = e.code() == "DISK_NO_SPACE" ? -ENOSPC : -EIO;
  }
  finish(index, result);
}

void FileAsyncDisk::finish(unsigned index, int64_t result) {
  slots_[index].result = result;
  ready_.push_back(index);
}

void FileAsyncDisk::advance(Slot& s, uint64_t bytes) {
  s.done += bytes;
  s.offset += bytes;
  while (bytes > 0 && s.first < s.iov.size()) {
    iovec& v = s.iov[s.first];
    if (bytes >= v.iov_len) {
      bytes -= v.iov_len;
      ++s.first;
    } else {
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + bytes;
      v.iov_len -= bytes;
      bytes = 0;
    }
  }
}

void FileAsyncDisk::on_completion(unsigned index, int64_t result) {
  Slot& s = slots_[index];
  if (s.op == AsyncOp::kFlush) return finish(index, result);
  if (result == -EINTR || result == -EAGAIN) return restart(index);
  if (result < 0) return finish(index, result);
  bool end_of_file = result == 0 && s.op == AsyncOp::kRead;
  if (result == 0 && s.op == AsyncOp::kWrite) return finish(index, -EIO);  // no progress
  advance(s, static_cast<uint64_t>(result));
  if (s.done == s.total) return finish(index, static_cast<int64_t>(s.total));
  // Under O_DIRECT a short read that ends mid-block is the end of the file: continuing from
  // an unaligned offset would fail.
  if (s.op == AsyncOp::kRead && target_.direct && !is_aligned(s.done, target_.alignment)) end_of_file = true;
  if (end_of_file) {  // the file is shorter than the disk was: the rest reads as zeroes
    for (size_t i = s.first; i < s.iov.size(); ++i) std::memset(s.iov[i].iov_base, 0, s.iov[i].iov_len);
    return finish(index, static_cast<int64_t>(s.total));
  }
  restart(index);  // a short transfer: the rest
}

// Resubmits (the rest of) a request from harvest; if the queue cannot take it, the request
// fails rather than staying in flight forever.
void FileAsyncDisk::restart(unsigned index) {
  try {
    start(index);
  } catch (const std::exception&) {
    finish(index, -EIO);
  }
}

// Takes what the queue has finished (waiting until wait_for of its requests have) and
// moves each request on: finished, or its remainder resubmitted.
void FileAsyncDisk::pump(unsigned wait_for) {
  AsyncCompletion got[kMaxInFlight];
  size_t n = queue_->harvest(std::span<AsyncCompletion>(got, queue_->depth()), wait_for);
  for (size_t i = 0; i < n; ++i) on_completion(static_cast<unsigned>(got[i].tag), got[i].result);
}

void FileAsyncDisk::drain() {
  while (queue_->in_flight() > 0) pump(queue_->in_flight());
}

size_t FileAsyncDisk::harvest(std::span<AsyncCompletion> out, unsigned wait_for) {
  size_t need = std::min<size_t>({wait_for, out.size(), busy_});
  if (need == 0 && queue_->in_flight() > 0) pump(0);
  while (ready_.size() < need && queue_->in_flight() > 0) pump(static_cast<unsigned>(need - ready_.size()));
  size_t n = std::min(out.size(), ready_.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned index = ready_.front();
    ready_.pop_front();
    out[i] = {slots_[index].tag, slots_[index].result};
    free_.push_back(index);
    --busy_;
  }
  return n;
}

Error FileAsyncDisk::error_for(const AsyncCompletion& c) const {
  int err = c.result < 0 ? static_cast<int>(-c.result) : EIO;
  return io_error("I/O on " + target_.path + " failed", target_.path, err);
}

}  // namespace berth::disk
