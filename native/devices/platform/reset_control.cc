#include "devices/platform/reset_control.h"

#include <algorithm>
#include <string>

namespace berth::devices::platform {

namespace {
constexpr uint8_t kStored = ResetControl::kSystemReset | ResetControl::kFullReset;
}  // namespace

void ResetControl::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset != 0 || data.size() != 1) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  data[0] = value_.load();
}

void ResetControl::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.size() != 1) return;
  if (data[0] & kResetCpu) {
    value_ = 0;  // what the register reads after the reset
    if (on_reset_) on_reset_();
    return;
  }
  value_ = data[0] & kStored;
}

void ResetControl::save_state(state::Writer& w) const {
  const size_t token = w.begin("reset-control", 1);
  w.u8(value_.load());
  w.end(token);
}

void ResetControl::load_state(state::Reader& parent) {
  auto rec = parent.record("reset-control", 1);
  state::Reader& r = rec.body;
  const uint8_t value = r.u8("value");
  r.expect_end();
  if (value & ~kStored) r.fail("value is " + std::to_string(value) + ", with bits other than SYS_RST and FULL_RST");
  value_ = value;
}

}  // namespace berth::devices::platform
