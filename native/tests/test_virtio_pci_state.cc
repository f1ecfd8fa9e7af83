// Saved state of the virtio-pci transport: a driver that ran before the save (BAR placed,
// MSI-X programmed, a vector masked with its message pending, or INTx asserted) carries on
// against a fresh function over the same guest memory; hostile records are refused with
// the field named and leave the function reset. Last, the function on a PciBus as the
// machine wires it.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "devices/pci/pci_bus.h"
#include "devices/virtio/console.h"
#include "devices/virtio/pci.h"
#include "devices/virtio/rng.h"
#include "tests/check.h"
#include "tests/pci_helpers.h"
#include "tests/state_helpers.h"
#include "tests/virtio_driver.h"
#include "tests/virtio_pci_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using namespace berth::test;
using namespace berth::test::state_bytes;

namespace {

constexpr uint64_t kBar = 0xc0008000;
constexpr uint64_t kBuf = 0x40000;
constexpr uint64_t kMsiAddress = 0xfee01000;
// Where fields sit in a "virtio-pci" record: its body (name length, "virtio-pci", version,
// length), the core's fields, then the nested "pci-function" record.
constexpr size_t kBody = 4 + 10 + 4 + 8;
constexpr size_t kPciFunctionAt = kBody + 4 + 2 + 4 + 4 + 4 + 8 + 4 + 4;
constexpr size_t kConfigBytesAt = kPciFunctionAt + 4 + 12 + 4 + 8;
constexpr size_t kIsrAt = kConfigBytesAt + 256 + 1;
constexpr size_t kConfigVectorAt = kIsrAt + 1;

// virtio-rng behind virtio-pci with a running queue and one request answered.
struct Rig {
  vmm::GuestMemory& mem;
  RecordingMsi msi;
  pci::FakeIrq intx;
  VirtioPci f;
  PciDriver d{f};
  TestRing ring;
  Rig(vmm::GuestMemory& m, bool msix) : mem(m), f(m, std::make_shared<VirtioRng>(), msi), ring(m, 16) {
    f.connect_intx(&intx);
    d.place_bar(kBar);
    if (msix) {
      d.set_vector(0, kMsiAddress, 0x61, false);
      d.set_msix_control(kMsixControlEnable);
    }
    CHECK(d.negotiate(kFeatureVersion1));
    d.setup_queue(0, ring, 0);
    d.driver_ok();
    request();
    f.sync();
    CHECK_EQ(ring.used_idx(), 1);
  }
  void request() {
    uint16_t i = ring.avail_idx % 16;
    ring.set_desc(i, kBuf + 64 * i, 64, kDescWrite);
    ring.offer(i);
    d.notify(0);
  }
};

}  // namespace

