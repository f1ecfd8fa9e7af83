// VHD images. Layout (all fields big-endian):
//   fixed:    data [0, current_size), then the 512-byte footer.
//   dynamic:  footer copy at 0, dynamic header ("cxsparse", 1024 bytes) at the footer's
//             data offset, the BAT (32-bit sector offsets, 0xFFFFFFFF = unallocated), then
//             blocks, each a sector bitmap followed by block_size data bytes, then the footer.
//   differencing (type 4): a dynamic disk whose header also names its parent: the
//             parent's unique id and time stamp, its file name (UTF-16BE) and up to eight
//             parent locators (platform code, data space, data length, file offset); Berth
//             reads and writes the Windows ones, W2ru (relative path) and W2ku (absolute
//             path), UTF-16LE with backslashes, preferring the relative one. The data
//             space field is written in bytes (what Hyper-V writes; the specification
//             says sectors), rounded up to 512.
// Differencing reads: an unallocated block, or a sector whose bitmap bit (most significant
// bit first) is clear, comes from the parent. Writes copy on write whole blocks: a new
// block gets the parent's data for the whole block and all its bitmap bits set, and a
// block another writer left partly present is completed from the parent the first time
// Berth writes to it. (Simpler than per-sector bits, and readers that ignore bitmaps, qemu
// among them, still see the right data in every allocated block.)
// Dynamic disks read allocated blocks whole, whatever their bitmap (as qemu does); a write
// to sectors whose bits another writer (Hyper-V) left clear sets them, after the data is
// synced, so readers that honour the bitmap see it. Blocks Berth allocates have every bit
// set.
// The asynchronous path (disk/mapped_async_disk.h) reads and writes allocated data in
// parallel (writes of a differencing disk: fully present blocks only); allocations,
// copy-on-write, bitmap updates and parent reads go through this driver in order.
// Block allocation order (crash safety): bitmap + data and the moved footer first; the
// BAT entry only after those are durable (at the next flush or on close). A crash in
// between leaves an unreferenced block at the end of the file, which the next
// allocation reuses.
// Resize: a fixed disk gets its footer written at the new end first (growing) or its file
// cut after the footer moved (shrinking). A dynamic disk grows inside its BAT when the
// table (with its padding to a whole sector) has room; otherwise the BAT is copied to the
// end of the file and the header switched to it only after the copy is durable (the old
// table's space stays unused). Shrinking drops only blocks that are not allocated.
#include "disk/vhd/vhd.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include "common/error.h"
#include "disk/aligned_io.h"
#include "disk/driver.h"
#include "disk/mapped_async_disk.h"
#include "disk/mapped_async_host.h"

