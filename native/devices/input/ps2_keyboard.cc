#include "devices/input/ps2_keyboard.h"

#include <string>

namespace berth::devices::input {

namespace {

constexpr uint8_t kAck = 0xfa, kResend = 0xfe, kSelfTestPassed = 0xaa, kEcho = 0xee;
constexpr uint8_t kIdFirst = 0xab, kIdSecond = 0x83;  // MF2 keyboard

constexpr uint8_t kCmdLeds = 0xed, kCmdEcho = 0xee, kCmdScancodeSet = 0xf0, kCmdIdentify = 0xf2,
                  kCmdTypematic = 0xf3, kCmdEnable = 0xf4, kCmdDisable = 0xf5, kCmdDefaults = 0xf6,
                  kCmdResend = 0xfe, kCmdReset = 0xff;

}  // namespace

void Ps2Keyboard::defaults() {
  set_ = 2;
  leds_ = 0;
  typematic_ = kDefaultTypematic;
  awaiting_ = 0;
}

void Ps2Keyboard::reset_power_on() {
  const uint64_t dropped = queue_.dropped();
  queue_ = Ps2Queue{};
  queue_.set_dropped(dropped);
  defaults();
  scanning_ = true;
  last_sent_ = 0;
}

uint8_t Ps2Keyboard::take() {
  last_sent_ = queue_.pop();
  return last_sent_;
}

void Ps2Keyboard::key(KeyCode code, bool down) {
  if (!scanning_) return;
  const ScancodeSequence seq = scancodes(code, down, set_);
  if (seq.size > 0) queue_.push(seq.view());
}

void Ps2Keyboard::write(uint8_t byte) {
  if (awaiting_ != 0 && !(byte & 0x80)) {
    const uint8_t cmd = awaiting_;
    awaiting_ = 0;
    argument(cmd, byte);
    return;
  }
  awaiting_ = 0;
  command(byte);
}

void Ps2Keyboard::command(uint8_t cmd) {
  switch (cmd) {
    case kCmdReset:
      queue_.clear();
      defaults();
      scanning_ = true;
      reply(kAck);
      reply(kSelfTestPassed);
      return;
    case kCmdResend: reply(last_sent_); return;
    case kCmdDefaults:
    case kCmdDisable:
      queue_.clear();
      defaults();
      scanning_ = cmd == kCmdDefaults;
      reply(kAck);
      return;
    case kCmdEnable:
      scanning_ = true;
      reply(kAck);
      return;
    case kCmdIdentify:
      reply(kAck);
      reply(kIdFirst);
      reply(kIdSecond);
      return;
    case kCmdEcho: reply(kEcho); return;
    case kCmdLeds:
    case kCmdScancodeSet:
    case kCmdTypematic:
      awaiting_ = cmd;
      reply(kAck);
      return;
    default: reply(kResend); return;
  }
}

void Ps2Keyboard::argument(uint8_t cmd, uint8_t value) {
  switch (cmd) {
    case kCmdLeds:
      leds_ = value & 0x07;  // scroll, num, caps lock
      reply(kAck);
      return;
    case kCmdTypematic:
      typematic_ = value;
      reply(kAck);
      return;
    case kCmdScancodeSet:
      if (value == 0) {
        reply(kAck);
        reply(static_cast<uint8_t>(set_));
      } else if (value == 1 || value == 2) {
        set_ = value;
        reply(kAck);
      } else {
        reply(kResend);
      }
      return;
  }
}

void Ps2Keyboard::save_state(state::Writer& w) const {
  const size_t token = w.begin("ps2-keyboard", 1);
  std::array<uint8_t, Ps2Queue::kCapacity> queued{};
  const size_t n = queue_.copy_out(queued);
  w.u8(static_cast<uint8_t>(n));
  w.bytes(std::span<const uint8_t>(queued.data(), n));
  w.u64(queue_.dropped());
  w.u8(static_cast<uint8_t>(set_));
  w.u8(leds_);
  w.u8(typematic_);
  w.boolean(scanning_);
  w.u8(awaiting_);
  w.u8(last_sent_);
  w.end(token);
}

void Ps2Keyboard::load_state(state::Reader& parent) {
  auto rec = parent.record("ps2-keyboard", 1);
  state::Reader& r = rec.body;
  const uint8_t n = r.u8("queued");
  if (n > Ps2Queue::kCapacity) r.fail("queued is " + std::to_string(n) + ", more than the keyboard's 16 bytes");
  const auto queued = r.bytes(n, "queue");
  const uint64_t dropped = r.u64("dropped");
  const uint8_t set = r.u8("scancode_set");
  if (set != 1 && set != 2) r.fail("scancode_set is " + std::to_string(set) + ", not 1 or 2");
  const uint8_t leds = r.u8("leds");
  if (leds > 0x07) r.fail("leds is " + std::to_string(leds) + ", more than the three LED bits");
  const uint8_t typematic = r.u8("typematic");
  const bool scanning = r.boolean("scanning");
  const uint8_t awaiting = r.u8("awaiting");
  if (awaiting != 0 && awaiting != kCmdLeds && awaiting != kCmdScancodeSet && awaiting != kCmdTypematic) {
    r.fail("awaiting is " + std::to_string(awaiting) + ", a command that takes no argument");
  }
  const uint8_t last_sent = r.u8("last_sent");
  r.expect_end();

  queue_ = Ps2Queue{};
  queue_.push(queued);
  queue_.set_dropped(dropped);
  set_ = set;
  leds_ = leds;
  typematic_ = typematic;
  scanning_ = scanning;
  awaiting_ = awaiting;
  last_sent_ = last_sent;
}

}  // namespace berth::devices::input