TEST(virtio_pci_state_restores_bar_msix_and_queue_and_serves_a_swallowed_kick) {
  vmm::GuestMemory mem(1 << 20);
  std::vector<uint8_t> bytes;
  {
    Rig a(mem, true);
    CHECK_EQ(a.msi.count_of(0x61), 1u);
    a.d.mask_vector(0, true);
    a.request();
    a.f.sync();
    CHECK_EQ(a.d.pba(), 1u);
    CHECK_THROWS_CODE(save(a.f), "VIRTIO_SETUP", "virtio-rng: saving state needs a frozen device");
    a.f.freeze();
    a.request();  // kicked while frozen: not served
    a.f.sync();
    CHECK_EQ(a.ring.used_idx(), 2);
    bytes = save(a.f);
  }
  RecordingMsi msi;
  VirtioPci b(mem, std::make_shared<VirtioRng>(), msi);
  int moves = 0;
  b.set_bar_listener([&] { ++moves; });
  load(b, bytes);
  CHECK_EQ(moves, 1);
  CHECK_EQ(*b.notify_address(0), kBar + kPciNotifyOffset);
  CHECK(b.msix_enabled());
  b.sync();
  TestRing ring(mem, 16);
  CHECK_EQ(ring.used_idx(), 3);  // the restored I/O thread looked at the queue by itself
  PciDriver d(b);
  d.base = kBar;
  CHECK_EQ(d.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  CHECK_EQ(d.common(kPciQueueEnable, 2), 1u);
  CHECK_EQ(d.common(kPciQueueMsixVector, 2), 0u);
  CHECK_EQ(msi.count(), 0u);  // vector 0 is still masked: its message waits
  CHECK_EQ(d.pba(), 1u);
  d.mask_vector(0, false);
  CHECK_EQ(msi.count_of(0x61), 1u);
  CHECK(msi.sent[0].first == kMsiAddress);
  // The driver carries on with its own ring indices.
  ring.avail_idx = 3;
  ring.set_desc(3, kBuf + 192, 64, kDescWrite);
  ring.offer(3);
  d.notify(0);
  b.sync();
  CHECK_EQ(ring.used_idx(), 4);
  CHECK_EQ(msi.count_of(0x61), 2u);
}

TEST(virtio_pci_state_keeps_an_unread_intx_interrupt) {
  vmm::GuestMemory mem(1 << 20);
  std::vector<uint8_t> bytes;
  {
    Rig a(mem, false);
    CHECK(a.intx.level);
    a.f.freeze();
    bytes = save(a.f);
    a.f.thaw();
  }
  RecordingMsi msi;
  pci::FakeIrq intx;
  VirtioPci b(mem, std::make_shared<VirtioRng>(), msi);
  b.connect_intx(&intx);
  load(b, bytes);
  CHECK(intx.level);
  PciDriver d(b);
  d.base = kBar;
  CHECK_EQ(d.isr(), kPciIsrQueue);
  CHECK(!intx.level);
  CHECK(!b.msix_enabled());
}

TEST(virtio_pci_state_refuses_hostile_records_and_is_left_reset) {
  vmm::GuestMemory mem(1 << 20);
  Rig a(mem, true);
  a.f.freeze();
  const auto good = save(a.f);
  RecordingMsi msi;
  VirtioPci console(mem, std::make_shared<VirtioConsole>([](std::span<const uint8_t>) {}), msi);
  CHECK_THROWS_CODE(load(console, good), "STATE_INVALID", "device_id is 4, but this is virtio-console (device id 3)");
  VirtioPci b(mem, std::make_shared<VirtioRng>(), msi);
  CHECK_THROWS_CODE(load(b, with_version(good, 2)), "STATE_VERSION", "'virtio-pci' record is version 2");
  CHECK_THROWS_CODE(load(b, cut(good, good.size() / 2)), "STATE_INVALID", "longer than the data left");
  auto patched = [&](size_t at, uint8_t v, int count = 1) {
    auto bytes = good;
    for (int i = 0; i < count; ++i) bytes[at + i] = i ? 0 : v;
    return bytes;
  };
  CHECK_THROWS_CODE(load(b, patched(kConfigBytesAt + 1, 0x11)), "STATE_INVALID", "identity register at 0x0");
  CHECK_THROWS_CODE(load(b, patched(kIsrAt, 4)), "STATE_INVALID", "isr 4 has unknown bits");
  CHECK_THROWS_CODE(load(b, patched(kConfigVectorAt, 2, 2)), "STATE_INVALID",
                    "config_msix_vector 2 is not a vector of the MSI-X table (2)");
  CHECK_THROWS_CODE(load(b, patched(kConfigVectorAt + 2, 9)), "STATE_INVALID", "queue_msix_vector 9");
  // The MSI-X table: vector count, then entries of four u32, then the PBA.
  const size_t table_at = kConfigVectorAt + 2 + 2 + 2;
  CHECK_THROWS_CODE(load(b, patched(table_at - 2, 3)), "STATE_INVALID", "msix_vectors is 3, but this function has 2");
  CHECK_THROWS_CODE(load(b, patched(table_at + 12, 3)), "STATE_INVALID", "msix_vector_control 3 has reserved bits");
  CHECK_THROWS_CODE(load(b, patched(table_at + 32, 4)), "STATE_INVALID", "msix_pending has bits beyond the last vector");
  // Guest memory that disagrees with the queue, after the PCI function was loaded.
  mem.write_obj<uint16_t>(a.ring.used + 2, 7);
  CHECK_THROWS_CODE(load(b, good), "STATE_INVALID", "used_idx is 1 but the used ring in guest memory holds 7");
  CHECK(!b.bar_mapping(0));  // left reset, and usable
  CHECK(!b.msix_enabled());
  CHECK_EQ(b.status(), 0u);
  mem.write_obj<uint16_t>(a.ring.used + 2, 1);
  load(b, good);
  CHECK((b.status() & kStatusDriverOk) != 0);
  CHECK_EQ(b.bar_mapping(0)->address, kBar);
}

// As the machine wires it: on PciBus slot 3 with its INTx line, placed and driven through
// configuration and BAR accesses of the bus, the bus's listener telling where the notify
// register moved; saved with the bus and loaded back, then refreshed.
TEST(virtio_pci_on_the_pci_bus_as_the_machine_wires_it) {
  using devices::pci::BarSpace;
  vmm::GuestMemory mem(1 << 20);
  std::map<uint32_t, pci::FakeIrq> lines;
  RecordingMsi msi;
  auto bus = std::make_shared<devices::pci::PciBus>([&](uint32_t gsi) { return &lines[gsi]; });
  auto f = std::make_shared<VirtioPci>(mem, std::make_shared<VirtioRng>(), msi);
  bus->add(3, 0, f);
  std::vector<uint64_t> notify_at;
  bus->set_bars_changed_listener([&] {
    if (auto a = f->notify_address(0)) notify_at.push_back(*a);
  });
  auto cfg_write = [&](uint32_t off, uint32_t size, uint32_t v) {
    uint8_t b[4];
    for (uint32_t i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    bus->config_write(0, 3, 0, off, std::span<const uint8_t>(b, size));
  };
  auto mem_write = [&](uint64_t a, uint32_t size, uint64_t v) {
    uint8_t b[8];
    for (uint32_t i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    CHECK(bus->bar_write(BarSpace::kMemory, a, std::span<const uint8_t>(b, size)));
  };
  cfg_write(0x10, 4, static_cast<uint32_t>(kBar));
  cfg_write(0x04, 2, 0x6);
  CHECK_EQ(notify_at.size(), 1u);
  CHECK_EQ(notify_at[0], kBar + kPciNotifyOffset);
  // A driver through the bus: INTx on GSI 16 + (3 + 1 - 1) % 8.
  TestRing ring(mem, 8);
  auto common = [&](uint64_t off, uint32_t size, uint64_t v) { mem_write(kBar + off, size, v); };
  common(kPciDeviceStatus, 1, kStatusAcknowledge | kStatusDriver);
  common(kPciDriverFeatureSelect, 4, 1);
  common(kPciDriverFeature, 4, 1);
  common(kPciDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  common(kPciQueueSize, 2, 8);
  common(kPciQueueDesc, 8, ring.desc);
  common(kPciQueueDriver, 8, ring.avail);
  common(kPciQueueDevice, 8, ring.used);
  common(kPciQueueEnable, 2, 1);
  common(kPciDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  ring.set_desc(0, kBuf, 32, kDescWrite);
  ring.offer(0);
  mem_write(notify_at[0], VirtioPci::kNotifyAccessSize, 0);
  f->sync();
  CHECK_EQ(ring.used_idx(), 1);
  CHECK(lines[19].level);
  // Saved: the bus's record and the function's own; loaded into a new bus and function.
  f->freeze();
  state::Writer w;
  bus->save_state(w);
  f->save_state(w);
  const auto bytes = w.take();
  std::map<uint32_t, pci::FakeIrq> lines2;
  auto bus2 = std::make_shared<devices::pci::PciBus>([&](uint32_t gsi) { return &lines2[gsi]; });
  auto f2 = std::make_shared<VirtioPci>(mem, std::make_shared<VirtioRng>(), msi);
  bus2->add(3, 0, f2);
  state::Reader r(bytes, "test");
  bus2->load_state(r);
  f2->load_state(r);
  r.expect_end();
  bus2->refresh();
  CHECK_EQ(bus2->bar(3, 0, 0)->address, kBar);
  CHECK(lines2[19].level);
  uint8_t isr[1] = {};
  CHECK(bus2->bar_read(BarSpace::kMemory, kBar + kPciIsrOffset, isr));
  CHECK_EQ(isr[0], kPciIsrQueue);
  CHECK(!lines2[19].level);
  // Machine reset through the bus: the BAR is unplaced, the device reset.
  bus2->reset();
  CHECK(!bus2->bar(3, 0, 0));
  CHECK_EQ(f2->status(), 0u);
}
