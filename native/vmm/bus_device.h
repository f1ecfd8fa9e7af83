// What the VMM's I/O-port and MMIO buses dispatch to. A device sees offsets relative to
// the start of the range it was registered at, never absolute addresses.
#pragma once

#include <cstdint>
#include <span>

namespace berth::vmm {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // Fills data (1, 2, 4 or 8 bytes) with the value read at offset.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

// One interrupt input of the platform's interrupt controllers. Devices drive it with the
// level of their interrupt output; edge-triggered lines see the rising edge.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void set_level(bool high) = 0;
};

}  // namespace berth::vmm
