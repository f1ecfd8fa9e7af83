// qcow2 (versions 2 and 3) per docs/interop/qcow2.txt: reads v2 and v3, creates v3 with
// 16-bit refcounts.
//
// Metadata (L2 tables, refcount blocks, L1 entries) is cached write-back, as in QEMU, and
// written out at flush(), when the cache evicts a dirty table, and when enough cluster
// releases are pending. The write-back order keeps the image consistent at every moment,
// whatever the crash point (a crash may leak clusters, never leave a dangling or double
// reference):
// - a cluster's refcount is on disk (written and synced) before any L2/L1 entry that
//   references it is written; guest data written into a new cluster is synced before the
//   L2 entry pointing to it is written (so a reference never points past the end of the
//   file or at another cluster's old contents);
// - new L2 tables are written and synced before the L1 entries that point to them;
// - releases are deferred: a cluster that loses its reference keeps its refcount (and
//   cannot be reused) until the L2/L1 change is written and synced; only then is its
//   refcount decremented (written later; a crash before that leaks it).
// Between guest flushes no ordering of guest data is promised to the guest; flush() makes
// everything durable.
//
// Guest data clusters are read and written through a second descriptor opened with
// O_DIRECT when OpenOptions::direct asks for it (and the filesystem allows it, and clusters
// are at least 4 KiB); metadata stays on the buffered descriptor, as its I/O is not
// sector-aligned. The two never share a cluster (compressed clusters are data too, and
// COW reads of this image's own clusters go through the data descriptor), so no range is
// ever accessed through both; Linux keeps O_DIRECT and the page cache coherent in any
// case (direct writes invalidate cached pages, direct reads write dirty ones back first).
// Hole punching of released clusters and the crash hook's roll-back use the buffered
// descriptor; both act on the inode, which both descriptors share.
//
// A new cluster with nothing to merge (no backing data, not a zero-allocated cluster)
// that lies at or past the end of the file gets only the bytes the guest wrote (4 KiB
// aligned under O_DIRECT): the rest of the cluster is a hole or past the end of the file
// and reads as zeroes. qemu-img check accepts a last cluster that the file ends inside.
//
// Choices worth knowing:
// - The dirty bit (v3) is set (written and synced) before the first metadata change after
//   an open or a flush, and cleared by flush() and a clean close once everything is
//   durable. Overwrites of allocated clusters change no metadata and leave it alone. An
//   image found dirty is checked when opened read-write: leaks are repaired, any other
//   inconsistency refuses the open (DISK_CORRUPT, "repair it with qemu-img check -r all").
//   Read-only opens of dirty images just read.
// - The corrupt bit allows read-only opens only.
// - Internal snapshots, persistent bitmaps, encryption, external data files, extended L2
//   entries and non-zlib compression are not supported for writing (snapshots and bitmaps
//   can still be read: the active layer only).
// - Resizes, backing changes, refcount-table growth, new refcount blocks and
//   preallocation write through, with the same ordering, after writing back the cache.
// - qcow2::testing::crash_after_writes (disk/qcow2/testing.h) injects power loss for the
//   crash-consistency tests. It exists only in test builds (BERTH_TEST_HOOKS, set by
//   native/tests/Makefile); the addon and berth-vmm compile the hooks to nothing.
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "disk/aligned_io.h"
#include "disk/driver.h"
#include "disk/mapped_async_disk.h"
#include "disk/mapped_async_host.h"
#ifdef BERTH_TEST_HOOKS
#include "disk/qcow2/testing.h"
#endif

// ---- fault injection (test builds only) -------------------------------------------------

#ifdef BERTH_TEST_HOOKS

namespace berth::disk::qcow2::testing {
namespace {

struct Undo {
  int fd;
  uint64_t offset;
  std::vector<uint8_t> old;  // the bytes that were there (within the old file size)
  uint64_t old_size;
};

struct CrashState {
  int64_t budget = -1;
  bool lose_unsynced = false;
  bool crashed = false;
  uint64_t writes = 0;
  std::vector<Undo> undo;  // writes not yet followed by a sync, oldest first
};
size_t cache_limit = 0;

CrashState& state() {
  static CrashState s;
  return s;
}

struct CrashCallback {
  void (*fn)(void*) = nullptr;
  void* arg = nullptr;
};
CrashCallback crash_callback;

[[noreturn]] void power_lost() { throw Error("DISK_IO", "simulated power loss (qcow2 testing hook)"); }

void roll_back(CrashState& s) {
  for (auto it = s.undo.rbegin(); it != s.undo.rend(); ++it) {
    if (!it->old.empty() && ::pwrite(it->fd, it->old.data(), it->old.size(), static_cast<off_t>(it->offset)) < 0) continue;
    struct stat st;
    if (::fstat(it->fd, &st) == 0 && static_cast<uint64_t>(st.st_size) > it->old_size) {
      if (::ftruncate(it->fd, static_cast<off_t>(it->old_size)) != 0) continue;
    }
  }
  s.undo.clear();
}

}  // namespace

void crash_after_writes(int64_t writes, bool lose_unsynced) {
  CrashState& s = state();
  s = CrashState{};
  s.budget = writes;
  s.lose_unsynced = lose_unsynced && writes >= 0;
}
bool crashed() { return state().crashed; }
void limit_metadata_cache(size_t tables) { cache_limit = tables; }
size_t cache_tables(size_t normal) { return cache_limit ? cache_limit : normal; }
uint64_t writes_issued() { return state().writes; }
void on_crash(void (*callback)(void*), void* arg) { crash_callback = {callback, arg}; }

// Before every write-like call on the file behind undo_fd (a buffered descriptor), for
// the bytes [offset, offset + length) it may change.
void before_write(int undo_fd, uint64_t offset, uint64_t length) {
  CrashState& s = state();
  if (s.crashed) power_lost();
  ++s.writes;
  if (s.budget < 0) return;
  if (s.budget == 0) {
    if (crash_callback.fn) crash_callback.fn(crash_callback.arg);
    s.crashed = true;
    if (s.lose_unsynced) roll_back(s);
    power_lost();
  }
  --s.budget;
  if (!s.lose_unsynced) return;
  Undo u{undo_fd, offset, {}, 0};
  struct stat st;
  if (::fstat(undo_fd, &st) == 0) u.old_size = static_cast<uint64_t>(st.st_size);
  if (offset < u.old_size) {
    u.old.resize(std::min<uint64_t>(length, u.old_size - offset));
    ssize_t n = ::pread(undo_fd, u.old.data(), u.old.size(), static_cast<off_t>(offset));
    u.old.resize(n < 0 ? 0 : static_cast<size_t>(n));
  }
  s.undo.push_back(std::move(u));
}
void before_sync() {
  if (state().crashed) power_lost();
}
void after_sync(int undo_fd) {
  auto& u = state().undo;
  std::erase_if(u, [&](const Undo& x) { return x.fd == undo_fd; });
}

}  // namespace berth::disk::qcow2::testing

#else
// Production builds: no process-wide state, nothing on the write path.
namespace berth::disk::qcow2::testing {
inline void before_write(int, uint64_t, uint64_t) {}
inline void before_sync() {}
inline void after_sync(int) {}
inline size_t cache_tables(size_t normal) { return normal; }
}  // namespace berth::disk::qcow2::testing
#endif

namespace berth::disk {
namespace {

namespace hook = qcow2::testing;
constexpr uint32_t kDirectAlign = 4096;
constexpr size_t kMaxPendingFrees = 4096;  // releases waiting for a write-back

constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;
constexpr uint64_t kCopied = 1ull << 63;
constexpr uint64_t kCompressed = 1ull << 62;
constexpr uint64_t kZeroFlag = 1;
constexpr uint64_t kIncDirty = 1;
constexpr uint64_t kIncCorrupt = 2;
constexpr uint64_t kIncKnown = kIncDirty | kIncCorrupt;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtFeatureTable = 0x6803f857;
constexpr uint32_t kExtBitmaps = 0x23852875;
constexpr uint64_t kMaxL1Bytes = 32ull << 20;
constexpr uint64_t kMaxReftableBytes = 8ull << 20;
constexpr size_t kMaxBackingName = 1023;
constexpr uint64_t kMaxVirtualSize = 1ull << 56;  // 64 PiB
constexpr uint64_t kMaxFileBytes = 1ull << 56;     // host offsets fit in an L2 entry
constexpr size_t kMaxProblems = 100;

uint64_t be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
void put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}
uint64_t div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }
std::string num(uint64_t v) { return std::to_string(v); }

// qemu's names, which other tools read from the backing-format extension.
const char* qemu_format_name(Format f) {
  switch (f) {
    case Format::kRaw: return "raw";
    case Format::kQcow2: return "qcow2";
    case Format::kVhdx: return "vhdx";
    case Format::kVhd: return "vpc";
    case Format::kHostDevice: return "raw";
  }
  return "raw";
}

struct Header {
  uint32_t version = 3;
  uint64_t backing_offset = 0;
  uint32_t backing_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;
  uint32_t crypt = 0;
  uint32_t l1_size = 0;
  uint64_t l1_offset = 0;
  uint64_t reftable_offset = 0;
  uint32_t reftable_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible = 0;
  uint64_t compatible = 0;
  uint64_t autoclear = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = 104;
};

Header parse_header(const uint8_t* p) {
  Header h;
  h.version = be32(p + 4);
  h.backing_offset = be64(p + 8);
  h.backing_size = be32(p + 16);
  h.cluster_bits = be32(p + 20);
  h.size = be64(p + 24);
  h.crypt = be32(p + 32);
  h.l1_size = be32(p + 36);
  h.l1_offset = be64(p + 40);
  h.reftable_offset = be64(p + 48);
  h.reftable_clusters = be32(p + 56);
  h.nb_snapshots = be32(p + 60);
  h.snapshots_offset = be64(p + 64);
  if (h.version >= 3) {
    h.incompatible = be64(p + 72);
    h.compatible = be64(p + 80);
    h.autoclear = be64(p + 88);
    h.refcount_order = be32(p + 96);
    h.header_length = be32(p + 100);
  } else {
    h.header_length = 72;
  }
  return h;
}

// The fixed header fields (72 bytes for v2, 104 for v3).
void serialize_header(const Header& h, uint8_t* p) {
  put32(p, kMagic);
  put32(p + 4, h.version);
  put64(p + 8, h.backing_offset);
  put32(p + 16, h.backing_size);
  put32(p + 20, h.cluster_bits);
  put64(p + 24, h.size);
  put32(p + 32, h.crypt);
  put32(p + 36, h.l1_size);
  put64(p + 40, h.l1_offset);
  put64(p + 48, h.reftable_offset);
  put32(p + 56, h.reftable_clusters);
  put32(p + 60, h.nb_snapshots);
  put64(p + 64, h.snapshots_offset);
  if (h.version >= 3) {
    put64(p + 72, h.incompatible);
    put64(p + 80, h.compatible);
    put64(p + 88, h.autoclear);
    put32(p + 96, h.refcount_order);
    put32(p + 100, h.header_length);
  }
}

