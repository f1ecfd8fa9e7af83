#include "devices/display/dirty_rects.h"

#include <algorithm>

namespace berth::devices::display {

namespace {

bool written(std::span<const uint64_t> bitmap, uint64_t page) {
  const uint64_t word = page / 64;
  return word < bitmap.size() && ((bitmap[word] >> (page % 64)) & 1);
}

}  // namespace

std::vector<Rect> full_rect(const DisplayMode& mode) {
  if (!mode.enabled) return {};
  return {Rect{0, 0, mode.width, mode.height}};
}

std::vector<Rect> dirty_rects(const DisplayMode& mode, std::span<const uint64_t> bitmap, uint64_t page_size) {
  std::vector<Rect> out;
  if (!mode.enabled || page_size == 0 || mode.bytes_per_pixel() == 0) return out;
  const uint64_t bpp = mode.bytes_per_pixel();
  const uint64_t row_bytes = uint64_t{mode.width} * bpp;
  bool in_band = false;
  Rect band;
  uint32_t band_right = 0;
  for (uint32_t y = 0; y < mode.height; ++y) {
    const uint64_t start = mode.offset + uint64_t{y} * mode.stride;
    const uint64_t end = start + row_bytes;  // exclusive
    uint64_t lo = row_bytes, hi = 0;         // written byte range within the row
    for (uint64_t page = start / page_size; page * page_size < end; ++page) {
      if (!written(bitmap, page)) continue;
      lo = std::min(lo, std::max(page * page_size, start) - start);
      hi = std::max(hi, std::min((page + 1) * page_size, end) - start);
    }
    if (hi > lo) {
      const auto left = static_cast<uint32_t>(lo / bpp);
      const auto right = static_cast<uint32_t>((hi + bpp - 1) / bpp);
      if (!in_band) {
        band = Rect{left, y, 0, 0};
        band_right = right;
        in_band = true;
      } else {
        band.x = std::min(band.x, left);
        band_right = std::max(band_right, right);
      }
      band.height = y - band.y + 1;
    } else if (in_band) {
      band.width = band_right - band.x;
      out.push_back(band);
      in_band = false;
    }
  }
  if (in_band) {
    band.width = band_right - band.x;
    out.push_back(band);
  }
  return out;
}

}  // namespace berth::devices::display
