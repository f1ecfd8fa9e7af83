#include "devices/virtio/pci.h"

#include <algorithm>
#include <array>
#include <optional>

#include "common/error.h"

namespace berth::devices::virtio {

namespace {

uint64_t load(std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t{data[i]} << (8 * i);
  return v;
}

void store(std::span<uint8_t> data, uint64_t v) {
  for (size_t i = 0; i < data.size() && i < 8; ++i) data[i] = static_cast<uint8_t>(v >> (8 * i));
}

// The body of a virtio_pci_cap after its id and next bytes (cap_len onwards); a notify
// capability's multiplier or the window's data follow as `extra`.
std::vector<uint8_t> virtio_cap(uint8_t type, uint64_t offset, uint64_t length, std::optional<uint32_t> extra = {}) {
  std::vector<uint8_t> body(extra ? 18 : 14);
  body[0] = static_cast<uint8_t>(2 + body.size());  // cap_len, counted from the id byte
  body[1] = type;
  body[2] = static_cast<uint8_t>(kPciBar);
  for (int i = 0; i < 4; ++i) {
    body[6 + i] = static_cast<uint8_t>(offset >> (8 * i));
    body[10 + i] = static_cast<uint8_t>(length >> (8 * i));
    if (extra) body[14 + i] = static_cast<uint8_t>(*extra >> (8 * i));
  }
  return body;
}

// The common configuration fields and their widths; other offsets and widths are not
// registers (64-bit ring addresses also take two 32-bit halves).
size_t common_width(uint64_t offset) {
  switch (offset) {
    case kPciDeviceFeatureSelect:
    case kPciDeviceFeature:
    case kPciDriverFeatureSelect:
    case kPciDriverFeature: return 4;
    case kPciConfigMsixVector:
    case kPciNumQueues: return 2;
    case kPciDeviceStatus:
    case kPciConfigGeneration: return 1;
    case kPciQueueSelect:
    case kPciQueueSize:
    case kPciQueueMsixVector:
    case kPciQueueEnable:
    case kPciQueueNotifyOff: return 2;
    case kPciQueueDesc:
    case kPciQueueDriver:
    case kPciQueueDevice: return 8;
    case kPciQueueDesc + 4:
    case kPciQueueDriver + 4:
    case kPciQueueDevice + 4: return 4;
    default: return 0;
  }
}

bool common_access_ok(uint64_t offset, size_t size) {
  const size_t width = common_width(offset);
  return width != 0 && (size == width || (width == 8 && size == 4));
}

QueueRing ring_at(uint64_t offset) {
  return offset < kPciQueueDriver ? QueueRing::kDesc : offset < kPciQueueDevice ? QueueRing::kDriver : QueueRing::kDevice;
}

}  // namespace

uint32_t pci_class_code(uint32_t virtio_device_id) {
  switch (virtio_device_id) {
    case kDeviceIdNet: return 0x020000;      // network controller, Ethernet
    case kDeviceIdBlock: return 0x010000;    // mass storage controller, SCSI
    case kDeviceIdConsole: return 0x078000;  // communication controller, other
    default: return 0xff0000;                // unassigned class (virtio-rng and the rest)
  }
}

pci::PciFunction::Identity VirtioPci::identity_for(const VirtioDevice& device) {
  if (device.queue_count() > kPciMaxQueues) {
    throw Error("VIRTIO_SETUP", std::string(device.name()) + " has " + std::to_string(device.queue_count()) +
                                    " queues; the PCI transport takes at most " + std::to_string(kPciMaxQueues));
  }
  Identity id;
  id.vendor_id = kPciVendorId;
  id.device_id = static_cast<uint16_t>(kPciDeviceIdBase + device.device_id());
  id.revision = kPciRevision;
  id.class_code = pci_class_code(device.device_id());
  id.subsystem_vendor_id = kPciVendorId;
  id.subsystem_id = kPciSubsystemId;
  id.interrupt_pin = 1;  // INTA#
  return id;
}

VirtioPci::VirtioPci(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, MsiSink& msi)
    : PciFunction(identity_for(*device)),
      msi_(msi),
      queue_vectors_(device->queue_count(), kPciNoVector),
      msix_(static_cast<uint16_t>(device->queue_count() + 1)),
      core_(memory, device, *this) {
  declare_bar(kPciBar, pci::BarKind::kMem32, kPciBarSize);
  add_capabilities();
  std::lock_guard<std::mutex> lock(core_.mutex());
  core_.preset_queue_sizes();
}

// DEVICE_CFG announces the whole page (bytes beyond the device's read 0): Linux stops at a
// read beyond the announced length.
void VirtioPci::add_capabilities() {
  const uint32_t notify_length = uint32_t{queue_count()} * kPciNotifyMultiplier;
  add_capability(kCapabilityIdVendor, virtio_cap(kPciCapCommon, kPciCommonOffset, kPciCommonLength));
  add_capability(kCapabilityIdVendor, virtio_cap(kPciCapIsr, kPciIsrOffset, kPciIsrLength));
  add_capability(kCapabilityIdVendor, virtio_cap(kPciCapDevice, kPciDeviceCfgOffset, kPciDeviceCfgLength));
  add_capability(kCapabilityIdVendor,
                 virtio_cap(kPciCapNotify, kPciNotifyOffset, notify_length, kPciNotifyMultiplier));
  // The window: bar, offset, length and data are the driver's to write.
  const auto window_body = virtio_cap(kPciCapPciCfg, 0, 0, 0);
  std::vector<uint8_t> window_writable(window_body.size(), 0);
  window_writable[kCapBar - 2] = 0xff;
  std::fill(window_writable.begin() + (kCapOffset - 2), window_writable.end(), 0xff);
  pci_cfg_cap_ = add_capability(kCapabilityIdVendor, window_body, window_writable);
  // MSI-X: message control (table size, function mask, enable), table and PBA in BAR 0.
  const uint16_t control = static_cast<uint16_t>(msix_.vectors() - 1);
  const uint32_t table = static_cast<uint32_t>(kPciMsixTableOffset) | kPciBar;
  const uint32_t pba = static_cast<uint32_t>(kPciMsixPbaOffset) | kPciBar;
  const std::array<uint8_t, 10> msix_body = {
      static_cast<uint8_t>(control),       static_cast<uint8_t>(control >> 8), static_cast<uint8_t>(table),
      static_cast<uint8_t>(table >> 8),    static_cast<uint8_t>(table >> 16),  static_cast<uint8_t>(table >> 24),
      static_cast<uint8_t>(pba),           static_cast<uint8_t>(pba >> 8),     static_cast<uint8_t>(pba >> 16),
      static_cast<uint8_t>(pba >> 24)};
  const std::array<uint8_t, 2> msix_writable = {0x00, static_cast<uint8_t>((kMsixControlEnable | kMsixControlFunctionMask) >> 8)};
  msix_cap_ = add_capability(kCapabilityIdMsix, msix_body, msix_writable);
}

// ---- interrupts ----

uint16_t VirtioPci::msix_control() const { return static_cast<uint16_t>(config_value(msix_cap_ + 2u, 2)); }

bool VirtioPci::msix_enabled() const { return msix_control() & kMsixControlEnable; }

void VirtioPci::interrupt(uint16_t vector, uint8_t isr_bit) {
  std::lock_guard<std::mutex> lock(irq_mu_);
  const uint16_t control = msix_control();
  if (control & kMsixControlEnable) {
    // virtio 1.2 4.1.4.5: ISR's queue bit is for INTx only; the configuration bit is set
    // either way.
    if (isr_bit == kPciIsrConfig) isr_ |= isr_bit;
    if (vector != kPciNoVector) msix_.fire(vector, control & kMsixControlFunctionMask, msi_);
    return;
  }
  isr_ |= isr_bit;
  set_intx(true);
}

void VirtioPci::queue_interrupt(uint16_t queue) { interrupt(queue_vectors_[queue], kPciIsrQueue); }

void VirtioPci::config_interrupt() { interrupt(config_vector_, kPciIsrConfig); }

uint8_t VirtioPci::read_isr() {
  std::lock_guard<std::mutex> lock(irq_mu_);
  const uint8_t v = isr_;
  isr_ = 0;
  set_intx(false);
  return v;
}

void VirtioPci::msix_control_written() {
  std::lock_guard<std::mutex> lock(irq_mu_);
  const uint16_t control = msix_control();
  if (control & kMsixControlEnable) {
    set_intx(false);  // a function with MSI-X enabled does not use INTx
    msix_.deliver_pending(control & kMsixControlFunctionMask, msi_);
  } else {
    set_intx(isr_ != 0);
  }
}

void VirtioPci::transport_reset() {
  config_vector_ = kPciNoVector;
  std::fill(queue_vectors_.begin(), queue_vectors_.end(), kPciNoVector);
  core_.preset_queue_sizes();
  std::lock_guard<std::mutex> lock(irq_mu_);
  isr_ = 0;
  msix_.clear_pending();
  set_intx(false);
}

void VirtioPci::reset() {
  core_.reset();  // first: the device stops raising interrupts
  PciFunction::reset();
  {
    std::lock_guard<std::mutex> lock(irq_mu_);
    msix_.reset();
  }
  check_bar_moved();
}

// ---- configuration space ----

void VirtioPci::on_capability_write(uint8_t cap_offset, uint8_t, uint32_t offset_in_cap, uint32_t size) {
  auto touches = [&](uint32_t lo, uint32_t hi) { return offset_in_cap < hi && offset_in_cap + size > lo; };
  if (cap_offset == msix_cap_ && touches(2, 4)) msix_control_written();
  if (cap_offset == pci_cfg_cap_ && touches(kCapPciCfgData, kCapPciCfgData + 4)) {
    if (auto w = window()) {
      std::array<uint8_t, 4> bytes{};
      store(bytes, config_value(pci_cfg_cap_ + kCapPciCfgData, 4));
      bar_write(kPciBar, w->first, std::span<const uint8_t>(bytes.data(), w->second));
    }
  }
}

std::optional<std::pair<uint64_t, uint32_t>> VirtioPci::window() const {
  const auto bar = static_cast<uint32_t>(config_value(pci_cfg_cap_ + kCapBar, 1));
  const uint64_t offset = config_value(pci_cfg_cap_ + kCapOffset, 4);
  const auto length = static_cast<uint32_t>(config_value(pci_cfg_cap_ + kCapLength, 4));
  // virtio 1.2 4.1.4.9: 1, 2 or 4 bytes, aligned, inside the BAR.
  if (bar != kPciBar || (length != 1 && length != 2 && length != 4) || offset % length != 0 ||
      offset + length > kPciBarSize) {
    return std::nullopt;
  }
  return std::make_pair(offset, length);
}

void VirtioPci::config_read(uint32_t offset, std::span<uint8_t> data) {
  PciFunction::config_read(offset, data);
  const uint32_t lo = pci_cfg_cap_ + kCapPciCfgData, hi = lo + 4;
  if (offset >= hi || offset + data.size() <= lo) return;
  auto w = window();
  if (!w) return;  // the stored data bytes, as written
  std::array<uint8_t, 4> bytes{};
  bar_read(kPciBar, w->first, std::span<uint8_t>(bytes.data(), w->second));
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t o = uint64_t{offset} + i;
    if (o >= lo && o < hi) data[i] = bytes[o - lo];
  }
}

