#include "disk/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace berth::disk {

File::File(const std::string& path, Mode mode, bool direct) : path_(path), direct_(direct) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case Mode::kReadOnly: flags |= O_RDONLY; break;
    case Mode::kReadWrite: flags |= O_RDWR; break;
    case Mode::kCreateExclusive: flags |= O_RDWR | O_CREAT | O_EXCL; break;
  }
#ifdef O_DIRECT
  if (direct) flags |= O_DIRECT;
#endif
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0 && direct && errno == EINVAL) {
    // The filesystem refuses O_DIRECT (tmpfs, for one): fall back to buffered I/O.
    direct_ = false;
    fd = ::open(path.c_str(), flags & ~O_DIRECT, 0644);
  }
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) throw Error("DISK_EXISTS", path + " already exists; choose another name or remove it first");
    if (err == ENOENT) throw Error("DISK_NOT_FOUND", path + " does not exist");
    if (err == EACCES || err == EPERM) throw Error("DISK_PERMISSION", "no permission to open " + path);
    throw SystemError("DISK_OPEN", "cannot open " + path, err);
  }
  fd_ = UniqueFd(fd);
}

void File::read_exact(uint64_t offset, std::span<uint8_t> buf) const {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd_.get(), buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw SystemError("DISK_IO", "read from " + path_ + " at offset " + std::to_string(offset + done) + " failed", errno);
    }
    if (n == 0) {
      throw Error("DISK_TRUNCATED", path_ + " is truncated: it ends before offset " +
                                        std::to_string(offset + buf.size()) + " (file size " +
                                        std::to_string(size()) + ")");
    }
    done += static_cast<size_t>(n);
  }
}

void File::read_or_zero(uint64_t offset, std::span<uint8_t> buf) const {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd_.get(), buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw SystemError("DISK_IO", "read from " + path_ + " failed", errno);
    }
    if (n == 0) {
      std::memset(buf.data() + done, 0, buf.size() - done);
      return;
    }
    done += static_cast<size_t>(n);
  }
}

void File::write_all(uint64_t offset, std::span<const uint8_t> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd_.get(), buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC) throw Error("DISK_NO_SPACE", "no space left on the device holding " + path_);
      throw SystemError("DISK_IO", "write to " + path_ + " at offset " + std::to_string(offset + done) + " failed", errno);
    }
    done += static_cast<size_t>(n);
  }
}

uint64_t File::size() const {
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) throw SystemError("DISK_IO", "stat " + path_, errno);
  if (S_ISBLK(st.st_mode)) {
    off_t end = ::lseek(fd_.get(), 0, SEEK_END);
    if (end < 0) throw SystemError("DISK_IO", "size of " + path_, errno);
    return static_cast<uint64_t>(end);
  }
  return static_cast<uint64_t>(st.st_size);
}

uint64_t File::allocated_bytes() const {
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) throw SystemError("DISK_IO", "stat " + path_, errno);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

void File::truncate(uint64_t size) {
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
    throw SystemError("DISK_IO", "cannot resize " + path_ + " to " + std::to_string(size) + " bytes", errno);
  }
}

void File::sync() {
  if (::fdatasync(fd_.get()) != 0) throw SystemError("DISK_IO", "flush of " + path_ + " failed", errno);
}

bool File::punch_hole(uint64_t offset, uint64_t length) {
#ifdef FALLOC_FL_PUNCH_HOLE
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) == 0) {
    return true;
  }
  if (errno != EOPNOTSUPP && errno != ENOSYS) {
    throw SystemError("DISK_IO", "cannot release a range of " + path_, errno);
  }
#else
  (void)offset;
  (void)length;
#endif
  return false;
}

void File::allocate(uint64_t offset, uint64_t length) {
  if (::posix_fallocate(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) return;
  std::vector<uint8_t> zeroes(1 << 20, 0);
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(zeroes.size(), length - done);
    write_all(offset + done, std::span<const uint8_t>(zeroes.data(), n));
    done += n;
  }
}

bool File::next_data(uint64_t offset, uint64_t* data_offset) const {
  off_t r = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
  if (r < 0) {
    if (errno == ENXIO) {  // no data after offset
      *data_offset = size();
      return true;
    }
    return false;
  }
  *data_offset = static_cast<uint64_t>(r);
  return true;
}

bool File::next_hole(uint64_t offset, uint64_t* hole_offset) const {
  off_t r = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_HOLE);
  if (r < 0) return false;
  *hole_offset = static_cast<uint64_t>(r);
  return true;
}

bool File::is_block_device() const {
  struct stat st;
  return ::fstat(fd_.get(), &st) == 0 && S_ISBLK(st.st_mode);
}

}  // namespace berth::disk
