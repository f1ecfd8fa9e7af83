// An address space of devices: the I/O-port bus or the MMIO bus. Ranges never overlap;
// registration happens before vCPUs run, lookups are lock-free afterwards.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "vmm/bus_device.h"

namespace berth::vmm {

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Registers device over [base, base+length). Throws berth::Error BUS_OVERLAP naming both
  // ranges when it overlaps a registered one, BUS_RANGE for an empty or wrapping range.
  void insert(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device, std::string label);

  // Dispatches an access; returns false when no device covers [address, address+size).
  bool read(uint64_t address, std::span<uint8_t> data) const;
  bool write(uint64_t address, std::span<const uint8_t> data) const;

  size_t size() const { return ranges_.size(); }

 private:
  struct Range {
    uint64_t length;
    std::shared_ptr<BusDevice> device;
    std::string label;
  };
  const std::pair<const uint64_t, Range>* find(uint64_t address, uint64_t size) const;

  std::string name_;
  std::map<uint64_t, Range> ranges_;  // keyed by base address
};

}  // namespace berth::vmm
