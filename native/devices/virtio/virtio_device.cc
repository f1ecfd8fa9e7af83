#include "devices/virtio/virtio_device.h"

namespace berth::devices::virtio {

const char* VirtioDevice::name() const {
  switch (device_id()) {
    case kDeviceIdNet: return "virtio-net";
    case kDeviceIdBlock: return "virtio-blk";
    case kDeviceIdConsole: return "virtio-console";
    case kDeviceIdRng: return "virtio-rng";
  }
  return "virtio-device";
}

void VirtioDevice::save_state(state::Writer& w) const { w.end(w.begin(name(), 1)); }

void VirtioDevice::load_state(state::Reader& r) { r.record(name(), 1).body.expect_end(); }

}  // namespace berth::devices::virtio
