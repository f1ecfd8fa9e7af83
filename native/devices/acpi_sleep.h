// The sleep control and status registers of a hardware-reduced ACPI platform: the guest
// writes SLP_TYP (from the DSDT's \_S5) with SLP_EN to power the VM off.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices {

class AcpiSleep final : public vmm::BusDevice {
 public:
  static constexpr uint64_t kPortCount = 2;  // offset 0: control, offset 1: status
  AcpiSleep(uint8_t soft_off_type, std::function<void()> on_power_off)
      : soft_off_type_(soft_off_type), on_power_off_(std::move(on_power_off)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Saved state: an empty record "acpi-sleep" (nothing is ever pending; the sleep type is
  // configuration).
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  uint8_t soft_off_type_;
  std::function<void()> on_power_off_;
};

}  // namespace berth::devices
