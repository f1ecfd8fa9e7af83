// The driver side of a virtio-pci function for unit tests: configuration accesses, BAR
// placement, capability discovery by walking the list (as Linux, SeaBIOS and OVMF do),
// memory accesses routed the way the bus routes them (only inside a decoded BAR), and the
// initialization sequence of virtio 1.2 3.1.1.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "devices/virtio/pci.h"
#include "tests/pci_helpers.h"
#include "tests/virtio_driver.h"

namespace berth::test {

// Records every MSI message.
class RecordingMsi final : public devices::virtio::MsiSink {
 public:
  void send_msi(uint64_t address, uint32_t data) override {
    std::lock_guard<std::mutex> lock(mu);
    sent.emplace_back(address, data);
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return sent.size();
  }
  size_t count_of(uint32_t data) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (auto& m : sent) n += m.second == data;
    return n;
  }
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint32_t>> sent;
};

struct VirtioCap {
  uint8_t at = 0;  // configuration offset
  uint8_t bar = 0;
  uint32_t offset = 0, length = 0;
  uint32_t extra = 0;  // notify_off_multiplier
};

class PciDriver {
 public:
  explicit PciDriver(devices::virtio::VirtioPci& f) : f_(f) { discover(); }

  uint32_t cfg(uint32_t off, uint32_t size) { return pci::cfg_read(f_, off, size); }
  void set_cfg(uint32_t off, uint32_t size, uint32_t v) { pci::cfg_write(f_, off, size, v); }

  // The capability list from 0x34; vendor capabilities by cfg_type (the first of each).
  void discover() {
    caps.clear();
    msix_cap = 0;
    int guard = 0;
    for (uint32_t at = cfg(0x34, 1) & 0xfc; at && guard < 48; at = cfg(at + 1, 1) & 0xfc, ++guard) {
      const uint32_t id = cfg(at, 1);
      if (id == devices::virtio::kCapabilityIdMsix) msix_cap = static_cast<uint8_t>(at);
      if (id != devices::virtio::kCapabilityIdVendor) continue;
      VirtioCap c;
      c.at = static_cast<uint8_t>(at);
      c.bar = static_cast<uint8_t>(cfg(at + 4, 1));
      c.offset = cfg(at + 8, 4);
      c.length = cfg(at + 12, 4);
      if (cfg(at + 2, 1) >= 20) c.extra = cfg(at + 16, 4);
      caps.try_emplace(static_cast<uint8_t>(cfg(at + 3, 1)), c);
    }
  }

  // Sizes BAR 0 the way firmware does, places it at `address` and turns memory decoding on.
  uint32_t place_bar(uint64_t address) {
    set_cfg(0x10, 4, 0xffffffff);
    const uint32_t sized = cfg(0x10, 4);
    set_cfg(0x10, 4, static_cast<uint32_t>(address));
    set_cfg(0x04, 2, cfg(0x04, 2) | 0x6);  // memory decode, bus master
    base = address;
    return sized;
  }
  void decode(bool on) { set_cfg(0x04, 2, on ? (cfg(0x04, 2) | 0x2) : (cfg(0x04, 2) & ~0x2u)); }

