// The virtio PCI transport, modern (non-transitional) only (virtio 1.2 section 4.1), as a
// PCI function over the shared TransportCore (transport.h).
//
// Identity: vendor 0x1af4, device 0x1040 + virtio device id, revision 1, subsystem
// 0x1af4:0x1100 (OVMF's Virtio10Dxe wants a subsystem id >= 0x40; 0x1100 is what the
// virtio-win drivers match), and the class code QEMU gives the same device.
//
// BAR 0 is the only BAR: 32 KiB of 32-bit, non-prefetchable memory holding every virtio
// structure and the MSI-X table and PBA, one 4 KiB page each. 32-bit because SeaBIOS
// (src/hw/virtio-pci.c) reaches a BAR above 4 GiB only through the slow PCI_CFG window,
// and a 32-bit BAR is placed below 4 GiB by SeaBIOS and OVMF alike, without depending on
// a 64-bit window. Capabilities: COMMON_CFG, ISR, DEVICE_CFG, NOTIFY (multiplier 4,
// queue_notify_off = queue index, so each queue has its own 2-byte notify register for
// an ioeventfd without datamatch), PCI_CFG (the access window) and MSI-X (one vector per
// queue plus one for configuration changes).
//
// Interrupts: with MSI-X enabled, through the MsiSink (a masked vector sets its pending
// bit and fires on unmask; VIRTIO_MSI_NO_VECTOR sends nothing); otherwise INTA# (level)
// through PciFunction::set_intx, with the ISR bits set; reading ISR returns and clears
// them and lowers the line. The interrupt path (ISR, MSI-X table) has its own small lock,
// so a guest's interrupt handler never waits for device work.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/pci/pci_function.h"
#include "devices/virtio/msix.h"
#include "devices/virtio/transport.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/guest_memory.h"

namespace berth::devices::virtio {

// PCI identity (virtio 1.2 4.1.2).
constexpr uint16_t kPciVendorId = 0x1af4;
constexpr uint16_t kPciDeviceIdBase = 0x1040;  // + the virtio device id
constexpr uint8_t kPciRevision = 1;
constexpr uint16_t kPciSubsystemId = 0x1100;
// Class code (base << 16 | sub << 8 | interface) for a virtio device id, as QEMU sets it.
uint32_t pci_class_code(uint32_t virtio_device_id);

// Vendor capability (id 0x09) types, virtio_pci_cap.cfg_type.
constexpr uint8_t kCapabilityIdVendor = 0x09;
constexpr uint8_t kPciCapCommon = 1, kPciCapNotify = 2, kPciCapIsr = 3, kPciCapDevice = 4, kPciCapPciCfg = 5;
// Offsets inside a virtio_pci_cap (from its id byte).
constexpr uint32_t kCapLen = 2, kCapType = 3, kCapBar = 4, kCapOffset = 8, kCapLength = 12;
constexpr uint32_t kCapNotifyMultiplier = 16, kCapPciCfgData = 16;

// BAR 0.
constexpr uint32_t kPciBar = 0;
constexpr uint64_t kPciBarSize = 0x8000;
constexpr uint64_t kPciRegionSize = 0x1000;
constexpr uint64_t kPciCommonOffset = 0x0000, kPciCommonLength = 0x38;
constexpr uint64_t kPciIsrOffset = 0x1000, kPciIsrLength = 1;
constexpr uint64_t kPciDeviceCfgOffset = 0x2000, kPciDeviceCfgLength = 0x1000;
constexpr uint64_t kPciNotifyOffset = 0x3000;
constexpr uint32_t kPciNotifyMultiplier = 4;
constexpr uint64_t kPciMsixTableOffset = 0x4000, kPciMsixPbaOffset = 0x5000;
// One MSI-X vector per queue plus one for configuration must fit the table's 4 KiB.
constexpr uint16_t kPciMaxQueues = kPciRegionSize / kMsixEntrySize - 1;

// Common configuration structure (virtio 1.2 4.1.4.3), offsets from kPciCommonOffset.
constexpr uint64_t kPciDeviceFeatureSelect = 0x00, kPciDeviceFeature = 0x04, kPciDriverFeatureSelect = 0x08,
                   kPciDriverFeature = 0x0c, kPciConfigMsixVector = 0x10, kPciNumQueues = 0x12,
                   kPciDeviceStatus = 0x14, kPciConfigGeneration = 0x15, kPciQueueSelect = 0x16,
                   kPciQueueSize = 0x18, kPciQueueMsixVector = 0x1a, kPciQueueEnable = 0x1c,
                   kPciQueueNotifyOff = 0x1e, kPciQueueDesc = 0x20, kPciQueueDriver = 0x28,
                   kPciQueueDevice = 0x30;
constexpr uint16_t kPciNoVector = 0xffff;  // VIRTIO_MSI_NO_VECTOR
// ISR status bits.
constexpr uint8_t kPciIsrQueue = 1, kPciIsrConfig = 2;

class VirtioPci final : public pci::PciFunction, private TransportHooks {
 public:
  // Starts the I/O thread. Throws berth::Error VIRTIO_SETUP if eventfd/epoll fail or the
  // device has more than kPciMaxQueues queues. msi outlives the transport.
  VirtioPci(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, MsiSink& msi);
  ~VirtioPci() override = default;  // the core stops and joins the I/O thread first

