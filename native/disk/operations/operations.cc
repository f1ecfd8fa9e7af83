#include "disk/operations/operations.h"

#include "disk/async_disk.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <utility>

#include "common/error.h"
#include "common/unique_fd.h"

namespace berth::disk::ops {

namespace {

constexpr uint64_t kChunk = 1 << 20;        // bytes read and written per step
constexpr uint64_t kZeroGrain = 64 << 10;   // all-zero detection unit when the target has no cluster size
constexpr uint64_t kMinZeroGrain = 4096;

std::string size_text(uint64_t bytes) {
  std::string s = std::to_string(bytes) + " bytes";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  if (u >= 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " (%.2f %s)", v, units[u]);
    s += buf;
  }
  return s;
}

std::string folder_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void sync_folder(const std::string& path) {
  std::string dir = folder_of(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw SystemError("DISK_IO", "cannot open folder " + dir + " to make the rename durable", errno);
  UniqueFd guard(fd);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    throw SystemError("DISK_IO", "cannot sync folder " + dir, errno);
  }
}

void sync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw SystemError("DISK_IO", "cannot open " + path + " to sync it", errno);
  UniqueFd guard(fd);
  if (::fsync(fd) != 0) throw SystemError("DISK_IO", "cannot sync " + path, errno);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string partial_name(const std::string& target) {
  std::random_device rd;
  std::uniform_int_distribution<uint32_t> dist;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", dist(rd));
  return target + ".partial-" + buf;
}

// A file being written under a temporary name: removed on destruction unless committed.
class PartialFile {
 public:
  explicit PartialFile(const std::string& target) : path_(partial_name(target)) {}
  ~PartialFile() {
    if (!committed_) ::unlink(path_.c_str());
  }
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  const std::string& path() const { return path_; }

  // Syncs the file, renames it to target (replacing it only when replace is set) and syncs
  // the folder.
  void commit(const std::string& target, bool replace) {
    sync_file(path_);
    if (replace) {
      if (::rename(path_.c_str(), target.c_str()) != 0) {
        throw SystemError("DISK_IO", "cannot rename " + path_ + " to " + target, errno);
      }
    } else {
      // link() refuses to replace an existing file; the temporary name then goes away.
      if (::link(path_.c_str(), target.c_str()) != 0) {
        int err = errno;
        if (err == EEXIST) throw Error("DISK_EXISTS", target + " already exists; choose another name or remove it first");
        throw SystemError("DISK_IO", "cannot move " + path_ + " to " + target, err);
      }
      ::unlink(path_.c_str());
    }
    committed_ = true;
    sync_folder(target);
  }

 private:
  std::string path_;
  bool committed_ = false;
};

// Reports progress at most every ~1% or 100 ms and checks for cancellation.
class Progress {
 public:
  Progress(OperationControl* control, uint64_t total, std::string what,
           std::string cancel_note = "the source is unchanged and no partial file is left")
      : control_(control), total_(total), what_(std::move(what)), cancel_note_(std::move(cancel_note)),
        last_time_(std::chrono::steady_clock::now()) {
    step_ = std::max<uint64_t>(total_ / 100, 1);
  }

  void check_cancelled() const {
    if (control_ && control_->cancelled.load()) {
      throw Error("DISK_CANCELLED", what_ + " was cancelled; " + cancel_note_);
    }
  }

  void update(uint64_t done) {
    if (!control_ || !control_->progress) return;
    done = std::min(done, total_);
    if (done == last_done_ && reported_) return;
    auto now = std::chrono::steady_clock::now();
    if (done == total_ || !reported_ || done - last_done_ >= step_ || now - last_time_ >= std::chrono::milliseconds(100)) {
      reported_ = true;
      last_done_ = done;
      last_time_ = now;
      control_->progress(done, total_);
    }
  }

  void finish() { update(total_); }

