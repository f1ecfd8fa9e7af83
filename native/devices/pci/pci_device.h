// A PCI function as the bus sees it: a configuration space (conventional 256 bytes, reached
// through ports 0xCF8/0xCFC or ECAM; the extended 4 KiB through ECAM only) and up to six
// base address registers (BARs) the bus decodes on the function's behalf. The bus knows no
// device by name: it forwards configuration accesses and, for a BAR the guest has placed
// and enabled, the accesses inside it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "vmm/bus_device.h"

namespace berth::devices::pci {

constexpr uint32_t kConventionalConfigSize = 256;
constexpr uint32_t kExtendedConfigSize = 4096;
constexpr uint32_t kBarCount = 6;
// The expansion ROM (configuration offset 0x30) is decoded like a BAR: bar_mapping,
// bar_read and bar_write take it as BAR index 6, after the six BARs.
constexpr uint32_t kExpansionRomBar = 6;
constexpr uint32_t kBarSlotCount = 7;
constexpr uint32_t kSlotCount = 32;
constexpr uint32_t kFunctionCount = 8;

enum class BarKind : uint8_t { kIo, kMem32, kMem64 };

// A BAR the guest has programmed with an address while the function decodes its kind of
// space (the command register's I/O or memory enable).
struct BarMapping {
  BarKind kind = BarKind::kMem32;
  uint64_t address = 0;
  uint64_t size = 0;  // a power of two
};

class PciDevice {
 public:
  virtual ~PciDevice() = default;
  // offset < kExtendedConfigSize; data is 1, 2 or 4 bytes and does not cross a dword.
  // Offsets the function does not implement read as zero and ignore writes.
  virtual void config_read(uint32_t offset, std::span<uint8_t> data) = 0;
  virtual void config_write(uint32_t offset, std::span<const uint8_t> data) = 0;
  // Where BAR `bar` (0..5, or kExpansionRomBar) is decoded now (nullopt: unused, unplaced
  // or decoding off). The bus
  // asks after every configuration write, so a moved or disabled BAR takes effect at once.
  virtual std::optional<BarMapping> bar_mapping(uint32_t bar) const = 0;
  // An access inside a decoded BAR; offset is from the BAR's start.
  virtual void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) = 0;
  // Machine reset: configuration registers (BARs, command) and device state to power-on.
  virtual void reset() = 0;
  // The platform's interrupt input for the function's INTx pin (configuration byte 0x3d),
  // chosen by the bus; nullptr disconnects it. Not owned: the line outlives the function.
  virtual void connect_intx(vmm::IrqLine* line) = 0;
};

}  // namespace berth::devices::pci
