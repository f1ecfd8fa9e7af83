#include <memory>
#include <vector>

#include "devices/pci/pci_function.h"
#include "tests/check.h"
#include "tests/pci_helpers.h"
#include "tests/state_helpers.h"

using berth::devices::pci::BarKind;
using berth::devices::pci::PciFunction;
using berth::test::pci::cfg_read;
using berth::test::pci::cfg_write;
using berth::test::pci::FakeIrq;
using namespace berth::test::state_bytes;

namespace {

PciFunction::Identity test_identity() {
  PciFunction::Identity id;
  id.vendor_id = 0x1af4;
  id.device_id = 0x1041;
  id.revision = 0x01;
  id.class_code = 0x020000;
  id.subsystem_vendor_id = 0x1af4;
  id.subsystem_id = 0x0001;
  id.interrupt_pin = 1;
  return id;
}

// A function that records capability and register writes.
class Recorder : public PciFunction {
 public:
  Recorder() : PciFunction(test_identity()) {}
  using PciFunction::set_device_owned;
  struct Write {
    uint8_t cap;
    uint32_t offset, size;
  };
  std::vector<Write> cap_writes;
  std::vector<Write> reg_writes;

 protected:
  void on_capability_write(uint8_t cap_offset, uint8_t, uint32_t offset_in_cap, uint32_t size) override {
    cap_writes.push_back({cap_offset, offset_in_cap, size});
  }
  void on_config_write(uint32_t offset, uint32_t size) override { reg_writes.push_back({0, offset, size}); }
};

}  // namespace

TEST(pci_function_identity_is_read_only) {
  PciFunction f(test_identity());
  CHECK_EQ(cfg_read(f, 0x00, 4), 0x10411af4u);
  CHECK_EQ(cfg_read(f, 0x08, 4), 0x02000001u);
  CHECK_EQ(cfg_read(f, 0x2c, 4), 0x00011af4u);
  CHECK_EQ(cfg_read(f, 0x3d, 1), 1u);
  CHECK_EQ(cfg_read(f, 0x0e, 1), 0u);
  for (uint32_t off : {0x00u, 0x08u, 0x0eu, 0x2cu, 0x3du, 0x30u, 0x34u}) cfg_write(f, off, 1, 0xff);
  cfg_write(f, 0x00, 4, 0);
  cfg_write(f, 0x08, 4, 0xffffffff);
  CHECK_EQ(cfg_read(f, 0x00, 4), 0x10411af4u);
  CHECK_EQ(cfg_read(f, 0x08, 4), 0x02000001u);
  CHECK_EQ(cfg_read(f, 0x0e, 1), 0u);
  CHECK_EQ(cfg_read(f, 0x2c, 4), 0x00011af4u);
  CHECK_EQ(cfg_read(f, 0x30, 4), 0u);  // no expansion ROM
  CHECK_EQ(cfg_read(f, 0x3d, 1), 1u);
  f.set_multi_function(true);
  CHECK_EQ(cfg_read(f, 0x0e, 1), 0x80u);
  // Storage registers.
  cfg_write(f, 0x0c, 2, 0x4010);
  cfg_write(f, 0x3c, 1, 0x0b);
  CHECK_EQ(cfg_read(f, 0x0c, 2), 0x4010u);
  CHECK_EQ(cfg_read(f, 0x3c, 1), 0x0bu);
  // Extended space and past-the-end bytes read 0 and ignore writes.
  cfg_write(f, 0x100, 4, 0x12345678);
  CHECK_EQ(cfg_read(f, 0x100, 4), 0u);
  CHECK_EQ(cfg_read(f, 0xffc, 4), 0u);
}

TEST(pci_function_command_and_status_masks) {
  PciFunction f(test_identity());
  cfg_write(f, 0x04, 4, 0xffffffff);  // status write-1-to-clear: nothing set, nothing happens
  CHECK_EQ(cfg_read(f, 0x04, 2), 0x0547u);
  CHECK_EQ(cfg_read(f, 0x06, 2), 0u);
  f.set_config_value(0x06, 2, 0xf900);  // the device reports every error
  CHECK_EQ(cfg_read(f, 0x06, 2), 0xf900u);
  cfg_write(f, 0x06, 2, 0x2100);  // clears received master abort and data parity
  CHECK_EQ(cfg_read(f, 0x06, 2), 0xd800u);
  cfg_write(f, 0x04, 2, 0);  // a command write with status bytes untouched
  CHECK_EQ(cfg_read(f, 0x06, 2), 0xd800u);
  cfg_write(f, 0x07, 1, 0xff);
  CHECK_EQ(cfg_read(f, 0x06, 2), 0u);
}

