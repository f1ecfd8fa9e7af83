// The virtio-mmio transport, version 2 (virtio 1.x section 4.2; modern devices only) as a
// bus device, with one I/O thread that runs the device's queue work.
//
// The transport-independent part (status, features, queues, the I/O thread, saved state)
// is TransportCore (transport.h); this class is the register layout over it.
//
// Notifications: every queue has an eventfd (notify_fd). The machine registers it as an
// ioeventfd at kQueueNotify with datamatch = queue index, so a guest kick never leaves
// the hypervisor; without ioeventfd the QueueNotify write reaches write() on the vCPU
// thread, which only signals the same eventfd. Either way the I/O thread wakes and calls
// VirtioDevice::queue_notify.
// Interrupts: edge-triggered (virtio-mmio sits on ISA IRQs), raised through the
// EdgeInterrupt the machine provides (a KVM irqfd or an IRQ-line pulse).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "devices/virtio/transport.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/bus_device.h"
#include "vmm/guest_memory.h"

namespace berth::devices::virtio {

// Register offsets (virtio 1.x 4.2.2).
constexpr uint64_t kMmioMagic = 0x000;
constexpr uint64_t kMmioVersion = 0x004;
constexpr uint64_t kMmioDeviceId = 0x008;
constexpr uint64_t kMmioVendorId = 0x00c;
constexpr uint64_t kMmioDeviceFeatures = 0x010;
constexpr uint64_t kMmioDeviceFeaturesSel = 0x014;
constexpr uint64_t kMmioDriverFeatures = 0x020;
constexpr uint64_t kMmioDriverFeaturesSel = 0x024;
constexpr uint64_t kMmioQueueSel = 0x030;
constexpr uint64_t kMmioQueueNumMax = 0x034;
constexpr uint64_t kMmioQueueNum = 0x038;
constexpr uint64_t kMmioQueueReady = 0x044;
constexpr uint64_t kMmioQueueNotify = 0x050;
constexpr uint64_t kMmioInterruptStatus = 0x060;
constexpr uint64_t kMmioInterruptAck = 0x064;
constexpr uint64_t kMmioStatus = 0x070;
constexpr uint64_t kMmioQueueDescLow = 0x080;
constexpr uint64_t kMmioQueueDescHigh = 0x084;
constexpr uint64_t kMmioQueueDriverLow = 0x090;
constexpr uint64_t kMmioQueueDriverHigh = 0x094;
constexpr uint64_t kMmioQueueDeviceLow = 0x0a0;
constexpr uint64_t kMmioQueueDeviceHigh = 0x0a4;
constexpr uint64_t kMmioShmSel = 0x0ac;
constexpr uint64_t kMmioShmLenLow = 0x0b0;
constexpr uint64_t kMmioShmLenHigh = 0x0b4;
constexpr uint64_t kMmioShmBaseLow = 0x0b8;
constexpr uint64_t kMmioShmBaseHigh = 0x0bc;
constexpr uint64_t kMmioConfigGeneration = 0x0fc;
constexpr uint64_t kMmioConfig = 0x100;
constexpr uint64_t kMmioWindowSize = 0x200;

constexpr uint32_t kMmioMagicValue = 0x74726976;  // "virt"
constexpr uint32_t kMmioVendorBerth = 0x48545242;  // "BRTH"

// One interrupt to the guest per trigger() (edge semantics). Thread-safe.
class EdgeInterrupt {
 public:
  virtual ~EdgeInterrupt() = default;
  virtual void trigger() = 0;
};

class VirtioMmio final : public vmm::BusDevice, private TransportHooks {
 public:
  // Starts the I/O thread. Throws berth::Error VIRTIO_SETUP if eventfd/epoll fail.
  VirtioMmio(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, EdgeInterrupt& irq);
  ~VirtioMmio() override = default;  // the core stops and joins the I/O thread

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Machine reset: the device and all queues return to their power-on state.
  void reset() { core_.reset(); }

  uint16_t queue_count() const { return core_.queue_count(); }
  // The eventfd the I/O thread waits on for kicks of queue `queue` (see the file comment).
  int notify_fd(uint16_t queue) const { return core_.notify_fd(queue); }
  VirtioDevice& device() { return core_.device(); }

  // Saved state and live checkpoints, from the machine's thread with the vCPUs paused.
  // freeze() returns once the device has answered every request it took from the queues
  // (VirtioDevice::freeze) and the I/O thread will run no device work (kicks, host events,
  // completions) until thaw(); host input waits in the device meanwhile. thaw() has the I/O
  // thread re-check every queue once, as if kicked, since kicks that arrived while frozen
  // were dropped. Both are idempotent; freeze throws what the device's freeze throws.
  void freeze() { core_.freeze(); }
  void thaw() { core_.thaw(); }
  bool frozen() const { return core_.frozen(); }
  // The transport's record: its registers, every queue and, nested, its device's record.
  // Only while frozen (VIRTIO_SETUP otherwise).
  void save_state(state::Writer& w) const;
  // Loads a record save_state wrote, for the same kind of device, over guest memory that
  // already holds the saved contents. A driver that had the device running (DRIVER_OK,
  // no NEEDS_RESET) finds it activated with the saved queues and features, and the I/O
  // thread re-checks every queue (at thaw() when frozen). A bad record throws
  // STATE_INVALID or STATE_VERSION naming the field and leaves the transport reset.
  void load_state(state::Reader& r);

  // For tests and diagnostics.
  uint32_t status() const { return core_.locked_status(); }
  std::string last_error() const { return core_.last_error(); }
  // Blocks until the I/O thread has handled everything signalled before the call.
  void sync() { core_.sync(); }

 private:
  // TransportHooks
  void queue_interrupt(uint16_t) override { raise(kInterruptUsedBuffer); }
  void config_interrupt() override { raise(kInterruptConfigChange); }
  void transport_reset() override { interrupt_status_.store(0); }

  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void raise(uint32_t bits);

  EdgeInterrupt& irq_;
  std::atomic<uint32_t> interrupt_status_{0};
  // Last: destroyed first, so the I/O thread stops before the members its hooks use.
  TransportCore core_;
};

}  // namespace berth::devices::virtio
