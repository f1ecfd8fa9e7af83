#include <atomic>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "devices/pci/pci_access.h"
#include "devices/pci/pci_bus.h"
#include "devices/pci/pci_function.h"
#include "tests/check.h"
#include "tests/pci_helpers.h"
#include "tests/state_helpers.h"

using namespace berth::devices::pci;
using berth::test::pci::bus_read;
using berth::test::pci::bus_write;
using berth::test::pci::FakeIrq;
using namespace berth::test::state_bytes;

namespace {

// A function with an I/O BAR 0 (32 ports), a 4 KiB memory BAR 1 and a 16 KiB 64-bit BAR 2
// whose registers are byte arrays.
class TestFunction : public PciFunction {
 public:
  explicit TestFunction(uint16_t device_id = 0x1000, uint8_t pin = 1) : PciFunction(identity(device_id, pin)) {
    declare_bar(0, BarKind::kIo, 0x20);
    declare_bar(1, BarKind::kMem32, 0x1000);
    declare_bar(2, BarKind::kMem64, 0x4000, true);
  }
  void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = regs[bar][(offset + i) % 64];
  }
  void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) regs[bar][(offset + i) % 64] = data[i];
    last_offset = offset;
  }
  uint8_t regs[6][64] = {};
  uint64_t last_offset = ~0ull;

 private:
  static Identity identity(uint16_t device_id, uint8_t pin) {
    Identity id;
    id.vendor_id = 0x1b36;
    id.device_id = device_id;
    id.class_code = 0xff0000;
    id.interrupt_pin = pin;
    return id;
  }
};

class FakeResetControl final : public berth::vmm::BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back(offset);
    data[0] = value;
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back(offset);
    value = data[0];
  }
  uint8_t value = 0;
  std::vector<uint64_t> reads, writes;
};

struct Rig {
  std::map<uint32_t, FakeIrq> lines;
  std::shared_ptr<PciBus> bus = std::make_shared<PciBus>([this](uint32_t gsi) { return &lines[gsi]; });
  std::shared_ptr<FakeResetControl> rcr = std::make_shared<FakeResetControl>();
  ConfigPorts ports{bus, rcr};
  Ecam ecam{bus};
  BarWindow io{bus, BarSpace::kIo, kIoWindowBase};
  BarWindow mmio32{bus, BarSpace::kMemory, kMmio32WindowBase};
  BarWindow mmio64{bus, BarSpace::kMemory, 0x1000000000ull};

  static uint32_t cf8(uint32_t slot, uint32_t fn, uint32_t reg, uint32_t bus_no = 0) {
    return 0x80000000u | bus_no << 16 | slot << 11 | fn << 8 | reg;
  }
  uint32_t cfg_read(uint32_t slot, uint32_t fn, uint32_t reg, uint32_t size = 4) {
    bus_write(ports, 0, 4, cf8(slot, fn, reg & 0xfc));
    return static_cast<uint32_t>(bus_read(ports, 4 + (reg & 3), size));
  }
  void cfg_write(uint32_t slot, uint32_t fn, uint32_t reg, uint32_t size, uint32_t value) {
    bus_write(ports, 0, 4, cf8(slot, fn, reg & 0xfc));
    bus_write(ports, 4 + (reg & 3), size, value);
  }
  static uint64_t ecam_offset(uint32_t bus_no, uint32_t slot, uint32_t fn, uint32_t reg) {
    return uint64_t{bus_no} << 20 | slot << 15 | fn << 12 | reg;
  }
};

}  // namespace

