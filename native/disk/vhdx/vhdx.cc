// VHDX images per Microsoft's [MS-VHDX]: file identifier, two headers, two region tables,
// the metadata region, the BAT (payload blocks and, for differencing disks, interleaved
// sector bitmap blocks) and the metadata log.
//
// Log policy: every update of our own metadata (BAT sectors, metadata region sectors) is
// written as a log entry, flushed, then applied to its final location and flushed, so an
// interruption at any point is repaired by replay. Headers are updated by the format's own
// two-copy scheme (the non-current copy, with a higher sequence number). Payload data goes
// straight to its block. A writable open replays a pending log into the file; a read-only
// open (a parent in a chain, an inspection) replays it into memory and reads through that
// view, leaving the file untouched and reporting the image dirty.
//
// Writes to a differencing disk copy-on-write whole blocks (FULLY_PRESENT); blocks that
// other writers left PARTIALLY_PRESENT are read through their sector bitmaps.
//
// The asynchronous path (disk/mapped_async_disk.h) reads and writes FULLY_PRESENT blocks
// in parallel, in place; everything that changes the BAT (through the log) or reads a
// parent or a sector bitmap goes through this driver, in submission order. Its first write
// records the new DataWriteGuid through the driver before any data is queued.
#include "disk/vhdx/vhdx.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "common/error.h"
#include "disk/driver.h"
#include "disk/mapped_async_disk.h"
#include "disk/mapped_async_host.h"

namespace berth::disk::vhdx {

static_assert(std::endian::native == std::endian::little, "VHDX fields are little-endian");

#ifdef BERTH_TEST_HOOKS
namespace testing {
bool fault_stop_after_log_write = false;
}
#endif

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (uint8_t b : data) crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB, TiB = 1024 * GiB;
constexpr uint64_t kHeader1 = 64 * KiB, kHeader2 = 128 * KiB, kRegion1 = 192 * KiB, kRegion2 = 256 * KiB;
constexpr uint64_t kSector = 4096;  // log and metadata update granularity
constexpr uint64_t kMaxVirtualSize = 64 * TiB;
constexpr uint64_t kMaxLogLength = 64 * MiB;
constexpr uint64_t kMaxFileBytes = 1ull << 52;  // past any file a disk of kMaxVirtualSize needs

// BAT states.
constexpr uint64_t kNotPresent = 0, kUndefined = 1, kZero = 2, kUnmapped = 3, kFully = 6, kPartially = 7;
constexpr uint64_t kBitmapPresent = 6;

struct Guid {
  std::array<uint8_t, 16> b{};
  bool zero() const { return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; }); }
  bool operator==(const Guid&) const = default;
  bool operator<(const Guid& o) const { return b < o.b; }
};

// "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX" (braces optional) -> on-disk bytes (first three
// fields little-endian). Returns false for anything else.
bool parse_guid(std::string s, Guid* out) {
  if (s.size() == 38 && s.front() == '{' && s.back() == '}') s = s.substr(1, 36);
  if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
  std::string hex;
  for (char c : s) {
    if (c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    hex += c;
  }
  uint8_t raw[16];
  for (int i = 0; i < 16; ++i) raw[i] = static_cast<uint8_t>(std::stoi(hex.substr(i * 2, 2), nullptr, 16));
  static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int i = 0; i < 16; ++i) out->b[i] = raw[order[i]];
  return true;
}

Guid guid(const char* s) {
  Guid g;
  parse_guid(s, &g);
  return g;
}

std::string guid_string(const Guid& g) {
  static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  std::string out = "{";
  char buf[3];
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    std::snprintf(buf, sizeof buf, "%02x", g.b[order[i]]);
    out += buf;
  }
  return out + "}";
}

Guid random_guid() {
  static std::random_device rd;
  Guid g;
  for (size_t i = 0; i < 16; i += 4) {
    uint32_t v = rd();
    std::memcpy(&g.b[i], &v, 4);
  }
  g.b[7] = static_cast<uint8_t>((g.b[7] & 0x0f) | 0x40);  // version 4
  g.b[8] = static_cast<uint8_t>((g.b[8] & 0x3f) | 0x80);
  return g;
}

const Guid kBatRegion = guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
const Guid kMetadataRegion = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const Guid kFileParameters = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const Guid kVirtualDiskSize = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const Guid kPage83 = guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
const Guid kLogicalSector = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
const Guid kPhysicalSector = guid("CDA348C7-445D-4471-9CC9-E9885251C556");
const Guid kParentLocator = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
const Guid kVhdxParentType = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913");

