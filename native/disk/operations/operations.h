// The Edit Disk operations (inspect, check, convert, expand, shrink, compact, merge,
// reconnect), written only against BlockDevice / open_disk / create_disk so they work for
// every registered format. Format specifics go through BlockDevice::resize, set_backing
// and check.
//
// Long operations take an OperationControl: cancelling it makes the operation stop at the
// next block and throw berth::Error DISK_CANCELLED. Operations that produce a new file
// write it as "<target>.partial-<random>" in the target's folder and rename it into place
// only on success; on failure or cancellation the partial file is removed and the source
// is left as it was.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "disk/block_device.h"

namespace berth::disk::ops {

struct OperationControl {
  std::atomic<bool> cancelled{false};
  // Called from the thread running the operation with (done_bytes, total_bytes), at most
  // every ~1% of total or 100 ms, and once at the end with done == total.
  std::function<void(uint64_t done, uint64_t total)> progress;

  void cancel() { cancelled.store(true); }
};

// The image and, in order, each image of its backing chain. When the chain cannot be
// opened, images holds the image itself (opened alone) and chain_error_* say why.
struct InspectResult {
  std::vector<ImageInfo> images;
  std::string chain_error_code;
  std::string chain_error;
  // The asynchronous path a VM's disk device would take to the data (disk/async_disk.h):
  // "io_uring", "threads" or "serial", and why it is not io_uring ("" when it is). Empty
  // when the chain could not be opened.
  std::string io_backend;
  std::string io_fallback_reason;
};

InspectResult inspect(const std::string& path);

// Checks the image's own metadata (not its parents'); repair opens it writable.
CheckReport check(const std::string& path, bool repair);

struct ConvertOptions {
  CreateOptions target;         // format, fixed, cluster_size, preallocate_metadata; size and
                                // backing_path are filled in by convert
  bool keep_backing = false;    // the target keeps the source's backing file (copies only the
                                // source's own blocks); otherwise it is standalone
};

// Copies the virtual disk at src (the whole chain view) into a new image at dst.
// Sparse-preserving: zero extents and all-zero blocks are not written.
void convert(const std::string& src, const std::string& dst, const ConvertOptions& options,
             OperationControl* control = nullptr);

// Grows the virtual disk to new_size bytes (a multiple of 512, larger than now).
void expand(const std::string& path, uint64_t new_size);
// The smallest size shrink accepts: the end of the last block holding data in the chain
// view, rounded up to 512 bytes (at least 512).
uint64_t min_shrink_size(const std::string& path, OperationControl* control = nullptr);
// Shrinks the virtual disk; refuses (DISK_SHRINK_TOO_SMALL, naming the smallest allowed
// size) to cut off blocks that hold data.
void shrink(const std::string& path, uint64_t new_size, OperationControl* control = nullptr);

// Rewrites the image without its zeroed and discarded blocks (same format, options and
// backing reference) and atomically replaces the original.
void compact(const std::string& path, OperationControl* control = nullptr);

// Writes the child's own blocks (data and zeroes) into its backing parent, flushes it and
// removes the child file (Hyper-V "merge into parent"). The parent is grown first if the
// child is larger. Cancelling leaves the child in place; the chain (child over parent)
// still reads the same, though the parent alone has some of the child's blocks.
void merge_into_parent(const std::string& child, OperationControl* control = nullptr);
// Writes the whole chain view of child into a new standalone disk ("merge into a new disk").
void merge_into_new(const std::string& child, const std::string& new_path, const CreateOptions& target,
                    OperationControl* control = nullptr);

// Points child at a new parent of the same virtual size. The recorded path is relative to
// the child's folder when the parent lies inside it, else absolute. Returns that path.
std::string reconnect(const std::string& child, const std::string& new_parent);

// The path a child at child_path records for parent_path (the rule reconnect uses).
std::string backing_reference(const std::string& child_path, const std::string& parent_path);

}  // namespace berth::disk::ops