void VirtioPci::config_write(uint32_t offset, std::span<const uint8_t> data) {
  PciFunction::config_write(offset, data);
  check_bar_moved();
}

void VirtioPci::set_bar_listener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(bar_mu_);
  bar_listener_ = std::move(listener);
  last_bar_ = bar_mapping(kPciBar);
}

void VirtioPci::check_bar_moved() {
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(bar_mu_);
    auto now = bar_mapping(kPciBar);
    const bool same = now.has_value() == last_bar_.has_value() && (!now || now->address == last_bar_->address);
    if (same) return;
    last_bar_ = now;
    listener = bar_listener_;
  }
  if (listener) listener();
}

std::optional<uint64_t> VirtioPci::notify_address(uint16_t queue) const {
  auto m = bar_mapping(kPciBar);
  if (!m || queue >= queue_count()) return std::nullopt;
  return m->address + kPciNotifyOffset + uint64_t{queue} * kPciNotifyMultiplier;
}

// ---- BAR 0 ----

void VirtioPci::bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) {
  if (bar != kPciBar) return PciFunction::bar_read(bar, offset, data);
  std::fill(data.begin(), data.end(), 0);
  if (data.empty() || data.size() > 8 || offset >= kPciBarSize) return;
  const uint64_t region = offset / kPciRegionSize * kPciRegionSize, in = offset - region;
  switch (region) {
    case kPciCommonOffset: {
      std::lock_guard<std::mutex> lock(core_.mutex());
      store(data, read_common(in, data.size()));
      break;
    }
    case kPciIsrOffset:
      if (in == 0) data[0] = read_isr();
      break;
    case kPciDeviceCfgOffset: {
      std::lock_guard<std::mutex> lock(core_.mutex());
      core_.read_device_config(in, data);
      break;
    }
    case kPciMsixTableOffset: {
      std::lock_guard<std::mutex> lock(irq_mu_);
      msix_.read_table(in, data);
      break;
    }
    case kPciMsixPbaOffset: {
      std::lock_guard<std::mutex> lock(irq_mu_);
      msix_.read_pba(in, data);
      break;
    }
    default: break;  // notify registers and unused pages read 0
  }
}