template <typename T>
T ld(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void st(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
Guid ld_guid(const uint8_t* p) {
  Guid g;
  std::memcpy(g.b.data(), p, 16);
  return g;
}
void st_guid(uint8_t* p, const Guid& g) { std::memcpy(p, g.b.data(), 16); }

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

std::string utf16_to_utf8(const uint8_t* p, size_t bytes) {
  std::string out;
  for (size_t i = 0; i + 1 < bytes; i += 2) {
    uint32_t c = ld<uint16_t>(p + i);
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < bytes) {
      uint32_t lo = ld<uint16_t>(p + i + 2);
      if (lo >= 0xDC00 && lo < 0xE000) {
        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
        i += 2;
      }
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

std::vector<uint8_t> utf8_to_utf16(const std::string& s) {
  std::vector<uint8_t> out;
  auto put = [&](uint32_t u) {
    out.push_back(static_cast<uint8_t>(u & 0xff));
    out.push_back(static_cast<uint8_t>(u >> 8));
  };
  for (size_t i = 0; i < s.size();) {
    uint8_t c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) cp = c, n = 1;
    else if ((c >> 5) == 6) cp = c & 0x1F, n = 2;
    else if ((c >> 4) == 14) cp = c & 0x0F, n = 3;
    else cp = c & 0x07, n = 4;
    for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      put(0xD800 + (cp >> 10));
      put(0xDC00 + (cp & 0x3FF));
    } else {
      put(cp);
    }
  }
  return out;
}

std::string to_windows(std::string s) {
  std::replace(s.begin(), s.end(), '/', '\\');
  return s;
}
std::string from_windows(std::string s) {
  std::replace(s.begin(), s.end(), '\\', '/');
  return s;
}

struct Header {
  uint64_t seq = 0;
  Guid file_write, data_write, log_guid;
  uint16_t log_version = 0, version = 1;
  uint32_t log_length = 0;
  uint64_t log_offset = 0;
};

std::array<uint8_t, kSector> encode_header(const Header& h) {
  std::array<uint8_t, kSector> b{};
  std::memcpy(b.data(), "head", 4);
  st<uint64_t>(&b[8], h.seq);
  st_guid(&b[16], h.file_write);
  st_guid(&b[32], h.data_write);
  st_guid(&b[48], h.log_guid);
  st<uint16_t>(&b[64], h.log_version);
  st<uint16_t>(&b[66], h.version);
  st<uint32_t>(&b[68], h.log_length);
  st<uint64_t>(&b[72], h.log_offset);
  st<uint32_t>(&b[4], crc32c(b));
  return b;
}

bool decode_header(const std::array<uint8_t, kSector>& raw, Header* h) {
  if (std::memcmp(raw.data(), "head", 4) != 0) return false;
  auto copy = raw;
  st<uint32_t>(&copy[4], 0);
  if (crc32c(copy) != ld<uint32_t>(&raw[4])) return false;
  h->seq = ld<uint64_t>(&raw[8]);
  h->file_write = ld_guid(&raw[16]);
  h->data_write = ld_guid(&raw[32]);
  h->log_guid = ld_guid(&raw[48]);
  h->log_version = ld<uint16_t>(&raw[64]);
  h->version = ld<uint16_t>(&raw[66]);
  h->log_length = ld<uint32_t>(&raw[68]);
  h->log_offset = ld<uint64_t>(&raw[72]);
  return h->version == 1;
}

// One metadata item, as kept for rewriting the metadata region.
struct MetaItem {
  Guid id;
  uint32_t flags = 0;  // bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired
  std::vector<uint8_t> data;
};

// Lays out a metadata region (table at 0, items from 64 KiB); false if it does not fit.
bool build_metadata_region(const std::vector<MetaItem>& items, uint64_t region_length, std::vector<uint8_t>* out) {
  out->assign(region_length, 0);
  if (items.size() > 2047) return false;
  std::memcpy(out->data(), "metadata", 8);
  st<uint16_t>(out->data() + 10, static_cast<uint16_t>(items.size()));
  uint64_t pos = 64 * KiB;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    if (pos + it.data.size() > region_length) return false;
    uint8_t* e = out->data() + 32 + i * 32;
    st_guid(e, it.id);
    st<uint32_t>(e + 16, it.data.empty() ? 0 : static_cast<uint32_t>(pos));
    st<uint32_t>(e + 20, static_cast<uint32_t>(it.data.size()));
    st<uint32_t>(e + 24, it.flags);
    if (!it.data.empty()) std::memcpy(out->data() + pos, it.data.data(), it.data.size());
    pos = align_up(pos + it.data.size(), 8);
  }
  return true;
}

std::vector<uint8_t> encode_parent_locator(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::vector<uint8_t> out(20 + 12 * kv.size(), 0);
  st_guid(out.data(), kVhdxParentType);
  st<uint16_t>(out.data() + 18, static_cast<uint16_t>(kv.size()));
  for (size_t i = 0; i < kv.size(); ++i) {
    auto k = utf8_to_utf16(kv[i].first), v = utf8_to_utf16(kv[i].second);
    uint8_t* e = out.data() + 20 + 12 * i;
    st<uint32_t>(e, static_cast<uint32_t>(out.size()));
    st<uint16_t>(e + 8, static_cast<uint16_t>(k.size()));
    out.insert(out.end(), k.begin(), k.end());
    e = out.data() + 20 + 12 * i;
    st<uint32_t>(e + 4, static_cast<uint32_t>(out.size()));
    st<uint16_t>(e + 10, static_cast<uint16_t>(v.size()));
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

std::vector<uint8_t> u32_bytes(uint32_t v) {
  std::vector<uint8_t> b(4);
  st<uint32_t>(b.data(), v);
  return b;
}
std::vector<uint8_t> u64_bytes(uint64_t v) {
  std::vector<uint8_t> b(8);
  st<uint64_t>(b.data(), v);
  return b;
}

// A write the log asks for: data (one 4 KiB sector) or zeroes over a range.
struct LogOp {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool zero = false;
  std::vector<uint8_t> data;  // kSector bytes unless zero
};

class VhdxDevice final : public BlockDevice, public MappedAsyncHost {
 public:
  VhdxDevice(File file, const OpenOptions& options) : file_(std::move(file)), read_only_(options.read_only) {}
  ~VhdxDevice() override {
    try {
      close();
    } catch (...) {
    }
  }

  void open(const BackingOpener& opener);

  uint64_t capacity() const override { return size_; }
  bool read_only() const override { return read_only_; }
  uint32_t logical_block_size() const override { return logical_sector_; }
  void read(uint64_t offset, std::span<uint8_t> buf) override;
  void write(uint64_t offset, std::span<const uint8_t> buf) override;
  void flush() override;
  void discard(uint64_t offset, uint64_t length) override { write_zeroes(offset, length, true); }
  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  Extent block_status(uint64_t offset, uint64_t length) override;
  ImageInfo info() const override;
  BlockDevice* backing() const override { return backing_.get(); }
  void resize(uint64_t new_capacity) override;
  void shrink(uint64_t new_capacity);
  void set_backing(const std::string& recorded_path, std::unique_ptr<BlockDevice> backing) override;
  CheckReport check(bool repair) override;

  // The asynchronous path (disk/mapped_async_disk.h): FULLY_PRESENT payload blocks are
  // file I/O in parallel; everything that allocates a block or reads a parent or a sector
  // bitmap goes through this driver. The AsyncDisk must not outlive this device.
  std::unique_ptr<AsyncDisk> open_async(unsigned depth, AsyncBackend backend) override;
  MappedRun read_run(uint64_t offset, uint64_t max) override;
  MappedRun write_run(uint64_t offset, uint64_t max) override;
  void before_data_write(uint64_t, uint64_t) override { unsynced_data_ = true; }
  void flush_all() override { flush(); }
  BlockDevice& device() override { return *this; }

  const Guid& data_write_guid() const { return header_.data_write; }

 private:
  const std::string& path() const { return file_.path(); }
  void close();
  void check_range(uint64_t offset, uint64_t length) const;
  void check_writable() const;

  // Opening.
  void read_headers();
  void read_log();
  void read_regions();
  void read_metadata();
  void read_bat();
  void open_parent(const BackingOpener& opener);

  // File access through the replayed-log view.
  void view_read(uint64_t offset, std::span<uint8_t> buf) const;
  uint64_t view_size() const { return std::max(file_size_at_open_, log_last_offset_); }

  // Geometry.
  uint64_t payload_index(uint64_t block) const { return block + block / chunk_ratio_; }
  uint64_t bitmap_index(uint64_t chunk) const { return chunk * (chunk_ratio_ + 1) + chunk_ratio_; }
  uint64_t block_count() const { return (size_ + block_size_ - 1) / block_size_; }
  uint64_t entry_count_for(uint64_t size) const;
  static uint64_t state(uint64_t e) { return e & 7; }
  static uint64_t offset_of(uint64_t e) { return (e >> 20) << 20; }
  bool offset_ok(uint64_t offset, uint64_t length) const;

  // Reads and writes inside one block.
  void read_parent(uint64_t offset, std::span<uint8_t> buf);
  void read_in_block(uint64_t block, uint64_t in_off, std::span<uint8_t> out);
  void write_in_block(uint64_t block, uint64_t in_off, std::span<const uint8_t> data);
  bool block_reads_zero(uint64_t block) const;
  MappedRun run(uint64_t offset, uint64_t max, bool write);
  bool in_overlay(uint64_t offset, uint64_t length) const;
  bool bitmap_bit(uint64_t block, uint64_t sector_in_block, std::vector<uint8_t>* cache, uint64_t* cache_first);

  // Metadata updates.
  void begin_modification(bool user_data);
  void write_header(Header h);
  void commit_bat(const std::set<uint64_t>& indices);
  void commit_sectors(std::vector<std::pair<uint64_t, std::vector<uint8_t>>> sectors);
  void log_and_apply(const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& sectors);
  void write_log_entry(const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& sectors);
  void rewrite_metadata(const std::vector<MetaItem>& items);

  File file_;
  bool read_only_;
  bool broken_ = false;  // a fault-injection stop: write nothing more
  uint64_t file_size_at_open_ = 0;

  Header header_;
  int current_header_ = 0;  // 0: header 1 at 64 KiB, 1: header 2
  std::vector<LogOp> overlay_;
  uint64_t log_last_offset_ = 0;
  bool needed_replay_ = false;

  struct Region {
    Guid id;
    uint64_t offset, length;
  };
  std::vector<Region> regions_;
  uint64_t bat_offset_ = 0, bat_length_ = 0, meta_offset_ = 0, meta_length_ = 0;

  std::vector<MetaItem> meta_items_;
  uint32_t block_size_ = 0;
  bool leave_allocated_ = false, has_parent_ = false;
  uint64_t size_ = 0;
  uint32_t logical_sector_ = 512, physical_sector_ = 4096;
  uint64_t chunk_ratio_ = 1;
  std::map<std::string, std::string> locator_;
  std::string backing_recorded_, backing_resolved_;

  std::vector<uint64_t> bat_;  // rounded up to whole 4 KiB sectors of entries
  uint64_t alloc_end_ = 0;

  std::unique_ptr<BlockDevice> backing_;

  bool modified_ = false;
  bool data_guid_changed_ = false;
  bool log_active_ = false;
  uint64_t log_seq_ = 0, log_head_ = 0;
  bool unsynced_data_ = false;
};

void VhdxDevice::check_range(uint64_t offset, uint64_t length) const {
  if (offset > size_ || length > size_ - offset) {
    throw Error("DISK_RANGE", "access at offset " + std::to_string(offset) + " length " + std::to_string(length) +
                                  " is outside " + path() + " (" + std::to_string(size_) + " bytes)");
  }
}

void VhdxDevice::check_writable() const {
  if (read_only_) throw Error("DISK_READ_ONLY", path() + " is open read-only");
  if (broken_) throw Error("DISK_IO", path() + " stopped writing after an injected fault; reopen it");
}

// ---------------------------------------------------------------------------------------
// Opening

void VhdxDevice::open(const BackingOpener& opener) {
  file_size_at_open_ = file_.size();
  if (file_size_at_open_ < MiB) {
    throw Error("DISK_TRUNCATED", path() + " is truncated: a VHDX file is at least 1 MiB (headers and region "
                                           "tables), this one has " + std::to_string(file_size_at_open_) + " bytes");
  }
  read_headers();
  read_log();
  read_regions();
  read_metadata();
  read_bat();
  open_parent(opener);
  // Everything validated: only now may the file change.
  if (!overlay_.empty() && !read_only_) {
    for (const auto& op : overlay_) {
      if (op.zero) {
        // Past the end of the file it reads as zeroes already; inside, release or overwrite.
        uint64_t fsize = file_.size();
        uint64_t len = op.offset < fsize ? std::min(op.length, fsize - op.offset) : 0;
        if (len == 0 || file_.punch_hole(op.offset, len)) continue;
        std::vector<uint8_t> z(std::min<uint64_t>(len, MiB), 0);
        for (uint64_t done = 0; done < len;) {
          uint64_t n = std::min<uint64_t>(z.size(), len - done);
          file_.write_all(op.offset + done, std::span<const uint8_t>(z.data(), n));
          done += n;
        }
      } else {
        file_.write_all(op.offset, op.data);
      }
    }
    if (file_.size() < log_last_offset_) file_.truncate(log_last_offset_);
    file_.sync();
    overlay_.clear();
  }
  if (!header_.log_guid.zero() && !read_only_) {
    Header h = header_;
    h.log_guid = Guid{};
    write_header(h);
    needed_replay_ = false;
  }
}

void VhdxDevice::read_headers() {
  Header h[2];
  bool ok[2];
  for (int i = 0; i < 2; ++i) {
    std::array<uint8_t, kSector> raw{};
    file_.read_exact(i == 0 ? kHeader1 : kHeader2, raw);
    ok[i] = decode_header(raw, &h[i]);
  }
  if (!ok[0] && !ok[1]) {
    throw Error("DISK_BAD_HEADER", path() + " has no valid VHDX header (both copies fail their checksum or "
                                            "signature); the image is damaged");
  }
  current_header_ = (ok[0] && (!ok[1] || h[0].seq >= h[1].seq)) ? 0 : 1;
  header_ = h[current_header_];
  if (header_.log_version != 0) {
    throw Error("DISK_UNSUPPORTED", path() + " uses VHDX log version " + std::to_string(header_.log_version) +
                                        ", which Berth does not know");
  }
  const uint64_t lo = header_.log_offset, ll = header_.log_length;
  if (lo % MiB || ll % MiB || lo < MiB || ll > kMaxLogLength || (ll && lo + ll > file_size_at_open_)) {
    throw Error("DISK_CORRUPT", path() + " has an impossible log location (offset " + std::to_string(lo) +
                                    ", length " + std::to_string(ll) + ", file size " +
                                    std::to_string(file_size_at_open_) + "); the image is damaged");
  }
}

void VhdxDevice::read_log() {
  if (header_.log_guid.zero()) return;
  needed_replay_ = true;
  auto fail = [&](const std::string& why) {
    return Error("DISK_LOG_REPLAY", path() + " has a metadata log that cannot be replayed (" + why +
                                        "); the image was not closed cleanly and its log is damaged");
  };
  const uint64_t ll = header_.log_length;
  if (ll == 0) throw fail("the log is empty");
  std::vector<uint8_t> log(ll);
  file_.read_exact(header_.log_offset, log);
  auto at = [&](uint64_t off) { return log.data() + (off % ll); };
  // An entry may wrap around the end of the log: copy it out.
  auto entry_bytes = [&](uint64_t off, uint64_t len) {
    std::vector<uint8_t> out(len);
    for (uint64_t i = 0; i < len; i += kSector) std::memcpy(out.data() + i, at(off + i), kSector);
    return out;
  };
  struct Entry {
    uint64_t off, len, seq, tail;
  };
  std::map<uint64_t, Entry> valid;  // by log offset
  for (uint64_t off = 0; off < ll; off += kSector) {
    const uint8_t* h = at(off);
    if (std::memcmp(h, "loge", 4) != 0) continue;
    uint32_t len = ld<uint32_t>(h + 8), tail = ld<uint32_t>(h + 12), count = ld<uint32_t>(h + 24);
    uint64_t seq = ld<uint64_t>(h + 16);
    if (len < kSector || len % kSector || len > ll || tail % kSector || tail >= ll) continue;
    if (ld_guid(h + 32) != header_.log_guid) continue;
    uint64_t desc_sectors = (64 + 32ull * count + kSector - 1) / kSector;
    if (desc_sectors > len / kSector) continue;
    auto e = entry_bytes(off, len);
    uint32_t sum = ld<uint32_t>(&e[4]);
    st<uint32_t>(&e[4], 0);
    if (crc32c(e) != sum) continue;
    // Descriptors and their data sectors must belong to this entry.
    bool good = true;
    uint64_t data_sector = desc_sectors;
    for (uint32_t i = 0; i < count && good; ++i) {
      const uint8_t* d = e.data() + 64 + 32ull * i;
      if (ld<uint64_t>(d + 24) != seq) good = false;
      if (std::memcmp(d, "desc", 4) == 0) {
        if (data_sector >= len / kSector) { good = false; break; }
        const uint8_t* s = e.data() + data_sector * kSector;
        if (std::memcmp(s, "data", 4) != 0 || ld<uint32_t>(s + 4) != (seq >> 32) ||
            ld<uint32_t>(s + 4092) != static_cast<uint32_t>(seq)) {
          good = false;
        }
        ++data_sector;
      } else if (std::memcmp(d, "zero", 4) != 0) {
        good = false;
      }
    }
    if (good) valid[off] = Entry{off, len, seq, tail};
  }
  if (valid.empty()) throw fail("no log entry with a valid checksum");
  const Entry* head = nullptr;
  for (const auto& [off, e] : valid) {
    if (!head || e.seq > head->seq) head = &e;
  }
  // Walk from the head's tail to the head: consecutive entries, consecutive sequence numbers.
  std::vector<const Entry*> seqv;
  uint64_t pos = head->tail;
  for (uint64_t guard = 0;; ++guard) {
    auto it = valid.find(pos);
    if (it == valid.end() || guard > ll / kSector) throw fail("the active sequence of entries is broken");
    if (!seqv.empty() && it->second.seq != seqv.back()->seq + 1) throw fail("sequence numbers are not consecutive");
    seqv.push_back(&it->second);
    if (&it->second == head) break;
    pos = (pos + it->second.len) % ll;
  }
  uint64_t h_flushed = ld<uint64_t>(at(head->off) + 48), h_last = ld<uint64_t>(at(head->off) + 56);
  if (h_flushed > file_size_at_open_) throw fail("the file is shorter than the log says it was flushed to");
  if (h_last > file_size_at_open_ + 64 * GiB) throw fail("impossible last file offset");
  log_last_offset_ = h_last;
  const uint64_t limit = std::max(file_size_at_open_, h_last);
  for (const Entry* en : seqv) {
    auto e = entry_bytes(en->off, en->len);
    uint32_t count = ld<uint32_t>(&e[24]);
    uint64_t data_sector = (64 + 32ull * count + kSector - 1) / kSector;
    for (uint32_t i = 0; i < count; ++i) {
      const uint8_t* d = e.data() + 64 + 32ull * i;
      LogOp op;
      if (std::memcmp(d, "zero", 4) == 0) {
        op.zero = true;
        op.length = ld<uint64_t>(d + 8);
        op.offset = ld<uint64_t>(d + 16);
      } else {
        op.length = kSector;
        op.offset = ld<uint64_t>(d + 16);
        const uint8_t* s = e.data() + data_sector++ * kSector;
        op.data.resize(kSector);
        std::memcpy(op.data.data(), d + 8, 8);             // leading bytes
        std::memcpy(op.data.data() + 8, s + 8, 4084);      // data
        std::memcpy(op.data.data() + 4092, d + 4, 4);      // trailing bytes
      }
      if (op.offset % kSector || op.length % kSector || op.offset > limit || op.length > limit - op.offset ||
          op.offset < MiB) {
        throw fail("a descriptor writes outside the file");
      }
      overlay_.push_back(std::move(op));
    }
  }
}

void VhdxDevice::view_read(uint64_t offset, std::span<uint8_t> buf) const {
  file_.read_or_zero(offset, buf);
  for (const auto& op : overlay_) {
    uint64_t a = std::max(offset, op.offset), b = std::min(offset + buf.size(), op.offset + op.length);
    if (a >= b) continue;
    if (op.zero) std::memset(buf.data() + (a - offset), 0, b - a);
    else std::memcpy(buf.data() + (a - offset), op.data.data() + (a - op.offset), b - a);
  }
}

void VhdxDevice::read_regions() {
  std::vector<uint8_t> raw(64 * KiB);
  bool found = false;
  for (uint64_t where : {kRegion1, kRegion2}) {
    view_read(where, raw);
    if (std::memcmp(raw.data(), "regi", 4) != 0) continue;
    uint32_t sum = ld<uint32_t>(&raw[4]);
    st<uint32_t>(&raw[4], 0);
    if (crc32c(raw) != sum || ld<uint32_t>(&raw[8]) > 2047) continue;
    found = true;
    break;
  }
  if (!found) {
    throw Error("DISK_CORRUPT", path() + " has no valid VHDX region table (both copies fail their checksum); "
                                         "the image is damaged");
  }
  uint32_t count = ld<uint32_t>(&raw[8]);
  const uint64_t fsize = view_size();
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* e = raw.data() + 16 + 32ull * i;
    Region r{ld_guid(e), ld<uint64_t>(e + 16), ld<uint32_t>(e + 24)};
    bool required = ld<uint32_t>(e + 28) & 1;
    bool known = r.id == kBatRegion || r.id == kMetadataRegion;
    if (!known && required) {
      throw Error("DISK_UNSUPPORTED", path() + " has a required region " + guid_string(r.id) +
                                          " that Berth does not know; it cannot be opened safely");
    }
    if (r.offset % MiB || r.offset < MiB || r.length % MiB || r.length == 0 || r.offset > fsize ||
        r.length > fsize - r.offset) {
      throw Error("DISK_CORRUPT", path() + " has a region (" + guid_string(r.id) + ") at offset " +
                                      std::to_string(r.offset) + " length " + std::to_string(r.length) +
                                      " that lies outside the file (size " + std::to_string(fsize) +
                                      "); the image is damaged or truncated");
    }
    for (const auto& o : regions_) {
      if (o.id == r.id) throw Error("DISK_CORRUPT", path() + " lists region " + guid_string(r.id) + " twice");
      if (r.offset < o.offset + o.length && o.offset < r.offset + r.length) {
        throw Error("DISK_CORRUPT", path() + " has overlapping regions; the image is damaged");
      }
    }
    if (header_.log_length && r.offset < header_.log_offset + header_.log_length &&
        header_.log_offset < r.offset + r.length) {
      throw Error("DISK_CORRUPT", path() + " has a region overlapping its log; the image is damaged");
    }
    regions_.push_back(r);
    if (r.id == kBatRegion) bat_offset_ = r.offset, bat_length_ = r.length;
    if (r.id == kMetadataRegion) meta_offset_ = r.offset, meta_length_ = r.length;
  }
  if (!bat_length_ || !meta_length_) {
    throw Error("DISK_CORRUPT", path() + " lacks its BAT or metadata region; the image is damaged");
  }
}

void VhdxDevice::read_metadata() {
  auto corrupt = [&](const std::string& why) {
    return Error("DISK_CORRUPT", path() + " has invalid VHDX metadata: " + why + "; the image is damaged");
  };
  std::vector<uint8_t> table(64 * KiB);
  view_read(meta_offset_, table);
  if (std::memcmp(table.data(), "metadata", 8) != 0) throw corrupt("the metadata table signature is missing");
  uint16_t count = ld<uint16_t>(&table[10]);
  if (count > 2047) throw corrupt("too many metadata entries");
  std::set<Guid> seen;
  for (uint16_t i = 0; i < count; ++i) {
    const uint8_t* e = table.data() + 32 + 32 * i;
    MetaItem it;
    it.id = ld_guid(e);
    uint32_t off = ld<uint32_t>(e + 16), len = ld<uint32_t>(e + 20);
    it.flags = ld<uint32_t>(e + 24);
    if (!seen.insert(it.id).second) throw corrupt("item " + guid_string(it.id) + " appears twice");
    if (len && (off < 64 * KiB || off > meta_length_ || len > meta_length_ - off)) {
      throw corrupt("item " + guid_string(it.id) + " lies outside the metadata region");
    }
    bool known = it.id == kFileParameters || it.id == kVirtualDiskSize || it.id == kPage83 ||
                 it.id == kLogicalSector || it.id == kPhysicalSector || it.id == kParentLocator;
    if (!known && (it.flags & 4)) {
      throw Error("DISK_UNSUPPORTED", path() + " has a required metadata item " + guid_string(it.id) +
                                          " that Berth does not know; it cannot be opened safely");
    }
    it.data.resize(len);
    view_read(meta_offset_ + off, it.data);
    meta_items_.push_back(std::move(it));
  }
  auto item = [&](const Guid& id, size_t min_len, const char* name) -> const std::vector<uint8_t>* {
    for (const auto& it : meta_items_) {
      if (it.id == id) {
        if (it.data.size() < min_len) throw corrupt(std::string("the ") + name + " item is too short");
        return &it.data;
      }
    }
    return nullptr;
  };
  const auto* fp = item(kFileParameters, 8, "file parameters");
  const auto* vs = item(kVirtualDiskSize, 8, "virtual disk size");
  const auto* ls = item(kLogicalSector, 4, "logical sector size");
  const auto* ps = item(kPhysicalSector, 4, "physical sector size");
  item(kPage83, 16, "virtual disk id");
  if (!fp || !vs || !ls || !ps) throw corrupt("a required item (file parameters, sizes) is missing");
  block_size_ = ld<uint32_t>(fp->data());
  uint32_t flags = ld<uint32_t>(fp->data() + 4);
  leave_allocated_ = flags & 1;
  has_parent_ = flags & 2;
  size_ = ld<uint64_t>(vs->data());
  logical_sector_ = ld<uint32_t>(ls->data());
  physical_sector_ = ld<uint32_t>(ps->data());
  if (!is_pow2(block_size_) || block_size_ < MiB || block_size_ > 256 * MiB) {
    throw corrupt("impossible block size " + std::to_string(block_size_) +
                  " (must be a power of two from 1 MiB to 256 MiB)");
  }
  if (logical_sector_ != 512 && logical_sector_ != 4096) throw corrupt("impossible logical sector size");
  if (physical_sector_ != 512 && physical_sector_ != 4096) throw corrupt("impossible physical sector size");
  if (size_ > kMaxVirtualSize || size_ % logical_sector_) {
    throw corrupt("impossible virtual disk size " + std::to_string(size_));
  }
  chunk_ratio_ = ((uint64_t{1} << 23) * logical_sector_) / block_size_;
  if (has_parent_) {
    const auto* pl = item(kParentLocator, 20, "parent locator");
    if (!pl) throw corrupt("a differencing disk without a parent locator");
    if (ld_guid(pl->data()) != kVhdxParentType) {
      throw Error("DISK_UNSUPPORTED", path() + " has a parent locator of an unknown type");
    }
    uint16_t kvs = ld<uint16_t>(pl->data() + 18);
    if (20 + 12ull * kvs > pl->size()) throw corrupt("the parent locator entries do not fit");
    for (uint16_t i = 0; i < kvs; ++i) {
      const uint8_t* e = pl->data() + 20 + 12 * i;
      uint64_t ko = ld<uint32_t>(e), vo = ld<uint32_t>(e + 4), kl = ld<uint16_t>(e + 8), vl = ld<uint16_t>(e + 10);
      if (ko + kl > pl->size() || vo + vl > pl->size()) throw corrupt("a parent locator entry lies outside it");
      locator_[utf16_to_utf8(pl->data() + ko, kl)] = utf16_to_utf8(pl->data() + vo, vl);
    }
    if (locator_.count("relative_path")) backing_recorded_ = from_windows(locator_["relative_path"]);
    else if (locator_.count("absolute_win32_path")) backing_recorded_ = from_windows(locator_["absolute_win32_path"]);
    else throw corrupt("the parent locator names no parent path");
    backing_resolved_ = resolve_backing_path(path(), backing_recorded_);
  }
}

uint64_t VhdxDevice::entry_count_for(uint64_t size) const {
  uint64_t p = (size + block_size_ - 1) / block_size_;
  if (has_parent_) return (p + chunk_ratio_ - 1) / chunk_ratio_ * (chunk_ratio_ + 1);
  return p ? p + (p - 1) / chunk_ratio_ : 0;
}

bool VhdxDevice::offset_ok(uint64_t offset, uint64_t length) const {
  if (offset < MiB || offset > alloc_end_ || length > alloc_end_ - offset) return false;
  auto overlaps = [&](uint64_t o, uint64_t l) { return offset < o + l && o < offset + length; };
  if (overlaps(header_.log_offset, header_.log_length)) return false;
  for (const auto& r : regions_) {
    if (overlaps(r.offset, r.length)) return false;
  }
  return true;
}

void VhdxDevice::read_bat() {
  uint64_t entries = entry_count_for(size_);
  if (entries * 8 > bat_length_) {
    throw Error("DISK_CORRUPT", path() + " has a BAT region too small for its virtual size; the image is damaged");
  }
  bat_.resize(align_up(entries, kSector / 8));
  std::vector<uint8_t> raw(bat_.size() * 8);
  view_read(bat_offset_, raw);
  if (!raw.empty()) std::memcpy(bat_.data(), raw.data(), raw.size());
  // Blocks must lie inside the file, clear of the headers, the log and the regions.
  alloc_end_ = align_up(view_size(), MiB);
  const uint64_t n = block_count();
  for (uint64_t b = 0; b < n; ++b) {
    uint64_t e = bat_[payload_index(b)], s = state(e);
    bool ok = s == kNotPresent || s == kUndefined || s == kZero || s == kUnmapped || s == kFully ||
              (s == kPartially && has_parent_);
    if (ok && (s == kFully || s == kPartially)) ok = offset_ok(offset_of(e), block_size_);
    if (!ok) {
      throw Error("DISK_CORRUPT", path() + " has a bad BAT entry for block " + std::to_string(b) + " (state " +
                                      std::to_string(s) + ", file offset " + std::to_string(offset_of(e)) +
                                      ", file size " + std::to_string(view_size()) +
                                      "): it points outside the file or into metadata; the image is damaged");
    }
  }
  if (has_parent_) {
    for (uint64_t c = 0; c * chunk_ratio_ < n; ++c) {
      uint64_t e = bat_[bitmap_index(c)];
      if (state(e) == kBitmapPresent && !offset_ok(offset_of(e), MiB)) {
        throw Error("DISK_CORRUPT", path() + " has a sector bitmap entry pointing outside the file or into "
                                             "metadata; the image is damaged");
      }
    }
  }
}

void VhdxDevice::open_parent(const BackingOpener& opener) {
  if (!has_parent_ || !opener) return;
  std::vector<std::string> candidates;
  if (locator_.count("relative_path")) candidates.push_back(from_windows(locator_["relative_path"]));
  if (locator_.count("absolute_win32_path")) candidates.push_back(from_windows(locator_["absolute_win32_path"]));
  std::unique_ptr<Error> first;
  for (const auto& c : candidates) {
    try {
      backing_ = opener(c, "vhdx");
      backing_recorded_ = c;
      backing_resolved_ = resolve_backing_path(path(), c);
      break;
    } catch (const Error& e) {
      if (e.code() != "DISK_NOT_FOUND") throw;
      if (!first) first = std::make_unique<Error>(e);
    }
  }
  if (!backing_) {
    throw Error("DISK_NOT_FOUND", path() + " is a differencing disk whose parent cannot be found (" +
                                      (first ? first->what() : std::string("no path")) +
                                      "); move the parent back or reconnect the disk to it");
  }
  Guid linkage;
  auto it = locator_.find("parent_linkage");
  auto* parent = dynamic_cast<VhdxDevice*>(backing_.get());
  if (parent && it != locator_.end() && parse_guid(it->second, &linkage) && linkage != parent->data_write_guid()) {
    Guid linkage2;
    auto it2 = locator_.find("parent_linkage2");
    if (it2 == locator_.end() || !parse_guid(it2->second, &linkage2) || linkage2 != parent->data_write_guid()) {
      throw Error("DISK_BACKING_MISMATCH",
                  path() + " no longer matches its parent " + backing_resolved_ +
                      ": the parent was modified after the differencing disk was made (its data write GUID " +
                      guid_string(parent->data_write_guid()) + " is not the recorded " + it->second +
                      "); restore the original parent");
    }
  }
}

// ---------------------------------------------------------------------------------------
// Reading

void VhdxDevice::read_parent(uint64_t offset, std::span<uint8_t> buf) {
  uint64_t cap = backing_ ? backing_->capacity() : 0;
  uint64_t n = offset < cap ? std::min<uint64_t>(buf.size(), cap - offset) : 0;
  if (n) backing_->read(offset, buf.first(n));
  std::memset(buf.data() + n, 0, buf.size() - n);
}

bool VhdxDevice::bitmap_bit(uint64_t block, uint64_t sector_in_block, std::vector<uint8_t>* cache,
                            uint64_t* cache_first) {
  uint64_t e = bat_[bitmap_index(block / chunk_ratio_)];
  if (state(e) != kBitmapPresent) return false;
  uint64_t bit = (block % chunk_ratio_) * (block_size_ / logical_sector_) + sector_in_block;
  uint64_t byte = bit / 8;
  if (cache->empty() || byte < *cache_first || byte >= *cache_first + cache->size()) {
    cache->assign(4096, 0);
    *cache_first = byte / 4096 * 4096;
    view_read(offset_of(e) + *cache_first, *cache);
  }
  return ((*cache)[byte - *cache_first] >> (bit % 8)) & 1;
}

void VhdxDevice::read_in_block(uint64_t block, uint64_t in_off, std::span<uint8_t> out) {
  uint64_t e = bat_[payload_index(block)];
  switch (state(e)) {
    case kFully:
      view_read(offset_of(e) + in_off, out);
      return;
    case kZero:
      std::memset(out.data(), 0, out.size());
      return;
    case kPartially: {
      std::vector<uint8_t> cache;
      uint64_t first = 0;
      uint64_t pos = in_off, end = in_off + out.size();
      while (pos < end) {
        bool present = bitmap_bit(block, pos / logical_sector_, &cache, &first);
        uint64_t run_end = std::min(end, (pos / logical_sector_ + 1) * logical_sector_);
        while (run_end < end && bitmap_bit(block, run_end / logical_sector_, &cache, &first) == present) {
          run_end = std::min(end, run_end + logical_sector_);
        }
        auto piece = out.subspan(pos - in_off, run_end - pos);
        if (present) view_read(offset_of(e) + pos, piece);
        else read_parent(block * block_size_ + pos, piece);
        pos = run_end;
      }
      return;
    }
    default:
      if (has_parent_) read_parent(block * block_size_ + in_off, out);
      else std::memset(out.data(), 0, out.size());
  }
}

void VhdxDevice::read(uint64_t offset, std::span<uint8_t> buf) {
  check_range(offset, buf.size());
  uint64_t done = 0;
  while (done < buf.size()) {
    uint64_t pos = offset + done, block = pos / block_size_, in_off = pos % block_size_;
    uint64_t n = std::min<uint64_t>(buf.size() - done, block_size_ - in_off);
    read_in_block(block, in_off, buf.subspan(done, n));
    done += n;
  }
}

Extent VhdxDevice::block_status(uint64_t offset, uint64_t length) {
  if (offset >= size_) return Extent{offset, 0, ExtentKind::kZero};
  length = std::min(length, size_ - offset);
  auto kind_of_block = [&](uint64_t block) -> int {  // -1: partially present
    uint64_t s = state(bat_[payload_index(block)]);
    if (s == kFully) return static_cast<int>(ExtentKind::kData);
    if (s == kZero) return static_cast<int>(ExtentKind::kZero);
    if (s == kPartially) return -1;
    return static_cast<int>(has_parent_ ? ExtentKind::kBacking : ExtentKind::kZero);
  };
  std::vector<uint8_t> cache;
  uint64_t first = 0;
  auto kind_at = [&](uint64_t pos) {
    uint64_t block = pos / block_size_;
    int k = kind_of_block(block);
    if (k >= 0) return static_cast<ExtentKind>(k);
    return bitmap_bit(block, (pos % block_size_) / logical_sector_, &cache, &first) ? ExtentKind::kData
                                                                                   : ExtentKind::kBacking;
  };
  ExtentKind kind = kind_at(offset);
  uint64_t pos = offset, end = offset + length;
  while (pos < end) {
    uint64_t block = pos / block_size_;
    int k = kind_of_block(block);
    uint64_t next;
    if (k >= 0) {
      if (static_cast<ExtentKind>(k) != kind) break;
      next = (block + 1) * block_size_;
    } else {
      if (kind_at(pos) != kind) break;
      next = (pos / logical_sector_ + 1) * logical_sector_;
    }
    pos = std::min(next, end);
  }
  return Extent{offset, pos - offset, kind};
}

// ---------------------------------------------------------------------------------------
// Writing

void VhdxDevice::write_header(Header h) {
  h.seq = header_.seq + 1;
  int slot = 1 - current_header_;
  auto raw = encode_header(h);
  file_.write_all(slot == 0 ? kHeader1 : kHeader2, raw);
  file_.sync();
  header_ = h;
  current_header_ = slot;
}

void VhdxDevice::begin_modification(bool user_data) {
  check_writable();
  if (modified_ && (!user_data || data_guid_changed_)) return;
  Header h = header_;
  h.file_write = random_guid();
  if (user_data) h.data_write = random_guid();
  if (!log_active_ && header_.log_length >= MiB) {
    // Start a log for this session: an empty entry first, so the log always holds a valid
    // entry once the header names it.
    h.log_guid = random_guid();
    header_.log_guid = h.log_guid;  // write_log_entry stamps entries with this
    log_seq_ = 1;
    log_head_ = 0;
    write_log_entry({});
    log_active_ = true;
  }
  write_header(h);
  modified_ = true;
  if (user_data) data_guid_changed_ = true;
}

void VhdxDevice::write_log_entry(const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& sectors) {
  const uint64_t n = sectors.size();
  const uint64_t desc_sectors = (64 + 32 * n + kSector - 1) / kSector;
  const uint64_t len = (desc_sectors + n) * kSector;
  const uint64_t ll = header_.log_length;
  if (log_head_ + len > ll) log_head_ = 0;
  std::vector<uint8_t> e(len, 0);
  std::memcpy(e.data(), "loge", 4);
  st<uint32_t>(&e[8], static_cast<uint32_t>(len));
  st<uint32_t>(&e[12], static_cast<uint32_t>(log_head_));
  st<uint64_t>(&e[16], log_seq_);
  st<uint32_t>(&e[24], static_cast<uint32_t>(n));
  st_guid(&e[32], header_.log_guid);
  uint64_t fsize = file_.size();
  st<uint64_t>(&e[48], fsize);  // FlushedFileOffset
  st<uint64_t>(&e[56], fsize);  // LastFileOffset
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t* d = e.data() + 64 + 32 * i;
    const auto& data = sectors[i].second;
    std::memcpy(d, "desc", 4);
    std::memcpy(d + 4, data.data() + 4092, 4);
    std::memcpy(d + 8, data.data(), 8);
    st<uint64_t>(d + 16, sectors[i].first);
    st<uint64_t>(d + 24, log_seq_);
    uint8_t* s = e.data() + (desc_sectors + i) * kSector;
    std::memcpy(s, "data", 4);
    st<uint32_t>(s + 4, static_cast<uint32_t>(log_seq_ >> 32));
    std::memcpy(s + 8, data.data() + 8, 4084);
    st<uint32_t>(s + 4092, static_cast<uint32_t>(log_seq_));
  }
  st<uint32_t>(&e[4], crc32c(e));
  file_.write_all(header_.log_offset + log_head_, e);
  file_.sync();
  unsynced_data_ = false;
  log_head_ += len;
  ++log_seq_;
}

void VhdxDevice::log_and_apply(const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& sectors) {
  if (!log_active_) {
    // A foreign image without a log region: write in place.
    for (const auto& [off, data] : sectors) file_.write_all(off, data);
    file_.sync();
    return;
  }
  // Entries are at most a quarter of the log, so a new entry never overwrites the last one.
  const uint64_t max_sectors = header_.log_length / 4 / kSector - 1;
  for (size_t i = 0; i < sectors.size(); i += max_sectors) {
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> part(
        sectors.begin() + i, sectors.begin() + std::min<size_t>(sectors.size(), i + max_sectors));
    write_log_entry(part);
#ifdef BERTH_TEST_HOOKS
    if (testing::fault_stop_after_log_write) {
      testing::fault_stop_after_log_write = false;
      broken_ = true;
      throw Error("DISK_IO", "test fault injection: stopped " + path() + " after writing a log entry");
    }
#endif
    for (const auto& [off, data] : part) file_.write_all(off, data);
    file_.sync();
  }
}

void VhdxDevice::commit_sectors(std::vector<std::pair<uint64_t, std::vector<uint8_t>>> sectors) {
  if (unsynced_data_) {
    file_.sync();  // data before the metadata that points to it
    unsynced_data_ = false;
  }
  log_and_apply(sectors);
}

void VhdxDevice::commit_bat(const std::set<uint64_t>& indices) {
  std::set<uint64_t> sectors;
  for (uint64_t i : indices) sectors.insert(i / (kSector / 8));
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> out;
  for (uint64_t s : sectors) {
    std::vector<uint8_t> data(kSector);
    std::memcpy(data.data(), bat_.data() + s * (kSector / 8), kSector);
    out.emplace_back(bat_offset_ + s * kSector, std::move(data));
  }
  commit_sectors(std::move(out));
}

bool VhdxDevice::block_reads_zero(uint64_t block) const {
  uint64_t s = state(bat_[payload_index(block)]);
  if (s == kZero) return true;
  if (s == kFully || s == kPartially) return false;
  return !has_parent_;
}

void VhdxDevice::write_in_block(uint64_t block, uint64_t in_off, std::span<const uint8_t> data) {
  const uint64_t pi = payload_index(block);
  uint64_t e = bat_[pi];
  if (state(e) == kFully) {
    file_.write_all(offset_of(e) + in_off, data);
    unsynced_data_ = true;
    return;
  }
  const uint64_t block_start = block * block_size_;
  const uint64_t block_len = std::min<uint64_t>(block_size_, size_ - block_start);
  uint64_t fo;
  bool fresh;
  if ((state(e) == kZero || state(e) == kUnmapped) && offset_of(e) && offset_ok(offset_of(e), block_size_)) {
    fo = offset_of(e);  // reuse the space the block had
    fresh = false;
  } else {
    fo = alloc_end_;
    fresh = true;
  }
  bool covered = in_off == 0 && data.size() == block_len;
  if (covered || (fresh && block_reads_zero(block))) {
    if (fresh) file_.truncate(fo + block_size_);
    file_.write_all(fo + in_off, data);
  } else {
    std::vector<uint8_t> buf(block_len);
    read_in_block(block, 0, buf);
    std::memcpy(buf.data() + in_off, data.data(), data.size());
    if (fresh) file_.truncate(fo + block_size_);
    file_.write_all(fo, buf);
  }
  if (fresh) alloc_end_ = fo + block_size_;
  unsynced_data_ = true;
  bat_[pi] = (fo & ~(MiB - 1)) | kFully;
  commit_bat({pi});
}

void VhdxDevice::write(uint64_t offset, std::span<const uint8_t> buf) {
  check_writable();
  check_range(offset, buf.size());
  if (buf.empty()) return;
  begin_modification(true);
  uint64_t done = 0;
  while (done < buf.size()) {
    uint64_t pos = offset + done, block = pos / block_size_, in_off = pos % block_size_;
    uint64_t n = std::min<uint64_t>(buf.size() - done, block_size_ - in_off);
    write_in_block(block, in_off, buf.subspan(done, n));
    done += n;
  }
}

// ---------------------------------------------------------------------------------------
// The asynchronous path

std::unique_ptr<AsyncDisk> VhdxDevice::open_async(unsigned depth, AsyncBackend backend) {
  AsyncTarget t{file_.fd(), file_.direct(), 4096, kMaxFileBytes, read_only_, path()};
  return make_mapped_async_disk(*this, t, depth, backend);
}

MappedRun VhdxDevice::read_run(uint64_t offset, uint64_t max) { return run(offset, max, false); }

MappedRun VhdxDevice::write_run(uint64_t offset, uint64_t max) {
  // The first write after open records a new DataWriteGuid (and starts the log) before any
  // data changes, in place or not.
  begin_modification(true);
  return run(offset, max, true);
}

// True when a log replayed into memory (a read-only open) covers part of the range: the
// file alone does not hold what view_read returns there.
bool VhdxDevice::in_overlay(uint64_t offset, uint64_t length) const {
  return std::any_of(overlay_.begin(), overlay_.end(),
                     [&](const LogOp& op) { return offset < op.offset + op.length && op.offset < offset + length; });
}

// The run at guest offset `offset` (at most max bytes): blocks of the same kind, kHost
// ones contiguous in the file. FULLY_PRESENT data is kHost; blocks that read as zeroes
// (without a parent) are kZero; everything else, and every write that is not in place,
// goes through the driver.
MappedRun VhdxDevice::run(uint64_t offset, uint64_t max, bool write) {
  auto piece = [&](uint64_t pos, uint64_t n) {
    uint64_t block = pos / block_size_, in_off = pos % block_size_;
    uint64_t e = bat_[payload_index(block)];
    if (state(e) == kFully && !in_overlay(offset_of(e) + in_off, n)) {
      return MappedRun{MappedRunKind::kHost, offset_of(e) + in_off, n};
    }
    if (!write && block_reads_zero(block)) return MappedRun{MappedRunKind::kZero, 0, n};
    return MappedRun{MappedRunKind::kDriver, 0, n};
  };
  uint64_t n = std::min<uint64_t>(max, block_size_ - offset % block_size_);
  MappedRun r = piece(offset, n);
  while (r.length < max) {
    n = std::min<uint64_t>(max - r.length, block_size_);
    MappedRun next = piece(offset + r.length, n);
    if (next.kind != r.kind || (r.kind == MappedRunKind::kHost && next.host != r.host + r.length)) break;
    r.length += n;
  }
  return r;
}

void VhdxDevice::write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  check_writable();
  check_range(offset, length);
  if (!length) return;
  begin_modification(true);
  std::set<uint64_t> changed;
  std::vector<uint8_t> zeroes;
  uint64_t pos = offset, end = offset + length;
  while (pos < end) {
    uint64_t block = pos / block_size_, in_off = pos % block_size_;
    uint64_t block_start = block * block_size_;
    uint64_t block_len = std::min<uint64_t>(block_size_, size_ - block_start);
    uint64_t n = std::min<uint64_t>(end - pos, block_len - in_off);
    uint64_t pi = payload_index(block);
    uint64_t e = bat_[pi];
    bool whole = in_off == 0 && n == block_len;
    if (whole && !leave_allocated_) {
      if (state(e) != kZero) {
        uint64_t keep = offset_of(e);
        if (may_unmap && (state(e) == kFully || state(e) == kPartially) && keep) {
          // The block's space stays reserved (recorded with the ZERO state) but is released.
          file_.punch_hole(keep, block_size_);
        }
        bat_[pi] = (state(e) == kFully || state(e) == kPartially ? keep : 0) | kZero;
        changed.insert(pi);
      }
    } else if (whole && state(e) == kFully && may_unmap && file_.punch_hole(offset_of(e), block_size_)) {
      // Fixed image: the block stays allocated; its storage reads back as zeroes.
    } else if (!block_reads_zero(block)) {
      if (zeroes.size() < n) zeroes.assign(std::min<uint64_t>(block_size_, std::max<uint64_t>(n, 64 * KiB)), 0);
      for (uint64_t d = 0; d < n;) {
        uint64_t k = std::min<uint64_t>(n - d, zeroes.size());
        write_in_block(block, in_off + d, std::span<const uint8_t>(zeroes.data(), k));
        d += k;
      }
    }
    pos += n;
  }
  if (!changed.empty()) commit_bat(changed);
}

