#include "devices/acpi_sleep.h"
#include "tests/check.h"

using berth::devices::AcpiSleep;

TEST(acpi_sleep_powers_off_only_on_s5_with_sleep_enable) {
  int offs = 0;
  AcpiSleep dev(5, [&] { ++offs; });
  auto put = [&](uint64_t off, uint8_t v) { dev.write(off, std::span<const uint8_t>(&v, 1)); };
  put(0, 5 << 2);              // type without SLP_EN: nothing
  put(0, (3 << 2) | (1 << 5)); // S3 is not offered: nothing
  put(1, (5 << 2) | (1 << 5)); // the status register never powers off
  CHECK_EQ(offs, 0);
  put(0, (5 << 2) | (1 << 5));
  CHECK_EQ(offs, 1);
  uint8_t status = 0xff;
  dev.read(1, std::span<uint8_t>(&status, 1));
  CHECK_EQ(status, 0);
}
