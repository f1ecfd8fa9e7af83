// Saved state of the platform devices (UART, RTC, i8042, ACPI sleep): each is run to a
// state worth keeping, saved, loaded into a fresh device, and must carry on exactly as the
// old one would; hostile records are refused with the field named.
#include <array>
#include <mutex>
#include <string>
#include <vector>

#include "devices/acpi_sleep.h"
#include "devices/cmos_rtc.h"
#include "devices/input/i8042.h"
#include "devices/uart16550.h"
#include "tests/check.h"
#include "tests/i8042_rig.h"
#include "tests/state_helpers.h"

using namespace berth;
using namespace berth::test::state_bytes;

namespace {

class RecordingIrqLine : public vmm::IrqLine {
 public:
  void set_level(bool high) override {
    std::lock_guard<std::mutex> lock(mu_);
    levels.push_back(high);
  }
  bool high() {
    std::lock_guard<std::mutex> lock(mu_);
    return !levels.empty() && levels.back();
  }
  std::vector<bool> levels;

 private:
  std::mutex mu_;
};

enum Reg : uint64_t { RBR = 0, DLL = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, SCR = 7 };

struct UartRig {
  RecordingIrqLine irq;
  devices::Uart16550 uart{irq, [](std::span<const uint8_t>) {}};
  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    uart.read(reg, std::span<uint8_t>(&v, 1));
    return v;
  }
  void out(uint64_t reg, uint8_t v) { uart.write(reg, std::span<const uint8_t>(&v, 1)); }
};

// 2024-02-29 13:45:56 UTC.
constexpr int64_t kHostTime = 1709214356;

struct RtcRig {
  int64_t now = kHostTime;
  devices::CmosRtc rtc{[this] { return now; }};
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
};

using KbcRig = test::I8042Rig;
}  // namespace

TEST(uart_state_keeps_registers_fifo_and_queued_input_and_raises_the_pending_interrupt) {
  UartRig a;
  a.out(LCR, 0x83);  // DLAB, 8N1
  a.out(DLL, 0x01);  // 115200 baud
  a.out(LCR, 0x03);
  a.out(FCR, 0x41);  // FIFO on, trigger level 4
  a.out(IER, 0x01);  // RX data interrupts
  a.out(MCR, 0x0b);  // DTR, RTS, OUT2
  a.out(SCR, 0x5a);
  std::vector<uint8_t> typed;
  for (int i = 0; i < 20; ++i) typed.push_back(static_cast<uint8_t>('a' + i));
  a.uart.enqueue_input(typed);  // 16 in the FIFO, 4 queued behind it
  CHECK_EQ(a.in(RBR), 'a');
  CHECK_EQ(a.in(RBR), 'b');
  CHECK(a.irq.high());
  auto bytes = save(a.uart);

  UartRig b;
  load(b.uart, bytes);
  CHECK(b.irq.high());  // the pending RX interrupt is driven again on the fresh line
  CHECK_EQ(b.in(IER), 0x01);
  CHECK_EQ(b.in(LCR), 0x03);
  CHECK_EQ(b.in(MCR), 0x0b);
  CHECK_EQ(b.in(SCR), 0x5a);
  CHECK_EQ(b.in(IIR), 0xc4);  // FIFO enabled, RX data at the trigger level
  b.out(LCR, 0x83);
  CHECK_EQ(b.in(DLL), 0x01);
  b.out(LCR, 0x03);
  CHECK_EQ(b.uart.pending_input_bytes(), size_t{18});
  for (int i = 2; i < 20; ++i) CHECK_EQ(b.in(RBR), 'a' + i);  // the FIFO, then the queued bytes
  CHECK_EQ(b.in(LSR) & 0x01, 0);
  CHECK(!b.irq.high());
}

