#include "disk/mapped_async_disk.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_map>
#include <vector>

#include "disk/aligned_io.h"  // io_error

namespace berth::disk {
namespace {

// The iovecs of [from, from + length) of a request's buffers.
void slice(std::span<const iovec> iov, uint64_t from, uint64_t length, std::vector<iovec>& out) {
  out.clear();
  for (const iovec& v : iov) {
    if (length == 0) break;
    if (from >= v.iov_len) {
      from -= v.iov_len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(v.iov_len - from, length);
    out.push_back({static_cast<uint8_t*>(v.iov_base) + from, n});
    from = 0;
    length -= n;
  }
}

int errno_for(const Error& e) { return e.code() == "DISK_NO_SPACE" ? ENOSPC : EIO; }

class MappedAsyncDisk final : public AsyncDisk {
 public:
  MappedAsyncDisk(MappedAsyncHost& host, const AsyncTarget& data, unsigned depth, AsyncBackend backend)
      : host_(host), dev_(host.device()), path_(data.path), data_(data, kMaxInFlight, backend) {
    if (depth == 0 || depth > kMaxInFlight) {
      throw Error("DISK_UNSUPPORTED", "a disk queue depth of " + std::to_string(depth) + " is not supported (1 to " +
                                          std::to_string(kMaxInFlight) + ")");
    }
    slots_.resize(depth);
    for (unsigned i = depth; i-- > 0;) free_.push_back(i);
    host_.set_settle_hook([this] { settle(); });
  }
  // Waits for every request in flight: they complete (the thread pool alone would drop
  // the ones it has not started), so the device sees all of them before it is used again.
  ~MappedAsyncDisk() override {
    host_.set_settle_hook({});
    try {
      settle();
    } catch (...) {
      // The queue failed: data_ still waits for what the kernel has, when it is destroyed.
    }
  }

  const char* backend() const override { return data_.backend(); }
  const std::string& fallback_reason() const override { return data_.fallback_reason(); }
  unsigned depth() const override { return static_cast<unsigned>(slots_.size()); }
  unsigned in_flight() const override { return busy_; }
  uint64_t capacity() const override { return dev_.capacity(); }
  bool direct() const override { return data_.direct(); }

  void submit(const DiskRequest& r) override;
  void commit() override { data_.commit(); }
  void set_completion_fd(int fd) override { data_.set_completion_fd(fd); }
  size_t harvest(std::span<AsyncCompletion> out, unsigned wait_for) override;

  Error error_for(const AsyncCompletion& c) const override {
    if (auto it = errors_.find(c.tag); it != errors_.end()) return it->second;
    return io_error("I/O on " + path_ + " failed", path_, c.result < 0 ? static_cast<int>(-c.result) : EIO);
  }

 private:
  struct Slot {
    AsyncOp op = AsyncOp::kRead;
    uint64_t tag = 0;
    uint64_t total = 0;
    unsigned outstanding = 0;  // parts in data_, plus one while submit() works on it
    int64_t result = 0;        // 0, or the first part's -errno
    std::optional<Error> error;
  };

  void check(const DiskRequest& r, uint64_t length) const;
  void split(unsigned index, const DiskRequest& r);
  void queue(unsigned index, AsyncOp op, uint64_t host);
  void through_driver(AsyncOp op, uint64_t offset);
  void fail(unsigned index, int err, std::optional<Error> error);
  void done_part(unsigned index);
  void pump(unsigned wait_for);
  void settle();

  MappedAsyncHost& host_;
  BlockDevice& dev_;
  std::string path_;
  FileAsyncDisk data_;
  std::vector<Slot> slots_;
  std::vector<unsigned> free_;
  std::deque<unsigned> ready_;
  unsigned busy_ = 0;
  std::vector<iovec> part_;  // the buffers of the run being handled
  std::unordered_map<uint64_t, Error> errors_;  // of failed completions handed out, by tag
};

void MappedAsyncDisk::check(const DiskRequest& r, uint64_t length) const {
  if (r.op == AsyncOp::kFlush) return;
  if (r.offset > dev_.capacity() || length > dev_.capacity() - r.offset) {
    throw Error("DISK_RANGE", "request at offset " + std::to_string(r.offset) + " (" + std::to_string(length) +
                                  " bytes) is outside " + path_ + " (" + std::to_string(dev_.capacity()) + " bytes)");
  }
  if (r.op == AsyncOp::kWrite && dev_.read_only()) throw Error("DISK_READ_ONLY", path_ + " is open read-only");
}

void MappedAsyncDisk::submit(const DiskRequest& r) {
  uint64_t total = 0;
  for (const iovec& v : r.iov) total += v.iov_len;
  check(r, total);
  if (free_.empty()) throw queue_full_error(depth());
  unsigned index = free_.back();
  free_.pop_back();
  ++busy_;
  slots_[index] = Slot{r.op, r.tag, total, 1, 0, std::nullopt};
  try {
    if (r.op == AsyncOp::kFlush) {
      settle();  // a barrier: everything before it has completed
      host_.flush_all();
    } else {
      split(index, r);
    }
  } catch (const Error& e) {
    fail(index, errno_for(e), e);
  } catch (const std::exception& e) {
    fail(index, EIO, io_error(std::string("I/O on ") + path_ + " failed: " + e.what(), path_, EIO));
  }
  done_part(index);  // the part submit() itself was
}

// Walks the request run by run: zeroes at once, allocated data to data_, the rest through
// the driver. A failed run fails the request; the runs already queued still complete.
void MappedAsyncDisk::split(unsigned index, const DiskRequest& r) {
  const uint64_t total = slots_[index].total;
  for (uint64_t pos = 0; pos < total;) {
    MappedRun run = r.op == AsyncOp::kWrite ? host_.write_run(r.offset + pos, total - pos)
                                            : host_.read_run(r.offset + pos, total - pos);
    slice(r.iov, pos, run.length, part_);
    switch (run.kind) {
      case MappedRunKind::kZero:
        for (const iovec& v : part_) std::memset(v.iov_base, 0, v.iov_len);
        break;
      case MappedRunKind::kHost: queue(index, r.op, run.host); break;
      case MappedRunKind::kDriver:
        if (run.settle_first) settle();
        through_driver(r.op, r.offset + pos);
        break;
    }
    pos += run.length;
  }
}

void MappedAsyncDisk::queue(unsigned index, AsyncOp op, uint64_t host) {
  uint64_t length = 0;
  for (const iovec& v : part_) length += v.iov_len;
  if (op == AsyncOp::kWrite) host_.before_data_write(host, length);
  while (data_.in_flight() >= data_.depth()) pump(1);
  data_.submit(DiskRequest{op, host, part_, index});
  ++slots_[index].outstanding;
}

void MappedAsyncDisk::through_driver(AsyncOp op, uint64_t offset) {
  for (const iovec& v : part_) {
    auto* p = static_cast<uint8_t*>(v.iov_base);
    if (op == AsyncOp::kWrite) {
      dev_.write(offset, std::span<const uint8_t>(p, v.iov_len));
    } else {
      dev_.read(offset, std::span<uint8_t>(p, v.iov_len));
    }
    offset += v.iov_len;
  }
}

void MappedAsyncDisk::fail(unsigned index, int err, std::optional<Error> error) {
  Slot& s = slots_[index];
  if (s.result < 0) return;  // the first failure is the one reported
  s.result = -err;
  s.error = std::move(error);
}

void MappedAsyncDisk::done_part(unsigned index) {
  if (--slots_[index].outstanding == 0) ready_.push_back(index);
}

void MappedAsyncDisk::pump(unsigned wait_for) {
  AsyncCompletion got[kMaxInFlight];
  size_t n = data_.harvest(got, wait_for);
  for (size_t i = 0; i < n; ++i) {
    auto index = static_cast<unsigned>(got[i].tag);
    if (got[i].result < 0) fail(index, static_cast<int>(-got[i].result), data_.error_for(got[i]));
    done_part(index);
  }
}

// Waits until nothing is in flight in data_ (the requests stay ready for harvest).
void MappedAsyncDisk::settle() {
  while (data_.in_flight() > 0) pump(data_.in_flight());
}

size_t MappedAsyncDisk::harvest(std::span<AsyncCompletion> out, unsigned wait_for) {
  size_t need = std::min<size_t>({wait_for, out.size(), busy_});
  if (need == 0 && data_.in_flight() > 0) pump(0);
  while (ready_.size() < need && data_.in_flight() > 0) pump(1);
  size_t n = std::min(out.size(), ready_.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned index = ready_.front();
    ready_.pop_front();
    Slot& s = slots_[index];
    int64_t result = s.result < 0 ? s.result : s.op == AsyncOp::kFlush ? 0 : static_cast<int64_t>(s.total);
    out[i] = {s.tag, result};
    if (s.error) {
      if (errors_.size() >= kMaxInFlight) errors_.clear();  // bounded: callers ask soon or never
      errors_.insert_or_assign(s.tag, std::move(*s.error));
    }
    s.error.reset();
    free_.push_back(index);
    --busy_;
  }
  return n;
}

}  // namespace

std::unique_ptr<AsyncDisk> make_mapped_async_disk(MappedAsyncHost& host, const AsyncTarget& data, unsigned depth,
                                                  AsyncBackend backend) {
  return std::make_unique<MappedAsyncDisk>(host, data, depth, backend);
}

}  // namespace berth::disk
