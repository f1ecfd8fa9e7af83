#include "devices/input/i8042.h"
#include "tests/check.h"

using berth::devices::I8042;

namespace {

struct Rig {
  int resets = 0;
  I8042 kbc{[this] { ++resets; }};

  uint8_t status() { return in(4); }
  uint8_t data() { return in(0); }
  uint8_t in(uint64_t offset) {
    uint8_t v = 0;
    kbc.read(offset, std::span<uint8_t>(&v, 1));
    return v;
  }
  void command(uint8_t v) { kbc.write(4, std::span<const uint8_t>(&v, 1)); }
  void write_data(uint8_t v) { kbc.write(0, std::span<const uint8_t>(&v, 1)); }
};

}  // namespace

TEST(i8042_self_test_and_interface_test) {
  Rig r;
  CHECK_EQ(r.status() & 0x01, 0);  // nothing waiting
  r.command(0xaa);
  CHECK_EQ(r.status() & 0x01, 0x01);
  CHECK_EQ(r.status() & 0x04, 0x04);  // system flag
  CHECK_EQ(r.status() & 0x08, 0x08);  // last write was a command
  CHECK_EQ(r.data(), 0x55);
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xab);
  CHECK_EQ(r.data(), 0x00);
  CHECK_EQ(r.resets, 0);
}

TEST(i8042_command_byte_round_trip) {
  Rig r;
  r.command(0x20);
  CHECK_EQ(r.data(), 0x45);
  r.command(0x60);
  r.write_data(0x61);
  CHECK_EQ(r.status() & 0x01, 0);  // a write-command byte gets no reply
  CHECK_EQ(r.status() & 0x08, 0);  // last write was data
  r.command(0x20);
  CHECK_EQ(r.data(), 0x61);
  CHECK_EQ(r.status() & 0x04, 0);  // system flag follows the command byte
  r.command(0xad);                  // disable keyboard
  r.command(0xa7);                  // disable aux
  r.command(0x20);
  CHECK_EQ(r.data(), 0x71);
  r.command(0xae);
  r.command(0xa8);
  r.command(0x20);
  CHECK_EQ(r.data(), 0x41);
}

TEST(i8042_reset_via_pulse_command) {
  Rig r;
  r.command(0xfe);
  CHECK_EQ(r.resets, 1);
  r.command(0xff);  // pulses nothing
  CHECK_EQ(r.resets, 1);
}

TEST(i8042_reset_via_output_port) {
  Rig r;
  r.command(0xd0);
  CHECK_EQ(r.data(), 0x03);
  r.command(0xd1);
  r.write_data(0x03);  // reset line high, A20 on: no reset
  CHECK_EQ(r.resets, 0);
  r.command(0xd1);
  r.write_data(0x02);  // bit 0 clear: reset
  CHECK_EQ(r.resets, 1);
  r.command(0xd0);
  CHECK_EQ(r.data(), 0x02);
}

TEST(i8042_no_keyboard_no_aux) {
  Rig r;
  r.write_data(0xff);  // keyboard reset to an absent keyboard: no reply
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xd3);  // aux loopback: swallowed, so probes find no aux port
  r.write_data(0x5a);
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xd4);
  r.write_data(0xf4);
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xd2);  // write keyboard output buffer: echoed
  r.write_data(0x1c);
  CHECK_EQ(r.data(), 0x1c);
  CHECK_EQ(r.in(1), 0xff);
  CHECK_EQ(r.in(3), 0xff);
  CHECK_EQ(r.resets, 0);
}

TEST(i8042_reset_restores_power_on_state) {
  Rig r;
  r.command(0x60);
  r.write_data(0x00);
  r.command(0xaa);
  r.command(0x60);  // pending write left hanging
  r.kbc.reset();
  CHECK_EQ(r.status() & 0x01, 0);
  r.write_data(0x12);  // no longer taken as a command byte
  r.command(0x20);
  CHECK_EQ(r.data(), 0x45);
}

TEST(i8042_reset_callback_may_reset_the_controller) {
  int calls = 0;
  I8042* self = nullptr;
  I8042 kbc([&] {
    ++calls;
    self->reset();
  });
  self = &kbc;
  const uint8_t cmd = 0xfe;
  kbc.write(4, std::span<const uint8_t>(&cmd, 1));
  CHECK_EQ(calls, 1);
}
