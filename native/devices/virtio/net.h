// virtio-net (virtio 1.x 5.1, device id 1) with one receive queue (0) and one transmit
// queue (1), no offloads and no mergeable receive buffers: every frame travels with the
// 12-byte struct virtio_net_hdr (VERSION_1 layout, num_buffers included) in front of it.
// Features: MAC (the address is in the configuration space) and STATUS (link always up).
//
// The host side is a net::NetBackend. Frames from the backend are queued (bounded; the
// rest are dropped and counted) and copied into the guest's receive buffers on the
// transport's I/O thread, as soon as the driver has buffers posted.
//
// Guest mistakes the device answers without giving up on the driver (the VM keeps running;
// each is counted): a transmit chain shorter than the header or longer than 64 KiB + header
// is returned unused and dropped; a receive buffer too small for header + frame is returned
// with length 0 and the frame dropped. A receive chain with a device-readable part is a
// protocol violation: DEVICE_NEEDS_RESET (like the other devices).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/net/backend.h"
#include "devices/virtio/virtio_device.h"

namespace berth::devices::virtio {

constexpr uint64_t kNetFeatureMac = 1ull << 5;
constexpr uint64_t kNetFeatureStatus = 1ull << 16;
constexpr uint16_t kNetStatusLinkUp = 1;
constexpr size_t kNetHeaderSize = 12;

struct NetStats {
  uint64_t tx_frames = 0;
  uint64_t tx_bad_chain = 0;      // shorter than the header, or oversized: dropped
  uint64_t rx_frames = 0;
  uint64_t rx_queue_full = 0;     // arrived with the pending queue full: dropped
  uint64_t rx_buffer_small = 0;   // the guest's buffer could not hold the frame: dropped
};

class VirtioNet final : public VirtioDevice {
 public:
  static constexpr size_t kMaxPendingFrames = 256;
  static constexpr size_t kMaxFrame = 65536;  // without the virtio header

  VirtioNet(std::array<uint8_t, 6> mac, std::unique_ptr<net::NetBackend> backend);
  ~VirtioNet() override;

  // Starts the backend (frames start arriving). Call after the transport is bound.
  void start();
  // Stops the backend; no frame arrives afterwards. Idempotent; call before the transport
  // goes away.
  void shutdown();
  // shutdown(), then frees the backend (its tap device, its host sockets). Only when the
  // transport is reset and no driver can use the device again (the VM has stopped for good).
  void close_backend();

  // Any thread: a frame for the guest (what the backend's receive callback calls).
  void enqueue_rx(std::span<const uint8_t> frame);

  NetStats stats() const;

  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t device_features() const override { return kNetFeatureMac | kNetFeatureStatus; }
  uint16_t queue_count() const override { return 2; }
  // struct virtio_net_config: mac[6], status (u16).
  uint32_t config_size() const override { return 8; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void host_event() override { fill_receive(); }
  void reset() override;

  // Record "virtio-net": the MAC address (load_state refuses another; the negotiated
  // features are the transport's). Frames waiting for the guest are not saved, and the
  // transport's load resets the device, which drops those that arrived meanwhile: like a
  // real network, losing packets in flight is allowed, and TCP resends them.
  void save_state(state::Writer& w) const override;
  void load_state(state::Reader& r) override;

 private:
  void fill_receive();
  void drain_transmit();

  std::array<uint8_t, 6> mac_;
  std::unique_ptr<net::NetBackend> backend_;
  bool started_ = false;
  std::mutex lifecycle_mu_;

  Virtqueue* rx_ = nullptr;
  Virtqueue* tx_ = nullptr;
  Chain chain_;
  std::vector<uint8_t> tx_buffer_;
  std::vector<uint8_t> rx_buffer_;

  mutable std::mutex pending_mu_;
  std::deque<std::vector<uint8_t>> pending_;

  std::atomic<uint64_t> tx_frames_{0}, tx_bad_chain_{0}, rx_frames_{0}, rx_queue_full_{0},
      rx_buffer_small_{0};
};

}  // namespace berth::devices::virtio