void VirtioPci::bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) {
  if (bar != kPciBar) return PciFunction::bar_write(bar, offset, data);
  if (data.empty() || data.size() > 8 || offset >= kPciBarSize) return;
  const uint64_t region = offset / kPciRegionSize * kPciRegionSize, in = offset - region;
  switch (region) {
    case kPciCommonOffset: {
      std::lock_guard<std::mutex> lock(core_.mutex());
      write_common(in, data.size(), load(data));
      break;
    }
    case kPciDeviceCfgOffset: {
      std::lock_guard<std::mutex> lock(core_.mutex());
      core_.write_device_config(in, data);
      break;
    }
    case kPciNotifyOffset:
      // Reached without an ioeventfd (or through the PCI_CFG window): kick all the same.
      if (in % kPciNotifyMultiplier == 0) core_.notify(in / kPciNotifyMultiplier);
      break;
    case kPciMsixTableOffset: {
      std::lock_guard<std::mutex> lock(irq_mu_);
      msix_.write_table(in, data, msix_control() & kMsixControlFunctionMask, msi_);
      break;
    }
    default: break;  // ISR and the PBA are read-only
  }
}

// With the core's lock held.
uint64_t VirtioPci::read_common(uint64_t offset, size_t size) {
  if (!common_access_ok(offset, size)) return 0;
  const Virtqueue* q = core_.selected_queue();
  const uint64_t high = offset % 8 == 4 ? 32 : 0;  // the upper half of a ring address
  switch (offset) {
    case kPciDeviceFeatureSelect: return core_.device_features_sel;
    case kPciDeviceFeature: return core_.device_features_word();
    case kPciDriverFeatureSelect: return core_.driver_features_sel;
    case kPciDriverFeature: return core_.driver_features_word();
    case kPciConfigMsixVector: return config_vector_;
    case kPciNumQueues: return queue_count();
    case kPciDeviceStatus: return core_.status() & 0xff;
    case kPciConfigGeneration: return core_.config_generation() & 0xff;
    case kPciQueueSelect: return core_.queue_sel;
    case kPciQueueSize: return q ? q->size : 0;
    case kPciQueueMsixVector: return q ? queue_vectors_[core_.queue_sel] : kPciNoVector;
    case kPciQueueEnable: return q && q->active() ? 1 : 0;
    case kPciQueueNotifyOff: return q ? core_.queue_sel : 0;
    case kPciQueueDesc:
    case kPciQueueDesc + 4: return q ? q->desc_addr >> high : 0;
    case kPciQueueDriver:
    case kPciQueueDriver + 4: return q ? q->avail_addr >> high : 0;
    case kPciQueueDevice:
    case kPciQueueDevice + 4: return q ? q->used_addr >> high : 0;
    default: return 0;
  }
}

