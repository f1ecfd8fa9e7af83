#include <memory>

#include "devices/cmos_rtc.h"
#include "tests/check.h"

using berth::devices::CmosRtc;

namespace {

// 2024-02-29 13:45:56 UTC, a Thursday.
constexpr int64_t kLeapDayAfternoon = 1709214356;

struct Rig {
  int64_t now = kLeapDayAfternoon;
  CmosRtc rtc{[this] { return now; }};

  uint8_t get(uint8_t index) {
    rtc.write(0, std::span<const uint8_t>(&index, 1));
    uint8_t v = 0;
    rtc.read(1, std::span<uint8_t>(&v, 1));
    return v;
  }
  void set(uint8_t index, uint8_t value) {
    rtc.write(0, std::span<const uint8_t>(&index, 1));
    rtc.write(1, std::span<const uint8_t>(&value, 1));
  }
  uint16_t get16(uint8_t low_index) {
    return static_cast<uint16_t>(get(low_index) | get(static_cast<uint8_t>(low_index + 1)) << 8);
  }
};

}  // namespace

TEST(rtc_bcd_24h_by_default) {
  Rig r;
  CHECK_EQ(r.get(0x0a), 0x26);
  CHECK_EQ(r.get(0x0b), 0x02);
  CHECK_EQ(r.get(0x0d), 0x80);
  CHECK_EQ(r.get(0x00), 0x56);
  CHECK_EQ(r.get(0x02), 0x45);
  CHECK_EQ(r.get(0x04), 0x13);
  CHECK_EQ(r.get(0x06), 0x05);  // Thursday (Sunday = 1)
  CHECK_EQ(r.get(0x07), 0x29);
  CHECK_EQ(r.get(0x08), 0x02);
  CHECK_EQ(r.get(0x09), 0x24);
  CHECK_EQ(r.get(0x32), 0x20);
  r.now += 5;  // the clock follows the host
  CHECK_EQ(r.get(0x00), 0x01);
  CHECK_EQ(r.get(0x02), 0x46);
  uint8_t index_port = 0;
  r.rtc.read(0, std::span<uint8_t>(&index_port, 1));
  CHECK_EQ(index_port, 0xff);
}

TEST(rtc_binary_mode) {
  Rig r;
  r.set(0x0b, 0x06);  // DM: binary, 24h
  CHECK_EQ(r.get(0x0b), 0x06);
  CHECK_EQ(r.get(0x00), 56);
  CHECK_EQ(r.get(0x02), 45);
  CHECK_EQ(r.get(0x04), 13);
  CHECK_EQ(r.get(0x07), 29);
  CHECK_EQ(r.get(0x09), 24);
  CHECK_EQ(r.get(0x32), 20);
}

TEST(rtc_12_hour_mode_pm_bit) {
  Rig r;
  r.set(0x0b, 0x00);  // BCD, 12h
  CHECK_EQ(r.get(0x04), 0x81);  // 1 PM
  r.set(0x0b, 0x04);            // binary, 12h
  CHECK_EQ(r.get(0x04), 0x81);
  r.now = 1709166600;  // 00:30: 12 AM
  CHECK_EQ(r.get(0x04), 12);
  r.now = 1709208300;  // 12:05: 12 PM
  CHECK_EQ(r.get(0x04), 0x8c);
  r.set(0x0b, 0x00);
  CHECK_EQ(r.get(0x04), 0x92);
}

TEST(rtc_set_bit_time_write_kept_as_offset) {
  Rig r;
  r.set(0x0b, 0x82);  // SET, BCD, 24h
  CHECK_EQ(r.get(0x00), 0x56);  // frozen at the moment SET went on
  r.set(0x00, 0x00);
  r.set(0x02, 0x00);
  r.set(0x04, 0x08);
  r.set(0x07, 0x15);
  r.set(0x08, 0x01);
  r.set(0x09, 0x30);
  r.set(0x32, 0x20);
  r.now += 100;  // no updates while SET is on
  CHECK_EQ(r.get(0x00), 0x00);
  CHECK_EQ(r.get(0x04), 0x08);
  r.set(0x0b, 0x02);  // commit: 2030-01-15 08:00:00
  CHECK_EQ(r.rtc.offset_seconds(), int64_t{1894694400} - r.now);
  r.now += 61;
  CHECK_EQ(r.get(0x00), 0x01);
  CHECK_EQ(r.get(0x02), 0x01);
  CHECK_EQ(r.get(0x04), 0x08);
  CHECK_EQ(r.get(0x06), 0x03);  // a Tuesday
  CHECK_EQ(r.get(0x09), 0x30);

  // 12-hour binary writes: 11 PM.
  r.set(0x0b, 0x84);
  r.set(0x04, 0x8b);
  r.set(0x0b, 0x06);
  CHECK_EQ(r.get(0x04), 23);
}

