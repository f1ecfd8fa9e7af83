// The i8042 PS/2 controller with a keyboard on its first port and a mouse on its aux port.
//
// Registered over ports 0x60..0x64 (5 ports): offset 0 is the data port (0x60), offset 4
// the status (read) / command (write) port (0x64); offsets 1..3 read 0xff and ignore
// writes.
//
// Status: bit 0 output buffer full, 1 input buffer full (never: writes are handled at
// once), 2 system flag (command byte bit 2), 3 last write was a command, 4 keyboard not
// inhibited (always), 5 the output buffer holds a byte from the mouse.
//
// Command byte (controller RAM 0): bit 0 keyboard interrupt, 1 aux interrupt, 2 system
// flag, 4 keyboard clock off, 5 aux clock off, 6 translate the keyboard's set 2 to set 1.
// Power-on value 0x45.
//
// Commands: 0x20-0x3f read controller RAM, 0x60-0x7f write it (next data byte), 0xa7/0xa8
// aux clock off/on, 0xa9 aux interface test (0x00), 0xaa self test (0x55), 0xab keyboard
// interface test (0x00), 0xad/0xae keyboard clock off/on, 0xd0 read output port, 0xd1
// write output port (next data byte; bit 0 clear requests a reset), 0xd2 / 0xd3 next data
// byte appears as if from the keyboard / the mouse, 0xd4 next data byte goes to the mouse,
// 0xf0-0xfe with bit 0 clear pulse the reset line. Other commands are ignored. A data byte
// with no pending command goes to the keyboard. Sending a byte to a device turns its clock
// back on, as real controllers do.
//
// One output buffer: the controller's own reply comes first, then keyboard and mouse bytes
// alternate (each device's bytes in order), taken only while that port's clock is on. A
// reply to a controller command replaces an unread earlier reply. Reading the data port
// with the buffer empty returns the last byte again.
//
// Interrupts: IRQ 1 is high while the buffer holds a non-mouse byte and command byte bit
// 0 is set; IRQ 12 likewise for a mouse byte and bit 1. Reading the data port drops the
// line; a byte that moves in at once raises it again, so edge-triggered inputs see one
// rising edge per byte.
//
// Thread-safe: one mutex guards all state. IrqLine::set_level is called with it released,
// under a second mutex that only orders those calls (and only on a change of level);
// on_reset_request is called on the vCPU thread that wrote the command, with both released
// (it may call reset()). key and pointer_motion may come from any thread. No callback may
// call back into this device synchronously except on_reset_request as said.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "common/state_stream.h"
#include "devices/input/ps2_keyboard.h"
#include "devices/input/ps2_mouse.h"
#include "vmm/bus_device.h"

namespace berth::devices::input {

class I8042 : public vmm::BusDevice {
 public:
  static constexpr uint16_t kBase = 0x60;
  static constexpr uint64_t kPortCount = 5;
  static constexpr uint32_t kKeyboardIrq = 1, kAuxIrq = 12;  // ISA IRQs on PCs

  I8042(vmm::IrqLine& keyboard_irq, vmm::IrqLine& aux_irq, std::function<void()> on_reset_request);

  // BusDevice: a wider access is handled as consecutive byte accesses.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host input: an evdev key pressed or released; relative pointer movement (see
  // Ps2Mouse::pointer_motion for directions and the button bits).
  void key(KeyCode code, bool down);
  void pointer_motion(int32_t dx, int32_t dy, int32_t dz, uint8_t buttons);

  // The keyboard LEDs the guest last set (bit 0 scroll, 1 num, 2 caps lock).
  uint8_t keyboard_leds() const;
  // Sequences lost because a device's 16-byte queue was full.
  uint64_t keyboard_dropped() const;
  uint64_t mouse_dropped() const;

  // Power-on state: command byte 0x45, output port 0x03, buffers empty, keyboard and mouse
  // reset; both interrupt lines low.
  void reset();

  // Saved state: record "i8042" version 2 with the controller (RAM, output port, output
  // buffer and its source, a reply waiting, a pending command) and the keyboard's and
  // mouse's records; version 1 (controller only, no devices) still loads, with the
  // devices at power-on. Loading drives the interrupt lines to the loaded state. A bad
  // record throws STATE_INVALID / STATE_VERSION naming the field and changes nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  // Interrupt level changes to hand to the lines once the state mutex is released.
  struct Effects {
    struct Change {
      bool aux;
      bool high;
    };
    Change changes[8];
    int count = 0;
    bool reset_requested = false;
  };

  uint8_t read_port(uint64_t offset, Effects& fx);
  void write_command(uint8_t cmd, Effects& fx);
  void write_data(uint8_t value, Effects& fx);
  void reply(uint8_t value, bool from_aux);
  void fill_output();
  void update_irq(Effects& fx);
  void apply(std::unique_lock<std::mutex>& lock, const Effects& fx);
  void reset_state();
  uint8_t status() const;

  vmm::IrqLine& keyboard_irq_;
  vmm::IrqLine& aux_irq_;
  std::function<void()> on_reset_request_;
  mutable std::mutex mu_;
  std::mutex irq_mu_;  // orders set_level calls; taken with mu_ held, then mu_ dropped

  std::array<uint8_t, 32> ram_{};  // ram_[0] is the command byte
  uint8_t output_port_ = 0;
  uint8_t output_buffer_ = 0;
  bool output_full_ = false;
  bool output_from_aux_ = false;
  bool output_is_reply_ = false;  // the buffer holds the controller's own reply
  bool reply_waiting_ = false;    // a reply behind a device byte the guest has not read
  uint8_t reply_value_ = 0;
  bool reply_from_aux_ = false;
  bool translate_release_ = false;  // translation met 0xf0: the next byte is a release
  bool mouse_next_ = false;         // the mouse's turn when both devices have bytes
  bool last_write_was_command_ = false;
  uint8_t pending_command_ = 0;  // 0: none
  bool keyboard_line_ = false, aux_line_ = false;  // levels last handed to the lines

  Ps2Keyboard keyboard_;
  Ps2Mouse mouse_;
};

}  // namespace berth::devices::input
