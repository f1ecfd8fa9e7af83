// The ICH9 ACPI power-management I/O block, fixed at kBase (0x600, where both firmwares put
// PMBASE on Q35; a different PMBASE is not followed, see LpcBridge). The FADT describes it
// with the constants below. Registers (offsets from kBase):
//  0x00 PM1_STS (16): TMR_STS 0, BM_STS 4, GBL_STS 5, PWRBTN_STS 8, RTC_STS 10,
//                     PCIEXP_WAKE_STS 14, WAK_STS 15; write-1-to-clear.
//  0x02 PM1_EN  (16): TMR_EN 0, GBL_EN 5, PWRBTN_EN 8, RTC_EN 10, PCIEXP_WAKE_DIS 14.
//  0x04 PM1_CNT (32): SCI_EN (bit 0) always reads 1 (the platform is always in ACPI mode,
//                     the FADT's SMI_CMD is 0); BM_RLD 1 stored; GBL_RLS 2 and SLP_EN 13
//                     write-only; SLP_TYP 12:10 stored. SLP_EN with SLP_TYP = kS5SleepType
//                     calls on_power_off; other sleep types are ignored (only \_S5 exists).
//  0x08 PM_TMR  (32): 3.579545 MHz from the host's monotonic clock, 24 bits (FADT flag
//                     TMR_VAL_EXT = 0; bits 31:24 read 0). It never stops, not even across
//                     reset(); TMR_STS is never set (no overflow interrupt).
//  0x20 GPE0_STS (64, write-1-to-clear), 0x28 GPE0_EN (64).
//  0x30 SMI_EN (32): storage, power-on 0x20 (APMC_EN). There is no SMM: as on QEMU's q35
//                     with smm=off, APMC_EN tells SeaBIOS that SMM is already set up, so it
//                     never writes the APM port and waits forever for an SMI handler.
//  0x34 SMI_STS (32): write-1-to-clear, never set.
// Other offsets read 0 and ignore writes. Accesses of any width are handled byte by byte
// (a multi-byte timer read samples the clock once).
//
// The SCI is a level on `sci` (IRQ 9), high while (PM1_STS & PM1_EN) or (GPE0_STS &
// GPE0_EN) has a bit set. Thread-safe: one mutex guards the registers; IrqLine::set_level
// is called with it held (the line must not call back), on_power_off with it released.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices::platform {

class AcpiPm final : public vmm::BusDevice {
 public:
  static constexpr uint16_t kBase = 0x600;
  static constexpr uint64_t kPortCount = 0x80;  // ICH9 PMBASE is 128-byte aligned
  static constexpr uint32_t kSciIrq = 9;

  // Register offsets and the lengths the FADT announces.
  static constexpr uint16_t kPm1Status = 0x00, kPm1Enable = 0x02, kPm1Control = 0x04,
                            kPmTimer = 0x08, kGpe0Status = 0x20, kGpe0Enable = 0x28,
                            kSmiEnable = 0x30, kSmiStatus = 0x34;
  static constexpr uint8_t kPm1EventLength = 4;    // PM1_STS + PM1_EN
  static constexpr uint8_t kPm1ControlLength = 2;
  static constexpr uint8_t kPmTimerLength = 4;
  static constexpr uint8_t kGpe0BlockLength = 16;  // GPE0_STS + GPE0_EN
  static constexpr uint32_t kGpe0Count = 64;
  static constexpr bool kTimerIs32Bit = false;     // FADT flags bit 8 (TMR_VAL_EXT)
  static constexpr uint64_t kTimerHz = 3579545;

  // SLP_TYP for soft-off; the DSDT's \_S5 package must carry it. 0 as on QEMU's q35, and as
  // OVMF's ResetSystemLib writes on Q35 without reading the DSDT.
  static constexpr uint8_t kS5SleepType = 0;

  static constexpr uint16_t kPm1TimerStatus = 1 << 0, kPm1PowerButton = 1 << 8,
                            kPm1WakeStatus = 1 << 15;
  static constexpr uint16_t kPm1ControlSciEnable = 1 << 0, kPm1ControlSleepEnable = 1 << 13;
  static constexpr uint32_t kSmiEnableApmc = 1 << 5;

  // Default clock: the host's monotonic clock in nanoseconds.
  static uint64_t host_monotonic_ns();

  AcpiPm(vmm::IrqLine& sci, std::function<void()> on_power_off,
         std::function<uint64_t()> now_ns = host_monotonic_ns);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The power button was pressed: sets PWRBTN_STS (the SCI rises if PWRBTN_EN is set).
  void press_power_button();
  // Sets GPE0_STS bit `bit` (0..63; others are ignored).
  void raise_gpe(uint32_t bit);
  // Machine reset: registers to power-on values (the timer keeps running), SCI low.
  void reset();

  // The PM timer's value as the guest reads it.
  uint32_t timer() const;

  // Saved state: record "ich9-acpi-pm" (version 1) with the registers and the timer's
  // count, which a restored VM's timer continues from. A bad record throws STATE_INVALID
  // and changes nothing; loading drives the SCI to the loaded level.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  uint64_t ticks_locked() const;
  uint8_t read_byte_locked(uint64_t offset, uint32_t timer) const;
  // Returns true when the byte completed a soft-off request.
  bool write_byte_locked(uint64_t offset, uint8_t value);
  void update_sci_locked();
  void power_on_locked();

  vmm::IrqLine& sci_;
  std::function<void()> on_power_off_;
  std::function<uint64_t()> now_ns_;

  mutable std::mutex mu_;
  uint16_t pm1_status_ = 0;
  uint16_t pm1_enable_ = 0;
  uint16_t pm1_control_ = 0;  // BM_RLD and SLP_TYP
  uint64_t gpe0_status_ = 0;
  uint64_t gpe0_enable_ = 0;
  uint32_t smi_enable_ = 0;
  uint32_t smi_status_ = 0;
  uint64_t timer_epoch_ns_ = 0;    // clock reading where the count was timer_base_
  uint64_t timer_base_ = 0;
  bool sci_level_ = false;
};

}  // namespace berth::devices::platform
