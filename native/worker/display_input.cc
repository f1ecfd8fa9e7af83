#include "worker/display_input.h"

#include "devices/input/ps2_mouse.h"

namespace berth::worker {

void DisplayInput::key(uint16_t evdev_code, bool down) { machine_.key_event(evdev_code, down); }

void DisplayInput::pointer(uint32_t x, uint32_t y, uint32_t, uint32_t, uint8_t mask) {
  namespace rfb = vnc::buttons;
  namespace ps2 = devices::input::button;
  std::lock_guard lock(mu_);
  const int32_t dx = last_x_ ? static_cast<int32_t>(x) - static_cast<int32_t>(*last_x_) : 0;
  const int32_t dy = last_y_ ? static_cast<int32_t>(y) - static_cast<int32_t>(*last_y_) : 0;
  // RFB sends a wheel click as its bit pressed, then released: one click per press.
  const uint8_t pressed = mask & ~last_mask_;
  const int32_t dz = ((pressed & rfb::kWheelUp) ? 1 : 0) - ((pressed & rfb::kWheelDown) ? 1 : 0);
  const uint8_t buttons = ((mask & rfb::kLeft) ? ps2::kLeft : 0) | ((mask & rfb::kMiddle) ? ps2::kMiddle : 0) |
                          ((mask & rfb::kRight) ? ps2::kRight : 0);
  const uint8_t last_buttons = last_mask_ & (rfb::kLeft | rfb::kMiddle | rfb::kRight);
  last_x_ = x;
  last_y_ = y;
  last_mask_ = mask;
  if (dx == 0 && dy == 0 && dz == 0 && (mask & (rfb::kLeft | rfb::kMiddle | rfb::kRight)) == last_buttons) return;
  machine_.pointer_motion(dx, dy, dz, buttons);
}

}  // namespace berth::worker
