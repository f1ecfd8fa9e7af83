// The guest's physical memory map (e820 for Linux, the same entries for the PVH memmap),
// derived from the GuestMemory RAM regions and the fixed layout in layout.h.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/guest_memory.h"

namespace berth::boot {

constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kE820Reserved = 2;

struct E820Entry {
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t type = 0;
};

// [0, 0x9fc00) RAM, [0x9fc00, 0xa0000) reserved (EBDA / MP table), [0xf0000, 0x100000)
// reserved (BIOS area), [1 MiB, low RAM end) RAM, and every RAM region above 4 GiB.
// RAM entries are clipped to the RAM that exists; entries come sorted by address.
std::vector<E820Entry> build_e820(const vmm::GuestMemory& mem);

}  // namespace berth::boot
