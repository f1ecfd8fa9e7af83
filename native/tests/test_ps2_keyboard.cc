// The PS/2 keyboard behind the i8042, as a guest reads it from port 0x60: command
// replies, scan codes with and without the controller's translation, and the queue bound.
#include "devices/input/ps2_scancodes.h"
#include "tests/check.h"
#include "tests/i8042_rig.h"

using berth::test::Bytes;
using berth::test::I8042Rig;
namespace key = berth::devices::input::key;
using berth::devices::input::scancodes;
using berth::devices::input::translate_to_set1;

namespace {

// A rig with translation off: the guest sees the keyboard's own bytes.
struct RawRig : I8042Rig {
  RawRig() { command_byte(0x05); }
};

void press(I8042Rig& r, uint16_t code) {
  r.kbc.key(code, true);
  r.kbc.key(code, false);
}

}  // namespace

TEST(ps2_keyboard_command_replies) {
  RawRig r;
  r.to_keyboard({0xff});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xaa}));
  r.to_keyboard({0xf2});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xab, 0x83}));
  r.to_keyboard({0xee});
  CHECK_BYTES(r.drain(), (Bytes{0xee}));
  r.to_keyboard({0xed, 0x07});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa}));
  CHECK_EQ(r.kbc.keyboard_leds(), 0x07);
  r.to_keyboard({0xf3, 0x20});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa}));
  r.to_keyboard({0xf0, 0x00});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa, 0x02}));
  r.to_keyboard({0xf0, 0x03});  // set 3 is not offered
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfe}));
  r.to_keyboard({0xf4});
  CHECK_BYTES(r.drain(), (Bytes{0xfa}));
  r.to_keyboard({0xfe});  // resend: the last byte sent
  CHECK_BYTES(r.drain(), (Bytes{0xfa}));
  r.to_keyboard({0x42});  // no such command
  CHECK_BYTES(r.drain(), (Bytes{0xfe}));
  r.to_keyboard({0xed, 0xf2});  // a command where the LED byte was due is a command
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa, 0xab, 0x83}));
  CHECK_EQ(r.kbc.keyboard_leds(), 0x07);
  r.to_keyboard({0xf6});  // defaults: LEDs off
  CHECK_BYTES(r.drain(), (Bytes{0xfa}));
  CHECK_EQ(r.kbc.keyboard_leds(), 0);
}

TEST(ps2_keyboard_translated_replies_and_scancode_set) {
  I8042Rig r;  // translation on, as firmware leaves it
  r.to_keyboard({0xf2});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xab, 0x41}));
  r.to_keyboard({0xf0, 0x00});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa, 0x41}));  // set 2, as translated
}

TEST(ps2_keyboard_set2_raw_and_translated) {
  RawRig raw;
  press(raw, key::kA);
  CHECK_BYTES(raw.drain(), (Bytes{0x1c, 0xf0, 0x1c}));
  press(raw, key::kUp);
  CHECK_BYTES(raw.drain(), (Bytes{0xe0, 0x75, 0xe0, 0xf0, 0x75}));
  press(raw, key::kF7);
  CHECK_BYTES(raw.drain(), (Bytes{0x83, 0xf0, 0x83}));

  I8042Rig xlat;
  press(xlat, key::kA);
  CHECK_BYTES(xlat.drain(), (Bytes{0x1e, 0x9e}));
  press(xlat, key::kUp);
  CHECK_BYTES(xlat.drain(), (Bytes{0xe0, 0x48, 0xe0, 0xc8}));
  press(xlat, key::kF7);
  CHECK_BYTES(xlat.drain(), (Bytes{0x41, 0xc1}));
  press(xlat, key::kRightCtrl);
  CHECK_BYTES(xlat.drain(), (Bytes{0xe0, 0x1d, 0xe0, 0x9d}));
}

TEST(ps2_keyboard_print_screen_and_pause) {
  RawRig raw;
  press(raw, key::kSysRq);
  CHECK_BYTES(raw.drain(), (Bytes{0xe0, 0x12, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12}));
  press(raw, key::kPause);  // make only
  CHECK_BYTES(raw.drain(), (Bytes{0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77}));

  I8042Rig xlat;
  press(xlat, key::kSysRq);
  CHECK_BYTES(xlat.drain(), (Bytes{0xe0, 0x2a, 0xe0, 0x37, 0xe0, 0xb7, 0xe0, 0xaa}));
  press(xlat, key::kPause);
  CHECK_BYTES(xlat.drain(), (Bytes{0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5}));
}