TEST(pci_function_bar_sizing) {
  PciFunction f(test_identity());
  f.declare_bar(0, BarKind::kIo, 0x20);
  f.declare_bar(1, BarKind::kMem32, 0x1000);
  f.declare_bar(2, BarKind::kMem64, 0x4000, true);
  f.declare_bar(4, BarKind::kMem64, 0x200000000ull);
  CHECK_EQ(cfg_read(f, 0x10, 4), 0x1u);
  CHECK_EQ(cfg_read(f, 0x14, 4), 0x0u);
  CHECK_EQ(cfg_read(f, 0x18, 4), 0xcu);
  CHECK_EQ(cfg_read(f, 0x20, 4), 0x4u);
  for (uint32_t bar = 0; bar < 6; ++bar) cfg_write(f, 0x10 + 4 * bar, 4, 0xffffffff);
  CHECK_EQ(cfg_read(f, 0x10, 4), 0x0000ffe1u);  // I/O: 16 address bits
  CHECK_EQ(cfg_read(f, 0x14, 4), 0xfffff000u);
  CHECK_EQ(cfg_read(f, 0x18, 4), 0xffffc00cu);
  CHECK_EQ(cfg_read(f, 0x1c, 4), 0xffffffffu);
  CHECK_EQ(cfg_read(f, 0x20, 4), 0x00000004u);  // 8 GiB: no low address bits
  CHECK_EQ(cfg_read(f, 0x24, 4), 0xfffffffeu);
  CHECK_EQ(cfg_read(f, 0x28, 4), 0u);  // undeclared
  // Unused BARs and the upper halves of 64-bit BARs have no mapping.
  CHECK(!f.bar_mapping(3));
  CHECK(!f.bar_mapping(5));
  CHECK(!f.bar_mapping(6));
}

TEST(pci_function_bar_mapping_follows_command_decode) {
  PciFunction f(test_identity());
  f.declare_bar(0, BarKind::kIo, 0x20);
  f.declare_bar(1, BarKind::kMem32, 0x1000);
  f.declare_bar(2, BarKind::kMem64, 0x4000, true);
  cfg_write(f, 0x10, 4, 0xc041);
  cfg_write(f, 0x14, 4, 0xc0001234);
  cfg_write(f, 0x18, 4, 0x0000c000);
  cfg_write(f, 0x1c, 4, 0x00000008);
  CHECK(!f.bar_mapping(0));  // decoding off
  CHECK(!f.bar_mapping(1));
  cfg_write(f, 0x04, 2, 0x0001);
  auto io = f.bar_mapping(0);
  CHECK(io && io->kind == BarKind::kIo);
  CHECK_EQ(io->address, 0xc040u);
  CHECK_EQ(io->size, 0x20u);
  CHECK(!f.bar_mapping(1));
  cfg_write(f, 0x04, 2, 0x0002);
  CHECK(!f.bar_mapping(0));
  auto m32 = f.bar_mapping(1);
  CHECK(m32 && m32->kind == BarKind::kMem32);
  CHECK_EQ(m32->address, 0xc0001000u);
  auto m64 = f.bar_mapping(2);
  CHECK(m64 && m64->kind == BarKind::kMem64);
  CHECK_EQ(m64->address, 0x80000c000ull);
  CHECK_EQ(m64->size, 0x4000u);
  cfg_write(f, 0x14, 4, 0);  // address 0: unplaced
  CHECK(!f.bar_mapping(1));
  cfg_write(f, 0x04, 2, 0x0001);
  cfg_write(f, 0x10, 4, 0xffffffe1);  // only 16 address bits: the last 32 ports
  CHECK(f.bar_mapping(0) && f.bar_mapping(0)->address == 0xffe0u);
  cfg_write(f, 0x04, 2, 0x0002);
  cfg_write(f, 0x18, 4, 0xffffc000);
  cfg_write(f, 0x1c, 4, 0xffffffff);  // the last 16 KiB of the 64-bit space
  CHECK(!f.bar_mapping(2));
}

