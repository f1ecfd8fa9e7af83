#include <memory>

#include "devices/platform/acpi_pm.h"
#include "devices/platform/reset_control.h"
#include "tests/check.h"
#include "tests/pci_helpers.h"
#include "tests/state_helpers.h"

using berth::devices::platform::AcpiPm;
using berth::devices::platform::ResetControl;
using berth::test::pci::bus_read;
using berth::test::pci::bus_write;
using berth::test::pci::FakeIrq;
using namespace berth::test::state_bytes;

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSecond = 1'000'000'000;

struct Rig {
  FakeIrq sci;
  int power_offs = 0;
  uint64_t now = 123 * kSecond;
  AcpiPm pm{sci, [this] { ++power_offs; }, [this] { return now; }};
};

}  // namespace

TEST(acpi_pm_timer_rate_and_width) {
  Rig r;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPmTimer, 4), 0u);
  r.now += kMs;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPmTimer, 4), 3579u);
  r.now += kSecond - kMs;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPmTimer, 4), 3579545u);
  // 24 bits: it wraps after 2^24 ticks (4.69 s) and bits 31:24 read 0.
  r.now += 4 * kSecond;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPmTimer, 4), (5 * 3579545u) & 0xffffffu);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPmTimer + 3, 1), 0u);
  // Far into the run the arithmetic does not overflow: 10 days.
  r.now += 864000 * kSecond;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPmTimer, 4), ((864005ull * 3579545u) & 0xffffffu));
  // Writes are ignored; a clock stepping backwards reads as no time passing.
  bus_write(r.pm, AcpiPm::kPmTimer, 4, 0);
  CHECK_EQ(r.pm.timer(), ((864005ull * 3579545u) & 0xffffffu));
  AcpiPm backwards(r.sci, [] {}, [&] { return r.now; });
  r.now -= kSecond;
  CHECK_EQ(backwards.timer(), 0u);
}

TEST(acpi_pm_timer_follows_the_host_clock) {
  FakeIrq sci;
  AcpiPm pm(sci, [] {});
  // Bracket each timer read between clock reads: however the thread is scheduled, the
  // ticks between the two timer reads lie between the inner and the outer interval.
  const uint64_t a = AcpiPm::host_monotonic_ns();
  const uint32_t t0 = pm.timer();
  const uint64_t b = AcpiPm::host_monotonic_ns();
  while (AcpiPm::host_monotonic_ns() - b < 20 * kMs) {
  }
  const uint64_t c = AcpiPm::host_monotonic_ns();
  const uint32_t t1 = pm.timer();
  const uint64_t d = AcpiPm::host_monotonic_ns();
  const uint64_t ticks = (t1 - t0) & 0xffffff;  // fewer than 2^24 ticks (4.7 s) apart
  CHECK(ticks + 1 >= (c - b) * AcpiPm::kTimerHz / kSecond);
  CHECK(ticks <= (d - a) * AcpiPm::kTimerHz / kSecond + 1);
  CHECK(ticks >= 71000);  // 20 ms at 3.579545 MHz is 71,591
}

TEST(acpi_pm_status_write_one_to_clear_and_sci) {
  Rig r;
  CHECK(!r.sci.level);
  r.pm.press_power_button();
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Status, 2), 0x0100u);
  CHECK(!r.sci.level);  // PWRBTN_EN clear
  bus_write(r.pm, AcpiPm::kPm1Enable, 2, 0x0100);
  CHECK(r.sci.level);
  bus_write(r.pm, AcpiPm::kPm1Status, 2, 0x00ff);  // other bits: no effect
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Status, 2), 0x0100u);
  CHECK(r.sci.level);
  bus_write(r.pm, AcpiPm::kPm1Status + 1, 1, 0x01);  // byte write of bit 8
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Status, 2), 0u);
  CHECK(!r.sci.level);
  // PM1_STS and PM1_EN in one dword, as ACPICA may access PM1a_EVT_BLK.
  r.pm.press_power_button();
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Status, 4), 0x01000100u);
  bus_write(r.pm, AcpiPm::kPm1Status, 4, 0x00008100);  // clear PWRBTN and WAK, disable all
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Status, 4), 0u);
  CHECK(!r.sci.level);
  // Undefined enable bits are not kept.
  bus_write(r.pm, AcpiPm::kPm1Enable, 2, 0xffff);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Enable, 2), 0x4521u);
}

