// A 16550A UART (the PC's COM1 at I/O port 0x3f8, 8 ports, IRQ 4).
//
// Registers (offset from the base): 0 RBR/THR (DLL when LCR.DLAB), 1 IER (DLM when
// LCR.DLAB), 2 IIR (read) / FCR (write), 3 LCR, 4 MCR, 5 LSR, 6 MSR, 7 SCR.
//
// Transmission is instantaneous: every THR write outside loopback hands that byte to
// on_output, and LSR.THRE/TEMT read back set right afterwards. Received bytes come from
// enqueue_input (any thread); up to 16 sit in the RX FIFO (1 with the FIFO disabled), the
// rest wait in a host-side queue capped at kMaxQueuedInput bytes (excess is dropped and
// counted) and move into the FIFO whenever the guest drains it.
//
// Interrupts follow the 16550A priorities (line status > RX data / character timeout >
// THR empty > modem status). The character-timeout indication (IIR 0xC) is reported as
// soon as the FIFO holds data below the trigger level, since there is no real timing. The
// interrupt output reaches the IrqLine only while MCR.OUT2 is set, as on PCs.
//
// Locking and callbacks:
//  - One mutex guards all register and buffer state.
//  - IrqLine::set_level is called with that mutex released, under a second mutex that only
//    serialises set_level calls so that the line sees levels in the order the state
//    changed. set_level is called only when the level changes. Conditions the guest has
//    serviced drop the line (IIR read of THR-empty, LSR/MSR read, RBR read emptying the
//    FIFO) and new ones raise it again, so edge-triggered inputs see a fresh rising edge:
//    a THR write clears and re-raises THR-empty (low then high when it is the only
//    source), and host bytes waiting behind a FIFO the guest just drained are moved in as
//    a new condition after the drop. It runs on whichever thread made the change (a vCPU
//    thread or the enqueue_input caller).
//  - In loopback (MCR bit 4) the OUT2 output is forced inactive, so the line stays low;
//    interrupt identification in IIR still works.
//  - on_output is called on the vCPU thread that wrote THR, with the state mutex released,
//    under a third mutex used only for output, so output calls never overlap. enqueue_input
//    never takes that mutex, so on_output may block on a thread that calls enqueue_input.
//  - Neither callback may call back into this Uart16550 synchronously, and set_level must
//    not wait for another thread that may be inside this Uart16550.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices {

class Uart16550 : public vmm::BusDevice {
 public:
  static constexpr uint16_t kCom1Base = 0x3f8;
  static constexpr uint64_t kRegisterCount = 8;
  static constexpr size_t kFifoSize = 16;
  static constexpr size_t kMaxQueuedInput = 1 << 20;

  Uart16550(vmm::IrqLine& irq, std::function<void(std::span<const uint8_t>)> on_output);

  // BusDevice: byte registers at offsets 0..7. A wider access is handled as consecutive
  // byte accesses (offset, offset+1, ...), as on the ISA bus; offsets >= 8 read 0xff and
  // ignore writes.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Bytes typed by the host side. Thread-safe; may be called from any thread.
  void enqueue_input(std::span<const uint8_t> bytes);

  // Power-on state: registers reset, RX FIFO and host-side queue emptied, line lowered.
  void reset();

  // Saved state: record "uart16550" with every register, the RX FIFO, the host bytes
  // queued behind it and the interrupt state. load_state then drives the IrqLine to the
  // level that state asks for, so a pending interrupt is raised again. A bad record throws
  // STATE_INVALID and changes nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

  // Host bytes dropped because the host-side queue was full (since construction).
  uint64_t dropped_input_bytes() const;
  // Bytes waiting for the guest (RX FIFO plus host-side queue).
  size_t pending_input_bytes() const;

 private:
  // What to do after the state mutex is released.
  struct Effects {
    bool levels[4] = {false, false, false, false};
    int level_count = 0;
    bool has_output = false;
    uint8_t output = 0;
  };

  uint8_t read_register(unsigned reg, Effects& fx);
  void write_register(unsigned reg, uint8_t value, Effects& fx);
  void reset_state();
  size_t fifo_capacity() const;
  void fill_fifo();
  void receive_loopback(uint8_t byte);
  uint8_t interrupt_id() const;
  void update_irq(Effects& fx);
  void set_modem_inputs(uint8_t inputs);
  void apply(std::unique_lock<std::mutex>& state_lock, const Effects& fx);

  vmm::IrqLine& irq_;
  std::function<void(std::span<const uint8_t>)> on_output_;

  mutable std::mutex mu_;       // all state below
  std::mutex irq_mu_;           // orders set_level calls; taken with mu_ held, then mu_ dropped
  std::mutex out_mu_;           // serialises on_output calls; never taken with mu_ held

  uint8_t dll_ = 0, dlm_ = 0;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t lsr_errors_ = 0;      // LSR bits 1..4 (OE, PE, FE, BI), cleared by reading LSR
  uint8_t msr_ = 0;
  uint8_t scr_ = 0;
  bool fifo_enabled_ = false;
  uint8_t fcr_trigger_bits_ = 0;  // FCR bits 6..7
  bool thr_interrupt_ = false;
  bool line_high_ = false;        // level last handed to irq_
  std::deque<uint8_t> rx_fifo_;
  std::deque<uint8_t> host_queue_;
  uint64_t dropped_ = 0;
};

}  // namespace berth::devices
