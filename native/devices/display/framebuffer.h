// What the rest of the VMM reads of a display: the current mode, its pixels, and what
// changed since it last asked. Changes come from the hypervisor's log of written pages of
// the framebuffer's memory slot (cheap: no copy, no compare); without a log (no slot
// mapped yet, or the guest wrote through the slow path) the whole picture counts as changed.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "devices/display/bochs_display.h"
#include "devices/display/dirty_rects.h"
#include "devices/display/display_mode.h"

namespace berth::devices::display {

class Framebuffer {
 public:
  // Fills `bitmap` with the pages of video memory written since the last call (hv's
  // take_written_pages of the framebuffer's slot) and returns true, or returns false when
  // there is no log to read (then everything counts as changed).
  using WrittenPagesSource = std::function<bool(std::span<uint64_t> bitmap)>;
  static constexpr uint64_t kPageSize = 4096;

  explicit Framebuffer(BochsDisplay& display) : display_(display) {}

  // The machine sets (or clears) the source whenever it maps or unmaps the slot.
  void set_written_pages_source(WrittenPagesSource source);

  struct Changes {
    DisplayMode mode;
    uint64_t mode_generation = 0;
    bool full = false;        // everything changed (a new mode, the first call, no log)
    std::vector<Rect> rects;  // what to redraw
  };
  // What changed since the previous call.
  Changes changes();

  DisplayMode mode() const { return display_.mode(); }
  uint64_t mode_generation() const { return display_.mode_generation(); }
  // All of video memory: a mode's first pixel is at mode.offset, rows mode.stride apart.
  // The guest writes it concurrently; readers may see a picture half drawn.
  std::span<const uint8_t> video_memory() const { return display_.video_memory().bytes(); }

 private:
  BochsDisplay& display_;
  std::mutex mu_;
  WrittenPagesSource source_;
  bool seen_any_ = false;
  uint64_t seen_generation_ = 0;
  std::vector<uint64_t> bitmap_;
};

// The visible picture of `mode` as 8-bit R, G, B triples, row after row (width * 3 bytes a
// row). Empty for a disabled mode or one that does not fit `video_memory`.
std::vector<uint8_t> to_rgb24(const DisplayMode& mode, std::span<const uint8_t> video_memory);

}  // namespace berth::devices::display
