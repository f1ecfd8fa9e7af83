// VirtioPci's saved state (pci.h): record "virtio-pci" version 1, the core's fields
// (transport.h) with the PCI function's among them.
#include <vector>

#include "common/state_stream.h"
#include "devices/virtio/pci.h"

namespace berth::devices::virtio {

void VirtioPci::save_state(state::Writer& w) const {
  core_.save_state(w, "virtio-pci", 1, [&](state::Writer& out, uint32_t) {
    PciFunction::save_state(out);
    std::lock_guard<std::mutex> lock(irq_mu_);
    out.u8(isr_);
    out.u16(config_vector_);
    for (uint16_t v : queue_vectors_) out.u16(v);
    msix_.save_state(out);
  });
}

void VirtioPci::load_state(state::Reader& parent) {
  uint8_t isr = 0;
  uint16_t config_vector = kPciNoVector;
  std::vector<uint16_t> queue_vectors(queue_vectors_.size(), kPciNoVector);
  MsixTable table(msix_.vectors());
  auto read_vector = [&](state::Reader& r, const char* field) {
    const uint16_t v = r.u16(field);
    if (v != kPciNoVector && v >= table.vectors()) {
      r.fail(std::string(field) + " " + std::to_string(v) + " is not a vector of the MSI-X table (" +
             std::to_string(table.vectors()) + ") nor NO_VECTOR");
    }
    return v;
  };
  try {
    core_.load_state(
        parent, "virtio-pci", 1,
        [&](state::Reader& r, uint32_t) {
          // Applied at once (identity checked first); a later refusal resets it below.
          PciFunction::load_state(r);
          isr = r.u8("isr");
          if (isr & ~(kPciIsrQueue | kPciIsrConfig)) r.fail("isr " + std::to_string(isr) + " has unknown bits");
          config_vector = read_vector(r, "config_msix_vector");
          for (auto& v : queue_vectors) v = read_vector(r, "queue_msix_vector");
          table.load_state(r);
        },
        [&] {
          config_vector_ = config_vector;
          queue_vectors_ = queue_vectors;
          std::lock_guard<std::mutex> lock(irq_mu_);
          isr_ = isr;
          msix_ = table;
          // The core's reset on the way dropped the line: INTx follows ISR again.
          if (!(msix_control() & kMsixControlEnable)) set_intx(isr_ != 0);
        });
  } catch (...) {
    reset();
    throw;
  }
  check_bar_moved();
}

}  // namespace berth::devices::virtio
