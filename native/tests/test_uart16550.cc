#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "devices/uart16550.h"
#include "tests/check.h"

using berth::devices::Uart16550;

namespace {

// Stands in for the interrupt controller in these unit tests: records every level the
// UART drives.
class RecordingIrqLine : public berth::vmm::IrqLine {
 public:
  void set_level(bool high) override {
    std::lock_guard<std::mutex> lock(mu_);
    levels_.push_back(high);
  }
  std::vector<bool> levels() {
    std::lock_guard<std::mutex> lock(mu_);
    return levels_;
  }
  bool high() {
    std::lock_guard<std::mutex> lock(mu_);
    return !levels_.empty() && levels_.back();
  }
  int rising_edges() {
    std::lock_guard<std::mutex> lock(mu_);
    int edges = 0;
    bool prev = false;
    for (bool l : levels_) {
      if (l && !prev) ++edges;
      prev = l;
    }
    return edges;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    levels_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<bool> levels_;
};

enum Reg : uint64_t { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3,
                      MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct Rig {
  RecordingIrqLine irq;
  std::mutex out_mu;
  std::vector<uint8_t> output;
  Uart16550 uart{irq, [this](std::span<const uint8_t> bytes) {
                   std::lock_guard<std::mutex> lock(out_mu);
                   output.insert(output.end(), bytes.begin(), bytes.end());
                 }};

  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    uart.read(reg, std::span<uint8_t>(&v, 1));
    return v;
  }
  void out(uint64_t reg, uint8_t v) { uart.write(reg, std::span<const uint8_t>(&v, 1)); }
  void input(const std::vector<uint8_t>& bytes) { uart.enqueue_input(bytes); }
};

std::vector<uint8_t> pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + i / 251);
  return v;
}

}  // namespace

TEST(uart_power_on_state) {
  Rig r;
  CHECK_EQ(r.in(IER), 0);
  CHECK_EQ(r.in(IIR), 0x01);
  CHECK_EQ(r.in(LCR), 0);
  CHECK_EQ(r.in(MCR), 0);
  CHECK_EQ(r.in(LSR), 0x60);
  CHECK_EQ(r.in(MSR), 0xb0);
  CHECK_EQ(r.in(SCR), 0);
  uint8_t beyond = 0;
  r.uart.read(8, std::span<uint8_t>(&beyond, 1));
  CHECK_EQ(beyond, 0xff);
  CHECK(r.irq.levels().empty());
}

TEST(uart_divisor_latch) {
  Rig r;
  r.out(LCR, 0x80);  // DLAB
  r.out(DLL, 0x01);  // 115200 baud
  r.out(DLM, 0x00);
  CHECK_EQ(r.in(DLL), 0x01);
  CHECK_EQ(r.in(DLM), 0x00);
  r.out(DLM, 0x04);
  CHECK_EQ(r.in(DLM), 0x04);
  uint8_t both[2] = {0, 0};
  r.uart.read(0, std::span<uint8_t>(both, 2));  // a 16-bit access reads DLL then DLM
  CHECK_EQ(both[0], 0x01);
  CHECK_EQ(both[1], 0x04);
  r.out(LCR, 0x03);  // 8N1, DLAB off: offsets 0/1 are RBR/THR and IER again
  CHECK_EQ(r.in(LCR), 0x03);
  CHECK_EQ(r.in(IER), 0);
  r.out(IER, 0x05);
  CHECK_EQ(r.in(IER), 0x05);
  r.out(THR, 'A');
  CHECK_EQ(r.output.size(), size_t{1});
  r.out(LCR, 0x83);
  CHECK_EQ(r.in(DLL), 0x01);  // untouched by the THR and IER writes
  CHECK_EQ(r.in(DLM), 0x04);
}

TEST(uart_transmit_and_scratch) {
  Rig r;
  for (char c : std::string("hi\n")) r.out(THR, static_cast<uint8_t>(c));
  CHECK_EQ(r.output.size(), size_t{3});
  CHECK_EQ(r.output[0], 'h');
  CHECK_EQ(r.output[2], '\n');
  CHECK_EQ(r.in(LSR) & 0x60, 0x60);  // THRE and TEMT right away
  r.out(SCR, 0x5a);
  CHECK_EQ(r.in(SCR), 0x5a);
  r.out(IER, 0xff);
  CHECK_EQ(r.in(IER), 0x0f);  // upper bits do not exist on a 16550A
}

