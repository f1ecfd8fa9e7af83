// VHD images. Layout (all fields big-endian):
//   fixed:    data [0, current_size), then the 512-byte footer.
//   dynamic:  footer copy at 0, dynamic header ("cxsparse", 1024 bytes) at the footer's
//             data offset, the BAT (32-bit sector offsets, 0xFFFFFFFF = unallocated), then
//             blocks, each a sector bitmap followed by block_size data bytes, then the footer.
// Block allocation order (crash safety): bitmap + data and the moved footer first; the
// BAT entry only after those are durable (at the next flush or on close). A crash in
// between leaves an unreferenced block at the end of the file, which the next
// allocation reuses.
#include "disk/vhd/vhd.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <vector>

#include "common/error.h"
#include "disk/aligned_io.h"
#include "disk/driver.h"

namespace berth::disk::vhd {

namespace {

constexpr uint32_t kSector = 512;
constexpr uint32_t kUnused = 0xFFFFFFFFu;
constexpr uint32_t kTypeFixed = 2, kTypeDynamic = 3, kTypeDifferencing = 4;
constexpr uint32_t kFooterChecksumAt = 64;
constexpr uint32_t kHeaderChecksumAt = 36;
constexpr uint32_t kHeaderSize = 1024;
constexpr uint64_t kVhdEpoch = 946684800;  // 2000-01-01T00:00:00Z

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

struct Interval {
  uint64_t start, end;
  std::string what;
};

class VhdDisk final : public BlockDevice {
 public:
  VhdDisk(File file, bool read_only) : file_(std::move(file)), read_only_(read_only) {}

  ~VhdDisk() override {
    try {
      commit_bat();
    } catch (...) {
      // Nothing to report to from a destructor; the blocks stay unreferenced (leaked).
    }
  }

  void open() {
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
    if (disk_type_ == kTypeDifferencing) {
      throw Error("DISK_UNSUPPORTED", path + " is a differencing VHD, which Berth does not read yet; convert it "
                                             "(with its parent) to a standalone VHD or qcow2 image with qemu-img");
    }
    if (disk_type_ != kTypeFixed && disk_type_ != kTypeDynamic) {
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
  }

  uint64_t capacity() const override { return capacity_; }
  bool read_only() const override { return read_only_; }

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
      uint64_t data = block_data(index);
      if (data == 0) {
        std::memset(buf.data() + done, 0, n);
      } else {
        file_.read_exact(data + in, buf.subspan(done, n));
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
      if (data == 0) {
        // An unallocated block already reads as zeroes: writing zeroes needs no block.
        bool all_zero = std::all_of(piece.begin(), piece.end(), [](uint8_t b) { return b == 0; });
        if (!all_zero) {
          data = allocate_block(index);
          file_.write_all(data + in, piece);
        }
      } else {
        file_.write_all(data + in, piece);
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
    if (disk_type_ == kTypeFixed) return {offset, end - offset, ExtentKind::kData};
    ExtentKind kind = block_data(offset / block_size_) == 0 ? ExtentKind::kZero : ExtentKind::kData;
    uint64_t pos = offset;
    while (pos < end) {
      ExtentKind k = block_data(pos / block_size_) == 0 ? ExtentKind::kZero : ExtentKind::kData;
      if (k != kind) break;
      pos = std::min(end, (pos / block_size_ + 1) * block_size_);
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
    info.subformat = disk_type_ == kTypeFixed ? "fixed" : "dynamic";
    info.corrupt = !problems_.empty();
    info.cluster_size = disk_type_ == kTypeFixed ? 0 : block_size_;
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

 private:
  void open_dynamic() {
    const std::string& path = file_.path();
    uint64_t header_at = be64(footer_ + 16);
    if (header_at > file_size_ || file_size_ - header_at < kHeaderSize) {
      throw Error("DISK_CORRUPT", path + " points to a dynamic header at offset " + std::to_string(header_at) +
                                         ", past the end of the file");
    }
    uint8_t header[kHeaderSize];
    file_.read_exact(header_at, header);
    if (std::memcmp(header, "cxsparse", 8) != 0) {
      throw Error("DISK_BAD_HEADER", path + " has no dynamic-disk header (\"cxsparse\") at offset " +
                                         std::to_string(header_at));
    }
    if (checksum(header, kHeaderSize, kHeaderChecksumAt) != be32(header + kHeaderChecksumAt)) {
      throw Error("DISK_BAD_HEADER", path + " has a dynamic-disk header whose checksum does not match: the image is "
                                            "damaged (restore it from a backup)");
    }
    bat_at_ = be64(header + 16);
    uint32_t max_entries = be32(header + 28);
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
    for (uint64_t i = 0; i < needed; i++) bat_[i] = be32(&raw[i * 4]);

    std::vector<Interval> used;
    used.push_back({0, kSector, "the footer copy"});
    used.push_back({header_at, header_at + kHeaderSize, "the dynamic header"});
    used.push_back({bat_at_, bat_at_ + std::max<uint64_t>(bat_bytes, needed * 4), "the block table"});
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
  // Dynamic disks.
  uint64_t bat_at_ = 0;
  uint32_t block_size_ = 0;
  uint32_t bitmap_size_ = 0;
  std::vector<uint32_t> bat_;
  std::vector<bool> bad_;      // entries found damaged at open (read-only opens only)
  std::set<uint64_t> pending_; // allocated blocks whose BAT entry is not yet on disk
  uint64_t used_end_ = 0;      // end of the last metadata or block: where the next block goes
  std::vector<std::string> problems_;
};

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

std::unique_ptr<BlockDevice> open_vhd(File file, const OpenOptions& options, const BackingOpener&) {
  if (file.direct()) {
    // VHD metadata is 512-byte granular: use buffered I/O.
    file = File(file.path(), options.read_only ? File::Mode::kReadOnly : File::Mode::kReadWrite, false);
  }
  auto disk = std::make_unique<VhdDisk>(std::move(file), options.read_only);
  disk->open();
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
  if (!options.backing_path.empty()) {
    throw Error("DISK_UNSUPPORTED", "Berth cannot create differencing VHD images; create " + path +
                                        " as qcow2 to make a differencing disk over " + options.backing_path);
  }
  if (options.size == 0) throw Error("DISK_RANGE", "a VHD image needs a size larger than 0");
  if (options.size > kMaxSize) {
    throw Error("DISK_UNSUPPORTED", "a VHD image holds at most 2040 GiB; choose VHDX or qcow2 for " + path);
  }
  uint64_t size = round_up(options.size, kSector);
  uint32_t block_size = options.cluster_size ? options.cluster_size : kDefaultBlockSize;
  if (block_size < kSector || block_size > (256u << 20) || (block_size & (block_size - 1)) != 0) {
    throw Error("DISK_UNSUPPORTED", "VHD block size " + std::to_string(block_size) +
                                        " is not a power of two between 512 bytes and 256 MiB");
  }
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
      make_footer(footer, kTypeDynamic, size, kSector);
      uint8_t header[kHeaderSize] = {};
      std::memcpy(header, "cxsparse", 8);
      put64(header + 8, ~uint64_t(0));
      put64(header + 16, bat_at);
      put32(header + 24, 0x00010000);
      put32(header + 28, uint32_t(entries));
      put32(header + 32, block_size);
      put32(header + kHeaderChecksumAt, checksum(header, kHeaderSize, kHeaderChecksumAt));
      file.write_all(0, footer);
      file.write_all(kSector, header);
      std::vector<uint8_t> bat(bat_bytes, 0xFF);
      file.write_all(bat_at, bat);
      file.write_all(bat_at + bat_bytes, footer);
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
