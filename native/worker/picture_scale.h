// Shrinks a screenshot for a thumbnail (the worker's screenshot op with maxWidth): the
// window's Details pane shows a VM's screen a few hundred pixels wide, once a second.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace berth::worker {

// An 8-bit RGB picture, row after row.
struct Picture {
  uint32_t width = 0;
  uint32_t height = 0;
  std::vector<uint8_t> rgb;
};

// `rgb` (width * height triples) no wider than max_width, with the same aspect ratio (at
// least one row): each pixel the average of the source pixels it covers. A picture narrow
// enough comes back as it is.
Picture shrink_picture(uint32_t width, uint32_t height, std::span<const uint8_t> rgb, uint32_t max_width);

}  // namespace berth::worker
