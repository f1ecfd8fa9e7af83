#include "boot/acpi.h"

#include <cstring>
#include <string>
#include <vector>

#include "boot/aml.h"
#include "boot/layout.h"
#include "common/error.h"

namespace berth::boot {

namespace {

// A resource template: IO (Decode16, port, port, 1, count) [and IRQNoFlags () {irq}].
std::vector<uint8_t> aml_resources(uint16_t port, uint8_t count, int irq) {
  Aml res = res_io(port, count);
  if (irq >= 0) append(res, res_irq(static_cast<uint8_t>(irq)));
  return aml_resource_template(res);
}

// Device (\_SB.NAME) with _HID (an EISA id), _UID and _CRS.
std::vector<uint8_t> aml_isa_device(const char* name, const char* eisa_id, uint16_t port, uint8_t count,
                                    int irq) {
  Aml body = aml_name("_HID", aml_dword(acpi_eisa_id(eisa_id)));
  append(body, aml_name("_UID", {0x01}));  // One
  append(body, aml_name("_CRS", aml_resources(port, count, irq)));
  return aml_device(std::string("\\_SB_.") + name, body);
}

// The power button of a hardware-reduced platform: Device (\_SB.PWRB) { _HID PNP0C0C },
// and the Generic Event Device that signals it: Device (\_SB.GED_) { _HID "ACPI0013",
// _CRS Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { kAcpiGedIrq },
// Method (_EVT, 1) { Notify (\_SB.PWRB, 0x80) } }. Linux's GED driver runs _EVT on each
// edge; its button driver turns Notify 0x80 into a KEY_POWER press user space acts on.
std::vector<uint8_t> aml_power_button() {
  const std::vector<uint8_t> pwrb_path{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'W', 'R', 'B'};
  std::vector<uint8_t> button = pwrb_path;
  append(button, aml_name("_HID", aml_dword(acpi_eisa_id("PNP0C0C"))));
  append(button, aml_name("_UID", {0x00}));  // Zero
  std::vector<uint8_t> out = aml_package(0x82, button, true);

  std::vector<uint8_t> ged{'\\', 0x2e, '_', 'S', 'B', '_', 'G', 'E', 'D', '_'};
  append(ged, aml_name("_HID", {0x0d, 'A', 'C', 'P', 'I', '0', '0', '1', '3', 0x00}));  // String
  append(ged, aml_name("_UID", {0x00}));
  const uint32_t irq = kAcpiGedIrq;
  // Extended Interrupt descriptor: consumer, edge, active high, exclusive; one interrupt.
  std::vector<uint8_t> res{0x89, 0x06, 0x00, 0x03, 0x01, static_cast<uint8_t>(irq), static_cast<uint8_t>(irq >> 8),
                           static_cast<uint8_t>(irq >> 16), static_cast<uint8_t>(irq >> 24), 0x79, 0x00};
  std::vector<uint8_t> buffer{0x0a, static_cast<uint8_t>(res.size())};  // BufferSize
  append(buffer, res);
  append(ged, aml_name("_CRS", aml_package(0x11, buffer)));
  std::vector<uint8_t> evt{'_', 'E', 'V', 'T', 0x01};  // one argument, not serialized
  evt.push_back(0x86);                                  // Notify
  append(evt, pwrb_path);
  append(evt, {0x0a, 0x80});  // ByteConst 0x80: "the button was pressed"
  append(ged, aml_package(0x14, evt));  // MethodOp
  append(out, aml_package(0x82, ged, true));
  return out;
}

// Device (\_SB.VRnn) { Name (_HID, "LNRO0005") Name (_UID, n) Name (_CRS, ResourceTemplate () {
// Memory32Fixed (ReadWrite, base, size) Interrupt (ResourceConsumer, Edge, ActiveHigh,
// Exclusive) { irq } }) }: what Linux's virtio_mmio driver binds to through ACPI. Edge, as
// Berth raises a virtio interrupt as one edge (machine/virtio_slot.h).
std::vector<uint8_t> aml_virtio_mmio_device(size_t n, const AcpiMmioDevice& d) {
  const char* hex = "0123456789ABCDEF";
  std::vector<uint8_t> body{'\\', 0x2e, '_', 'S', 'B', '_', 'V', 'R', static_cast<uint8_t>(hex[(n >> 4) & 0xf]),
                            static_cast<uint8_t>(hex[n & 0xf])};
  append(body, aml_name("_HID", {0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00}));  // String
  append(body, aml_name("_UID", {0x0a, static_cast<uint8_t>(n)}));                      // ByteConst
  const auto base = static_cast<uint32_t>(d.base);
  std::vector<uint8_t> res{0x86, 0x09, 0x00, 0x01};  // Memory32Fixed, read-write
  for (uint32_t v : {base, d.size}) {
    for (int i = 0; i < 4; ++i) res.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  // Extended Interrupt descriptor: consumer, edge, active high, exclusive; one interrupt.
  append(res, {0x89, 0x06, 0x00, 0x03, 0x01, static_cast<uint8_t>(d.irq), static_cast<uint8_t>(d.irq >> 8),
               static_cast<uint8_t>(d.irq >> 16), static_cast<uint8_t>(d.irq >> 24), 0x79, 0x00});
  std::vector<uint8_t> buffer{0x0a, static_cast<uint8_t>(res.size())};  // BufferSize
  append(buffer, res);
  append(body, aml_name("_CRS", aml_package(0x11, buffer)));
  return aml_package(0x82, body, true);  // DeviceOp
}

AcpiTable dsdt(const std::vector<AcpiMmioDevice>& virtio_mmio) {
  AcpiTable t;
  t.header("DSDT", 2);
  // Name (_S5, Package (4) { 5, 5, 0, 0 }) -- the SLP_TYP values for soft off.
  const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, kAcpiS5SleepType,
                        0x0a, kAcpiS5SleepType, 0x00, 0x00};
  for (uint8_t b : s5) t.u8(b);
  // A hardware-reduced platform has no legacy PIC (Linux then maps no ISA interrupt by
  // itself): devices with an interrupt must be described here, or their drivers cannot
  // request it (Linux's 8250 driver then never transmits what user space writes).
  std::vector<uint8_t> devices;
  append(devices, aml_isa_device("COM1", "PNP0501", kAcpiCom1Port, 8, kAcpiCom1Irq));
  append(devices, aml_isa_device("RTC_", "PNP0B00", kAcpiRtcPort, 2, -1));  // no alarm interrupt
  for (size_t n = 0; n < virtio_mmio.size(); ++n) append(devices, aml_virtio_mmio_device(n, virtio_mmio[n]));
  append(devices, aml_power_button());
  for (uint8_t b : devices) t.u8(b);
  t.finish();
  return t;
}

AcpiTable fadt(uint64_t dsdt_addr) {
  AcpiTable t;
  t.header("FACP", 6);
  t.u32(0);                               // FIRMWARE_CTRL (none: no FACS in hardware-reduced mode)
  t.u32(static_cast<uint32_t>(dsdt_addr));  // DSDT
  t.zeros(1);                             // reserved
  t.u8(0);                                // preferred PM profile: unspecified
  t.u16(0);                               // SCI_INT: none
  t.bytes().resize(109, 0);               // SMI_CMD .. CENTURY: no fixed hardware in reduced mode
  t.u16(1u << 1);  // IAPC_BOOT_ARCH: an 8042 is present
  t.u8(0);         // reserved
  t.u32((1u << 20) | (1u << 4));  // flags: HW_REDUCED_ACPI, PWR_BUTTON (no fixed power button)
  t.zeros(12);  // RESET_REG (unused)
  t.u8(0);      // RESET_VALUE
  t.u16(0);     // ARM_BOOT_ARCH
  t.u8(3);      // FADT minor version (6.3)
  t.u64(0);     // X_FIRMWARE_CTRL
  t.u64(dsdt_addr);  // X_DSDT
  t.zeros(12 * 8);   // X_PM1a_EVT_BLK .. X_GPE1_BLK: none
  io_port_gas(t, kAcpiSleepControlPort);
  io_port_gas(t, kAcpiSleepStatusPort);
  t.text("BerthVMM", 8);  // hypervisor vendor identity
  t.finish();
  return t;
}

}  // namespace

AcpiTable acpi_madt(uint32_t vcpu_count, const std::vector<AcpiIrqOverride>& overrides) {
  AcpiTable t;
  t.header("APIC", 4);
  t.u32(static_cast<uint32_t>(kLocalApicAddr));
  t.u32(1);  // PCAT_COMPAT: there are 8259s too (masked by ACPI-aware guests)
  for (uint32_t i = 0; i < vcpu_count; ++i) {
    t.u8(0);  // processor local APIC
    t.u8(8);
    t.u8(static_cast<uint8_t>(i));  // ACPI processor UID
    t.u8(static_cast<uint8_t>(i));  // APIC ID
    t.u32(1);                       // enabled
  }
  t.u8(1);  // I/O APIC
  t.u8(12);
  t.u8(static_cast<uint8_t>(vcpu_count));  // IOAPIC ID, after the CPUs (as in the MP table)
  t.u8(0);
  t.u32(static_cast<uint32_t>(kIoApicAddr));
  t.u32(0);  // GSI base
  for (const auto& o : overrides) {
    t.u8(2);  // interrupt source override
    t.u8(10);
    t.u8(0);  // ISA bus
    t.u8(o.isa_irq);
    t.u32(o.gsi);
    // MPS INTI flags: polarity (bits 0-1: 1 high, 3 low), trigger (bits 2-3: 1 edge, 3 level).
    t.u16(static_cast<uint16_t>((o.active_low ? 3 : 1) | ((o.level ? 3 : 1) << 2)));
  }
  t.u8(4);  // local APIC NMI on LINT1 of every processor
  t.u8(6);
  t.u8(0xff);
  t.u16(0);
  t.u8(1);
  t.finish();
  return t;
}

uint32_t acpi_eisa_id(const char* id) {
  auto hex = [](char c) -> uint32_t { return static_cast<uint32_t>(c <= '9' ? c - '0' : c - 'A' + 10); };
  const uint32_t v = ((static_cast<uint32_t>(id[0] - 0x40) & 0x1f) << 26) |
                     ((static_cast<uint32_t>(id[1] - 0x40) & 0x1f) << 21) |
                     ((static_cast<uint32_t>(id[2] - 0x40) & 0x1f) << 16) | (hex(id[3]) << 12) |
                     (hex(id[4]) << 8) | (hex(id[5]) << 4) | hex(id[6]);
  // Stored big-endian: the bytes in memory read as the compressed id from its top down.
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24);
}

