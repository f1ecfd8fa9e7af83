// virtio-console (virtio 1.x 5.3, device id 3) with a single port and no multiport
// feature: receiveq0 (queue 0) carries host input to the guest, transmitq0 (queue 1) the
// guest's output to the host. The host side is a byte stream, like COM1's.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

#include "devices/virtio/virtio_device.h"

namespace berth::devices::virtio {

class VirtioConsole final : public VirtioDevice {
 public:
  using Output = std::function<void(std::span<const uint8_t>)>;
  // Host input beyond this many bytes not yet taken by the guest is dropped.
  static constexpr size_t kMaxPendingInput = 1 << 20;

  // output receives the guest's bytes, on the device's I/O thread.
  explicit VirtioConsole(Output output) : output_(std::move(output)) {}

  // Any thread: bytes for the guest; delivered as soon as it has receive buffers queued.
  void enqueue_input(std::span<const uint8_t> bytes);

  uint32_t device_id() const override { return kDeviceIdConsole; }
  uint64_t device_features() const override { return 0; }
  uint16_t queue_count() const override { return 2; }
  // struct virtio_console_config: cols, rows (u16), max_nr_ports, emerg_wr (u32); the
  // fields are only meaningful with features Berth does not offer, so they read as 0.
  uint32_t config_size() const override { return 12; }

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void host_event() override { fill_receive(); }
  void reset() override { rx_ = tx_ = nullptr; }

  // Record "virtio-console": the host input the guest has not taken yet.
  void save_state(state::Writer& w) const override;
  void load_state(state::Reader& r) override;

 private:
  void fill_receive();
  void drain_transmit();

  Output output_;
  Virtqueue* rx_ = nullptr;
  Virtqueue* tx_ = nullptr;
  Chain chain_;
  mutable std::mutex input_mu_;
  std::deque<uint8_t> input_;
};

}  // namespace berth::devices::virtio