TEST(pci_function_expansion_rom_sizing_and_decode) {
  PciFunction f(test_identity());
  f.declare_expansion_rom(0x8000);
  CHECK_EQ(cfg_read(f, 0x30, 4), 0u);
  cfg_write(f, 0x30, 4, 0xfffffffe);  // SeaBIOS's sizing write: all but the enable bit
  CHECK_EQ(cfg_read(f, 0x30, 4), 0xffff8000u);
  cfg_write(f, 0x30, 4, 0xc0012345);  // address bits below the size are not kept
  CHECK_EQ(cfg_read(f, 0x30, 4), 0xc0010001u);
  CHECK(!f.bar_mapping(berth::devices::pci::kExpansionRomBar));  // memory decoding off
  cfg_write(f, 0x04, 2, 0x0002);
  auto rom = f.bar_mapping(berth::devices::pci::kExpansionRomBar);
  CHECK(rom && rom->kind == BarKind::kMem32);
  CHECK_EQ(rom->address, 0xc0010000u);
  CHECK_EQ(rom->size, 0x8000u);
  cfg_write(f, 0x30, 4, 0xc0010000);  // enable bit clear: not decoded
  CHECK(!f.bar_mapping(berth::devices::pci::kExpansionRomBar));
  cfg_write(f, 0x30, 4, 0x00000001);  // enabled but unplaced
  CHECK(!f.bar_mapping(berth::devices::pci::kExpansionRomBar));
  f.reset();
  CHECK_EQ(cfg_read(f, 0x30, 4), 0u);
  CHECK_THROWS_CODE(f.declare_expansion_rom(0x8000), "PCI_BAR_INVALID", "already declared");
  PciFunction g(test_identity());
  CHECK_THROWS_CODE(g.declare_expansion_rom(0x400), "PCI_BAR_INVALID", "not a power of two in");
  CHECK_THROWS_CODE(g.declare_expansion_rom(0x3000), "PCI_BAR_INVALID", "not a power of two in");
  CHECK(!g.bar_mapping(berth::devices::pci::kExpansionRomBar));  // none declared
}

TEST(pci_function_rejects_bad_setup) {
  PciFunction f(test_identity());
  CHECK_THROWS_CODE(f.declare_bar(6, BarKind::kMem32, 0x1000), "PCI_BAR_INVALID", "does not exist");
  CHECK_THROWS_CODE(f.declare_bar(5, BarKind::kMem64, 0x1000), "PCI_BAR_INVALID", "does not exist");
  CHECK_THROWS_CODE(f.declare_bar(0, BarKind::kMem32, 0x1800), "PCI_BAR_INVALID", "not a power of two");
  CHECK_THROWS_CODE(f.declare_bar(0, BarKind::kIo, 0x200), "PCI_BAR_INVALID", "not a power of two");
  CHECK_THROWS_CODE(f.declare_bar(0, BarKind::kMem32, 8), "PCI_BAR_INVALID", "size 0x8");
  CHECK_THROWS_CODE(f.declare_bar(0, BarKind::kIo, 16, true), "PCI_BAR_INVALID", "cannot be prefetchable");
  f.declare_bar(0, BarKind::kMem64, 0x1000);
  CHECK_THROWS_CODE(f.declare_bar(1, BarKind::kMem32, 0x1000), "PCI_BAR_INVALID", "overlaps");
  CHECK_THROWS_CODE(f.declare_bar(0, BarKind::kIo, 16), "PCI_BAR_INVALID", "overlaps");
  PciFunction::Identity id = test_identity();
  id.class_code = 0x1000000;
  CHECK_THROWS_CODE(PciFunction{id}, "PCI_FUNCTION_INVALID", "wider than 24 bits");
  id = test_identity();
  id.interrupt_pin = 5;
  CHECK_THROWS_CODE(PciFunction{id}, "PCI_FUNCTION_INVALID", "pin 5");
  std::vector<uint8_t> big(150);
  f.add_capability(0x09, big);
  CHECK_THROWS_CODE(f.add_capability(0x09, big), "PCI_CAPABILITY_INVALID", "does not fit");
  CHECK_THROWS_CODE(f.set_config_register(0x3c, 1, 0, 0xff), "PCI_CAPABILITY_INVALID", "outside 0x40..0xff");
  CHECK_THROWS_CODE(f.set_config_register(0x50, 1, 0, 0xff), "PCI_CAPABILITY_INVALID", "overlaps");
}

