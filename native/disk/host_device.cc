#include "disk/host_device.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/fs.h>
#include <sys/sysmacros.h>
#endif
#ifdef __APPLE__
#include <sys/disk.h>
#endif

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "common/error.h"
#include "common/unique_fd.h"
#include "disk/aligned_io.h"
#include "disk/async_disk.h"
#include "disk/driver.h"

namespace berth::disk {

namespace {

#ifdef __linux__
// The device numbers of the device and of its partitions (from sysfs).
std::set<dev_t> device_and_partitions(dev_t dev) {
  std::set<dev_t> devs{dev};
  std::string dir = "/sys/dev/block/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  DIR* d = ::opendir(dir.c_str());
  if (!d) return devs;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::ifstream part(dir + "/" + name + "/partition");
    if (!part) continue;
    std::ifstream devfile(dir + "/" + name + "/dev");
    unsigned maj = 0, min = 0;
    char colon = 0;
    if (devfile >> maj >> colon >> min && colon == ':') devs.insert(makedev(maj, min));
  }
  ::closedir(d);
  return devs;
}

// mountinfo escapes spaces and the like as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; k++) {
        if (i + k >= s.size() || s[i + k] < '0' || s[i + k] > '7') ok = false;
        else v = v * 8 + (s[i + k] - '0');
      }
      if (ok) {
        out += char(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}
#endif

std::string in_use_message(const std::string& path, const std::string& mount_point) {
  if (!mount_point.empty()) {
    return path + " is mounted on " + mount_point + "; unmount it (and any of its partitions) before passing it "
                                                    "through to a virtual machine";
  }
  return path + " is in use (mounted, or held by another program, a RAID/LVM/device-mapper volume or another "
                "virtual machine); unmount or detach it first";
}

class HostDevice final : public BlockDevice {
 public:
  HostDevice(std::string path, UniqueFd fd, bool read_only, bool direct, uint64_t capacity, uint32_t block_size)
      : path_(std::move(path)), fd_(std::move(fd)), read_only_(read_only), direct_(direct), capacity_(capacity),
        block_size_(block_size) {}

  uint64_t capacity() const override { return capacity_; }
  bool read_only() const override { return read_only_; }
  uint32_t logical_block_size() const override { return block_size_; }

  void read(uint64_t offset, std::span<uint8_t> buf) override {
    check_range(offset, buf.size());
    aligned_read(fd_.get(), direct_, block_size_, offset, buf, path_);
  }

  void write(uint64_t offset, std::span<const uint8_t> buf) override {
    check_writable();
    check_range(offset, buf.size());
    aligned_write(fd_.get(), direct_, block_size_, offset, buf, path_);
  }

  void flush() override {
    if (read_only_) return;
    if (::fdatasync(fd_.get()) != 0) throw SystemError("DISK_IO", "flush of " + path_ + " failed", errno);
  }

  // A discarded range must read as zeroes afterwards, which BLKDISCARD does not promise;
  // fallocate(PUNCH_HOLE) on a block device zeroes and lets the device unmap.
  void discard(uint64_t offset, uint64_t length) override { write_zeroes(offset, length, true); }

  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override {
    check_writable();
    check_range(offset, length);
    if (length == 0) return;
    // The block-aligned middle goes to the device; the unaligned edges are written.
    uint64_t start = (offset + block_size_ - 1) / block_size_ * block_size_;
    uint64_t end = (offset + length) / block_size_ * block_size_;
    if (start >= end) {
      aligned_write_zeroes(fd_.get(), direct_, block_size_, offset, length, path_);
      return;
    }
    if (start > offset) aligned_write_zeroes(fd_.get(), direct_, block_size_, offset, start - offset, path_);
    if (offset + length > end) aligned_write_zeroes(fd_.get(), direct_, block_size_, end, offset + length - end, path_);
    if (!zero_device_range(start, end - start, may_unmap)) {
      aligned_write_zeroes(fd_.get(), direct_, block_size_, start, end - start, path_);
    }
  }

  Extent block_status(uint64_t offset, uint64_t length) override {
    if (offset >= capacity_) {
      throw Error("DISK_RANGE", "block status at offset " + std::to_string(offset) + " is outside " + path_);
    }
    return {offset, std::min(length, capacity_ - offset), ExtentKind::kData};
  }

  std::unique_ptr<AsyncDisk> open_async(unsigned depth, AsyncBackend backend) override {
    return std::make_unique<FileAsyncDisk>(AsyncTarget{fd_.get(), direct_, block_size_, capacity_, read_only_, path_},
                                       depth, backend);
  }

  ImageInfo info() const override {
    ImageInfo info;
    info.format = Format::kHostDevice;
    info.path = path_;
    info.virtual_size = capacity_;
    info.file_size = capacity_;
    info.allocated_bytes = capacity_;
    info.subformat = "passthrough";
    return info;
  }

 private:
  bool zero_device_range(uint64_t start, uint64_t length, bool may_unmap) {
#ifdef __linux__
    if (may_unmap && ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(start),
                                 off_t(length)) == 0) {
      return true;
    }
    uint64_t range[2] = {start, length};
    if (::ioctl(fd_.get(), BLKZEROOUT, range) == 0) return true;
#else
    (void)start;
    (void)length;
    (void)may_unmap;
#endif
    return false;
  }

  void check_range(uint64_t offset, uint64_t length) const {
    if (offset > capacity_ || length > capacity_ - offset) {
      throw Error("DISK_RANGE", "request at offset " + std::to_string(offset) + " (" + std::to_string(length) +
                                    " bytes) is outside " + path_ + " (" + std::to_string(capacity_) + " bytes)");
    }
  }
  void check_writable() const {
    if (read_only_) throw Error("DISK_READ_ONLY", path_ + " is open read-only");
  }

  std::string path_;
  UniqueFd fd_;
  bool read_only_;
  bool direct_;
  uint64_t capacity_;
  uint32_t block_size_;
};