 private:
  OperationControl* control_;
  uint64_t total_;
  std::string what_;
  std::string cancel_note_;
  uint64_t step_ = 1;
  uint64_t last_done_ = 0;
  bool reported_ = false;
  std::chrono::steady_clock::time_point last_time_;
};

// The extent at offset as the whole chain sees it: kData or kZero, never kBacking.
Extent chain_status(BlockDevice* dev, uint64_t offset, uint64_t length) {
  Extent e = dev->block_status(offset, length);
  if (e.offset != offset || e.length == 0) {
    throw Error("DISK_IO", dev->info().path + " reported a block status that does not start at offset " +
                               std::to_string(offset) + "; the format driver is inconsistent");
  }
  e.length = std::min(e.length, length);
  if (e.kind != ExtentKind::kBacking) return e;
  BlockDevice* parent = dev->backing();
  if (!parent || offset >= parent->capacity()) return {offset, e.length, ExtentKind::kZero};
  uint64_t in_parent = std::min(e.length, parent->capacity() - offset);
  Extent p = chain_status(parent, offset, in_parent);
  return {offset, p.length, p.kind};
}

// The extent at offset as this image alone sees it (kBacking for ranges it leaves to its
// parent).
Extent own_status(BlockDevice* dev, uint64_t offset, uint64_t length) {
  Extent e = dev->block_status(offset, length);
  if (e.offset != offset || e.length == 0) {
    throw Error("DISK_IO", dev->info().path + " reported a block status that does not start at offset " +
                               std::to_string(offset) + "; the format driver is inconsistent");
  }
  e.length = std::min(e.length, length);
  return e;
}

bool all_zero(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w) return false;
  }
  for (; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}

struct CopySpec {
  BlockDevice* src = nullptr;
  BlockDevice* dst = nullptr;
  // true: copy the chain view (backing ranges resolved through the parents);
  // false: copy only src's own blocks, leaving kBacking ranges untouched in dst.
  bool chain_view = true;
  // dst reads something under ranges it does not allocate (it has a backing file, or it is
  // the parent being merged into): zero ranges and all-zero blocks must be written as zeroes.
  bool write_zeroes = false;
};

void copy_blocks(const CopySpec& spec, Progress& progress) {
  const uint64_t cap = spec.src->capacity();
  if (spec.dst->capacity() < cap) {
    throw Error("DISK_IO", spec.dst->info().path + " is smaller (" + size_text(spec.dst->capacity()) +
                               ") than the " + size_text(cap) + " it must hold");
  }
  uint64_t grain = spec.dst->info().cluster_size;
  if (grain == 0 || grain > kChunk || (grain & (grain - 1)) != 0) grain = kZeroGrain;
  grain = std::max(grain, kMinZeroGrain);
  std::vector<uint8_t> buf(kChunk);

  uint64_t off = 0;
  progress.update(0);
  while (off < cap) {
    progress.check_cancelled();
    Extent e = spec.chain_view ? chain_status(spec.src, off, cap - off) : own_status(spec.src, off, cap - off);
    if (e.kind == ExtentKind::kBacking) {
      off += e.length;
      progress.update(off);
      continue;
    }
    if (e.kind == ExtentKind::kZero) {
      if (spec.write_zeroes) spec.dst->write_zeroes(off, e.length, true);
      off += e.length;
      progress.update(off);
      continue;
    }
    // Data: read in chunks, write runs of non-zero grains, skip (or zero) all-zero grains.
    const uint64_t end = off + e.length;
    while (off < end) {
      progress.check_cancelled();
      uint64_t n = std::min(kChunk, end - off);
      std::span<uint8_t> chunk(buf.data(), n);
      spec.src->read(off, chunk);
      uint64_t pos = 0;
      while (pos < n) {
        // The grain containing off + pos, cut at the chunk's end.
        uint64_t abs = off + pos;
        uint64_t glen = std::min(grain - abs % grain, n - pos);
        bool zero = all_zero(buf.data() + pos, glen);
        // Extend to a run of grains of the same kind.
        uint64_t run = glen;
        while (pos + run < n) {
          uint64_t a2 = off + pos + run;
          uint64_t l2 = std::min(grain - a2 % grain, n - pos - run);
          if (all_zero(buf.data() + pos + run, l2) != zero) break;
          run += l2;
        }
        if (!zero) {
          spec.dst->write(abs, std::span<const uint8_t>(buf.data() + pos, run));
        } else if (spec.write_zeroes) {
          spec.dst->write_zeroes(abs, run, true);
        }
        pos += run;
      }
      off += n;
      progress.update(off);
    }
  }
}