TEST(pci_function_capability_chain_and_hooks) {
  Recorder f;
  CHECK_EQ(cfg_read(f, 0x06, 2) & 0x10, 0u);
  CHECK_EQ(cfg_read(f, 0x34, 1), 0u);
  f.set_config_register(0x40, 4, 0x11223344, 0x0000ffff);
  const uint8_t body_a[] = {0x05, 0x00, 0xaa};
  const uint8_t mask_a[] = {0x00, 0xc0};
  const uint8_t a = f.add_capability(0x11, body_a, mask_a);
  const uint8_t body_b[] = {1, 2, 3, 4, 5, 6};
  const uint8_t b = f.add_capability(0x09, body_b);
  CHECK_EQ(a, 0x44);
  CHECK_EQ(b, 0x4c);  // dword aligned after a's 5 bytes
  CHECK_EQ(cfg_read(f, 0x06, 2) & 0x10, 0x10u);
  CHECK_EQ(cfg_read(f, 0x34, 1), 0x44u);
  CHECK_EQ(cfg_read(f, 0x44, 4), 0x00054c11u);  // id, next -> 0x4c, body
  CHECK_EQ(cfg_read(f, 0x48, 4), 0x000000aau);
  CHECK_EQ(cfg_read(f, 0x4c, 4), 0x02010009u);  // last: next 0
  cfg_write(f, 0x44, 4, 0xffffffff);             // only body byte 1's top two bits
  CHECK_EQ(cfg_read(f, 0x44, 4), 0xc0054c11u);
  cfg_write(f, 0x4c, 4, 0xffffffff);
  CHECK_EQ(cfg_read(f, 0x4c, 4), 0x02010009u);
  CHECK_EQ(f.cap_writes.size(), 2u);
  CHECK_EQ(f.cap_writes[0].cap, a);
  CHECK_EQ(f.cap_writes[0].offset, 0u);
  CHECK_EQ(f.cap_writes[0].size, 4u);
  CHECK_EQ(f.cap_writes[1].cap, b);
  // A dword write covering a's last byte and the gap after it: the hook sees that byte.
  cfg_write(f, 0x48, 4, 0);
  CHECK_EQ(f.cap_writes.size(), 3u);
  CHECK_EQ(f.cap_writes[2].cap, a);
  CHECK_EQ(f.cap_writes[2].offset, 4u);
  CHECK_EQ(f.cap_writes[2].size, 1u);
  CHECK(f.reg_writes.empty());
  cfg_write(f, 0x40, 4, 0xffffffff);
  CHECK_EQ(cfg_read(f, 0x40, 4), 0x1122ffffu);
  CHECK_EQ(f.reg_writes.size(), 1u);
  f.reset();
  CHECK_EQ(cfg_read(f, 0x40, 4), 0x11223344u);
  CHECK_EQ(cfg_read(f, 0x44, 4), 0x00054c11u);
}

TEST(pci_function_intx_and_interrupt_disable) {
  PciFunction f(test_identity());
  FakeIrq irq;
  f.connect_intx(&irq);
  CHECK(!irq.level);
  f.set_intx(true);
  CHECK(irq.level);
  CHECK_EQ(cfg_read(f, 0x06, 2) & 0x08, 0x08u);
  cfg_write(f, 0x04, 2, 0x0400);  // interrupt disable: the line drops, status still shows it
  CHECK(!irq.level);
  CHECK_EQ(cfg_read(f, 0x06, 2) & 0x08, 0x08u);
  cfg_write(f, 0x04, 2, 0x0000);
  CHECK(irq.level);
  f.set_intx(false);
  CHECK(!irq.level);
  CHECK_EQ(cfg_read(f, 0x06, 2) & 0x08, 0u);
  cfg_write(f, 0x06, 2, 0x0008);  // status bit 3 is not write-1-to-clear
  f.set_intx(true);
  cfg_write(f, 0x06, 2, 0xffff);
  CHECK_EQ(cfg_read(f, 0x06, 2) & 0x08, 0x08u);
  // reset() clears interrupt disable but keeps the device's level.
  cfg_write(f, 0x04, 2, 0x0400);
  CHECK(!irq.level);
  f.reset();
  CHECK(irq.level);
  size_t changes = irq.changes.size();
  f.set_intx(true);  // no change, no call
  CHECK_EQ(irq.changes.size(), changes);
  // A function without a pin never drives its line.
  PciFunction::Identity id = test_identity();
  id.interrupt_pin = 0;
  PciFunction none(id);
  FakeIrq quiet;
  none.connect_intx(&quiet);
  none.set_intx(true);
  CHECK(quiet.changes.empty());
}

