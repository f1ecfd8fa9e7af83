// A PS/2 mouse on the i8042's aux port: a standard 3-button mouse (ID 0) that becomes an
// IntelliMouse (ID 3, wheel) after the sample-rate knock 200, 100, 80 and an IntelliMouse
// Explorer (ID 4, wheel and buttons 4/5) after a further 200, 200, 80.
//
// Commands (answered 0xfa, then any data):
//   0xff reset (fa aa 00)       0xfe resend the last byte     0xf6 defaults
//   0xf5 reporting off          0xf4 reporting on             0xf3 sample rate (argument)
//   0xf2 ID (fa id)             0xf0 remote mode              0xee wrap mode
//   0xec leave wrap mode        0xeb read data (fa, a packet) 0xea stream mode
//   0xe9 status (fa, status, resolution, rate)                0xe8 resolution (argument)
//   0xe7 / 0xe6 scaling 2:1 / 1:1
// Other bytes are answered 0xfe. In wrap mode every byte except 0xec and 0xff is echoed.
//
// Movement: pointer_motion adds to the mouse's counters. In stream mode with reporting on
// it sends packets (3 bytes, 4 for IDs 3 and 4) as long as the 16-byte queue has room; big
// movements are split over several packets (each within the 9-bit range) and what does not
// fit yet is sent as the controller drains the queue. In remote mode the counters wait for
// 0xeb, whose packet clamps them to -256..255 and sets the overflow bits when it had to.
// Not thread-safe: the I8042 that owns it serialises access.
#pragma once

#include <cstdint>

#include "common/state_stream.h"
#include "devices/input/ps2_queue.h"

namespace berth::devices::input {

// Host buttons for pointer_motion.
namespace button {
constexpr uint8_t kLeft = 0x01, kRight = 0x02, kMiddle = 0x04, kSide = 0x08, kExtra = 0x10;
}  // namespace button

class Ps2Mouse {
 public:
  Ps2Mouse() { reset_power_on(); }

  // A byte the guest sent to the mouse (controller command 0xd4, then the data port).
  void write(uint8_t byte);
  // Host movement: dx right, dy down (screen directions), dz wheel clicks (positive: away
  // from the user, i.e. scroll up), buttons the button:: bits held now. Counters
  // saturate at +-kMaxPending.
  void pointer_motion(int32_t dx, int32_t dy, int32_t dz, uint8_t buttons);

  bool has_output() const { return !queue_.empty(); }
  // The next byte for the controller; refills the queue with pending movement.
  uint8_t take();

  uint8_t id() const { return id_; }
  bool reporting() const { return reporting_; }
  bool remote() const { return remote_; }
  uint8_t sample_rate() const { return rate_; }
  uint8_t resolution() const { return resolution_; }
  uint64_t dropped() const { return queue_.dropped(); }

  static constexpr int32_t kMaxPending = 1 << 16;

  void reset_power_on();

  // Record "ps2-mouse"; as Ps2Keyboard, load into a copy.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  void defaults();
  void reply(uint8_t b) { queue_.push(b); }
  void command(uint8_t cmd);
  void argument(uint8_t cmd, uint8_t value);
  void note_sample_rate(uint8_t rate);
  void send_packet(bool clamp_with_overflow);
  void flush();
  uint8_t status_byte() const;

  Ps2Queue queue_;
  uint8_t id_ = 0;
  uint8_t rate_ = 100;
  uint8_t resolution_ = 2;  // 4 counts/mm
  bool scaling_2to1_ = false;
  bool reporting_ = false;
  bool remote_ = false;
  bool wrap_ = false;
  uint8_t awaiting_ = 0;
  uint8_t last_sent_ = 0;
  uint8_t knock_[3] = {};  // the last three sample rates, newest last
  int32_t dx_ = 0, dy_ = 0, dz_ = 0;  // pending movement in PS/2 directions (y up)
  uint8_t buttons_ = 0;
  bool dirty_ = false;  // buttons changed since the last packet
};

}  // namespace berth::devices::input
