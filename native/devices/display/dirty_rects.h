// From "which pages of video memory were written" (the hypervisor's log, one bit a page)
// to "which parts of the picture changed": rows touching a written page, grouped into
// bands of consecutive rows, each band spanning the columns its written pages cover.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "devices/display/display_mode.h"

namespace berth::devices::display {

struct Rect {
  uint32_t x = 0, y = 0, width = 0, height = 0;
  bool operator==(const Rect&) const = default;
};

// Bit i of `bitmap` (64 a word, least significant first) is page i, `page_size` bytes
// from the start of video memory; pages past the bitmap count as unwritten. Returns no
// rectangles for a disabled mode or a zero page size. Rectangles are in top-to-bottom
// order and do not overlap.
std::vector<Rect> dirty_rects(const DisplayMode& mode, std::span<const uint64_t> bitmap, uint64_t page_size);

// The whole picture as one rectangle (none for a disabled mode).
std::vector<Rect> full_rect(const DisplayMode& mode);

}  // namespace berth::devices::display
