// The PCI configuration paths, the BAR windows and the ACPI PM block take whatever a guest
// writes: any CF8 address, any CFC byte lane and width, any ECAM offset, any access inside
// a BAR window or the PM block must end in a read value or an ignored write, never a crash,
// an access outside a BAR handed to a function, or a changed read-only register. Saved
// records are fuzzed too: a load either throws berth::Error or leaves a consistent device.
//
// Input: a script of 8-byte operations (op, 1 byte of width/lane, 2 bytes of selector,
// 4 bytes of value); what follows the first 0xff op byte is fed to the state loaders.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/pci/host_bridge.h"
#include "devices/pci/lpc.h"
#include "devices/pci/pci_access.h"
#include "devices/pci/pci_bus.h"
#include "devices/pci/pci_function.h"
#include "devices/platform/acpi_pm.h"
#include "devices/platform/reset_control.h"

using namespace berth::devices::pci;
using berth::devices::platform::AcpiPm;
using berth::devices::platform::ResetControl;

namespace {

constexpr uint64_t kMmio64Base = 0x1000000000ull;

class Line final : public berth::vmm::IrqLine {
 public:
  void set_level(bool high) override { level = high; }
  bool level = false;
};

// BARs: I/O 64 ports, 4 KiB memory, 64 KiB 64-bit prefetchable memory; one capability with
// a writable byte; traps when handed an access outside a BAR.
class Probe final : public PciFunction {
 public:
  Probe() : PciFunction(identity()) {
    declare_bar(0, BarKind::kIo, 64);
    declare_bar(1, BarKind::kMem32, 0x1000);
    declare_bar(2, BarKind::kMem64, 0x10000, true);
    const uint8_t body[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00};
    const uint8_t writable[] = {0xff, 0x0f};
    cap_ = add_capability(0x09, body, writable);
  }
  void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override {
    check(bar, offset, data.size());
    std::memset(data.data(), static_cast<int>(offset), data.size());
  }
  void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override {
    check(bar, offset, data.size());
  }

 protected:
  void on_capability_write(uint8_t cap_offset, uint8_t, uint32_t offset_in_cap, uint32_t size) override {
    if (cap_offset != cap_ || offset_in_cap + size > 8) __builtin_trap();
  }

