#include "devices/display/framebuffer.h"

namespace berth::devices::display {

void Framebuffer::set_written_pages_source(WrittenPagesSource source) {
  std::lock_guard<std::mutex> lock(mu_);
  source_ = std::move(source);
}

Framebuffer::Changes Framebuffer::changes() {
  std::lock_guard<std::mutex> lock(mu_);
  Changes c;
  c.mode_generation = display_.mode_generation();
  c.mode = display_.mode();
  bitmap_.assign((display_.video_memory().size() / kPageSize + 63) / 64, 0);
  // Always drain the log, so pages written before a full redraw are not reported again.
  const bool logged = source_ && source_(bitmap_);
  const bool unlogged = display_.take_unlogged_writes();
  c.full = !seen_any_ || c.mode_generation != seen_generation_ || !logged || unlogged;
  seen_any_ = true;
  seen_generation_ = c.mode_generation;
  c.rects = c.full ? full_rect(c.mode) : dirty_rects(c.mode, bitmap_, kPageSize);
  return c;
}

std::vector<uint8_t> to_rgb24(const DisplayMode& mode, std::span<const uint8_t> vram) {
  std::vector<uint8_t> out;
  if (!mode.enabled || mode.offset + mode.size() > vram.size()) return out;
  out.resize(uint64_t{mode.width} * mode.height * 3);
  uint8_t* o = out.data();
  for (uint32_t y = 0; y < mode.height; ++y) {
    const uint8_t* row = vram.data() + mode.offset + uint64_t{y} * mode.stride;
    for (uint32_t x = 0; x < mode.width; ++x) {
      if (mode.bpp == 32) {
        const uint8_t* p = row + 4 * x;
        if (mode.big_endian) {  // x, r, g, b
          *o++ = p[1], *o++ = p[2], *o++ = p[3];
        } else {  // b, g, r, x
          *o++ = p[2], *o++ = p[1], *o++ = p[0];
        }
      } else {  // 16 bpp: r5 g6 b5, little endian
        const uint16_t v = static_cast<uint16_t>(row[2 * x] | row[2 * x + 1] << 8);
        const uint32_t r = (v >> 11) & 0x1f, g = (v >> 5) & 0x3f, b = v & 0x1f;
        *o++ = static_cast<uint8_t>(r << 3 | r >> 2);
        *o++ = static_cast<uint8_t>(g << 2 | g >> 4);
        *o++ = static_cast<uint8_t>(b << 3 | b >> 2);
      }
    }
  }
  return out;
}

}  // namespace berth::devices::display
