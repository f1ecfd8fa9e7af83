#include "disk/raw.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/error.h"
#include "disk/aligned_io.h"
#include "disk/async_disk.h"
#include "disk/driver.h"

namespace berth::disk {

namespace {

constexpr uint32_t kDirectAlign = 4096;

class RawDisk final : public BlockDevice {
 public:
  RawDisk(File file, bool read_only) : file_(std::move(file)), read_only_(read_only) {
    capacity_ = file_.size();
    fall_back_from_direct_if_needed();
  }

  uint64_t capacity() const override { return capacity_; }
  bool read_only() const override { return read_only_; }

  void read(uint64_t offset, std::span<uint8_t> buf) override {
    check_range(offset, buf.size());
    aligned_read(file_.fd(), file_.direct(), kDirectAlign, offset, buf, file_.path());
  }

  void write(uint64_t offset, std::span<const uint8_t> buf) override {
    check_writable();
    check_range(offset, buf.size());
    aligned_write(file_.fd(), file_.direct(), kDirectAlign, offset, buf, file_.path());
  }

  void flush() override {
    if (!read_only_) file_.sync();
  }

  void discard(uint64_t offset, uint64_t length) override { write_zeroes(offset, length, true); }

  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override {
    check_writable();
    check_range(offset, length);
    if (length == 0) return;
    if (may_unmap && file_.punch_hole(offset, length)) return;
#ifdef FALLOC_FL_ZERO_RANGE
    if (::fallocate(file_.fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0) {
      return;
    }
#endif
    aligned_write_zeroes(file_.fd(), file_.direct(), kDirectAlign, offset, length, file_.path());
  }

  Extent block_status(uint64_t offset, uint64_t length) override {
    if (offset >= capacity_) throw range_error(offset, length);
    uint64_t end = offset + std::min(length, capacity_ - offset);
    uint64_t data = 0;
    if (!file_.next_data(offset, &data)) return {offset, end - offset, ExtentKind::kData};
    if (data > offset) return {offset, std::min(data, end) - offset, ExtentKind::kZero};
    uint64_t hole = 0;
    if (!file_.next_hole(offset, &hole) || hole <= offset) hole = end;
    return {offset, std::min(hole, end) - offset, ExtentKind::kData};
  }

  std::unique_ptr<AsyncDisk> open_async(unsigned depth, AsyncBackend backend) override {
    return std::make_unique<FileAsyncDisk>(
        AsyncTarget{file_.fd(), file_.direct(), kDirectAlign, capacity_, read_only_, file_.path()}, depth, backend);
  }

  ImageInfo info() const override {
    ImageInfo info;
    info.format = Format::kRaw;
    info.path = file_.path();
    info.virtual_size = capacity_;
    info.file_size = file_.size();
    info.allocated_bytes = file_.allocated_bytes();
    info.subformat = (capacity_ > 0 && info.allocated_bytes >= capacity_) ? "preallocated" : "sparse";
    return info;
  }

  void resize(uint64_t new_capacity) override {
    check_writable();
    if (new_capacity < capacity_) {
      uint64_t data = 0;
      if (!file_.next_data(new_capacity, &data) || data < capacity_) {
        throw Error("DISK_SHRINK_DATA", "cannot shrink " + file_.path() + " to " + std::to_string(new_capacity) +
                                            " bytes: the range being cut off holds data (at offset " +
                                            std::to_string(data) +
                                            "); move the data out of it inside the guest first, or discard it");
      }
    }
    file_.truncate(new_capacity);
    capacity_ = new_capacity;
    fall_back_from_direct_if_needed();
  }

 private:
  // O_DIRECT transfers whole 4 KiB units; a file whose size is not a multiple of that
  // would grow at its tail, so such files use buffered I/O.
  void fall_back_from_direct_if_needed() {
    if (file_.direct() && capacity_ % kDirectAlign != 0) {
      file_ = File(file_.path(), read_only_ ? File::Mode::kReadOnly : File::Mode::kReadWrite, false);
    }
  }

  void check_range(uint64_t offset, uint64_t length) const {
    if (offset > capacity_ || length > capacity_ - offset) throw range_error(offset, length);
  }
  Error range_error(uint64_t offset, uint64_t length) const {
    return Error("DISK_RANGE", "request at offset " + std::to_string(offset) + " (" + std::to_string(length) +
                                   " bytes) is outside " + file_.path() + " (" + std::to_string(capacity_) +
                                   " bytes)");
  }
  void check_writable() const {
    if (read_only_) throw Error("DISK_READ_ONLY", file_.path() + " is open read-only");
  }

  File file_;
  bool read_only_;
  uint64_t capacity_ = 0;
};

bool probe_raw(const File& file) {
  struct stat st;
  return ::fstat(file.fd(), &st) == 0 && S_ISREG(st.st_mode);
}

std::unique_ptr<BlockDevice> open_raw_driver(File file, const OpenOptions& options, const BackingOpener&) {
  return open_raw(std::move(file), options);
}

[[maybe_unused]] const bool registered = register_driver({Format::kRaw, 1000, probe_raw, open_raw_driver, create_raw, true});

}  // namespace

std::unique_ptr<BlockDevice> open_raw(File file, const OpenOptions& options) {
  return std::make_unique<RawDisk>(std::move(file), options.read_only);
}

void create_raw(const std::string& path, const CreateOptions& options) {
  if (!options.backing_path.empty()) {
    throw Error("DISK_UNSUPPORTED", "raw images cannot have a backing file; create " + path +
                                        " as qcow2 to make a differencing disk over " + options.backing_path);
  }
  File file(path, File::Mode::kCreateExclusive);
  try {
    if (options.fixed) {
      if (options.size > 0) file.allocate(0, options.size);
    } else {
      file.truncate(options.size);
    }
    file.sync();
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

}  // namespace berth::disk