TEST(uart_state_refuses_hostile_records) {
  UartRig a;
  a.out(IER, 0x01);
  auto good = save(a.uart);
  UartRig b;
  CHECK_THROWS_CODE(load(b.uart, cut(good, good.size() - 3)), "STATE_INVALID", "longer than the data left");
  CHECK_THROWS_CODE(load(b.uart, shorten_body(good, 1)), "STATE_INVALID", "truncated at dropped_input_bytes");
  CHECK_THROWS_CODE(load(b.uart, with_version(good, 2)), "STATE_VERSION", "'uart16550' record is version 2");
  RtcRig rtc;
  CHECK_THROWS_CODE(load(b.uart, save(rtc.rtc)), "STATE_INVALID", "expected a 'uart16550' record, found 'cmos-rtc'");
  auto bad_ier = good;
  bad_ier[good.size() - 8 - 4 - 4 - 3 - 6] = 0xff;  // ier: 6 registers before the FIFO fields end
  CHECK_THROWS_CODE(load(b.uart, bad_ier), "STATE_INVALID", "ier is 255");
  // 16450 mode (FIFO off) holds one received byte, never more.
  a.uart.enqueue_input(std::vector<uint8_t>{1});
  auto one = save(a.uart);
  CHECK_EQ(one.size(), good.size() + 1);
  a.out(FCR, 0x01);
  a.uart.enqueue_input(std::vector<uint8_t>{1, 2, 3});
  auto fifo = save(a.uart);
  fifo[fifo.size() - 8 - 4 - 3 - 4 - 3] = 0;  // fifo_enabled off with 3 bytes in the receiver
  CHECK_THROWS_CODE(load(b.uart, fifo), "STATE_INVALID", "rx_fifo holds 3 bytes");
  CHECK_EQ(b.in(IER), 0);  // nothing was loaded
}

TEST(rtc_state_keeps_cmos_ram_and_a_guest_clock_that_runs_on_with_the_host) {
  RtcRig a;
  a.set(0x0b, 0x82);  // SET: the guest sets the clock to 2031-05-06 07:08:09
  a.set(0x09, 0x31);
  a.set(0x08, 0x05);
  a.set(0x07, 0x06);
  a.set(0x04, 0x07);
  a.set(0x02, 0x08);
  a.set(0x00, 0x09);
  a.set(0x0b, 0x02);  // committed
  a.set(0x40, 0xa5);  // NVRAM
  a.set(0x01, 0x30);  // alarm seconds
  a.now += 10;
  const int64_t offset = a.rtc.offset_seconds();
  CHECK(offset != 0);
  a.rtc.write(0, std::span<const uint8_t>(std::vector<uint8_t>{0x40}));  // index left at NVRAM 0x40
  auto bytes = save(a.rtc);

  RtcRig b;
  b.now = kHostTime + 10 + 3600;  // restored an hour later
  load(b.rtc, bytes);
  uint8_t v = 0;
  b.rtc.read(1, std::span<uint8_t>(&v, 1));
  CHECK_EQ(v, 0xa5);  // the index survived
  CHECK_EQ(b.rtc.offset_seconds(), offset);
  CHECK_EQ(b.get(0x00), 0x19);  // 07:08:09 + 10 s + 1 h
  CHECK_EQ(b.get(0x02), 0x08);
  CHECK_EQ(b.get(0x04), 0x08);
  CHECK_EQ(b.get(0x09), 0x31);
  CHECK_EQ(b.get(0x01), 0x30);
  CHECK_EQ(b.get(0x0b), 0x02);
  b.now += 5;
  CHECK_EQ(b.get(0x00), 0x24);  // and it keeps running
}

TEST(rtc_state_keeps_a_time_being_set) {
  RtcRig a;
  a.set(0x0b, 0x86);  // SET, binary
  a.set(0x04, 23);
  auto bytes = save(a.rtc);
  RtcRig b;
  b.now += 1000;
  load(b.rtc, bytes);
  CHECK_EQ(b.get(0x04), 23);  // frozen while SET is on
  CHECK_EQ(b.get(0x00), 56);
  b.set(0x0b, 0x06);  // commit
  b.now += 4;
  CHECK_EQ(b.get(0x00), 0);  // 23:45:56 + 4 s
  CHECK_EQ(b.get(0x02), 46);
}

