// The picture a bochs-display shows, derived from its VBE DISPI registers the way QEMU's
// bochs-display derives it: enabled, 16 or 32 bits per pixel, at least 64x64, the
// virtual width (at least the visible width) sets the stride, the x/y offsets pick the
// first visible pixel, and all of it must lie inside video memory. Anything else shows no
// picture (the registers keep what the guest wrote; the mode is simply not valid).
#pragma once

#include <array>
#include <cstdint>

namespace berth::devices::display {

// VBE DISPI register indices (Bochs VBE interface, as QEMU's bochs-vbe.h numbers them).
namespace dispi {
constexpr uint32_t kId = 0, kXres = 1, kYres = 2, kBpp = 3, kEnable = 4, kBank = 5, kVirtWidth = 6,
                   kVirtHeight = 7, kXOffset = 8, kYOffset = 9;
constexpr uint32_t kStoredCount = 10;      // ID..Y_OFFSET are storage
constexpr uint32_t kVideoMemory64K = 10;   // read-only: video memory in 64 KiB units
constexpr uint32_t kRegisterCount = 11;
constexpr uint16_t kId5 = 0xb0c5;
constexpr uint16_t kEnabled = 0x01;
}  // namespace dispi

constexpr uint32_t kMinModeSide = 64;
constexpr uint32_t kMaxModeSide = 8192;  // beyond what 16 MiB holds anyway; keeps sums small

using DispiRegisters = std::array<uint16_t, dispi::kStoredCount>;

struct DisplayMode {
  bool enabled = false;   // false: no valid mode, nothing to show
  uint32_t width = 0;     // pixels
  uint32_t height = 0;
  uint32_t bpp = 0;       // 16 (RGB 5:6:5) or 32 (x8r8g8b8)
  uint32_t stride = 0;    // bytes from one row to the next
  uint64_t offset = 0;    // byte offset of the top-left pixel in video memory
  bool big_endian = false;  // 32 bpp only: bytes x, r, g, b instead of b, g, r, x

  uint32_t bytes_per_pixel() const { return bpp / 8; }
  // Bytes from the first pixel to the end of the last row.
  uint64_t size() const { return uint64_t{stride} * height; }
  bool operator==(const DisplayMode&) const = default;
};

// The mode the registers select inside `video_memory_bytes` (enabled false if none).
DisplayMode mode_from_registers(const DispiRegisters& regs, uint64_t video_memory_bytes, bool big_endian);

}  // namespace berth::devices::display
