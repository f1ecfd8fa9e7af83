// The guest's ways into a PciBus, as vmm::BusDevices the machine registers:
//  - ConfigPorts over kConfigPortsBase..+8 (0xCF8..0xCFF), configuration mechanism #1;
//  - Ecam over kEcamBase..+kEcamSize, the memory-mapped configuration space;
//  - BarWindow over a range of I/O or memory space where the firmware places BARs.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "devices/pci/pci_bus.h"
#include "vmm/bus_device.h"

namespace berth::devices::pci {

// Offsets 0..3 (0xCF8..0xCFB): a dword access is the address register (bit 31 enable,
// bus 23:16, device 15:11, function 10:8, register 7:2; bits 30:24 and 1:0 read 0). A byte
// access at offset 1 (0xCF9) goes to `reset_control`, the chipset's reset control register,
// which on ICH9 shares these ports (only the dword is the address register); other byte
// and word accesses there read all-ones and are ignored.
// Offsets 4..7 (0xCFC..0xCFF): the data window onto the addressed function's dword, each
// port its byte lane, any access of 1, 2 or 4 bytes that stays inside the dword. With the
// enable bit clear, or past the dword, reads are all-ones and writes are ignored.
class ConfigPorts final : public vmm::BusDevice {
 public:
  ConfigPorts(std::shared_ptr<PciBus> bus, std::shared_ptr<vmm::BusDevice> reset_control);
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::shared_ptr<PciBus> bus_;
  std::shared_ptr<vmm::BusDevice> reset_control_;
};

// offset = bus << 20 | device << 15 | function << 12 | register. Accesses of 1, 2 or 4
// bytes inside one dword reach the function; an aligned 8-byte access is two dword
// accesses (low first); anything else reads all-ones and is ignored. The base is fixed at
// kEcamBase whatever the guest writes to the host bridge's PCIEXBAR.
class Ecam final : public vmm::BusDevice {
 public:
  explicit Ecam(std::shared_ptr<PciBus> bus) : bus_(std::move(bus)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::shared_ptr<PciBus> bus_;
};

// A window of `space` registered at `base`: an access at offset o reaches the decoded BAR
// covering base + o, or reads all-ones and is ignored.
class BarWindow final : public vmm::BusDevice {
 public:
  BarWindow(std::shared_ptr<PciBus> bus, BarSpace space, uint64_t base)
      : bus_(std::move(bus)), space_(space), base_(base) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::shared_ptr<PciBus> bus_;
  BarSpace space_;
  uint64_t base_;
};

}  // namespace berth::devices::pci
