#include "devices/virtio/mmio.h"

#include <algorithm>
#include <cstring>

namespace berth::devices::virtio {

namespace {

uint32_t load32(std::span<const uint8_t> data) {
  uint32_t v = 0;
  std::memcpy(&v, data.data(), 4);
  return v;
}

}  // namespace

VirtioMmio::VirtioMmio(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, EdgeInterrupt& irq)
    : irq_(irq), core_(memory, std::move(device), *this) {}

void VirtioMmio::raise(uint32_t bits) {
  interrupt_status_.fetch_or(bits);
  irq_.trigger();
}

// ---- registers (vCPU thread) ----

void VirtioMmio::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  // The interrupt handler's registers are atomic: a guest taking an interrupt never waits
  // for device work that holds the lock (a qcow2 cluster allocation, say).
  if (offset == kMmioInterruptStatus && data.size() == 4) {
    uint32_t v = interrupt_status_.load();
    std::memcpy(data.data(), &v, 4);
    return;
  }
  std::lock_guard<std::mutex> lock(core_.mutex());
  if (offset >= kMmioConfig) {
    core_.read_device_config(offset - kMmioConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;  // registers are 32-bit only
  uint32_t v = read_register(offset);
  std::memcpy(data.data(), &v, 4);
}

void VirtioMmio::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == kMmioInterruptAck && data.size() == 4) {
    interrupt_status_.fetch_and(~load32(data));
    return;
  }
  if (offset == kMmioQueueNotify && data.size() == 4) {
    // Reached only without ioeventfd: hand the kick to the I/O thread all the same.
    core_.notify(load32(data));
    return;
  }
  std::lock_guard<std::mutex> lock(core_.mutex());
  if (offset >= kMmioConfig) {
    core_.write_device_config(offset - kMmioConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;
  write_register(offset, load32(data));
}

uint32_t VirtioMmio::read_register(uint64_t offset) {
  const Virtqueue* q = core_.selected_queue();
  switch (offset) {
    case kMmioMagic: return kMmioMagicValue;
    case kMmioVersion: return 2;
    case kMmioDeviceId: return core_.device().device_id();
    case kMmioVendorId: return kMmioVendorBerth;
    case kMmioDeviceFeatures: return core_.device_features_word();
    case kMmioQueueNumMax: return core_.selected_queue_max();
    case kMmioQueueNum: return q ? q->size : 0;
    case kMmioQueueReady: return q && q->active() ? 1 : 0;
    case kMmioInterruptStatus: return interrupt_status_.load();
    case kMmioStatus: return core_.status();
    case kMmioQueueDescLow: return q ? static_cast<uint32_t>(q->desc_addr) : 0;
    case kMmioQueueDescHigh: return q ? static_cast<uint32_t>(q->desc_addr >> 32) : 0;
    case kMmioQueueDriverLow: return q ? static_cast<uint32_t>(q->avail_addr) : 0;
    case kMmioQueueDriverHigh: return q ? static_cast<uint32_t>(q->avail_addr >> 32) : 0;
    case kMmioQueueDeviceLow: return q ? static_cast<uint32_t>(q->used_addr) : 0;
    case kMmioQueueDeviceHigh: return q ? static_cast<uint32_t>(q->used_addr >> 32) : 0;
    case kMmioShmLenLow:
    case kMmioShmLenHigh:
    case kMmioShmBaseLow:
    case kMmioShmBaseHigh: return 0xffffffffu;  // no shared memory regions
    case kMmioConfigGeneration: return core_.config_generation();
    default: return 0;
  }
}

void VirtioMmio::write_register(uint64_t offset, uint32_t value) {
  switch (offset) {
    case kMmioDeviceFeaturesSel: core_.device_features_sel = value; break;
    case kMmioDriverFeaturesSel: core_.driver_features_sel = value; break;
    case kMmioDriverFeatures: core_.write_driver_features_word(value); break;
    case kMmioQueueSel: core_.queue_sel = value; break;
    case kMmioQueueNum: core_.set_queue_size(value); break;
    case kMmioQueueReady: core_.set_queue_ready(value); break;
    case kMmioStatus: core_.write_status(value); break;
    case kMmioQueueDescLow: core_.set_queue_ring(QueueRing::kDesc, false, value); break;
    case kMmioQueueDescHigh: core_.set_queue_ring(QueueRing::kDesc, true, value); break;
    case kMmioQueueDriverLow: core_.set_queue_ring(QueueRing::kDriver, false, value); break;
    case kMmioQueueDriverHigh: core_.set_queue_ring(QueueRing::kDriver, true, value); break;
    case kMmioQueueDeviceLow: core_.set_queue_ring(QueueRing::kDevice, false, value); break;
    case kMmioQueueDeviceHigh: core_.set_queue_ring(QueueRing::kDevice, true, value); break;
    default: break;  // read-only or unknown registers
  }
}

}  // namespace berth::devices::virtio
