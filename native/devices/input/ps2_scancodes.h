// Keys as the host names them and the scan codes a PS/2 keyboard sends for them.
//
// KeyCode is the Linux evdev key code (linux/input-event-codes.h numbering): the
// layout-independent key position that RFB's QEMU extended key events carry, so the host
// side maps whatever it receives (keysyms, USB usages) to evdev codes in one place and
// the devices take it from there.
//
// Scan code set 1 is the XT set; set 2 is the AT set every PS/2 keyboard sends by default
// (the i8042 translates it back to set 1 unless the guest turns translation off).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace berth::devices::input {

using KeyCode = uint16_t;

// The evdev codes with special byte sequences, and a few the tests name.
namespace key {
constexpr KeyCode kEsc = 1, kA = 30, kLeftShift = 42, kKpAsterisk = 55, kF7 = 65, kKpEnter = 96,
                  kRightCtrl = 97, kSysRq = 99, kRightAlt = 100, kUp = 103, kDelete = 111,
                  kPause = 119, kLeftMeta = 125;
}  // namespace key

// The longest sequence any key produces (Pause in set 2).
constexpr size_t kMaxScancodeBytes = 8;

struct ScancodeSequence {
  uint8_t bytes[kMaxScancodeBytes] = {};
  size_t size = 0;
  std::span<const uint8_t> view() const { return {bytes, size}; }
};

// The bytes a keyboard in scan code set `set` (1 or 2) sends when `code` goes down or up.
// Empty for keys the keyboard does not have and for Pause's release (Pause sends its whole
// sequence on press and nothing on release).
ScancodeSequence scancodes(KeyCode code, bool down, int set);

// The i8042's translation of one set-2 byte to set 1 (0xf0, the release prefix, is handled
// by the controller: it sets bit 7 of the next translated byte).
uint8_t translate_to_set1(uint8_t set2_byte);

}  // namespace berth::devices::input