TEST(pci_function_state_round_trip) {
  Recorder a;
  a.declare_bar(0, BarKind::kMem32, 0x1000);
  a.set_config_register(0x40, 2, 0, 0xffff);
  a.set_config_register(0x42, 1, 0, 0x00);
  a.set_device_owned(0x42, 1, 0xff);
  cfg_write(a, 0x10, 4, 0xc0002000);
  cfg_write(a, 0x04, 2, 0x0006);
  cfg_write(a, 0x3c, 1, 0x10);
  cfg_write(a, 0x40, 2, 0xbeef);
  a.set_config_value(0x42, 1, 0x5a);
  a.set_intx(true);
  auto bytes = save(a);

  Recorder b;
  b.declare_bar(0, BarKind::kMem32, 0x1000);
  b.set_config_register(0x40, 2, 0, 0xffff);
  b.set_config_register(0x42, 1, 0, 0x00);
  b.set_device_owned(0x42, 1, 0xff);
  FakeIrq irq;
  b.connect_intx(&irq);
  load(b, bytes);
  CHECK(irq.level);
  CHECK_EQ(cfg_read(b, 0x10, 4), 0xc0002000u);
  CHECK_EQ(cfg_read(b, 0x04, 2), 0x0006u);
  CHECK_EQ(cfg_read(b, 0x06, 2), 0x0008u);
  CHECK_EQ(cfg_read(b, 0x3c, 1), 0x10u);
  CHECK_EQ(cfg_read(b, 0x40, 2), 0xbeefu);
  CHECK_EQ(cfg_read(b, 0x42, 1), 0x5au);
  CHECK(b.bar_mapping(0) && b.bar_mapping(0)->address == 0xc0002000u);
  CHECK(save(b) == bytes);
}

TEST(pci_function_state_refuses_hostile_records) {
  PciFunction a(test_identity());
  a.declare_bar(1, BarKind::kMem32, 0x1000);
  cfg_write(a, 0x04, 2, 0x0002);
  cfg_write(a, 0x14, 4, 0xc0000000);
  auto good = save(a);
  const size_t body = 4 + 12 + 4 + 8;  // name length, "pci-function", version, body length

  PciFunction b(test_identity());
  b.declare_bar(1, BarKind::kMem32, 0x1000);
  CHECK_THROWS_CODE(load(b, shorten_body(good, 1)), "STATE_INVALID", "truncated at intx_level");
  CHECK_THROWS_CODE(load(b, with_version(good, 2)), "STATE_VERSION", "version 2");
  auto other = good;
  other[body + 2] = 0x42;  // device id
  CHECK_THROWS_CODE(load(b, other), "STATE_INVALID", "identity register at 0x0 is 0x10421af4");
  auto flag = good;
  flag.back() = 2;
  CHECK_THROWS_CODE(load(b, flag), "STATE_INVALID", "intx_level");
  CHECK_EQ(cfg_read(b, 0x04, 2), 0u);  // nothing changed by the refusals
  CHECK_EQ(cfg_read(b, 0x14, 4), 0u);
  // Bits the guest cannot write are not taken from the record: the BAR keeps its size.
  auto wide = good;
  wide[body + 0x14] = 0xff;  // low byte of BAR 1: size bits and type bits
  wide[body + 0x34] = 0x80;  // capability pointer
  load(b, wide);
  CHECK_EQ(cfg_read(b, 0x14, 4), 0xc0000000u);
  CHECK_EQ(cfg_read(b, 0x34, 1), 0u);
}
