// A conventional PCI function with a type-0 header: the base the platform's functions
// (host bridge, LPC bridge, virtio-pci) derive from. It keeps the 256-byte configuration
// space with a per-byte writable mask and write-1-to-clear mask, so every register a guest
// writes takes only the bits it may change:
//  - identity (vendor/device, revision, class code, subsystem IDs, header type, interrupt
//    pin) is read-only; the header type's multi-function bit is set by set_multi_function;
//  - command: I/O, memory, bus-master, parity-error response, SERR# and interrupt-disable
//    are writable; status: bit 3 (interrupt status) and bit 4 (capability list) are the
//    function's, the error bits 8, 11..15 are write-1-to-clear;
//  - cache line size, latency timer and interrupt line are plain storage;
//  - BARs declared with declare_bar take only the address bits above their size (writing
//    all-ones reads back the size mask with the type bits); undeclared BARs and the
//    extended space 0x100..0xfff read 0;
//  - the expansion ROM BAR (0x30), when declared with declare_expansion_rom, takes the
//    address bits above its size and the enable bit 0; it decodes (as BAR index
//    kExpansionRomBar) while enabled, placed and memory decoding is on (PCI 3.0 6.2.5.2).
//    Undeclared, it reads 0;
//  - capabilities added with add_capability are chained from 0x34, each with its own
//    writable mask; derived classes open device-specific registers (0x40..0xff) with
//    set_config_register.
//
// Locking: one mutex guards the configuration space. The hooks (on_config_write,
// on_capability_write) run after a write with it released, so they may call the config
// accessors and set_intx. IrqLine::set_level is called with the mutex held and must not
// call back into the function.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include "common/state_stream.h"
#include "devices/pci/pci_device.h"
#include "vmm/bus_device.h"

namespace berth::devices::pci {

// Configuration header offsets and bits the platform needs by name.
namespace config {
constexpr uint32_t kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06,
                   kRevision = 0x08, kClassCode = 0x09, kCacheLineSize = 0x0c,
                   kLatencyTimer = 0x0d, kHeaderType = 0x0e, kBist = 0x0f, kBar0 = 0x10,
                   kSubsystemVendorId = 0x2c, kSubsystemId = 0x2e, kExpansionRom = 0x30,
                   kCapabilityPointer = 0x34, kInterruptLine = 0x3c, kInterruptPin = 0x3d,
                   kDeviceSpecific = 0x40;
constexpr uint16_t kCommandIo = 1 << 0, kCommandMemory = 1 << 1, kCommandBusMaster = 1 << 2,
                   kCommandParity = 1 << 6, kCommandSerr = 1 << 8,
                   kCommandInterruptDisable = 1 << 10;
constexpr uint16_t kStatusInterrupt = 1 << 3, kStatusCapabilityList = 1 << 4;
// Error bits the guest clears by writing 1: master data parity error, signaled/received
// target abort, received master abort, signaled system error, detected parity error.
constexpr uint16_t kStatusWriteOneToClear = 0x0100 | 0xf800;
constexpr uint8_t kHeaderTypeMultiFunction = 0x80;
constexpr uint32_t kBarIo = 0x1, kBarMem64 = 0x4, kBarPrefetchable = 0x8;
constexpr uint32_t kExpansionRomEnable = 0x1;
}  // namespace config

class PciFunction : public PciDevice {
 public:
  struct Identity {
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    uint8_t revision = 0;
    uint32_t class_code = 0;  // base class << 16 | subclass << 8 | programming interface
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_id = 0;
    uint8_t interrupt_pin = 0;  // 0: no INTx; 1..4: INTA#..INTD#
  };

  // Throws berth::Error PCI_FUNCTION_INVALID for a class code above 24 bits or a pin above 4.
  explicit PciFunction(const Identity& identity);

  // Setup, before the function is added to a bus. BAR `index` of `kind` and `size` (a
  // power of two; I/O 4..256 bytes, memory 16 bytes..2 GiB for kMem32, up to 2^63 for
  // kMem64, which also takes BAR index+1). Throws PCI_BAR_INVALID for a bad index, size,
  // or a BAR that overlaps one already declared.
  void declare_bar(uint32_t index, BarKind kind, uint64_t size, bool prefetchable = false);
  // The expansion ROM BAR, `size` bytes (a power of two, 2 KiB..16 MiB); the function
  // answers reads of BAR index kExpansionRomBar with the image. Throws PCI_BAR_INVALID for
  // a bad size or a second declaration.
  void declare_expansion_rom(uint64_t size);
  // A capability of `id` whose body (after the id and next-pointer bytes) is
  // initial.size() bytes; writable[i] is the mask of bits of body byte i the guest may
  // write (shorter than the body: the rest is read-only). Capabilities are placed from 0x40
  // upwards, dword aligned, and chained in the order added. Returns the capability's
  // offset. Throws PCI_CAPABILITY_INVALID when the space below 0x100 runs out or the
  // ranges reserved with set_config_register are in the way.
  uint8_t add_capability(uint8_t id, std::span<const uint8_t> initial, std::span<const uint8_t> writable = {});
  // A device-specific register: `size` bytes at `offset` (0x40..0xff), with its power-on
  // value (little-endian), writable bits and write-1-to-clear bits. Throws
  // PCI_CAPABILITY_INVALID when the bytes overlap a capability or leave the header's end.
  void set_config_register(uint32_t offset, uint32_t size, uint64_t initial, uint64_t writable,
                           uint64_t write_one_to_clear = 0);
  void set_multi_function(bool on);

