#include "devices/display/display_mode.h"

namespace berth::devices::display {

DisplayMode mode_from_registers(const DispiRegisters& regs, uint64_t video_memory_bytes, bool big_endian) {
  DisplayMode m;
  if (!(regs[dispi::kEnable] & dispi::kEnabled)) return {};
  const uint32_t bpp = regs[dispi::kBpp];
  if (bpp != 16 && bpp != 32) return {};
  const uint32_t width = regs[dispi::kXres], height = regs[dispi::kYres];
  if (width < kMinModeSide || height < kMinModeSide || width > kMaxModeSide || height > kMaxModeSide) return {};
  uint32_t virt_width = regs[dispi::kVirtWidth];
  if (virt_width < width) virt_width = width;
  m.bpp = bpp;
  m.width = width;
  m.height = height;
  m.stride = virt_width * (bpp / 8);  // at most 65535 * 4
  m.offset = uint64_t{regs[dispi::kXOffset]} * (bpp / 8) + uint64_t{regs[dispi::kYOffset]} * m.stride;
  m.big_endian = bpp == 32 && big_endian;
  // The last visible row ends at offset + stride * (height - 1) + width * bytes per pixel;
  // like QEMU, ask for whole rows (stride * height) to fit.
  if (m.offset + m.size() > video_memory_bytes) return {};
  m.enabled = true;
  return m;
}

}  // namespace berth::devices::display
