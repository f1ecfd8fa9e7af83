// The graphical console's keys and pointer, into the machine's PS/2 keyboard and mouse.
// A VNC client says where its pointer is; a PS/2 mouse moves by steps, so the step from the
// last position is sent. The guest's pointer then follows the client's as long as the guest
// does not accelerate small steps (an absolute tablet would not need this).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>

#include "machine/machine.h"
#include "vnc/input_target.h"

namespace berth::worker {

class DisplayInput final : public vnc::InputTarget {
 public:
  explicit DisplayInput(machine::Machine& machine) : machine_(machine) {}

  void key(uint16_t evdev_code, bool down) override;
  void pointer(uint32_t x, uint32_t y, uint32_t width, uint32_t height, uint8_t mask) override;

 private:
  machine::Machine& machine_;
  std::mutex mu_;  // VNC clients each have a thread
  std::optional<uint32_t> last_x_, last_y_;
  uint8_t last_mask_ = 0;
};

}  // namespace berth::worker