TEST(uart_fifo_trigger_levels) {
  const struct { uint8_t fcr; size_t level; } cases[] = {
      {0x01, 1}, {0x41, 4}, {0x81, 8}, {0xc1, 14}};
  for (const auto& c : cases) {
    Rig r;
    r.out(FCR, static_cast<uint8_t>(c.fcr | 0x06));
    r.out(IER, 0x01);
    CHECK_EQ(r.in(IIR), 0xc1);  // FIFO enabled, nothing pending
    if (c.level > 1) {
      r.input(pattern(c.level - 1));
      CHECK_EQ(r.in(IIR), 0xcc);  // below trigger: character timeout
      CHECK_EQ(r.in(LSR) & 0x01, 0x01);
      r.input({0x42});
    } else {
      r.input({0x42});
    }
    CHECK_EQ(r.in(IIR), 0xc4);  // trigger reached: RX data available
    r.in(RBR);
    if (c.level > 1) CHECK_EQ(r.in(IIR), 0xcc);  // dropped below trigger again
    while (r.in(LSR) & 0x01) r.in(RBR);
    CHECK_EQ(r.in(IIR), 0xc1);
  }
}

TEST(uart_fifo_holds_16_and_16450_mode_holds_1) {
  Rig r;
  r.out(FCR, 0x07);
  r.input(pattern(40));
  CHECK_EQ(r.uart.pending_input_bytes(), size_t{40});
  r.out(FCR, 0x03);  // clear RX FIFO: the 16 bytes in it are gone, the queue moves in
  CHECK_EQ(r.uart.pending_input_bytes(), size_t{24});
  CHECK_EQ(r.in(RBR), pattern(40)[16]);
  r.out(FCR, 0x00);  // back to 16450 mode: FIFO emptied, holding register takes one byte
  CHECK_EQ(r.uart.pending_input_bytes(), size_t{24 - 16});
  CHECK_EQ(r.in(IIR), 0x01);  // no FIFO bits
  r.out(IER, 0x01);
  CHECK_EQ(r.in(IIR), 0x04);
  CHECK_EQ(r.in(RBR), pattern(40)[32]);
  CHECK_EQ(r.in(RBR), pattern(40)[33]);
  CHECK_EQ(r.uart.pending_input_bytes(), size_t{6});
}

TEST(uart_interrupt_priority_order) {
  Rig r;
  r.out(FCR, 0x07);   // FIFO on, trigger 1
  r.out(MCR, 0x10);   // loopback: the modem inputs now follow MCR (all off)
  CHECK_EQ(r.in(MSR), 0x0b);  // CTS, DSR and DCD fell; reading clears the deltas
  r.out(IER, 0x0f);   // all sources
  r.out(MCR, 0x13);   // loopback + DTR + RTS: DSR and CTS change -> modem status
  for (int i = 0; i < 17; ++i) r.out(THR, static_cast<uint8_t>(i));  // 17th overruns
  CHECK(r.output.empty());
  CHECK_EQ(r.in(IIR), 0xc6);  // line status first
  CHECK_EQ(r.in(LSR), 0x63);  // DR | OE | THRE | TEMT; reading clears OE
  CHECK_EQ(r.in(LSR), 0x61);
  CHECK_EQ(r.in(IIR), 0xc4);  // then received data
  for (int i = 0; i < 16; ++i) CHECK_EQ(r.in(RBR), i);  // the overrun byte was lost
  CHECK_EQ(r.in(LSR) & 0x01, 0);
  CHECK_EQ(r.in(IIR), 0xc2);  // then THR empty; this read clears it
  CHECK_EQ(r.in(IIR), 0xc0);  // then modem status
  CHECK_EQ(r.in(MSR), 0x33);  // CTS, DSR with their delta bits; reading clears deltas
  CHECK_EQ(r.in(MSR), 0x30);
  CHECK_EQ(r.in(IIR), 0xc1);
  CHECK(r.irq.levels().empty());  // loopback keeps OUT2 inactive: the line never moved
}

