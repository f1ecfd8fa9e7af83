// Saved state of the bochs display. Video memory goes into the record itself, up to its
// last page that is not all zero: simpler than a second memory image, and small (a
// 1920x1080 console is 8 MiB at most, an unused display a few bytes).
#include <algorithm>
#include <cstring>

#include "devices/display/bochs_display.h"

namespace berth::devices::display {

namespace {

constexpr uint64_t kStatePage = 4096;

uint32_t used_pages(const VideoMemory& vram) {
  const uint8_t* p = vram.data();
  for (uint64_t page = vram.size() / kStatePage; page > 0; --page) {
    const uint8_t* at = p + (page - 1) * kStatePage;
    if (at[0] != 0 || std::memcmp(at, at + 1, kStatePage - 1) != 0) return static_cast<uint32_t>(page);
  }
  return 0;
}

}  // namespace

void BochsDisplay::save_state(state::Writer& w) const {
  const size_t token = w.begin("bochs-display", 1);
  PciFunction::save_state(w);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint16_t r : regs_) w.u16(r);
    w.boolean(big_endian_);
  }
  const uint32_t pages = used_pages(vram_);
  w.u32(pages);
  w.bytes(vram_.bytes().first(uint64_t{pages} * kStatePage));
  w.end(token);
}

void BochsDisplay::load_state(state::Reader& parent) {
  auto rec = parent.record("bochs-display", 1);
  state::Reader& r = rec.body;
  // The PCI record applies itself; keep what it replaces in case a later field is refused.
  state::Writer backup;
  PciFunction::save_state(backup);
  DispiRegisters regs{};
  bool big_endian = false;
  std::span<const uint8_t> pixels;
  try {
    PciFunction::load_state(r);
    for (auto& reg : regs) reg = r.u16("dispi_register");
    big_endian = r.boolean("big_endian");
    const uint32_t pages = r.count(static_cast<uint32_t>(vram_.size() / kStatePage), "video_memory_pages");
    pixels = r.bytes(uint64_t{pages} * kStatePage, "video_memory");
    r.expect_end();
  } catch (...) {
    state::Reader undo(backup.data(), "bochs-display backup");
    PciFunction::load_state(undo);
    throw;
  }
  std::memcpy(vram_.data(), pixels.data(), pixels.size());
  std::memset(vram_.data() + pixels.size(), 0, vram_.size() - pixels.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    regs_ = regs;
    big_endian_ = big_endian;
    update_mode_locked();
  }
  unlogged_writes_ = true;  // the whole picture is new to a reader
  check_framebuffer_moved();
}

}  // namespace berth::devices::display
