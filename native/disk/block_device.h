// One block interface for every disk format Berth reads and writes. virtio-blk, the
// operations (convert, compact, ...) and the addon see only this.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "disk/async_queue.h"

namespace berth::disk {

class AsyncDisk;

enum class Format { kRaw, kQcow2, kVhdx, kVhd, kHostDevice };
const char* format_name(Format format);  // "raw", "qcow2", "vhdx", "vpc" is qemu's name; ours: "vhd", "host-device"

// What a range of the virtual disk holds, as reported by block_status.
enum class ExtentKind {
  kData,          // allocated in this image (or, for raw, not a hole)
  kZero,          // reads as zeroes, known without reading (zero cluster, hole, unallocated without backing)
  kBacking,       // not allocated here: reads come from the backing image
};

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  ExtentKind kind = ExtentKind::kData;
};

// Facts about one image file (not its backing chain).
struct ImageInfo {
  Format format = Format::kRaw;
  std::string path;
  uint64_t virtual_size = 0;
  uint64_t file_size = 0;          // bytes the file spans
  uint64_t allocated_bytes = 0;    // bytes the host actually stores (st_blocks * 512)
  std::string subformat;           // "dynamic", "fixed", "differencing", "preallocated", ...
  std::string backing_path;        // as recorded in the image ("" if none)
  std::string backing_resolved;    // absolute path it resolved to ("" if none or not opened)
  bool dirty = false;              // the image says it was not closed cleanly
  bool corrupt = false;            // the image says its metadata is inconsistent
  uint32_t cluster_size = 0;       // allocation unit (cluster / block), 0 for raw
};

struct CheckReport {
  uint64_t leaked_clusters = 0;    // allocated but unreferenced (safe to reclaim)
  uint64_t corruptions = 0;        // references that are wrong (not repaired automatically)
  uint64_t repaired = 0;
  std::vector<std::string> problems;  // human-readable, one per finding (capped)
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t capacity() const = 0;  // virtual size in bytes
  virtual bool read_only() const = 0;
  virtual uint32_t logical_block_size() const { return 512; }

  // Byte-granular I/O inside [0, capacity); throws berth::Error DISK_RANGE outside it and
  // DISK_READ_ONLY for writes to a read-only disk. Sector-aligned requests take fast paths.
  virtual void read(uint64_t offset, std::span<uint8_t> buf) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> buf) = 0;
  // Scatter-gather: consecutive buffers starting at offset. The defaults loop.
  virtual void readv(uint64_t offset, std::span<const std::span<uint8_t>> bufs);
  virtual void writev(uint64_t offset, std::span<const std::span<const uint8_t>> bufs);

  // Makes every completed write durable, data and metadata.
  virtual void flush() = 0;
  // After discard, the range reads as zeroes; storage may be released.
  virtual void discard(uint64_t offset, uint64_t length) = 0;
  // The range reads as zeroes afterwards; with may_unmap, storage may be released.
  virtual void write_zeroes(uint64_t offset, uint64_t length, bool may_unmap) = 0;

  // The extent that starts at offset (at most length bytes long), for sparse copies.
  virtual Extent block_status(uint64_t offset, uint64_t length) = 0;

  virtual ImageInfo info() const = 0;
  // The image this one reads unallocated ranges from, or nullptr.
  virtual BlockDevice* backing() const { return nullptr; }

  // An asynchronous path to the data (disk/async_disk.h) with at most depth requests in
  // flight. Formats without a parallel path get the default: their synchronous calls on a
  // thread of their own (disk/serial_async_disk.h), whatever backend was asked for.
  virtual std::unique_ptr<AsyncDisk> open_async(unsigned depth, AsyncBackend backend = AsyncBackend::kAuto);

  // Format-specific maintenance, used by the Edit Disk operations. The defaults throw
  // DISK_UNSUPPORTED naming the format.
  virtual void resize(uint64_t new_capacity);
  virtual void set_backing(const std::string& recorded_path, std::unique_ptr<BlockDevice> backing);
  virtual CheckReport check(bool repair);
};

struct OpenOptions {
  bool read_only = false;
  bool direct = false;          // O_DIRECT where the filesystem allows it
  bool open_backing = true;     // open the backing chain (false: inspect the file alone)
  uint32_t max_chain_depth = 64;
};

struct CreateOptions {
  Format format = Format::kQcow2;
  uint64_t size = 0;                 // virtual size in bytes (ignored with a backing file: inherited unless set)
  bool fixed = false;                // fully allocated (VHD/VHDX fixed, qcow2/raw preallocation=full)
  bool preallocate_metadata = false; // qcow2 preallocation=metadata
  std::string backing_path;          // differencing disk over this parent (recorded as given)
  uint32_t cluster_size = 0;         // 0 = the format's default
};

// Opens an image, probing its format by magic bytes (never by file name), and its backing
// chain (relative paths resolve against the child's folder; depth-limited; loops refused).
std::unique_ptr<BlockDevice> open_disk(const std::string& path, const OpenOptions& options = {});
// Creates a new image; refuses to overwrite an existing file (DISK_EXISTS).
void create_disk(const std::string& path, const CreateOptions& options);
Format probe_format(const std::string& path);

}  // namespace berth::disk