TEST(rtc_state_refuses_hostile_records) {
  RtcRig a;
  auto good = save(a.rtc);
  RtcRig b;
  CHECK_THROWS_CODE(load(b.rtc, shorten_body(good, 1)), "STATE_INVALID", "truncated at cmos_ram");
  CHECK_THROWS_CODE(load(b.rtc, with_version(good, 2)), "STATE_VERSION", "version 2");
  const size_t body = 4 + 8 + 4 + 8;  // name length, "cmos-rtc", version, body length
  auto huge = good;
  huge[body + 4 + 7] = 0x40;  // offset_seconds: 2^62
  CHECK_THROWS_CODE(load(b.rtc, huge), "STATE_INVALID", "offset_seconds is 4611686018427387904");
  auto index = good;
  index[body] = 0x80;
  CHECK_THROWS_CODE(load(b.rtc, index), "STATE_INVALID", "index is 128");
  auto setting = good;
  setting[body + 12] = 1;  // setting_time without SET in status B
  CHECK_THROWS_CODE(load(b.rtc, setting), "STATE_INVALID", "setting_time disagrees");
}

TEST(i8042_state_keeps_the_command_byte_output_buffer_and_a_pending_command) {
  KbcRig a;
  a.command(0xaa);  // self test: 0x55 waits in the output buffer
  a.command(0x60);  // write command byte: the data byte has not come yet
  auto bytes = save(a.kbc);
  KbcRig b;
  load(b.kbc, bytes);
  CHECK_EQ(b.in(4) & 0x0d, 0x0d);  // output full, system flag, last write a command
  CHECK(b.kbd_irq.high());          // the reply's interrupt is driven on the fresh line
  CHECK_EQ(b.in(0), 0x55);
  b.write_data(0x20);  // completes the pending command
  b.command(0x20);
  CHECK_EQ(b.in(0), 0x20);
  b.command(0xd1);
  auto pending = save(b.kbc);
  KbcRig c;
  load(c.kbc, pending);
  c.write_data(0x00);  // output port with the reset line low
  CHECK_EQ(c.resets, 1);
}

TEST(i8042_state_keeps_keyboard_and_mouse) {
  KbcRig a;
  a.command_byte(0x07);  // both interrupts, translation off
  a.to_keyboard({0xf0, 0x01});  // scan code set 1
  a.to_keyboard({0xed, 0x04});  // caps lock LED
  a.to_mouse({0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf4});  // wheel mouse, reporting
  a.drain();
  a.kbc.key(30, true);
  a.kbc.pointer_motion(600, 0, 0, 0);  // more than the queue holds: some waits in the counters
  a.to_keyboard({0xf0});               // waiting for its argument
  CHECK_EQ(a.data(), 0x1e);
  auto bytes = save(a.kbc);

  KbcRig b;
  load(b.kbc, bytes);
  CHECK_EQ(b.kbc.keyboard_leds(), 0x04);
  std::vector<bool> aux;
  const test::Bytes got = b.drain(&aux);
  test::Bytes kbd, mouse;
  for (size_t i = 0; i < got.size(); ++i) (aux[i] ? mouse : kbd).push_back(got[i]);
  CHECK_BYTES(kbd, (test::Bytes{0xfa}));  // the f0 ack, queued before the save
  CHECK_BYTES(mouse, (test::Bytes{0x08, 0xff, 0x00, 0x00, 0x08, 0xff, 0x00, 0x00, 0x08, 0x5a, 0x00, 0x00}));
  b.write_data(0x00);  // the argument the saved keyboard waited for: report the set
  CHECK_BYTES(b.drain(), (test::Bytes{0xfa, 0x01}));
  b.to_mouse({0xf2});
  CHECK_BYTES(b.drain(), (test::Bytes{0xfa, 0x03}));
}