TEST(uart_loopback) {
  Rig r;
  r.out(MCR, 0x1a);  // loopback + OUT2 + RTS: Linux's probe expects MSR 0x90
  CHECK_EQ(r.in(MSR) & 0xf0, 0x90);
  r.out(MCR, 0x1f);
  CHECK_EQ(r.in(MSR) & 0xf0, 0xf0);
  r.out(MCR, 0x1b);  // OUT1 off: RI falls -> trailing-edge RI
  CHECK_EQ(r.in(MSR), 0xb4);
  r.input({'h'});  // host input waits while the receiver is looped back
  r.out(THR, 'x');
  CHECK(r.output.empty());
  CHECK_EQ(r.in(LSR), 0x61);
  CHECK_EQ(r.in(RBR), 'x');
  CHECK_EQ(r.in(LSR), 0x60);
  r.out(THR, 'y');
  r.out(THR, 'z');  // 16450 mode: holding register overwritten, overrun
  CHECK_EQ(r.in(LSR), 0x63);
  CHECK_EQ(r.in(RBR), 'z');
  r.out(MCR, 0x0b);  // loopback off: modem lines back to the idle cable, host byte arrives
  CHECK_EQ(r.in(MSR) & 0xf0, 0xb0);
  CHECK_EQ(r.in(RBR), 'h');
  r.out(THR, 'o');
  CHECK_EQ(r.output.size(), size_t{1});
  CHECK_EQ(r.output[0], 'o');
}

TEST(uart_irq_gated_by_out2) {
  Rig r;
  r.out(IER, 0x01);
  r.input({'a'});
  CHECK_EQ(r.in(IIR), 0x04);
  CHECK(r.irq.levels().empty());
  r.out(MCR, 0x08);
  CHECK(r.irq.levels() == std::vector<bool>({true}));
  r.out(MCR, 0x00);
  CHECK(r.irq.levels() == std::vector<bool>({true, false}));
  r.out(MCR, 0x08);
  r.in(RBR);
  CHECK(r.irq.levels() == std::vector<bool>({true, false, true, false}));
}

TEST(uart_irq_rearms_after_service) {
  Rig r;
  r.out(FCR, 0x07);
  r.out(MCR, 0x0b);  // DTR, RTS, OUT2
  r.out(IER, 0x01);
  CHECK(r.irq.levels().empty());
  r.input({'a'});
  CHECK(r.irq.high());
  r.input({'b'});  // still pending: no new edge needed, no call
  CHECK_EQ(r.irq.levels().size(), size_t{1});
  CHECK_EQ(r.in(IIR), 0xc4);
  CHECK_EQ(r.in(RBR), 'a');
  CHECK(r.irq.high());
  CHECK_EQ(r.in(RBR), 'b');
  CHECK(!r.irq.high());  // serviced: line dropped
  r.input({'c'});        // a new condition: a new rising edge
  CHECK(r.irq.levels() == std::vector<bool>({true, false, true}));
  r.in(RBR);
  r.irq.clear();

  // THR empty: raised by enabling it, cleared by reading IIR, re-raised by each THR write.
  r.out(IER, 0x03);
  CHECK(r.irq.levels() == std::vector<bool>({true}));
  CHECK_EQ(r.in(IIR), 0xc2);
  CHECK(r.irq.levels() == std::vector<bool>({true, false}));
  CHECK_EQ(r.in(IIR), 0xc1);
  r.out(THR, '1');
  CHECK(r.irq.levels() == std::vector<bool>({true, false, true}));
  r.out(THR, '2');  // pending again while high: the write drops it, the transmit raises it
  CHECK(r.irq.levels() == std::vector<bool>({true, false, true, false, true}));
  CHECK_EQ(r.irq.rising_edges(), 3);
  r.out(IER, 0x01);  // disabling the source drops the line
  CHECK(!r.irq.high());

  // Line status: raised by an overrun, dropped by reading LSR.
  r.irq.clear();
  r.out(IER, 0x04);
  r.out(MCR, 0x18);  // loopback gates the line off; make the overrun there...
  for (int i = 0; i < 17; ++i) r.out(THR, 'x');
  CHECK(r.irq.levels().empty());
  r.out(MCR, 0x08);  // ...then leave loopback: the pending line status shows
  CHECK(r.irq.levels() == std::vector<bool>({true}));
  CHECK_EQ(r.in(IIR), 0xc6);
  CHECK_EQ(r.in(LSR) & 0x02, 0x02);
  CHECK(r.irq.levels() == std::vector<bool>({true, false}));
}

