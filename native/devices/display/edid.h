// The EDID 1.4 base block the display reports at offset 0 of its MMIO BAR (VESA E-EDID
// A2). SeaBIOS's bochs-display ROM takes the screen size from the first detailed timing,
// OVMF and Linux read the block as a monitor's. It describes a 1920x1080 digital panel
// (the preferred timing, CEA-861 1080p60), the established 640x480, 800x600 and 1024x768
// modes, a few standard 16:9, 16:10 and 5:4 modes up to 1920x1080, range limits and the
// name "Berth Display". No extension blocks.
#pragma once

#include <array>
#include <cstdint>

namespace berth::devices::display {

constexpr uint32_t kEdidBlockSize = 128;
constexpr uint32_t kPreferredWidth = 1920;
constexpr uint32_t kPreferredHeight = 1080;

std::array<uint8_t, kEdidBlockSize> build_edid();

}  // namespace berth::devices::display
