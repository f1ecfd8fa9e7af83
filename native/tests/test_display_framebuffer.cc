#include <vector>

#include "devices/display/bochs_display.h"
#include "devices/display/dirty_rects.h"
#include "devices/display/framebuffer.h"
#include "tests/check.h"

using namespace berth::devices::display;

namespace {

DisplayMode mode(uint32_t w, uint32_t h, uint32_t bpp, uint32_t stride, uint64_t offset = 0) {
  DisplayMode m;
  m.enabled = true;
  m.width = w;
  m.height = h;
  m.bpp = bpp;
  m.stride = stride;
  m.offset = offset;
  return m;
}

void mark(std::vector<uint64_t>& bitmap, uint64_t page) { bitmap[page / 64] |= uint64_t{1} << (page % 64); }

void set_mode(BochsDisplay& d, uint16_t w, uint16_t h) {
  const uint16_t regs[][2] = {{1, w}, {2, h}, {3, 32}, {4, 1}};
  for (auto [index, value] : regs) {
    const uint8_t b[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
    d.bar_write(kMmioBar, 0x500 + 2 * index, b);
  }
}

}  // namespace

TEST(dirty_rects_of_nothing_written_is_empty) {
  std::vector<uint64_t> bitmap(64, 0);
  CHECK(dirty_rects(mode(1024, 768, 32, 4096), bitmap, 4096).empty());
  mark(bitmap, 0);
  CHECK(dirty_rects(DisplayMode{}, bitmap, 4096).empty());  // no mode
  CHECK(dirty_rects(mode(1024, 768, 32, 4096), bitmap, 0).empty());
}

TEST(dirty_rects_one_page_per_row_gives_full_width_bands) {
  // 1024x768x32: one row is exactly one page.
  std::vector<uint64_t> bitmap(64, 0);
  mark(bitmap, 10);
  mark(bitmap, 11);
  mark(bitmap, 12);
  mark(bitmap, 700);
  const auto r = dirty_rects(mode(1024, 768, 32, 4096), bitmap, 4096);
  CHECK_EQ(r.size(), 2u);
  CHECK(r[0] == (Rect{0, 10, 1024, 3}));
  CHECK(r[1] == (Rect{0, 700, 1024, 1}));
}

TEST(dirty_rects_narrow_to_the_written_columns) {
  // 1920x1080x32: a row is 7680 bytes, so a page holds parts of two rows.
  const DisplayMode m = mode(1920, 1080, 32, 7680);
  std::vector<uint64_t> bitmap(128, 0);
  mark(bitmap, 1);  // bytes 4096..8191: row 0 columns 1024..1919 and row 1 columns 0..127
  const auto r = dirty_rects(m, bitmap, 4096);
  CHECK_EQ(r.size(), 1u);
  CHECK(r[0] == (Rect{0, 0, 1920, 2}));  // the band's union of columns
  std::vector<uint64_t> only_second(128, 0);
  mark(only_second, 2);  // bytes 8192..12287: row 1 columns 128..1151
  const auto s = dirty_rects(m, only_second, 4096);
  CHECK_EQ(s.size(), 1u);
  CHECK(s[0] == (Rect{128, 1, 1024, 1}));
}

TEST(dirty_rects_respect_offset_stride_and_the_bitmaps_end) {
  // 640x480x16 with a 2048-byte stride, starting 8 KiB into video memory: the visible
  // part of each row is 1280 bytes; rows 0 and 1 share page 2.
  const DisplayMode m = mode(640, 480, 16, 2048, 8192);
  std::vector<uint64_t> bitmap(1, 0);
  mark(bitmap, 0);  // before the picture
  mark(bitmap, 2);
  const auto r = dirty_rects(m, bitmap, 4096);
  CHECK_EQ(r.size(), 1u);
  CHECK(r[0] == (Rect{0, 0, 640, 2}));
  // Pages past the bitmap's one word count as unwritten, not read past its end.
  std::vector<uint64_t> full(1, ~uint64_t{0});
  const auto f = dirty_rects(m, full, 4096);
  CHECK_EQ(f.size(), 1u);
  CHECK(f[0] == (Rect{0, 0, 640, 2 * (64 - 2)}));
  // Written pages in the padding right of the picture only: nothing visible changed.
  const DisplayMode wide = mode(64, 64, 32, 8192);  // each row 256 visible bytes, 8 KiB apart
  std::vector<uint64_t> pad(4, 0);
  mark(pad, 1);  // bytes 4096..8191: padding of row 0
  CHECK(dirty_rects(wide, pad, 4096).empty());
}

TEST(framebuffer_reports_full_then_logged_changes) {
  BochsDisplay d;
  Framebuffer fb(d);
  std::vector<uint64_t> next(64, 0);
  bool have_log = true;
  fb.set_written_pages_source([&](std::span<uint64_t> bitmap) {
    CHECK(bitmap.size() >= 64);
    for (size_t i = 0; i < next.size(); ++i) bitmap[i] = next[i];
    next.assign(64, 0);
    return have_log;
  });
  auto c = fb.changes();
  CHECK(c.full);
  CHECK(c.rects.empty());  // no mode yet
  set_mode(d, 1024, 768);
  c = fb.changes();
  CHECK(c.full);  // a new mode
  CHECK_EQ(c.rects.size(), 1u);
  CHECK(c.rects[0] == (Rect{0, 0, 1024, 768}));
  c = fb.changes();
  CHECK(!c.full);
  CHECK(c.rects.empty());
  mark(next, 5);
  c = fb.changes();
  CHECK(!c.full);
  CHECK_EQ(c.rects.size(), 1u);
  CHECK(c.rects[0] == (Rect{0, 5, 1024, 1}));
  const uint8_t px[4] = {};
  d.bar_write(kFramebufferBar, 0, px);  // outside the log
  CHECK(fb.changes().full);
  have_log = false;
  CHECK(fb.changes().full);
  have_log = true;
  CHECK(!fb.changes().full);
  fb.set_written_pages_source({});
  CHECK(fb.changes().full);
}

TEST(framebuffer_converts_pixels_to_rgb) {
  std::vector<uint8_t> vram(64 * 64 * 4, 0);
  vram[0] = 0x11, vram[1] = 0x22, vram[2] = 0x33;  // b, g, r
  auto m = mode(64, 64, 32, 256);
  auto rgb = to_rgb24(m, vram);
  CHECK_EQ(rgb.size(), 64u * 64 * 3);
  CHECK_EQ(rgb[0], 0x33u);
  CHECK_EQ(rgb[1], 0x22u);
  CHECK_EQ(rgb[2], 0x11u);
  m.big_endian = true;
  rgb = to_rgb24(m, vram);
  CHECK_EQ(rgb[0], 0x22u);  // x, r, g, b
  auto m16 = mode(64, 64, 16, 128);
  vram[0] = 0x00, vram[1] = 0xf8;  // pure red in 5:6:5
  rgb = to_rgb24(m16, vram);
  CHECK_EQ(rgb[0], 0xffu);
  CHECK_EQ(rgb[1], 0u);
  CHECK_EQ(rgb[2], 0u);
  CHECK(to_rgb24(mode(64, 64, 32, 256, 1), vram).empty());  // one byte past the end
}