TEST(ps2_keyboard_set1_selected_by_the_guest) {
  RawRig r;
  r.to_keyboard({0xf0, 0x01});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa}));
  press(r, key::kA);
  press(r, key::kDelete);
  press(r, key::kPause);
  CHECK_BYTES(r.drain(), (Bytes{0x1e, 0x9e, 0xe0, 0x53, 0xe0, 0xd3, 0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5}));
  r.to_keyboard({0xf0, 0x00});
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xfa, 0x01}));
  r.to_keyboard({0xff});  // reset goes back to set 2
  r.drain();
  press(r, key::kA);
  CHECK_BYTES(r.drain(), (Bytes{0x1c, 0xf0, 0x1c}));
}

TEST(ps2_keyboard_every_key_translates_to_its_set1_code) {
  // The two tables must agree through the controller's translation for every key.
  int keys = 0;
  for (uint16_t code = 0; code < 300; ++code) {
    const auto s1 = scancodes(code, true, 1), s2 = scancodes(code, true, 2);
    const auto r1 = scancodes(code, false, 1), r2 = scancodes(code, false, 2);
    CHECK_EQ(s1.size == 0, s2.size == 0);
    if (s1.size == 0) continue;
    ++keys;
    Bytes make, brk;
    for (size_t i = 0; i < s2.size; ++i) {
      if (s2.bytes[i] == 0xf0) continue;
      const bool released = i > 0 && s2.bytes[i - 1] == 0xf0;
      make.push_back(static_cast<uint8_t>(translate_to_set1(s2.bytes[i]) | (released ? 0x80 : 0)));
    }
    for (size_t i = 0; i < r2.size; ++i) {
      if (r2.bytes[i] == 0xf0) continue;
      const bool released = i > 0 && r2.bytes[i - 1] == 0xf0;
      brk.push_back(static_cast<uint8_t>(translate_to_set1(r2.bytes[i]) | (released ? 0x80 : 0)));
    }
    CHECK_BYTES(make, Bytes(s1.bytes, s1.bytes + s1.size));
    CHECK_BYTES(brk, Bytes(r1.bytes, r1.bytes + r1.size));
  }
  CHECK(keys > 100);
  CHECK_EQ(scancodes(0, true, 2).size, size_t{0});
  CHECK_EQ(scancodes(240, true, 2).size, size_t{0});  // KEY_UNKNOWN
  CHECK_EQ(scancodes(0xffff, true, 1).size, size_t{0});
}

TEST(ps2_keyboard_does_not_repeat_a_held_key) {
  RawRig r;
  r.kbc.key(key::kA, true);
  CHECK_BYTES(r.drain(), (Bytes{0x1c}));
  CHECK_BYTES(r.drain(), (Bytes{}));  // no typematic bytes of its own
  r.kbc.key(key::kA, true);          // the host's repeat: one more make code
  r.kbc.key(key::kA, false);
  CHECK_BYTES(r.drain(), (Bytes{0x1c, 0xf0, 0x1c}));
}

TEST(ps2_keyboard_scanning_off_ignores_keys) {
  RawRig r;
  r.to_keyboard({0xf5});
  CHECK_BYTES(r.drain(), (Bytes{0xfa}));
  press(r, key::kA);
  CHECK_BYTES(r.drain(), (Bytes{}));
  r.to_keyboard({0xf4});
  press(r, key::kA);
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0x1c, 0xf0, 0x1c}));
  CHECK_EQ(r.kbc.keyboard_dropped(), uint64_t{0});
}

TEST(ps2_keyboard_queue_holds_16_bytes_and_counts_what_it_drops) {
  RawRig r;
  r.command(0xad);  // clock off: nothing moves to the controller
  for (int i = 0; i < 5; ++i) press(r, key::kA);  // 15 bytes queue
  CHECK_EQ(r.kbc.keyboard_dropped(), uint64_t{0});
  r.kbc.key(key::kUp, true);  // 2 bytes do not fit in the last one: dropped whole
  CHECK_EQ(r.kbc.keyboard_dropped(), uint64_t{1});
  r.kbc.key(key::kA, true);  // 1 byte fits
  r.kbc.key(key::kA, false);  // 2 do not
  CHECK_EQ(r.kbc.keyboard_dropped(), uint64_t{2});
  r.command(0xae);
  const Bytes got = r.drain();
  CHECK_EQ(got.size(), size_t{16});
  CHECK_EQ(got.back(), 0x1c);
}

TEST(ps2_keyboard_command_reply_after_reset_clears_queued_keys) {
  RawRig r;
  r.command(0xad);
  press(r, key::kA);
  r.to_keyboard({0xff});  // re-enables the clock; reset clears what was queued
  CHECK_BYTES(r.drain(), (Bytes{0xfa, 0xaa}));
}