// A small LRU cache of cluster-sized metadata tables, keyed by file offset. Tables are
// kept as raw (big-endian) bytes; dirty ones are written back by the device (which makes
// room with lru()/erase() itself, writing a dirty victim back first).
class TableCache {
 public:
  explicit TableCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 4)) {}
  std::vector<uint8_t>* find(uint64_t off) {
    auto it = map_.find(off);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.pos);
    return &it->second.data;
  }
  // Without touching the LRU order.
  const std::vector<uint8_t>* peek(uint64_t off) const {
    auto it = map_.find(off);
    return it == map_.end() ? nullptr : &it->second.data;
  }
  bool full() const { return map_.size() >= capacity_; }
  uint64_t lru() const { return order_.back(); }
  bool is_dirty(uint64_t off) const {
    auto it = map_.find(off);
    return it != map_.end() && it->second.dirty;
  }
  // Only when there is room (see full()).
  std::vector<uint8_t>& insert(uint64_t off, std::vector<uint8_t> data, bool dirty) {
    if (auto* t = find(off)) {
      *t = std::move(data);
      set_dirty(off, dirty || is_dirty(off));
      return *t;
    }
    order_.push_front(off);
    auto& e = map_[off];
    e.data = std::move(data);
    e.pos = order_.begin();
    if (dirty) {
      e.dirty = true;
      dirty_.insert(off);
    }
    return e.data;
  }
  void set_dirty(uint64_t off, bool dirty) {
    auto it = map_.find(off);
    if (it == map_.end()) return;
    it->second.dirty = dirty;
    if (dirty) dirty_.insert(off);
    else dirty_.erase(off);
  }
  void erase(uint64_t off) {
    auto it = map_.find(off);
    if (it == map_.end()) return;
    order_.erase(it->second.pos);
    dirty_.erase(off);
    map_.erase(it);
  }
  // Dirty tables in file order.
  const std::set<uint64_t>& dirty() const { return dirty_; }

 private:
  struct Entry {
    std::vector<uint8_t> data;
    std::list<uint64_t>::iterator pos;
    bool dirty = false;
  };
  size_t capacity_;
  std::list<uint64_t> order_;
  std::unordered_map<uint64_t, Entry> map_;
  std::set<uint64_t> dirty_;
};

enum class Kind { kUnallocated, kZeroPlain, kZeroAllocated, kNormal, kCompressed };

struct Mapping {
  Kind kind = Kind::kUnallocated;
  uint64_t host = 0;   // cluster offset (normal, zero-allocated) or byte offset (compressed)
  uint64_t csize = 0;  // compressed bytes
  bool copied = false;
};

struct Parsed {
  Header h;
  std::vector<uint8_t> header_tail;  // v3 header bytes past 104 (kept when rewriting)
  std::vector<uint8_t> other_exts;   // extensions other than the backing format, raw
  std::string backing_name;
  std::string backing_format;
  bool has_bitmaps = false;
};

class Qcow2Device final : public BlockDevice, public MappedAsyncHost {
 public:
  Qcow2Device(File file, bool read_only, Parsed parsed, std::vector<uint64_t> l1, std::vector<uint64_t> reftable)
      : file_(std::move(file)),
        read_only_(read_only),
        h_(parsed.h),
        header_tail_(std::move(parsed.header_tail)),
        other_exts_(std::move(parsed.other_exts)),
        backing_name_(std::move(parsed.backing_name)),
        backing_format_(std::move(parsed.backing_format)),
        has_bitmaps_(parsed.has_bitmaps),
        cbits_(h_.cluster_bits),
        cs_(1ull << cbits_),
        l2_entries_(cs_ / 8),
        refbits_(1u << h_.refcount_order),
        rb_entries_(cs_ * 8 / refbits_),
        l1_(std::move(l1)),
        reftable_(std::move(reftable)),
        l2cache_(hook::cache_tables((4u << 20) >> cbits_)),
        rbcache_(hook::cache_tables((1u << 20) >> cbits_)) {
    file_size_ = file_.size();
    phys_size_ = file_size_;
    file_clusters_ = div_up(file_size_, cs_);
  }

  ~Qcow2Device() override {
    if (read_only_ || (!dirty_marked_ && !unsynced_)) return;
    try {
      flush();
    } catch (...) {
      // A failed close leaves the dirty bit set; the next read-write open checks the image.
    }
  }

  // A second descriptor on the same file, opened with O_DIRECT, for guest data clusters.
  // Kept only when it really is direct and clusters are large enough for its alignment
  // (a smaller cluster's 4 KiB unit would take in metadata of its neighbours).
  void attach_direct(File f) {
    if (!f.direct() || cs_ < kDirectAlign) return;
    data_ = std::make_unique<File>(std::move(f));
    bounce_ = aligned_alloc_bytes(cs_, kDirectAlign);
  }

  void attach_backing(std::unique_ptr<BlockDevice> b, std::string resolved) {
    backing_ = std::move(b);
    backing_resolved_ = std::move(resolved);
  }

  uint64_t capacity() const override { return h_.size; }
  bool read_only() const override { return read_only_; }
  BlockDevice* backing() const override { return backing_.get(); }
  int fd() const { return file_.fd(); }

  // ---- reads -------------------------------------------------------------------------

  void read(uint64_t offset, std::span<uint8_t> buf) override {
    check_range(offset, buf.size());
    size_t done = 0;
    while (done < buf.size()) {
      uint64_t off = offset + done;
      uint64_t g = off >> cbits_;
      uint64_t in = off & (cs_ - 1);
      Mapping m = mapping(g);
      uint64_t n = std::min<uint64_t>(cs_ - in, buf.size() - done);
      // Extend over following clusters of the same kind (and, for data, contiguous).
      while (done + n < buf.size() && m.kind != Kind::kCompressed) {
        uint64_t k = (in + n) / cs_;
        Mapping next = mapping(g + k);
        bool same = m.kind == Kind::kNormal        ? next.kind == Kind::kNormal && next.host == m.host + k * cs_
                    : m.kind == Kind::kUnallocated ? next.kind == Kind::kUnallocated
                                                   : is_zero(next.kind);
        if (!same) break;
        n += std::min<uint64_t>(cs_, buf.size() - done - n);
      }
      auto part = buf.subspan(done, n);
      switch (m.kind) {
        case Kind::kUnallocated: read_backing(off, part); break;
        case Kind::kZeroPlain:
        case Kind::kZeroAllocated: std::memset(part.data(), 0, part.size()); break;
        case Kind::kNormal: data_read(m.host + in, part); break;
        case Kind::kCompressed: {
          const auto& data = decompress(m, g);
          std::memcpy(part.data(), data.data() + in, part.size());
          break;
        }
      }
      done += n;
    }
  }

  // ---- the asynchronous path (disk/mapped_async_disk.h) -------------------------------

  // Data I/O to allocated clusters goes through the O_DIRECT descriptor if there is one;
  // the AsyncDisk must not outlive this device.
  std::unique_ptr<AsyncDisk> open_async(unsigned depth, AsyncBackend backend) override {
    AsyncTarget t{direct() ? data_->fd() : file_.fd(), direct(), direct() ? kDirectAlign : 512, kMaxFileBytes,
                  read_only_, file_.path()};
    return make_mapped_async_disk(*this, t, depth, backend);
  }

  MappedRun read_run(uint64_t offset, uint64_t max) override {
    auto kind = [&](const Mapping& m, uint64_t g) {
      switch (m.kind) {
        case Kind::kNormal: return MappedRunKind::kHost;
        case Kind::kZeroPlain:
        case Kind::kZeroAllocated: return MappedRunKind::kZero;
        case Kind::kUnallocated:
          return unallocated_kind(g << cbits_) == ExtentKind::kZero ? MappedRunKind::kZero : MappedRunKind::kDriver;
        default: return MappedRunKind::kDriver;
      }
    };
    return run(offset, max, [&](const Mapping& m, uint64_t g) { return std::pair{kind(m, g), false}; });
  }

  MappedRun write_run(uint64_t offset, uint64_t max) override {
    return run(offset, max, [](const Mapping& m, uint64_t) {
      if (m.kind == Kind::kNormal && m.copied) return std::pair{MappedRunKind::kHost, false};
      return std::pair{MappedRunKind::kDriver, m.kind == Kind::kNormal || m.kind == Kind::kCompressed};
    });
  }

  void before_data_write(uint64_t host, uint64_t length) override {
    uint64_t a = host, z = host + length;
    if (direct()) a &= ~uint64_t(kDirectAlign - 1), z = div_up(z, kDirectAlign) * kDirectAlign;
    hook::before_write(file_.fd(), a, z - a);
    phys_size_ = std::max(phys_size_, z);
    unsynced_ = true;
  }

  void flush_all() override {
    unsynced_ = true;  // a sync since the asynchronous writes were queued may have preceded them
    flush();
  }

  BlockDevice& device() override { return *this; }

#ifdef BERTH_TEST_HOOKS
  // The simulated power loss lets the asynchronous writes in flight land first: they
  // reached the file before the power went (disk/qcow2/testing.h).
  void set_settle_hook(std::function<void()> settle) override {
    settle_ = std::move(settle);
    if (settle_) {
      hook::on_crash([](void* self) { static_cast<Qcow2Device*>(self)->settle_(); }, this);
    } else {
      hook::on_crash(nullptr, nullptr);
    }
  }
#endif

  // The run at guest offset `offset` (at most max bytes): clusters of the same kind, and
  // for kHost contiguous in the file; classify(mapping, cluster) -> (kind, settle_first).
  template <typename Classify>
  MappedRun run(uint64_t offset, uint64_t max, Classify classify) {
    uint64_t g = offset >> cbits_, in = offset & (cs_ - 1);
    Mapping m = mapping(g);
    auto [kind, settle] = classify(m, g);
    MappedRun r{kind, kind == MappedRunKind::kHost ? m.host + in : 0, std::min<uint64_t>(cs_ - in, max), settle};
    while (r.length < max) {
      uint64_t k = (in + r.length) >> cbits_;
      Mapping next = mapping(g + k);
      auto [next_kind, next_settle] = classify(next, g + k);
      if (next_kind != kind || (kind == MappedRunKind::kHost && next.host != m.host + (k << cbits_))) break;
      r.settle_first = r.settle_first || next_settle;
      r.length += std::min<uint64_t>(cs_, max - r.length);
    }
    return r;
  }

