// The bochs display takes whatever a guest writes: any configuration write (BARs moved,
// decoding switched, the ROM BAR sized and enabled), any access of any width anywhere in
// its BARs through the bus, and reads of the picture while the registers change. Each
// must end in a read value or an ignored write, never a crash; the mode must always lie
// inside video memory, changed rectangles inside the mode, and the framebuffer listener
// must always have been told the address the BAR decodes at. Saved records are fuzzed
// too: a load either throws berth::Error or leaves a consistent device.
//
// Input: a script of 8-byte operations (op, width, 2 bytes of selector, 4 bytes of value);
// what follows the first 0xff op byte is fed to the state loader.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/display/bochs_display.h"
#include "devices/display/framebuffer.h"
#include "devices/pci/pci_bus.h"

using namespace berth::devices::display;
using namespace berth::devices::pci;

namespace {

constexpr uint32_t kSlot = 2;

uint32_t u32_at(const uint8_t* d) { return d[0] | d[1] << 8 | d[2] << 16 | static_cast<uint32_t>(d[3]) << 24; }

void check_consistent(BochsDisplay& d, Framebuffer& fb, const std::optional<uint64_t>& told) {
  const DisplayMode m = d.mode();
  if (m.enabled) {
    if (m.bpp != 16 && m.bpp != 32) __builtin_trap();
    if (m.width < kMinModeSide || m.height < kMinModeSide) __builtin_trap();
    if (m.offset + m.size() > d.video_memory().size()) __builtin_trap();
  }
  if (told != d.framebuffer_address()) __builtin_trap();
  const auto c = fb.changes();
  for (const Rect& r : c.rects) {
    if (!c.mode.enabled || r.width == 0 || r.height == 0 || r.x + r.width > c.mode.width ||
        r.y + r.height > c.mode.height) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> rom(5000, 0x90);
  rom[0] = 0x55, rom[1] = 0xaa;
  auto display = std::make_shared<BochsDisplay>(rom);
  std::optional<uint64_t> told;
  display->set_framebuffer_listener([&](std::optional<uint64_t> a) { told = a; });
  PciBus bus;
  bus.add(kSlot, 0, display);
  Framebuffer fb(*display);
  uint64_t pattern = 0;
  fb.set_written_pages_source([&](std::span<uint64_t> bitmap) {
    for (size_t i = 0; i < bitmap.size(); ++i) bitmap[i] = pattern * (i + 1);
    return (pattern & 1) == 0;
  });

  size_t pos = 0;
  for (; pos + 8 <= size && data[pos] != 0xff; pos += 8) {
    const uint8_t op = data[pos];
    const uint32_t width = data[pos + 1];
    const uint16_t sel = static_cast<uint16_t>(data[pos + 2] | data[pos + 3] << 8);
    const uint32_t value = u32_at(data + pos + 4);
    uint8_t buf[16] = {};
    const size_t n = std::min<size_t>(width % 10, sizeof buf);  // 0..9: some invalid widths
    for (size_t i = 0; i < n; ++i) buf[i] = static_cast<uint8_t>(value >> (8 * (i % 4)));
    switch (op % 10) {
      case 0:  // configuration write
        bus.config_write(0, kSlot, 0, sel & 0xfff, std::span<const uint8_t>(buf, n));
        break;
      case 1:
        bus.config_read(0, kSlot, 0, sel & 0xfff, std::span<uint8_t>(buf, n));
        break;
      case 2: {  // a DISPI / extended / EDID register through BAR 2's window, if decoded
        auto bar = bus.bar(kSlot, 0, kMmioBar);
        const uint64_t at = (bar ? bar->address : 0) + (sel & 0x1fff) - 0x800;
        bus.bar_write(BarSpace::kMemory, at, std::span<const uint8_t>(buf, n));
        break;
      }
      case 3: {
        auto bar = bus.bar(kSlot, 0, kMmioBar);
        bus.bar_read(BarSpace::kMemory, (bar ? bar->address : 0) + (sel & 0x1fff) - 0x800, std::span<uint8_t>(buf, n));
        break;
      }
      case 4:  // anywhere in memory space: the framebuffer, the ROM, nothing
        bus.bar_write(BarSpace::kMemory, uint64_t{value} << (sel & 7), std::span<const uint8_t>(buf, n));
        break;
      case 5:
        bus.bar_read(BarSpace::kMemory, uint64_t{value} << (sel & 7), std::span<uint8_t>(buf, n));
        break;
      case 6:  // the device directly, any BAR index and offset
        display->bar_write(sel % 8, value, std::span<const uint8_t>(buf, n));
        display->bar_read(sel % 8, uint64_t{value} << 8, std::span<uint8_t>(buf, n));
        break;
      case 7:
        pattern = value | uint64_t{sel} << 32;
        check_consistent(*display, fb, told);
        break;
      case 8:
        bus.reset();
        break;
      case 9: {  // save and load again: the same registers and mode
        berth::state::Writer w;
        display->save_state(w);
        const auto before = display->registers();
        berth::state::Reader r(w.data(), "fuzz");
        display->load_state(r);
        bus.refresh();
        if (display->registers() != before) __builtin_trap();
        break;
      }
    }
    check_consistent(*display, fb, told);
  }
  if (pos < size) {
    berth::state::Reader r(std::span<const uint8_t>(data + pos + 1, size - pos - 1), "fuzz");
    try {
      display->load_state(r);
    } catch (const berth::Error&) {
    }
    bus.refresh();
    check_consistent(*display, fb, told);
  }
  return 0;
}
