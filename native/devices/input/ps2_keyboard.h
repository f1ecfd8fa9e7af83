// A PS/2 (MF2) keyboard as it sits behind the i8042's keyboard port.
//
// It sends scan code set 2 by default (the controller translates to set 1 when its command
// byte asks) and set 1 when the guest selects it; set 3 is refused (0xfe), as some laptop
// keyboards do. Commands (each answered with 0xfa unless said otherwise):
//   0xff reset (fa aa; defaults, scanning on)   0xfe resend the last byte sent
//   0xf6 defaults, scanning on                  0xf5 defaults, scanning off
//   0xf4 scanning on                            0xf3 typematic rate/delay (argument)
//   0xf2 identify (fa ab 83)                    0xf0 scan code set (argument; 0: report it)
//   0xee echo (ee)                              0xed LEDs (argument)
// Anything else is answered 0xfe. A byte with bit 7 set where an argument is expected is
// taken as a new command, as keyboards do. Reset, 0xf5 and 0xf6 clear the output queue.
//
// Keys come from the host through key(); the keyboard never repeats a held key by itself
// (typematic repeat is the host's business: it sends another press). While scanning is off
// key events are ignored. Not thread-safe: the I8042 that owns it serialises access.
#pragma once

#include <cstdint>

#include "common/state_stream.h"
#include "devices/input/ps2_queue.h"
#include "devices/input/ps2_scancodes.h"

namespace berth::devices::input {

class Ps2Keyboard {
 public:
  static constexpr uint8_t kDefaultTypematic = 0x2b;  // 10.9 characters/s after 500 ms

  Ps2Keyboard() { reset_power_on(); }

  // A byte the guest sent to the keyboard (through the controller's data port).
  void write(uint8_t byte);
  // The host pressed (down) or released a key.
  void key(KeyCode code, bool down);

  bool has_output() const { return !queue_.empty(); }
  // The next byte for the controller; remembered for 0xfe (resend).
  uint8_t take();

  int scancode_set() const { return set_; }
  uint8_t leds() const { return leds_; }
  bool scanning() const { return scanning_; }
  uint8_t typematic() const { return typematic_; }
  // Key events and replies lost because the 16-byte queue was full.
  uint64_t dropped() const { return queue_.dropped(); }

  // Power-on state (the queue's drop counter survives).
  void reset_power_on();

  // Record "ps2-keyboard". load_state overwrites this object and may leave it half-loaded
  // when it throws: callers load into a copy.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  void defaults();
  void reply(uint8_t b) { queue_.push(b); }
  void command(uint8_t cmd);
  void argument(uint8_t cmd, uint8_t value);

  Ps2Queue queue_;
  int set_ = 2;
  uint8_t leds_ = 0;
  uint8_t typematic_ = kDefaultTypematic;
  bool scanning_ = true;
  uint8_t awaiting_ = 0;  // a command waiting for its argument (0: none)
  uint8_t last_sent_ = 0;
};

}  // namespace berth::devices::input