void VhdxDevice::flush() {
  if (read_only_ || broken_) return;
  file_.sync();
  unsynced_data_ = false;
}

void VhdxDevice::close() {
  if (read_only_ || broken_ || !modified_) return;
  file_.sync();
  if (log_active_) {
    Header h = header_;
    h.log_guid = Guid{};
    write_header(h);
    log_active_ = false;
  }
}

ImageInfo VhdxDevice::info() const {
  ImageInfo i;
  i.format = Format::kVhdx;
  i.path = path();
  i.virtual_size = size_;
  i.file_size = file_.size();
  i.allocated_bytes = file_.allocated_bytes();
  i.subformat = has_parent_ ? "differencing" : leave_allocated_ ? "fixed" : "dynamic";
  i.backing_path = backing_recorded_;
  i.backing_resolved = backing_ ? backing_resolved_ : "";
  i.dirty = needed_replay_;
  i.cluster_size = block_size_;
  return i;
}

// ---------------------------------------------------------------------------------------
// Maintenance

void VhdxDevice::rewrite_metadata(const std::vector<MetaItem>& items) {
  std::vector<uint8_t> region;
  if (!build_metadata_region(items, meta_length_, &region)) {
    throw Error("DISK_UNSUPPORTED", "the new metadata of " + path() + " does not fit its metadata region");
  }
  std::vector<uint8_t> old(meta_length_);
  view_read(meta_offset_, old);
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> sectors;
  for (uint64_t off = 0; off < meta_length_; off += kSector) {
    if (std::memcmp(old.data() + off, region.data() + off, kSector) != 0) {
      sectors.emplace_back(meta_offset_ + off, std::vector<uint8_t>(region.begin() + off, region.begin() + off + kSector));
    }
  }
  commit_sectors(std::move(sectors));
  meta_items_ = items;
}