  // PciDevice.
  void config_read(uint32_t offset, std::span<uint8_t> data) override;
  void config_write(uint32_t offset, std::span<const uint8_t> data) override;
  std::optional<BarMapping> bar_mapping(uint32_t bar) const override;
  // Default BAR accesses: reads are all-ones, writes are ignored.
  void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override;
  // Power-on configuration space (BARs unplaced, command 0, capabilities' initial
  // values); the INTx input level is kept (the device's own reset decides it).
  void reset() override;
  void connect_intx(vmm::IrqLine* line) override;

  // The function's interrupt input: status bit 3 follows it, and the connected IrqLine
  // is high while it is high and the command register's interrupt disable is clear.
  void set_intx(bool level);

  // Register values as the guest sees them (little-endian, size 1..8, inside 256 bytes).
  uint64_t config_value(uint32_t offset, uint32_t size) const;
  // Sets bits the guest cannot write (a capability's status fields): value is stored as
  // is. Out-of-range offsets are ignored.
  void set_config_value(uint32_t offset, uint32_t size, uint64_t value);

  // Saved state: record "pci-function" (version 1): the 256 configuration bytes and the
  // INTx input level. Loading takes from the record only the bits the guest or the device
  // could have changed (writable, write-1-to-clear and device-set bits); the identity
  // registers must match this function's or it throws STATE_INVALID, and a bad record
  // changes nothing. Derived classes nest this record inside their own.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 protected:
  // After a guest write to a device-specific register or a capability (with the mutex
  // released): offset and size are those of the write.
  virtual void on_config_write(uint32_t offset, uint32_t size) { (void)offset, (void)size; }
  // After a guest write inside the capability at cap_offset (id cap_id).
  virtual void on_capability_write(uint8_t cap_offset, uint8_t cap_id, uint32_t offset_in_cap,
                                   uint32_t size) {
    (void)cap_offset, (void)cap_id, (void)offset_in_cap, (void)size;
  }
  // Marks bits the device itself changes (not the guest) as state to restore.
  void set_device_owned(uint32_t offset, uint32_t size, uint64_t mask);

 private:
  struct Bar {
    BarKind kind = BarKind::kMem32;
    uint64_t size = 0;  // 0: unused (or the upper half of a 64-bit BAR)
    bool prefetchable = false;
  };
  struct Capability {
    uint8_t offset;
    uint8_t id;
    uint8_t length;  // including the id and next-pointer bytes
  };

  void set_mask(std::array<uint8_t, kConventionalConfigSize>& mask, uint32_t offset,
                uint32_t size, uint64_t value);
  void put(std::array<uint8_t, kConventionalConfigSize>& bytes, uint32_t offset, uint32_t size,
           uint64_t value);
  uint64_t get(uint32_t offset, uint32_t size) const;
  void update_intx_locked();
  bool reserved(uint32_t offset, uint32_t size) const;

  mutable std::mutex mu_;
  std::array<uint8_t, kConventionalConfigSize> config_{};
  std::array<uint8_t, kConventionalConfigSize> power_on_{};
  std::array<uint8_t, kConventionalConfigSize> writable_{};
  std::array<uint8_t, kConventionalConfigSize> write_one_to_clear_{};
  std::array<uint8_t, kConventionalConfigSize> device_owned_{};
  std::array<uint8_t, kConventionalConfigSize> claimed_{};  // device-specific bytes in use
  std::array<Bar, kBarCount> bars_{};
  uint64_t rom_size_ = 0;  // 0: no expansion ROM
  std::array<Capability, 48> capabilities_{};
  uint32_t capability_count_ = 0;
  uint8_t next_capability_offset_ = config::kDeviceSpecific;
  bool intx_level_ = false;
  bool intx_output_ = false;
  vmm::IrqLine* intx_line_ = nullptr;
};

}  // namespace berth::devices::pci