  // ---- writes ------------------------------------------------------------------------

  void write(uint64_t offset, std::span<const uint8_t> buf) override {
    check_writable();
    check_range(offset, buf.size());
    if (buf.empty()) return;
    std::vector<uint8_t> cluster;
    size_t done = 0;
    while (done < buf.size()) {
      uint64_t off = offset + done;
      uint64_t g = off >> cbits_;
      uint64_t in = off & (cs_ - 1);
      uint64_t n = std::min<uint64_t>(cs_ - in, buf.size() - done);
      auto chunk = buf.subspan(done, n);
      Mapping m = mapping(g);
      if (m.kind == Kind::kNormal && m.copied) {
        // Overwrite in place; extend over contiguous in-place clusters. No metadata changes.
        while (done + n < buf.size()) {
          Mapping next = mapping(g + (in + n) / cs_);
          if (next.kind != Kind::kNormal || !next.copied || next.host != m.host + ((in + n) / cs_) * cs_) break;
          n += std::min<uint64_t>(cs_, buf.size() - done - n);
        }
        data_write(m.host + in, buf.subspan(done, n));
        done += n;
        continue;
      }
      if (m.kind == Kind::kZeroAllocated && m.copied) {
        write_whole_cluster(g, m, m.host, in, chunk, cluster);
        set_l2_entry(g, m.host | kCopied);
        done += n;
        continue;
      }
      ensure_l2(g);
      uint64_t host = allocate(1);
      if (n == cs_) {
        data_write(host, chunk);
      } else if (host >= phys_size_ && rest_reads_zero(g, m)) {
        write_new_partial(host, in, chunk);
      } else {
        write_whole_cluster(g, m, host, in, chunk, cluster);
      }
      set_l2_entry(g, host | kCopied);
      release_later(m);
      done += n;
    }
    maybe_write_back();
  }

  void flush() override {
    if (read_only_) return;
    write_back();
    if (unsynced_) sync();
    if (dirty_marked_) {
      if (h_.version >= 3) {
        h_.incompatible &= ~kIncDirty;
        write_feature_fields();
        sync();
      }
      dirty_marked_ = false;
    }
  }