TEST(acpi_pm_gpe_block) {
  Rig r;
  r.pm.raise_gpe(3);
  r.pm.raise_gpe(40);
  r.pm.raise_gpe(64);  // out of range: ignored
  CHECK_EQ(bus_read(r.pm, AcpiPm::kGpe0Status, 8), (1ull << 3) | (1ull << 40));
  CHECK(!r.sci.level);
  bus_write(r.pm, AcpiPm::kGpe0Enable + 5, 1, 0x01);  // bit 40
  CHECK(r.sci.level);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kGpe0Enable, 8), 1ull << 40);
  bus_write(r.pm, AcpiPm::kGpe0Status + 4, 4, 0x100);  // clears bit 40
  CHECK(!r.sci.level);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kGpe0Status, 8), 1ull << 3);
}

TEST(acpi_pm_control_and_soft_off) {
  Rig r;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Control, 2), 0x0001u);  // SCI_EN: always ACPI mode
  bus_write(r.pm, AcpiPm::kPm1Control, 2, 0x0000);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Control, 2), 0x0001u);
  // SLP_TYP 5 with SLP_EN is not soft-off here.
  bus_write(r.pm, AcpiPm::kPm1Control, 2, 5 << 10 | 0x2000);
  CHECK_EQ(r.power_offs, 0);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Control, 2), (5u << 10) | 1u);  // SLP_EN reads 0
  // OVMF's ResetShutdown on Q35: clear SLP_TYP, then set SLP_EN.
  uint16_t v = static_cast<uint16_t>(bus_read(r.pm, AcpiPm::kPm1Control, 2));
  bus_write(r.pm, AcpiPm::kPm1Control, 2, v & ~0x3c00u);
  CHECK_EQ(r.power_offs, 0);
  v = static_cast<uint16_t>(bus_read(r.pm, AcpiPm::kPm1Control, 2));
  bus_write(r.pm, AcpiPm::kPm1Control, 2, v | 0x2000);
  CHECK_EQ(r.power_offs, 1);
  // Linux writes SLP_TYP and SLP_EN in one 16-bit write; a byte write of the high byte works too.
  bus_write(r.pm, AcpiPm::kPm1Control + 1, 1, AcpiPm::kS5SleepType << 2 | 0x20);
  CHECK_EQ(r.power_offs, 2);
  bus_write(r.pm, AcpiPm::kPm1Control, 4, 0x00002000u | AcpiPm::kS5SleepType << 10);
  CHECK_EQ(r.power_offs, 3);
}

TEST(acpi_pm_smi_registers_keep_seabios_out_of_smm) {
  Rig r;
  CHECK_EQ(bus_read(r.pm, AcpiPm::kSmiEnable, 4), 0x20u);  // APMC_EN: "SMM already set up"
  bus_write(r.pm, AcpiPm::kSmiEnable, 4, 0x21);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kSmiEnable, 4), 0x21u);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kSmiStatus, 4), 0u);
  // Unimplemented offsets read 0, ignore writes, and an access past the block is harmless.
  bus_write(r.pm, 0x10, 4, 0xffffffff);
  CHECK_EQ(bus_read(r.pm, 0x10, 4), 0u);
  CHECK_EQ(bus_read(r.pm, 0x7f, 1), 0u);
  CHECK_EQ(bus_read(r.pm, 0x1000, 8), 0u);
  r.pm.reset();
  CHECK_EQ(bus_read(r.pm, AcpiPm::kSmiEnable, 4), 0x20u);
}

TEST(acpi_pm_reset_keeps_the_timer_running) {
  Rig r;
  bus_write(r.pm, AcpiPm::kPm1Enable, 2, 0x0100);
  r.pm.press_power_button();
  CHECK(r.sci.level);
  r.now += kSecond;
  r.pm.reset();
  CHECK(!r.sci.level);
  CHECK_EQ(bus_read(r.pm, AcpiPm::kPm1Status, 4), 0u);
  CHECK_EQ(r.pm.timer(), 3579545u);
}