namespace berth::disk::vhd {

namespace {

constexpr uint32_t kSector = 512;
constexpr uint32_t kUnused = 0xFFFFFFFFu;
constexpr uint32_t kTypeFixed = 2, kTypeDynamic = 3, kTypeDifferencing = 4;
constexpr uint32_t kFooterChecksumAt = 64;
constexpr uint32_t kHeaderChecksumAt = 36;
constexpr uint32_t kHeaderSize = 1024;
constexpr uint64_t kVhdEpoch = 946684800;  // 2000-01-01T00:00:00Z
// Dynamic header fields of differencing disks.
constexpr uint32_t kParentIdAt = 40, kParentTimeAt = 56, kParentNameAt = 64, kParentNameBytes = 512;
constexpr uint32_t kLocatorsAt = 576, kLocatorSize = 24, kLocatorCount = 8;
constexpr uint32_t kW2ru = 0x57327275, kW2ku = 0x57326B75;
constexpr uint32_t kMaxLocatorBytes = 64 << 10;  // a path of 32767 UTF-16 units fits
constexpr uint64_t kMaxFileBytes = uint64_t(kUnused) * kSector + kSector;  // the BAT's reach, plus the footer

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint64_t be64(const uint8_t* p) { return uint64_t(be32(p)) << 32 | be32(p + 4); }
void put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (24 - 8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  put32(p, uint32_t(v >> 32));
  put32(p + 4, uint32_t(v));
}

// One's complement of the byte sum, the checksum field itself counted as zero.
uint32_t checksum(const uint8_t* p, size_t n, size_t at) {
  uint32_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    if (i < at || i >= at + 4) sum += p[i];
  }
  return ~sum;
}

bool has_cookie(const uint8_t* p) { return std::memcmp(p, "conectix", 8) == 0; }
bool footer_checksum_ok(const uint8_t* p) { return checksum(p, kSector, kFooterChecksumAt) == be32(p + kFooterChecksumAt); }

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

std::string gib_text(uint64_t bytes) { return std::to_string(bytes) + " bytes"; }

// UTF-8 -> UTF-16 code units; false for input that is not valid UTF-8.
bool to_utf16(const std::string& s, std::vector<uint16_t>* out) {
  out->clear();
  for (size_t i = 0; i < s.size();) {
    uint8_t c = uint8_t(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) cp = c, n = 1;
    else if ((c & 0xE0) == 0xC0) cp = c & 0x1F, n = 2;
    else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, n = 3;
    else if ((c & 0xF8) == 0xF0) cp = c & 0x07, n = 4;
    else return false;
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; k++) {
      uint8_t d = uint8_t(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    static const uint32_t min_for[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return false;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out->push_back(uint16_t(0xD800 | (cp >> 10)));
      out->push_back(uint16_t(0xDC00 | (cp & 0x3FF)));
    } else {
      out->push_back(uint16_t(cp));
    }
    i += n;
  }
  return true;
}

// UTF-16 code units -> UTF-8 (unpaired surrogates become U+FFFD), stopping at a NUL.
std::string from_utf16(const std::vector<uint16_t>& u) {
  std::string s;
  for (size_t i = 0; i < u.size(); i++) {
    uint32_t cp = u[i];
    if (cp == 0) break;
    if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < u.size() && u[i + 1] >= 0xDC00 && u[i + 1] < 0xE000) {
      cp = 0x10000 + ((cp - 0xD800) << 10) + (u[i + 1] - 0xDC00);
      i++;
    } else if (cp >= 0xD800 && cp < 0xE000) {
      cp = 0xFFFD;
    }
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xC0 | cp >> 6);
      s += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += char(0xE0 | cp >> 12);
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    } else {
      s += char(0xF0 | cp >> 18);
      s += char(0x80 | ((cp >> 12) & 0x3F));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

std::string from_windows(std::string s) {
  std::replace(s.begin(), s.end(), '\\', '/');
  return s;
}
std::string to_windows(std::string s) {
  std::replace(s.begin(), s.end(), '/', '\\');
  return s;
}

// What a differencing header records about its parent, ready to write.
struct ParentRecord {
  uint8_t id[16] = {};
  uint32_t time = 0;
  std::vector<uint16_t> name;                       // file name, UTF-16
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> locators;  // code, UTF-16LE bytes
};

struct Interval {
  uint64_t start, end;
  std::string what;
};

class VhdDisk;
ParentRecord parent_record(const std::string& child_path, const std::string& recorded, const VhdDisk& parent,
                           const std::string& parent_path);

class VhdDisk final : public BlockDevice, public MappedAsyncHost {
 public:
  VhdDisk(File file, bool read_only) : file_(std::move(file)), read_only_(read_only) {}

  ~VhdDisk() override {
    try {
      commit_bat();
    } catch (...) {
      // Nothing to report to from a destructor; the blocks stay unreferenced (leaked).
    }
  }

  const uint8_t* unique_id() const { return footer_ + 68; }
  uint32_t block_size() const { return block_size_; }
  const uint8_t* geometry_bytes() const { return footer_ + 56; }

  void open(const BackingOpener& opener) {
    const std::string& path = file_.path();
    file_size_ = file_.size();
    if (file_size_ < kSector) {
      throw Error("DISK_TRUNCATED", path + " is too small to be a VHD image (" + gib_text(file_size_) +
                                        "; a VHD ends with a 512-byte footer)");
    }
    uint8_t end[kSector], start[kSector];
    file_.read_exact(file_size_ - kSector, end);
    bool start_read = file_size_ >= 2 * kSector;
    if (start_read) file_.read_exact(0, start);
    bool end_ok = has_cookie(end) && footer_checksum_ok(end);
    bool start_ok = start_read && has_cookie(start) && footer_checksum_ok(start) &&
                    (be32(start + 60) == kTypeDynamic || be32(start + 60) == kTypeDifferencing);
    if (end_ok) {
      std::memcpy(footer_, end, kSector);
      if (start_ok && std::memcmp(start, end, kSector) != 0 && be32(end + 60) != kTypeFixed) {
        problems_.push_back("the footer copy at the start of the file differs from the footer at its end");
      }
    } else if (start_ok) {
      std::memcpy(footer_, start, kSector);
      end_footer_missing_ = true;
    } else if (has_cookie(end) || (start_read && has_cookie(start))) {
      throw Error("DISK_BAD_HEADER", path + " has a VHD footer whose checksum does not match: the image is damaged "
                                            "(restore it from a backup)");
    } else {
      throw Error("DISK_BAD_HEADER", path + " has no VHD footer (\"conectix\") at its end or start");
    }

    disk_type_ = be32(footer_ + 60);
    capacity_ = be64(footer_ + 48);
    if (disk_type_ != kTypeFixed && disk_type_ != kTypeDynamic && disk_type_ != kTypeDifferencing) {
      throw Error("DISK_BAD_HEADER", path + " has an unknown VHD disk type " + std::to_string(disk_type_));
    }
    if (capacity_ % kSector != 0) {
      throw Error("DISK_CORRUPT", path + " records an impossible size of " + gib_text(capacity_) +
                                         " (not a multiple of 512)");
    }
    if (disk_type_ == kTypeFixed) {
      if (capacity_ > file_size_ - kSector) {
        throw Error("DISK_TRUNCATED", path + " is a fixed VHD of " + gib_text(capacity_) + " but the file holds only " +
                                          gib_text(file_size_ - kSector) + " of data: it is truncated");
      }
      return;
    }
    open_dynamic();
    if (disk_type_ == kTypeDifferencing) open_parent(opener);
  }

  uint64_t capacity() const override { return capacity_; }
  bool read_only() const override { return read_only_; }
  BlockDevice* backing() const override { return backing_.get(); }

  void read(uint64_t offset, std::span<uint8_t> buf) override {
    check_range(offset, buf.size());
    if (disk_type_ == kTypeFixed) {
      file_.read_exact(offset, buf);
      return;
    }
    size_t done = 0;
    while (done < buf.size()) {
      uint64_t pos = offset + done;
      uint64_t index = pos / block_size_;
      uint64_t in = pos % block_size_;
      size_t n = size_t(std::min<uint64_t>(buf.size() - done, block_size_ - in));
      auto piece = buf.subspan(done, n);
      uint64_t data = block_data(index);
      if (data == 0) {
        if (differencing()) read_parent(pos, piece);
        else std::memset(piece.data(), 0, n);
      } else if (differencing()) {
        read_differencing_block(index, data, in, piece);
      } else {
        file_.read_exact(data + in, piece);
      }
      done += n;
    }
  }

  void write(uint64_t offset, std::span<const uint8_t> buf) override {
    check_writable();
    check_range(offset, buf.size());
    if (disk_type_ == kTypeFixed) {
      file_.write_all(offset, buf);
      return;
    }
    size_t done = 0;
    while (done < buf.size()) {
      uint64_t pos = offset + done;
      uint64_t index = pos / block_size_;
      uint64_t in = pos % block_size_;
      size_t n = size_t(std::min<uint64_t>(buf.size() - done, block_size_ - in));
      auto piece = buf.subspan(done, n);
      uint64_t data = block_data(index);
      if (differencing()) {
        data = data == 0 ? allocate_from_parent(index, in, n) : complete_block(index, data);
        file_.write_all(data + in, piece);
      } else if (data == 0) {
        // An unallocated block already reads as zeroes: writing zeroes needs no block.
        bool all_zero = std::all_of(piece.begin(), piece.end(), [](uint8_t b) { return b == 0; });
        if (!all_zero) {
          data = allocate_block(index);
          file_.write_all(data + in, piece);
        }
      } else {
        file_.write_all(data + in, piece);
        mark_present(index, in, n);
      }
      done += n;
    }
  }

  void flush() override {
    if (read_only_) return;
    file_.sync();
    if (!pending_.empty()) {
      commit_bat();
      file_.sync();
    }
  }

  // ---- the asynchronous path (disk/mapped_async_disk.h) -------------------------------
  // Data in allocated blocks is file I/O in parallel (for writes to a differencing disk,
  // in fully present blocks only); allocation, copy-on-write from the parent, bitmap
  // updates and reads from the parent go through this driver. The AsyncDisk must not
  // outlive this device.
  std::unique_ptr<AsyncDisk> open_async(unsigned depth, AsyncBackend backend) override {
    AsyncTarget t{file_.fd(), false, kSector, kMaxFileBytes, read_only_, file_.path()};
    return make_mapped_async_disk(*this, t, depth, backend);
  }
  MappedRun read_run(uint64_t offset, uint64_t max) override { return run(offset, max, false); }
  MappedRun write_run(uint64_t offset, uint64_t max) override { return run(offset, max, true); }
  void before_data_write(uint64_t, uint64_t) override {}  // in place: flush() always syncs
  void flush_all() override { flush(); }
  BlockDevice& device() override { return *this; }

  void discard(uint64_t offset, uint64_t length) override { write_zeroes(offset, length, true); }

  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override {
    check_writable();
    check_range(offset, length);
    if (disk_type_ == kTypeFixed) {
      zero_file_range(offset, length, may_unmap);
      return;
    }
    uint64_t done = 0;
    while (done < length) {
      uint64_t pos = offset + done;
      uint64_t index = pos / block_size_;
      uint64_t in = pos % block_size_;
      uint64_t n = std::min<uint64_t>(length - done, block_size_ - in);
      uint64_t data = block_data(index);
      if (differencing()) {
        // Zeroes must hide the parent: the block becomes (or stays) fully present.
        data = data == 0 ? allocate_from_parent(index, in, n) : complete_block(index, data);
      }
      // A VHD block cannot be freed in place: an allocated block stays allocated, its
      // range zeroed (released in the host file where possible).
      if (data != 0) zero_file_range(data + in, n, may_unmap);
      done += n;
    }
  }

  Extent block_status(uint64_t offset, uint64_t length) override {
    if (offset >= capacity_) {
      throw Error("DISK_RANGE", "block status at offset " + std::to_string(offset) + " is outside " + file_.path());
    }
    uint64_t end = offset + std::min(length, capacity_ - offset);
    if (disk_type_ == kTypeFixed) {
      // Holes in the host file read as zeroes.
      uint64_t data = 0, hole = 0;
      if (!file_.next_data(offset, &data)) return {offset, end - offset, ExtentKind::kData};
      if (data > offset) return {offset, std::min(data, end) - offset, ExtentKind::kZero};
      if (!file_.next_hole(offset, &hole) || hole <= offset) hole = end;
      return {offset, std::min(hole, end) - offset, ExtentKind::kData};
    }
    ExtentKind kind = kind_at(offset);
    uint64_t pos = offset;
    while (pos < end) {
      uint64_t index = pos / block_size_;
      uint64_t next;
      if (differencing() && block_data(index) != 0) {
        if (kind_at(pos) != kind) break;
        next = (pos / kSector + 1) * kSector;
      } else {
        if (kind_at(pos) != kind) break;
        next = (index + 1) * block_size_;
      }
      pos = std::min(end, next);
    }
    return {offset, pos - offset, kind};
  }

  ImageInfo info() const override {
    ImageInfo info;
    info.format = Format::kVhd;
    info.path = file_.path();
    info.virtual_size = capacity_;
    info.file_size = file_.size();
    info.allocated_bytes = file_.allocated_bytes();
    info.subformat = disk_type_ == kTypeFixed ? "fixed" : differencing() ? "differencing" : "dynamic";
    info.corrupt = !problems_.empty();
    info.cluster_size = disk_type_ == kTypeFixed ? 0 : block_size_;
    info.backing_path = backing_recorded_;
    if (backing_) info.backing_resolved = backing_resolved_;
    return info;
  }

  CheckReport check(bool repair) override {
    CheckReport report;
    for (const auto& p : problems_) report.problems.push_back(file_.path() + ": " + p);
    report.corruptions = problems_.size();
    if (disk_type_ == kTypeFixed) return report;
    commit_bat_if_writable();
    uint64_t file_size = file_.size();
    uint64_t footer_at = end_footer_missing_ ? file_size : file_size - kSector;
    bool fix_tail = false;
    if (end_footer_missing_) {
      report.corruptions++;
      report.problems.push_back(file_.path() + ": the footer at the end of the file is missing or damaged (the copy "
                                               "at its start is intact)");
      fix_tail = true;
    }
    if (footer_at > used_end_) {
      uint64_t leaked = footer_at - used_end_;
      report.leaked_clusters += (leaked + block_size_ - 1) / block_size_;
      report.problems.push_back(file_.path() + ": " + std::to_string(leaked) +
                                " bytes at the end of the file belong to no block (leaked)");
      fix_tail = true;
    }
    if (repair && fix_tail && !read_only_ && problems_.empty()) {
      file_.truncate(used_end_);
      file_.write_all(used_end_, footer_);
      file_.sync();
      end_footer_missing_ = false;
      report.repaired++;
    }
    return report;
  }

  void resize(uint64_t new_capacity) override {
    check_writable();
    if (new_capacity == capacity_) return;
    if (new_capacity == 0 || new_capacity % kSector != 0 || new_capacity > kMaxSize) {
      throw Error("DISK_RANGE", "a VHD size must be a positive multiple of 512 bytes and at most 2040 GiB (" +
                                    gib_text(kMaxSize) + "); " + file_.path() + " cannot be resized to " +
                                    gib_text(new_capacity));
    }
    uint8_t footer[kSector];
    std::memcpy(footer, footer_, kSector);
    put64(footer + 48, new_capacity);
    Geometry g = geometry_for_create(new_capacity);
    put16(footer + 56, g.cylinders);
    footer[58] = g.heads;
    footer[59] = g.sectors_per_track;
    put32(footer + kFooterChecksumAt, checksum(footer, kSector, kFooterChecksumAt));
    if (disk_type_ == kTypeFixed) {
      resize_fixed(new_capacity, footer);
      return;
    }
    commit_bat();
    uint64_t old_needed = bat_.size();
    uint64_t new_needed = (new_capacity + block_size_ - 1) / block_size_;
    if (new_capacity < capacity_) {
      uint64_t first = new_capacity / block_size_;  // the first block reaching past the new end
      for (uint64_t i = first; i < old_needed; i++) {
        if (bat_[i] == kUnused) continue;
        uint64_t last = i;
        for (uint64_t k = i; k < old_needed; k++)
          if (bat_[k] != kUnused) last = k;
        throw Error("DISK_SHRINK_TOO_SMALL",
                    file_.path() + ": block " + std::to_string(i) + " (bytes " + std::to_string(i * block_size_) + " to " +
                        std::to_string((i + 1) * block_size_) + ") is allocated, so the disk cannot shrink to " +
                        gib_text(new_capacity) + "; the smallest size it can shrink to is " +
                        gib_text(std::min<uint64_t>((last + 1) * block_size_, capacity_)) +
                        " (compact it first if those blocks hold only zeroes)");
      }
    }
    bool header_changed = false;
    if (new_needed > max_entries_) {
      uint64_t room = round_up(uint64_t(max_entries_) * 4, kSector) / 4;
      if (new_needed <= room && bat_at_ + new_needed * 4 <= used_end_) {
        // The table's padding to a whole sector has room: use it in place.
        std::vector<uint8_t> unused((new_needed - old_needed) * 4, 0xFF);
        file_.write_all(bat_at_ + old_needed * 4, unused);
      } else {
        // Copy the table to the end of the file; the header switches to it once durable.
        uint64_t bytes = round_up(new_needed * 4, kSector);
        uint64_t at = used_end_;
        if ((at + bytes + kSector) / kSector > kUnused) {
          throw Error("DISK_NO_SPACE", file_.path() + " cannot grow: its block table would lie past 2 TiB in the file");
        }
        std::vector<uint8_t> table(bytes, 0xFF);
        for (uint64_t i = 0; i < old_needed; i++) put32(&table[i * 4], bat_[i]);
        if (file_.size() > at) file_.truncate(at);
        file_.write_all(at, table);
        file_.write_all(at + bytes, footer_);
        end_footer_missing_ = false;
        used_end_ = at + bytes;
        bat_at_ = at;
      }
      file_.sync();
      max_entries_ = uint32_t(new_needed);
      put64(header_ + 16, bat_at_);
      put32(header_ + 28, max_entries_);
      header_changed = true;
    } else if (new_needed > old_needed) {
      // Entries past the old size must read as unallocated, whatever the file held there.
      std::vector<uint8_t> unused((new_needed - old_needed) * 4, 0xFF);
      file_.write_all(bat_at_ + old_needed * 4, unused);
      file_.sync();
    }
    if (header_changed) {
      write_header();
      file_.sync();
    }
    bat_.resize(new_needed, kUnused);
    bad_.resize(new_needed, false);
    full_.resize(new_needed, false);
    bitmaps_.clear();
    // The footer at the end first (readers prefer it), then its copy at the start.
    uint64_t end_at = end_footer_missing_ ? file_.size() : file_.size() - kSector;
    if (end_at < used_end_) end_at = used_end_;
    file_.write_all(end_at, footer);
    file_.sync();
    file_.write_all(0, footer);
    file_.sync();
    end_footer_missing_ = false;
    std::memcpy(footer_, footer, kSector);
    capacity_ = new_capacity;
  }

  void set_backing(const std::string& recorded_path, std::unique_ptr<BlockDevice> backing) override {
    check_writable();
    if (!differencing()) {
      throw Error("DISK_UNSUPPORTED", file_.path() + " is not a differencing VHD; it cannot be given a parent");
    }
    if (recorded_path.empty() || !backing) {
      throw Error("DISK_UNSUPPORTED", "a differencing VHD needs a parent; convert " + file_.path() +
                                          " to a standalone image instead of removing it");
    }
    auto* parent = dynamic_cast<VhdDisk*>(backing.get());
    if (!parent) {
      throw Error("DISK_UNSUPPORTED", "the parent of a differencing VHD must be a VHD image; " +
                                          backing->info().path + " is " + format_name(backing->info().format));
    }
    // Everything checked (names, lengths) before the file changes.
    ParentRecord rec = parent_record(file_.path(), recorded_path, *parent, backing->info().path);
    commit_bat();
    // New locator data goes to fresh space at the end of the file, durable before the
    // header points to it; a crash in between leaves the old parent recorded.
    uint64_t at = used_end_;
    std::vector<Locator> locs;
    for (auto& [code, bytes] : rec.locators) {
      uint64_t space = round_up(bytes.size(), kSector);
      locs.push_back({code, uint32_t(space), uint32_t(bytes.size()), at});
      at += space;
    }
    if ((at + kSector) / kSector > kUnused) {
      throw Error("DISK_NO_SPACE", file_.path() + " cannot record a new parent: the file would grow past 2 TiB");
    }
    if (file_.size() > used_end_) file_.truncate(used_end_);
    for (size_t i = 0; i < locs.size(); i++) {
      std::vector<uint8_t> padded(locs[i].space, 0);
      std::memcpy(padded.data(), rec.locators[i].second.data(), rec.locators[i].second.size());
      file_.write_all(locs[i].offset, padded);
    }
    file_.write_all(at, footer_);
    end_footer_missing_ = false;
    used_end_ = at;
    file_.sync();
    fill_parent_fields(header_, rec, locs);
    write_header();
    file_.sync();
    locators_ = locs;
    backing_recorded_ = recorded_path;
    backing_resolved_ = resolve_backing_path(file_.path(), recorded_path);
    backing_ = std::move(backing);
  }

  struct Locator {
    uint32_t code, space, length;
    uint64_t offset;
  };

  static void fill_parent_fields(uint8_t* header, const ParentRecord& rec, const std::vector<Locator>& locs) {
    std::memcpy(header + kParentIdAt, rec.id, 16);
    put32(header + kParentTimeAt, rec.time);
    std::memset(header + kParentNameAt, 0, kParentNameBytes);
    for (size_t i = 0; i < rec.name.size(); i++) put16(header + kParentNameAt + 2 * i, rec.name[i]);
    std::memset(header + kLocatorsAt, 0, kLocatorSize * kLocatorCount);
    for (size_t i = 0; i < locs.size(); i++) {
      uint8_t* e = header + kLocatorsAt + i * kLocatorSize;
      put32(e, locs[i].code);
      put32(e + 4, locs[i].space);
      put32(e + 8, locs[i].length);
      put64(e + 16, locs[i].offset);
    }
    put32(header + kHeaderChecksumAt, checksum(header, kHeaderSize, kHeaderChecksumAt));
  }

 private:
  bool differencing() const { return disk_type_ == kTypeDifferencing; }

  void open_dynamic() {
    const std::string& path = file_.path();
    header_at_ = be64(footer_ + 16);
    if (header_at_ > file_size_ || file_size_ - header_at_ < kHeaderSize) {
      throw Error("DISK_CORRUPT", path + " points to a dynamic header at offset " + std::to_string(header_at_) +
                                         ", past the end of the file");
    }
    uint8_t* header = header_;
    file_.read_exact(header_at_, std::span<uint8_t>(header_, kHeaderSize));
    if (std::memcmp(header, "cxsparse", 8) != 0) {
      throw Error("DISK_BAD_HEADER", path + " has no dynamic-disk header (\"cxsparse\") at offset " +
                                         std::to_string(header_at_));
    }
    if (checksum(header, kHeaderSize, kHeaderChecksumAt) != be32(header + kHeaderChecksumAt)) {
      throw Error("DISK_BAD_HEADER", path + " has a dynamic-disk header whose checksum does not match: the image is "
                                            "damaged (restore it from a backup)");
    }
    bat_at_ = be64(header + 16);
    uint32_t max_entries = be32(header + 28);
    max_entries_ = max_entries;
    block_size_ = be32(header + 32);
    if (block_size_ < kSector || block_size_ > (256u << 20) || (block_size_ & (block_size_ - 1)) != 0) {
      throw Error("DISK_CORRUPT", path + " records an impossible block size of " + std::to_string(block_size_) +
                                         " bytes");
    }
    if (capacity_ > kMaxSize) {
      throw Error("DISK_CORRUPT", path + " records an impossible size of " + gib_text(capacity_) +
                                         " (a VHD holds at most 2040 GiB)");
    }
    bitmap_size_ = uint32_t(round_up(block_size_ / kSector / 8 ? block_size_ / kSector / 8 : 1, kSector));
    uint64_t needed = (capacity_ + block_size_ - 1) / block_size_;
    if (max_entries < needed) {
      throw Error("DISK_CORRUPT", path + " has a block table of " + std::to_string(max_entries) +
                                         " entries, too few for its size of " + gib_text(capacity_));
    }
    uint64_t bat_bytes = round_up(uint64_t(max_entries) * 4, kSector);
    if (bat_at_ > file_size_ || file_size_ - bat_at_ < needed * 4) {
      throw Error("DISK_CORRUPT", path + " has its block table at offset " + std::to_string(bat_at_) +
                                         ", past the end of the file");
    }
    std::vector<uint8_t> raw(needed * 4);
    file_.read_exact(bat_at_, raw);
    bat_.resize(needed);
    bad_.assign(needed, false);
    full_.assign(needed, false);
    for (uint64_t i = 0; i < needed; i++) bat_[i] = be32(&raw[i * 4]);

    std::vector<Interval> used;
    used.push_back({0, kSector, "the footer copy"});
    used.push_back({header_at_, header_at_ + kHeaderSize, "the dynamic header"});
    used.push_back({bat_at_, bat_at_ + std::max<uint64_t>(bat_bytes, needed * 4), "the block table"});
    if (differencing()) read_locators(&used);
    uint64_t block_span = uint64_t(bitmap_size_) + block_size_;
    for (uint64_t i = 0; i < needed; i++) {
      if (bat_[i] == kUnused) continue;
      uint64_t s = uint64_t(bat_[i]) * kSector;
      if (s + block_span > file_size_) {
        bad_[i] = true;
        note_problem("block " + std::to_string(i) + " points to offset " + std::to_string(s) +
                     ", past the end of the file");
        continue;
      }
      used.push_back({s, s + block_span, "block " + std::to_string(i)});
    }
    std::sort(used.begin(), used.end(), [](const Interval& a, const Interval& b) { return a.start < b.start; });
    used_end_ = 0;
    for (size_t i = 0; i < used.size(); i++) {
      if (i > 0 && used[i].start < used[i - 1].end) {
        note_problem(used[i].what + " overlaps " + used[i - 1].what);
        if (used[i].what.rfind("block ", 0) == 0) bad_[std::stoull(used[i].what.substr(6))] = true;
        if (used[i - 1].what.rfind("block ", 0) == 0) bad_[std::stoull(used[i - 1].what.substr(6))] = true;
      }
      used_end_ = std::max(used_end_, used[i].end);
    }
    used_end_ = round_up(used_end_, kSector);
    if (!problems_.empty() && !read_only_) {
      throw Error("DISK_CORRUPT", path + " is damaged: " + problems_.front() +
                                         (problems_.size() > 1 ? " (and " + std::to_string(problems_.size() - 1) +
                                                                     " more problems)"
                                                               : std::string()) +
                                         "; open it read-only to copy out what is readable");
    }
  }

  // Parent name and locators of a differencing disk (validated; nothing opened yet).
  void read_locators(std::vector<Interval>* used) {
    const std::string& path = file_.path();
    std::vector<uint16_t> name(kParentNameBytes / 2);
    for (size_t i = 0; i < name.size(); i++) name[i] = uint16_t(header_[kParentNameAt + 2 * i] << 8 | header_[kParentNameAt + 2 * i + 1]);
    parent_name_ = from_utf16(name);
    for (uint32_t i = 0; i < kLocatorCount; i++) {
      const uint8_t* e = header_ + kLocatorsAt + i * kLocatorSize;
      Locator l{be32(e), be32(e + 4), be32(e + 8), be64(e + 16)};
      if (l.code == 0) continue;
      if (l.code != kW2ru && l.code != kW2ku) continue;  // Mac locators: not ours to read
      if (l.length == 0) continue;
      if (l.length > kMaxLocatorBytes || l.length % 2 != 0) {
        throw Error("DISK_CORRUPT", path + ": parent locator " + std::to_string(i) + " records an impossible length of " +
                                           std::to_string(l.length) + " bytes");
      }
      if (l.offset > file_size_ || file_size_ - l.offset < l.length) {
        throw Error("DISK_CORRUPT", path + ": parent locator " + std::to_string(i) + " points to offset " +
                                           std::to_string(l.offset) + ", past the end of the file");
      }
      std::vector<uint8_t> raw(l.length);
      file_.read_exact(l.offset, raw);
      std::vector<uint16_t> units(l.length / 2);
      for (size_t k = 0; k < units.size(); k++) units[k] = uint16_t(raw[2 * k] | raw[2 * k + 1] << 8);
      std::string p = from_windows(from_utf16(units));
      if (l.code == kW2ru) relative_ = p;
      else absolute_ = p;
      locators_.push_back(l);
      used->push_back({l.offset, l.offset + l.length, "parent locator " + std::to_string(i)});
    }
    if (!relative_.empty()) backing_recorded_ = relative_;
    else if (!absolute_.empty()) backing_recorded_ = absolute_;
    else if (!parent_name_.empty() && parent_name_.find('/') == std::string::npos) backing_recorded_ = parent_name_;
    else throw Error("DISK_CORRUPT", path + " is a differencing VHD that names no parent (no parent locator or name)");
    backing_resolved_ = resolve_backing_path(path, backing_recorded_);
  }

  void open_parent(const BackingOpener& opener) {
    if (!opener) return;
    const std::string& path = file_.path();
    std::vector<std::string> candidates;
    if (!relative_.empty()) candidates.push_back(relative_);
    if (!absolute_.empty()) candidates.push_back(absolute_);
    if (candidates.empty()) candidates.push_back(backing_recorded_);
    std::string first;
    for (const auto& c : candidates) {
      try {
        backing_ = opener(c, "vpc");
        backing_recorded_ = c;
        backing_resolved_ = resolve_backing_path(path, c);
        break;
      } catch (const Error& e) {
        if (e.code() != "DISK_NOT_FOUND") throw;
        if (first.empty()) first = e.what();
      }
    }
    if (!backing_) {
      throw Error("DISK_NOT_FOUND", path + " is a differencing VHD whose parent cannot be found (" + first +
                                        "); move the parent back or reconnect the disk to it");
    }
    auto* parent = dynamic_cast<VhdDisk*>(backing_.get());
    if (!parent) {
      std::string what = format_name(backing_->info().format);
      backing_.reset();
      throw Error("DISK_BACKING_MISMATCH", path + " names " + backing_resolved_ + " as its parent, but that is a " + what +
                                               " image, not a VHD; reconnect the disk to its original parent");
    }
    if (std::memcmp(parent->unique_id(), header_ + kParentIdAt, 16) != 0) {
      backing_.reset();
      throw Error("DISK_BACKING_MISMATCH", path + " no longer matches its parent " + backing_resolved_ +
                                               ": the parent's unique id is not the one the differencing disk recorded "
                                               "(it was replaced or recreated); restore the original parent");
    }
  }

  void note_problem(const std::string& p) {
    if (problems_.size() < 100) problems_.push_back(p);
  }

  // File offset of the data of block index, or 0 when it is unallocated.
  uint64_t block_data(uint64_t index) const {
    if (bat_[index] == kUnused) return 0;
    if (bad_[index]) {
      throw Error("DISK_CORRUPT", file_.path() + ": block " + std::to_string(index) +
                                      " has a damaged block-table entry; its data cannot be read");
    }
    return uint64_t(bat_[index]) * kSector + bitmap_size_;
  }

  ExtentKind kind_at(uint64_t pos) {
    uint64_t index = pos / block_size_;
    uint64_t data = block_data(index);
    if (!differencing()) return data == 0 ? ExtentKind::kZero : ExtentKind::kData;
    if (data == 0) return ExtentKind::kBacking;
    return sector_present(index, (pos % block_size_) / kSector) ? ExtentKind::kData : ExtentKind::kBacking;
  }

  const std::vector<uint8_t>& bitmap(uint64_t index) {
    auto it = bitmaps_.find(index);
    if (it != bitmaps_.end()) return it->second;
    if (bitmaps_.size() > 256) bitmaps_.clear();
    std::vector<uint8_t> b(bitmap_size_);
    file_.read_exact(uint64_t(bat_[index]) * kSector, b);
    return bitmaps_.emplace(index, std::move(b)).first->second;
  }
  bool sector_present(uint64_t index, uint64_t sector) {
    const auto& b = bitmap(index);
    return (b[sector / 8] >> (7 - sector % 8)) & 1;
  }

  void read_parent(uint64_t offset, std::span<uint8_t> buf) {
    uint64_t cap = backing_ ? backing_->capacity() : 0;
    uint64_t n = offset < cap ? std::min<uint64_t>(buf.size(), cap - offset) : 0;
    if (n) backing_->read(offset, buf.first(n));
    std::memset(buf.data() + n, 0, buf.size() - n);
  }

  void read_differencing_block(uint64_t index, uint64_t data, uint64_t in, std::span<uint8_t> out) {
    uint64_t pos = in, end = in + out.size();
    while (pos < end) {
      bool present = sector_present(index, pos / kSector);
      uint64_t run_end = std::min(end, (pos / kSector + 1) * kSector);
      while (run_end < end && sector_present(index, run_end / kSector) == present) {
        run_end = std::min(end, run_end + kSector);
      }
      auto piece = out.subspan(pos - in, run_end - pos);
      if (present) file_.read_exact(data + pos, piece);
      else read_parent(index * block_size_ + pos, piece);
      pos = run_end;
    }
  }

  void require_parent_for_write() const {
    if (!backing_) {
      throw Error("DISK_UNSUPPORTED", file_.path() + " is a differencing VHD opened without its parent; writing to it "
                                                     "would lose the parent's data (open it with its parent)");
    }
  }

  // Allocates block index of a differencing disk with the parent's data, except for the
  // range [skip, skip + skip_len) which the caller is about to write. Returns the data offset.
  uint64_t allocate_from_parent(uint64_t index, uint64_t skip, uint64_t skip_len) {
    require_parent_for_write();
    uint64_t data = allocate_block(index);
    uint64_t base = index * block_size_;
    std::vector<uint8_t> buf;
    auto copy = [&](uint64_t from, uint64_t to) {
      for (uint64_t pos = from; pos < to;) {
        uint64_t n = std::min<uint64_t>(to - pos, 1 << 20);
        if (base + pos >= backing_->capacity()) return;  // past the parent: zeroes already
        buf.resize(n);
        read_parent(base + pos, buf);
        if (!std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0; })) file_.write_all(data + pos, buf);
        pos += n;
      }
    };
    copy(0, skip);
    copy(skip + skip_len, block_size_);
    bitmaps_[index] = std::vector<uint8_t>(bitmap_size_, 0xFF);
    return data;
  }

