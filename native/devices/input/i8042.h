// Enough of the i8042 PS/2 controller for a guest to reset the machine through it and for
// Linux's i8042 probe to finish quickly. No keyboard or mouse is attached and no
// interrupts are generated.
//
// Registered over ports 0x60..0x64 (5 ports): offset 0 is the data port (0x60), offset 4
// the status (read) / command (write) port (0x64); offsets 1..3 read 0xff and ignore
// writes.
//
// Commands: 0x20-0x3f read controller RAM (0x20: command byte), 0x60-0x7f write it (next
// data byte), 0xa7/0xa8 disable/enable the aux port, 0xaa self test (replies 0x55),
// 0xab keyboard interface test (replies 0x00), 0xad/0xae disable/enable the keyboard,
// 0xd0 read output port, 0xd1 write output port (next data byte; bit 0 clear requests a
// reset), 0xd2 write keyboard output buffer (next data byte is echoed back), 0xd3/0xd4
// (aux output buffer / write to aux: the next data byte is swallowed, no reply, so probes
// find no aux device), 0xf0-0xfe with bit 0 clear pulse the reset line (0xfe is the usual
// one). Other commands are ignored. Data-port bytes with no pending command are meant for
// the keyboard, which is absent: they get no reply (a stale reply could be mistaken for
// the answer to a later controller command).
//
// Replies sit in a one-byte output buffer (status bit 0 while full); a new reply replaces
// an unread one, and reading the data port with it empty returns the last byte again.
//
// Thread-safe: one mutex; on_reset_request is called on the vCPU thread that wrote the
// command, with the mutex released (it may call reset()).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices {

class I8042 : public vmm::BusDevice {
 public:
  static constexpr uint16_t kBase = 0x60;
  static constexpr uint64_t kPortCount = 5;

  explicit I8042(std::function<void()> on_reset_request);

  // BusDevice: a wider access is handled as consecutive byte accesses.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Power-on state: command byte 0x45, output port 0x03, buffer empty, no pending command.
  void reset();

  // Saved state: record "i8042" with the controller RAM (command byte first), the output
  // port, the output buffer and a command waiting for its data byte. A bad record throws
  // STATE_INVALID and changes nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  uint8_t read_port(uint64_t offset);
  bool write_command(uint8_t cmd);   // returns true when a reset is requested
  bool write_data(uint8_t value);    // returns true when a reset is requested
  void reply(uint8_t value);
  void reset_state();

  std::function<void()> on_reset_request_;
  mutable std::mutex mu_;
  std::array<uint8_t, 32> ram_{};  // ram_[0] is the command byte
  uint8_t output_port_ = 0;
  uint8_t output_buffer_ = 0;
  bool output_full_ = false;
  bool last_write_was_command_ = false;
  uint8_t pending_command_ = 0;  // 0: none
};

}  // namespace berth::devices