TEST(i8042_state_version_1_still_loads_with_devices_at_power_on) {
  state::Writer w;
  const size_t token = w.begin("i8042", 1);
  std::array<uint8_t, 32> ram{};
  ram[0] = 0x47;
  w.bytes(ram);
  w.u8(0x03);  // output port
  w.u8(0x55);  // output buffer
  w.boolean(true);
  w.boolean(true);
  w.u8(0xd1);  // pending: write output port
  w.end(token);
  KbcRig b;
  load(b.kbc, w.data());
  CHECK(b.kbd_irq.high());
  CHECK_EQ(b.in(4) & 0x2d, 0x0d);
  CHECK_EQ(b.in(0), 0x55);
  b.write_data(0x03);  // the pending output port write, reset line high
  CHECK_EQ(b.resets, 0);
  b.to_keyboard({0xf2});
  CHECK_BYTES(b.drain(), (test::Bytes{0xfa, 0xab, 0x41}));
  b.to_mouse({0xf2});
  CHECK_BYTES(b.drain(), (test::Bytes{0xfa, 0x00}));
  // Saved again it is a version 2 record.
  auto again = save(b.kbc);
  CHECK_EQ(again[4 + 5], 2);
}

TEST(i8042_state_refuses_hostile_records) {
  KbcRig a;
  auto good = save(a.kbc);
  constexpr size_t body = 4 + 5 + 4 + 8;
  constexpr size_t keyboard_body = body + 44 + 4 + 12 + 4 + 8;
  KbcRig b;
  b.kbc.key(30, true);  // state that a refused load must leave alone
  auto bad = good;
  bad[body + 36] = 0xaa;  // pending_command: self test takes no data byte
  CHECK_THROWS_CODE(load(b.kbc, bad), "STATE_INVALID", "pending_command is 170");
  auto flag = good;
  flag[body + 35] = 2;
  CHECK_THROWS_CODE(load(b.kbc, flag), "STATE_INVALID", "last_write_was_command is 2");
  auto waiting = good;
  waiting[body + 39] = 1;  // a reply waiting behind an empty buffer
  CHECK_THROWS_CODE(load(b.kbc, waiting), "STATE_INVALID", "reply_waiting");
  auto queued = good;
  queued[keyboard_body] = 17;
  CHECK_THROWS_CODE(load(b.kbc, queued), "STATE_INVALID", "queued is 17");
  auto set = good;
  set[keyboard_body + 1 + 8] = 3;
  CHECK_THROWS_CODE(load(b.kbc, set), "STATE_INVALID", "scancode_set is 3");
  CHECK_THROWS_CODE(load(b.kbc, shorten_body(good, 1)), "STATE_INVALID", "ps2-mouse");
  CHECK_THROWS_CODE(load(b.kbc, with_version(good, 7)), "STATE_VERSION", "version 7");
  CHECK_EQ(b.data(), 0x1e);  // untouched by all of that
}

TEST(acpi_sleep_state_is_an_empty_record) {
  int offs = 0;
  devices::AcpiSleep a(5, [&] { ++offs; });
  auto bytes = save(a);
  devices::AcpiSleep b(5, [&] { ++offs; });
  load(b, bytes);
  uint8_t sleep = (5 << 2) | (1 << 5);
  b.write(0, std::span<const uint8_t>(&sleep, 1));
  CHECK_EQ(offs, 1);
  auto longer = bytes;
  longer.push_back(0);
  longer[4 + 10 + 4] = 1;  // body length 1: a byte this version never writes
  CHECK_THROWS_CODE(load(b, longer), "STATE_INVALID", "1 unexpected bytes");
  CHECK_THROWS_CODE(load(b, with_version(bytes, 0)), "STATE_VERSION", "version 0");
}