  // Makes an allocated block of a differencing disk fully present (sectors whose bit is
  // clear get the parent's data first). Returns the data offset.
  uint64_t complete_block(uint64_t index, uint64_t data) {
    const auto& b = bitmap(index);
    uint64_t sectors = block_size_ / kSector;
    bool full = true;
    for (uint64_t s = 0; s < sectors && full; s++) full = (b[s / 8] >> (7 - s % 8)) & 1;
    if (full) return data;
    require_parent_for_write();
    std::vector<uint8_t> buf(kSector);
    for (uint64_t s = 0; s < sectors; s++) {
      if (sector_present(index, s)) continue;
      read_parent(index * block_size_ + s * kSector, buf);
      file_.write_all(data + s * kSector, buf);
    }
    file_.sync();  // the data before the bits that expose it
    std::vector<uint8_t> ones(bitmap_size_, 0xFF);
    file_.write_all(uint64_t(bat_[index]) * kSector, ones);
    bitmaps_[index] = ones;
    full_[index] = true;
    return data;
  }

  // True when the bitmap bits of the sectors of [in, in + n) in allocated block index are
  // all set (remembered per block once the whole bitmap is).
  bool all_present(uint64_t index, uint64_t in, uint64_t n) {
    if (full_[index]) return true;
    const auto& b = bitmap(index);
    uint64_t sectors = block_size_ / kSector;
    bool whole = true;
    for (uint64_t s = 0; s < sectors && whole; s++) whole = (b[s / 8] >> (7 - s % 8)) & 1;
    if (whole) {
      full_[index] = true;
      return true;
    }
    for (uint64_t s = in / kSector; s <= (in + n - 1) / kSector; s++) {
      if (!((b[s / 8] >> (7 - s % 8)) & 1)) return false;
    }
    return true;
  }

