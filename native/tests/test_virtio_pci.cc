// The virtio-pci transport driven like a guest driver drives it: identity and capability
// discovery, BAR placement, feature negotiation, queues, notify, MSI-X (masking, pending
// bits) and the INTx fallback with ISR read-to-clear, the PCI_CFG window, resets and
// hostile values; virtio-rng and virtio-blk behind it. Saved state is in
// test_virtio_pci_state.cc.
#include <unistd.h>

#include <array>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/net.h"
#include "devices/virtio/pci.h"
#include "devices/virtio/rng.h"
#include "disk/block_device.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"
#include "tests/pci_helpers.h"
#include "tests/virtio_driver.h"
#include "tests/virtio_pci_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using namespace berth::test;

namespace {

constexpr uint64_t kBar = 0xc0000000;
constexpr uint64_t kBuf = 0x40000;
constexpr uint64_t kMsiAddress = 0xfee00000;

// A transport with virtio-rng, its BAR placed and INTA# connected.
struct RngRig {
  vmm::GuestMemory mem{1 << 20};
  RecordingMsi msi;
  pci::FakeIrq intx;
  VirtioPci f{mem, std::make_shared<VirtioRng>(), msi};
  PciDriver d{f};
  RngRig() {
    f.connect_intx(&intx);
    d.place_bar(kBar);
  }
  // One 64-byte request at descriptor `i`, notified.
  void request(TestRing& r, uint16_t i) {
    r.set_desc(i, kBuf + 64 * i, 64, kDescWrite);
    r.offer(i);
    d.notify(0);
    f.sync();
  }
};

}  // namespace

TEST(virtio_pci_identifies_itself_and_lists_its_capabilities) {
  RngRig rig;
  PciDriver& d = rig.d;
  CHECK_EQ(d.cfg(0x00, 4), 0x10441af4u);  // 0x1040 + 4 (entropy source)
  CHECK_EQ(d.cfg(0x08, 1), 1u);           // revision 1: modern
  CHECK_EQ(d.cfg(0x09, 3), 0xff0000u);
  CHECK_EQ(d.cfg(0x2c, 4), 0x11001af4u);  // OVMF binds subsystem ids >= 0x40 only
  CHECK_EQ(d.cfg(0x3d, 1), 1u);           // INTA#
  CHECK((d.cfg(0x06, 2) & 0x10) != 0);    // capability list
  for (uint8_t type : {kPciCapCommon, kPciCapNotify, kPciCapIsr, kPciCapDevice, kPciCapPciCfg}) {
    CHECK(d.caps.count(type) == 1);
    CHECK_EQ(d.caps.at(type).bar, 0);
  }
  CHECK_EQ(d.caps.at(kPciCapCommon).length, 0x38u);
  CHECK_EQ(d.caps.at(kPciCapNotify).extra, 4u);  // notify_off_multiplier
  CHECK_EQ(d.caps.at(kPciCapNotify).length, 4u);  // one queue
  CHECK_EQ(d.caps.at(kPciCapIsr).length, 1u);
  CHECK(d.msix_cap != 0);
  CHECK_EQ(d.cfg(d.msix_cap + 2, 2), 1u);  // two vectors: the queue and configuration
  CHECK_EQ(d.cfg(d.msix_cap + 4, 4), 0x4000u);  // table at 0x4000 in BAR 0
  CHECK_EQ(d.cfg(d.msix_cap + 8, 4), 0x5000u);
  // Every structure fits the BAR, and the BAR is 32 KiB of 32-bit non-prefetchable memory.
  for (auto& [type, c] : d.caps) CHECK(uint64_t{c.offset} + c.length <= kPciBarSize);
  pci::cfg_write(rig.f, 0x10, 4, 0xffffffff);
  CHECK_EQ(pci::cfg_read(rig.f, 0x10, 4), 0xffff8000u);
  // Class codes as Linux and QEMU know them.
  vmm::GuestMemory mem(1 << 20);
  auto class_of = [&](std::shared_ptr<VirtioDevice> dev) {
    VirtioPci f(mem, std::move(dev), rig.msi);
    return pci::cfg_read(f, 0x08, 4);
  };
  CHECK_EQ(class_of(std::make_shared<VirtioConsole>([](std::span<const uint8_t>) {})), 0x07800001u);
  CHECK_EQ(class_of(std::make_shared<VirtioNet>(std::array<uint8_t, 6>{0x52, 0x54, 0, 1, 2, 3}, nullptr)), 0x02000001u);
}

