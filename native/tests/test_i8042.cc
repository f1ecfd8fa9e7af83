// The i8042 controller as a guest sees it: controller commands, the command byte, the
// output buffer shared by keyboard and mouse, and the interrupts.
#include "tests/check.h"
#include "tests/i8042_rig.h"

using berth::test::Bytes;
using berth::test::I8042Rig;
using Rig = I8042Rig;

TEST(i8042_self_test_and_interface_test) {
  Rig r;
  CHECK_EQ(r.status() & 0x01, 0);  // nothing waiting
  r.command(0xaa);
  CHECK_EQ(r.status() & 0x01, 0x01);
  CHECK_EQ(r.status() & 0x04, 0x04);  // system flag
  CHECK_EQ(r.status() & 0x08, 0x08);  // last write was a command
  CHECK_EQ(r.status() & 0x20, 0);     // not from the mouse
  CHECK_EQ(r.data(), 0x55);
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xab);
  CHECK_EQ(r.data(), 0x00);
  r.command(0xa9);  // aux interface test
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

TEST(i8042_unused_ports_and_buffer_writes) {
  Rig r;
  r.command(0xd2);  // write keyboard output buffer: comes back as keyboard data
  r.write_data(0x1c);
  CHECK_EQ(r.status() & 0x21, 0x01);
  CHECK_EQ(r.data(), 0x1c);
  r.command(0xd3);  // write aux output buffer: comes back as mouse data
  r.write_data(0x5a);
  CHECK_EQ(r.status() & 0x21, 0x21);
  CHECK_EQ(r.data(), 0x5a);
  CHECK_EQ(r.status() & 0x21, 0);
  CHECK_EQ(r.data(), 0x5a);  // an empty buffer reads its last byte again
  CHECK_EQ(r.in(1), 0xff);
  CHECK_EQ(r.in(3), 0xff);
  CHECK_EQ(r.resets, 0);
}

TEST(i8042_reset_restores_power_on_state) {
  Rig r;
  r.command(0x60);
  r.write_data(0x00);
  r.command(0xaa);
  r.to_mouse({0xf4});
  r.kbc.key(30, true);
  r.command(0x60);  // pending write left hanging
  r.kbc.reset();
  CHECK_EQ(r.status() & 0x01, 0);
  CHECK(!r.kbd_irq.high());
  r.command(0x60);
  r.write_data(0x45);
  r.kbc.pointer_motion(5, 5, 0, 0);  // the mouse is back to reporting off
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0x20);
  CHECK_EQ(r.data(), 0x45);
}

TEST(i8042_reset_callback_may_reset_the_controller) {
  int calls = 0;
  berth::test::LevelLog k, a;
  berth::devices::input::I8042* self = nullptr;
  berth::devices::input::I8042 kbc(k, a, [&] {
    ++calls;
    self->reset();
  });
  self = &kbc;
  const uint8_t cmd = 0xfe;
  kbc.write(4, std::span<const uint8_t>(&cmd, 1));
  CHECK_EQ(calls, 1);
}

TEST(i8042_keyboard_irq_rises_once_per_byte_and_only_when_enabled) {
  Rig r;  // command byte 0x45: keyboard interrupt on, aux interrupt off
  r.to_keyboard({0xf2});  // identify: fa ab 83, translated to fa ab 41
  CHECK_EQ(r.kbd_irq.edges(), 1);
  CHECK(r.kbd_irq.high());
  CHECK_EQ(r.data(), 0xfa);
  CHECK_EQ(r.kbd_irq.edges(), 2);  // dropped for the read, raised for the next byte
  CHECK_EQ(r.data(), 0xab);
  CHECK_EQ(r.data(), 0x41);
  CHECK_EQ(r.kbd_irq.edges(), 3);
  CHECK(!r.kbd_irq.high());
  CHECK_EQ(r.status() & 0x01, 0);
  CHECK(r.aux_irq.levels.empty());

  r.command_byte(0x44);  // keyboard interrupt off
  r.kbc.key(30, true);
  CHECK_EQ(r.status() & 0x01, 0x01);  // polled guests still see it
  CHECK_EQ(r.kbd_irq.edges(), 3);
  r.command_byte(0x45);  // on again with a byte waiting: the line rises now
  CHECK_EQ(r.kbd_irq.edges(), 4);
  CHECK_EQ(r.data(), 0x1e);
  CHECK(!r.kbd_irq.high());
}

TEST(i8042_aux_irq_follows_command_byte_bit_1) {
  Rig r;
  r.command(0xd3);
  r.write_data(0xa5);
  CHECK(r.aux_irq.levels.empty());  // aux interrupt disabled at power-on
  CHECK(r.kbd_irq.levels.empty());  // a mouse byte never raises IRQ 1
  CHECK_EQ(r.data(), 0xa5);
  r.command_byte(0x47);  // Linux's aux IRQ test: enable, then loop a byte back
  r.command(0xd3);
  r.write_data(0xa5);
  CHECK_EQ(r.aux_irq.edges(), 1);
  CHECK_EQ(r.status() & 0x21, 0x21);
  CHECK_EQ(r.data(), 0xa5);
  CHECK(!r.aux_irq.high());
  CHECK(r.kbd_irq.levels.empty());
}

TEST(i8042_disabled_clock_holds_device_bytes_back) {
  Rig r;
  r.command(0xad);
  r.kbc.key(30, true);
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xae);
  CHECK_EQ(r.status() & 0x01, 0x01);
  CHECK_EQ(r.data(), 0x1e);
  r.to_mouse({0xf4});
  CHECK_BYTES(r.drain(), (Bytes{0xfa}));
  r.command(0xa7);
  r.kbc.pointer_motion(1, 0, 0, 0);
  CHECK_EQ(r.status() & 0x01, 0);
  r.command(0xa8);
  CHECK_BYTES(r.drain(), (Bytes{0x08, 0x01, 0x00}));
  // Writing to the keyboard turns its clock back on.
  r.command(0xad);
  r.write_data(0xee);
  CHECK_EQ(r.data(), 0xee);
  r.command(0x20);
  CHECK_EQ(r.data(), 0x45);
}

TEST(i8042_interleaves_keyboard_and_mouse_bytes_each_in_order) {
  Rig r;
  r.command_byte(0x47);
  r.to_mouse({0xf4});
  CHECK_BYTES(r.drain(), (Bytes{0xfa}));
  r.kbc.key(30, true);             // 1e
  r.kbc.pointer_motion(3, -2, 0, 1);  // 09 03 02
  r.kbc.key(30, false);            // 9e
  std::vector<bool> aux;
  const Bytes got = r.drain(&aux);
  Bytes kbd, mouse;
  for (size_t i = 0; i < got.size(); ++i) (aux[i] ? mouse : kbd).push_back(got[i]);
  CHECK_BYTES(kbd, (Bytes{0x1e, 0x9e}));
  CHECK_BYTES(mouse, (Bytes{0x09, 0x03, 0x02}));
  CHECK_EQ(got.size(), size_t{5});
  CHECK_EQ(r.kbd_irq.edges(), 2);  // one per keyboard byte
  CHECK_EQ(r.aux_irq.edges(), 4);  // the ack and one per packet byte
}

TEST(i8042_controller_reply_waits_behind_an_unread_device_byte) {
  Rig r;
  r.kbc.key(30, true);
  r.command(0x20);
  CHECK_EQ(r.data(), 0x1e);
  CHECK_EQ(r.data(), 0x45);
  CHECK_EQ(r.status() & 0x01, 0);
}