void VhdxDevice::resize(uint64_t new_capacity) {
  check_writable();
  if (new_capacity == size_) return;
  if (new_capacity == 0 || new_capacity > kMaxVirtualSize || new_capacity % logical_sector_) {
    throw Error("DISK_RANGE", "a VHDX virtual size must be a positive multiple of " + std::to_string(logical_sector_) +
                                  " bytes and at most 64 TiB");
  }
  if (new_capacity < size_) {
    shrink(new_capacity);
    return;
  }
  uint64_t entries = entry_count_for(new_capacity);
  if (entries * 8 > bat_length_) {
    throw Error("DISK_UNSUPPORTED", path() + " cannot grow to " + std::to_string(new_capacity) +
                                        " bytes: its BAT region is too small; convert it to a new image instead");
  }
  begin_modification(true);
  uint64_t old_blocks = block_count();
  uint64_t old_entries = entry_count_for(size_);
  bat_.resize(align_up(entries, kSector / 8), 0);
  std::set<uint64_t> changed;
  for (uint64_t i = old_entries; i < entries; ++i) {
    bat_[i] = 0;
    changed.insert(i);
  }
  uint64_t new_blocks = (new_capacity + block_size_ - 1) / block_size_;
  if (leave_allocated_) {
    for (uint64_t b = old_blocks; b < new_blocks; ++b) {
      file_.allocate(alloc_end_, block_size_);
      bat_[payload_index(b)] = alloc_end_ | kFully;
      alloc_end_ += block_size_;
    }
    unsynced_data_ = true;
  }
  commit_bat(changed);
  auto items = meta_items_;
  for (auto& it : items) {
    if (it.id == kVirtualDiskSize) it.data = u64_bytes(new_capacity);
  }
  size_ = new_capacity;
  rewrite_metadata(items);
}