TEST(pci_bus_config_mechanism_1_byte_lanes) {
  Rig r;
  auto f = std::make_shared<TestFunction>();
  r.bus->add(3, 0, f);
  CHECK_EQ(r.cfg_read(3, 0, 0x00), 0x10001b36u);
  CHECK_EQ(r.cfg_read(3, 0, 0x00, 1), 0x36u);
  CHECK_EQ(r.cfg_read(3, 0, 0x01, 1), 0x1bu);
  CHECK_EQ(r.cfg_read(3, 0, 0x02, 2), 0x1000u);
  CHECK_EQ(r.cfg_read(3, 0, 0x03, 1), 0x10u);
  CHECK_EQ(r.cfg_read(3, 0, 0x01, 2), 0x001bu);  // lanes 1..2
  // The address register keeps only its defined bits.
  bus_write(r.ports, 0, 4, 0xffffffff);
  CHECK_EQ(bus_read(r.ports, 0, 4), 0x80fffffcu);
  // Writes through each lane: interrupt line (0x3c) byte by byte.
  r.cfg_write(3, 0, 0x3c, 1, 0x0b);
  CHECK_EQ(r.cfg_read(3, 0, 0x3c, 1), 0x0bu);
  r.cfg_write(3, 0, 0x0c, 2, 0x2010);  // cache line size + latency timer as a word
  CHECK_EQ(r.cfg_read(3, 0, 0x0c), 0x00002010u);
  r.cfg_write(3, 0, 0x0d, 1, 0x40);
  CHECK_EQ(r.cfg_read(3, 0, 0x0c), 0x00004010u);
  // A word at lane 3 crosses the dword: all-ones, ignored.
  bus_write(r.ports, 0, 4, Rig::cf8(3, 0, 0x0c));
  CHECK_EQ(bus_read(r.ports, 7, 2), 0xffffu);
  // Enable bit clear: nothing is addressed.
  bus_write(r.ports, 0, 4, 0x00001800);
  CHECK_EQ(bus_read(r.ports, 4, 4), 0xffffffffu);
  bus_write(r.ports, 4, 4, 0);
  CHECK_EQ(r.cfg_read(3, 0, 0x00), 0x10001b36u);
  // Absent functions, slots and other buses read all-ones.
  CHECK_EQ(r.cfg_read(3, 1, 0x00), 0xffffffffu);
  CHECK_EQ(r.cfg_read(4, 0, 0x00), 0xffffffffu);
  bus_write(r.ports, 0, 4, Rig::cf8(3, 0, 0, 1));
  CHECK_EQ(bus_read(r.ports, 4, 4), 0xffffffffu);
}

TEST(pci_bus_cf9_byte_goes_to_reset_control) {
  Rig r;
  r.rcr->value = 0x5a;
  CHECK_EQ(bus_read(r.ports, 1, 1), 0x5au);
  bus_write(r.ports, 1, 1, 0x06);
  CHECK_EQ(r.rcr->value, 0x06);
  CHECK_EQ(r.rcr->writes.size(), 1u);
  CHECK_EQ(r.rcr->writes[0], 0u);
  // Other narrow accesses to 0xCF8..0xCFB reach neither register.
  bus_write(r.ports, 0, 4, 0x80001800);
  bus_write(r.ports, 0, 1, 0x00);
  bus_write(r.ports, 2, 2, 0x0000);
  bus_write(r.ports, 1, 2, 0x0000);
  CHECK_EQ(bus_read(r.ports, 0, 4), 0x80001800u);
  CHECK_EQ(bus_read(r.ports, 0, 1), 0xffu);
  CHECK_EQ(bus_read(r.ports, 2, 2), 0xffffu);
  CHECK_EQ(r.rcr->writes.size(), 1u);
  // Without a reset control the byte floats.
  ConfigPorts bare(r.bus, nullptr);
  CHECK_EQ(bus_read(bare, 1, 1), 0xffu);
  bus_write(bare, 1, 1, 0x06);
}

