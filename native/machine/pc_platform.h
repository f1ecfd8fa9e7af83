// The chipset and firmware devices of a firmware-booted VM (Generation 1 and 2): the
// Q35-like PCI host bridge and LPC bridge on PCI bus 0 (configuration ports and ECAM),
// the ACPI PM block and reset register, fw_cfg with the ACPI tables, memory map and boot
// order, and the firmware itself: OVMF's code and variable store as flash, or SeaBIOS's
// ROM. The machine owns one when MachineConfig::firmware is set; it adds its virtio
// devices as PCI functions here and maps the firmware into each hypervisor VM it builds.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/state_stream.h"
#include "hv/hv.h"
#include "machine/machine.h"
#include "vmm/bus.h"
#include "vmm/guest_memory.h"

namespace berth::devices::pci {
class PciBus;
class PciDevice;
class HostBridge;
class LpcBridge;
}  // namespace berth::devices::pci
namespace berth::devices::display {
class BochsDisplay;
class Framebuffer;
}  // namespace berth::devices::display
namespace berth::devices::platform {
class AcpiPm;
class ResetControl;
class FwCfg;
class Pflash;
}  // namespace berth::devices::platform

namespace berth::machine {

// Memory slots of the firmware's flash (or ROM), after the RAM regions' slots.
constexpr uint32_t kFirmwareFirstSlot = 8;
// The memory slot of the display's framebuffer (after the two flash slots).
constexpr uint32_t kDisplayMemorySlot = 12;

class PcPlatform {
 public:
  struct Wiring {
    vmm::GuestMemory& memory;
    vmm::Bus& io_bus;
    vmm::Bus& mmio_bus;
    // The platform's interrupt input for a GSI (9 for the SCI, 16..23 for PCI INTx): level.
    std::function<vmm::IrqLine&(uint32_t gsi)> line;
    // Runs `f` on the current hypervisor VM, if there is one (flash switching modes).
    std::function<void(const std::function<void(hv::Vm&)>& f)> with_vm;
    std::function<void()> on_power_off;
    std::function<void()> on_reset;
  };

  // Checks and opens the firmware (FIRMWARE_*, FLASH_*) and builds the chipset.
  PcPlatform(const MachineConfig& config, Wiring wiring);
  ~PcPlatform();
  PcPlatform(const PcPlatform&) = delete;
  PcPlatform& operator=(const PcPlatform&) = delete;

  devices::pci::PciBus& pci() { return *bus_; }
  // Puts a device in the next free slot (1..30); returns the slot.
  uint32_t add_device(std::shared_ptr<devices::pci::PciDevice> device);
  // What the boot order names: each device's kind and slot, in the order added.
  void set_boot_devices(std::vector<std::pair<FirmwareConfig::BootDevice, std::string>> ofw_paths);
  // Fills fw_cfg (memory map, CPUs, ACPI tables and their loader, boot order): once, after
  // every device is added and before the guest runs.
  void finish(const MachineConfig& config);

  // A new hypervisor VM (first build, a reset or a resume): maps the firmware.
  void attach(hv::Vm& vm);
  // Power-on (first build or a reset, not a resume: the guest's RAM already holds what it
  // made of it): a BIOS's low copy goes where its reset vector jumps to.
  void load_firmware();
  // Machine reset: chipset registers, PM block, fw_cfg and flash to power-on.
  void reset();
  void press_power_button();
  // The display's picture, or nullptr without FirmwareConfig::display.
  devices::display::Framebuffer* framebuffer() { return framebuffer_.get(); }

  // Saved state: records of the chipset, PCI bus, PM block, reset control, fw_cfg and
  // flash command state (the devices on the bus save their own).
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);
  // After the devices on the bus loaded their records too: their BARs decode again.
  void devices_loaded();

 private:
  void map_flash(hv::Vm& vm, size_t index);
  void add_firmware(const MachineConfig& config);
  void add_display(const MachineConfig& config);
  // Maps the framebuffer's slot at `address` (nullopt: unmaps it) in `vm`.
  void map_display(hv::Vm& vm, std::optional<uint64_t> address);
  bool take_display_writes(std::span<uint64_t> bitmap);

  Wiring w_;
  FirmwareKind kind_;
  std::shared_ptr<devices::pci::PciBus> bus_;
  std::shared_ptr<devices::pci::HostBridge> host_bridge_;
  std::shared_ptr<devices::pci::LpcBridge> lpc_;
  std::shared_ptr<devices::platform::AcpiPm> pm_;
  std::shared_ptr<devices::platform::ResetControl> reset_control_;
  std::shared_ptr<devices::platform::FwCfg> fw_cfg_;
  struct Flash {
    std::shared_ptr<devices::platform::Pflash> device;
    uint64_t gpa = 0;
    uint32_t slot = 0;
  };
  std::vector<Flash> flash_;           // UEFI: code, then variables; BIOS: the ROM
  std::vector<uint8_t> bios_low_copy_;  // BIOS: the ROM's last 128 KiB, at 0xE0000
  std::shared_ptr<devices::display::BochsDisplay> display_;
  std::unique_ptr<devices::display::Framebuffer> framebuffer_;
  // Where the framebuffer's slot is mapped in the current VM; fresh: mapped since the
  // last take_display_writes (its log does not hold what was written before).
  std::mutex display_mu_;
  std::optional<uint64_t> display_mapped_;
  bool display_fresh_ = false;
  uint32_t next_slot_ = 1;
  std::vector<std::pair<FirmwareConfig::BootDevice, std::string>> boot_devices_;
};

}  // namespace berth::machine