  // A guest memory access: reaches BAR 0 only while it is decoded there, else reads
  // all-ones (nothing answers) and writes go nowhere.
  uint64_t mem_read(uint64_t gpa, uint32_t size) {
    auto m = f_.bar_mapping(0);
    if (!m || gpa < m->address || gpa + size > m->address + m->size) return size == 8 ? ~0ull : (1ull << (8 * size)) - 1;
    uint8_t b[8] = {};
    f_.bar_read(0, gpa - m->address, std::span<uint8_t>(b, size));
    uint64_t v = 0;
    for (uint32_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
    return v;
  }
  void mem_write(uint64_t gpa, uint32_t size, uint64_t v) {
    auto m = f_.bar_mapping(0);
    if (!m || gpa < m->address || gpa + size > m->address + m->size) return;
    uint8_t b[8] = {};
    for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    f_.bar_write(0, gpa - m->address, std::span<const uint8_t>(b, size));
  }

  uint64_t addr(uint8_t type, uint64_t off = 0) { return base + caps.at(type).offset + off; }
  uint64_t common(uint64_t off, uint32_t size) { return mem_read(addr(devices::virtio::kPciCapCommon, off), size); }
  void set_common(uint64_t off, uint32_t size, uint64_t v) { mem_write(addr(devices::virtio::kPciCapCommon, off), size, v); }
  uint8_t status() { return static_cast<uint8_t>(common(devices::virtio::kPciDeviceStatus, 1)); }
  void set_status(uint8_t s) { set_common(devices::virtio::kPciDeviceStatus, 1, s); }
  uint8_t isr() { return static_cast<uint8_t>(mem_read(addr(devices::virtio::kPciCapIsr), 1)); }

  uint64_t device_features() {
    using namespace devices::virtio;
    set_common(kPciDeviceFeatureSelect, 4, 0);
    uint64_t lo = common(kPciDeviceFeature, 4);
    set_common(kPciDeviceFeatureSelect, 4, 1);
    return lo | (common(kPciDeviceFeature, 4) << 32);
  }
  // Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns whether the device kept it.
  bool negotiate(uint64_t features = devices::virtio::kFeatureVersion1) {
    using namespace devices::virtio;
    set_status(0);
    set_status(kStatusAcknowledge);
    set_status(kStatusAcknowledge | kStatusDriver);
    set_common(kPciDriverFeatureSelect, 4, 0);
    set_common(kPciDriverFeature, 4, static_cast<uint32_t>(features));
    set_common(kPciDriverFeatureSelect, 4, 1);
    set_common(kPciDriverFeature, 4, static_cast<uint32_t>(features >> 32));
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    return (status() & kStatusFeaturesOk) != 0;
  }
  // Queue `index` over r: size, rings as OVMF writes them (two 32-bit halves), vector, enable.
  void setup_queue(uint16_t index, const TestRing& r, uint16_t vector = devices::virtio::kPciNoVector) {
    using namespace devices::virtio;
    set_common(kPciQueueSelect, 2, index);
    set_common(kPciQueueSize, 2, r.size);
    for (auto [off, a] : {std::pair{kPciQueueDesc, r.desc}, {kPciQueueDriver, r.avail}, {kPciQueueDevice, r.used}}) {
      set_common(off, 4, static_cast<uint32_t>(a));
      set_common(off + 4, 4, static_cast<uint32_t>(a >> 32));
    }
    set_common(kPciQueueMsixVector, 2, vector);
    set_common(kPciQueueEnable, 2, 1);
  }
  void driver_ok() {
    using namespace devices::virtio;
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  // The queue's notify address from queue_notify_off and the multiplier; writes the index.
  void notify(uint16_t queue) {
    using namespace devices::virtio;
    set_common(kPciQueueSelect, 2, queue);
    const uint64_t off = common(kPciQueueNotifyOff, 2) * caps.at(kPciCapNotify).extra;
    mem_write(addr(kPciCapNotify, off), 2, queue);
  }

  // MSI-X: the table and PBA as the capability places them.
  uint64_t msix_table() { return base + (cfg(msix_cap + 4, 4) & ~7u); }
  uint64_t msix_pba() { return base + (cfg(msix_cap + 8, 4) & ~7u); }
  void set_msix_control(uint16_t bits) { set_cfg(msix_cap + 2, 2, bits); }
  void set_vector(uint16_t v, uint64_t address, uint32_t data, bool masked) {
    const uint64_t e = msix_table() + 16ull * v;
    mem_write(e, 4, static_cast<uint32_t>(address));
    mem_write(e + 4, 4, static_cast<uint32_t>(address >> 32));
    mem_write(e + 8, 4, data);
    mem_write(e + 12, 4, masked ? 1 : 0);
  }
  void mask_vector(uint16_t v, bool masked) { mem_write(msix_table() + 16ull * v + 12, 4, masked ? 1 : 0); }
  uint64_t pba() { return mem_read(msix_pba(), 8); }

  // The PCI_CFG window: BAR 0 through configuration space.
  uint32_t window_read(uint32_t offset, uint32_t length) {
    const uint8_t at = caps.at(devices::virtio::kPciCapPciCfg).at;
    set_cfg(at + 4, 1, 0);
    set_cfg(at + 8, 4, offset);
    set_cfg(at + 12, 4, length);
    return cfg(at + 16, length);
  }
  void window_write(uint32_t offset, uint32_t length, uint32_t v) {
    const uint8_t at = caps.at(devices::virtio::kPciCapPciCfg).at;
    set_cfg(at + 4, 1, 0);
    set_cfg(at + 8, 4, offset);
    set_cfg(at + 12, 4, length);
    set_cfg(at + 16, length, v);
  }

  std::map<uint8_t, VirtioCap> caps;
  uint8_t msix_cap = 0;
  uint64_t base = 0;

 private:
  devices::virtio::VirtioPci& f_;
};

}  // namespace berth::test