TEST(acpi_pm_state_round_trip_and_refusals) {
  Rig a;
  bus_write(a.pm, AcpiPm::kPm1Enable, 2, 0x0100);
  a.pm.press_power_button();
  a.pm.raise_gpe(2);
  bus_write(a.pm, AcpiPm::kPm1Control, 2, 3 << 10);
  a.now += 2 * kSecond;
  auto bytes = save(a.pm);
  Rig b;
  b.now = 5 * kSecond;  // another host clock
  load(b.pm, bytes);
  CHECK(b.sci.level);
  CHECK_EQ(bus_read(b.pm, AcpiPm::kPm1Status, 4), 0x01000100u);
  CHECK_EQ(bus_read(b.pm, AcpiPm::kGpe0Status, 8), 4u);
  CHECK_EQ(bus_read(b.pm, AcpiPm::kPm1Control, 2), (3u << 10) | 1u);
  CHECK_EQ(b.pm.timer(), 2 * 3579545u);  // continues from the saved count
  b.now += kSecond;
  CHECK_EQ(b.pm.timer(), 3 * 3579545u & 0xffffffu);

  Rig c;
  CHECK_THROWS_CODE(load(c.pm, with_version(bytes, 2)), "STATE_VERSION", "version 2");
  CHECK_THROWS_CODE(load(c.pm, shorten_body(bytes, 1)), "STATE_INVALID", "timer_ticks");
  const size_t body = 4 + 12 + 4 + 8;  // name length, "ich9-acpi-pm", version, body length
  auto status = bytes;
  status[body] = 0x02;  // PM1_STS bit 1: undefined
  CHECK_THROWS_CODE(load(c.pm, status), "STATE_INVALID", "pm1_status is 0x102");
  auto enable = bytes;
  enable[body + 3] = 0x80;
  CHECK_THROWS_CODE(load(c.pm, enable), "STATE_INVALID", "pm1_enable");
  auto control = bytes;
  control[body + 5] = 0x20;  // SLP_EN is never stored
  CHECK_THROWS_CODE(load(c.pm, control), "STATE_INVALID", "pm1_control");
  CHECK(!c.sci.level);
  CHECK_EQ(bus_read(c.pm, AcpiPm::kPm1Status, 4), 0u);
}

TEST(reset_control_register) {
  int resets = 0;
  ResetControl rc([&] { ++resets; });
  CHECK_EQ(bus_read(rc, 0, 1), 0u);
  // SeaBIOS: read, write SYS_RST, then SYS_RST | RST_CPU.
  bus_write(rc, 0, 1, (bus_read(rc, 0, 1) & ~6u) | 2);
  CHECK_EQ(resets, 0);
  CHECK_EQ(bus_read(rc, 0, 1), 2u);
  bus_write(rc, 0, 1, 0x06);
  CHECK_EQ(resets, 1);
  CHECK_EQ(bus_read(rc, 0, 1), 0u);
  bus_write(rc, 0, 1, 0x0e);
  CHECK_EQ(resets, 2);
  bus_write(rc, 0, 1, 0xf9);  // reserved bits dropped, no RST_CPU
  CHECK_EQ(resets, 2);
  CHECK_EQ(bus_read(rc, 0, 1), 0x08u);
  bus_write(rc, 0, 2, 0x0606);  // not a byte: ignored
  bus_write(rc, 1, 1, 0x06);
  CHECK_EQ(resets, 2);
  CHECK_EQ(bus_read(rc, 0, 2), 0xffffu);
  CHECK_EQ(ResetControl::kFadtResetValue, 0x06);

  auto bytes = save(rc);
  ResetControl other([] {});
  load(other, bytes);
  CHECK_EQ(bus_read(other, 0, 1), 0x08u);
  auto bad = bytes;
  bad.back() = 0x04;
  CHECK_THROWS_CODE(load(other, bad), "STATE_INVALID", "value is 4");
  CHECK_EQ(bus_read(other, 0, 1), 0x08u);
  other.reset();
  CHECK_EQ(bus_read(other, 0, 1), 0u);
}
