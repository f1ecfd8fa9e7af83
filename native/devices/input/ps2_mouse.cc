#include "devices/input/ps2_mouse.h"

#include <algorithm>
#include <array>
#include <string>

namespace berth::devices::input {

namespace {

constexpr uint8_t kAck = 0xfa, kResend = 0xfe, kSelfTestPassed = 0xaa;

constexpr uint8_t kCmdScale11 = 0xe6, kCmdScale21 = 0xe7, kCmdResolution = 0xe8, kCmdStatus = 0xe9,
                  kCmdStream = 0xea, kCmdReadData = 0xeb, kCmdWrapOff = 0xec, kCmdWrapOn = 0xee,
                  kCmdRemote = 0xf0, kCmdId = 0xf2, kCmdSampleRate = 0xf3, kCmdEnable = 0xf4,
                  kCmdDisable = 0xf5, kCmdDefaults = 0xf6, kCmdResend = 0xfe, kCmdReset = 0xff;

constexpr uint8_t kIdStandard = 0, kIdWheel = 3, kIdFiveButtons = 4;

constexpr uint8_t kPacketAlwaysOne = 0x08, kPacketXSign = 0x10, kPacketYSign = 0x20,
                  kPacketXOverflow = 0x40, kPacketYOverflow = 0x80;

int32_t saturating_add(int32_t a, int32_t b) {
  const int64_t sum = static_cast<int64_t>(a) + b;
  return static_cast<int32_t>(std::clamp<int64_t>(sum, -Ps2Mouse::kMaxPending, Ps2Mouse::kMaxPending));
}

size_t packet_size(uint8_t id) { return id == kIdStandard ? 3 : 4; }

}  // namespace

void Ps2Mouse::defaults() {
  rate_ = 100;
  resolution_ = 2;
  scaling_2to1_ = false;
  reporting_ = false;
  remote_ = false;
  awaiting_ = 0;
  dx_ = dy_ = dz_ = 0;
  dirty_ = false;
}

void Ps2Mouse::reset_power_on() {
  const uint64_t dropped = queue_.dropped();
  queue_ = Ps2Queue{};
  queue_.set_dropped(dropped);
  defaults();
  id_ = kIdStandard;
  wrap_ = false;
  last_sent_ = 0;
  std::fill(std::begin(knock_), std::end(knock_), 0);
  buttons_ = 0;
}

uint8_t Ps2Mouse::take() {
  last_sent_ = queue_.pop();
  flush();
  return last_sent_;
}

void Ps2Mouse::pointer_motion(int32_t dx, int32_t dy, int32_t dz, uint8_t buttons) {
  if (!reporting_ && !remote_) return;
  dx_ = saturating_add(dx_, dx);
  dy_ = saturating_add(dy_, dy == INT32_MIN ? INT32_MAX : -dy);  // PS/2 y grows upwards
  dz_ = saturating_add(dz_, dz == INT32_MIN ? INT32_MAX : -dz);  // PS/2 z grows towards the user
  buttons &= 0x1f;
  if (buttons != buttons_) dirty_ = true;
  buttons_ = buttons;
  flush();
}

void Ps2Mouse::send_packet(bool clamp_with_overflow) {
  const int32_t x = std::clamp(dx_, -256, 255), y = std::clamp(dy_, -256, 255);
  const int32_t z = std::clamp(dz_, -8, 7);
  uint8_t head = static_cast<uint8_t>(kPacketAlwaysOne | (buttons_ & 0x07));
  if (x < 0) head |= kPacketXSign;
  if (y < 0) head |= kPacketYSign;
  if (clamp_with_overflow && x != dx_) head |= kPacketXOverflow;
  if (clamp_with_overflow && y != dy_) head |= kPacketYOverflow;
  uint8_t packet[4] = {head, static_cast<uint8_t>(x & 0xff), static_cast<uint8_t>(y & 0xff), 0};
  if (id_ == kIdWheel) packet[3] = static_cast<uint8_t>(z & 0xff);
  if (id_ == kIdFiveButtons) packet[3] = static_cast<uint8_t>((z & 0x0f) | ((buttons_ & 0x18) << 1));
  queue_.push(std::span<const uint8_t>(packet, packet_size(id_)));
  dirty_ = false;
  if (clamp_with_overflow) {
    dx_ = dy_ = dz_ = 0;
  } else {
    dx_ -= x;
    dy_ -= y;
    dz_ = id_ == kIdStandard ? 0 : dz_ - z;  // a mouse without a wheel has nowhere to put it
  }
}

void Ps2Mouse::flush() {
  if (remote_ || !reporting_) return;
  while ((dirty_ || dx_ != 0 || dy_ != 0 || (dz_ != 0 && id_ != kIdStandard)) &&
         queue_.room() >= packet_size(id_)) {
    send_packet(false);
  }
  if (id_ == kIdStandard) dz_ = 0;
}

uint8_t Ps2Mouse::status_byte() const {
  uint8_t s = 0;
  if (remote_) s |= 0x40;
  if (reporting_) s |= 0x20;
  if (scaling_2to1_) s |= 0x10;
  if (buttons_ & button::kLeft) s |= 0x04;
  if (buttons_ & button::kMiddle) s |= 0x02;
  if (buttons_ & button::kRight) s |= 0x01;
  return s;
}

void Ps2Mouse::write(uint8_t byte) {
  if (awaiting_ != 0) {
    const uint8_t cmd = awaiting_;
    awaiting_ = 0;
    argument(cmd, byte);
    return;
  }
  if (wrap_ && byte != kCmdWrapOff && byte != kCmdReset) {
    reply(byte);
    return;
  }
  command(byte);
}

void Ps2Mouse::note_sample_rate(uint8_t rate) {
  knock_[0] = knock_[1];
  knock_[1] = knock_[2];
  knock_[2] = rate;
  if (id_ == kIdStandard && knock_[0] == 200 && knock_[1] == 100 && knock_[2] == 80) id_ = kIdWheel;
  else if (id_ == kIdWheel && knock_[0] == 200 && knock_[1] == 200 && knock_[2] == 80) id_ = kIdFiveButtons;
}

void Ps2Mouse::command(uint8_t cmd) {
  if (cmd == kCmdResend) {
    reply(last_sent_);
    return;
  }
  // A command stops the stream: what was queued is dropped, so the answer comes next.
  queue_.clear();
  switch (cmd) {
    case kCmdReset:
      reset_power_on();
      reply(kAck);
      reply(kSelfTestPassed);
      reply(kIdStandard);
      return;
    case kCmdDefaults: defaults(); break;
    case kCmdDisable: reporting_ = false; dx_ = dy_ = dz_ = 0; break;
    case kCmdEnable: reporting_ = true; dx_ = dy_ = dz_ = 0; break;
    case kCmdStream: remote_ = false; dx_ = dy_ = dz_ = 0; break;
    case kCmdRemote: remote_ = true; dx_ = dy_ = dz_ = 0; break;
    case kCmdWrapOn: wrap_ = true; dx_ = dy_ = dz_ = 0; break;
    case kCmdWrapOff: wrap_ = false; dx_ = dy_ = dz_ = 0; break;
    case kCmdScale11: scaling_2to1_ = false; break;
    case kCmdScale21: scaling_2to1_ = true; break;
    case kCmdSampleRate:
    case kCmdResolution:
      awaiting_ = cmd;
      break;
    case kCmdId:
      reply(kAck);
      reply(id_);
      return;
    case kCmdStatus:
      reply(kAck);
      reply(status_byte());
      reply(resolution_);
      reply(rate_);
      return;
    case kCmdReadData:
      reply(kAck);
      send_packet(true);
      return;
    default: reply(kResend); return;
  }
  reply(kAck);
}

void Ps2Mouse::argument(uint8_t cmd, uint8_t value) {
  if (cmd == kCmdSampleRate) {
    rate_ = value;
    note_sample_rate(value);
    reply(kAck);
    return;
  }
  // kCmdResolution: 1, 2, 4 or 8 counts/mm.
  if (value > 3) {
    reply(kResend);
    return;
  }
  resolution_ = value;
  reply(kAck);
}

void Ps2Mouse::save_state(state::Writer& w) const {
  const size_t token = w.begin("ps2-mouse", 1);
  std::array<uint8_t, Ps2Queue::kCapacity> queued{};
  const size_t n = queue_.copy_out(queued);
  w.u8(static_cast<uint8_t>(n));
  w.bytes(std::span<const uint8_t>(queued.data(), n));
  w.u64(queue_.dropped());
  w.u8(id_);
  w.u8(rate_);
  w.u8(resolution_);
  w.boolean(scaling_2to1_);
  w.boolean(reporting_);
  w.boolean(remote_);
  w.boolean(wrap_);
  w.u8(awaiting_);
  w.u8(last_sent_);
  w.bytes(knock_);
  w.u32(static_cast<uint32_t>(dx_));
  w.u32(static_cast<uint32_t>(dy_));
  w.u32(static_cast<uint32_t>(dz_));
  w.u8(buttons_);
  w.boolean(dirty_);
  w.end(token);
}

void Ps2Mouse::load_state(state::Reader& parent) {
  auto rec = parent.record("ps2-mouse", 1);
  state::Reader& r = rec.body;
  const uint8_t n = r.u8("queued");
  if (n > Ps2Queue::kCapacity) r.fail("queued is " + std::to_string(n) + ", more than the mouse's 16 bytes");
  const auto queued = r.bytes(n, "queue");
  const uint64_t dropped = r.u64("dropped");
  const uint8_t id = r.u8("id");
  if (id != kIdStandard && id != kIdWheel && id != kIdFiveButtons) r.fail("id is " + std::to_string(id) + ", not 0, 3 or 4");
  const uint8_t rate = r.u8("sample_rate");
  const uint8_t resolution = r.u8("resolution");
  if (resolution > 3) r.fail("resolution is " + std::to_string(resolution) + ", not 0..3");
  const bool scaling = r.boolean("scaling_2to1");
  const bool reporting = r.boolean("reporting");
  const bool remote = r.boolean("remote");
  const bool wrap = r.boolean("wrap");
  const uint8_t awaiting = r.u8("awaiting");
  if (awaiting != 0 && awaiting != kCmdSampleRate && awaiting != kCmdResolution) {
    r.fail("awaiting is " + std::to_string(awaiting) + ", a command that takes no argument");
  }
  const uint8_t last_sent = r.u8("last_sent");
  const auto knock = r.bytes(3, "knock");
  int32_t pending[3];
  const char* names[3] = {"dx", "dy", "dz"};
  for (int i = 0; i < 3; ++i) {
    pending[i] = static_cast<int32_t>(r.u32(names[i]));
    if (pending[i] < -kMaxPending || pending[i] > kMaxPending) {
      r.fail(std::string(names[i]) + " is " + std::to_string(pending[i]) + ", beyond the mouse's counters");
    }
  }
  const uint8_t buttons = r.u8("buttons");
  if (buttons > 0x1f) r.fail("buttons is " + std::to_string(buttons) + ", more than five buttons");
  const bool dirty = r.boolean("dirty");
  r.expect_end();

  queue_ = Ps2Queue{};
  queue_.push(queued);
  queue_.set_dropped(dropped);
  id_ = id;
  rate_ = rate;
  resolution_ = resolution;
  scaling_2to1_ = scaling;
  reporting_ = reporting;
  remote_ = remote;
  wrap_ = wrap;
  awaiting_ = awaiting;
  last_sent_ = last_sent;
  std::copy(knock.begin(), knock.end(), knock_);
  dx_ = pending[0];
  dy_ = pending[1];
  dz_ = pending[2];
  buttons_ = buttons;
  dirty_ = dirty;
}

}  // namespace berth::devices::input
