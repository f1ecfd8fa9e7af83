#include "devices/input/i8042.h"

#include <utility>

#include "devices/input/i8042_registers.h"

namespace berth::devices::input {

using namespace i8042;

I8042::I8042(vmm::IrqLine& keyboard_irq, vmm::IrqLine& aux_irq, std::function<void()> on_reset_request)
    : keyboard_irq_(keyboard_irq), aux_irq_(aux_irq), on_reset_request_(std::move(on_reset_request)) {
  reset_state();
}

void I8042::reset_state() {
  ram_.fill(0);
  ram_[0] = kCtrDefault;
  output_port_ = kOutputPortDefault;
  output_buffer_ = 0;
  output_full_ = output_from_aux_ = output_is_reply_ = false;
  reply_waiting_ = reply_from_aux_ = false;
  reply_value_ = 0;
  translate_release_ = mouse_next_ = false;
  last_write_was_command_ = false;
  pending_command_ = 0;
  keyboard_.reset_power_on();
  mouse_.reset_power_on();
}

void I8042::reset() {
  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  reset_state();
  update_irq(fx);
  apply(lock, fx);
}

// Moves the next byte into an empty output buffer: a waiting reply first, then the
// keyboard and the mouse in turn, each only while its clock is on.
void I8042::fill_output() {
  if (output_full_) return;
  if (reply_waiting_) {
    reply_waiting_ = false;
    output_buffer_ = reply_value_;
    output_from_aux_ = reply_from_aux_;
    output_is_reply_ = output_full_ = true;
    return;
  }
  const bool keyboard_ready = !(ram_[0] & kCtrKeyboardDisabled) && keyboard_.has_output();
  const bool mouse_ready = !(ram_[0] & kCtrAuxDisabled) && mouse_.has_output();
  if (mouse_ready && (mouse_next_ || !keyboard_ready)) {
    output_buffer_ = mouse_.take();
    output_from_aux_ = output_full_ = true;
    output_is_reply_ = false;
    mouse_next_ = false;
    return;
  }
  if (!keyboard_ready) return;
  // With translation on, a release prefix (0xf0) is swallowed and marks the next byte.
  while (keyboard_.has_output()) {
    uint8_t b = keyboard_.take();
    if (ram_[0] & kCtrTranslate) {
      if (b == 0xf0) {
        translate_release_ = true;
        continue;
      }
      b = translate_to_set1(b);
      if (translate_release_) b |= 0x80;
      translate_release_ = false;
    }
    output_buffer_ = b;
    output_full_ = true;
    output_from_aux_ = output_is_reply_ = false;
    mouse_next_ = true;
    return;
  }
}

void I8042::reply(uint8_t value, bool from_aux) {
  if (output_full_ && !output_is_reply_) {
    // A device byte the guest has not read yet: the reply waits behind it.
    reply_waiting_ = true;
    reply_value_ = value;
    reply_from_aux_ = from_aux;
    return;
  }
  output_buffer_ = value;
  output_from_aux_ = from_aux;
  output_full_ = output_is_reply_ = true;
}

void I8042::update_irq(Effects& fx) {
  const bool keyboard = output_full_ && !output_from_aux_ && (ram_[0] & kCtrKeyboardInterrupt);
  const bool aux = output_full_ && output_from_aux_ && (ram_[0] & kCtrAuxInterrupt);
  auto note = [&fx](bool& line, bool want, bool is_aux) {
    if (line == want) return;
    line = want;
    if (fx.count < static_cast<int>(std::size(fx.changes))) fx.changes[fx.count++] = {is_aux, want};
  };
  note(keyboard_line_, keyboard, false);
  note(aux_line_, aux, true);
}

void I8042::apply(std::unique_lock<std::mutex>& lock, const Effects& fx) {
  if (fx.count > 0) {
    // Taken before the state lock is dropped so set_level calls happen in state order.
    std::lock_guard<std::mutex> irq_lock(irq_mu_);
    lock.unlock();
    for (int i = 0; i < fx.count; ++i) (fx.changes[i].aux ? aux_irq_ : keyboard_irq_).set_level(fx.changes[i].high);
  } else {
    lock.unlock();
  }
  if (fx.reset_requested && on_reset_request_) on_reset_request_();
}

uint8_t I8042::status() const {
  uint8_t s = kStatusNotInhibited;
  if (output_full_) s |= kStatusOutputFull;
  if (output_full_ && output_from_aux_) s |= kStatusAuxData;
  if (ram_[0] & kCtrSystemFlag) s |= kStatusSystemFlag;
  if (last_write_was_command_) s |= kStatusCommand;
  return s;
}

uint8_t I8042::read_port(uint64_t offset, Effects& fx) {
  if (offset == kCommandPort) return status();
  if (offset != kDataPort) return 0xff;
  const uint8_t value = output_buffer_;
  if (output_full_) {
    output_full_ = false;
    update_irq(fx);  // the line drops for the byte just read...
    fill_output();
    update_irq(fx);  // ...and rises again for the next one
  }
  return value;
}

void I8042::write_command(uint8_t cmd, Effects& fx) {
  last_write_was_command_ = true;
  pending_command_ = 0;
  if (cmd >= kCmdReadRamFirst && cmd <= kCmdReadRamLast) {
    reply(ram_[cmd - kCmdReadRamFirst], false);
    return;
  }
  if (takes_data_byte(cmd)) {
    pending_command_ = cmd;
    return;
  }
  switch (cmd) {
    case kCmdDisableAux: ram_[0] |= kCtrAuxDisabled; return;
    case kCmdEnableAux: ram_[0] &= static_cast<uint8_t>(~kCtrAuxDisabled); return;
    case kCmdAuxInterfaceTest: reply(kInterfaceTestPassed, false); return;
    case kCmdSelfTest:
      ram_[0] |= kCtrSystemFlag;
      reply(kSelfTestPassed, false);
      return;
    case kCmdInterfaceTest: reply(kInterfaceTestPassed, false); return;
    case kCmdDisableKeyboard: ram_[0] |= kCtrKeyboardDisabled; return;
    case kCmdEnableKeyboard: ram_[0] &= static_cast<uint8_t>(~kCtrKeyboardDisabled); return;
    case kCmdReadOutputPort: reply(output_port_, false); return;
  }
  // 0xf0-0xff pulse output port lines for a moment; a clear bit 0 pulses the reset line.
  if ((cmd & 0xf0) == 0xf0 && !(cmd & 0x01)) fx.reset_requested = true;
}

void I8042::write_data(uint8_t value, Effects& fx) {
  last_write_was_command_ = false;
  const uint8_t cmd = pending_command_;
  pending_command_ = 0;
  if (cmd >= kCmdWriteRamFirst && cmd <= kCmdWriteRamLast) {
    ram_[cmd - kCmdWriteRamFirst] = value;
    return;
  }
  switch (cmd) {
    case kCmdWriteOutputPort:
      output_port_ = value;
      if (!(value & kOutputPortResetLine)) fx.reset_requested = true;
      return;
    case kCmdWriteKeyboardBuffer: reply(value, false); return;
    case kCmdWriteAuxBuffer: reply(value, true); return;
    case kCmdWriteAux:
      ram_[0] &= static_cast<uint8_t>(~kCtrAuxDisabled);
      mouse_.write(value);
      return;
    default:
      ram_[0] &= static_cast<uint8_t>(~kCtrKeyboardDisabled);
      keyboard_.write(value);
      return;
  }
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    Effects fx;
    std::unique_lock<std::mutex> lock(mu_);
    data[i] = read_port(offset + i, fx);
    apply(lock, fx);
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    Effects fx;
    std::unique_lock<std::mutex> lock(mu_);
    if (offset + i == kDataPort) write_data(data[i], fx);
    if (offset + i == kCommandPort) write_command(data[i], fx);
    fill_output();
    update_irq(fx);
    apply(lock, fx);
  }
}

void I8042::key(KeyCode code, bool down) {
  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  keyboard_.key(code, down);
  fill_output();
  update_irq(fx);
  apply(lock, fx);
}

void I8042::pointer_motion(int32_t dx, int32_t dy, int32_t dz, uint8_t buttons) {
  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  mouse_.pointer_motion(dx, dy, dz, buttons);
  fill_output();
  update_irq(fx);
  apply(lock, fx);
}

uint8_t I8042::keyboard_leds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keyboard_.leds();
}

uint64_t I8042::keyboard_dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keyboard_.dropped();
}

uint64_t I8042::mouse_dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mouse_.dropped();
}

}  // namespace berth::devices::input