// Shrinking drops only blocks that hold nothing: every payload block reaching past the new
// end must be NOT_PRESENT already (or ZERO/UNMAPPED/UNDEFINED without file space, which
// become NOT_PRESENT). The BAT entries and then the virtual size change through the log.
void VhdxDevice::shrink(uint64_t new_capacity) {
  const uint64_t first = new_capacity / block_size_;  // the first block reaching past the new end
  const uint64_t n = block_count();
  std::set<uint64_t> changed;
  for (uint64_t b = first; b < n; ++b) {
    uint64_t pi = payload_index(b), e = bat_[pi], s = state(e);
    if (s == kNotPresent) continue;
    if (s == kFully || s == kPartially || offset_of(e) != 0) {
      uint64_t last = b;
      for (uint64_t k = b; k < n; ++k) {
        uint64_t ek = bat_[payload_index(k)];
        if (state(ek) != kNotPresent && (state(ek) == kFully || state(ek) == kPartially || offset_of(ek) != 0)) last = k;
      }
      throw Error("DISK_SHRINK_TOO_SMALL",
                  path() + ": block " + std::to_string(b) + " (bytes " + std::to_string(b * block_size_) + " to " +
                      std::to_string(std::min<uint64_t>((b + 1) * block_size_, size_)) +
                      ") is in use, so the disk cannot shrink to " + std::to_string(new_capacity) +
                      " bytes; the smallest size it can shrink to is " +
                      std::to_string(std::min<uint64_t>((last + 1) * block_size_, size_)) + " bytes" +
                      (leave_allocated_ ? " (a fixed VHDX has every block in use: convert it to a dynamic one first)"
                                        : " (compact it first if those blocks hold only zeroes)"));
    }
    changed.insert(pi);
  }
  for (uint64_t pi : changed) bat_[pi] = 0;  // only once nothing refused the shrink
  begin_modification(true);
  if (has_parent_) {
    // Sector bitmap blocks of chunks wholly past the new end are no longer referenced.
    uint64_t new_blocks = (new_capacity + block_size_ - 1) / block_size_;
    for (uint64_t c = (new_blocks + chunk_ratio_ - 1) / chunk_ratio_; c * chunk_ratio_ < n; ++c) {
      if (bat_[bitmap_index(c)] != 0) {
        bat_[bitmap_index(c)] = 0;
        changed.insert(bitmap_index(c));
      }
    }
  }
  if (!changed.empty()) commit_bat(changed);
  auto items = meta_items_;
  for (auto& it : items) {
    if (it.id == kVirtualDiskSize) it.data = u64_bytes(new_capacity);
  }
  size_ = new_capacity;
  rewrite_metadata(items);
}

