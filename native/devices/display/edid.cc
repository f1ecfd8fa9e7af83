#include "devices/display/edid.h"

#include <cmath>
#include <cstring>

namespace berth::devices::display {

namespace {

// A detailed timing descriptor (EDID 1.4 section 3.10.2); sizes in pixels, lines and mm.
struct Timing {
  uint32_t pixel_clock_khz;
  uint32_t h_active, h_blank, h_front, h_sync;
  uint32_t v_active, v_blank, v_front, v_sync;
  uint32_t width_mm, height_mm;
};

// CEA-861 1920x1080 at 60 Hz (148.5 MHz), on a 24" 16:9 panel.
constexpr Timing k1080p{148500, 1920, 280, 88, 44, 1080, 45, 4, 5, 531, 299};

void put_timing(uint8_t* d, const Timing& t) {
  const uint32_t clock = t.pixel_clock_khz / 10;  // in 10 kHz units
  d[0] = clock & 0xff;
  d[1] = (clock >> 8) & 0xff;
  d[2] = t.h_active & 0xff;
  d[3] = t.h_blank & 0xff;
  d[4] = static_cast<uint8_t>(((t.h_active >> 8) & 0xf) << 4 | ((t.h_blank >> 8) & 0xf));
  d[5] = t.v_active & 0xff;
  d[6] = t.v_blank & 0xff;
  d[7] = static_cast<uint8_t>(((t.v_active >> 8) & 0xf) << 4 | ((t.v_blank >> 8) & 0xf));
  d[8] = t.h_front & 0xff;
  d[9] = t.h_sync & 0xff;
  d[10] = static_cast<uint8_t>((t.v_front & 0xf) << 4 | (t.v_sync & 0xf));
  d[11] = static_cast<uint8_t>(((t.h_front >> 8) & 3) << 6 | ((t.h_sync >> 8) & 3) << 4 |
                               ((t.v_front >> 4) & 3) << 2 | ((t.v_sync >> 4) & 3));
  d[12] = t.width_mm & 0xff;
  d[13] = t.height_mm & 0xff;
  d[14] = static_cast<uint8_t>(((t.width_mm >> 8) & 0xf) << 4 | ((t.height_mm >> 8) & 0xf));
  d[15] = 0;                              // no border
  d[16] = 0;
  d[17] = 0x18 | 0x04 | 0x02;             // digital separate sync, +vsync, +hsync
}

// A display descriptor: tag, then 13 bytes of payload.
uint8_t* put_descriptor_header(uint8_t* d, uint8_t tag) {
  d[0] = d[1] = d[2] = 0;
  d[3] = tag;
  d[4] = 0;
  return d + 5;
}

// A standard timing (section 3.9): width/8 - 31, then aspect ratio and refresh - 60.
enum Aspect : uint8_t { k16x10 = 0, k4x3 = 1, k5x4 = 2, k16x9 = 3 };
void put_standard(uint8_t* d, uint32_t width, Aspect aspect) {
  d[0] = static_cast<uint8_t>(width / 8 - 31);
  d[1] = static_cast<uint8_t>(aspect << 6 | (60 - 60));
}

uint32_t chroma(double v) { return static_cast<uint32_t>(std::lround(v * 1024)) & 0x3ff; }

}  // namespace

std::array<uint8_t, kEdidBlockSize> build_edid() {
  std::array<uint8_t, kEdidBlockSize> e{};
  const uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
  std::memcpy(e.data(), header, sizeof header);
  // Manufacturer "BRT": three 5-bit letters ('A' = 1), big-endian.
  const uint16_t maker = static_cast<uint16_t>(('B' - '@') << 10 | ('R' - '@') << 5 | ('T' - '@'));
  e[8] = maker >> 8;
  e[9] = maker & 0xff;
  e[10] = 0x01;  // product code 0x0001
  e[16] = 0;     // no week
  e[17] = 2024 - 1990;  // model year
  e[18] = 1;     // EDID 1.4
  e[19] = 4;
  e[20] = 0x80 | 0x20 | 0x05;  // digital, 8 bits per colour, DisplayPort
  e[21] = (k1080p.width_mm + 5) / 10;   // screen size in cm
  e[22] = (k1080p.height_mm + 5) / 10;
  e[23] = 120;   // gamma 2.2: (2.2 * 100) - 100
  e[24] = 0x04 | 0x02;  // sRGB default colour space, preferred timing is native; RGB 4:4:4
  // sRGB chromaticity: red, green, blue, white (x, y), 10 bits each.
  const uint32_t c[8] = {chroma(0.640), chroma(0.330), chroma(0.300), chroma(0.600),
                         chroma(0.150), chroma(0.060), chroma(0.3127), chroma(0.3290)};
  e[25] = static_cast<uint8_t>((c[0] & 3) << 6 | (c[1] & 3) << 4 | (c[2] & 3) << 2 | (c[3] & 3));
  e[26] = static_cast<uint8_t>((c[4] & 3) << 6 | (c[5] & 3) << 4 | (c[6] & 3) << 2 | (c[7] & 3));
  for (int i = 0; i < 8; ++i) e[27 + i] = static_cast<uint8_t>(c[i] >> 2);
  e[35] = 0x20 | 0x01;  // 640x480@60, 800x600@60
  e[36] = 0x08;         // 1024x768@60
  e[37] = 0;
  put_standard(&e[38], 1280, k16x9);
  put_standard(&e[40], 1280, k16x10);
  put_standard(&e[42], 1280, k5x4);
  put_standard(&e[44], 1440, k16x10);
  put_standard(&e[46], 1600, k16x9);
  put_standard(&e[48], 1680, k16x10);
  put_standard(&e[50], 1920, k16x9);
  e[52] = e[53] = 0x01;  // unused
  put_timing(&e[54], k1080p);
  // Range limits: 50..75 Hz vertical, 30..160 kHz horizontal, 200 MHz, no formula.
  uint8_t* r = put_descriptor_header(&e[72], 0xfd);
  const uint8_t limits[13] = {50, 75, 30, 160, 20, 0x01, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20};
  std::memcpy(r, limits, sizeof limits);
  uint8_t* name = put_descriptor_header(&e[90], 0xfc);
  std::memcpy(name, "Berth Display", 13);
  put_descriptor_header(&e[108], 0x10);  // dummy descriptor
  e[126] = 0;                            // no extensions
  uint8_t sum = 0;
  for (uint32_t i = 0; i < kEdidBlockSize - 1; ++i) sum = static_cast<uint8_t>(sum + e[i]);
  e[127] = static_cast<uint8_t>(0x100 - sum);
  return e;
}

}  // namespace berth::devices::display