TEST(pci_bus_ecam) {
  Rig r;
  auto f = std::make_shared<TestFunction>();
  r.bus->add(5, 2, f);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 0), 4), 0x10001b36u);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 2), 2), 0x1000u);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 0), 8), 0x0000000010001b36ull);  // + command/status
  bus_write(r.ecam, Rig::ecam_offset(0, 5, 2, 0x3c), 1, 0x0a);
  CHECK_EQ(r.cfg_read(5, 2, 0x3c, 1), 0x0au);
  // Extended space reaches the function (which has none: 0).
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 0x100), 4), 0u);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 0xffc), 4), 0u);
  // Misaligned, other buses, absent functions, past the end: all-ones.
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 3), 2), 0xffffu);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 2, 2), 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(1, 5, 2, 0), 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(255, 31, 7, 0xffc), 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.ecam, Rig::ecam_offset(0, 5, 3, 0), 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.ecam, kEcamSize, 4), 0xffffffffu);
  bus_write(r.ecam, Rig::ecam_offset(0, 5, 2, 0x3d), 2, 0xffff);  // crosses nothing but misaligned
  CHECK_EQ(r.cfg_read(5, 2, 0x3c, 1), 0x0au);
}

TEST(pci_bus_bar_decode_follows_configuration) {
  Rig r;
  int changes = 0;
  r.bus->set_bars_changed_listener([&] { ++changes; });
  auto f = std::make_shared<TestFunction>();
  r.bus->add(1, 0, f);
  CHECK(r.bus->decoded_bars().empty());
  // Sizing reads back the masks.
  r.cfg_write(1, 0, 0x14, 4, 0xffffffff);
  CHECK_EQ(r.cfg_read(1, 0, 0x14), 0xfffff000u);
  // Place all three BARs, then enable decoding.
  r.cfg_write(1, 0, 0x10, 4, 0x2000);
  r.cfg_write(1, 0, 0x14, 4, 0xc0001000);
  r.cfg_write(1, 0, 0x18, 4, 0x00004000);
  r.cfg_write(1, 0, 0x1c, 4, 0x00000010);  // 0x10_0000_4000: in the 64-bit window
  CHECK_EQ(changes, 0);
  CHECK_EQ(bus_read(r.mmio32, 0x1000, 4), 0xffffffffu);
  r.cfg_write(1, 0, 0x04, 2, 0x0003);
  CHECK_EQ(changes, 1);
  CHECK_EQ(r.bus->decoded_bars().size(), 3u);
  bus_write(r.mmio32, 0x1008, 4, 0xdeadbeef);
  CHECK_EQ(f->last_offset, 8u);
  CHECK_EQ(bus_read(r.mmio32, 0x1008, 4), 0xdeadbeefu);
  bus_write(r.io, 0x2000 - kIoWindowBase + 4, 2, 0x1234);
  CHECK_EQ(f->regs[0][4], 0x34);
  CHECK_EQ(bus_read(r.io, 0x2000 - kIoWindowBase + 4, 2), 0x1234u);
  bus_write(r.mmio64, 0x4010, 8, 0x1122334455667788ull);
  CHECK_EQ(f->regs[2][0x10], 0x88);
  CHECK_EQ(bus_read(r.mmio64, 0x4010, 8), 0x1122334455667788ull);
  auto m = r.bus->bar(1, 0, 2);
  CHECK(m && m->address == 0x1000004000ull && m->kind == BarKind::kMem64);
  // Accesses running past a BAR's end are not the BAR's.
  CHECK_EQ(bus_read(r.mmio32, 0x1ffe, 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.mmio32, 0x2000, 4), 0xffffffffu);
  // Moving the BAR moves the decode at once.
  r.cfg_write(1, 0, 0x14, 4, 0xc0008000);
  CHECK_EQ(changes, 2);
  CHECK_EQ(bus_read(r.mmio32, 0x1008, 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.mmio32, 0x8008, 4), 0xdeadbeefu);
  // Disabling memory decode drops both memory BARs but keeps I/O.
  r.cfg_write(1, 0, 0x04, 2, 0x0001);
  CHECK_EQ(changes, 3);
  CHECK_EQ(bus_read(r.mmio32, 0x8008, 4), 0xffffffffu);
  CHECK_EQ(bus_read(r.mmio64, 0x4010, 4), 0xffffffffu);
  CHECK_EQ(r.bus->decoded_bars().size(), 1u);
  CHECK(!r.bus->bar(1, 0, 1));
  // A configuration write that changes no decoding does not call the listener.
  r.cfg_write(1, 0, 0x3c, 1, 0x05);
  CHECK_EQ(changes, 3);
  // reset() puts every BAR back to unplaced.
  r.bus->reset();
  CHECK_EQ(changes, 4);
  CHECK(r.bus->decoded_bars().empty());
}

