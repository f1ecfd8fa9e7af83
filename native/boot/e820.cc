#include "boot/e820.h"

#include <algorithm>

#include "boot/acpi.h"
#include "boot/layout.h"

namespace berth::boot {

std::vector<E820Entry> build_e820(const vmm::GuestMemory& mem) {
  std::vector<E820Entry> out;
  uint64_t low_end = 0;
  for (const auto& r : mem.regions()) {
    if (r.gpa == 0) low_end = r.size;
  }
  if (low_end > 0) out.push_back({0, std::min(low_end, kEbdaAddr), kE820Ram});
  out.push_back({kEbdaAddr, kEbdaEnd - kEbdaAddr, kE820Reserved});
  // ACPI tables (0xe0000) and the BIOS area with the large MP table (0xf0000).
  out.push_back({kAcpiAddr, kBiosAreaEnd - kAcpiAddr, kE820Reserved});
  if (low_end > kBootAreaEnd) out.push_back({kBootAreaEnd, low_end - kBootAreaEnd, kE820Ram});
  for (const auto& r : mem.regions()) {
    if (r.gpa >= kBootAreaEnd) out.push_back({r.gpa, r.size, kE820Ram});
  }
  return out;
}

}  // namespace berth::boot
