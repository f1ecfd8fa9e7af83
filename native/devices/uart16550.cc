#include "devices/uart16550.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace berth::devices {

namespace {

// Register offsets.
constexpr unsigned kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5,
                   kMsr = 6, kScr = 7;

constexpr uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02, kIerLineStatus = 0x04,
                  kIerModemStatus = 0x08;

constexpr uint8_t kIirNone = 0x01, kIirModemStatus = 0x00, kIirThrEmpty = 0x02,
                  kIirRxData = 0x04, kIirLineStatus = 0x06, kIirCharTimeout = 0x0c,
                  kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02, kFcrTriggerMask = 0xc0;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08,
                  kMcrLoop = 0x10, kMcrMask = 0x1f;

constexpr uint8_t kLsrDataReady = 0x01, kLsrOverrun = 0x02, kLsrThrEmpty = 0x20,
                  kLsrTxEmpty = 0x40, kLsrErrorMask = 0x1e;

constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;
constexpr uint8_t kMsrDeltaCts = 0x01, kMsrDeltaDsr = 0x02, kMsrTrailingRi = 0x04,
                  kMsrDeltaDcd = 0x08, kMsrDeltaMask = 0x0f;
// With no loopback the "cable" reports carrier, data set ready and clear to send.
constexpr uint8_t kMsrIdleInputs = kMsrDcd | kMsrDsr | kMsrCts;

constexpr size_t kTriggerLevels[4] = {1, 4, 8, 14};

}  // namespace

Uart16550::Uart16550(vmm::IrqLine& irq, std::function<void(std::span<const uint8_t>)> on_output)
    : irq_(irq), on_output_(std::move(on_output)) {
  reset_state();
}

void Uart16550::reset_state() {
  dll_ = 0x0c;  // 9600 baud; the divisor is undefined at power-on on real parts
  dlm_ = 0;
  ier_ = 0;
  lcr_ = 0;
  mcr_ = 0;
  lsr_errors_ = 0;
  msr_ = kMsrIdleInputs;
  scr_ = 0;
  fifo_enabled_ = false;
  fcr_trigger_bits_ = 0;
  thr_interrupt_ = false;
  rx_fifo_.clear();
  host_queue_.clear();
}

size_t Uart16550::fifo_capacity() const { return fifo_enabled_ ? kFifoSize : 1; }

// Moves host input into the receiver while it has room. In loopback the receiver is cut
// off from the serial input, so host bytes wait.
void Uart16550::fill_fifo() {
  if (mcr_ & kMcrLoop) return;
  const size_t cap = fifo_capacity();
  while (rx_fifo_.size() < cap && !host_queue_.empty()) {
    rx_fifo_.push_back(host_queue_.front());
    host_queue_.pop_front();
  }
}

void Uart16550::receive_loopback(uint8_t byte) {
  if (rx_fifo_.size() < fifo_capacity()) {
    rx_fifo_.push_back(byte);
    return;
  }
  lsr_errors_ |= kLsrOverrun;
  // 16450 mode: the new character overwrites the holding register. FIFO mode: the
  // character in the shift register is lost and the FIFO is kept.
  if (!fifo_enabled_) rx_fifo_.back() = byte;
}

uint8_t Uart16550::interrupt_id() const {
  if ((ier_ & kIerLineStatus) && lsr_errors_) return kIirLineStatus;
  if ((ier_ & kIerRxData) && !rx_fifo_.empty()) {
    if (!fifo_enabled_) return kIirRxData;
    const size_t trigger = kTriggerLevels[fcr_trigger_bits_ >> 6];
    return rx_fifo_.size() >= trigger ? kIirRxData : kIirCharTimeout;
  }
  if ((ier_ & kIerThrEmpty) && thr_interrupt_) return kIirThrEmpty;
  if ((ier_ & kIerModemStatus) && (msr_ & kMsrDeltaMask)) return kIirModemStatus;
  return kIirNone;
}

// Records a level change for the IrqLine. The PC gates the UART's interrupt output with
// OUT2; in loopback the modem outputs (OUT2 included) are forced inactive, which closes
// that gate.
void Uart16550::update_irq(Effects& fx) {
  const bool gate = (mcr_ & kMcrOut2) && !(mcr_ & kMcrLoop);
  const bool want = gate && interrupt_id() != kIirNone;
  if (want == line_high_) return;
  line_high_ = want;
  if (fx.level_count < static_cast<int>(std::size(fx.levels))) fx.levels[fx.level_count++] = want;
}