  // Dynamic disks: sectors written in a block that another writer left with bits clear get
  // their bits, so readers that honour the bitmap (Hyper-V) see the data. The data is
  // synced before the bits that expose it.
  void mark_present(uint64_t index, uint64_t in, uint64_t n) {
    if (n == 0 || all_present(index, in, n)) return;
    std::vector<uint8_t> b = bitmap(index);
    for (uint64_t s = in / kSector; s <= (in + n - 1) / kSector; s++) b[s / 8] |= uint8_t(0x80 >> (s % 8));
    file_.sync();
    file_.write_all(uint64_t(bat_[index]) * kSector, b);
    bitmaps_[index] = std::move(b);
  }

  // The asynchronous path's run at guest offset `offset` (at most max bytes): the piece of
  // its block, extended over following blocks of the same kind (never kHost: a bitmap
  // lies between two blocks' data).
  MappedRun run(uint64_t offset, uint64_t max, bool write) {
    if (disk_type_ == kTypeFixed) return {MappedRunKind::kHost, offset, max};
    uint64_t n = std::min<uint64_t>(max, block_size_ - offset % block_size_);
    MappedRun r = block_run(offset, n, write);
    bool whole = r.length == n;  // the run reached the end of its block
    while (whole && r.kind != MappedRunKind::kHost && r.length < max) {
      n = std::min<uint64_t>(max - r.length, block_size_);
      MappedRun next = block_run(offset + r.length, n, write);
      if (next.kind != r.kind) break;
      r.length += next.length;
      whole = next.length == n;
    }
    return r;
  }

