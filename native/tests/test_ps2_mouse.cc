// The PS/2 mouse on the i8042's aux port, as a guest reads it: command replies, the
// IntelliMouse knocks, movement packets and their bounds.
#include "tests/check.h"
#include "tests/i8042_rig.h"

using berth::test::Bytes;
using berth::test::I8042Rig;

namespace {

struct MouseRig : I8042Rig {
  MouseRig() { command_byte(0x47); }  // both interrupts on
  Bytes reply(std::initializer_list<uint8_t> bytes) {
    to_mouse(bytes);
    std::vector<bool> aux;
    Bytes got = drain(&aux);
    for (bool a : aux) CHECK(a);  // every byte is marked as the mouse's
    return got;
  }
  void enable() { CHECK_BYTES(reply({0xf4}), (Bytes{0xfa})); }
};

}  // namespace

TEST(ps2_mouse_command_replies) {
  MouseRig r;
  CHECK_BYTES(r.reply({0xff}), (Bytes{0xfa, 0xaa, 0x00}));
  CHECK_BYTES(r.reply({0xf2}), (Bytes{0xfa, 0x00}));
  CHECK_BYTES(r.reply({0xe9}), (Bytes{0xfa, 0x00, 0x02, 100}));
  CHECK_BYTES(r.reply({0xf3, 40}), (Bytes{0xfa, 0xfa}));
  CHECK_BYTES(r.reply({0xe8, 0x03}), (Bytes{0xfa, 0xfa}));
  CHECK_BYTES(r.reply({0xe8, 0x04}), (Bytes{0xfa, 0xfe}));  // no such resolution
  CHECK_BYTES(r.reply({0xe7}), (Bytes{0xfa}));
  CHECK_BYTES(r.reply({0xf0}), (Bytes{0xfa}));  // remote mode
  CHECK_BYTES(r.reply({0xf4}), (Bytes{0xfa}));
  CHECK_BYTES(r.reply({0xe9}), (Bytes{0xfa, 0x70, 0x03, 40}));  // remote, enabled, 2:1
  CHECK_BYTES(r.reply({0xe6, 0xea}), (Bytes{0xfa, 0xfa}));
  CHECK_BYTES(r.reply({0xe9}), (Bytes{0xfa, 0x20, 0x03, 40}));
  CHECK_BYTES(r.reply({0xfe}), (Bytes{40}));  // resend the last byte
  CHECK_BYTES(r.reply({0xf6}), (Bytes{0xfa}));
  CHECK_BYTES(r.reply({0xe9}), (Bytes{0xfa, 0x00, 0x02, 100}));
  CHECK_BYTES(r.reply({0x42}), (Bytes{0xfe}));
  CHECK_BYTES(r.reply({0xf5}), (Bytes{0xfa}));
}

TEST(ps2_mouse_wrap_mode_echoes) {
  MouseRig r;
  CHECK_BYTES(r.reply({0xee}), (Bytes{0xfa}));
  CHECK_BYTES(r.reply({0x12, 0xf2}), (Bytes{0x12, 0xf2}));
  CHECK_BYTES(r.reply({0xec}), (Bytes{0xfa}));
  CHECK_BYTES(r.reply({0xf2}), (Bytes{0xfa, 0x00}));
}

TEST(ps2_mouse_intellimouse_knocks) {
  MouseRig r;
  r.reply({0xf3, 200, 0xf3, 200, 0xf3, 80});  // the wrong knock first: still ID 0
  CHECK_BYTES(r.reply({0xf2}), (Bytes{0xfa, 0x00}));
  r.reply({0xf3, 200, 0xf3, 100, 0xf3, 80});
  CHECK_BYTES(r.reply({0xf2}), (Bytes{0xfa, 0x03}));
  r.reply({0xf3, 200, 0xf3, 200, 0xf3, 80});
  CHECK_BYTES(r.reply({0xf2}), (Bytes{0xfa, 0x04}));
  CHECK_BYTES(r.reply({0xff}), (Bytes{0xfa, 0xaa, 0x00}));  // reset: a plain mouse again
  CHECK_BYTES(r.reply({0xf2}), (Bytes{0xfa, 0x00}));
}

