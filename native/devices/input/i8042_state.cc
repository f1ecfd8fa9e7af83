// Saved state of the i8042 and the devices behind it.
#include <algorithm>
#include <string>

#include "devices/input/i8042.h"
#include "devices/input/i8042_registers.h"

namespace berth::devices::input {

using namespace i8042;

namespace {

constexpr uint32_t kStateVersion = 2;

void check_pending(state::Reader& r, uint8_t pending) {
  if (pending != 0 && !takes_data_byte(pending)) {
    r.fail("pending_command is " + std::to_string(pending) + ", a command that takes no data byte");
  }
}

}  // namespace

void I8042::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t token = w.begin("i8042", kStateVersion);
  w.bytes(ram_);
  w.u8(output_port_);
  w.u8(output_buffer_);
  w.boolean(output_full_);
  w.boolean(last_write_was_command_);
  w.u8(pending_command_);
  // Version 2 from here.
  w.boolean(output_from_aux_);
  w.boolean(output_is_reply_);
  w.boolean(reply_waiting_);
  w.u8(reply_value_);
  w.boolean(reply_from_aux_);
  w.boolean(translate_release_);
  w.boolean(mouse_next_);
  keyboard_.save_state(w);
  mouse_.save_state(w);
  w.end(token);
}

void I8042::load_state(state::Reader& parent) {
  auto rec = parent.record("i8042", kStateVersion);
  state::Reader& r = rec.body;
  const auto ram = r.bytes(32, "ram");
  const uint8_t output_port = r.u8("output_port");
  const uint8_t output_buffer = r.u8("output_buffer");
  const bool output_full = r.boolean("output_full");
  const bool last_write_was_command = r.boolean("last_write_was_command");
  const uint8_t pending = r.u8("pending_command");
  check_pending(r, pending);
  // Version 1 had no devices: what sat in the buffer was the controller's reply.
  bool from_aux = false, is_reply = true, reply_waiting = false, reply_from_aux = false;
  bool translate_release = false, mouse_next = false;
  uint8_t reply_value = 0;
  Ps2Keyboard keyboard;
  Ps2Mouse mouse;
  if (rec.version >= 2) {
    from_aux = r.boolean("output_from_aux");
    is_reply = r.boolean("output_is_reply");
    reply_waiting = r.boolean("reply_waiting");
    reply_value = r.u8("reply_value");
    reply_from_aux = r.boolean("reply_from_aux");
    translate_release = r.boolean("translate_release");
    mouse_next = r.boolean("mouse_next");
    if (reply_waiting && !(output_full && !is_reply)) {
      r.fail("reply_waiting is set without a device byte in the output buffer to wait behind");
    }
    keyboard.load_state(r);
    mouse.load_state(r);
  }
  r.expect_end();

  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  std::copy(ram.begin(), ram.end(), ram_.begin());
  output_port_ = output_port;
  output_buffer_ = output_buffer;
  output_full_ = output_full;
  last_write_was_command_ = last_write_was_command;
  pending_command_ = pending;
  output_from_aux_ = from_aux;
  output_is_reply_ = is_reply;
  reply_waiting_ = reply_waiting;
  reply_value_ = reply_value;
  reply_from_aux_ = reply_from_aux;
  translate_release_ = translate_release;
  mouse_next_ = mouse_next;
  keyboard_ = keyboard;
  mouse_ = mouse;
  // Drive both lines to what the loaded state asks for, whatever they were before.
  keyboard_line_ = !(output_full_ && !output_from_aux_ && (ram_[0] & kCtrKeyboardInterrupt));
  aux_line_ = !(output_full_ && output_from_aux_ && (ram_[0] & kCtrAuxInterrupt));
  update_irq(fx);
  apply(lock, fx);
}

}  // namespace berth::devices::input