std::unique_ptr<BlockDevice> open_read_only(const std::string& path) {
  OpenOptions o;
  o.read_only = true;
  o.open_backing = true;
  return open_disk(path, o);
}

std::unique_ptr<BlockDevice> open_writable(const std::string& path, bool open_backing = true) {
  OpenOptions o;
  o.read_only = false;
  o.open_backing = open_backing;
  return open_disk(path, o);
}

void require_sector_multiple(const std::string& path, uint64_t size, const char* what) {
  if (size == 0 || size % 512 != 0) {
    throw Error("DISK_SIZE", std::string("the ") + what + " for " + path + " must be a positive multiple of 512 bytes, not " +
                                 std::to_string(size));
  }
}

void require_absent(const std::string& path) {
  if (exists(path)) throw Error("DISK_EXISTS", path + " already exists; choose another name or remove it first");
}

// Creates the partial target, copies into it and renames it into place.
void write_new_image(BlockDevice* src, const std::string& dst, CreateOptions create, const CopySpec& proto,
                     Progress& progress, bool replace) {
  PartialFile partial(dst);
  std::unique_ptr<BlockDevice> out;
  try {
    create_disk(partial.path(), create);
    out = open_writable(partial.path(), !create.backing_path.empty());
    CopySpec spec = proto;
    spec.src = src;
    spec.dst = out.get();
    copy_blocks(spec, progress);
    out->flush();
    out.reset();  // a clean close (drivers finish their metadata here)
    progress.check_cancelled();
    partial.commit(dst, replace);
  } catch (...) {
    out.reset();  // close before the partial file is removed
    throw;
  }
  progress.finish();
}

uint64_t last_used_end(BlockDevice* dev, Progress& progress) {
  uint64_t cap = dev->capacity();
  uint64_t off = 0, end = 0;
  progress.update(0);
  while (off < cap) {
    progress.check_cancelled();
    Extent e = chain_status(dev, off, cap - off);
    if (e.kind == ExtentKind::kData) end = off + e.length;
    off += e.length;
    progress.update(off);
  }
  uint64_t min = (end + 511) / 512 * 512;
  return std::max<uint64_t>(min, 512);
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) {
    int err = errno;
    if (err == ENOENT) throw Error("DISK_NOT_FOUND", path + " does not exist");
    throw SystemError("DISK_OPEN", "cannot resolve " + path, err);
  }
  return buf;
}

}  // namespace

InspectResult inspect(const std::string& path) {
  InspectResult r;
  try {
    auto dev = open_read_only(path);
    for (BlockDevice* d = dev.get(); d; d = d->backing()) r.images.push_back(d->info());
    auto io = dev->open_async(1);
    r.io_backend = io->backend();
    r.io_fallback_reason = io->fallback_reason();
    return r;
  } catch (const Error& e) {
    r.chain_error_code = e.code();
    r.chain_error = e.what();
  }
  OpenOptions alone;
  alone.read_only = true;
  alone.open_backing = false;
  auto dev = open_disk(path, alone);  // if the image itself cannot be opened, that error is the answer
  r.images.push_back(dev->info());
  return r;
}