  // PciDevice. Configuration reads of the PCI_CFG window's data reach BAR 0.
  void config_read(uint32_t offset, std::span<uint8_t> data) override;
  void config_write(uint32_t offset, std::span<const uint8_t> data) override;
  void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override;
  // Machine reset: configuration space, MSI-X table, the device and its queues to power-on.
  void reset() override;

  uint16_t queue_count() const { return core_.queue_count(); }
  // The eventfd the I/O thread waits on for kicks of queue `queue`.
  int notify_fd(uint16_t queue) const { return core_.notify_fd(queue); }
  // The guest-physical address of queue `queue`'s notify register while BAR 0 is decoded
  // (placed, memory decoding on), else nullopt. Drivers write kNotifyAccessSize bytes (the
  // queue index) there; any write at that address is a kick.
  std::optional<uint64_t> notify_address(uint16_t queue) const;
  static constexpr uint32_t kNotifyAccessSize = 2;
  // Called after BAR 0's decoded address changed (placed, moved, decoding switched on or
  // off), from the thread that changed it: a vCPU thread's configuration write, or the
  // machine's in reset() and load_state(). No lock of the transport is held; the listener
  // may call notify_address(). Set it before the guest runs.
  void set_bar_listener(std::function<void()> listener);
  VirtioDevice& device() { return core_.device(); }

  // Saved state and live checkpoints: as VirtioMmio's (mmio.h).
  void freeze() { core_.freeze(); }
  void thaw() { core_.thaw(); }
  bool frozen() const { return core_.frozen(); }
  // Record "virtio-pci" (version 1): the core's fields, then the PCI configuration space
  // (nested "pci-function"), ISR, the MSI-X vectors chosen for configuration and each queue,
  // the MSI-X table and PBA, then the queues and the device's record. Only while frozen.
  void save_state(state::Writer& w) const;
  // A bad record throws STATE_INVALID or STATE_VERSION naming the field and leaves the
  // function reset (as after reset()).
  void load_state(state::Reader& r);

  // For tests and diagnostics.
  uint32_t status() const { return core_.locked_status(); }
  std::string last_error() const { return core_.last_error(); }
  void sync() { core_.sync(); }
  bool msix_enabled() const;

 protected:
  void on_capability_write(uint8_t cap_offset, uint8_t cap_id, uint32_t offset_in_cap, uint32_t size) override;

 private:
  // TransportHooks (with the core's lock held).
  void queue_interrupt(uint16_t queue) override;
  void config_interrupt() override;
  void transport_reset() override;

  static Identity identity_for(const VirtioDevice& device);
  void add_capabilities();
  uint16_t msix_control() const;
  void interrupt(uint16_t vector, uint8_t isr_bit);
  void msix_control_written();
  uint64_t read_common(uint64_t offset, size_t size);
  void write_common(uint64_t offset, size_t size, uint64_t value);
  uint8_t read_isr();
  // The PCI_CFG window: BAR offset and length the driver chose, if valid.
  std::optional<std::pair<uint64_t, uint32_t>> window() const;
  void check_bar_moved();

  MsiSink& msi_;
  uint8_t msix_cap_ = 0;
  uint8_t pci_cfg_cap_ = 0;
  // Under the core's lock.
  uint16_t config_vector_ = kPciNoVector;
  std::vector<uint16_t> queue_vectors_;
  // The interrupt path.
  mutable std::mutex irq_mu_;
  uint8_t isr_ = 0;
  MsixTable msix_;
  // BAR 0's mapping as last reported to the listener.
  std::mutex bar_mu_;
  std::optional<pci::BarMapping> last_bar_;
  std::function<void()> bar_listener_;
  // Last: destroyed first, so the I/O thread stops before the members its hooks use.
  TransportCore core_;
};

}  // namespace berth::devices::virtio
