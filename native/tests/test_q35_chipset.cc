// The Q35 host bridge and ICH9 LPC bridge, driven the way OVMF 2022.11 and SeaBIOS 1.16
// program them (sequences taken from QEMU traces of both firmwares).
#include <array>
#include <memory>
#include <vector>

#include "devices/pci/host_bridge.h"
#include "devices/pci/lpc.h"
#include "devices/pci/pci_access.h"
#include "devices/pci/pci_bus.h"
#include "tests/check.h"
#include "tests/pci_helpers.h"
#include "tests/state_helpers.h"

using namespace berth::devices::pci;
using berth::test::pci::bus_read;
using berth::test::pci::bus_write;
using namespace berth::test::state_bytes;

namespace {

struct Chipset {
  std::shared_ptr<PciBus> bus = std::make_shared<PciBus>();
  std::shared_ptr<HostBridge> mch = std::make_shared<HostBridge>();
  std::shared_ptr<LpcBridge> lpc = std::make_shared<LpcBridge>();
  ConfigPorts ports{bus, nullptr};
  Ecam ecam{bus};
  Chipset() {
    bus->add(kHostBridgeSlot, 0, mch);
    bus->add(kLpcSlot, 0, lpc);
  }
  // SeaBIOS uses CF8/CFC before it enables ECAM.
  uint32_t io_read(uint32_t slot, uint32_t reg, uint32_t size = 4) {
    bus_write(ports, 0, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
    return static_cast<uint32_t>(bus_read(ports, 4 + (reg & 3), size));
  }
  void io_write(uint32_t slot, uint32_t reg, uint32_t size, uint32_t value) {
    bus_write(ports, 0, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
    bus_write(ports, 4 + (reg & 3), size, value);
  }
  // OVMF uses ECAM.
  uint32_t mm_read(uint32_t slot, uint32_t reg, uint32_t size = 4) {
    return static_cast<uint32_t>(bus_read(ecam, slot << 15 | reg, size));
  }
  void mm_write(uint32_t slot, uint32_t reg, uint32_t size, uint32_t value) {
    bus_write(ecam, slot << 15 | reg, size, value);
  }
};

}  // namespace

TEST(q35_host_bridge_identity) {
  Chipset c;
  CHECK_EQ(c.io_read(0, 0x00), 0x29c08086u);
  CHECK_EQ(c.io_read(0, 0x02, 2), 0x29c0u);  // OVMF's platform check
  CHECK_EQ(c.io_read(0, 0x08), 0x06000000u);
  CHECK_EQ(c.io_read(0, 0x0e, 1), 0u);
  CHECK_EQ(c.io_read(0, 0x3d, 1), 0u);  // no interrupt pin
  CHECK(c.bus->decoded_bars().empty());
}

TEST(q35_host_bridge_pciexbar_as_the_firmwares_write_it) {
  Chipset c;
  CHECK_EQ(c.mch->pciexbar(), kEcamBase);  // power-on: the base, not enabled
  c.io_write(0, 0x60, 4, 0);
  c.io_write(0, 0x64, 4, 0);
  c.io_write(0, 0x60, 4, 0xb0000001);
  CHECK_EQ(c.mch->pciexbar(), 0xb0000001u);
  CHECK_EQ(c.mm_read(0, 0x60), 0xb0000001u);
  CHECK_EQ(c.mm_read(0, 0x64), 0u);
  // Only the base, length and enable bits are kept.
  c.mm_write(0, 0x60, 4, 0xffffffff);
  c.mm_write(0, 0x64, 4, 0xffffffff);
  CHECK_EQ(c.mch->pciexbar(), 0xffc000007ull);
  // The ECAM stays where it is whatever the guest wrote.
  c.mm_write(0, 0x60, 4, 0xe0000001);
  CHECK_EQ(c.mm_read(0, 0x00), 0x29c08086u);
}

TEST(q35_host_bridge_pam_as_seabios_writes_it) {
  Chipset c;
  std::vector<std::array<uint8_t, HostBridge::kPamCount>> seen;
  c.mch->set_pam_listener([&](const std::array<uint8_t, HostBridge::kPamCount>& pam) { seen.push_back(pam); });
  CHECK_EQ(c.io_read(0, 0x90), 0u);  // PAM0 bit 4 clear: SeaBIOS copies itself to RAM
  c.io_write(0, 0x90, 4, 0x33333330);
  c.io_write(0, 0x94, 4, 0x00333333);
  CHECK_EQ(c.io_read(0, 0x90), 0x33333330u);
  CHECK_EQ(c.io_read(0, 0x94), 0x00333333u);
  c.io_write(0, 0x90, 4, 0x11111110);
  c.io_write(0, 0x94, 4, 0x00331111);
  CHECK_EQ(c.io_read(0, 0x90), 0x11111110u);
  CHECK_EQ(c.io_read(0, 0x94), 0x00331111u);
  CHECK_EQ(seen.size(), 4u);
  CHECK_EQ(seen.back()[0], 0x10);
  CHECK_EQ(seen.back()[6], 0x33);
  // Reserved PAM bits and the byte after PAM6 keep their values.
  c.io_write(0, 0x90, 4, 0xffffffff);
  c.io_write(0, 0x94, 4, 0xffffffff);
  CHECK_EQ(c.io_read(0, 0x90), 0x33333330u);
  CHECK_EQ(c.io_read(0, 0x94), 0x00333333u);
  // A write elsewhere does not call the listener.
  c.io_write(0, 0x3c, 1, 0x0b);
  CHECK_EQ(seen.size(), 6u);
  c.bus->reset();
  CHECK_EQ(c.io_read(0, 0x90), 0u);
}

TEST(q35_host_bridge_smram_registers_are_storage) {
  Chipset c;
  CHECK_EQ(c.io_read(0, 0x9d, 1), 0x02u);
  CHECK_EQ(c.io_read(0, 0x9e, 1), 0x38u);
  c.io_write(0, 0x9d, 1, 0xff);
  CHECK_EQ(c.io_read(0, 0x9d, 1), 0x7au);  // D_OPEN, D_CLS, D_LCK, G_SMRAME; C_BASE_SEG fixed
  c.io_write(0, 0x9e, 1, 0xff);
  CHECK_EQ(c.io_read(0, 0x9e, 1), 0xbfu);
  // OVMF's extended-TSEG query reads back unchanged: no extended TSEG.
  c.mm_write(0, 0x50, 2, 0xffff);
  CHECK_EQ(c.mm_read(0, 0x50, 2), 0xffffu);
  // The default-SMBASE control register is not implemented.
  c.mm_write(0, 0x9c, 1, 0xff);
  CHECK_EQ(c.mm_read(0, 0x9c, 1), 0u);
}

TEST(ich9_lpc_identity_and_command) {
  Chipset c;
  CHECK_EQ(c.mm_read(kLpcSlot, 0x00), 0x29188086u);
  CHECK_EQ(c.mm_read(kLpcSlot, 0x08), 0x06010002u);
  CHECK_EQ(c.mm_read(kLpcSlot, 0x3d, 1), 0u);
  // SioBusDxe binds only while I/O and memory decoding are on.
  c.mm_write(kLpcSlot, 0x04, 2, 0x0007);
  CHECK_EQ(c.mm_read(kLpcSlot, 0x04, 2) & 3, 3u);
}

TEST(ich9_lpc_pm_registers_as_ovmf_writes_them) {
  Chipset c;
  std::vector<std::pair<uint16_t, bool>> seen;
  c.lpc->set_pm_listener([&](uint16_t base, bool enabled) { seen.emplace_back(base, enabled); });
  CHECK_EQ(c.mm_read(kLpcSlot, 0x44, 1), 0u);  // ACPI_EN clear: OVMF programs PMBASE
  CHECK_EQ(c.mm_read(kLpcSlot, 0x40), 1u);
  const uint32_t pmba = c.mm_read(kLpcSlot, 0x40);
  c.mm_write(kLpcSlot, 0x40, 4, (pmba & ~0xff80u) | 0x600);
  c.mm_write(kLpcSlot, 0x04, 1, c.mm_read(kLpcSlot, 0x04, 1) | 1);
  c.mm_write(kLpcSlot, 0x44, 1, c.mm_read(kLpcSlot, 0x44, 1) | 0x80);
  CHECK_EQ(c.mm_read(kLpcSlot, 0x40), 0x601u);
  CHECK_EQ(c.lpc->pm_base(), 0x600);
  CHECK(c.lpc->acpi_enabled());
  CHECK_EQ(seen.size(), 2u);
  CHECK(seen[0] == std::make_pair(uint16_t{0x600}, false));
  CHECK(seen[1] == std::make_pair(uint16_t{0x600}, true));
  // Only bits 15:7 of PMBASE and 7, 2:0 of ACPI_CNTL are kept.
  c.mm_write(kLpcSlot, 0x40, 4, 0xffffffff);
  CHECK_EQ(c.mm_read(kLpcSlot, 0x40), 0xff81u);
  c.mm_write(kLpcSlot, 0x44, 1, 0xff);
  CHECK_EQ(c.mm_read(kLpcSlot, 0x44, 1), 0x87u);
  // RCBA.
  c.mm_write(kLpcSlot, 0xf0, 4, 0xfed1c001);
  CHECK_EQ(c.lpc->rcba(), 0xfed1c001u);
  c.mm_write(kLpcSlot, 0xf0, 4, 0xffffffff);
  CHECK_EQ(c.mm_read(kLpcSlot, 0xf0), 0xffffc001u);
  // GEN_PMCON_1 (SeaBIOS's SMM path would set SMI_LOCK): storage.
  c.mm_write(kLpcSlot, 0xa0, 2, 0x0010);
  CHECK_EQ(c.mm_read(kLpcSlot, 0xa0, 2), 0x0010u);
}

TEST(ich9_lpc_pirq_routes) {
  Chipset c;
  for (uint32_t reg : {0x60u, 0x61u, 0x62u, 0x63u, 0x68u, 0x69u, 0x6au, 0x6bu}) {
    CHECK_EQ(c.io_read(kLpcSlot, reg, 1), 0x80u);
  }
  const uint8_t irqs[] = {0x0a, 0x0a, 0x0b, 0x0b};
  for (uint32_t i = 0; i < 4; ++i) {
    c.io_write(kLpcSlot, 0x60 + i, 1, irqs[i]);
    c.io_write(kLpcSlot, 0x68 + i, 1, irqs[i]);
  }
  CHECK_EQ(c.io_read(kLpcSlot, 0x60), 0x0b0b0a0au);
  CHECK_EQ(c.io_read(kLpcSlot, 0x68), 0x0b0b0a0au);
  CHECK_EQ(c.lpc->pirq_route(2), 0x0b);
  CHECK_EQ(c.lpc->pirq_route(5), 0x0a);
  CHECK_EQ(c.lpc->pirq_route(8), 0x80);
  c.io_write(kLpcSlot, 0x60, 4, 0xffffffff);
  CHECK_EQ(c.io_read(kLpcSlot, 0x60), 0x8f8f8f8fu);
  CHECK_EQ(c.io_read(kLpcSlot, 0x64), 0u);  // between the two groups: nothing
  c.bus->reset();
  CHECK_EQ(c.io_read(kLpcSlot, 0x68), 0x80808080u);
}

TEST(q35_chipset_state_round_trip_and_refusals) {
  Chipset a;
  a.io_write(0, 0x60, 4, 0xb0000001);
  a.io_write(0, 0x90, 4, 0x33333330);
  a.mm_write(kLpcSlot, 0x40, 4, 0x601);
  a.mm_write(kLpcSlot, 0x68, 1, 0x0b);
  auto mch = save(*a.mch);
  auto lpc = save(*a.lpc);
  Chipset b;
  load(*b.mch, mch);
  load(*b.lpc, lpc);
  CHECK_EQ(b.mch->pciexbar(), 0xb0000001u);
  CHECK_EQ(b.io_read(0, 0x90), 0x33333330u);
  CHECK_EQ(b.lpc->pm_base(), 0x600);
  CHECK_EQ(b.lpc->pirq_route(4), 0x0b);
  CHECK(save(*b.mch) == mch);

  Chipset fresh;
  CHECK_THROWS_CODE(load(*fresh.mch, lpc), "STATE_INVALID", "expected a 'q35-host-bridge' record, found 'ich9-lpc'");
  CHECK_THROWS_CODE(load(*fresh.mch, with_version(mch, 2)), "STATE_VERSION", "version 2");
  // An LPC's configuration inside a host-bridge record: the identity does not match.
  {
    berth::state::Writer w;
    const size_t token = w.begin("q35-host-bridge", 1);
    berth::state::Reader inner(lpc, "lpc");
    auto rec = inner.record("ich9-lpc", 1);
    auto body = rec.body.bytes(lpc.size() - (4 + 8 + 4 + 8), "body");
    w.bytes(body);
    w.end(token);
    CHECK_THROWS_CODE(load(*fresh.mch, w.take()), "STATE_INVALID", "identity register at 0x0 is 0x29188086");
  }
  // Trailing bytes after the nested record are refused before anything loads.
  auto longer = mch;
  longer.push_back(0);
  const size_t len_at = 4 + 15 + 4;  // name length, "q35-host-bridge", version
  longer[len_at] = static_cast<uint8_t>(longer[len_at] + 1);
  CHECK_THROWS_CODE(load(*fresh.mch, longer), "STATE_INVALID", "1 unexpected bytes at the end");
  CHECK_EQ(fresh.mch->pciexbar(), kEcamBase);
  CHECK_EQ(fresh.io_read(0, 0x90), 0u);
}
