#include "machine/firmware_tables.h"

#include "boot/acpi.h"
#include "boot/aml.h"
#include "common/error.h"
#include "devices/input/i8042.h"

namespace berth::machine {

using boot::AcpiTable;
using boot::Aml;
using boot::append;

namespace {

constexpr uint32_t kFacsSize = 64;

// \_SB.PCI0: the host bridge's resources and the legacy interrupt routing, the ISA
// devices behind the LPC bridge, and the ECAM window reserved as a motherboard resource
// (Linux uses MMCONFIG only when something reserves it).
Aml pci_root(const FirmwarePlatform& p) {
  Aml body;
  append(body, boot::aml_name("_HID", boot::aml_eisa_id("PNP0A08")));
  append(body, boot::aml_name("_CID", boot::aml_eisa_id("PNP0A03")));
  append(body, boot::aml_name("_UID", boot::aml_integer(0)));
  Aml crs = boot::res_word_bus(0, p.ecam_last_bus);
  append(crs, boot::res_io(0xcf8, 8));
  append(crs, boot::res_word_io(0x0000, 0x0cf7));
  append(crs, boot::res_word_io(0x0d00, 0xffff));
  append(crs, boot::res_dword_memory(0x000a0000, 0x000bffff));  // legacy VGA window
  append(crs, boot::res_dword_memory(p.mmio32_start, p.mmio32_end));
  if (p.mmio64_start <= p.mmio64_end) append(crs, boot::res_qword_memory(p.mmio64_start, p.mmio64_end));
  append(body, boot::aml_name("_CRS", boot::aml_resource_template(crs)));
  // _PRT: one entry per slot and pin, straight to IOAPIC inputs (no link devices).
  std::vector<Aml> routes;
  for (uint8_t slot = 1; slot < 32; ++slot) {
    for (uint8_t pin = 1; pin <= 4; ++pin) {
      routes.push_back(boot::aml_package_of({boot::aml_dword((uint32_t{slot} << 16) | 0xffff),
                                             boot::aml_integer(pin - 1u), boot::aml_integer(0),
                                             boot::aml_integer(p.intx_gsi(slot, pin))}));
    }
  }
  append(body, boot::aml_name("_PRT", boot::aml_package_of(routes)));
  return boot::aml_device("\\_SB_.PCI0", body);
}

Aml isa_device(const std::string& name, const char* hid, const Aml& resources) {
  Aml body = boot::aml_name("_HID", boot::aml_eisa_id(hid));
  append(body, boot::aml_name("_UID", boot::aml_integer(1)));
  append(body, boot::aml_name("_CRS", boot::aml_resource_template(resources)));
  return boot::aml_device("\\_SB_.PCI0.LPC_." + name, body);
}

Aml lpc(const FirmwarePlatform& p) {
  Aml out = boot::aml_device("\\_SB_.PCI0.LPC_", boot::aml_name("_ADR", boot::aml_integer(uint32_t{p.lpc_slot} << 16)));
  Aml com1 = boot::res_io(boot::kAcpiCom1Port, 8);
  append(com1, boot::res_irq(boot::kAcpiCom1Irq));
  append(out, isa_device("COM1", "PNP0501", com1));
  Aml rtc = boot::res_io(boot::kAcpiRtcPort, 2);
  append(rtc, boot::res_irq(8));
  append(out, isa_device("RTC_", "PNP0B00", rtc));
  Aml kbd = boot::res_io(0x60, 1);
  append(kbd, boot::res_io(0x64, 1));
  append(kbd, boot::res_irq(devices::input::I8042::kKeyboardIrq));
  append(out, isa_device("KBD_", "PNP0303", kbd));
  append(out, isa_device("MOU_", "PNP0F13", boot::res_irq(devices::input::I8042::kAuxIrq)));
  return out;
}

Aml motherboard_resources(const FirmwarePlatform& p) {
  Aml body = boot::aml_name("_HID", boot::aml_eisa_id("PNP0C02"));
  append(body, boot::aml_name("_UID", boot::aml_integer(1)));
  const uint32_t ecam_size = (uint32_t{p.ecam_last_bus} + 1) << 20;
  Aml crs = boot::res_memory32_fixed(static_cast<uint32_t>(p.ecam_base), ecam_size);
  append(crs, boot::res_io(p.pm_base, 0x80));  // the PM block, so no BAR is placed over it
  append(body, boot::aml_name("_CRS", boot::aml_resource_template(crs)));
  return boot::aml_device("\\_SB_.RES0", body);
}

AcpiTable dsdt(const FirmwarePlatform& p) {
  AcpiTable t;
  t.header("DSDT", 2);
  // Name (_S5, Package (4) { type, type, 0, 0 }): the SLP_TYP for soft off.
  t.append(boot::aml_name("_S5_", boot::aml_package_of({boot::aml_integer(p.s5_sleep_type),
                                                        boot::aml_integer(p.s5_sleep_type), boot::aml_integer(0),
                                                        boot::aml_integer(0)})));
  t.append(pci_root(p));
  t.append(lpc(p));
  t.append(motherboard_resources(p));
  t.finish();
  return t;
}

// A full (not hardware-reduced) FADT: the PM block's fixed registers, the fixed power
// button, the reset register. Pointers are offsets into the tables blob, fixed up by the
// loader; the checksum is left to the loader too.
AcpiTable fadt(const FirmwarePlatform& p, uint32_t facs_at, uint32_t dsdt_at) {
  AcpiTable t;
  t.header("FACP", 6);
  t.u32(facs_at);  // FIRMWARE_CTRL
  t.u32(dsdt_at);  // DSDT
  t.u8(0);         // reserved
  t.u8(0);         // preferred PM profile: unspecified
  t.u16(p.sci_irq);
  t.u32(0);                                  // SMI_CMD: none, ACPI mode is always on
  t.u8(0); t.u8(0); t.u8(0); t.u8(0);        // ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
  t.u32(p.pm_base);                          // PM1a_EVT_BLK
  t.u32(0);                                  // PM1b_EVT_BLK
  t.u32(p.pm_base + 4u);                     // PM1a_CNT_BLK
  t.u32(0);                                  // PM1b_CNT_BLK
  t.u32(0);                                  // PM2_CNT_BLK
  t.u32(p.pm_base + 8u);                     // PM_TMR_BLK
  t.u32(p.pm_base + uint32_t{p.gpe0_offset});  // GPE0_BLK
  t.u32(0);                                  // GPE1_BLK
  t.u8(4); t.u8(2); t.u8(0); t.u8(4);        // PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN, PM_TMR_LEN
  t.u8(p.gpe0_length); t.u8(0); t.u8(0); t.u8(0);  // GPE0_BLK_LEN, GPE1_BLK_LEN, GPE1_BASE, CST_CNT
  t.u16(0x65);   // P_LVL2_LAT > 100: no C2
  t.u16(0x3e9);  // P_LVL3_LAT > 1000: no C3
  t.u16(0); t.u16(0); t.u8(0); t.u8(0);      // FLUSH_SIZE, FLUSH_STRIDE, DUTY_OFFSET, DUTY_WIDTH
  t.u8(0); t.u8(0); t.u8(0x32);              // DAY_ALRM, MON_ALRM, CENTURY (the CMOS byte)
  t.u16((1u << 0) | (1u << 1));              // IAPC_BOOT_ARCH: legacy devices, 8042
  t.u8(0);
  // Flags: WBINVD, PROC_C1, SLP_BUTTON (no fixed sleep button), RTC_S4, RESET_REG_SUP,
  // TMR_VAL_EXT for a 32-bit timer. PWR_BUTTON clear: the fixed power button is there.
  t.u32((1u << 0) | (1u << 2) | (1u << 5) | (1u << 7) | (1u << 10) | (p.pm_timer_32bit ? 1u << 8 : 0));
  boot::io_port_gas(t, p.reset_port);  // RESET_REG
  t.u8(p.reset_value);
  t.u16(0);  // ARM_BOOT_ARCH
  t.u8(3);   // FADT minor version
  t.u64(0);  // X_FIRMWARE_CTRL: FIRMWARE_CTRL says it
  t.u64(dsdt_at);  // X_DSDT
  boot::io_port_gas(t, p.pm_base, 32);      // X_PM1a_EVT_BLK
  t.zeros(12);                              // X_PM1b_EVT_BLK
  boot::io_port_gas(t, static_cast<uint16_t>(p.pm_base + 4), 16);  // X_PM1a_CNT_BLK
  t.zeros(12 * 2);                          // X_PM1b_CNT_BLK, X_PM2_CNT_BLK
  boot::io_port_gas(t, static_cast<uint16_t>(p.pm_base + 8), 32);  // X_PM_TMR_BLK
  AcpiTable gpe;
  boot::io_port_gas(gpe, static_cast<uint16_t>(p.pm_base + p.gpe0_offset), 8);
  gpe.bytes()[1] = static_cast<uint8_t>(p.gpe0_length * 8);  // the block's width in bits
  t.append(gpe.bytes());                    // X_GPE0_BLK
  t.zeros(12);                              // X_GPE1_BLK
  t.zeros(12 * 2);                          // SLEEP_CONTROL_REG, SLEEP_STATUS_REG: reduced hardware only
  t.text("BerthVMM", 8);
  t.finish();
  t.bytes()[9] = 0;
  return t;
}

AcpiTable mcfg(const FirmwarePlatform& p) {
  AcpiTable t;
  t.header("MCFG", 1);
  t.zeros(8);
  t.u64(p.ecam_base);
  t.u16(0);  // PCI segment
  t.u8(0);   // first bus
  t.u8(p.ecam_last_bus);
  t.u32(0);
  t.finish();
  return t;
}

}  // namespace

FirmwareTables build_firmware_tables(const FirmwarePlatform& p) {
  if (p.vcpu_count == 0 || p.vcpu_count > 254) {
    throw Error("BOOT_VCPU_COUNT", "ACPI tables describe 1 to 254 vCPUs, not " + std::to_string(p.vcpu_count));
  }
  if (!p.intx_gsi || p.mmio32_start > p.mmio32_end || p.ecam_base > 0xffffffffull) {
    throw Error("BOOT_ACPI", "the firmware platform's PCI windows or interrupt routing are not set");
  }
  FirmwareTables out;
  auto place = [&](const std::vector<uint8_t>& bytes) {
    out.tables.resize((out.tables.size() + 63) & ~size_t{63}, 0);
    auto at = static_cast<uint32_t>(out.tables.size());
    out.tables.insert(out.tables.end(), bytes.begin(), bytes.end());
    return at;
  };
  std::vector<uint8_t> facs(kFacsSize, 0);
  facs[0] = 'F'; facs[1] = 'A'; facs[2] = 'C'; facs[3] = 'S';
  facs[4] = kFacsSize;
  facs[32] = 2;  // version
  const uint32_t facs_at = place(facs);
  const uint32_t dsdt_at = place(dsdt(p).bytes());
  AcpiTable f = fadt(p, facs_at, dsdt_at);
  const uint32_t fadt_at = place(f.bytes());
  const uint32_t madt_at = place(boot::acpi_madt(p.vcpu_count, {{p.sci_irq, p.sci_irq, true, false}}).bytes());
  const uint32_t mcfg_at = place(mcfg(p).bytes());
  AcpiTable x;
  x.header("XSDT", 1);
  const std::vector<uint32_t> entries{fadt_at, madt_at, mcfg_at};
  for (uint32_t at : entries) x.u64(at);
  x.finish();
  x.bytes()[9] = 0;
  const uint32_t xsdt_at = place(x.bytes());

  out.pointers.push_back({kAcpiTablesFile, kAcpiTablesFile, fadt_at + 36, 4});
  out.pointers.push_back({kAcpiTablesFile, kAcpiTablesFile, fadt_at + 40, 4});
  out.pointers.push_back({kAcpiTablesFile, kAcpiTablesFile, fadt_at + 140, 8});
  for (size_t i = 0; i < entries.size(); ++i) {
    out.pointers.push_back({kAcpiTablesFile, kAcpiTablesFile, static_cast<uint32_t>(xsdt_at + 36 + 8 * i), 8});
  }
  out.checksums.push_back({kAcpiTablesFile, fadt_at + 9, fadt_at, static_cast<uint32_t>(f.size())});
  out.checksums.push_back({kAcpiTablesFile, xsdt_at + 9, xsdt_at, static_cast<uint32_t>(x.size())});

  AcpiTable r;
  r.text("RSD PTR ", 8);
  r.u8(0);  // checksum of the first 20 bytes
  r.text("BERTH", 6);
  r.u8(2);  // revision: ACPI 2.0+
  r.u32(0);  // RSDT: none, XSDT only
  r.u32(36);
  r.u64(xsdt_at);
  r.u8(0);  // extended checksum
  r.zeros(3);
  out.rsdp = r.bytes();
  out.pointers.push_back({kAcpiRsdpFile, kAcpiTablesFile, 24, 8});
  out.checksums.push_back({kAcpiRsdpFile, 8, 0, 20});
  out.checksums.push_back({kAcpiRsdpFile, 32, 0, 36});
  return out;
}

}  // namespace berth::machine