TEST(pci_bus_overlapping_bars_go_to_the_first_function) {
  Rig r;
  auto a = std::make_shared<TestFunction>(0x1000);
  auto b = std::make_shared<TestFunction>(0x1001);
  r.bus->add(2, 0, a);
  r.bus->add(1, 0, b);
  for (uint32_t slot : {1u, 2u}) {
    r.cfg_write(slot, 0, 0x14, 4, 0xc0000000);
    r.cfg_write(slot, 0, 0x04, 2, 0x0002);
  }
  bus_write(r.mmio32, 0, 1, 0x77);
  CHECK_EQ(b->regs[1][0], 0x77);
  CHECK_EQ(a->regs[1][0], 0);
}

TEST(pci_bus_multi_function_and_slots) {
  Rig r;
  auto f0 = std::make_shared<TestFunction>(0x2000, 1);
  auto f3 = std::make_shared<TestFunction>(0x2003, 2);
  r.bus->add(6, 0, f0);
  CHECK_EQ(r.cfg_read(6, 0, 0x0c) >> 16 & 0xff, 0u);
  r.bus->add(6, 3, f3);
  CHECK_EQ(r.cfg_read(6, 0, 0x0e, 1), 0x80u);
  CHECK_EQ(r.cfg_read(6, 0, 0x0c) >> 16 & 0xff, 0x80u);
  CHECK_EQ(r.cfg_read(6, 3, 0x0e, 1), 0u);
  CHECK_EQ(r.cfg_read(6, 3, 0x00), 0x20031b36u);
  CHECK(r.bus->function(6, 3) == f3);
  CHECK(r.bus->function(6, 4) == nullptr);
  CHECK(r.bus->function(40, 0) == nullptr);
  CHECK_THROWS_CODE(r.bus->add(6, 3, std::make_shared<TestFunction>()), "PCI_SLOT_IN_USE", "00:06.3 already holds");
  CHECK_THROWS_CODE(r.bus->add(32, 0, std::make_shared<TestFunction>()), "PCI_SLOT_INVALID", "32.0");
  CHECK_THROWS_CODE(r.bus->add(0, 8, std::make_shared<TestFunction>()), "PCI_SLOT_INVALID", "functions 0..7");
  CHECK_THROWS_CODE(r.bus->add(0, 0, nullptr), "PCI_SLOT_INVALID", "no device");
}

TEST(pci_bus_intx_routing_and_sharing) {
  CHECK_EQ(intx_gsi(0, 1), 16u);
  CHECK_EQ(intx_gsi(1, 1), 17u);
  CHECK_EQ(intx_gsi(3, 4), 22u);
  CHECK_EQ(intx_gsi(7, 2), 16u);
  CHECK_EQ(intx_gsi(31, 4), 18u);
  Rig r;
  auto a = std::make_shared<TestFunction>(0x1000, 1);  // slot 1 INTA -> 17
  auto b = std::make_shared<TestFunction>(0x1001, 2);  // slot 0 INTB -> 17
  auto c = std::make_shared<TestFunction>(0x1002, 4);  // slot 2 INTD -> 21
  auto none = std::make_shared<TestFunction>(0x1003, 0);
  r.bus->add(1, 0, a);
  r.bus->add(0, 1, b);
  r.bus->add(2, 0, c);
  r.bus->add(3, 0, none);
  CHECK_EQ(r.lines.size(), 2u);
  a->set_intx(true);
  CHECK(r.lines[17].level);
  b->set_intx(true);
  a->set_intx(false);
  CHECK(r.lines[17].level);  // b still asserts the shared line
  b->set_intx(false);
  CHECK(!r.lines[17].level);
  c->set_intx(true);
  CHECK(r.lines[21].level);
  // Interrupt disable in the function's command register masks it from the line.
  r.cfg_write(2, 0, 0x04, 2, 0x0400);
  CHECK(!r.lines[21].level);
  CHECK_EQ(r.cfg_read(2, 0, 0x06, 2) & 0x08, 0x08u);
  r.cfg_write(2, 0, 0x04, 2, 0x0000);
  CHECK(r.lines[21].level);
  none->set_intx(true);
  CHECK_EQ(r.lines.size(), 2u);
}