std::vector<std::pair<std::string, std::string>> locator_entries(const Guid& linkage, const std::string& child,
                                                                 const std::string& recorded) {
  namespace fs = std::filesystem;
  std::string resolved = resolve_backing_path(child, recorded);
  fs::path abs = fs::absolute(resolved).lexically_normal();
  std::string rel = recorded;
  if (!recorded.empty() && recorded[0] == '/') {
    fs::path dir = fs::absolute(child).parent_path();
    rel = abs.lexically_relative(dir).string();
  }
  std::vector<std::pair<std::string, std::string>> kv = {{"parent_linkage", guid_string(linkage)}};
  if (!rel.empty()) kv.emplace_back("relative_path", to_windows(rel));
  kv.emplace_back("absolute_win32_path", to_windows(abs.string()));
  return kv;
}

void VhdxDevice::set_backing(const std::string& recorded_path, std::unique_ptr<BlockDevice> backing) {
  check_writable();
  if (!has_parent_) {
    throw Error("DISK_UNSUPPORTED", path() + " is not a differencing VHDX; it cannot be given a parent");
  }
  if (recorded_path.empty() || !backing) {
    throw Error("DISK_UNSUPPORTED", "a differencing VHDX needs a parent; convert " + path() +
                                        " to a standalone image instead of removing it");
  }
  auto* parent = dynamic_cast<VhdxDevice*>(backing.get());
  if (!parent) throw Error("DISK_UNSUPPORTED", "the parent of a VHDX differencing disk must be a VHDX image");
  begin_modification(false);
  auto kv = locator_entries(parent->data_write_guid(), path(), recorded_path);
  auto items = meta_items_;
  for (auto& it : items) {
    if (it.id == kParentLocator) it.data = encode_parent_locator(kv);
  }
  rewrite_metadata(items);
  locator_.clear();
  for (auto& [k, v] : kv) locator_[k] = v;
  backing_recorded_ = recorded_path;
  backing_resolved_ = resolve_backing_path(path(), recorded_path);
  backing_ = std::move(backing);
}

