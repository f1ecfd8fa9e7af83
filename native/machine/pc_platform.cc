#include "machine/pc_platform.h"

#include <algorithm>

#include "common/error.h"
#include "devices/display/bochs_display.h"
#include "devices/display/framebuffer.h"
#include "devices/pci/host_bridge.h"
#include "devices/pci/lpc.h"
#include "devices/pci/pci_access.h"
#include "devices/pci/pci_bus.h"
#include "devices/pci/q35_layout.h"
#include "devices/platform/acpi_loader.h"
#include "devices/platform/acpi_pm.h"
#include "devices/platform/fw_cfg.h"
#include "devices/platform/fw_cfg_formats.h"
#include "devices/platform/pflash.h"
#include "devices/platform/reset_control.h"
#include "machine/firmware_image.h"
#include "machine/firmware_tables.h"

namespace berth::machine {

namespace pci = devices::pci;
namespace platform = devices::platform;

namespace {

constexpr uint64_t kBiosLowBase = 0xe0000;  // the last 128 KiB of a BIOS ROM, aliased below 1 MiB
constexpr uint64_t kBiosLowSize = 0x20000;
constexpr uint16_t kSerialPort = 0x3f8;
// The 64-bit BAR window: from the first GiB boundary above RAM (and 4 GiB) to 1 TiB, a
// range every x86-64 processor of the last decade can address. OVMF puts its 64-bit
// aperture inside it (by default 32 GiB at the first 32 GiB boundary above RAM).
constexpr uint64_t kMmio64WindowEnd = 1ull << 40;

uint64_t mmio64_window_base(const vmm::GuestMemory& memory) {
  uint64_t top = vmm::kHighRamStart;
  for (const auto& r : memory.regions()) top = std::max(top, r.gpa + r.size);
  return (top + (1ull << 30) - 1) & ~((1ull << 30) - 1);
}

}  // namespace

PcPlatform::PcPlatform(const MachineConfig& config, Wiring wiring) : w_(std::move(wiring)), kind_(config.firmware.kind) {
  bus_ = std::make_shared<pci::PciBus>([this](uint32_t gsi) -> vmm::IrqLine* { return &w_.line(gsi); });
  host_bridge_ = std::make_shared<pci::HostBridge>();
  lpc_ = std::make_shared<pci::LpcBridge>();
  bus_->add(pci::kHostBridgeSlot, 0, host_bridge_);
  bus_->add(pci::kLpcSlot, 0, lpc_);
  pm_ = std::make_shared<platform::AcpiPm>(w_.line(platform::AcpiPm::kSciIrq), w_.on_power_off);
  reset_control_ = std::make_shared<platform::ResetControl>(w_.on_reset);
  fw_cfg_ = std::make_shared<platform::FwCfg>(w_.memory);

  w_.io_bus.insert(platform::AcpiPm::kBase, platform::AcpiPm::kPortCount, pm_, "ACPI PM block");
  w_.io_bus.insert(pci::kConfigPortsBase, pci::kConfigPortsCount,
                   std::make_shared<pci::ConfigPorts>(bus_, reset_control_), "PCI configuration ports");
  w_.io_bus.insert(platform::FwCfg::kPortBase, platform::FwCfg::kPortCount, fw_cfg_, "fw_cfg");
  w_.io_bus.insert(pci::kIoWindowBase, pci::kIoWindowEnd - pci::kIoWindowBase,
                   std::make_shared<pci::BarWindow>(bus_, pci::BarSpace::kIo, pci::kIoWindowBase), "PCI I/O window");
  w_.mmio_bus.insert(pci::kEcamBase, pci::kEcamSize, std::make_shared<pci::Ecam>(bus_), "PCI ECAM");
  w_.mmio_bus.insert(pci::kMmio32WindowBase, pci::kMmio32WindowEnd - pci::kMmio32WindowBase,
                     std::make_shared<pci::BarWindow>(bus_, pci::BarSpace::kMemory, pci::kMmio32WindowBase),
                     "PCI 32-bit memory window");
  const uint64_t high = mmio64_window_base(w_.memory);
  w_.mmio_bus.insert(high, kMmio64WindowEnd - high, std::make_shared<pci::BarWindow>(bus_, pci::BarSpace::kMemory, high),
                     "PCI 64-bit memory window");
  add_firmware(config);
  if (config.firmware.display) add_display(config);
}

void PcPlatform::add_display(const MachineConfig& config) {
  std::vector<uint8_t> rom;
  if (!config.firmware.display_rom_path.empty()) rom = devices::display::read_option_rom(config.firmware.display_rom_path);
  display_ = std::make_shared<devices::display::BochsDisplay>(std::move(rom));
  framebuffer_ = std::make_unique<devices::display::Framebuffer>(*display_);
  // The framebuffer's memory slot follows BAR 0 (on a vCPU's configuration write, a reset
  // or a load); without a VM yet, attach() maps it.
  display_->set_framebuffer_listener([this](std::optional<uint64_t> address) {
    w_.with_vm([&](hv::Vm& vm) { map_display(vm, address); });
  });
  framebuffer_->set_written_pages_source([this](std::span<uint64_t> bitmap) { return take_display_writes(bitmap); });
  bus_->add(pci::kDisplaySlot, 0, display_);
}

void PcPlatform::map_display(hv::Vm& vm, std::optional<uint64_t> address) {
  std::lock_guard<std::mutex> lock(display_mu_);
  if (display_mapped_ == address) return;
  if (display_mapped_) vm.unmap_memory(kDisplayMemorySlot);
  display_mapped_.reset();
  if (!address) return;
  auto& vram = display_->video_memory();
  // A guest may place the BAR over RAM or flash (firmware sizing it with decoding on):
  // the hypervisor refuses the overlap and accesses reach the device through the bus.
  try {
    vm.map_memory(kDisplayMemorySlot, *address, vram.size(), vram.data(), false, /*track_writes=*/true);
    display_mapped_ = address;
    display_fresh_ = true;
  } catch (const Error&) {
  }
}

bool PcPlatform::take_display_writes(std::span<uint64_t> bitmap) {
  bool logged = false;
  w_.with_vm([&](hv::Vm& vm) {
    std::lock_guard<std::mutex> lock(display_mu_);
    if (!display_mapped_) return;
    try {
      vm.take_written_pages(kDisplayMemorySlot, bitmap);
      logged = !display_fresh_;
      display_fresh_ = false;
    } catch (const Error&) {
    }
  });
  return logged;
}

PcPlatform::~PcPlatform() = default;

void PcPlatform::add_firmware(const MachineConfig& config) {
  const auto& fw = config.firmware;
  auto add = [&](std::shared_ptr<platform::Pflash> device, uint64_t gpa, const char* label) {
    const size_t index = flash_.size();
    flash_.push_back({device, gpa, kFirmwareFirstSlot + static_cast<uint32_t>(index)});
    w_.mmio_bus.insert(gpa, device->size(), device, label);
    // Reads in command mode (status, ID) must reach the device: its memory slot goes away
    // until the guest returns the flash to read-array mode.
    device->set_mode_callback([this, index](bool array_mode) {
      w_.with_vm([&](hv::Vm& vm) {
        if (array_mode) {
          map_flash(vm, index);
        } else {
          vm.unmap_memory(flash_[index].slot);
        }
      });
    });
  };
  if (fw.kind == FirmwareKind::kUefi) {
    const UefiLayout layout = check_uefi_images(fw.code_path, fw.vars_path);
    add(std::make_shared<platform::Pflash>(fw.code_path, platform::Pflash::Access::kReadOnly), layout.code_base,
        "UEFI code flash");
    add(std::make_shared<platform::Pflash>(fw.vars_path, platform::Pflash::Access::kWritable), layout.vars_base,
        "UEFI variable flash");
  } else {
    const std::vector<uint8_t> rom = read_bios_image(fw.code_path);
    bios_low_copy_.assign(rom.end() - static_cast<long>(kBiosLowSize), rom.end());
    add(std::make_shared<platform::Pflash>(fw.code_path, platform::Pflash::Access::kReadOnly), kFirmwareTop - rom.size(),
        "BIOS ROM");
  }
}

uint32_t PcPlatform::add_device(std::shared_ptr<pci::PciDevice> device) {
  while (next_slot_ < pci::kLpcSlot && bus_->function(next_slot_, 0)) ++next_slot_;  // the display's
  if (next_slot_ >= pci::kLpcSlot) throw Error("VM_DEVICES", "no free PCI slot for another device");
  const uint32_t slot = next_slot_++;
  bus_->add(slot, 0, std::move(device));
  return slot;
}

void PcPlatform::set_boot_devices(std::vector<std::pair<FirmwareConfig::BootDevice, std::string>> ofw_paths) {
  boot_devices_ = std::move(ofw_paths);
}

void PcPlatform::finish(const MachineConfig& config) {
  namespace key = platform::fw_cfg_key;
  fw_cfg_->add_u64(key::kRamSize, config.memory_bytes);
  fw_cfg_->add_u16(key::kNbCpus, static_cast<uint16_t>(config.vcpu_count));
  fw_cfg_->add_u16(key::kMaxCpus, static_cast<uint16_t>(config.vcpu_count));
  fw_cfg_->add_u16(key::kBootMenu, 0);
  // SeaBIOS writes its screen to COM1 (sercon) too, as QEMU's -nographic, with or
  // without a display: the console stays the machine's record of what the BIOS said.
  fw_cfg_->add_u16(key::kNoGraphic, display_ ? 0 : 1);
  if (kind_ == FirmwareKind::kBios) fw_cfg_->add_file("etc/sercon-port", platform::le_file(kSerialPort, 2));

  std::vector<platform::E820Entry> e820;
  for (const auto& r : w_.memory.regions()) e820.push_back({r.gpa, r.size, platform::kE820Ram});
  fw_cfg_->add_file("etc/e820", platform::e820_file(e820));

  std::vector<std::string> order;
  for (auto kind : config.firmware.boot_order) {
    for (const auto& [device_kind, path] : boot_devices_) {
      if (device_kind == kind) order.push_back(path);
    }
  }
  if (!order.empty()) fw_cfg_->add_file("bootorder", platform::bootorder_file(order));

  FirmwarePlatform p;
  p.vcpu_count = config.vcpu_count;
  p.pm_base = platform::AcpiPm::kBase;
  p.gpe0_offset = platform::AcpiPm::kGpe0Status;
  p.gpe0_length = platform::AcpiPm::kGpe0BlockLength;
  p.pm_timer_32bit = platform::AcpiPm::kTimerIs32Bit;
  p.sci_irq = platform::AcpiPm::kSciIrq;
  p.s5_sleep_type = platform::AcpiPm::kS5SleepType;
  p.reset_port = platform::ResetControl::kPort;
  p.reset_value = platform::ResetControl::kFadtResetValue;
  p.ecam_base = pci::kEcamBase;
  p.ecam_last_bus = static_cast<uint8_t>(pci::kEcamBusCount - 1);
  p.mmio32_start = static_cast<uint32_t>(pci::kMmio32WindowBase);
  p.mmio32_end = static_cast<uint32_t>(pci::kMmio32WindowEnd - 1);
  p.mmio64_start = mmio64_window_base(w_.memory);
  p.mmio64_end = kMmio64WindowEnd - 1;
  p.lpc_slot = static_cast<uint8_t>(pci::kLpcSlot);
  p.intx_gsi = [](uint8_t slot, uint8_t pin) { return pci::intx_gsi(slot, pin); };
  FirmwareTables tables = build_firmware_tables(p);

  platform::AcpiLoader loader;
  loader.allocate(kAcpiTablesFile, static_cast<uint32_t>(tables.tables.size()), 64, platform::LoaderZone::kHigh);
  loader.allocate(kAcpiRsdpFile, static_cast<uint32_t>(tables.rsdp.size()), 16, platform::LoaderZone::kFseg);
  for (const auto& ptr : tables.pointers) loader.add_pointer(ptr.dest, ptr.src, ptr.offset, ptr.size);
  for (const auto& c : tables.checksums) loader.add_checksum(c.file, c.result_offset, c.start, c.length);
  fw_cfg_->add_file(kAcpiTablesFile, std::move(tables.tables));
  fw_cfg_->add_file(kAcpiRsdpFile, std::move(tables.rsdp));
  fw_cfg_->add_file("etc/table-loader", loader.script());
}

void PcPlatform::map_flash(hv::Vm& vm, size_t index) {
  const Flash& f = flash_[index];
  auto mem = f.device->memory();
  vm.map_memory(f.slot, f.gpa, mem.size(), mem.data(), /*read_only=*/true);
}

void PcPlatform::attach(hv::Vm& vm) {
  for (size_t i = 0; i < flash_.size(); ++i) {
    if (flash_[i].device->array_mode()) map_flash(vm, i);
  }
  if (display_) {
    {
      std::lock_guard<std::mutex> lock(display_mu_);
      display_mapped_.reset();  // a new VM has no slot yet
    }
    map_display(vm, display_->framebuffer_address());
  }
}

void PcPlatform::load_firmware() {
  if (!bios_low_copy_.empty()) w_.memory.write(kBiosLowBase, bios_low_copy_);
}

void PcPlatform::reset() {
  bus_->reset();  // the chipset and every device on the bus
  pm_->reset();
  reset_control_->reset();
  fw_cfg_->reset();
  for (auto& f : flash_) f.device->reset();
}

void PcPlatform::press_power_button() { pm_->press_power_button(); }

void PcPlatform::save_state(state::Writer& w) const {
  host_bridge_->save_state(w);
  lpc_->save_state(w);
  bus_->save_state(w);
  pm_->save_state(w);
  reset_control_->save_state(w);
  fw_cfg_->save_state(w);
  for (const auto& f : flash_) f.device->save_state(w);
  if (display_) display_->save_state(w);
}

void PcPlatform::load_state(state::Reader& r) {
  host_bridge_->load_state(r);
  lpc_->load_state(r);
  bus_->load_state(r);
  pm_->load_state(r);
  reset_control_->load_state(r);
  fw_cfg_->load_state(r);
  for (auto& f : flash_) f.device->load_state(r);
  if (display_) display_->load_state(r);
}

void PcPlatform::devices_loaded() { bus_->refresh(); }

}  // namespace berth::machine