TEST(pci_bus_bar_accesses_run_alongside_config_writes) {
  Rig r;
  auto f = std::make_shared<TestFunction>();
  r.bus->add(1, 0, f);
  r.cfg_write(1, 0, 0x14, 4, 0xc0000000);
  r.cfg_write(1, 0, 0x04, 2, 0x0002);
  std::atomic<bool> stop{false};
  std::thread mover([&] {
    for (int i = 0; i < 2000; ++i) {
      r.cfg_write(1, 0, 0x14, 4, (i & 1) ? 0xc0001000 : 0xc0000000);
      r.cfg_write(1, 0, 0x04, 2, (i % 3) ? 0x0002 : 0x0000);
    }
    stop = true;
  });
  // Every read answers from one decode map or another: the BAR's registers (0) or nothing
  // (all-ones), never anything else. The last map has the BAR at 0xc0001000, decoding.
  uint64_t hits = 0, misses = 0, reads = 0;
  while (!stop || reads < 100) {
    for (uint64_t at : {0x0ull, 0x1000ull}) {
      uint8_t b[4];
      r.mmio32.read(at, b);
      if (b[0] == 0) ++hits;
      else if (b[0] == 0xff) ++misses;
      ++reads;
    }
  }
  mover.join();
  CHECK(hits > 0);
  CHECK_EQ(hits + misses, reads);
  CHECK_EQ(bus_read(r.mmio32, 0x1000, 4), 0u);
  CHECK_EQ(bus_read(r.mmio32, 0x0, 4), 0xffffffffu);
}

TEST(pci_bus_state) {
  Rig a;
  bus_write(a.ports, 0, 4, 0x80001810);
  auto bytes = save(*a.bus);
  Rig b;
  load(*b.bus, bytes);
  CHECK_EQ(bus_read(b.ports, 0, 4), 0x80001810u);
  CHECK_THROWS_CODE(load(*b.bus, with_version(bytes, 2)), "STATE_VERSION", "version 2");
  CHECK_THROWS_CODE(load(*b.bus, shorten_body(bytes, 1)), "STATE_INVALID", "config_address");
  auto bad = bytes;
  bad[bad.size() - 1] = 0x7f;  // reserved bits 30:24
  CHECK_THROWS_CODE(load(*b.bus, bad), "STATE_INVALID", "reserved bits");
  CHECK_EQ(bus_read(b.ports, 0, 4), 0x80001810u);
  // refresh() rebuilds the decode map from loaded function state.
  auto f = std::make_shared<TestFunction>();
  auto g = std::make_shared<TestFunction>();
  a.bus->add(1, 0, f);
  b.bus->add(1, 0, g);
  a.cfg_write(1, 0, 0x14, 4, 0xc0000000);
  a.cfg_write(1, 0, 0x04, 2, 0x0002);
  load(*g, save(*f));
  CHECK(b.bus->decoded_bars().empty());
  b.bus->refresh();
  CHECK(b.bus->bar(1, 0, 1) && b.bus->bar(1, 0, 1)->address == 0xc0000000u);
}