  // [pos, pos + n) inside one block: allocated data is kHost (for a differencing disk's
  // reads, the sectors of the same presence from pos; its writes only in fully present
  // blocks, the rest completes the block through the driver); unallocated reads are
  // zeroes, or the parent's (through the driver).
  MappedRun block_run(uint64_t pos, uint64_t n, bool write) {
    uint64_t index = pos / block_size_, in = pos % block_size_;
    uint64_t data = block_data(index);
    if (data == 0) return {write || differencing() ? MappedRunKind::kDriver : MappedRunKind::kZero, 0, n};
    if (write) {
      bool in_place = differencing() ? all_present(index, 0, block_size_) : all_present(index, in, n);
      return {in_place ? MappedRunKind::kHost : MappedRunKind::kDriver, in_place ? data + in : 0, n};
    }
    if (!differencing() || all_present(index, in, n)) return {MappedRunKind::kHost, data + in, n};
    bool present = sector_present(index, in / kSector);
    uint64_t end = in + n, run_end = std::min(end, (in / kSector + 1) * kSector);
    while (run_end < end && sector_present(index, run_end / kSector) == present) run_end = std::min(end, run_end + kSector);
    return {present ? MappedRunKind::kHost : MappedRunKind::kDriver, present ? data + in : 0, run_end - in};
  }