bool probe_host_device(const File& file) { return file.is_block_device(); }

std::unique_ptr<BlockDevice> open_host_device_driver(File file, const OpenOptions& options, const BackingOpener&) {
  std::string path = file.path();
  { File probing = std::move(file); }  // closed: reopened below with O_EXCL
  return open_host_device(path, options);
}

[[maybe_unused]] const bool registered =
    register_driver({Format::kHostDevice, -100, probe_host_device, open_host_device_driver, nullptr, true});

}  // namespace

std::string host_device_mount_point(const std::string& path) {
#ifdef __linux__
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return "";
  std::set<dev_t> devs = device_and_partitions(st.st_rdev);
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    std::istringstream in(line);
    std::string id, parent, majmin, root, mount_point;
    if (!(in >> id >> parent >> majmin >> root >> mount_point)) continue;
    std::string field, source;
    while (in >> field && field != "-") {
    }
    std::string fstype;
    in >> fstype >> source;
    unsigned maj = 0, min = 0;
    bool match = std::sscanf(majmin.c_str(), "%u:%u", &maj, &min) == 2 && devs.count(makedev(maj, min));
    if (!match && !source.empty() && source[0] == '/') {
      struct stat sst;
      std::string src = unescape(source);
      match = ::stat(src.c_str(), &sst) == 0 && S_ISBLK(sst.st_mode) && devs.count(sst.st_rdev);
    }
    if (match) return unescape(mount_point);
  }
#else
  (void)path;
#endif
  return "";
}

std::unique_ptr<BlockDevice> open_host_device(const std::string& path, const OpenOptions& options) {
  std::string mount_point = host_device_mount_point(path);
  if (!mount_point.empty()) throw Error("DISK_IN_USE", in_use_message(path, mount_point));
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_EXCL;
  bool direct = false;
#ifdef O_DIRECT
  flags |= O_DIRECT;
  direct = true;
#endif
  int fd = ::open(path.c_str(), flags);
#ifdef O_DIRECT
  if (fd < 0 && errno == EINVAL) {
    direct = false;
    fd = ::open(path.c_str(), flags & ~O_DIRECT);
  }
#endif
  if (fd < 0) {
    int err = errno;
    if (err == EBUSY) throw Error("DISK_IN_USE", in_use_message(path, host_device_mount_point(path)));
    if (err == ENOENT) throw Error("DISK_NOT_FOUND", path + " does not exist");
    if (err == EACCES || err == EPERM) {
      throw Error("DISK_PERMISSION", "no permission to open " + path +
                                         "; passing a host device through needs read-write access to it (for "
                                         "example membership of the 'disk' group)");
    }
    throw SystemError("DISK_OPEN", "cannot open " + path, err);
  }
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISBLK(st.st_mode)) {
    throw Error("DISK_OPEN", path + " is not a block device");
  }
  uint64_t size = 0;
  uint32_t block_size = 512;
#ifdef __linux__
  if (::ioctl(fd, BLKGETSIZE64, &size) != 0) throw SystemError("DISK_IO", "cannot read the size of " + path, errno);
  int ssz = 0;
  if (::ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz >= 512 && (ssz & (ssz - 1)) == 0) block_size = uint32_t(ssz);
#elif defined(__APPLE__)
  uint64_t count = 0;
  uint32_t bsz = 0;
  if (::ioctl(fd, DKIOCGETBLOCKCOUNT, &count) != 0 || ::ioctl(fd, DKIOCGETBLOCKSIZE, &bsz) != 0) {
    throw SystemError("DISK_IO", "cannot read the size of " + path, errno);
  }
  size = count * bsz;
  if (bsz >= 512 && (bsz & (bsz - 1)) == 0) block_size = bsz;
#endif
  return std::make_unique<HostDevice>(path, std::move(owned), options.read_only, direct, size, block_size);
}

}  // namespace berth::disk