TEST(virtio_pci_bar_placement_moves_the_notify_addresses_and_tells_the_listener) {
  vmm::GuestMemory mem(1 << 20);
  RecordingMsi msi;
  VirtioPci f(mem, std::make_shared<VirtioConsole>([](std::span<const uint8_t>) {}), msi);
  int moves = 0;
  f.set_bar_listener([&] { ++moves; });
  PciDriver d(f);
  CHECK(!f.notify_address(0));
  CHECK_EQ(d.common(kPciNumQueues, 2), ~0ull >> 48);  // nothing answers before placement
  d.place_bar(0xc0010000);
  CHECK_EQ(moves, 1);
  CHECK_EQ(*f.notify_address(1), 0xc0010000ull + 0x3000 + 4);
  CHECK(!f.notify_address(2));  // no such queue
  CHECK_EQ(d.common(kPciNumQueues, 2), 2u);
  d.decode(false);
  CHECK_EQ(moves, 2);
  CHECK(!f.notify_address(0));
  pci::cfg_write(f, 0x10, 4, 0xd0000000);
  CHECK_EQ(moves, 2);  // not decoded: nothing moved yet
  d.decode(true);
  CHECK_EQ(moves, 3);
  CHECK_EQ(*f.notify_address(0), 0xd0003000ull);
  pci::cfg_write(f, 0x3c, 1, 11);  // an unrelated register
  CHECK_EQ(moves, 3);
  f.reset();  // machine reset: the BAR is unplaced
  CHECK_EQ(moves, 4);
  CHECK(!f.notify_address(0));
}

