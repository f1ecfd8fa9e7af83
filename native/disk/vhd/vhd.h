// VHD (Virtual PC / Hyper-V "vpc") images: fixed, dynamic and differencing disks (parent
// located by its W2ru/W2ku locators, checked by unique id), resize (grow and shrink).
#pragma once

#include <cstdint>

namespace berth::disk::vhd {

struct Geometry {
  uint16_t cylinders = 0;
  uint8_t heads = 0;
  uint8_t sectors_per_track = 0;
  uint64_t sectors() const { return uint64_t(cylinders) * heads * sectors_per_track; }
};

// CHS geometry for a disk of total_sectors, per the VHD specification's algorithm.
Geometry chs_for(uint64_t total_sectors);
// The geometry Berth records on create: the specification's CHS when it covers the size
// exactly, else the maximum geometry (65535/16/255), which tells readers (qemu among
// them) to use the footer's current size rather than the geometry.
Geometry geometry_for_create(uint64_t size);

constexpr uint32_t kDefaultBlockSize = 2u << 20;
constexpr uint64_t kMaxSize = 2040ull << 30;  // 0xff000000 sectors

}  // namespace berth::disk::vhd