CheckReport VhdxDevice::check(bool) {
  CheckReport r;
  auto problem = [&](const std::string& p) {
    ++r.corruptions;
    if (r.problems.size() < 100) r.problems.push_back(p);
  };
  const uint64_t fsize = file_.size();
  std::vector<std::array<uint64_t, 3>> used;  // offset, length, index
  auto visit = [&](uint64_t idx, uint64_t e, uint64_t len, const char* what) {
    uint64_t off = offset_of(e);
    if (off < MiB) {
      problem(std::string(what) + " entry " + std::to_string(idx) + " points into the file header area");
      return;
    }
    if (off + len > fsize) {
      problem(std::string(what) + " entry " + std::to_string(idx) + " points past the end of the file");
      return;
    }
    auto overlaps = [&](uint64_t o, uint64_t l) { return off < o + l && o < off + len; };
    if (overlaps(header_.log_offset, header_.log_length)) problem(std::string(what) + " entry " + std::to_string(idx) + " overlaps the log");
    for (const auto& reg : regions_) {
      if (overlaps(reg.offset, reg.length)) problem(std::string(what) + " entry " + std::to_string(idx) + " overlaps a region");
    }
    used.push_back({off, len, idx});
  };
  const uint64_t n = block_count();
  for (uint64_t b = 0; b < n; ++b) {
    uint64_t pi = payload_index(b), e = bat_[pi], s = state(e);
    if (s == kFully || s == kPartially || ((s == kZero || s == kUnmapped) && offset_of(e))) {
      visit(pi, e, block_size_, "block");
    }
    else if (s != kNotPresent && s != kUndefined && s != kZero && s != kUnmapped) problem("block entry " + std::to_string(pi) + " has an unknown state");
  }
  if (has_parent_) {
    for (uint64_t c = 0; c * chunk_ratio_ < n; ++c) {
      uint64_t e = bat_[bitmap_index(c)];
      if (state(e) == kBitmapPresent) visit(bitmap_index(c), e, MiB, "sector bitmap");
    }
  }
  std::sort(used.begin(), used.end());
  for (size_t i = 1; i < used.size(); ++i) {
    if (used[i][0] < used[i - 1][0] + used[i - 1][1]) {
      problem("entries " + std::to_string(used[i - 1][2]) + " and " + std::to_string(used[i][2]) +
              " share file space");
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Creating

void create(const std::string& path, const CreateOptions& options) {
  uint64_t block_size = options.cluster_size ? options.cluster_size : 32 * MiB;
  if (!is_pow2(block_size) || block_size < MiB || block_size > 256 * MiB) {
    throw Error("DISK_UNSUPPORTED", "a VHDX block size must be a power of two from 1 MiB to 256 MiB, not " +
                                        std::to_string(block_size));
  }
  const bool diff = !options.backing_path.empty();
  if (diff && options.fixed) throw Error("DISK_UNSUPPORTED", "a VHDX differencing disk cannot be fixed");
  uint64_t size = options.size;
  Guid linkage;
  if (diff) {
    OpenOptions po;
    po.read_only = true;
    auto parent = open_disk(resolve_backing_path(path, options.backing_path), po);
    auto* vp = dynamic_cast<VhdxDevice*>(parent.get());
    if (!vp) throw Error("DISK_UNSUPPORTED", "the parent of a VHDX differencing disk must be a VHDX image");
    linkage = vp->data_write_guid();
    if (!size) size = parent->capacity();
  }
  size = align_up(size, 512);
  if (size > kMaxVirtualSize) throw Error("DISK_RANGE", "a VHDX image holds at most 64 TiB");
  const uint64_t logical = 512;
  const uint64_t chunk_ratio = ((uint64_t{1} << 23) * logical) / block_size;
  const uint64_t blocks = (size + block_size - 1) / block_size;
  const uint64_t entries = diff ? (blocks + chunk_ratio - 1) / chunk_ratio * (chunk_ratio + 1)
                                : (blocks ? blocks + (blocks - 1) / chunk_ratio : 0);
  const uint64_t log_offset = MiB, log_length = MiB;
  const uint64_t meta_offset = 2 * MiB, meta_length = MiB;
  const uint64_t bat_offset = 3 * MiB, bat_length = std::max<uint64_t>(MiB, align_up(entries * 8, MiB));
  const uint64_t data_start = bat_offset + bat_length;

  File file(path, File::Mode::kCreateExclusive);
  try {
    std::vector<uint8_t> ident(64 * KiB, 0);
    std::memcpy(ident.data(), "vhdxfile", 8);
    auto creator = utf8_to_utf16("Berth");
    std::memcpy(ident.data() + 8, creator.data(), creator.size());
    file.write_all(0, ident);

    Header h;
    h.file_write = random_guid();
    h.data_write = random_guid();
    h.log_length = static_cast<uint32_t>(log_length);
    h.log_offset = log_offset;
    for (int i = 0; i < 2; ++i) {
      h.seq = static_cast<uint64_t>(i + 1);
      file.write_all(i == 0 ? kHeader1 : kHeader2, encode_header(h));
    }

    std::vector<uint8_t> regions(64 * KiB, 0);
    std::memcpy(regions.data(), "regi", 4);
    st<uint32_t>(&regions[8], 2);
    st_guid(&regions[16], kBatRegion);
    st<uint64_t>(&regions[32], bat_offset);
    st<uint32_t>(&regions[40], static_cast<uint32_t>(bat_length));
    st<uint32_t>(&regions[44], 1);
    st_guid(&regions[48], kMetadataRegion);
    st<uint64_t>(&regions[64], meta_offset);
    st<uint32_t>(&regions[72], static_cast<uint32_t>(meta_length));
    st<uint32_t>(&regions[76], 1);
    st<uint32_t>(&regions[4], crc32c(regions));
    file.write_all(kRegion1, regions);
    file.write_all(kRegion2, regions);

    std::vector<MetaItem> items;
    std::vector<uint8_t> fp(8);
    st<uint32_t>(fp.data(), static_cast<uint32_t>(block_size));
    st<uint32_t>(fp.data() + 4, (options.fixed ? 1u : 0u) | (diff ? 2u : 0u));
    items.push_back({kFileParameters, 4, fp});
    items.push_back({kVirtualDiskSize, 6, u64_bytes(size)});
    Guid id = random_guid();
    items.push_back({kPage83, 6, std::vector<uint8_t>(id.b.begin(), id.b.end())});
    items.push_back({kLogicalSector, 6, u32_bytes(static_cast<uint32_t>(logical))});
    items.push_back({kPhysicalSector, 6, u32_bytes(4096)});
    if (diff) items.push_back({kParentLocator, 4, encode_parent_locator(locator_entries(linkage, path, options.backing_path))});
    std::vector<uint8_t> meta;
    if (!build_metadata_region(items, meta_length, &meta)) {
      throw Error("DISK_BACKING_NAME", "the parent path of " + path + " is too long for a VHDX parent locator");
    }
    file.write_all(meta_offset, meta);

    std::vector<uint64_t> bat(bat_length / 8, 0);
    if (options.fixed) {
      for (uint64_t b = 0; b < blocks; ++b) bat[b + b / chunk_ratio] = (data_start + b * block_size) | kFully;
    }
    file.write_all(bat_offset, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bat.data()), bat_length));
    if (options.fixed && blocks) file.allocate(data_start, blocks * block_size);
    else file.truncate(data_start);
    file.sync();
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    throw;
  }
}

bool probe(const File& file) {
  uint8_t sig[8] = {};
  if (file.size() < 8) return false;
  file.read_or_zero(0, sig);
  return std::memcmp(sig, "vhdxfile", 8) == 0;
}

std::unique_ptr<BlockDevice> open(File file, const OpenOptions& options, const BackingOpener& backing) {
  auto dev = std::make_unique<VhdxDevice>(std::move(file), options);
  dev->open(backing);
  return dev;
}

const bool registered = register_driver({Format::kVhdx, 20, probe, open, create});

}  // namespace
}  // namespace berth::disk::vhdx