// With the core's lock held.
void VirtioPci::write_common(uint64_t offset, size_t size, uint64_t value) {
  if (!common_access_ok(offset, size)) return;
  const auto v32 = static_cast<uint32_t>(value);
  auto vector = [&](uint64_t v) { return v < msix_.vectors() ? static_cast<uint16_t>(v) : kPciNoVector; };
  switch (offset) {
    case kPciDeviceFeatureSelect: core_.device_features_sel = v32; break;
    case kPciDriverFeatureSelect: core_.driver_features_sel = v32; break;
    case kPciDriverFeature: core_.write_driver_features_word(v32); break;
    // A vector the table does not have reads back as NO_VECTOR (virtio 1.2 4.1.5.1.2).
    case kPciConfigMsixVector: config_vector_ = vector(value); break;
    case kPciDeviceStatus: core_.write_status(v32); break;
    case kPciQueueSelect: core_.queue_sel = v32; break;
    case kPciQueueSize: core_.set_queue_size(v32); break;
    case kPciQueueMsixVector:
      if (core_.selected_queue()) queue_vectors_[core_.queue_sel] = vector(value);
      break;
    case kPciQueueEnable: core_.set_queue_ready(v32); break;
    case kPciQueueDesc:
    case kPciQueueDriver:
    case kPciQueueDevice:
      core_.set_queue_ring(ring_at(offset), false, v32);
      if (size == 8) core_.set_queue_ring(ring_at(offset), true, static_cast<uint32_t>(value >> 32));
      break;
    case kPciQueueDesc + 4:
    case kPciQueueDriver + 4:
    case kPciQueueDevice + 4: core_.set_queue_ring(ring_at(offset), true, v32); break;
    default: break;  // read-only fields
  }
}

}  // namespace berth::devices::virtio
