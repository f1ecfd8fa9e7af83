// The Q35 memory controller hub (MCH, 8086:29c0) at 00:00.0, with the registers OVMF
// 2022.11 and SeaBIOS 1.16 use on Q35:
//  - PCIEXBAR (0x60, 64-bit): both firmwares write kEcamBase | enable (after writing 0 to
//    disable it first). The value is kept as written (base bits 35:26, length 2:1, enable
//    0) but the ECAM stays at kEcamBase, enabled or not: another base is not honoured.
//  - PAM0..PAM6 (0x90..0x96): SeaBIOS sets them to read/write, copies itself into the
//    0xE0000..0xFFFFF shadow and then write-protects them. Stored (PAM0 bits 5:4, PAM1..6
//    bits 5:4 and 1:0); the machine is told through the PAM listener, but nothing here
//    remaps memory: the machine keeps RAM at 0xC0000..0xFFFFF.
//  - SMRAM (0x9d, power-on 0x02) and ESMRAMC (0x9e, power-on 0x38): storage only. There
//    is no SMM; OVMF builds without SMM never touch them, and SeaBIOS skips its SMM setup
//    because the PM block's SMI_EN reads with APMC_EN set (see AcpiPm).
//  - EXT_TSEG_MB (0x50, 16-bit): plain storage, so the query OVMF's SMM builds write reads
//    back unchanged ("no extended TSEG"), as on QEMU machines without one.
// OVMF also reads the device ID to tell Q35 from i440FX. The MCH has no BARs and no
// interrupt pin.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "common/state_stream.h"
#include "devices/pci/pci_function.h"

namespace berth::devices::pci {

class HostBridge final : public PciFunction {
 public:
  static constexpr uint16_t kVendorId = 0x8086;
  static constexpr uint16_t kDeviceId = 0x29c0;
  static constexpr uint32_t kClassCode = 0x060000;  // host bridge
  static constexpr uint32_t kExtTsegMb = 0x50;
  static constexpr uint32_t kPciexbar = 0x60;
  static constexpr uint64_t kPciexbarEnable = 0x1;
  static constexpr uint32_t kPam0 = 0x90;
  static constexpr uint32_t kPamCount = 7;
  static constexpr uint32_t kSmram = 0x9d;
  static constexpr uint32_t kEsmramc = 0x9e;

  using PamListener = std::function<void(const std::array<uint8_t, kPamCount>& pam)>;

  HostBridge();

  uint64_t pciexbar() const { return config_value(kPciexbar, 8); }
  std::array<uint8_t, kPamCount> pam() const;
  // Called after a guest write to a PAM register, with the registers' new values, on the
  // vCPU thread, outside the function's lock. Set before vCPUs run.
  void set_pam_listener(PamListener listener) { on_pam_ = std::move(listener); }

  // Saved state: record "q35-host-bridge" (version 1) holding the "pci-function" record.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 protected:
  void on_config_write(uint32_t offset, uint32_t size) override;

 private:
  PamListener on_pam_;
};

}  // namespace berth::devices::pci