void Uart16550::set_modem_inputs(uint8_t inputs) {
  const uint8_t old = msr_ & 0xf0;
  uint8_t delta = 0;
  if ((old ^ inputs) & kMsrCts) delta |= kMsrDeltaCts;
  if ((old ^ inputs) & kMsrDsr) delta |= kMsrDeltaDsr;
  if ((old & kMsrRi) && !(inputs & kMsrRi)) delta |= kMsrTrailingRi;
  if ((old ^ inputs) & kMsrDcd) delta |= kMsrDeltaDcd;
  msr_ = static_cast<uint8_t>(inputs | (msr_ & kMsrDeltaMask) | delta);
}

uint8_t Uart16550::read_register(unsigned reg, Effects& fx) {
  switch (reg) {
    case kRbrThr: {
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_fifo_.empty()) return 0;
      const uint8_t byte = rx_fifo_.front();
      rx_fifo_.pop_front();
      update_irq(fx);
      if (rx_fifo_.empty() && !host_queue_.empty()) {
        // The guest drained the receiver; the next host bytes arrive as a new condition
        // (the line drops above if nothing else is pending, then rises again).
        fill_fifo();
        update_irq(fx);
      }
      return byte;
    }
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIirFcr: {
      const uint8_t id = interrupt_id();
      if (id == kIirThrEmpty) {
        thr_interrupt_ = false;
        update_irq(fx);
      }
      return static_cast<uint8_t>(id | (fifo_enabled_ ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      const uint8_t value = static_cast<uint8_t>((rx_fifo_.empty() ? 0 : kLsrDataReady) |
                                                 lsr_errors_ | kLsrThrEmpty | kLsrTxEmpty);
      lsr_errors_ = 0;
      update_irq(fx);
      return value;
    }
    case kMsr: {
      const uint8_t value = msr_;
      msr_ &= static_cast<uint8_t>(~kMsrDeltaMask);
      update_irq(fx);
      return value;
    }
    case kScr:
      return scr_;
  }
  return 0xff;
}

void Uart16550::write_register(unsigned reg, uint8_t value, Effects& fx) {
  switch (reg) {
    case kRbrThr:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
        return;
      }
      // Writing THR clears the THR-empty interrupt; the byte leaves at once, so THR is
      // empty again and the interrupt comes back (a fresh edge if it was the only source).
      thr_interrupt_ = false;
      update_irq(fx);
      if (mcr_ & kMcrLoop) {
        receive_loopback(value);
      } else {
        fx.has_output = true;
        fx.output = value;
      }
      thr_interrupt_ = true;
      update_irq(fx);
      return;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      // Enabling the THR-empty interrupt while THR is empty (always, here) raises it.
      if (!(ier_ & kIerThrEmpty) && (value & kIerThrEmpty)) thr_interrupt_ = true;
      ier_ = value & 0x0f;
      update_irq(fx);
      return;
    case kIirFcr: {
      const bool enable = value & kFcrEnable;
      if (enable != fifo_enabled_) {
        // Switching between 16450 and FIFO mode empties the FIFOs.
        rx_fifo_.clear();
        fifo_enabled_ = enable;
      }
      // The other FCR bits are only programmed together with the enable bit.
      if (enable) {
        if (value & kFcrClearRx) rx_fifo_.clear();
        fcr_trigger_bits_ = value & kFcrTriggerMask;
      }
      fill_fifo();
      update_irq(fx);
      return;
    }
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      mcr_ = value & kMcrMask;
      if (mcr_ & kMcrLoop) {
        // Loopback: CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2.
        uint8_t inputs = 0;
        if (mcr_ & kMcrRts) inputs |= kMsrCts;
        if (mcr_ & kMcrDtr) inputs |= kMsrDsr;
        if (mcr_ & kMcrOut1) inputs |= kMsrRi;
        if (mcr_ & kMcrOut2) inputs |= kMsrDcd;
        set_modem_inputs(inputs);
      } else {
        set_modem_inputs(kMsrIdleInputs);
        fill_fifo();
      }
      update_irq(fx);
      return;
    }
    case kLsr:
    case kMsr:
      return;  // factory test / read-only
    case kScr:
      scr_ = value;
      return;
  }
}

void Uart16550::apply(std::unique_lock<std::mutex>& state_lock, const Effects& fx) {
  if (fx.level_count > 0) {
    // Taken before the state lock is dropped so set_level calls happen in state order.
    std::lock_guard<std::mutex> irq_lock(irq_mu_);
    state_lock.unlock();
    for (int i = 0; i < fx.level_count; ++i) irq_.set_level(fx.levels[i]);
  } else {
    state_lock.unlock();
  }
  if (fx.has_output) {
    std::lock_guard<std::mutex> out_lock(out_mu_);
    on_output_(std::span<const uint8_t>(&fx.output, 1));
  }
}

