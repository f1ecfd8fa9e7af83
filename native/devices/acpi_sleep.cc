#include "devices/acpi_sleep.h"

#include <cstring>

namespace berth::devices {

namespace {
constexpr uint8_t kSleepEnable = 1u << 5;
constexpr uint8_t kSleepTypeShift = 2;
constexpr uint8_t kSleepTypeMask = 0x7;
}  // namespace

void AcpiSleep::read(uint64_t, std::span<uint8_t> data) {
  // Nothing is ever pending: the VM does not sleep, it either runs or is off.
  std::memset(data.data(), 0, data.size());
}

void AcpiSleep::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty()) return;  // writes to the status register only clear bits
  uint8_t value = data[0];
  if ((value & kSleepEnable) && ((value >> kSleepTypeShift) & kSleepTypeMask) == soft_off_type_) {
    on_power_off_();
  }
}

void AcpiSleep::save_state(state::Writer& w) const { w.end(w.begin("acpi-sleep", 1)); }

void AcpiSleep::load_state(state::Reader& r) { r.record("acpi-sleep", 1).body.expect_end(); }

}  // namespace berth::devices