CheckReport check(const std::string& path, bool repair) {
  OpenOptions o;
  o.read_only = !repair;
  o.open_backing = false;
  auto dev = open_disk(path, o);
  CheckReport report = dev->check(repair);
  if (repair) dev->flush();
  return report;
}

void convert(const std::string& src, const std::string& dst, const ConvertOptions& options, OperationControl* control) {
  require_absent(dst);
  auto in = open_read_only(src);
  ImageInfo info = in->info();
  CreateOptions create = options.target;
  create.size = in->capacity();
  create.backing_path.clear();
  CopySpec spec;
  if (options.keep_backing && in->backing()) {
    std::string parent = info.backing_resolved.empty() ? in->backing()->info().path : info.backing_resolved;
    bool same_folder = folder_of(real_path(src)) == real_path(folder_of(dst));
    create.backing_path = same_folder && !info.backing_path.empty() ? info.backing_path : backing_reference(dst, parent);
    spec.chain_view = false;
    spec.write_zeroes = true;
  }
  Progress progress(control, in->capacity(), "converting " + src + " to " + dst);
  write_new_image(in.get(), dst, create, spec, progress, false);
}

void expand(const std::string& path, uint64_t new_size) {
  require_sector_multiple(path, new_size, "new size");
  auto dev = open_writable(path);
  uint64_t cap = dev->capacity();
  if (new_size <= cap) {
    throw Error("DISK_SIZE", path + " is already " + size_text(cap) + "; to expand it, give a larger size than that" +
                                 (new_size < cap ? " (use shrink to make it smaller)" : ""));
  }
  dev->resize(new_size);
  dev->flush();
}

uint64_t min_shrink_size(const std::string& path, OperationControl* control) {
  auto dev = open_read_only(path);
  Progress progress(control, dev->capacity(), "measuring " + path, "nothing was changed");
  uint64_t min = last_used_end(dev.get(), progress);
  progress.finish();
  return min;
}

void shrink(const std::string& path, uint64_t new_size, OperationControl* control) {
  require_sector_multiple(path, new_size, "new size");
  auto dev = open_writable(path);
  uint64_t cap = dev->capacity();
  if (new_size >= cap) {
    throw Error("DISK_SIZE", path + " is " + size_text(cap) + "; to shrink it, give a smaller size than that" +
                                 (new_size > cap ? " (use expand to make it larger)" : ""));
  }
  Progress progress(control, cap, "shrinking " + path, "the disk keeps its size");
  uint64_t min = last_used_end(dev.get(), progress);
  if (new_size < min) {
    throw Error("DISK_SHRINK_TOO_SMALL", path + " holds data up to byte " + std::to_string(min) +
                                             ": the smallest size it can shrink to is " + size_text(min) +
                                             " (asked for " + size_text(new_size) +
                                             "); shrink the partitions and file systems inside first");
  }
  progress.check_cancelled();
  dev->resize(new_size);
  dev->flush();
  progress.finish();
}