uint64_t write_acpi_tables(vmm::GuestMemory& mem, uint32_t vcpu_count,
                           const std::vector<AcpiMmioDevice>& virtio_mmio) {
  if (vcpu_count == 0 || vcpu_count > 254) {
    throw Error("BOOT_VCPU_COUNT", "ACPI tables describe 1 to 254 vCPUs, not " + std::to_string(vcpu_count));
  }
  if (virtio_mmio.size() > kAcpiMaxMmioDevices) {
    throw Error("BOOT_ACPI", "ACPI tables describe at most " + std::to_string(kAcpiMaxMmioDevices) +
                                 " virtio-mmio devices, not " + std::to_string(virtio_mmio.size()));
  }
  for (const auto& d : virtio_mmio) {
    if (d.base > 0xffffffffull - d.size) throw Error("BOOT_ACPI", "a virtio-mmio window above 4 GiB");
  }
  // RSDP (36 bytes) at kAcpiAddr, then the tables at 64-byte alignment.
  uint64_t next = kAcpiAddr + 64;
  auto place = [&](AcpiTable& t) {
    uint64_t at = next;
    if (at + t.size() > kAcpiEnd) throw Error("BOOT_ACPI", "ACPI tables do not fit their area");
    mem.write(at, t.bytes());
    next = (at + t.size() + 63) & ~uint64_t{63};
    return at;
  };
  AcpiTable d = dsdt(virtio_mmio);
  uint64_t dsdt_addr = place(d);
  AcpiTable f = fadt(dsdt_addr);
  uint64_t fadt_addr = place(f);
  AcpiTable m = acpi_madt(vcpu_count, {});
  uint64_t madt_addr = place(m);
  AcpiTable x;
  x.header("XSDT", 1);
  x.u64(fadt_addr);
  x.u64(madt_addr);
  x.finish();
  uint64_t xsdt_addr = place(x);

  AcpiTable r;
  r.text("RSD PTR ", 8);
  r.u8(0);  // checksum of the first 20 bytes
  r.text("BERTH", 6);
  r.u8(2);  // revision: ACPI 2.0+
  r.u32(0);  // RSDT address: none, XSDT only
  r.u32(36);
  r.u64(xsdt_addr);
  r.u8(0);  // extended checksum
  r.zeros(3);
  r.bytes()[8] = r.checksum(0, 20);
  r.bytes()[32] = r.checksum(0, 36);
  mem.write(kAcpiAddr, r.bytes());
  return kAcpiAddr;
}

}  // namespace berth::boot
