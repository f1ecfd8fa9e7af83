// Where the graphical console's keyboard and pointer go: the machine's input devices (the
// PS/2 keyboard and mouse, or an absolute tablet). Called on the VNC server's thread, so
// implementations must be thread-safe.
#pragma once

#include <cstdint>

namespace berth::vnc {

// RFB's pointer button mask.
namespace buttons {
constexpr uint8_t kLeft = 1 << 0, kMiddle = 1 << 1, kRight = 1 << 2, kWheelUp = 1 << 3, kWheelDown = 1 << 4;
}

class InputTarget {
 public:
  virtual ~InputTarget() = default;
  // A key, as a Linux evdev key code (vnc/keymap.h), pressed or released.
  virtual void key(uint16_t evdev_code, bool down) = 0;
  // The pointer is at (x, y) of a picture width x height pixels, with `mask` (buttons::)
  // held. Wheel bits come as a press and a release.
  virtual void pointer(uint32_t x, uint32_t y, uint32_t width, uint32_t height, uint8_t mask) = 0;
};

}  // namespace berth::vnc