void compact(const std::string& path, OperationControl* control) {
  auto in = open_read_only(path);
  ImageInfo info = in->info();
  if (info.format == Format::kHostDevice) {
    throw Error("DISK_UNSUPPORTED", path + " is a host device; only image files can be compacted");
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw SystemError("DISK_OPEN", "cannot stat " + path, errno);
  if (info.subformat == "fixed") {
    throw Error("DISK_UNSUPPORTED", path + " is a fixed " + format_name(info.format) +
                                        " image: it is fully allocated by design and cannot be compacted; convert it to "
                                        "a dynamic image instead");
  }
  CreateOptions create;
  create.format = info.format;
  create.size = in->capacity();
  create.cluster_size = info.cluster_size;  // preallocation is not kept: compacting is about giving space back
  create.backing_path = info.backing_path;
  CopySpec spec;
  spec.chain_view = false;                      // only this image's own blocks
  spec.write_zeroes = in->backing() != nullptr;  // zeroes must keep hiding the parent
  Progress progress(control, in->capacity(), "compacting " + path);
  PartialFile partial(path);
  std::unique_ptr<BlockDevice> out;
  try {
    create_disk(partial.path(), create);
    ::chmod(partial.path().c_str(), st.st_mode & 07777);
    out = open_writable(partial.path(), !create.backing_path.empty());
    spec.src = in.get();
    spec.dst = out.get();
    copy_blocks(spec, progress);
    out->flush();
    out.reset();
    progress.check_cancelled();
    in.reset();
    partial.commit(path, true);
  } catch (...) {
    out.reset();
    throw;
  }
  progress.finish();
}

void merge_into_parent(const std::string& child_path, OperationControl* control) {
  auto child = open_read_only(child_path);
  ImageInfo info = child->info();
  if (!child->backing()) {
    throw Error("DISK_NO_BACKING", child_path + " has no parent disk to merge into; it is already standalone");
  }
  std::string parent_path = info.backing_resolved.empty() ? child->backing()->info().path : info.backing_resolved;
  auto parent = open_writable(parent_path);
  if (parent->capacity() < child->capacity()) parent->resize(child->capacity());
  CopySpec spec;
  spec.src = child.get();
  spec.dst = parent.get();
  spec.chain_view = false;
  spec.write_zeroes = true;
  Progress progress(control, child->capacity(), "merging " + child_path + " into " + parent_path,
                    "the child is still in place and the chain reads as before, but the parent alone now holds "
                    "some of the child's blocks (merge again to finish)");
  copy_blocks(spec, progress);
  parent->flush();
  parent.reset();
  progress.check_cancelled();
  child.reset();
  if (::unlink(child_path.c_str()) != 0) {
    throw SystemError("DISK_IO", "merged " + child_path + " into " + parent_path + " but could not remove it; delete it by hand",
                      errno);
  }
  sync_folder(child_path);
  progress.finish();
}

void merge_into_new(const std::string& child, const std::string& new_path, const CreateOptions& target,
                    OperationControl* control) {
  ConvertOptions o;
  o.target = target;
  o.keep_backing = false;
  convert(child, new_path, o, control);
}

std::string backing_reference(const std::string& child_path, const std::string& parent_path) {
  std::string parent = real_path(parent_path);
  std::string folder = real_path(folder_of(child_path));
  if (folder != "/" && parent.size() > folder.size() + 1 && parent.compare(0, folder.size(), folder) == 0 &&
      parent[folder.size()] == '/') {
    return parent.substr(folder.size() + 1);
  }
  return parent;
}

std::string reconnect(const std::string& child_path, const std::string& new_parent) {
  auto parent = open_read_only(new_parent);
  OpenOptions alone;
  alone.read_only = false;
  alone.open_backing = false;  // the old parent may be gone: that is why we reconnect
  auto child = open_disk(child_path, alone);
  if (child->capacity() != parent->capacity()) {
    throw Error("DISK_SIZE_MISMATCH", child_path + " is " + size_text(child->capacity()) + " but " + new_parent + " is " +
                                          size_text(parent->capacity()) +
                                          "; a differencing disk can only be reconnected to a parent of the same size");
  }
  struct stat cs;
  if (::stat(child_path.c_str(), &cs) != 0) throw SystemError("DISK_OPEN", "cannot stat " + child_path, errno);
  for (BlockDevice* d = parent.get(); d; d = d->backing()) {
    struct stat ps;
    if (::stat(d->info().path.c_str(), &ps) == 0 && ps.st_dev == cs.st_dev && ps.st_ino == cs.st_ino) {
      throw Error("DISK_BACKING_LOOP", new_parent + " is (or is based on) " + child_path +
                                           "; reconnecting would make a loop. Choose the disk it was created from");
    }
  }
  std::string recorded = backing_reference(child_path, new_parent);
  child->set_backing(recorded, std::move(parent));
  child->flush();
  return recorded;
}

}  // namespace berth::disk::ops