 private:
  static Identity identity() {
    Identity id;
    id.vendor_id = 0x1b36;
    id.device_id = 0x0005;
    id.class_code = 0xff0000;
    id.interrupt_pin = 1;
    return id;
  }
  static void check(uint32_t bar, uint64_t offset, size_t size) {
    const uint64_t sizes[] = {64, 0x1000, 0x10000};
    if (bar > 2 || size == 0 || size > 8 || offset >= sizes[bar] || size > sizes[bar] - offset) __builtin_trap();
  }
  uint8_t cap_ = 0;
};

uint32_t u32_at(const uint8_t* d) { return d[0] | d[1] << 8 | d[2] << 16 | static_cast<uint32_t>(d[3]) << 24; }

void access(berth::vmm::BusDevice& dev, uint64_t offset, uint8_t width_bits, uint32_t value, bool write) {
  static constexpr size_t kWidths[] = {1, 2, 4, 8};
  const size_t n = kWidths[width_bits & 3];
  uint8_t buf[8];
  for (size_t i = 0; i < 8; ++i) buf[i] = static_cast<uint8_t>(value >> (8 * (i % 4)));
  if (write) {
    dev.write(offset, std::span<const uint8_t>(buf, n));
  } else {
    dev.read(offset, std::span<uint8_t>(buf, n));
  }
}

template <typename Device>
void try_load(Device& d, std::span<const uint8_t> bytes) {
  try {
    berth::state::Reader r(bytes, "fuzz");
    d.load_state(r);
  } catch (const berth::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Line lines[kIntxGsiCount];
  auto bus = std::make_shared<PciBus>([&](uint32_t gsi) { return &lines[gsi - kIntxFirstGsi]; });
  auto mch = std::make_shared<HostBridge>();
  auto lpc = std::make_shared<LpcBridge>();
  auto probe = std::make_shared<Probe>();
  auto probe2 = std::make_shared<Probe>();
  bus->add(kHostBridgeSlot, 0, mch);
  bus->add(kLpcSlot, 0, lpc);
  bus->add(3, 0, probe);
  bus->add(3, 1, probe2);
  int resets = 0, power_offs = 0;
  auto rcr = std::make_shared<ResetControl>([&] { ++resets; });
  ConfigPorts ports(bus, rcr);
  Ecam ecam(bus);
  BarWindow io(bus, BarSpace::kIo, kIoWindowBase);
  BarWindow mmio32(bus, BarSpace::kMemory, kMmio32WindowBase);
  BarWindow mmio64(bus, BarSpace::kMemory, kMmio64Base);
  Line sci;
  uint64_t now = 0;
  AcpiPm pm(sci, [&] { ++power_offs; }, [&] { return now; });

  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint8_t* d = data + i;
    const uint8_t op = d[0];
    if (op == 0xff) break;
    const bool write = op & 0x80;
    const uint16_t sel = static_cast<uint16_t>(d[2] | d[3] << 8);
    const uint32_t value = u32_at(d + 4);
    now += d[1] * 1000ull;
    switch (op & 0x0f) {
      case 0: access(ports, 0, 2, value | 0x80000000u, true); break;  // an enabled address
      case 1: access(ports, sel & 7, d[1], value, write); break;
      case 2: access(ports, 4 + (sel & 3), d[1], value, write); break;
      case 3: {
        // Mostly bus 0 and a populated slot; sometimes anything in the 256 MiB.
        static constexpr uint64_t kSlots[] = {0, 3, kLpcSlot, 5};
        const uint64_t off = (op & 0x40) ? (uint64_t{value} & (kEcamSize - 1))
                                         : kSlots[sel >> 12 & 3] << 15 | uint64_t{sel >> 11 & 1u} << 12 | (sel & 0x7ffu);
        access(ecam, off, d[1], value, write);
        break;
      }
      case 4: access(io, sel, d[1], value, write); break;
      case 5: access(mmio32, uint64_t{sel} << 4 | (value & 0xf), d[1], value, write); break;
      case 6: access(mmio64, uint64_t{sel} << 4 | (value & 0xf), d[1], value, write); break;
      case 7: access(pm, sel & 0xff, d[1], value, write); break;
      case 8: probe->set_intx(value & 1); break;
      case 9: pm.press_power_button(); pm.raise_gpe(value & 0x7f); break;
      case 10: bus->reset(); pm.reset(); rcr->reset(); break;
      case 11: access(*rcr, sel & 1, d[1], value, write); break;
      default: break;
    }
    // Identity registers never change, whatever was written.
    if (mch->config_value(0, 4) != 0x29c08086u || lpc->config_value(0, 4) != 0x29188086u ||
        probe->config_value(0, 4) != 0x00051b36u || probe->config_value(0x3d, 1) != 1) {
      __builtin_trap();
    }
    for (const DecodedBar& b : bus->decoded_bars()) {
      const uint64_t sz = b.mapping.size;
      if (sz == 0 || (sz & (sz - 1)) || b.mapping.address % sz || b.mapping.address == 0) __builtin_trap();
    }
  }
  // The rest of the input as saved records: each loader refuses or loads something usable.
  if (i + 8 <= size) {
    auto rest = std::span<const uint8_t>(data + i + 8, size - i - 8);
    try_load(*probe, rest);
    try_load(*mch, rest);
    try_load(*lpc, rest);
    try_load(pm, rest);
    try_load(*rcr, rest);
    try_load(*bus, rest);
    bus->refresh();
    uint8_t b[4];
    ports.read(4, b);
    mmio32.read(0, b);
    if (probe->config_value(0, 4) != 0x00051b36u) __builtin_trap();
  }
  return 0;
}