void Uart16550::read(uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t reg = offset + i;
    if (reg >= kRegisterCount) {
      data[i] = 0xff;
      continue;
    }
    Effects fx;
    std::unique_lock<std::mutex> lock(mu_);
    data[i] = read_register(static_cast<unsigned>(reg), fx);
    apply(lock, fx);
  }
}

void Uart16550::write(uint64_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t reg = offset + i;
    if (reg >= kRegisterCount) continue;
    Effects fx;
    std::unique_lock<std::mutex> lock(mu_);
    write_register(static_cast<unsigned>(reg), data[i], fx);
    apply(lock, fx);
  }
}

void Uart16550::enqueue_input(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  const size_t room = kMaxQueuedInput - std::min(kMaxQueuedInput, host_queue_.size());
  const size_t take = std::min(room, bytes.size());
  host_queue_.insert(host_queue_.end(), bytes.begin(), bytes.begin() + take);
  dropped_ += bytes.size() - take;
  fill_fifo();
  update_irq(fx);
  apply(lock, fx);
}

void Uart16550::reset() {
  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  reset_state();
  update_irq(fx);
  apply(lock, fx);
}

uint64_t Uart16550::dropped_input_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

size_t Uart16550::pending_input_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rx_fifo_.size() + host_queue_.size();
}

void Uart16550::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t token = w.begin("uart16550", 1);
  for (uint8_t reg : {dll_, dlm_, ier_, lcr_, mcr_, lsr_errors_, msr_, scr_}) w.u8(reg);
  w.boolean(fifo_enabled_);
  w.u8(fcr_trigger_bits_);
  w.boolean(thr_interrupt_);
  w.blob(std::vector<uint8_t>(rx_fifo_.begin(), rx_fifo_.end()));
  w.blob(std::vector<uint8_t>(host_queue_.begin(), host_queue_.end()));
  w.u64(dropped_);
  w.end(token);
}

void Uart16550::load_state(state::Reader& parent) {
  auto rec = parent.record("uart16550", 1);
  state::Reader& r = rec.body;
  const uint8_t dll = r.u8("dll");
  const uint8_t dlm = r.u8("dlm");
  const uint8_t ier = r.u8("ier");
  const uint8_t lcr = r.u8("lcr");
  const uint8_t mcr = r.u8("mcr");
  const uint8_t lsr_errors = r.u8("lsr_errors");
  const uint8_t msr = r.u8("msr");
  const uint8_t scr = r.u8("scr");
  const bool fifo_enabled = r.boolean("fifo_enabled");
  const uint8_t trigger_bits = r.u8("fcr_trigger_bits");
  const bool thr_interrupt = r.boolean("thr_interrupt");
  const auto rx = r.blob(kFifoSize, "rx_fifo");
  const auto queued = r.blob(kMaxQueuedInput, "host_queue");
  const uint64_t dropped = r.u64("dropped_input_bytes");
  r.expect_end();
  auto bits = [&](const char* field, uint8_t value, uint8_t allowed) {
    if (value & ~allowed) r.fail(std::string(field) + " is " + std::to_string(value) + ", with bits no guest can set");
  };
  bits("ier", ier, 0x0f);
  bits("mcr", mcr, kMcrMask);
  bits("lsr_errors", lsr_errors, kLsrErrorMask);
  bits("fcr_trigger_bits", trigger_bits, kFcrTriggerMask);
  if (!fifo_enabled && rx.size() > 1) {
    r.fail("rx_fifo holds " + std::to_string(rx.size()) + " bytes, but with the FIFO disabled the receiver holds 1");
  }

  Effects fx;
  std::unique_lock<std::mutex> lock(mu_);
  dll_ = dll;
  dlm_ = dlm;
  ier_ = ier;
  lcr_ = lcr;
  mcr_ = mcr;
  lsr_errors_ = lsr_errors;
  msr_ = msr;
  scr_ = scr;
  fifo_enabled_ = fifo_enabled;
  fcr_trigger_bits_ = trigger_bits;
  thr_interrupt_ = thr_interrupt;
  rx_fifo_.assign(rx.begin(), rx.end());
  host_queue_.assign(queued.begin(), queued.end());
  dropped_ = dropped;
  // line_high_ stays what this device last drove; the line follows the loaded state.
  update_irq(fx);
  apply(lock, fx);
}

}  // namespace berth::devices
