// Guest RAM as a saved memory image: the RAM regions one after another, with holes where
// a page is zero or was never touched, so the image costs only the memory the guest used
// and a resumed VM can map it (GuestMemory(size, MemoryImage)) instead of reading it.
#pragma once

#include <cstdint>

#include "vmm/guest_memory.h"

namespace berth::vmm {

struct MemoryImageStats {
  uint64_t bytes_written = 0;  // non-zero pages written
  uint64_t bytes_skipped = 0;  // never touched or zero: left as holes
};

// Writes `memory` at `offset` of `fd`, whose file must already be at least offset +
// memory.size() long and read as zeroes there (a fresh ftruncate). Throws berth::Error
// STATE_IO naming the failure. The vCPUs and devices must not write guest memory meanwhile.
MemoryImageStats write_memory_image(const GuestMemory& memory, int fd, uint64_t offset);

// The same without allocating or throwing, for a child process forked to write a snapshot
// of memory while the VM runs on (only system calls are safe there). `resident` holds
// kMemoryImageScratchBytes. Returns 0 or the errno of the failed call.
constexpr size_t kMemoryImageScratchBytes = 512;  // one byte per page of a 2 MiB chunk
int write_memory_image_raw(const GuestMemory& memory, int fd, uint64_t offset, unsigned char* resident,
                           MemoryImageStats& stats) noexcept;

}  // namespace berth::vmm