TEST(ps2_mouse_stream_packets) {
  MouseRig r;
  r.kbc.pointer_motion(5, 5, 0, 0);  // reporting off: nothing
  CHECK_BYTES(r.drain(), (Bytes{}));
  r.enable();
  r.kbc.pointer_motion(5, 3, 0, 0);  // right and down: PS/2 y is up
  CHECK_BYTES(r.drain(), (Bytes{0x28, 0x05, 0xfd}));  // y sign set
  r.kbc.pointer_motion(-2, -1, 1, berth::devices::input::button::kLeft | berth::devices::input::button::kRight);
  CHECK_BYTES(r.drain(), (Bytes{0x1b, 0xfe, 0x01}));  // x negative, wheel ignored on ID 0
  r.kbc.pointer_motion(0, 0, 0, berth::devices::input::button::kMiddle);  // buttons alone
  CHECK_BYTES(r.drain(), (Bytes{0x0c, 0x00, 0x00}));
  r.kbc.pointer_motion(0, 0, 0, berth::devices::input::button::kMiddle);  // nothing new
  CHECK_BYTES(r.drain(), (Bytes{}));
}

TEST(ps2_mouse_wheel_and_five_buttons) {
  MouseRig r;
  r.reply({0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf4});
  r.kbc.pointer_motion(0, 0, 1, 0);  // one click up: z = -1
  CHECK_BYTES(r.drain(), (Bytes{0x08, 0x00, 0x00, 0xff}));
  r.kbc.pointer_motion(0, 0, -20, 0);  // more than one packet's -8..7
  CHECK_BYTES(r.drain(), (Bytes{0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00, 0x06}));
  r.reply({0xf3, 200, 0xf3, 200, 0xf3, 80, 0xf4});
  r.kbc.pointer_motion(1, 0, -2, berth::devices::input::button::kSide | berth::devices::input::button::kExtra);
  CHECK_BYTES(r.drain(), (Bytes{0x08, 0x01, 0x00, 0x32}));
}

TEST(ps2_mouse_big_moves_split_without_losing_motion) {
  MouseRig r;
  r.enable();
  r.kbc.pointer_motion(1000, -300, 0, 0);  // 5 packets; the queue holds 5 of 3 bytes
  Bytes got = r.drain();
  int x = 0, y = 0;
  for (size_t i = 0; i + 2 < got.size(); i += 3) {
    CHECK_EQ(got[i] & 0xc8, 0x08);  // never an overflow bit, bit 3 always set
    x += (got[i] & 0x10) ? got[i + 1] - 256 : got[i + 1];
    y += (got[i] & 0x20) ? got[i + 2] - 256 : got[i + 2];
  }
  CHECK_EQ(got.size() % 3, size_t{0});
  CHECK_EQ(x, 1000);
  CHECK_EQ(y, 300);
  CHECK_EQ(r.kbc.mouse_dropped(), uint64_t{0});
}

TEST(ps2_mouse_remote_mode_clamps_with_overflow) {
  MouseRig r;
  r.reply({0xf0});
  r.kbc.pointer_motion(300, 10, 0, berth::devices::input::button::kLeft);
  CHECK_BYTES(r.drain(), (Bytes{}));  // remote: nothing until asked
  CHECK_BYTES(r.reply({0xeb}), (Bytes{0xfa, 0x69, 0xff, 0xf6}));  // x clamped to 255, overflow
  CHECK_BYTES(r.reply({0xeb}), (Bytes{0xfa, 0x09, 0x00, 0x00}));  // counters were cleared
  r.kbc.pointer_motion(-1000, -1000, 0, 0);
  CHECK_BYTES(r.reply({0xeb}), (Bytes{0xfa, 0xd8, 0x00, 0xff}));  // x -256, y +255, both overflow
  r.kbc.pointer_motion(INT32_MIN, INT32_MAX, INT32_MIN, 0xff);  // extremes saturate, no UB
  CHECK_BYTES(r.reply({0xeb}), (Bytes{0xfa, 0xff, 0x00, 0x00}));
}

TEST(ps2_mouse_motion_waits_in_its_counters_while_the_aux_clock_is_off) {
  MouseRig r;
  r.enable();
  r.command(0xa7);  // aux clock off while the host moves a lot
  for (int i = 0; i < 10; ++i) r.kbc.pointer_motion(1, 0, 0, 0);
  r.command(0xa8);
  Bytes got = r.drain();
  int x = 0;
  for (size_t i = 0; i + 2 < got.size(); i += 3) x += got[i + 1];
  CHECK_EQ(x, 10);  // counters keep what the queue could not take
  CHECK_EQ(r.kbc.mouse_dropped(), uint64_t{0});
}
