#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "common/state_stream.h"
#include "devices/display/bochs_display.h"
#include "devices/display/edid.h"
#include "devices/pci/pci_bus.h"
#include "tests/check.h"
#include "tests/pci_helpers.h"

using namespace berth::devices::display;
using berth::devices::pci::kExpansionRomBar;
using berth::test::pci::cfg_read;
using berth::test::pci::cfg_write;

namespace {

uint64_t mmio_read(BochsDisplay& d, uint64_t offset, uint32_t size) {
  uint8_t b[8] = {};
  d.bar_read(kMmioBar, offset, std::span<uint8_t>(b, size));
  uint64_t v = 0;
  for (uint32_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
  return v;
}

void mmio_write(BochsDisplay& d, uint64_t offset, uint32_t size, uint64_t value) {
  uint8_t b[8] = {};
  for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
  d.bar_write(kMmioBar, offset, std::span<const uint8_t>(b, size));
}

uint16_t reg(BochsDisplay& d, uint32_t index) { return static_cast<uint16_t>(mmio_read(d, 0x500 + 2 * index, 2)); }
void set_dispi(BochsDisplay& d, uint32_t index, uint16_t v) { mmio_write(d, 0x500 + 2 * index, 2, v); }

void set_mode(BochsDisplay& d, uint16_t w, uint16_t h, uint16_t bpp) {
  set_dispi(d, dispi::kEnable, 0);
  set_dispi(d, dispi::kXres, w);
  set_dispi(d, dispi::kYres, h);
  set_dispi(d, dispi::kBpp, bpp);
  set_dispi(d, dispi::kEnable, dispi::kEnabled | 0x40);
}

std::vector<uint8_t> fake_rom(size_t size) {
  std::vector<uint8_t> rom(size, 0x90);
  rom[0] = 0x55;
  rom[1] = 0xaa;
  return rom;
}

}  // namespace

TEST(bochs_display_identifies_itself_as_qemu_bochs_display) {
  BochsDisplay d;
  CHECK_EQ(cfg_read(d, 0x00, 4), 0x11111234u);
  CHECK_EQ(cfg_read(d, 0x08, 4), 0x03800002u);  // class 0x038000, revision 2
  CHECK_EQ(cfg_read(d, 0x3d, 1), 0u);           // no interrupt
  cfg_write(d, 0x10, 4, 0xffffffff);
  CHECK_EQ(cfg_read(d, 0x10, 4), 0xff000008u);  // 16 MiB, 32-bit, prefetchable
  cfg_write(d, 0x18, 4, 0xffffffff);
  CHECK_EQ(cfg_read(d, 0x18, 4), 0xfffff000u);  // 4 KiB, not prefetchable
  cfg_write(d, 0x30, 4, 0xfffffffe);
  CHECK_EQ(cfg_read(d, 0x30, 4), 0u);  // no ROM without an image
}

TEST(bochs_display_reports_a_valid_edid_with_1080p_preferred) {
  BochsDisplay d;
  const auto edid = build_edid();
  uint8_t sum = 0;
  for (uint8_t b : edid) sum = static_cast<uint8_t>(sum + b);
  CHECK_EQ(sum, 0u);
  CHECK_EQ(mmio_read(d, 0, 8), 0x00ffffffffffff00ull);
  CHECK_EQ(mmio_read(d, 18, 2), 0x0401u);  // version 1.4
  for (uint32_t i = 0; i < kEdidBlockSize; ++i) CHECK_EQ(mmio_read(d, i, 1), edid[i]);
  // What SeaBIOS's bochs-display ROM decodes from the first detailed timing.
  const uint32_t w = edid[56] | (edid[58] & 0xf0) << 4, h = edid[59] | (edid[61] & 0xf0) << 4;
  CHECK_EQ(w, 1920u);
  CHECK_EQ(h, 1080u);
  CHECK_EQ(mmio_read(d, 0x80, 4), 0u);          // the rest of the EDID region reads zeros
  CHECK_EQ(mmio_read(d, 0x3fe, 4), 0xffffffffu);  // crossing out of it: nothing
  mmio_write(d, 0x10, 4, 0x12345678);            // read-only
  CHECK_EQ(mmio_read(d, 0x10, 1), edid[0x10]);
}

TEST(bochs_display_dispi_registers_behave_like_qemus) {
  BochsDisplay d;
  CHECK_EQ(reg(d, dispi::kId), 0xb0c5u);
  CHECK_EQ(reg(d, dispi::kVideoMemory64K), 256u);  // 16 MiB
  CHECK_EQ(mmio_read(d, 0x516, 2), 0xffffu);        // past the registers
  set_dispi(d, dispi::kId, 0xb0c0);
  CHECK_EQ(reg(d, dispi::kId), 0xb0c5u);
  set_dispi(d, dispi::kVideoMemory64K, 1);
  CHECK_EQ(reg(d, dispi::kVideoMemory64K), 256u);
  set_dispi(d, dispi::kXres, 800);
  CHECK_EQ(reg(d, dispi::kXres), 800u);
  mmio_write(d, 0x503, 1, 0x04);  // the high byte of XRES alone
  CHECK_EQ(reg(d, dispi::kXres), 0x420u);
  mmio_write(d, 0x502, 4, 0x02580320);  // XRES and YRES in one dword
  CHECK_EQ(reg(d, dispi::kXres), 800u);
  CHECK_EQ(reg(d, dispi::kYres), 600u);
  CHECK_EQ(mmio_read(d, 0x502, 4), 0x02580320u);
  // QEMU's extended registers: dword accesses only.
  CHECK_EQ(mmio_read(d, 0x600, 4), 8u);
  CHECK_EQ(mmio_read(d, 0x604, 4), 0x1e1e1e1eu);
  CHECK_EQ(mmio_read(d, 0x600, 2), 0xffffu);
  mmio_write(d, 0x604, 4, 0xbebebebe);
  CHECK(d.big_endian_framebuffer());
  mmio_write(d, 0x604, 4, 0x12345678);  // neither value: unchanged
  CHECK(d.big_endian_framebuffer());
  mmio_write(d, 0x604, 4, 0x1e1e1e1e);
  CHECK(!d.big_endian_framebuffer());
  CHECK_EQ(mmio_read(d, 0x400, 4), 0xffffffffu);
  CHECK_EQ(mmio_read(d, 0xffc, 4), 0xffffffffu);
  // Bad accesses are answered, never out of bounds.
  CHECK_EQ(mmio_read(d, 0xfff, 2), 0xffffu);  // crossing the BAR's end
  mmio_write(d, 0x1000, 2, 0);
  mmio_write(d, ~uint64_t{0}, 2, 0);
  CHECK_EQ(mmio_read(d, ~uint64_t{0}, 1), 0xffu);
  uint8_t big[16] = {};
  d.bar_write(kMmioBar, 0x502, big);  // wider than 8 bytes: ignored
  CHECK_EQ(reg(d, dispi::kXres), 800u);
}

TEST(bochs_display_mode_follows_the_registers_within_qemus_limits) {
  BochsDisplay d;
  CHECK(!d.mode().enabled);
  const uint64_t g0 = d.mode_generation();
  set_mode(d, 1024, 768, 32);
  DisplayMode m = d.mode();
  CHECK(m.enabled);
  CHECK_EQ(m.width, 1024u);
  CHECK_EQ(m.height, 768u);
  CHECK_EQ(m.stride, 4096u);
  CHECK_EQ(m.offset, 0u);
  CHECK(d.mode_generation() > g0);
  const uint64_t g1 = d.mode_generation();
  set_dispi(d, dispi::kBank, 3);  // no change to the picture: same generation
  CHECK_EQ(d.mode_generation(), g1);
  set_dispi(d, dispi::kVirtWidth, 1280);
  set_dispi(d, dispi::kYOffset, 10);
  set_dispi(d, dispi::kXOffset, 2);
  m = d.mode();
  CHECK_EQ(m.stride, 5120u);
  CHECK_EQ(m.offset, 10u * 5120 + 8);
  CHECK(d.mode_generation() > g1);
  set_dispi(d, dispi::kVirtWidth, 100);  // narrower than the screen: the screen's width
  CHECK_EQ(d.mode().stride, 4096u);
  set_dispi(d, dispi::kYOffset, 0);
  set_dispi(d, dispi::kXOffset, 0);
  set_mode(d, 1920, 1080, 16);
  CHECK(d.mode().enabled && d.mode().stride == 3840u);
  set_mode(d, 1920, 1080, 24);  // QEMU's bochs-display shows 16 and 32 bpp only
  CHECK(!d.mode().enabled);
  set_mode(d, 63, 480, 32);
  CHECK(!d.mode().enabled);
  set_mode(d, 4096, 4096, 32);  // 64 MiB: more than video memory
  CHECK(!d.mode().enabled);
  set_mode(d, 2048, 2048, 32);  // exactly 16 MiB
  CHECK(d.mode().enabled);
  set_dispi(d, dispi::kYOffset, 1);  // now one row past the end
  CHECK(!d.mode().enabled);
  set_dispi(d, dispi::kYOffset, 0xffff);
  set_dispi(d, dispi::kVirtWidth, 0xffff);
  CHECK(!d.mode().enabled);
  set_dispi(d, dispi::kEnable, 0);
  CHECK(!d.mode().enabled);
  set_dispi(d, dispi::kYOffset, 0);
  set_dispi(d, dispi::kVirtWidth, 0);
  set_mode(d, 800, 600, 32);
  mmio_write(d, 0x604, 4, 0xbebebebe);
  CHECK(d.mode().big_endian);
}

TEST(bochs_display_framebuffer_bar_reaches_video_memory_and_tells_the_listener) {
  BochsDisplay d;
  std::vector<std::optional<uint64_t>> seen;
  d.set_framebuffer_listener([&](std::optional<uint64_t> a) { seen.push_back(a); });
  cfg_write(d, 0x10, 4, 0xc1000000);
  CHECK(seen.empty());  // memory decoding still off
  cfg_write(d, 0x04, 2, 0x0002);
  CHECK_EQ(seen.size(), 1u);
  CHECK(seen.back() == std::optional<uint64_t>(0xc1000000));
  CHECK(d.framebuffer_address() == std::optional<uint64_t>(0xc1000000));
  cfg_write(d, 0x18, 4, 0xc2000000);  // BAR 2 moving is none of the listener's business
  CHECK_EQ(seen.size(), 1u);
  cfg_write(d, 0x10, 4, 0xd0000000);
  CHECK_EQ(seen.size(), 2u);
  CHECK(seen.back() == std::optional<uint64_t>(0xd0000000));
  cfg_write(d, 0x04, 2, 0);
  CHECK_EQ(seen.size(), 3u);
  CHECK(!seen.back());
  // The slow path (no memory slot mapped) reads and writes the same memory.
  CHECK(!d.take_unlogged_writes());
  const uint8_t px[4] = {1, 2, 3, 4};
  d.bar_write(kFramebufferBar, 0x100, px);
  CHECK(d.take_unlogged_writes());
  CHECK(!d.take_unlogged_writes());
  CHECK_EQ(d.video_memory().data()[0x102], 3u);
  uint8_t back[4] = {};
  d.bar_read(kFramebufferBar, 0x100, back);
  CHECK(std::memcmp(back, px, 4) == 0);
  d.bar_write(kFramebufferBar, kVideoMemorySize - 2, px);  // crossing the end: ignored
  CHECK(!d.take_unlogged_writes());
  d.bar_read(kFramebufferBar, kVideoMemorySize - 2, back);
  CHECK_EQ(back[0], 0xffu);
  cfg_write(d, 0x04, 2, 0x0002);
  CHECK_EQ(seen.size(), 4u);
  d.reset();
  CHECK_EQ(seen.size(), 5u);
  CHECK(!seen.back());
  CHECK_EQ(d.video_memory().data()[0x102], 3u);  // video memory survives a reset
}

TEST(bochs_display_expansion_rom_serves_the_image) {
  BochsDisplay d(fake_rom(28672));
  cfg_write(d, 0x30, 4, 0xfffffffe);
  CHECK_EQ(cfg_read(d, 0x30, 4), 0xffff8000u);  // 28 KiB rounds up to a 32 KiB BAR
  cfg_write(d, 0x30, 4, 0xc0040001);
  cfg_write(d, 0x04, 2, 0x0002);
  auto m = d.bar_mapping(kExpansionRomBar);
  CHECK(m && m->address == 0xc0040000u && m->size == 0x8000u);
  uint8_t b[4] = {};
  d.bar_read(kExpansionRomBar, 0, b);
  CHECK_EQ(b[0], 0x55u);
  CHECK_EQ(b[1], 0xaau);
  CHECK_EQ(b[2], 0x90u);
  d.bar_read(kExpansionRomBar, 28672, b);  // the padding
  CHECK_EQ(b[0], 0u);
  d.bar_read(kExpansionRomBar, 0x8000, b);
  CHECK_EQ(b[0], 0xffu);
  CHECK_THROWS_CODE(read_option_rom("/nonexistent/vgabios.bin"), "DISPLAY_ROM_INVALID", "cannot open");
  CHECK_THROWS_CODE(read_option_rom("/proc/self/cmdline"), "DISPLAY_ROM_INVALID", "0x55 0xAA");
}

TEST(bochs_display_on_the_pci_bus_decodes_its_bars) {
  berth::devices::pci::PciBus bus;
  auto d = std::make_shared<BochsDisplay>(fake_rom(4096));
  bus.add(2, 0, d);
  bus.config_write(0, 2, 0, 0x10, std::vector<uint8_t>{0x00, 0x00, 0x00, 0xc1});
  bus.config_write(0, 2, 0, 0x18, std::vector<uint8_t>{0x00, 0x00, 0x00, 0xc2});
  bus.config_write(0, 2, 0, 0x30, std::vector<uint8_t>{0x01, 0x00, 0x01, 0xc2});
  bus.config_write(0, 2, 0, 0x04, std::vector<uint8_t>{0x02, 0x00});
  CHECK_EQ(bus.decoded_bars().size(), 3u);
  uint8_t id[2] = {};
  CHECK(bus.bar_read(berth::devices::pci::BarSpace::kMemory, 0xc2000500, id));
  CHECK_EQ(id[0] | id[1] << 8, 0xb0c5);
  uint8_t sig[2] = {};
  CHECK(bus.bar_read(berth::devices::pci::BarSpace::kMemory, 0xc2010000, sig));
  CHECK_EQ(sig[0], 0x55u);
}

TEST(bochs_display_state_round_trip_keeps_registers_and_pixels) {
  BochsDisplay a;
  cfg_write(a, 0x10, 4, 0xc1000000);
  cfg_write(a, 0x04, 2, 0x0002);
  set_mode(a, 800, 600, 32);
  mmio_write(a, 0x604, 4, 0xbebebebe);
  a.video_memory().data()[0] = 7;
  a.video_memory().data()[0x12345] = 9;
  berth::state::Writer w;
  a.save_state(w);
  CHECK(w.data().size() < 0x14000);  // only the pages up to the last one in use

  BochsDisplay b;
  b.video_memory().data()[0x200000] = 1;  // beyond what the record holds: zeroed
  std::vector<std::optional<uint64_t>> seen;
  b.set_framebuffer_listener([&](std::optional<uint64_t> x) { seen.push_back(x); });
  berth::state::Reader r(w.data(), "test");
  b.load_state(r);
  CHECK(b.mode() == a.mode());
  CHECK(b.registers() == a.registers());
  CHECK(b.big_endian_framebuffer());
  CHECK_EQ(b.video_memory().data()[0], 7u);
  CHECK_EQ(b.video_memory().data()[0x12345], 9u);
  CHECK_EQ(b.video_memory().data()[0x200000], 0u);
  CHECK(b.take_unlogged_writes());
  CHECK_EQ(seen.size(), 1u);
  CHECK(seen.back() == std::optional<uint64_t>(0xc1000000));
}

TEST(bochs_display_state_refuses_hostile_records_and_changes_nothing) {
  BochsDisplay a;
  set_mode(a, 800, 600, 32);
  berth::state::Writer w;
  a.save_state(w);
  std::vector<uint8_t> good = w.data();

  BochsDisplay b;
  cfg_write(b, 0x10, 4, 0xd0000000);
  cfg_write(b, 0x04, 2, 0x0002);
  b.video_memory().data()[5] = 5;
  auto refused = [&](std::vector<uint8_t> bytes, const char* what) {
    berth::state::Reader r(bytes, "test");
    CHECK_THROWS_CODE(b.load_state(r), "STATE_INVALID", what);
    CHECK(!b.mode().enabled);
    CHECK_EQ(cfg_read(b, 0x10, 4), 0xd0000008u);
    CHECK_EQ(cfg_read(b, 0x04, 2), 0x0002u);
    CHECK_EQ(b.video_memory().data()[5], 5u);
  };
  // Truncated inside the video memory count.
  refused(std::vector<uint8_t>(good.begin(), good.end() - 2), "");
  // A page count above video memory's (the count's u32 is the record's last 4 bytes here:
  // nothing in use, so no pages follow).
  std::vector<uint8_t> many = good;
  many[many.size() - 1] = 0x7f;
  refused(many, "video_memory_pages");
}

