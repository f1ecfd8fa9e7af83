// What a virtio device implements. Devices never see the transport (virtio-mmio today):
// they get their queues when the driver sets DRIVER_OK and talk back through a
// DeviceContext.
//
// Threading: every VirtioDevice method is called with the transport's lock held, so two
// of them never run at once. queue_notify(), host_event() and complete() run on the
// transport's I/O thread; configuration reads/writes, activate() and reset() on a vCPU thread (the
// driver's register access) or the machine's thread (machine reset). Device work that
// touches guest buffers therefore happens on the I/O thread, never on a vCPU thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/state_stream.h"
#include "devices/virtio/virtqueue.h"

namespace berth::devices::virtio {

// Feature bits the transport owns (virtio 1.x section 6).
constexpr uint64_t kFeatureIndirectDesc = 1ull << 28;
constexpr uint64_t kFeatureEventIdx = 1ull << 29;
constexpr uint64_t kFeatureVersion1 = 1ull << 32;

// Device status bits (virtio 1.x 2.1).
constexpr uint32_t kStatusAcknowledge = 1;
constexpr uint32_t kStatusDriver = 2;
constexpr uint32_t kStatusDriverOk = 4;
constexpr uint32_t kStatusFeaturesOk = 8;
constexpr uint32_t kStatusNeedsReset = 0x40;
constexpr uint32_t kStatusFailed = 0x80;

// Interrupt status bits.
constexpr uint32_t kInterruptUsedBuffer = 1;
constexpr uint32_t kInterruptConfigChange = 2;

// Device IDs (virtio 1.x section 5).
constexpr uint32_t kDeviceIdNet = 1;
constexpr uint32_t kDeviceIdBlock = 2;
constexpr uint32_t kDeviceIdConsole = 3;
constexpr uint32_t kDeviceIdRng = 4;
constexpr uint32_t kDeviceIdInput = 18;

// The device's way back to the transport.
class DeviceContext {
 public:
  virtual ~DeviceContext() = default;
  // I/O thread, after push_used() on queue `queue`: interrupts the driver if it wants one.
  virtual void signal_used(uint16_t queue) = 0;
  // Any thread, any lock: makes the I/O thread call host_event() soon (host input ready).
  virtual void kick() = 0;
  // Any thread, any lock (a device's worker thread, typically): makes the I/O thread call
  // VirtioDevice::complete() soon, under the transport lock, where the device returns the
  // requests its worker finished (push_used + signal_used). The worker never takes the
  // transport lock, so reset() may wait for it while holding that lock.
  virtual void post_completion() = 0;
  // An eventfd: adding to it has the effect of post_completion(). For completions a kernel
  // or a pool signals by itself (an io_uring's registered eventfd), with no thread of the
  // device's own in between. Valid while the device is bound.
  virtual int completion_fd() = 0;
  // I/O thread: the driver broke the protocol in a way the device cannot answer with an
  // error status. Sets DEVICE_NEEDS_RESET; the device gets no more calls until reset().
  virtual void fail(const std::string& why) = 0;
  // Device configuration space changed: bumps ConfigGeneration, notifies the driver.
  virtual void config_changed() = 0;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Device-specific feature bits (the transport adds VERSION_1, INDIRECT_DESC, EVENT_IDX).
  virtual uint64_t device_features() const = 0;
  virtual uint16_t queue_count() const = 0;
  virtual uint16_t queue_max_size(uint16_t /*queue*/) const { return 256; }

  // Device configuration space, at offset 0x100 of the MMIO window; offset+data.size()
  // never exceeds config_size() (the transport reads zeros and drops writes beyond it).
  virtual uint32_t config_size() const { return 0; }
  virtual void read_config(uint32_t /*offset*/, std::span<uint8_t> data) {
    for (auto& b : data) b = 0;
  }
  virtual void write_config(uint32_t /*offset*/, std::span<const uint8_t> /*data*/) {}

  // Called once by the transport before anything else.
  void bind(DeviceContext& context) { context_ = &context; }

  // The driver set DRIVER_OK. queues has queue_count() entries; the ones the driver
  // enabled are active(). features = the negotiated set.
  virtual void activate(std::span<Virtqueue> queues, uint64_t features) = 0;
  // The driver notified queue `queue` (only while active).
  virtual void queue_notify(uint16_t queue) = 0;
  // After DeviceContext::kick() (only while active).
  virtual void host_event() {}
  // After DeviceContext::post_completion() (only while active; a device that is reset or
  // needs a reset drops what its worker finished).
  virtual void complete() {}
  // Driver reset (status 0) or machine reset: drop the queues, keep host-side state.
  // A device with a worker returns only when the worker no longer touches guest memory:
  // the transport also calls reset() before it is destroyed, and the machine clears guest
  // memory right after a reset.
  virtual void reset() = 0;

  // Transport freeze (saved state, live checkpoints): returns once every chain the device
  // took from a queue is answered on the used ring and no work of its own touches guest
  // memory. Until thaw() the transport makes no queue_notify/host_event/complete call;
  // host input arriving meanwhile must wait in the device. Called whatever the status.
  virtual void freeze() {}
  virtual void thaw() {}

  // Saved state: one record named name(), holding what the guest can observe that the
  // transport does not (host input not yet delivered, say). save_state is called frozen;
  // load_state on a device fresh from its constructor (or reset), before the transport
  // activates it again. load_state refuses (STATE_INVALID) a record made for a device
  // configured otherwise. The default is an empty record.
  virtual const char* name() const;
  virtual void save_state(state::Writer& w) const;
  virtual void load_state(state::Reader& r);

 protected:
  DeviceContext* context_ = nullptr;
};

}  // namespace berth::devices::virtio
