#include "devices/debug_exit.h"

#include <algorithm>
#include <utility>

namespace berth::devices {

DebugExit::DebugExit(std::function<void(uint32_t value)> on_exit) : on_exit_(std::move(on_exit)) {}

void DebugExit::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), uint8_t{0xff});
}

void DebugExit::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0) return;
  if (data.size() != 1 && data.size() != 2 && data.size() != 4) return;
  uint32_t value = 0;
  for (size_t i = 0; i < data.size(); ++i) value |= uint32_t{data[i]} << (8 * i);
  if (on_exit_) on_exit_(value);
}

}  // namespace berth::devices
