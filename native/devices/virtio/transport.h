// What every virtio transport shares, whatever its register layout (virtio-mmio, virtio-pci):
// device status and feature negotiation, the queues and their configuration, the device
// configuration space, DEVICE_NEEDS_RESET, the I/O thread that runs the device's work,
// freeze/thaw and the common part of the saved state. A transport owns one TransportCore,
// maps its registers onto the core's operations and delivers the interrupts the core asks
// for through TransportHooks.
//
// Notifications: every queue has an eventfd (notify_fd). The machine registers it as a KVM
// ioeventfd where the transport's layout puts the queue's notify register; without one the
// register write reaches the transport, which calls notify(). Either way the I/O thread
// wakes and calls VirtioDevice::queue_notify.
//
// Locking: one mutex (mutex()) guards the core and the transport's own registers; every
// VirtioDevice call and every hook runs with it held. Methods marked "locked" below expect
// the caller to hold it; the others take it themselves.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/guest_memory.h"

namespace berth::devices::virtio {

// The transport's side of the core, called with the core's lock held (from the I/O thread,
// a register access or the machine's thread).
class TransportHooks {
 public:
  virtual ~TransportHooks() = default;
  // Queue `queue` used buffers and the driver wants an interrupt for it.
  virtual void queue_interrupt(uint16_t queue) = 0;
  // The device configuration changed, or the device needs a reset (with DRIVER_OK set).
  virtual void config_interrupt() = 0;
  // The core has just been reset (status 0 written, machine reset, a refused load): the
  // transport's own registers return to their power-on values.
  virtual void transport_reset() = 0;
};

// Which ring address register of the selected queue.
enum class QueueRing { kDesc, kDriver, kDevice };

class TransportCore final : private DeviceContext {
 public:
  // Binds the device and starts the I/O thread. Throws berth::Error VIRTIO_SETUP if
  // eventfd/epoll fail.
  TransportCore(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, TransportHooks& hooks);
  ~TransportCore() override;  // resets the device, stops and joins the I/O thread

  std::mutex& mutex() const { return mu_; }
  VirtioDevice& device() const { return *device_; }
  uint16_t queue_count() const { return static_cast<uint16_t>(queues_.size()); }
  // The eventfd the I/O thread waits on for kicks of queue `queue` (< queue_count()).
  int notify_fd(uint16_t queue) const { return notify_fds_[queue].get(); }
  // A notify register write that did not go through an ioeventfd: wakes the I/O thread
  // for that queue. Any thread, no lock; a queue index out of range is ignored.
  void notify(uint64_t queue);

  // ---- registers, locked ----
  // Feature bits offered: the device's plus VERSION_1, INDIRECT_DESC and EVENT_IDX.
  uint64_t offered_features() const;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint32_t queue_sel = 0;
  // 32 bits of the offered features at device_features_sel (0 beyond bit 63).
  uint32_t device_features_word() const;
  // 32 bits of the driver's features at driver_features_sel; writes are ignored once
  // FEATURES_OK is set.
  uint32_t driver_features_word() const;
  void write_driver_features_word(uint32_t value);
  uint32_t status() const { return status_; }
  // The driver's status write: 0 resets; otherwise bits are only added, FEATURES_OK only
  // for an acceptable feature set, DRIVER_OK only after FEATURES_OK (then the device is
  // activated); NEEDS_RESET is the device's.
  void write_status(uint32_t value);
  uint32_t config_generation() const { return config_generation_; }

  // The queue queue_sel selects (nullptr if none).
  const Virtqueue* selected_queue() const;
  // Its maximum size (0 without a queue).
  uint32_t selected_queue_max() const;
  // Queue configuration changes only while the queue is not ready (virtio 1.x 4.1.4.3.2,
  // 4.2.2.2); these ignore writes otherwise or without a selected queue.
  void set_queue_size(uint32_t size);
  void set_queue_ring(QueueRing ring, bool high_half, uint32_t value);
  // Every queue's size to its maximum, as virtio-pci's queue_size reads after a reset
  // (virtio 1.2 4.1.4.3); transport_reset() of a transport that needs it calls this.
  void preset_queue_sizes();
  // 1 activates the selected queue (a bad configuration sets NEEDS_RESET); 0 stops it and
  // keeps its configuration.
  void set_queue_ready(uint32_t value);

  // The device configuration space; bytes beyond config_size() read 0, writes dropped.
  void read_device_config(uint64_t offset, std::span<uint8_t> data);
  void write_device_config(uint64_t offset, std::span<const uint8_t> data);

  // Device and queues to power-on, then TransportHooks::transport_reset(). Locked.
  void reset_locked();
  void reset();

  // Saved state and live checkpoints (see VirtioMmio), from the machine's thread with the
  // vCPUs paused. Both idempotent; freeze throws what the device's freeze throws.
  void freeze();
  void thaw();
  bool frozen() const;

  // A transport's record, named `name`: device_id, queue_count, status, both feature
  // selectors, driver_features, queue_sel, config_generation, then transport_fields(w),
  // then last_error, every queue's record and the device's. Only while frozen
  // (VIRTIO_SETUP otherwise). transport_fields runs with the lock held.
  void save_state(state::Writer& w, const char* name, uint32_t version,
                  const std::function<void(state::Writer&, uint32_t version)>& transport_fields) const;
  // Reads a record save_state wrote (versions 1..max_version). read_transport_fields parses
  // and checks the transport's fields without applying them; apply_transport_fields applies
  // them once the rest has loaded, before a running device is activated again (both with
  // the lock held). A bad record throws STATE_INVALID or STATE_VERSION naming the field and
  // leaves the transport reset.
  void load_state(state::Reader& parent, const char* name, uint32_t max_version,
                  const std::function<void(state::Reader&, uint32_t version)>& read_transport_fields,
                  const std::function<void()>& apply_transport_fields);

  // For tests and diagnostics.
  uint32_t locked_status() const;
  std::string last_error() const;
  // Blocks until the I/O thread has handled everything signalled before the call.
  void sync();

 private:
  // DeviceContext
  void signal_used(uint16_t queue) override;
  void kick() override;
  void post_completion() override;
  int completion_fd() override { return complete_fd_.get(); }
  void fail(const std::string& why) override;
  void config_changed() override;

  Virtqueue* selected();
  void set_needs_reset(const std::string& why);
  void check_queues();
  // Has the I/O thread look at every queue, host input and completion once (when the
  // device is running).
  void recheck_locked();
  void activate_locked();
  void io_loop();
  void run_device(const std::function<void()>& work);
  bool dispatchable() const { return (status_ & kStatusDriverOk) && !(status_ & kStatusNeedsReset); }

  vmm::GuestMemory& memory_;
  std::shared_ptr<VirtioDevice> device_;
  TransportHooks& hooks_;

  mutable std::mutex mu_;
  std::vector<Virtqueue> queues_;
  uint32_t status_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t config_generation_ = 0;
  std::string last_error_;
  bool frozen_ = false;  // the I/O thread runs no device work

  std::vector<UniqueFd> notify_fds_;
  UniqueFd kick_fd_, complete_fd_, stop_fd_, epoll_fd_;
  UniqueFd sync_fd_;
  uint64_t sync_requested_ = 0, sync_done_ = 0;  // under mu_
  std::condition_variable sync_cv_;
  std::thread thread_;
};

}  // namespace berth::devices::virtio
