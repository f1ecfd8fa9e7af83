#include "worker/picture_scale.h"

#include <algorithm>

namespace berth::worker {

Picture shrink_picture(uint32_t width, uint32_t height, std::span<const uint8_t> rgb, uint32_t max_width) {
  Picture out;
  if (width == 0 || height == 0 || rgb.size() < uint64_t{width} * height * 3) return out;
  if (max_width == 0 || width <= max_width) {
    out.width = width;
    out.height = height;
    out.rgb.assign(rgb.begin(), rgb.begin() + static_cast<ptrdiff_t>(uint64_t{width} * height * 3));
    return out;
  }
  out.width = max_width;
  out.height = std::max<uint32_t>(1, static_cast<uint32_t>(uint64_t{height} * max_width / width));
  out.rgb.resize(uint64_t{out.width} * out.height * 3);
  // Box filter: output pixel (x, y) averages source columns [x*W/w, (x+1)*W/w) and rows
  // [y*H/h, (y+1)*H/h), each range at least one pixel wide.
  uint8_t* o = out.rgb.data();
  for (uint32_t y = 0; y < out.height; ++y) {
    const uint32_t y0 = static_cast<uint32_t>(uint64_t{y} * height / out.height);
    const uint32_t y1 = std::max(y0 + 1, static_cast<uint32_t>(uint64_t{y + 1} * height / out.height));
    for (uint32_t x = 0; x < out.width; ++x) {
      const uint32_t x0 = static_cast<uint32_t>(uint64_t{x} * width / out.width);
      const uint32_t x1 = std::max(x0 + 1, static_cast<uint32_t>(uint64_t{x + 1} * width / out.width));
      uint64_t sum[3] = {0, 0, 0};
      for (uint32_t sy = y0; sy < y1; ++sy) {
        const uint8_t* p = rgb.data() + (uint64_t{sy} * width + x0) * 3;
        for (uint32_t sx = x0; sx < x1; ++sx, p += 3) {
          sum[0] += p[0];
          sum[1] += p[1];
          sum[2] += p[2];
        }
      }
      const uint64_t n = uint64_t{y1 - y0} * (x1 - x0);
      for (uint64_t s : sum) *o++ = static_cast<uint8_t>((s + n / 2) / n);
    }
  }
  return out;
}

}  // namespace berth::worker
