#include "devices/pci/lpc.h"

namespace berth::devices::pci {

namespace {

PciFunction::Identity lpc_identity() {
  PciFunction::Identity id;
  id.vendor_id = LpcBridge::kVendorId;
  id.device_id = LpcBridge::kDeviceId;
  id.revision = LpcBridge::kRevision;
  id.class_code = LpcBridge::kClassCode;
  id.subsystem_vendor_id = 0x1af4;
  id.subsystem_id = 0x1100;
  return id;
}

constexpr uint32_t kPmBaseIoSpace = 0x1;       // RTE: reads 1
constexpr uint32_t kPmBaseWritable = 0xff80;   // 128-byte aligned, below 64 KiB
constexpr uint8_t kAcpiControlWritable = 0x87;  // ACPI_EN, SCI_IRQ_SEL
constexpr uint8_t kPirqDisabled = 0x80;
constexpr uint8_t kPirqWritable = 0x8f;
constexpr uint32_t kRcbaWritable = 0xffffc001;
constexpr uint32_t kPirqLinks = 8;

}  // namespace

LpcBridge::LpcBridge() : PciFunction(lpc_identity()) {
  set_config_register(kPmBaseRegister, 4, kPmBaseIoSpace, kPmBaseWritable);
  set_config_register(kAcpiControl, 1, 0, kAcpiControlWritable);
  for (uint32_t i = 0; i < 4; ++i) {
    set_config_register(kPirqARoute + i, 1, kPirqDisabled, kPirqWritable);
    set_config_register(kPirqERoute + i, 1, kPirqDisabled, kPirqWritable);
  }
  set_config_register(kGenPmcon1, 2, 0, 0xffff);
  set_config_register(kGenPmcon2, 1, 0, 0xff);
  set_config_register(kGenPmcon3, 2, 0, 0xffff);
  set_config_register(kRcba, 4, 0, kRcbaWritable);
}

uint16_t LpcBridge::pm_base() const {
  return static_cast<uint16_t>(config_value(kPmBaseRegister, 4) & kPmBaseWritable);
}

bool LpcBridge::acpi_enabled() const { return config_value(kAcpiControl, 1) & kAcpiEnable; }

uint8_t LpcBridge::pirq_route(uint32_t link) const {
  if (link >= kPirqLinks) return kPirqDisabled;
  return static_cast<uint8_t>(config_value(link < 4 ? kPirqARoute + link : kPirqERoute + link - 4, 1));
}

void LpcBridge::on_config_write(uint32_t offset, uint32_t size) {
  const bool pm = offset < kPmBaseRegister + 4 && offset + size > kPmBaseRegister;
  const bool acpi = offset <= kAcpiControl && offset + size > kAcpiControl;
  if (on_pm_ && (pm || acpi)) on_pm_(pm_base(), acpi_enabled());
}

void LpcBridge::save_state(state::Writer& w) const {
  const size_t token = w.begin("ich9-lpc", 1);
  PciFunction::save_state(w);
  w.end(token);
}

void LpcBridge::load_state(state::Reader& parent) {
  auto rec = parent.record("ich9-lpc", 1);
  state::Reader probe = rec.body;  // refuse trailing bytes before anything is loaded
  (void)probe.record("pci-function", 1);
  probe.expect_end();
  PciFunction::load_state(rec.body);
}

}  // namespace berth::devices::pci