  uint64_t allocate_block(uint64_t index) {
    uint64_t at = used_end_;
    uint64_t end = at + bitmap_size_ + block_size_;
    if (end / kSector > kUnused) {
      throw Error("DISK_NO_SPACE", file_.path() + " cannot grow past 2 TiB (the VHD block table's limit)");
    }
    // Drop the old footer and any unreferenced tail left by an interrupted allocation, so
    // that the new block's data reads as zeroes where it is not written.
    if (file_.size() > at) file_.truncate(at);
    std::vector<uint8_t> bitmap(bitmap_size_, 0xFF);
    file_.write_all(at, bitmap);
    file_.write_all(end, footer_);
    end_footer_missing_ = false;
    used_end_ = end;
    bat_[index] = uint32_t(at / kSector);
    full_[index] = true;
    bitmaps_.erase(index);
    pending_.insert(index);
    return at + bitmap_size_;
  }

  void commit_bat() {
    if (pending_.empty()) return;
    file_.sync();
    for (uint64_t index : pending_) {
      uint8_t entry[4];
      put32(entry, bat_[index]);
      file_.write_all(bat_at_ + index * 4, entry);
    }
    pending_.clear();
    file_.sync();
  }
  void commit_bat_if_writable() {
    if (!read_only_) commit_bat();
  }

