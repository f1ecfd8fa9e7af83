// The driver side of a virtio-mmio device for unit tests: register access and the
// initialization sequence (virtio 1.x 3.1.1) a guest driver goes through.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "devices/virtio/mmio.h"
#include "tests/virtio_driver.h"

namespace berth::test {

class CountingInterrupt : public devices::virtio::EdgeInterrupt {
 public:
  void trigger() override { ++count; }
  std::atomic<int> count{0};
};

inline uint32_t rd(devices::virtio::VirtioMmio& m, uint64_t off) {
  uint32_t v = 0;
  m.read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
  return v;
}
inline void wr(devices::virtio::VirtioMmio& m, uint64_t off, uint32_t v) {
  m.write(off, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), 4));
}

// Up to FEATURES_OK; returns whether the device accepted the features.
inline bool negotiate(devices::virtio::VirtioMmio& m, uint64_t features = devices::virtio::kFeatureVersion1) {
  using namespace devices::virtio;
  wr(m, kMmioStatus, 0);
  wr(m, kMmioStatus, kStatusAcknowledge);
  wr(m, kMmioStatus, kStatusAcknowledge | kStatusDriver);
  wr(m, kMmioDriverFeaturesSel, 0);
  wr(m, kMmioDriverFeatures, static_cast<uint32_t>(features));
  wr(m, kMmioDriverFeaturesSel, 1);
  wr(m, kMmioDriverFeatures, static_cast<uint32_t>(features >> 32));
  wr(m, kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  return (rd(m, kMmioStatus) & kStatusFeaturesOk) != 0;
}

inline void setup_queue(devices::virtio::VirtioMmio& m, uint32_t index, const TestRing& r) {
  using namespace devices::virtio;
  wr(m, kMmioQueueSel, index);
  wr(m, kMmioQueueNum, r.size);
  wr(m, kMmioQueueDescLow, static_cast<uint32_t>(r.desc));
  wr(m, kMmioQueueDescHigh, static_cast<uint32_t>(r.desc >> 32));
  wr(m, kMmioQueueDriverLow, static_cast<uint32_t>(r.avail));
  wr(m, kMmioQueueDriverHigh, 0);
  wr(m, kMmioQueueDeviceLow, static_cast<uint32_t>(r.used));
  wr(m, kMmioQueueDeviceHigh, 0);
  wr(m, kMmioQueueReady, 1);
}

inline void driver_ok(devices::virtio::VirtioMmio& m) {
  using namespace devices::virtio;
  wr(m, kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
}

}  // namespace berth::test
