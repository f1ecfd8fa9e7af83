#include "devices/pci/host_bridge.h"

#include "devices/pci/q35_layout.h"

namespace berth::devices::pci {

namespace {

PciFunction::Identity mch_identity() {
  PciFunction::Identity id;
  id.vendor_id = HostBridge::kVendorId;
  id.device_id = HostBridge::kDeviceId;
  id.class_code = HostBridge::kClassCode;
  id.subsystem_vendor_id = 0x1af4;  // Red Hat, as virtual Q35 chipsets report
  id.subsystem_id = 0x1100;
  return id;
}

// PCIEXBAR: base address bits 35:26 (the length field decides how many of the low ones
// count), length 2:1, enable 0.
constexpr uint64_t kPciexbarWritable = 0x0000000ffc000007ull;
constexpr uint8_t kPam0Writable = 0x30, kPamWritable = 0x33;
constexpr uint8_t kSmramPowerOn = 0x02;  // C_BASE_SEG: compatible SMRAM at 0xA0000
constexpr uint8_t kSmramWritable = 0x78;  // D_OPEN, D_CLS, D_LCK, G_SMRAME
constexpr uint8_t kEsmramcPowerOn = 0x38;  // SM_CACHE, SM_L1, SM_L2
constexpr uint8_t kEsmramcWritable = 0x87;  // H_SMRAME, TSEG_SZ, T_EN
constexpr uint8_t kEsmramcErrorBit = 0x40;  // E_SMERR, write-1-to-clear

}  // namespace

HostBridge::HostBridge() : PciFunction(mch_identity()) {
  set_config_register(kExtTsegMb, 2, 0, 0xffff);
  set_config_register(kPciexbar, 8, kEcamBase, kPciexbarWritable);
  set_config_register(kPam0, 1, 0, kPam0Writable);
  for (uint32_t i = 1; i < kPamCount; ++i) set_config_register(kPam0 + i, 1, 0, kPamWritable);
  set_config_register(kSmram, 1, kSmramPowerOn, kSmramWritable);
  set_config_register(kEsmramc, 1, kEsmramcPowerOn, kEsmramcWritable, kEsmramcErrorBit);
}

std::array<uint8_t, HostBridge::kPamCount> HostBridge::pam() const {
  std::array<uint8_t, kPamCount> out{};
  for (uint32_t i = 0; i < kPamCount; ++i) out[i] = static_cast<uint8_t>(config_value(kPam0 + i, 1));
  return out;
}

void HostBridge::on_config_write(uint32_t offset, uint32_t size) {
  if (on_pam_ && offset < kPam0 + kPamCount && offset + size > kPam0) on_pam_(pam());
}

void HostBridge::save_state(state::Writer& w) const {
  const size_t token = w.begin("q35-host-bridge", 1);
  PciFunction::save_state(w);
  w.end(token);
}

void HostBridge::load_state(state::Reader& parent) {
  auto rec = parent.record("q35-host-bridge", 1);
  // Refuse trailing bytes before anything is loaded.
  state::Reader probe = rec.body;
  (void)probe.record("pci-function", 1);
  probe.expect_end();
  PciFunction::load_state(rec.body);
}

}  // namespace berth::devices::pci
