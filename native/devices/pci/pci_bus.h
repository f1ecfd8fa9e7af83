// PCI bus 0 of the platform: up to 32 slots of 8 functions. It routes configuration
// accesses (from ConfigPorts and Ecam, see pci_access.h) to the functions, keeps the map of
// decoded BARs the BarWindows dispatch through, and wires each function's INTx pin to the
// platform's interrupt input intx_gsi(slot, pin).
//
// Absent functions and every bus but 0 read all-ones and ignore writes. Function 0 of a
// slot holding other functions reads with the header type's multi-function bit set.
//
// Locking: one mutex serialises configuration accesses (and the CF8 address register in
// ConfigPorts). After every configuration write the bus asks every function for its
// bar_mapping() and publishes a new immutable decode map; BAR accesses take a snapshot of
// the current map under a shared lock and dispatch without any bus lock held, so they
// never wait for a configuration access to finish. The listener set with
// set_bars_changed_listener runs after the new map is published, on the thread of the
// configuration write, with the configuration mutex held (it must not make configuration
// accesses; it may call decoded_bars() and bar()).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <vector>

#include "common/state_stream.h"
#include "devices/pci/pci_device.h"
#include "devices/pci/q35_layout.h"
#include "vmm/bus_device.h"

namespace berth::devices::pci {

// Which address space a BAR window covers: I/O ports, or memory (32- and 64-bit memory BARs
// alike: firmware often places 64-bit BARs below 4 GiB).
enum class BarSpace : uint8_t { kIo, kMemory };

struct DecodedBar {
  uint32_t slot;
  uint32_t function;
  uint32_t bar;
  BarMapping mapping;
};

class PciBus {
 public:
  // The machine's interrupt input for a GSI (kIntxFirstGsi..+kIntxGsiCount-1); it must
  // outlive the bus. Without a provider, functions are left unconnected.
  using LineProvider = std::function<vmm::IrqLine*(uint32_t gsi)>;

  explicit PciBus(LineProvider lines = {});
  ~PciBus();
  PciBus(const PciBus&) = delete;
  PciBus& operator=(const PciBus&) = delete;

  // Setup, before vCPUs run. Throws PCI_SLOT_INVALID for a slot above 31, a function
  // above 7 or no device; PCI_SLOT_IN_USE when slot.function already holds one. Connects
  // the function's INTx pin (configuration byte 0x3d) through the line provider.
  void add(uint32_t slot, uint32_t function, std::shared_ptr<PciDevice> device);
  std::shared_ptr<PciDevice> function(uint32_t slot, uint32_t function) const;

  // A configuration access (data 1, 2 or 4 bytes, not crossing a dword; anything else
  // reads all-ones and is ignored). offset < kExtendedConfigSize.
  void config_read(uint32_t bus, uint32_t slot, uint32_t function, uint32_t offset,
                   std::span<uint8_t> data);
  void config_write(uint32_t bus, uint32_t slot, uint32_t function, uint32_t offset,
                    std::span<const uint8_t> data);

  // An access at an absolute address of `space` to the first decoded BAR (in slot,
  // function, BAR order) that covers all of it. Returns false when none does.
  bool bar_read(BarSpace space, uint64_t address, std::span<uint8_t> data) const;
  bool bar_write(BarSpace space, uint64_t address, std::span<const uint8_t> data) const;

  // The decode map now: every decoded BAR, in slot, function, BAR order.
  std::vector<DecodedBar> decoded_bars() const;
  // Where one BAR is decoded now (nullopt: absent or not decoding).
  std::optional<BarMapping> bar(uint32_t slot, uint32_t function, uint32_t bar) const;
  // Called after a configuration write (or reset/refresh) changed the decode map.
  void set_bars_changed_listener(std::function<void()> listener);

  // Machine reset: every function's reset(), then the decode map is rebuilt.
  void reset();
  // Rebuilds the decode map from the functions' registers: after loading their state.
  void refresh();

  // The CF8 address register (ConfigPorts' storage, kept here so the bus's record holds
  // it). Two vCPUs interleaving address and data accesses race as on real hardware.
  uint32_t config_address() const;
  void set_config_address(uint32_t value);

  // Saved state: record "pci-bus" (version 1) with the CF8 address register. The
  // functions save their own records; after loading them, call refresh().
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  class IntxCombiner;
  struct Entry {
    uint64_t start;
    uint64_t end;  // exclusive
    BarSpace space;
    DecodedBar bar;
    PciDevice* device;
  };
  using DecodeMap = std::vector<Entry>;

  PciDevice* find(uint32_t bus, uint32_t slot, uint32_t function) const;
  void rebuild_locked();
  std::shared_ptr<const DecodeMap> snapshot() const;
  const Entry* lookup(const DecodeMap& map, BarSpace space, uint64_t address, uint64_t size) const;

  LineProvider lines_;
  std::array<std::shared_ptr<PciDevice>, kSlotCount * kFunctionCount> functions_{};
  std::vector<std::unique_ptr<IntxCombiner>> combiners_;
  std::vector<std::unique_ptr<vmm::IrqLine>> intx_inputs_;

  mutable std::mutex config_mu_;
  std::atomic<uint32_t> config_address_{0};
  std::function<void()> on_bars_changed_;

  mutable std::shared_mutex map_mu_;
  std::shared_ptr<const DecodeMap> map_;
};

}  // namespace berth::devices::pci
