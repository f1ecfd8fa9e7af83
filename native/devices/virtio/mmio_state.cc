// VirtioMmio's saved state (mmio.h): record "virtio-mmio" version 1, the core's fields
// (transport.h) with InterruptStatus among them.
#include "common/state_stream.h"
#include "devices/virtio/mmio.h"

namespace berth::devices::virtio {

namespace {

constexpr uint32_t kInterruptBits = kInterruptUsedBuffer | kInterruptConfigChange;

}  // namespace

void VirtioMmio::save_state(state::Writer& w) const {
  core_.save_state(w, "virtio-mmio", 1, [&](state::Writer& out, uint32_t) { out.u32(interrupt_status_.load()); });
}

void VirtioMmio::load_state(state::Reader& parent) {
  uint32_t interrupt_status = 0;
  core_.load_state(
      parent, "virtio-mmio", 1,
      [&](state::Reader& r, uint32_t) {
        interrupt_status = r.u32("interrupt_status");
        if (interrupt_status & ~kInterruptBits) {
          r.fail("interrupt_status " + std::to_string(interrupt_status) + " has unknown bits");
        }
      },
      [&] {
        interrupt_status_.store(interrupt_status);
        // An interrupt the driver had not acknowledged is raised again: the edge may have
        // been lost with the old machine, and a driver reading a set InterruptStatus
        // handles it once.
        if (interrupt_status) irq_.trigger();
      });
}

}  // namespace berth::devices::virtio
