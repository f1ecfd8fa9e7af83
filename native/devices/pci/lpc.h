// The ICH9 LPC/ISA bridge (8086:2918, class 0x060100) at 00:1f.0. OVMF's SioBusDxe binds to
// it (ISA bridge class, I/O and memory decoding enabled) to enumerate COM1; both firmwares
// program the chipset registers below, which this function keeps:
//  - PMBASE (0x40): bits 15:7 of the ACPI PM block's I/O base, bit 0 reads 1 (I/O space).
//    Both firmwares write 0x600 (SeaBIOS only when fw_cfg offers etc/table-loader; without
//    it SeaBIOS uses 0xB000). The PM block itself is fixed at kPmBase (see AcpiPm): another
//    base is stored and reported to the PM listener, not decoded.
//  - ACPI_CNTL (0x44): ACPI_EN (bit 7) and SCI_IRQ_SEL (2:0). Stored; the SCI is IRQ 9.
//  - PIRQA..D_ROUT (0x60..0x63) and PIRQE..H_ROUT (0x68..0x6b): power-on 0x80 (routing
//    disabled), bits 7 and 3:0 writable. Stored: the platform routes INTx to IOAPIC inputs
//    16..23 (intx_gsi), not through PIRQ links to the 8259s, so a guest using the PIC
//    without ACPI gets no PCI INTx interrupts.
//  - GEN_PMCON_1/2/3 (0xa0, 0xa2, 0xa4): storage (SMI_LOCK is not enforced).
//  - RCBA (0xf0): base bits 31:14 and enable (bit 0) stored; the 16 KiB root complex
//    register block is not emulated (the firmwares only reserve its range, at 0xFED1C000).
// The TCO watchdog, GPIO and the LPC decode ranges are not emulated.
#pragma once

#include <cstdint>
#include <functional>

#include "common/state_stream.h"
#include "devices/pci/pci_function.h"

namespace berth::devices::pci {

class LpcBridge final : public PciFunction {
 public:
  static constexpr uint16_t kVendorId = 0x8086;
  static constexpr uint16_t kDeviceId = 0x2918;
  static constexpr uint8_t kRevision = 0x02;
  static constexpr uint32_t kClassCode = 0x060100;  // ISA bridge
  static constexpr uint32_t kPmBaseRegister = 0x40;
  static constexpr uint32_t kAcpiControl = 0x44;
  static constexpr uint8_t kAcpiEnable = 0x80;
  static constexpr uint32_t kPirqARoute = 0x60;
  static constexpr uint32_t kPirqERoute = 0x68;
  static constexpr uint32_t kGenPmcon1 = 0xa0;
  static constexpr uint32_t kGenPmcon2 = 0xa2;
  static constexpr uint32_t kGenPmcon3 = 0xa4;
  static constexpr uint32_t kRcba = 0xf0;
  static constexpr uint32_t kRcbaSize = 16 * 1024;

  // base: PMBASE bits 15:7; enabled: ACPI_CNTL's ACPI_EN.
  using PmListener = std::function<void(uint16_t base, bool enabled)>;

  LpcBridge();

  uint16_t pm_base() const;
  bool acpi_enabled() const;
  // PIRQ route register `link` (0..7 for A..H).
  uint8_t pirq_route(uint32_t link) const;
  uint32_t rcba() const { return static_cast<uint32_t>(config_value(kRcba, 4)); }
  // Called after a guest write to PMBASE or ACPI_CNTL, on the vCPU thread, outside the
  // function's lock. Set before vCPUs run.
  void set_pm_listener(PmListener listener) { on_pm_ = std::move(listener); }

  // Saved state: record "ich9-lpc" (version 1) holding the "pci-function" record.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 protected:
  void on_config_write(uint32_t offset, uint32_t size) override;

 private:
  PmListener on_pm_;
};

}  // namespace berth::devices::pci