  void write_header() {
    put32(header_ + kHeaderChecksumAt, checksum(header_, kHeaderSize, kHeaderChecksumAt));
    file_.write_all(header_at_, std::span<const uint8_t>(header_, kHeaderSize));
  }

  void resize_fixed(uint64_t new_capacity, const uint8_t* footer) {
    if (new_capacity > capacity_) {
      // The new footer first (the file's end decides), then the old one becomes data.
      file_.write_all(new_capacity, std::span<const uint8_t>(footer, kSector));
      file_.sync();
      std::vector<uint8_t> zero(kSector, 0);
      file_.write_all(capacity_, zero);
      file_.sync();
    } else {
      file_.write_all(new_capacity, std::span<const uint8_t>(footer, kSector));
      file_.sync();
      file_.truncate(new_capacity + kSector);
      file_.sync();
    }
    std::memcpy(footer_, footer, kSector);
    capacity_ = new_capacity;
  }

  void zero_file_range(uint64_t at, uint64_t length, bool may_unmap) {
    if (length == 0) return;
    if (may_unmap && file_.punch_hole(at, length)) return;
#ifdef FALLOC_FL_ZERO_RANGE
    if (::fallocate(file_.fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off_t(at), off_t(length)) == 0) return;
#endif
    std::vector<uint8_t> zeroes(std::min<uint64_t>(length, 1 << 20), 0);
    for (uint64_t done = 0; done < length;) {
      size_t n = size_t(std::min<uint64_t>(zeroes.size(), length - done));
      file_.write_all(at + done, std::span<const uint8_t>(zeroes.data(), n));
      done += n;
    }
  }

  void check_range(uint64_t offset, uint64_t length) const {
    if (offset > capacity_ || length > capacity_ - offset) {
      throw Error("DISK_RANGE", "request at offset " + std::to_string(offset) + " (" + std::to_string(length) +
                                    " bytes) is outside " + file_.path() + " (" + gib_text(capacity_) + ")");
    }
  }
  void check_writable() const {
    if (read_only_) throw Error("DISK_READ_ONLY", file_.path() + " is open read-only");
  }

  File file_;
  bool read_only_;
  uint8_t footer_[kSector] = {};
  uint64_t file_size_ = 0;
  uint32_t disk_type_ = 0;
  uint64_t capacity_ = 0;
  bool end_footer_missing_ = false;
  // Dynamic and differencing disks.
  uint64_t header_at_ = 0;
  uint8_t header_[kHeaderSize] = {};
  uint64_t bat_at_ = 0;
  uint32_t max_entries_ = 0;
  uint32_t block_size_ = 0;
  uint32_t bitmap_size_ = 0;
  std::vector<uint32_t> bat_;
  std::vector<bool> bad_;      // entries found damaged at open (read-only opens only)
  std::vector<bool> full_;     // allocated blocks known to have every bitmap bit set
  std::set<uint64_t> pending_; // allocated blocks whose BAT entry is not yet on disk
  uint64_t used_end_ = 0;      // end of the last metadata or block: where the next block goes
  std::vector<std::string> problems_;
  std::map<uint64_t, std::vector<uint8_t>> bitmaps_;  // sector bitmaps read so far
  // Differencing disks.
  std::vector<Locator> locators_;
  std::string parent_name_, relative_, absolute_;
  std::string backing_recorded_, backing_resolved_;
  std::unique_ptr<BlockDevice> backing_;
};

// The parent fields a child at child_path records for parent (recorded as given).
ParentRecord parent_record(const std::string& child_path, const std::string& recorded, const VhdDisk& parent,
                           const std::string& parent_path) {
  namespace fs = std::filesystem;
  ParentRecord rec;
  std::memcpy(rec.id, parent.unique_id(), 16);
  struct stat st;
  if (::stat(parent_path.c_str(), &st) == 0 && uint64_t(st.st_mtime) >= kVhdEpoch) {
    rec.time = uint32_t(uint64_t(st.st_mtime) - kVhdEpoch);
  }
  std::string resolved = resolve_backing_path(child_path, recorded);
  std::string abs = fs::absolute(resolved).lexically_normal().string();
  std::string rel = recorded;
  if (!recorded.empty() && recorded[0] == '/') {
    rel = fs::path(abs).lexically_relative(fs::absolute(child_path).parent_path()).string();
  }
  std::string base = fs::path(abs).filename().string();
  if (!to_utf16(base, &rec.name)) {
    throw Error("DISK_BACKING_NAME", "the parent file name " + base + " is not valid UTF-8; a VHD records it in UTF-16");
  }
  if (rec.name.size() > kParentNameBytes / 2) {
    throw Error("DISK_BACKING_NAME", "the parent file name " + base + " is " + std::to_string(rec.name.size()) +
                                         " UTF-16 characters long; a VHD records at most 256; rename the parent");
  }
  for (auto [code, p] : {std::pair<uint32_t, std::string>{kW2ru, rel}, {kW2ku, abs}}) {
    if (p.empty()) continue;
    std::vector<uint16_t> units;
    if (!to_utf16(to_windows(p), &units)) {
      throw Error("DISK_BACKING_NAME", "the parent path " + p + " is not valid UTF-8; a VHD records it in UTF-16");
    }
    if (units.size() * 2 > kMaxLocatorBytes) {
      throw Error("DISK_BACKING_NAME", "the parent path " + p + " is too long for a VHD parent locator (at most " +
                                           std::to_string(kMaxLocatorBytes / 2) + " UTF-16 characters)");
    }
    std::vector<uint8_t> bytes(units.size() * 2);
    for (size_t i = 0; i < units.size(); i++) {
      bytes[2 * i] = uint8_t(units[i]);
      bytes[2 * i + 1] = uint8_t(units[i] >> 8);
    }
    rec.locators.emplace_back(code, std::move(bytes));
  }
  return rec;
}

