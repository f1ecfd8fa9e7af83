// Helpers for the PCI tests: a recording IrqLine and typed configuration accessors.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "devices/pci/pci_device.h"
#include "vmm/bus_device.h"

namespace berth::test::pci {

class FakeIrq final : public vmm::IrqLine {
 public:
  void set_level(bool high) override {
    level = high;
    changes.push_back(high);
  }
  bool level = false;
  std::vector<bool> changes;
};

inline uint32_t cfg_read(devices::pci::PciDevice& d, uint32_t offset, uint32_t size) {
  uint8_t b[4] = {};
  d.config_read(offset, std::span<uint8_t>(b, size));
  uint32_t v = 0;
  for (uint32_t i = 0; i < size; ++i) v |= uint32_t{b[i]} << (8 * i);
  return v;
}

inline void cfg_write(devices::pci::PciDevice& d, uint32_t offset, uint32_t size, uint32_t value) {
  uint8_t b[4] = {};
  for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
  d.config_write(offset, std::span<const uint8_t>(b, size));
}

// Little-endian access to a vmm::BusDevice.
inline uint64_t bus_read(vmm::BusDevice& d, uint64_t offset, uint32_t size) {
  uint8_t b[8] = {};
  d.read(offset, std::span<uint8_t>(b, size));
  uint64_t v = 0;
  for (uint32_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
  return v;
}

inline void bus_write(vmm::BusDevice& d, uint64_t offset, uint32_t size, uint64_t value) {
  uint8_t b[8] = {};
  for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
  d.write(offset, std::span<const uint8_t>(b, size));
}

}  // namespace berth::test::pci
