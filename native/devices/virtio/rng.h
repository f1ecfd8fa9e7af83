// virtio-rng (virtio 1.x 5.4, device id 4): one request queue; each chain of
// device-writable buffers is filled from the host's getrandom().
#pragma once

#include "devices/virtio/virtio_device.h"

namespace berth::devices::virtio {

class VirtioRng final : public VirtioDevice {
 public:
  // At most this many bytes are produced per request (a guest asking for more gets less,
  // which the specification allows).
  static constexpr size_t kMaxRequestBytes = 64 * 1024;

  uint32_t device_id() const override { return kDeviceIdRng; }
  uint64_t device_features() const override { return 0; }
  uint16_t queue_count() const override { return 1; }

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void reset() override { queue_ = nullptr; }

 private:
  Virtqueue* queue_ = nullptr;
  Chain chain_;
};

}  // namespace berth::devices::virtio