bool probe_vhd(const File& file) {
  uint64_t size = 0;
  try {
    size = file.size();
  } catch (const Error&) {
    return false;
  }
  if (size < kSector) return false;
  // The probing descriptor may be O_DIRECT: read through an aligned buffer.
  uint8_t cookie[8];
  aligned_read(file.fd(), file.direct(), 4096, 0, cookie, file.path());
  if (has_cookie(cookie)) return true;
  aligned_read(file.fd(), file.direct(), 4096, size - kSector, cookie, file.path());
  return has_cookie(cookie);
}

std::unique_ptr<BlockDevice> open_vhd(File file, const OpenOptions& options, const BackingOpener& opener) {
  if (file.direct()) {
    // VHD metadata is 512-byte granular: use buffered I/O.
    file = File(file.path(), options.read_only ? File::Mode::kReadOnly : File::Mode::kReadWrite, false);
  }
  auto disk = std::make_unique<VhdDisk>(std::move(file), options.read_only);
  disk->open(opener);
  return disk;
}

void make_footer(uint8_t* f, uint32_t type, uint64_t size, uint64_t data_offset) {
  std::memset(f, 0, kSector);
  std::memcpy(f, "conectix", 8);
  put32(f + 8, 2);                // features: reserved bit always set
  put32(f + 12, 0x00010000);      // format version 1.0
  put64(f + 16, data_offset);
  put32(f + 24, uint32_t(uint64_t(std::time(nullptr)) - kVhdEpoch));
  std::memcpy(f + 28, "brth", 4);
  put32(f + 32, 0x00010000);
  std::memcpy(f + 36, "Wi2k", 4);
  put64(f + 40, size);
  put64(f + 48, size);
  Geometry g = geometry_for_create(size);
  put16(f + 56, g.cylinders);
  f[58] = g.heads;
  f[59] = g.sectors_per_track;
  put32(f + 60, type);
  if (::getrandom(f + 68, 16, 0) != 16) {
    uint64_t t = uint64_t(std::time(nullptr)) ^ uint64_t(::getpid()) << 32;
    put64(f + 68, t);
    put64(f + 76, ~t);
  }
  put32(f + kFooterChecksumAt, checksum(f, kSector, kFooterChecksumAt));
}

void create_vhd(const std::string& path, const CreateOptions& options) {
  if (!options.backing_path.empty() && options.fixed) {
    throw Error("DISK_UNSUPPORTED", "a differencing VHD cannot be fixed; create " + path + " without the fixed option");
  }
  // A differencing disk takes its size, geometry and block size from its parent.
  std::unique_ptr<BlockDevice> parent;
  const VhdDisk* vhd_parent = nullptr;
  if (!options.backing_path.empty()) {
    OpenOptions o;
    o.read_only = true;
    o.open_backing = false;
    parent = open_disk(resolve_backing_path(path, options.backing_path), o);
    vhd_parent = dynamic_cast<const VhdDisk*>(parent.get());
    if (!vhd_parent) {
      throw Error("DISK_UNSUPPORTED", "the parent of a differencing VHD must be a VHD image; " + options.backing_path +
                                          " is " + format_name(parent->info().format) +
                                          " (choose qcow2 or VHDX for the differencing disk)");
    }
  }
  uint64_t requested = options.size ? options.size : parent ? parent->capacity() : 0;
  if (requested == 0) throw Error("DISK_RANGE", "a VHD image needs a size larger than 0");
  if (requested > kMaxSize) {
    throw Error("DISK_UNSUPPORTED", "a VHD image holds at most 2040 GiB; choose VHDX or qcow2 for " + path);
  }
  uint64_t size = round_up(requested, kSector);
  uint32_t block_size = options.cluster_size ? options.cluster_size
                        : vhd_parent && vhd_parent->block_size() ? vhd_parent->block_size()
                                                                 : kDefaultBlockSize;
  if (block_size < kSector || block_size > (256u << 20) || (block_size & (block_size - 1)) != 0) {
    throw Error("DISK_UNSUPPORTED", "VHD block size " + std::to_string(block_size) +
                                        " is not a power of two between 512 bytes and 256 MiB");
  }
  ParentRecord rec;
  if (vhd_parent) rec = parent_record(path, options.backing_path, *vhd_parent, parent->info().path);
  File file(path, File::Mode::kCreateExclusive);
  try {
    uint8_t footer[kSector];
    if (options.fixed) {
      make_footer(footer, kTypeFixed, size, ~uint64_t(0));
      file.allocate(0, size);
      file.write_all(size, footer);
    } else {
      uint64_t entries = (size + block_size - 1) / block_size;
      uint64_t bat_at = kSector + kHeaderSize;
      uint64_t bat_bytes = round_up(entries * 4, kSector);
      make_footer(footer, vhd_parent ? kTypeDifferencing : kTypeDynamic, size, kSector);
      if (vhd_parent && size == parent->capacity()) {
        std::memcpy(footer + 56, vhd_parent->geometry_bytes(), 4);  // the parent's geometry
        put32(footer + kFooterChecksumAt, checksum(footer, kSector, kFooterChecksumAt));
      }
      uint8_t header[kHeaderSize] = {};
      std::memcpy(header, "cxsparse", 8);
      put64(header + 8, ~uint64_t(0));
      put64(header + 16, bat_at);
      put32(header + 24, 0x00010000);
      put32(header + 28, uint32_t(entries));
      put32(header + 32, block_size);
      uint64_t end = bat_at + bat_bytes;
      std::vector<VhdDisk::Locator> locs;
      for (auto& [code, bytes] : rec.locators) {
        uint64_t space = round_up(bytes.size(), kSector);
        std::vector<uint8_t> padded(space, 0);
        std::memcpy(padded.data(), bytes.data(), bytes.size());
        file.write_all(end, padded);
        locs.push_back({code, uint32_t(space), uint32_t(bytes.size()), end});
        end += space;
      }
      if (vhd_parent) VhdDisk::fill_parent_fields(header, rec, locs);
      put32(header + kHeaderChecksumAt, checksum(header, kHeaderSize, kHeaderChecksumAt));
      file.write_all(0, footer);
      file.write_all(kSector, header);
      std::vector<uint8_t> bat(bat_bytes, 0xFF);
      file.write_all(bat_at, bat);
      file.write_all(end, footer);
    }
    file.sync();
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

[[maybe_unused]] const bool registered = register_driver({Format::kVhd, 20, probe_vhd, open_vhd, create_vhd});

}  // namespace

Geometry chs_for(uint64_t total_sectors) {
  uint64_t total = std::min<uint64_t>(total_sectors, 65535ull * 16 * 255);
  uint64_t spt, heads, cth;
  if (total >= 65535ull * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = total / spt;
  } else {
    spt = 17;
    cth = total / spt;
    heads = (cth + 1023) / 1024;
    if (heads < 4) heads = 4;
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = total / spt;
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = total / spt;
    }
  }
  Geometry g;
  g.cylinders = uint16_t(std::min<uint64_t>(cth / heads, 65535));
  g.heads = uint8_t(heads);
  g.sectors_per_track = uint8_t(spt);
  return g;
}

Geometry geometry_for_create(uint64_t size) {
  Geometry g = chs_for(size / kSector);
  if (g.sectors() * kSector == size) return g;
  return Geometry{65535, 16, 255};
}

}  // namespace berth::disk::vhd