  void discard(uint64_t offset, uint64_t length) override { zero_range(offset, length, true); }
  void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) override {
    zero_range(offset, length, may_unmap);
  }

  Extent block_status(uint64_t offset, uint64_t length) override {
    if (offset >= h_.size) throw Error("DISK_RANGE", file_.path() + ": block status at " + num(offset) + " is past the end of the disk (" + num(h_.size) + " bytes)");
    length = std::min(length, h_.size - offset);
    Extent e{offset, 0, ExtentKind::kData};
    if (length == 0) return e;
    uint64_t pos = offset;
    bool first = true;
    uint64_t table_span = l2_entries_ << cbits_;
    while (pos < offset + length) {
      uint64_t g = pos >> cbits_;
      uint64_t l1i = g / l2_entries_;
      ExtentKind kind;
      uint64_t step;
      if (l1i < l1_.size() && (l1_[l1i] & kOffsetMask) == 0) {
        kind = unallocated_kind(pos);
        step = table_span - (pos % table_span);
      } else {
        kind = extent_kind(mapping(g), pos);
        step = cs_ - (pos & (cs_ - 1));
      }
      if (first) {
        e.kind = kind;
        first = false;
      } else if (kind != e.kind) {
        break;
      }
      pos += step;
    }
    e.length = std::min(pos, offset + length) - offset;
    return e;
  }

  ImageInfo info() const override {
    ImageInfo i;
    i.format = Format::kQcow2;
    i.path = file_.path();
    i.virtual_size = h_.size;
    i.file_size = file_.size();
    i.allocated_bytes = file_.allocated_bytes();
    i.backing_path = backing_name_;
    i.backing_resolved = backing_resolved_;
    i.dirty = (h_.incompatible & kIncDirty) != 0;
    i.corrupt = (h_.incompatible & kIncCorrupt) != 0;
    i.cluster_size = static_cast<uint32_t>(cs_);
    i.subformat = !backing_name_.empty() ? "differencing" : fully_mapped() ? "preallocated" : "dynamic";
    return i;
  }

  // ---- maintenance -------------------------------------------------------------------

  void resize(uint64_t new_capacity) override {
    check_writable();
    new_capacity = div_up(new_capacity, 512) * 512;
    if (new_capacity > kMaxVirtualSize) {
      throw Error("DISK_RANGE", file_.path() + ": " + num(new_capacity) + " bytes is larger than qcow2 allows (" +
                                    num(kMaxVirtualSize) + ")");
    }
    if (new_capacity == h_.size) return;
    mark_dirty();
    write_back();  // the L1 table may be copied below: its entries and their tables first
    if (new_capacity < h_.size) {
      uint64_t first = div_up(new_capacity, cs_);
      uint64_t end = div_up(h_.size, cs_);
      for (uint64_t g = first; g < end; ++g) {
        uint64_t l1i = g / l2_entries_;
        if ((l1_[l1i] & kOffsetMask) == 0) {
          g = (l1i + 1) * l2_entries_ - 1;
          continue;
        }
        Mapping m = mapping(g);
        if (m.kind == Kind::kNormal || m.kind == Kind::kCompressed || m.kind == Kind::kZeroAllocated) {
          throw Error("DISK_RANGE", file_.path() + " holds data at offset " + num(g << cbits_) +
                                        ", past the new size of " + num(new_capacity) +
                                        " bytes; shrink the file system in the guest first, or choose a larger size");
        }
      }
      h_.size = new_capacity;
      write_size_and_l1();
      sync();
      return;
    }
    uint64_t needed = div_up(new_capacity, l2_entries_ << cbits_);
    if (needed > l1_.size()) {
      if (needed * 8 > kMaxL1Bytes) throw Error("DISK_RANGE", file_.path() + ": " + num(new_capacity) + " bytes needs a larger L1 table than qcow2 allows");
      uint64_t l1c = div_up(needed * 8, cs_);
      uint64_t new_l1 = allocate(l1c);
      std::vector<uint64_t> l1 = l1_;
      l1.resize(l1c * cs_ / 8, 0);
      std::vector<uint8_t> bytes(l1c * cs_, 0);
      for (size_t i = 0; i < l1.size(); ++i) put64(&bytes[i * 8], l1[i]);
      meta_write(new_l1, bytes);
      write_dirty_refblocks();  // the new L1's refcounts before the header points to it
      sync();
      uint64_t old_off = h_.l1_offset;
      uint64_t old_clusters = div_up(uint64_t(h_.l1_size) * 8, cs_);
      h_.l1_offset = new_l1;
      h_.l1_size = static_cast<uint32_t>(needed);
      h_.size = new_capacity;
      l1.resize(needed);
      l1_ = std::move(l1);
      write_size_and_l1();
      sync();
      if (old_off != 0) {
        for (uint64_t i = 0; i < old_clusters; ++i) unref(old_off + i * cs_, true);
      }
    } else {
      h_.size = new_capacity;
      write_size_and_l1();
      sync();
    }
  }

  void set_backing(const std::string& recorded_path, std::unique_ptr<BlockDevice> backing) override {
    check_writable();
    if (recorded_path.size() > kMaxBackingName) {
      throw Error("DISK_BACKING_NAME", "the backing file name for " + file_.path() + " is " + num(recorded_path.size()) +
                                           " bytes long; qcow2 allows at most 1023: move the parent closer or use a relative path");
    }
    std::string format = backing ? qemu_format_name(backing->info().format) : "";
    if (recorded_path.empty()) format.clear();
    // New extension area: the backing format (if any), the other extensions, the end.
    std::vector<uint8_t> exts;
    if (!format.empty()) append_ext(exts, kExtBackingFormat, format);
    exts.insert(exts.end(), other_exts_.begin(), other_exts_.end());
    exts.resize(exts.size() + 8, 0);
    uint64_t hdr_len = h_.version >= 3 ? h_.header_length : 72;
    uint64_t ext_end = hdr_len + exts.size();
    uint64_t old_ext_end = hdr_len + old_ext_size();
    uint64_t old_begin = h_.backing_offset, old_end = h_.backing_offset + h_.backing_size;
    uint64_t len = recorded_path.size();
    // The new name goes where neither the old name nor the old or new extensions are,
    // so a crash before the header switch leaves the old header fully valid.
    uint64_t lo = std::max(ext_end, old_ext_end);
    uint64_t pos = UINT64_MAX;
    auto free_at = [&](uint64_t p) { return p >= lo && p + len <= cs_ && (len == 0 || old_begin == old_end || p + len <= old_begin || p >= old_end); };
    for (uint64_t cand : {lo, old_end, cs_ >= len ? cs_ - len : 0}) {
      if (free_at(cand)) {
        pos = cand;
        break;
      }
    }
    if (pos == UINT64_MAX || ext_end > cs_) {
      throw Error("DISK_BACKING_NAME", "the backing file name for " + file_.path() + " does not fit in the image's first cluster (" +
                                           num(cs_) + " bytes); use a shorter path");
    }
    mark_dirty();
    if (len > 0) {
      meta_write(pos, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(recorded_path.data()), len));
      sync();
    }
    Header nh = h_;
    nh.backing_offset = len ? pos : 0;
    nh.backing_size = static_cast<uint32_t>(len);
    std::vector<uint8_t> head(ext_end, 0);
    serialize_header(nh, head.data());
    if (h_.version >= 3) std::copy(header_tail_.begin(), header_tail_.end(), head.begin() + 104);
    std::copy(exts.begin(), exts.end(), head.begin() + hdr_len);
    meta_write(0, head);
    sync();
    h_ = nh;
    ext_size_ = exts.size();
    backing_name_ = recorded_path;
    backing_format_ = format;
    backing_ = std::move(backing);
    backing_resolved_ = backing_ ? backing_->info().path : "";
  }

  CheckReport check(bool repair) override {
    if (h_.nb_snapshots != 0 || has_bitmaps_) {
      throw Error("DISK_UNSUPPORTED", file_.path() + " has internal snapshots or persistent bitmaps, which Berth does not check; use qemu-img check");
    }
    if (repair) check_writable();
    if (!read_only_) write_back();  // the tables on disk are then the current ones
    CheckReport r;
    auto problem = [&](std::string s) {
      if (r.problems.size() < kMaxProblems) r.problems.push_back(file_.path() + ": " + std::move(s));
    };
    uint64_t nclusters = file_clusters_;
    std::vector<uint32_t> refs(nclusters, 0);
    auto inc = [&](uint64_t off, uint64_t len, const char* what) {
      if (len == 0) return;
      uint64_t last = (off + len - 1) >> cbits_;
      for (uint64_t c = off >> cbits_; c <= last; ++c) {
        if (c >= nclusters) {
          ++r.corruptions;
          problem(std::string(what) + " at offset " + num(off) + " is past the end of the file");
          return;
        }
        if (refs[c] != UINT32_MAX) ++refs[c];
      }
    };
    inc(0, cs_, "the header");
    inc(h_.l1_offset, uint64_t(h_.l1_size) * 8, "the L1 table");
    inc(h_.reftable_offset, uint64_t(h_.reftable_clusters) * cs_, "the refcount table");
    for (uint64_t e : reftable_) {
      uint64_t off = e & ~(cs_ - 1);
      if (off == 0) continue;
      inc(off, cs_, "a refcount block");
    }
    std::vector<std::pair<uint64_t, uint64_t>> copied_checks;  // (offset, 1 if flag set)
    std::vector<uint8_t> table(cs_);
    std::set<uint64_t> walked;
    for (size_t i = 0; i < l1_.size(); ++i) {
      uint64_t l2 = l1_[i] & kOffsetMask;
      if (l2 == 0) continue;
      if (l2 & (cs_ - 1)) {
        ++r.corruptions;
        problem("L1 entry " + num(i) + " points to an unaligned L2 table at " + num(l2));
        continue;
      }
      if (l2 + cs_ > file_size_) {
        ++r.corruptions;
        problem("L1 entry " + num(i) + " points to an L2 table at " + num(l2) + ", past the end of the file");
        continue;
      }
      inc(l2, cs_, "an L2 table");
      copied_checks.push_back({l2, (l1_[i] & kCopied) ? 1 : 0});
      if (!walked.insert(l2).second) {
        ++r.corruptions;  // its entries were counted once; the second reference is wrong
        problem("L1 entry " + num(i) + " points to an L2 table already used by another entry");
        continue;
      }
      file_.read_exact(l2, table);
      for (uint64_t j = 0; j < l2_entries_; ++j) {
        uint64_t e = be64(&table[j * 8]);
        if (e & kCompressed) {
          Mapping m = decode_compressed(e);
          inc(m.host, m.csize, "a compressed cluster");
          continue;
        }
        uint64_t host = e & kOffsetMask;
        if (host == 0) continue;
        if (host & (cs_ - 1)) {
          ++r.corruptions;
          problem("L2 entry for guest offset " + num(((i * l2_entries_) + j) << cbits_) + " is unaligned");
          continue;
        }
        inc(host, cs_, "a data cluster");
        copied_checks.push_back({host, (e & kCopied) ? 1 : 0});
      }
    }
    auto disk_refcount = [&](uint64_t c, bool* ok) -> uint64_t {
      try {
        *ok = true;
        return refcount(c);
      } catch (const Error&) {
        *ok = false;
        return 0;
      }
    };
    bool bad_block_reported = false;
    for (uint64_t c = 0; c < nclusters; ++c) {
      bool ok;
      uint64_t disk = disk_refcount(c, &ok);
      if (!ok) {
        if (!bad_block_reported) problem("a refcount block lies past the end of the file or is unaligned");
        bad_block_reported = true;
        if (refs[c]) ++r.corruptions;
        continue;
      }
      if (refs[c] > disk) {
        ++r.corruptions;
        problem("cluster " + num(c) + " is referenced " + num(refs[c]) + " times but its refcount is " + num(disk));
      } else if (refs[c] < disk) {
        ++r.leaked_clusters;
        problem("cluster " + num(c) + " is leaked (refcount " + num(disk) + ", referenced " + num(refs[c]) + " times)");
        if (repair) {
          set_refcount_range(c, 1, refs[c]);
          ++r.repaired;
        }
      }
    }
    // Refcounts for clusters past the end of the file are leaks too.
    for (size_t b = 0; b < reftable_.size(); ++b) {
      uint64_t off = reftable_[b] & ~(cs_ - 1);
      if (off == 0 || off + cs_ > file_size_) continue;
      uint64_t first = b * rb_entries_;
      if (first + rb_entries_ <= nclusters) continue;
      for (uint64_t c = std::max(first, nclusters); c < first + rb_entries_; ++c) {
        if (refcount(c) != 0) {
          ++r.leaked_clusters;
          problem("cluster " + num(c) + " past the end of the file has a refcount");
          if (repair) {
            set_refcount_range(c, 1, 0);
            ++r.repaired;
          }
        }
      }
    }
    for (auto [off, flag] : copied_checks) {
      bool ok;
      uint64_t disk = disk_refcount(off >> cbits_, &ok);
      if (ok && (disk == 1) != (flag == 1) && (off >> cbits_) < nclusters && refs[off >> cbits_] <= disk) {
        ++r.corruptions;
        problem("the copied flag of the cluster at " + num(off) + " disagrees with its refcount " + num(disk));
      }
    }
    if (repair && r.repaired) {
      write_dirty_refblocks();
      sync();
      free_hint_ = 1;
    }
    return r;
  }

  // ---- used by open and create -------------------------------------------------------

  // An image found dirty: leaks are repaired, anything else refuses the open.
  void recover_dirty() {
    CheckReport r = check(false);
    if (r.corruptions) {
      throw Error("DISK_CORRUPT", file_.path() + " was not closed cleanly and its metadata is inconsistent (" +
                                      num(r.corruptions) + " problems" + (r.problems.empty() ? "" : ", first: " + r.problems[0]) +
                                      "); repair it with qemu-img check -r all");
    }
    dirty_marked_ = true;  // the bit is set on disk
    if (r.leaked_clusters) check(true);
    flush();
  }

  // Maps every cluster of the disk (preallocation): metadata sets the zero flag on
  // allocated clusters (reads as zeroes, file stays sparse); full also allocates storage.
  void preallocate(bool full) {
    mark_dirty();
    uint64_t clusters = div_up(h_.size, cs_);
    for (uint64_t l1i = 0; l1i * l2_entries_ < clusters; ++l1i) {
      uint64_t k = std::min<uint64_t>(l2_entries_, clusters - l1i * l2_entries_);
      uint64_t start = allocate(1 + k);
      uint64_t data = start + cs_;
      std::vector<uint8_t> table(cs_, 0);
      for (uint64_t j = 0; j < k; ++j) put64(&table[j * 8], (data + j * cs_) | kCopied | (full || h_.version < 3 ? 0 : kZeroFlag));
      meta_write(start, table);
      if (full) {
        hook::before_write(file_.fd(), data, k * cs_);
        file_.allocate(data, k * cs_);
        phys_size_ = std::max(phys_size_, data + k * cs_);
      } else if (file_.size() < data + k * cs_) {
        hook::before_write(file_.fd(), data, k * cs_);
        file_.truncate(data + k * cs_);
        phys_size_ = std::max(phys_size_, data + k * cs_);
      }
      write_dirty_refblocks();
      sync();
      l1_[l1i] = start | kCopied;
      write_l1_entry(l1i);
    }
    flush();
  }

 private:
  struct Update {
    uint64_t g;
    uint64_t entry;
    Mapping old;  // released once the new entry is on disk (release_later)
  };

  static bool is_zero(Kind k) { return k == Kind::kZeroPlain || k == Kind::kZeroAllocated; }

  void check_range(uint64_t offset, uint64_t len) const {
    if (offset > h_.size || len > h_.size - offset) {
      throw Error("DISK_RANGE", file_.path() + ": access at " + num(offset) + " (+" + num(len) +
                                    " bytes) is past the end of the disk (" + num(h_.size) + " bytes)");
    }
  }
  void check_writable() const {
    if (read_only_) throw Error("DISK_READ_ONLY", file_.path() + " is open read-only");
  }
  [[noreturn]] void corrupt(const std::string& what) const {
    throw Error("DISK_CORRUPT", file_.path() + " is corrupt: " + what + "; repair it with qemu-img check -r all or restore a backup");
  }

  bool has_backing() const { return !backing_name_.empty(); }

  ExtentKind unallocated_kind(uint64_t pos) const {
    if (!has_backing()) return ExtentKind::kZero;
    if (backing_ && pos >= backing_->capacity()) return ExtentKind::kZero;
    return ExtentKind::kBacking;
  }
  ExtentKind extent_kind(const Mapping& m, uint64_t pos) const {
    switch (m.kind) {
      case Kind::kUnallocated: return unallocated_kind(pos);
      case Kind::kZeroPlain:
      case Kind::kZeroAllocated: return ExtentKind::kZero;
      default: return ExtentKind::kData;
    }
  }

  // ---- mapping -----------------------------------------------------------------------

  uint64_t l2_offset(uint64_t l1i) const {
    if (l1i >= l1_.size()) corrupt("the L1 table is too small for the virtual size");
    uint64_t off = l1_[l1i] & kOffsetMask;
    if (off & (cs_ - 1)) corrupt("L1 entry " + num(l1i) + " points to an unaligned L2 table");
    return off;
  }

  std::vector<uint8_t>& l2_table(uint64_t off) const {
    if (auto* t = l2cache_.find(off)) return *t;
    if (off + cs_ > file_size_) {
      corrupt("an L2 table at offset " + num(off) + " lies past the end of the file (" + num(file_size_) + " bytes)");
    }
    std::vector<uint8_t> t(cs_);
    file_.read_exact(off, t);
    const_cast<Qcow2Device*>(this)->make_room(l2cache_, true);
    return l2cache_.insert(off, std::move(t), false);
  }

  uint64_t l2_entry(uint64_t g) const {
    uint64_t off = l2_offset(g / l2_entries_);
    if (off == 0) return 0;
    return be64(&l2_table(off)[(g % l2_entries_) * 8]);
  }

  Mapping decode_compressed(uint64_t e) const {
    Mapping m;
    m.kind = Kind::kCompressed;
    unsigned x = 62 - (cbits_ - 8);
    m.host = e & ((1ull << x) - 1);
    uint64_t sectors = ((e >> x) & ((1ull << (62 - x)) - 1)) + 1;
    m.csize = (m.host & ~511ull) + sectors * 512 - m.host;
    return m;
  }

  Mapping mapping(uint64_t g) const {
    uint64_t e = l2_entry(g);
    Mapping m;
    if (e & kCompressed) {
      m = decode_compressed(e);
      if (m.host >= file_size_) {
        corrupt("the compressed cluster for guest offset " + num(g << cbits_) + " points to " + num(m.host) +
                ", past the end of the file (" + num(file_size_) + " bytes)");
      }
      return m;
    }
    m.host = e & kOffsetMask;
    m.copied = (e & kCopied) != 0;
    if (h_.version >= 3 && (e & kZeroFlag)) {
      m.kind = m.host ? Kind::kZeroAllocated : Kind::kZeroPlain;
    } else {
      m.kind = m.host ? Kind::kNormal : Kind::kUnallocated;
    }
    if (m.host) {
      if (m.host & (cs_ - 1)) corrupt("the L2 entry for guest offset " + num(g << cbits_) + " is unaligned");
      if (m.host >= file_size_) {
        corrupt("the L2 entry for guest offset " + num(g << cbits_) + " points to " + num(m.host) +
                ", past the end of the file (" + num(file_size_) + " bytes)");
      }
    }
    return m;
  }

  const std::vector<uint8_t>& decompress(const Mapping& m, uint64_t g) {
    if (zcache_host_ == m.host && !zcache_.empty()) return zcache_;
    zcache_host_ = UINT64_MAX;
    std::vector<uint8_t> in(m.csize);
    data_read(m.host, in);
    zcache_.assign(cs_, 0);
    z_stream z{};
    if (inflateInit2(&z, -15) != Z_OK) throw Error("DISK_IO", "zlib initialisation failed");
    z.next_in = in.data();
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = zcache_.data();
    z.avail_out = static_cast<uInt>(cs_);
    int ret = inflate(&z, Z_FINISH);
    bool ok = (ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0;
    inflateEnd(&z);
    if (!ok) corrupt("the compressed cluster for guest offset " + num(g << cbits_) + " cannot be decompressed");
    zcache_host_ = m.host;
    return zcache_;
  }

  void read_backing(uint64_t off, std::span<uint8_t> buf) {
    if (!backing_) {
      std::memset(buf.data(), 0, buf.size());
      return;
    }
    uint64_t bcap = backing_->capacity();
    uint64_t n = off >= bcap ? 0 : std::min<uint64_t>(buf.size(), bcap - off);
    if (n) backing_->read(off, buf.first(n));
    std::memset(buf.data() + n, 0, buf.size() - n);
  }

  // What guest cluster g reads as now (for copy-on-write of a partial write).
  void cluster_contents(uint64_t g, const Mapping& m, std::vector<uint8_t>& out) {
    out.assign(cs_, 0);
    uint64_t start = g << cbits_;
    uint64_t n = std::min<uint64_t>(cs_, h_.size - start);
    switch (m.kind) {
      case Kind::kUnallocated:
        if (has_backing() && !backing_) {
          throw Error("DISK_UNSUPPORTED", file_.path() + " was opened without its backing file, so a partial write cannot copy the rest of the cluster from it; open it with its backing chain");
        }
        read_backing(start, std::span<uint8_t>(out.data(), n));
        break;
      case Kind::kZeroPlain:
      case Kind::kZeroAllocated: break;
      case Kind::kNormal: data_read(m.host, out); break;
      case Kind::kCompressed: out = decompress(m, g); break;
    }
  }

  bool fully_mapped() const {
    if (l1_.empty() || h_.size == 0) return false;
    uint64_t clusters = div_up(h_.size, cs_);
    std::unordered_map<uint64_t, bool> seen;  // each distinct L2 table is scanned once
    try {
      for (uint64_t l1i = 0; l1i * l2_entries_ < clusters; ++l1i) {
        uint64_t off = l2_offset(l1i);
        if (off == 0) return false;
        if (!seen.emplace(off, true).second) continue;
        const auto& t = l2_table(off);
        uint64_t k = std::min<uint64_t>(l2_entries_, clusters - l1i * l2_entries_);
        for (uint64_t j = 0; j < k; ++j) {
          uint64_t e = be64(&t[j * 8]);
          if ((e & kOffsetMask) == 0 && !(e & kCompressed)) return false;
        }
      }
    } catch (const Error&) {
      return false;
    }
    return true;
  }

  // ---- data I/O ----------------------------------------------------------------------

  bool direct() const { return data_ != nullptr; }

  // Guest data clusters (normal and compressed): through the O_DIRECT descriptor if any.
  void data_read(uint64_t off, std::span<uint8_t> buf) {
    if (direct()) {
      aligned_read(data_->fd(), true, kDirectAlign, off, buf, file_.path());
    } else {
      file_.read_or_zero(off, buf);
    }
  }

  void data_write(uint64_t off, std::span<const uint8_t> buf) {
    if (buf.empty()) return;
    uint64_t end = off + buf.size();
    if (direct()) {
      uint64_t a = off & ~uint64_t(kDirectAlign - 1), z = div_up(end, kDirectAlign) * kDirectAlign;
      hook::before_write(file_.fd(), a, z - a);
      aligned_write(data_->fd(), true, kDirectAlign, off, buf, file_.path());
      end = z;
    } else {
      hook::before_write(file_.fd(), off, buf.size());
      file_.write_all(off, buf);
    }
    phys_size_ = std::max(phys_size_, end);
    unsynced_ = true;
  }

  // Whether the part of guest cluster g a partial write does not cover reads as zeroes
  // with nothing to copy (so a new cluster past the end of the file needs only the bytes
  // written).
  bool rest_reads_zero(uint64_t g, const Mapping& m) const {
    switch (m.kind) {
      case Kind::kZeroPlain:
      case Kind::kZeroAllocated: return true;
      case Kind::kUnallocated: return !has_backing() || (backing_ && (g << cbits_) >= backing_->capacity());
      default: return false;
    }
  }

  // A partial write into new cluster `host`, which lies at or past the end of the file.
  void write_new_partial(uint64_t host, uint64_t in, std::span<const uint8_t> chunk) {
    if (!direct()) {
      data_write(host + in, chunk);
      return;
    }
    // Whole 4 KiB units, zero-padded, so no read-modify-write of what is not there.
    uint64_t a = in & ~uint64_t(kDirectAlign - 1);
    uint64_t z = std::min<uint64_t>(cs_, div_up(in + chunk.size(), kDirectAlign) * kDirectAlign);
    std::memset(bounce_.get() + a, 0, z - a);
    std::memcpy(bounce_.get() + in, chunk.data(), chunk.size());
    data_write(host + a, std::span<const uint8_t>(bounce_.get() + a, z - a));
  }

  // Writes all of cluster `host` for guest cluster g: what g reads as now (mapping m),
  // with chunk at `in` on top.
  void write_whole_cluster(uint64_t g, const Mapping& m, uint64_t host, uint64_t in, std::span<const uint8_t> chunk,
                           std::vector<uint8_t>& cluster) {
    if (chunk.size() == cs_) {
      data_write(host, chunk);
      return;
    }
    cluster_contents(g, m, cluster);
    std::memcpy(cluster.data() + in, chunk.data(), chunk.size());
    if (direct()) {
      std::memcpy(bounce_.get(), cluster.data(), cs_);
      data_write(host, std::span<const uint8_t>(bounce_.get(), cs_));
    } else {
      data_write(host, cluster);
    }
  }

  // ---- metadata writes ---------------------------------------------------------------

  void note_extent(uint64_t off, uint64_t len) {
    file_size_ = std::max(file_size_, off + len);
    file_clusters_ = std::max(file_clusters_, div_up(off + len, cs_));
  }

  // Every metadata write goes through here (buffered descriptor).
  void meta_write(uint64_t off, std::span<const uint8_t> buf) {
    hook::before_write(file_.fd(), off, buf.size());
    file_.write_all(off, buf);
    note_extent(off, buf.size());
    phys_size_ = std::max(phys_size_, off + buf.size());
    unsynced_ = true;
  }

  void sync() {
    hook::before_sync();
    file_.sync();  // fdatasync: the whole file, whichever descriptor wrote it
    hook::after_sync(file_.fd());
    unsynced_ = false;
  }

  void write_cluster(uint64_t host, const std::vector<uint8_t>& data) { meta_write(host, data); }

  void write_feature_fields() {
    uint8_t b[24];
    put64(b, h_.incompatible);
    put64(b + 8, h_.compatible);
    put64(b + 16, h_.autoclear);
    meta_write(72, b);
  }

  void write_size_and_l1() {
    uint8_t b[24];
    put64(b, h_.size);
    put32(b + 8, h_.crypt);
    put32(b + 12, h_.l1_size);
    put64(b + 16, h_.l1_offset);
    meta_write(24, b);
  }

  void write_l1_entry(uint64_t l1i) {
    uint8_t b[8];
    put64(b, l1_[l1i]);
    meta_write(h_.l1_offset + l1i * 8, b);
  }

  // Sets the dirty bit on disk before the first metadata change after an open or a flush.
  void mark_dirty() {
    if (dirty_marked_) return;
    if (h_.version >= 3) {
      h_.incompatible |= kIncDirty;
      h_.autoclear = 0;  // we maintain none of the autoclear features
      write_feature_fields();
      sync();
    }
    dirty_marked_ = true;
  }

  // ---- write-back --------------------------------------------------------------------

  void write_dirty_refblocks() {
    std::vector<uint64_t> offs(rbcache_.dirty().begin(), rbcache_.dirty().end());
    for (uint64_t off : offs) {
      meta_write(off, *rbcache_.peek(off));
      rbcache_.set_dirty(off, false);
    }
  }

  // Writes every dirty L2 table, after what they reference is durable: the refcounts of
  // the clusters they point to and the guest data in them. Returns whether it wrote any.
  bool write_dirty_l2_tables() {
    if (l2cache_.dirty().empty()) return false;
    write_dirty_refblocks();
    if (unsynced_) sync();
    std::vector<uint64_t> offs(l2cache_.dirty().begin(), l2cache_.dirty().end());
    for (uint64_t off : offs) {
      meta_write(off, *l2cache_.peek(off));
      l2cache_.set_dirty(off, false);
    }
    return true;
  }

  // Writes back all cached metadata in the safe order, then applies the releases that
  // waited for it. Leaves the last writes (decremented refcounts) unsynced.
  void write_back() {
    if (read_only_) return;
    bool l1 = !l1_dirty_.empty();
    if (write_dirty_l2_tables() || l1) {
      if (unsynced_) sync();  // new L2 tables before the L1 entries that point to them
    }
    if (l1) {
      write_dirty_refblocks();
      if (unsynced_) sync();
      for (uint64_t i : l1_dirty_) write_l1_entry(i);
      l1_dirty_.clear();
      sync();
    } else {
      write_dirty_refblocks();
    }
    if (!pending_free_.empty()) {
      // The references are gone on disk (written and synced above): release.
      if (unsynced_) sync();
      std::vector<Mapping> frees = std::move(pending_free_);
      pending_free_.clear();
      for (const auto& m : frees) release(m);
      write_dirty_refblocks();
    }
  }

  // Keeps the pending releases bounded between flushes (each holds a cluster).
  void maybe_write_back() {
    if (pending_free_.size() >= kMaxPendingFrees) write_back();
  }

  // A cluster that is no longer referenced once the entry just changed reaches the disk.
  void release_later(const Mapping& m) {
    if (m.kind == Kind::kNormal || m.kind == Kind::kZeroAllocated || m.kind == Kind::kCompressed) {
      if (m.kind == Kind::kCompressed && m.host == zcache_host_) zcache_host_ = UINT64_MAX;
      pending_free_.push_back(m);
    }
  }

  // Makes room in a cache, writing a dirty victim back first.
  void make_room(TableCache& cache, bool l2) {
    while (cache.full()) {
      uint64_t victim = cache.lru();
      if (cache.is_dirty(victim)) {
        if (l2) {
          write_dirty_l2_tables();
        } else {
          meta_write(victim, *cache.peek(victim));
          cache.set_dirty(victim, false);
        }
      }
      cache.erase(victim);
    }
  }

  // Makes sure guest cluster g has an L2 table (allocated and zeroed in the cache; written
  // before the L1 entry that points to it).
  void ensure_l2(uint64_t g) {
    uint64_t l1i = g / l2_entries_;
    uint64_t off = l2_offset(l1i);
    if (off != 0) {
      if (!(l1_[l1i] & kCopied)) {
        throw Error("DISK_UNSUPPORTED", file_.path() + " shares an L2 table with an internal snapshot; Berth cannot write to it");
      }
      return;
    }
    uint64_t t = allocate(1);
    make_room(l2cache_, true);
    l2cache_.insert(t, std::vector<uint8_t>(cs_, 0), true);
    l1_[l1i] = t | kCopied;
    l1_dirty_.insert(l1i);
  }

  void set_l2_entry(uint64_t g, uint64_t e) {
    mark_dirty();
    uint64_t off = l2_offset(g / l2_entries_);
    auto& t = l2_table(off);
    size_t idx = (g % l2_entries_) * 8;
    put64(&t[idx], e);
    l2cache_.set_dirty(off, true);
  }

  void release(const Mapping& m) {
    switch (m.kind) {
      case Kind::kNormal:
      case Kind::kZeroAllocated: unref(m.host, true); break;
      case Kind::kCompressed: {
        uint64_t last = (m.host + m.csize - 1) >> cbits_;
        for (uint64_t c = m.host >> cbits_; c <= last; ++c) unref(c << cbits_, true);
        break;
      }
      default: break;
    }
  }

  // Zeroes [offset, offset+length): whole clusters by metadata, partial ones by writing.
  void zero_range(uint64_t offset, uint64_t length, bool may_unmap) {
    check_writable();
    check_range(offset, length);
    if (length == 0) return;
    uint64_t end = offset + length;
    uint64_t first = div_up(offset, cs_);
    uint64_t last = end == h_.size ? div_up(end, cs_) : end >> cbits_;  // the tail cluster counts whole at the disk's end
    if (first >= last) {
      zero_partial(offset, length);
      return;
    }
    if (offset < (first << cbits_)) zero_partial(offset, (first << cbits_) - offset);
    if ((last << cbits_) < end) zero_partial(last << cbits_, end - (last << cbits_));
    std::vector<Update> updates;
    for (uint64_t g = first; g < last; ++g) {
      uint64_t l1i = g / l2_entries_;
      bool l1_empty = l2_offset(l1i) == 0;
      if (l1_empty && !has_backing() && (may_unmap || h_.version < 3)) {
        g = (l1i + 1) * l2_entries_ - 1;
        continue;
      }
      Mapping m = l1_empty ? Mapping{} : mapping(g);
      if (h_.version < 3) {
        // No zero flag: deallocate when nothing shows through, else write zeroes.
        if (!has_backing() && may_unmap) {
          if (m.kind != Kind::kUnallocated) updates.push_back({g, 0, m});
        } else if (!(m.kind == Kind::kUnallocated && !has_backing())) {
          std::vector<uint8_t> z(std::min<uint64_t>(cs_, h_.size - (g << cbits_)), 0);
          write(g << cbits_, z);
        }
        continue;
      }
      uint64_t entry;
      Mapping old = m;
      if (!may_unmap && (m.kind == Kind::kNormal || m.kind == Kind::kZeroAllocated) && m.copied) {
        entry = m.host | kCopied | kZeroFlag;
        old = Mapping{};
      } else if (!has_backing() && may_unmap) {
        entry = 0;
      } else {
        entry = kZeroFlag;
      }
      if (entry == 0 && m.kind == Kind::kUnallocated) continue;
      if (entry == kZeroFlag && m.kind == Kind::kZeroPlain) continue;
      if (old.kind == Kind::kUnallocated && m.kind == Kind::kZeroAllocated && entry == (m.host | kCopied | kZeroFlag)) continue;
      if (l1_empty) ensure_l2(g);
      updates.push_back({g, entry, old});
    }
    for (const auto& u : updates) {
      set_l2_entry(u.g, u.entry);
      release_later(u.old);
    }
    maybe_write_back();
  }

  // Zeroes parts of clusters by writing zeroes, skipping clusters that already read as zero.
  void zero_partial(uint64_t offset, uint64_t length) {
    while (length > 0) {
      uint64_t n = std::min(length, cs_ - (offset & (cs_ - 1)));
      Mapping m = mapping(offset >> cbits_);
      bool zero = is_zero(m.kind) ||
                  (m.kind == Kind::kUnallocated && (!has_backing() || (backing_ && offset >= backing_->capacity())));
      if (!zero) {
        std::vector<uint8_t> z(n, 0);
        write(offset, z);
      }
      offset += n;
      length -= n;
    }
  }

  // ---- refcounts ---------------------------------------------------------------------

  std::vector<uint8_t>& refblock(uint64_t off) {
    if (auto* t = rbcache_.find(off)) return *t;
    if ((off & (cs_ - 1)) || off == 0 || off + cs_ > file_size_) {
      corrupt("a refcount block at offset " + num(off) + " is unaligned or past the end of the file");
    }
    std::vector<uint8_t> t(cs_);
    file_.read_exact(off, t);
    make_room(rbcache_, false);
    return rbcache_.insert(off, std::move(t), false);
  }

  uint64_t get_entry(const std::vector<uint8_t>& b, uint64_t idx) const {
    if (refbits_ >= 8) {
      uint64_t bytes = refbits_ / 8, v = 0;
      for (uint64_t i = 0; i < bytes; ++i) v = (v << 8) | b[idx * bytes + i];
      return v;
    }
    uint64_t bit = idx * refbits_;
    return (b[bit / 8] >> (bit % 8)) & ((1u << refbits_) - 1);
  }
  // Sets an entry; returns the byte range touched [first, last].
  std::pair<uint64_t, uint64_t> put_entry(std::vector<uint8_t>& b, uint64_t idx, uint64_t v) const {
    if (refbits_ >= 8) {
      uint64_t bytes = refbits_ / 8;
      for (uint64_t i = 0; i < bytes; ++i) b[idx * bytes + i] = uint8_t(v >> (8 * (bytes - 1 - i)));
      return {idx * bytes, idx * bytes + bytes - 1};
    }
    uint64_t bit = idx * refbits_;
    uint8_t mask = uint8_t(((1u << refbits_) - 1) << (bit % 8));
    b[bit / 8] = uint8_t((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
    return {bit / 8, bit / 8};
  }
  uint64_t max_refcount() const { return refbits_ == 64 ? UINT64_MAX : (1ull << refbits_) - 1; }

  uint64_t refblock_offset(uint64_t rbi) const {
    if (rbi >= reftable_.size()) return 0;
    return reftable_[rbi] & ~(cs_ - 1);
  }

  uint64_t refcount(uint64_t c) {
    uint64_t off = refblock_offset(c / rb_entries_);
    if (off == 0) return 0;
    return get_entry(refblock(off), c % rb_entries_);
  }

  // Sets n consecutive refcounts (their blocks must exist) in the cache.
  void set_refcount_range(uint64_t c, uint64_t n, uint64_t v) {
    mark_dirty();
    while (n > 0) {
      uint64_t rbi = c / rb_entries_;
      uint64_t off = refblock_offset(rbi);
      if (off == 0) corrupt("a refcount block is missing for cluster " + num(c));
      auto& b = refblock(off);
      uint64_t idx = c % rb_entries_;
      uint64_t k = std::min(n, rb_entries_ - idx);
      for (uint64_t i = 0; i < k; ++i) put_entry(b, idx + i, v);
      rbcache_.set_dirty(off, true);
      c += k;
      n -= k;
    }
  }

  void unref(uint64_t host, bool punch) {
    uint64_t c = host >> cbits_;
    uint64_t r = refcount(c);
    if (r == 0) corrupt("cluster at offset " + num(c << cbits_) + " is released but its refcount is already 0");
    set_refcount_range(c, 1, r - 1);
    if (r == 1) {
      free_hint_ = std::min(free_hint_, c);
      if (punch && (c << cbits_) < phys_size_) {
        hook::before_write(file_.fd(), c << cbits_, cs_);
        file_.punch_hole(c << cbits_, cs_);
      }
    }
  }

  // Allocates n contiguous free clusters (refcount 1) and returns the first's offset.
  uint64_t allocate(uint64_t n) {
    mark_dirty();
    uint64_t start = std::max<uint64_t>(free_hint_, 1);
    uint64_t c = start, run = 0, run_start = c;
    while (run < n) {
      uint64_t rbi = c / rb_entries_;
      if (rbi >= reftable_.size()) {
        c = grow_reftable(c);
        run = 0;
        continue;
      }
      if (refblock_offset(rbi) == 0) {
        create_refblock(rbi, c);
        ++c;
        run = 0;
        continue;
      }
      if (refcount(c) == 0) {
        if (run == 0) run_start = c;
        ++run;
      } else {
        run = 0;
      }
      ++c;
    }
    set_refcount_range(run_start, n, 1);
    if (run_start == start || n == 1) free_hint_ = std::max(free_hint_, run_start + n);
    note_extent(run_start << cbits_, n << cbits_);
    return run_start << cbits_;
  }

  // A refcount block for index rbi, placed at cluster c inside its own range.
  void create_refblock(uint64_t rbi, uint64_t c) {
    std::vector<uint8_t> b(cs_, 0);
    put_entry(b, c % rb_entries_, 1);
    write_cluster(c << cbits_, b);
    sync();
    reftable_[rbi] = c << cbits_;
    uint8_t e[8];
    put64(e, reftable_[rbi]);
    meta_write(h_.reftable_offset + rbi * 8, e);  // synced before anything it counts is referenced
    make_room(rbcache_, false);
    rbcache_.insert(c << cbits_, std::move(b), false);
  }

  // Moves the refcount table to a larger one at cluster `start` (past the old coverage),
  // with refcount blocks covering the new metadata; returns the next free cluster.
  uint64_t grow_reftable(uint64_t start) {
    uint64_t old_entries = reftable_.size();
    uint64_t entries = std::max(old_entries * 2, start / rb_entries_ + 1);
    uint64_t nb = 0, tc = 0;
    for (;;) {
      tc = div_up(entries * 8, cs_);
      uint64_t first = start / rb_entries_;
      uint64_t last = (start + nb + tc - 1) / rb_entries_;
      uint64_t nb2 = last - first + 1;
      entries = std::max(entries, last + 1);
      if (nb2 == nb && div_up(entries * 8, cs_) == tc) break;
      nb = nb2;
    }
    if (tc * cs_ > kMaxReftableBytes) {
      throw Error("DISK_NO_SPACE", file_.path() + " would need a refcount table larger than 8 MiB; the image cannot grow further");
    }
    uint64_t first = start / rb_entries_;
    uint64_t end = start + nb + tc;
    std::vector<uint64_t> table = reftable_;
    table.resize(tc * cs_ / 8, 0);
    for (uint64_t j = 0; j < nb; ++j) {
      std::vector<uint8_t> b(cs_, 0);
      uint64_t lo = (first + j) * rb_entries_;
      for (uint64_t k = std::max(lo, start); k < std::min(end, lo + rb_entries_); ++k) put_entry(b, k - lo, 1);
      write_cluster((start + j) << cbits_, b);
      table[first + j] = (start + j) << cbits_;
      make_room(rbcache_, false);
      rbcache_.insert((start + j) << cbits_, std::move(b), false);
    }
    std::vector<uint8_t> bytes(tc * cs_, 0);
    for (size_t i = 0; i < table.size(); ++i) put64(&bytes[i * 8], table[i]);
    uint64_t toff = (start + nb) << cbits_;
    write_cluster(toff, bytes);
    sync();
    uint64_t old_off = h_.reftable_offset, old_clusters = h_.reftable_clusters;
    h_.reftable_offset = toff;
    h_.reftable_clusters = static_cast<uint32_t>(tc);
    uint8_t hb[12];
    put64(hb, toff);
    put32(hb + 8, h_.reftable_clusters);
    meta_write(48, hb);
    sync();
    reftable_ = std::move(table);
    for (uint64_t i = 0; i < old_clusters; ++i) unref(old_off + (i << cbits_), true);
    return end;
  }

  size_t old_ext_size() const { return ext_size_; }

  static void append_ext(std::vector<uint8_t>& out, uint32_t type, const std::string& data) {
    size_t at = out.size();
    out.resize(at + 8 + div_up(data.size(), 8) * 8, 0);
    put32(&out[at], type);
    put32(&out[at + 4], static_cast<uint32_t>(data.size()));
    std::memcpy(&out[at + 8], data.data(), data.size());
  }

  File file_;
  bool read_only_;
  Header h_;
  std::vector<uint8_t> header_tail_;
  std::vector<uint8_t> other_exts_;
  std::string backing_name_;
  std::string backing_format_;
  bool has_bitmaps_;
  uint32_t cbits_;
  uint64_t cs_;
  uint64_t l2_entries_;
  uint32_t refbits_;
  uint64_t rb_entries_;
  std::vector<uint64_t> l1_;
  std::vector<uint64_t> reftable_;
  mutable TableCache l2cache_;
  TableCache rbcache_;
  std::unique_ptr<BlockDevice> backing_;
  std::string backing_resolved_;
  uint64_t file_size_ = 0;
  uint64_t file_clusters_ = 0;
  uint64_t free_hint_ = 1;
  bool dirty_marked_ = false;
  bool unsynced_ = false;          // writes since the last sync
#ifdef BERTH_TEST_HOOKS
  std::function<void()> settle_;   // the asynchronous path's, for the crash hook
#endif
  uint64_t phys_size_ = 0;         // bytes the file really spans (file_size_ counts allocations)
  std::set<uint64_t> l1_dirty_;    // L1 entries changed in memory only
  std::vector<Mapping> pending_free_;  // unreferenced in the cache, released after write-back
  std::unique_ptr<File> data_;     // O_DIRECT descriptor for guest data, or null
  AlignedBytes bounce_;            // one cluster, for direct writes built here
  std::vector<uint8_t> zcache_;
  uint64_t zcache_host_ = UINT64_MAX;

 public:
  size_t ext_size_ = 0;  // bytes of the extension area including its end marker
};

// ---- open ----------------------------------------------------------------------------

[[noreturn]] void bad_header(const File& f, const std::string& what) {
  throw Error("DISK_BAD_HEADER", f.path() + " has an invalid qcow2 header: " + what + "; the file is damaged or not a qcow2 image");
}
[[noreturn]] void corrupt_at_open(const File& f, const std::string& what) {
  throw Error("DISK_CORRUPT", f.path() + " is corrupt: " + what + "; repair it with qemu-img check -r all or restore a backup");
}

bool probe_qcow2(const File& file) {
  uint8_t m[4];
  if (file.size() < 4) return false;
  file.read_exact(0, m);
  return be32(m) == kMagic;
}

// Validates the header and reads everything an open needs, without writing.
struct Loaded {
  Parsed parsed;
  std::vector<uint64_t> l1;
  std::vector<uint64_t> reftable;
  size_t ext_size = 0;
};

Loaded load(const File& file) {
  uint64_t fsize = file.size();
  if (fsize < 72) {
    throw Error("DISK_TRUNCATED", file.path() + " is truncated: " + num(fsize) + " bytes, too short for a qcow2 header");
  }
  std::vector<uint8_t> head(std::min<uint64_t>(fsize, 104));
  file.read_exact(0, head);
  if (be32(head.data()) != kMagic) bad_header(file, "the magic is wrong");
  uint32_t version = be32(head.data() + 4);
  if (version != 2 && version != 3) {
    throw Error("DISK_UNSUPPORTED", file.path() + " is qcow2 version " + num(version) + "; Berth reads versions 2 and 3");
  }
  if (version == 3 && fsize < 104) {
    throw Error("DISK_TRUNCATED", file.path() + " is truncated: " + num(fsize) + " bytes, too short for a qcow2 v3 header");
  }
  Loaded L;
  Header& h = L.parsed.h;
  h = parse_header(head.data());
  if (h.cluster_bits < 9 || h.cluster_bits > 21) bad_header(file, "cluster_bits is " + num(h.cluster_bits) + " (must be 9 to 21)");
  uint64_t cs = 1ull << h.cluster_bits;
  if (version == 3) {
    if (h.header_length < 104 || h.header_length > cs || h.header_length % 8 != 0) {
      bad_header(file, "header_length is " + num(h.header_length));
    }
    if (h.refcount_order > 6) bad_header(file, "refcount_order is " + num(h.refcount_order) + " (must be 0 to 6)");
  }
  if (h.crypt != 0) throw Error("DISK_UNSUPPORTED", file.path() + " is encrypted; Berth cannot open encrypted qcow2 images (decrypt it with qemu-img convert)");
  if (h.size > kMaxVirtualSize) bad_header(file, "the virtual size " + num(h.size) + " is impossibly large");
  uint64_t l2_span_bits = 2 * h.cluster_bits - 3;
  uint64_t l1_needed = (h.size >> l2_span_bits) + ((h.size & ((1ull << l2_span_bits) - 1)) != 0);
  if (l1_needed * 8 > kMaxL1Bytes) bad_header(file, "the virtual size " + num(h.size) + " needs a larger L1 table than allowed");
  if (h.l1_size < l1_needed) bad_header(file, "the L1 table (" + num(h.l1_size) + " entries) is too small for the virtual size " + num(h.size));
  if (uint64_t(h.l1_size) * 8 > kMaxL1Bytes) bad_header(file, "the L1 table has " + num(h.l1_size) + " entries (too many)");

  // Everything the header points to must lie inside the file and off the header cluster.
  auto within = [&](uint64_t off, uint64_t len, const std::string& what) {
    if (len == 0) return;
    if (off % cs != 0) corrupt_at_open(file, what + " offset " + num(off) + " is not cluster-aligned");
    if (off < cs) corrupt_at_open(file, what + " at offset " + num(off) + " overlaps the header");
    if (off > fsize || len > fsize - off) {
      corrupt_at_open(file, what + " (offset " + num(off) + ", " + num(len) + " bytes) lies past the end of the file (" + num(fsize) + " bytes)");
    }
  };
  uint64_t l1_bytes = uint64_t(h.l1_size) * 8;
  within(h.l1_offset, l1_bytes, "the L1 table");
  if (h.reftable_clusters == 0) corrupt_at_open(file, "the refcount table is empty");
  uint64_t rt_bytes = uint64_t(h.reftable_clusters) * cs;
  if (rt_bytes > kMaxReftableBytes) corrupt_at_open(file, "the refcount table is " + num(rt_bytes) + " bytes (too large)");
  within(h.reftable_offset, rt_bytes, "the refcount table");
  if (l1_bytes && h.l1_offset < h.reftable_offset + rt_bytes && h.reftable_offset < h.l1_offset + l1_bytes) {
    corrupt_at_open(file, "the L1 table and the refcount table overlap");
  }
  if (h.nb_snapshots > 65536) corrupt_at_open(file, "it claims " + num(h.nb_snapshots) + " snapshots");
  if (h.nb_snapshots) within(h.snapshots_offset, 1, "the snapshot table");

  // Features.
  std::vector<uint8_t> c0(std::min<uint64_t>(fsize, cs));
  file.read_exact(0, c0);
  if (version == 3 && h.header_length > 104) {
    if (h.header_length > c0.size()) throw Error("DISK_TRUNCATED", file.path() + " is truncated inside its header");
    L.parsed.header_tail.assign(c0.begin() + 104, c0.begin() + h.header_length);
  }
  // Header extensions, up to the end marker, inside the first cluster.
  std::vector<std::pair<uint8_t, std::string>> feature_names;  // incompatible features by bit
  uint64_t pos = version == 3 ? h.header_length : 72;
  uint64_t ext_start = pos;
  bool ended = false;
  while (pos + 8 <= c0.size()) {
    uint32_t type = be32(&c0[pos]);
    uint32_t len = be32(&c0[pos + 4]);
    if (type == 0) {
      pos += 8;
      ended = true;
      break;
    }
    uint64_t padded = div_up(len, 8) * 8;
    if (pos + 8 + padded > c0.size()) corrupt_at_open(file, "a header extension runs past the first cluster");
    const uint8_t* d = &c0[pos + 8];
    if (type == kExtBackingFormat) {
      if (len > kMaxBackingName) corrupt_at_open(file, "the backing format name is too long");
      L.parsed.backing_format.assign(reinterpret_cast<const char*>(d), len);
    } else {
      if (type == kExtFeatureTable) {
        for (uint32_t i = 0; i + 48 <= len; i += 48) {
          if (d[i] == 0) {
            const char* name = reinterpret_cast<const char*>(d + i + 2);
            feature_names.push_back({d[i + 1], std::string(name, strnlen(name, 46))});
          }
        }
      } else if (type == kExtBitmaps) {
        L.parsed.has_bitmaps = true;
      }
      L.parsed.other_exts.insert(L.parsed.other_exts.end(), c0.begin() + pos, c0.begin() + pos + 8 + padded);
    }
    pos += 8 + padded;
  }
  if (!ended && c0.size() >= cs) corrupt_at_open(file, "the header extensions have no end marker in the first cluster");
  L.ext_size = ended ? pos - ext_start : L.parsed.other_exts.size() + 8;
  uint64_t unknown = h.incompatible & ~kIncKnown;
  if (unknown) {
    std::string names;
    for (int bit = 0; bit < 64; ++bit) {
      if (!(unknown & (1ull << bit))) continue;
      std::string name = "bit " + num(bit);
      for (auto& [b, n] : feature_names) {
        if (b == bit && !n.empty()) name = n + " (bit " + num(bit) + ")";
      }
      names += (names.empty() ? "" : ", ") + name;
    }
    throw Error("DISK_UNSUPPORTED", file.path() + " uses qcow2 features Berth does not support: " + names +
                                        "; convert it with qemu-img convert -O qcow2 to a plain image");
  }

  // Backing file name.
  if (h.backing_offset != 0 && h.backing_size != 0) {
    if (h.backing_size > kMaxBackingName) {
      throw Error("DISK_BACKING_NAME", file.path() + " records a backing file name of " + num(h.backing_size) +
                                           " bytes; at most 1023 are allowed. The header is damaged");
    }
    if (h.backing_offset > fsize || h.backing_size > fsize - h.backing_offset || h.backing_offset + h.backing_size > cs) {
      corrupt_at_open(file, "the backing file name lies outside the first cluster or past the end of the file");
    }
    L.parsed.backing_name.assign(reinterpret_cast<const char*>(&c0[h.backing_offset]), h.backing_size);
    if (L.parsed.backing_name.find('\0') != std::string::npos) corrupt_at_open(file, "the backing file name contains a NUL byte");
  }

  // Tables.
  if (l1_bytes) {
    std::vector<uint8_t> b(l1_bytes);
    file.read_exact(h.l1_offset, b);
    L.l1.resize(h.l1_size);
    for (size_t i = 0; i < L.l1.size(); ++i) L.l1[i] = be64(&b[i * 8]);
  }
  {
    std::vector<uint8_t> b(rt_bytes);
    file.read_exact(h.reftable_offset, b);
    L.reftable.resize(rt_bytes / 8);
    for (size_t i = 0; i < L.reftable.size(); ++i) L.reftable[i] = be64(&b[i * 8]);
  }
  return L;
}

std::unique_ptr<Qcow2Device> open_device(File file, bool read_only) {
  Loaded L = load(file);
  const Header& h = L.parsed.h;
  if (!read_only) {
    if (h.incompatible & kIncCorrupt) {
      throw Error("DISK_CORRUPT", file.path() + " is marked corrupt; it can be opened read-only only. Repair it with qemu-img check -r all");
    }
    if (h.nb_snapshots) {
      throw Error("DISK_UNSUPPORTED", file.path() + " has internal snapshots; Berth opens such images read-only only (remove them with qemu-img snapshot -d)");
    }
    if (L.parsed.has_bitmaps) {
      throw Error("DISK_UNSUPPORTED", file.path() + " has persistent dirty bitmaps; Berth opens such images read-only only (remove them with qemu-img bitmap --remove)");
    }
    if (h.version >= 3 && h.refcount_order != 4) {
      throw Error("DISK_UNSUPPORTED", file.path() + " uses " + num(1u << h.refcount_order) +
                                          "-bit refcounts; Berth writes 16-bit ones only (open it read-only, or qemu-img amend -o refcount_bits=16)");
    }
  }
  auto dev = std::make_unique<Qcow2Device>(std::move(file), read_only, std::move(L.parsed), std::move(L.l1), std::move(L.reftable));
  dev->ext_size_ = L.ext_size;
  return dev;
}

std::unique_ptr<BlockDevice> open_qcow2(File file, const OpenOptions& options, const BackingOpener& opener) {
  std::string path = file.path();
  auto dev = open_device(std::move(file), options.read_only);
  if (options.direct) {
    // Guest data goes through a second, O_DIRECT descriptor on the same file (metadata
    // I/O is not sector-aligned and stays buffered).
    File direct(path, options.read_only ? File::Mode::kReadOnly : File::Mode::kReadWrite, true);
    struct stat a, b;
    if (::fstat(direct.fd(), &a) != 0 || ::fstat(dev->fd(), &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
      throw Error("DISK_OPEN", path + " was replaced while it was being opened; try again");
    }
    dev->attach_direct(std::move(direct));
  }
  ImageInfo i = dev->info();
  if (!i.backing_path.empty() && opener) {
    auto parent = opener(i.backing_path, "");
    dev->attach_backing(std::move(parent), resolve_backing_path(path, i.backing_path));
  }
  if (!options.read_only && i.dirty) dev->recover_dirty();
  return dev;
}

// ---- create --------------------------------------------------------------------------

void create_qcow2(const std::string& path, const CreateOptions& o) {
  uint64_t cs = o.cluster_size ? o.cluster_size : 65536;
  if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
    throw Error("DISK_UNSUPPORTED", "qcow2 cluster size " + num(cs) + " is not a power of two from 512 bytes to 2 MiB");
  }
  uint32_t cbits = 0;
  while ((1ull << cbits) < cs) ++cbits;
  if (o.backing_path.size() > kMaxBackingName) {
    throw Error("DISK_BACKING_NAME", "the backing file name for " + path + " is " + num(o.backing_path.size()) +
                                         " bytes long; qcow2 allows at most 1023: use a shorter or relative path");
  }
  if (!o.backing_path.empty() && (o.fixed || o.preallocate_metadata)) {
    throw Error("DISK_UNSUPPORTED", "a differencing qcow2 image cannot be preallocated (" + path +
                                        "): preallocated clusters would hide the parent's data");
  }
  uint64_t size = o.size;
  std::string backing_format;
  if (!o.backing_path.empty()) {
    OpenOptions po;
    po.read_only = true;
    auto parent = open_disk(resolve_backing_path(path, o.backing_path), po);
    backing_format = qemu_format_name(parent->info().format);
    if (size == 0) size = parent->capacity();
  }
  size = div_up(size, 512) * 512;
  if (size > kMaxVirtualSize) throw Error("DISK_RANGE", num(size) + " bytes is larger than qcow2 allows");
  uint64_t l1_entries = div_up(size, cs * (cs / 8));
  if (l1_entries * 8 > kMaxL1Bytes) throw Error("DISK_RANGE", num(size) + " bytes is too large for a qcow2 image with " + num(cs) + "-byte clusters");
  uint64_t l1c = std::max<uint64_t>(1, div_up(l1_entries * 8, cs));
  uint64_t rbe = cs * 8 / 16;
  uint64_t nrb = 1, rtc = 1;
  for (;;) {
    uint64_t total = 1 + rtc + nrb + l1c;
    uint64_t nrb2 = div_up(total, rbe);
    uint64_t rtc2 = div_up(nrb2 * 8, cs);
    if (nrb2 == nrb && rtc2 == rtc) break;
    nrb = nrb2;
    rtc = rtc2;
  }
  uint64_t total = 1 + rtc + nrb + l1c;

  Header h;
  h.version = 3;
  h.cluster_bits = cbits;
  h.size = size;
  h.l1_size = static_cast<uint32_t>(l1_entries);
  h.l1_offset = (1 + rtc + nrb) * cs;
  h.reftable_offset = cs;
  h.reftable_clusters = static_cast<uint32_t>(rtc);
  h.refcount_order = 4;
  h.header_length = 104;
  std::vector<uint8_t> c0(cs, 0);
  uint64_t pos = 104;
  if (!backing_format.empty()) {
    put32(&c0[pos], kExtBackingFormat);
    put32(&c0[pos + 4], static_cast<uint32_t>(backing_format.size()));
    std::memcpy(&c0[pos + 8], backing_format.data(), backing_format.size());
    pos += 8 + div_up(backing_format.size(), 8) * 8;
  }
  pos += 8;  // end of extensions
  if (!o.backing_path.empty()) {
    if (pos + o.backing_path.size() > cs) {
      throw Error("DISK_BACKING_NAME", "the backing file name for " + path + " does not fit in a " + num(cs) + "-byte cluster; use a shorter path or larger clusters");
    }
    h.backing_offset = pos;
    h.backing_size = static_cast<uint32_t>(o.backing_path.size());
    std::memcpy(&c0[pos], o.backing_path.data(), o.backing_path.size());
  }
  serialize_header(h, c0.data());

  std::vector<uint8_t> meta((total - 1) * cs, 0);
  for (uint64_t i = 0; i < nrb; ++i) put64(&meta[i * 8], (1 + rtc + i) * cs);
  for (uint64_t c = 0; c < total; ++c) {
    uint8_t* b = &meta[(rtc + c / rbe) * cs + (c % rbe) * 2];
    b[0] = 0;
    b[1] = 1;
  }
  {
    File f(path, File::Mode::kCreateExclusive);
    try {
      f.write_all(0, c0);
      f.write_all(cs, meta);
      f.sync();
    } catch (...) {
      ::unlink(path.c_str());
      throw;
    }
  }
  if (o.fixed || o.preallocate_metadata) {
    try {
      auto dev = open_device(File(path, File::Mode::kReadWrite), false);
      dev->preallocate(o.fixed);
    } catch (...) {
      ::unlink(path.c_str());
      throw;
    }
  }
}

[[maybe_unused]] const bool registered = register_driver({Format::kQcow2, 10, probe_qcow2, open_qcow2, create_qcow2});

}  // namespace
}  // namespace berth::disk