TEST(uart_host_input_larger_than_fifo_in_order) {
  Rig r;
  r.out(FCR, 0xc7);  // trigger 14
  r.out(MCR, 0x08);
  r.out(IER, 0x01);
  const auto data = pattern(5000);
  r.input(std::vector<uint8_t>(data.begin(), data.begin() + 3000));
  r.input(std::vector<uint8_t>(data.begin() + 3000, data.end()));
  CHECK_EQ(r.uart.pending_input_bytes(), size_t{5000});
  std::vector<uint8_t> got;
  while (r.in(LSR) & 0x01) got.push_back(r.in(RBR));
  CHECK(got == data);
  CHECK_EQ(r.uart.dropped_input_bytes(), uint64_t{0});
  CHECK(!r.irq.high());
  // Each time the guest drained the FIFO and more bytes moved in, the line fell and rose.
  CHECK_EQ(r.irq.rising_edges(), (5000 + 15) / 16);
}

TEST(uart_host_queue_is_capped) {
  Rig r;
  std::vector<uint8_t> big(Uart16550::kMaxQueuedInput + 100, 'q');
  r.input(big);
  CHECK_EQ(r.uart.dropped_input_bytes(), uint64_t{100});
  CHECK_EQ(r.uart.pending_input_bytes(), Uart16550::kMaxQueuedInput);
  r.input({'z'});
  CHECK_EQ(r.uart.dropped_input_bytes(), uint64_t{100});  // the FIFO took a byte: room for 1
  r.input({'z'});
  CHECK_EQ(r.uart.dropped_input_bytes(), uint64_t{101});
}

TEST(uart_threaded_enqueue_while_guest_reads) {
  Rig r;
  r.out(FCR, 0x87);
  r.out(MCR, 0x08);
  r.out(IER, 0x01);
  const auto data = pattern(200000);
  std::thread producer([&] {
    size_t pos = 0, chunk = 1;
    while (pos < data.size()) {
      const size_t n = std::min(chunk, data.size() - pos);
      r.uart.enqueue_input(std::span<const uint8_t>(data.data() + pos, n));
      pos += n;
      chunk = chunk % 997 + 13;
    }
  });
  std::vector<uint8_t> got;
  got.reserve(data.size());
  while (got.size() < data.size()) {
    if (r.in(LSR) & 0x01) {
      got.push_back(r.in(RBR));
    } else {
      std::this_thread::yield();
    }
  }
  producer.join();
  CHECK(got == data);
  CHECK_EQ(r.uart.dropped_input_bytes(), uint64_t{0});
  // The line saw levels in the order the state changed: strictly alternating, ending low.
  const auto levels = r.irq.levels();
  bool ordered = !levels.empty() && levels.front();
  for (size_t i = 1; i < levels.size(); ++i) ordered = ordered && levels[i] != levels[i - 1];
  CHECK(ordered);
  CHECK(!r.irq.high());
}

TEST(uart_reset_returns_to_power_on) {
  Rig r;
  r.out(LCR, 0x83);
  r.out(DLL, 0x01);
  r.out(LCR, 0x03);
  r.out(FCR, 0xc7);
  r.out(MCR, 0x0b);
  r.out(IER, 0x0f);
  r.out(SCR, 0x77);
  r.input(pattern(100));
  CHECK(r.irq.high());
  r.uart.reset();
  CHECK(!r.irq.high());
  CHECK_EQ(r.uart.pending_input_bytes(), size_t{0});
  CHECK_EQ(r.in(IER), 0);
  CHECK_EQ(r.in(IIR), 0x01);
  CHECK_EQ(r.in(LCR), 0);
  CHECK_EQ(r.in(MCR), 0);
  CHECK_EQ(r.in(LSR), 0x60);
  CHECK_EQ(r.in(MSR), 0xb0);
  CHECK_EQ(r.in(SCR), 0);
  r.input({'k'});
  CHECK_EQ(r.in(RBR), 'k');
}