TEST(rtc_write_without_set_takes_effect) {
  Rig r;
  r.set(0x09, 0x99);  // year 2099
  CHECK_EQ(r.get(0x09), 0x99);
  CHECK_EQ(r.get(0x32), 0x20);
  r.set(0x32, 0x21);  // century 21 -> 2199
  CHECK_EQ(r.get(0x32), 0x21);
  CHECK_EQ(r.get(0x09), 0x99);
  CHECK_EQ(r.get(0x00), 0x56);
  CHECK(r.rtc.offset_seconds() > 0);
}

TEST(rtc_nvram_survives_reset) {
  Rig r;
  r.set(0x80 | 0x40, 0xab);  // bit 7 of the index is the NMI mask
  r.set(0x7f, 0xcd);
  r.set(0x0e, 0x11);
  r.set(0x01, 0x30);  // alarm seconds: storage
  CHECK_EQ(r.get(0x40), 0xab);
  CHECK_EQ(r.get(0x01), 0x30);
  r.set(0x0a, 0xa6);  // UIP is read-only
  CHECK_EQ(r.get(0x0a), 0x26);
  r.set(0x0a, 0x2f);
  r.set(0x09, 0x25);  // the clock offset is battery-backed too
  r.set(0x0b, 0x06);
  r.rtc.reset();
  CHECK_EQ(r.get(0x0a), 0x26);
  CHECK_EQ(r.get(0x0b), 0x02);
  CHECK_EQ(r.get(0x0c), 0);
  CHECK_EQ(r.get(0x0d), 0x80);
  CHECK_EQ(r.get(0x40), 0xab);
  CHECK_EQ(r.get(0x7f), 0xcd);
  CHECK_EQ(r.get(0x0e), 0x11);
  CHECK_EQ(r.get(0x09), 0x25);
}

TEST(rtc_status_c_and_d) {
  Rig r;
  r.set(0x0c, 0xff);
  r.set(0x0d, 0x00);
  CHECK_EQ(r.get(0x0c), 0);
  CHECK_EQ(r.get(0x0d), 0x80);
  r.set(0x0b, 0x92);  // SET also clears UIE
  CHECK_EQ(r.get(0x0b), 0x82);
}

TEST(rtc_memory_size_bytes) {
  Rig r;
  auto checksum_ok = [&] {
    unsigned sum = 0;
    for (unsigned i = 0x10; i <= 0x2d; ++i) sum += r.get(static_cast<uint8_t>(i));
    return (r.get(0x2e) << 8 | r.get(0x2f)) == static_cast<int>(sum & 0xffff);
  };
  CHECK_EQ(r.get(0x14), 0x02);
  CHECK_EQ(r.get16(0x15), 640);
  CHECK(checksum_ok());

  r.rtc.set_memory_size(8ull << 20);
  CHECK_EQ(r.get16(0x15), 640);
  CHECK_EQ(r.get16(0x17), 7 * 1024);
  CHECK_EQ(r.get16(0x30), 7 * 1024);
  CHECK_EQ(r.get16(0x34), 0);
  CHECK_EQ(r.get(0x5b) | r.get(0x5c) | r.get(0x5d), 0);
  CHECK(checksum_ok());

  r.rtc.set_memory_size(128ull << 20);
  CHECK_EQ(r.get16(0x17), 0xffff);  // capped near 64 MiB
  CHECK_EQ(r.get16(0x30), 0xffff);
  CHECK_EQ(r.get16(0x34), (112 << 20) >> 16);
  CHECK(checksum_ok());

  r.rtc.set_memory_size(5ull << 30);  // 3 GiB below the PCI hole, 2 GiB from 4 GiB up
  CHECK_EQ(r.get16(0x34), ((3ull << 30) - (16ull << 20)) >> 16);
  CHECK_EQ(r.get(0x5b), 0x00);
  CHECK_EQ(r.get(0x5c), 0x80);
  CHECK_EQ(r.get(0x5d), 0x00);

  r.rtc.set_memory_layout(2ull << 30, 1ull << 40);
  CHECK_EQ(r.get16(0x34), ((2ull << 30) - (16ull << 20)) >> 16);
  CHECK_EQ(r.get(0x5b), 0xff);  // 2^40 / 64 KiB = 0x1000000, capped at 0xffffff
  CHECK_EQ(r.get(0x5c), 0xff);
  CHECK_EQ(r.get(0x5d), 0xff);
  r.rtc.set_memory_layout(2ull << 30, 64ull << 30);  // 0x100000 blocks
  CHECK_EQ(r.get(0x5b), 0x00);
  CHECK_EQ(r.get(0x5c), 0x00);
  CHECK_EQ(r.get(0x5d), 0x10);
  r.rtc.reset();  // NVRAM (memory bytes included) survives reset
  CHECK_EQ(r.get16(0x34), ((2ull << 30) - (16ull << 20)) >> 16);
}
