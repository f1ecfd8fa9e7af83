#include "devices/input/i8042.h"

#include <algorithm>
#include <utility>

namespace berth::devices {

namespace {

constexpr uint64_t kDataPort = 0, kCommandPort = 4;

constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystemFlag = 0x04, kStatusCommand = 0x08,
                  kStatusNotInhibited = 0x10;

// Command byte bits.
constexpr uint8_t kCtrSystemFlag = 0x04, kCtrKeyboardDisabled = 0x10, kCtrAuxDisabled = 0x20;
// Keyboard interrupt, system flag, scancode translation: what firmware usually leaves.
constexpr uint8_t kCtrDefault = 0x45;

constexpr uint8_t kOutputPortResetLine = 0x01;  // clear: CPU held in reset
constexpr uint8_t kOutputPortDefault = 0x03;    // reset line high, A20 enabled

constexpr uint8_t kCmdReadRamFirst = 0x20, kCmdReadRamLast = 0x3f, kCmdWriteRamFirst = 0x60,
                  kCmdWriteRamLast = 0x7f, kCmdDisableAux = 0xa7, kCmdEnableAux = 0xa8,
                  kCmdSelfTest = 0xaa, kCmdInterfaceTest = 0xab, kCmdDisableKeyboard = 0xad,
                  kCmdEnableKeyboard = 0xae, kCmdReadOutputPort = 0xd0,
                  kCmdWriteOutputPort = 0xd1, kCmdWriteKeyboardBuffer = 0xd2,
                  kCmdWriteAuxBuffer = 0xd3, kCmdWriteAux = 0xd4;

}  // namespace

I8042::I8042(std::function<void()> on_reset_request)
    : on_reset_request_(std::move(on_reset_request)) {
  reset_state();
}

void I8042::reset_state() {
  ram_.fill(0);
  ram_[0] = kCtrDefault;
  output_port_ = kOutputPortDefault;
  output_buffer_ = 0;
  output_full_ = false;
  last_write_was_command_ = false;
  pending_command_ = 0;
}

void I8042::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  reset_state();
}

void I8042::reply(uint8_t value) {
  output_buffer_ = value;
  output_full_ = true;
}

uint8_t I8042::read_port(uint64_t offset) {
  if (offset == kDataPort) {
    output_full_ = false;
    return output_buffer_;
  }
  if (offset == kCommandPort) {
    uint8_t status = kStatusNotInhibited;
    if (output_full_) status |= kStatusOutputFull;
    if (ram_[0] & kCtrSystemFlag) status |= kStatusSystemFlag;
    if (last_write_was_command_) status |= kStatusCommand;
    return status;
  }
  return 0xff;
}

bool I8042::write_command(uint8_t cmd) {
  last_write_was_command_ = true;
  pending_command_ = 0;
  if (cmd >= kCmdReadRamFirst && cmd <= kCmdReadRamLast) {
    reply(ram_[cmd - kCmdReadRamFirst]);
    return false;
  }
  if (cmd >= kCmdWriteRamFirst && cmd <= kCmdWriteRamLast) {
    pending_command_ = cmd;
    return false;
  }
  switch (cmd) {
    case kCmdDisableAux: ram_[0] |= kCtrAuxDisabled; return false;
    case kCmdEnableAux: ram_[0] &= static_cast<uint8_t>(~kCtrAuxDisabled); return false;
    case kCmdSelfTest:
      ram_[0] |= kCtrSystemFlag;
      reply(0x55);
      return false;
    case kCmdInterfaceTest: reply(0x00); return false;
    case kCmdDisableKeyboard: ram_[0] |= kCtrKeyboardDisabled; return false;
    case kCmdEnableKeyboard: ram_[0] &= static_cast<uint8_t>(~kCtrKeyboardDisabled); return false;
    case kCmdReadOutputPort: reply(output_port_); return false;
    case kCmdWriteOutputPort:
    case kCmdWriteKeyboardBuffer:
    case kCmdWriteAuxBuffer:
    case kCmdWriteAux:
      pending_command_ = cmd;
      return false;
  }
  // 0xf0-0xff pulse output port lines for a moment; a clear bit 0 pulses the reset line.
  if ((cmd & 0xf0) == 0xf0 && !(cmd & 0x01)) return true;
  return false;
}

bool I8042::write_data(uint8_t value) {
  last_write_was_command_ = false;
  const uint8_t cmd = pending_command_;
  pending_command_ = 0;
  if (cmd >= kCmdWriteRamFirst && cmd <= kCmdWriteRamLast) {
    ram_[cmd - kCmdWriteRamFirst] = value;
    return false;
  }
  switch (cmd) {
    case kCmdWriteOutputPort:
      output_port_ = value;
      return !(value & kOutputPortResetLine);
    case kCmdWriteKeyboardBuffer:
      reply(value);
      return false;
    default:
      // 0xd3/0xd4 (no aux device) or a byte for the absent keyboard: dropped.
      return false;
  }
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) data[i] = read_port(offset + i);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  bool reset_requested = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset + i == kDataPort) reset_requested |= write_data(data[i]);
      if (offset + i == kCommandPort) reset_requested |= write_command(data[i]);
    }
  }
  if (reset_requested && on_reset_request_) on_reset_request_();
}

void I8042::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t token = w.begin("i8042", 1);
  w.bytes(ram_);
  w.u8(output_port_);
  w.u8(output_buffer_);
  w.boolean(output_full_);
  w.boolean(last_write_was_command_);
  w.u8(pending_command_);
  w.end(token);
}

void I8042::load_state(state::Reader& parent) {
  auto rec = parent.record("i8042", 1);
  state::Reader& r = rec.body;
  auto ram = r.bytes(32, "ram");
  const uint8_t output_port = r.u8("output_port");
  const uint8_t output_buffer = r.u8("output_buffer");
  const bool output_full = r.boolean("output_full");
  const bool last_write_was_command = r.boolean("last_write_was_command");
  const uint8_t pending = r.u8("pending_command");
  r.expect_end();
  // Only the commands that wait for a data byte can be pending.
  const bool waits = pending == 0 || (pending >= kCmdWriteRamFirst && pending <= kCmdWriteRamLast) ||
                     pending == kCmdWriteOutputPort || pending == kCmdWriteKeyboardBuffer ||
                     pending == kCmdWriteAuxBuffer || pending == kCmdWriteAux;
  if (!waits) r.fail("pending_command is " + std::to_string(pending) + ", a command that takes no data byte");

  std::lock_guard<std::mutex> lock(mu_);
  std::copy(ram.begin(), ram.end(), ram_.begin());
  output_port_ = output_port;
  output_buffer_ = output_buffer;
  output_full_ = output_full;
  last_write_was_command_ = last_write_was_command;
  pending_command_ = pending;
}

}  // namespace berth::devices