TEST(virtio_pci_negotiates_features_and_serves_rng_with_intx) {
  RngRig rig;
  PciDriver& d = rig.d;
  CHECK_EQ(d.device_features(), kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx);
  CHECK(!d.negotiate(0));                                // legacy driver refused
  CHECK(!d.negotiate(kFeatureVersion1 | (1ull << 40)));  // a bit never offered
  CHECK(d.negotiate(kFeatureVersion1));
  d.set_common(kPciDriverFeatureSelect, 4, 1);
  CHECK_EQ(d.common(kPciDriverFeature, 4), 1u);  // the driver's features read back
  d.set_common(kPciQueueSelect, 2, 0);
  CHECK_EQ(d.common(kPciQueueSize, 2), 256u);  // the maximum, until the driver shrinks it
  CHECK_EQ(d.common(kPciQueueNotifyOff, 2), 0u);
  CHECK_EQ(d.common(kPciQueueMsixVector, 2), kPciNoVector);
  TestRing r(rig.mem, 16);
  d.setup_queue(0, r);
  CHECK_EQ(d.common(kPciQueueEnable, 2), 1u);
  CHECK_EQ(d.common(kPciQueueDesc, 8), r.desc);
  CHECK_EQ(d.common(kPciQueueDriver + 4, 4), 0u);
  d.driver_ok();
  CHECK_EQ(d.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  rig.request(r, 0);
  CHECK_EQ(r.used_idx(), 1);
  CHECK_EQ(r.used_len(0), 64u);
  // MSI-X is off: INTA# is raised, ISR says "queue", and reading ISR clears it and the line.
  CHECK(rig.intx.level);
  CHECK((d.cfg(0x06, 2) & 0x8) != 0);  // status: interrupt pending
  CHECK_EQ(d.isr(), kPciIsrQueue);
  CHECK(!rig.intx.level);
  CHECK_EQ(d.isr(), 0u);
  CHECK_EQ(rig.msi.count(), 0u);
  // Interrupt disable in the command register holds the line low, not the ISR bit.
  d.set_cfg(0x04, 2, d.cfg(0x04, 2) | 0x400);
  rig.request(r, 1);
  CHECK_EQ(r.used_idx(), 2);
  CHECK(!rig.intx.level);
  d.set_cfg(0x04, 2, d.cfg(0x04, 2) & ~0x400u);
  CHECK(rig.intx.level);
  CHECK_EQ(d.isr(), kPciIsrQueue);
  // Queue configuration is frozen while the queue is enabled.
  d.set_common(kPciQueueSize, 2, 4);
  CHECK_EQ(d.common(kPciQueueSize, 2), 16u);
}

TEST(virtio_pci_msix_delivers_per_vector_with_masks_and_pending_bits) {
  RngRig rig;
  PciDriver& d = rig.d;
  TestRing r(rig.mem, 16);
  d.set_vector(0, kMsiAddress, 0x41, false);
  d.set_vector(1, kMsiAddress | 0x1000, 0x42, false);
  d.set_msix_control(kMsixControlEnable);
  CHECK(rig.f.msix_enabled());
  CHECK(d.negotiate());
  d.set_common(kPciConfigMsixVector, 2, 1);
  CHECK_EQ(d.common(kPciConfigMsixVector, 2), 1u);
  d.setup_queue(0, r, 0);
  CHECK_EQ(d.common(kPciQueueMsixVector, 2), 0u);
  d.driver_ok();
  rig.request(r, 0);
  CHECK_EQ(rig.msi.count(), 1u);
  CHECK(rig.msi.sent[0] == std::make_pair(kMsiAddress, uint32_t{0x41}));
  CHECK(!rig.intx.level);
  CHECK_EQ(d.isr(), 0u);  // the queue bit is INTx's
  // A masked vector holds its message in the PBA and sends it on unmask.
  d.mask_vector(0, true);
  rig.request(r, 1);
  CHECK_EQ(rig.msi.count(), 1u);
  CHECK_EQ(d.pba(), 1u);
  d.mask_vector(0, false);
  CHECK_EQ(rig.msi.count(), 2u);
  CHECK_EQ(d.pba(), 0u);
  // The function mask holds every vector; clearing it delivers what waited.
  d.set_msix_control(kMsixControlEnable | kMsixControlFunctionMask);
  rig.request(r, 2);
  CHECK_EQ(rig.msi.count(), 2u);
  CHECK_EQ(d.pba(), 1u);
  d.set_msix_control(kMsixControlEnable);
  CHECK_EQ(rig.msi.count(), 3u);
  CHECK_EQ(rig.msi.count_of(0x41), 3u);
  // NO_VECTOR: the queue interrupts nobody.
  d.set_common(kPciQueueSelect, 2, 0);
  d.set_common(kPciQueueMsixVector, 2, kPciNoVector);
  rig.request(r, 3);
  CHECK_EQ(r.used_idx(), 4);
  CHECK_EQ(rig.msi.count(), 3u);
  CHECK_EQ(d.pba(), 0u);
  // A vector the table lacks reads back as NO_VECTOR.
  d.set_common(kPciQueueMsixVector, 2, 2);
  CHECK_EQ(d.common(kPciQueueMsixVector, 2), kPciNoVector);
  // A broken queue: NEEDS_RESET with a configuration interrupt on the config vector.
  d.set_common(kPciQueueMsixVector, 2, 0);
  r.set_desc(4, 0xe0000000ull, 64, kDescWrite);
  r.offer(4);
  d.notify(0);
  rig.f.sync();
  CHECK((d.status() & kStatusNeedsReset) != 0);
  CHECK_EQ(rig.msi.count_of(0x42), 1u);
  CHECK_EQ(d.isr(), kPciIsrConfig);
  // Turning MSI-X off falls back to INTx.
  d.set_msix_control(0);
  CHECK(d.negotiate());
  TestRing r2(rig.mem, 8, 0x20000);
  d.setup_queue(0, r2, 0);
  d.driver_ok();
  rig.request(r2, 0);
  CHECK(rig.intx.level);
  CHECK_EQ(d.isr(), kPciIsrQueue);
  CHECK_EQ(rig.msi.count(), 4u);
}

TEST(virtio_pci_cfg_window_reaches_bar_0_without_a_mapping) {
  RngRig rig;
  PciDriver& d = rig.d;
  d.decode(false);  // as SeaBIOS does for a BAR it cannot reach
  CHECK_EQ(d.window_read(kPciCommonOffset + kPciNumQueues, 2), 1u);
  d.window_write(kPciCommonOffset + kPciDeviceFeatureSelect, 4, 1);
  CHECK_EQ(d.window_read(kPciCommonOffset + kPciDeviceFeature, 4), 1u);
  // Hostile windows read what was stored and write nowhere.
  const uint8_t at = d.caps.at(kPciCapPciCfg).at;
  for (auto [bar, offset, length] : {std::tuple{1u, 0u, 4u}, {0u, 2u, 4u}, {0u, 0u, 3u}, {0u, 0x8000u, 1u}, {0u, 0x7ffeu, 4u}}) {
    d.set_cfg(at + 4, 1, bar);
    d.set_cfg(at + 8, 4, offset);
    d.set_cfg(at + 12, 4, length);
    d.set_cfg(at + 16, 4, 0x12345678);
    CHECK_EQ(d.cfg(at + 16, 4), 0x12345678u);
  }
  // A whole driver through the window: status, queue, notify, ISR.
  TestRing r(rig.mem, 8);
  auto w = [&](uint64_t off, uint32_t len, uint32_t v) { d.window_write(static_cast<uint32_t>(off), len, v); };
  w(kPciDeviceStatus, 1, kStatusAcknowledge | kStatusDriver);
  w(kPciDriverFeatureSelect, 4, 1);
  w(kPciDriverFeature, 4, 1);
  w(kPciDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  w(kPciQueueSize, 2, 8);
  w(kPciQueueDesc, 4, static_cast<uint32_t>(r.desc));
  w(kPciQueueDriver, 4, static_cast<uint32_t>(r.avail));
  w(kPciQueueDevice, 4, static_cast<uint32_t>(r.used));
  w(kPciQueueEnable, 2, 1);
  w(kPciDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  r.set_desc(0, kBuf, 16, kDescWrite);
  r.offer(0);
  w(kPciNotifyOffset, 2, 0);
  rig.f.sync();
  CHECK_EQ(r.used_idx(), 1);
  CHECK(rig.intx.level);
  CHECK_EQ(d.window_read(kPciIsrOffset, 1), kPciIsrQueue);
  CHECK(!rig.intx.level);
}

TEST(virtio_pci_ignores_hostile_register_values) {
  RngRig rig;
  PciDriver& d = rig.d;
  CHECK(d.negotiate());
  // Accesses that are not a field at its width are dropped and read 0.
  CHECK_EQ(d.common(kPciNumQueues, 4), 0u);
  CHECK_EQ(d.common(kPciQueueSize + 1, 1), 0u);
  d.set_common(kPciDeviceStatus, 4, 0);  // a 4-byte status write: ignored, no reset
  CHECK((d.status() & kStatusFeaturesOk) != 0);
  // A queue that does not exist: reads 0 (size 0 = unavailable), writes go nowhere.
  d.set_common(kPciQueueSelect, 2, 7);
  CHECK_EQ(d.common(kPciQueueSize, 2), 0u);
  CHECK_EQ(d.common(kPciQueueMsixVector, 2), kPciNoVector);
  d.set_common(kPciQueueEnable, 2, 1);
  CHECK_EQ(d.common(kPciQueueEnable, 2), 0u);
  d.mem_write(kBar + kPciNotifyOffset + 4 * 7, 2, 7);  // beyond the queues
  d.mem_write(kBar + kPciNotifyOffset + 1, 1, 0);      // not a notify register
  d.mem_write(kBar + kPciBarSize - 8, 8, ~0ull);       // an unused page
  CHECK_EQ(d.mem_read(kBar + kPciBarSize - 8, 8), 0u);
  CHECK_EQ(d.mem_read(kBar + kPciIsrOffset + 1, 1), 0u);
  // MSI-X: beyond the table, misaligned or narrow accesses; the PBA is read-only.
  d.mem_write(d.msix_table() + 16 * 2, 4, 1);
  d.mem_write(d.msix_table() + 2, 4, 0xffffffff);
  d.mem_write(d.msix_table() + 12, 1, 0);
  CHECK_EQ(d.mem_read(d.msix_table() + 12, 4), 1u);  // still masked
  CHECK_EQ(d.mem_read(d.msix_table() + 12, 2), 0u);
  d.mem_write(d.msix_table() + 12, 4, 0xfffffffe);  // reserved control bits do not stick
  CHECK_EQ(d.mem_read(d.msix_table() + 12, 4), 0u);
  d.mem_write(d.msix_pba(), 8, ~0ull);
  CHECK_EQ(d.pba(), 0u);
  // A bad queue size: NEEDS_RESET at enable; a driver reset recovers.
  for (uint32_t bad : {100u, 512u, 0u}) {
    TestRing r(rig.mem, 8);
    CHECK(d.negotiate());
    r.size = bad;
    d.setup_queue(0, r);
    CHECK_EQ(d.common(kPciQueueEnable, 2), 0u);
    CHECK((d.status() & kStatusNeedsReset) != 0);
    CHECK(rig.f.last_error().find("bad queue size") != std::string::npos);
  }
  d.set_status(0);
  CHECK_EQ(d.status(), 0u);
  d.set_common(kPciQueueSelect, 2, 0);
  CHECK_EQ(d.common(kPciQueueSize, 2), 256u);  // back to the maximum
}

TEST(virtio_pci_resets_by_status_and_by_machine) {
  RngRig rig;
  PciDriver& d = rig.d;
  TestRing r(rig.mem, 16);
  d.set_vector(0, kMsiAddress, 7, false);
  CHECK(d.negotiate());
  d.setup_queue(0, r, 0);
  d.set_common(kPciConfigMsixVector, 2, 1);
  d.driver_ok();
  rig.request(r, 0);
  CHECK(rig.intx.level);
  // Status 0: queues, vectors and ISR reset; the line drops; the BAR and table stay.
  d.set_status(0);
  CHECK(!rig.intx.level);
  CHECK_EQ(d.isr(), 0u);
  CHECK_EQ(d.common(kPciQueueEnable, 2), 0u);
  CHECK_EQ(d.common(kPciQueueSize, 2), 256u);
  CHECK_EQ(d.common(kPciQueueMsixVector, 2), kPciNoVector);
  CHECK_EQ(d.common(kPciConfigMsixVector, 2), kPciNoVector);
  CHECK_EQ(d.mem_read(d.msix_table() + 8, 4), 7u);
  // Machine reset: the BAR is unplaced, MSI-X off, the table masked and cleared.
  d.set_msix_control(kMsixControlEnable);
  CHECK(d.negotiate());
  d.setup_queue(0, r, 0);
  rig.f.reset();
  CHECK(!rig.f.bar_mapping(0));
  CHECK(!rig.f.msix_enabled());
  CHECK_EQ(rig.f.status(), 0u);
  d.place_bar(kBar);
  CHECK_EQ(d.mem_read(d.msix_table() + 8, 4), 0u);
  CHECK_EQ(d.mem_read(d.msix_table() + 12, 4), 1u);
  CHECK_EQ(d.common(kPciQueueEnable, 2), 0u);
}

TEST(virtio_pci_blk_reads_and_writes_a_raw_image) {
  rvh::TempDir dir;
  const std::string path = dir.file("disk.img");
  disk::CreateOptions co;
  co.format = disk::Format::kRaw;
  co.size = 1 << 20;
  disk::create_disk(path, co);
  vmm::GuestMemory mem(4 << 20);
  RecordingMsi msi;
  VirtioPci f(mem, std::make_shared<VirtioBlk>(disk::open_disk(path), "pci-serial"), msi);
  PciDriver d(f);
  d.place_bar(kBar);
  CHECK_EQ(d.cfg(0x00, 4), 0x10421af4u);
  CHECK_EQ(d.cfg(0x09, 3), 0x010000u);
  // capacity (u64 in 512-byte sectors) through DEVICE_CFG, as OVMF reads it: two halves.
  CHECK_EQ(d.mem_read(d.addr(kPciCapDevice), 4), 2048u);
  CHECK_EQ(d.mem_read(d.addr(kPciCapDevice, 4), 4), 0u);
  CHECK_EQ(d.mem_read(d.addr(kPciCapDevice, 0x800), 4), 0u);  // beyond the config: zeros
  d.set_vector(0, kMsiAddress, 0x30, false);
  d.set_msix_control(kMsixControlEnable);
  CHECK(d.negotiate());
  d.set_common(kPciQueueSelect, 2, 0);
  CHECK_EQ(d.common(kPciQueueSize, 2), uint64_t{VirtioBlk::kQueueSize});
  TestRing r(mem, VirtioBlk::kQueueSize, 0x10000);
  d.setup_queue(0, r, 0);
  d.driver_ok();
  // Write sector 3, then read it back into another buffer.
  auto request = [&](uint16_t i, uint32_t type, uint64_t data) {
    const uint64_t hdr = 0x100000 + 16 * i, status = 0x110000 + i;
    mem.write_obj<uint32_t>(hdr, type);
    mem.write_obj<uint32_t>(hdr + 4, 0);
    mem.write_obj<uint64_t>(hdr + 8, 3);
    mem.write_obj<uint8_t>(status, 0xff);
    const uint16_t desc = static_cast<uint16_t>(3 * i);
    r.set_desc(desc, hdr, 16, kDescNext, desc + 1);
    r.set_desc(desc + 1, data, 512, (type == kBlkTypeIn ? kDescWrite : 0) | kDescNext, desc + 2);
    r.set_desc(desc + 2, status, 1, kDescWrite);
    r.offer(desc);
    d.notify(0);
  };
  for (uint32_t k = 0; k < 512; ++k) mem.write_obj<uint8_t>(0x200000 + k, static_cast<uint8_t>(k * 7));
  request(0, kBlkTypeOut, 0x200000);
  for (int spin = 0; spin < 2000 && r.used_idx() < 1; ++spin) {
    f.sync();
    usleep(1000);
  }
  request(1, kBlkTypeIn, 0x300000);
  for (int spin = 0; spin < 2000 && r.used_idx() < 2; ++spin) {
    f.sync();
    usleep(1000);
  }
  CHECK_EQ(r.used_idx(), 2);
  CHECK_EQ(mem.read_obj<uint8_t>(0x110000), kBlkStatusOk);
  CHECK_EQ(mem.read_obj<uint8_t>(0x110001), kBlkStatusOk);
  std::vector<uint8_t> a(512), b(512);
  mem.read(0x200000, a);
  mem.read(0x300000, b);
  CHECK(a == b);
  CHECK(msi.count_of(0x30) >= 1);
  CHECK_EQ(f.status() & kStatusNeedsReset, 0u);
}
