#include "boot/acpi.h"

#include <cstring>
#include <string>
#include <vector>

#include "boot/layout.h"
#include "common/error.h"

namespace berth::boot {

namespace {

// A table under construction, little-endian.
class Table {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v) { for (int i = 0; i < 2; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void u32(uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void u64(uint64_t v) { for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void text(const char* s, size_t n) {
    size_t len = std::strlen(s);
    for (size_t i = 0; i < n; ++i) u8(i < len ? static_cast<uint8_t>(s[i]) : ' ');
  }
  void zeros(size_t n) { bytes_.insert(bytes_.end(), n, 0); }
  void put_u32(size_t at, uint32_t v) { for (int i = 0; i < 4; ++i) bytes_[at + i] = static_cast<uint8_t>(v >> (8 * i)); }
  size_t size() const { return bytes_.size(); }
  std::vector<uint8_t>& bytes() { return bytes_; }

  // The 36-byte System Description Table header; length and checksum are filled by finish().
  void header(const char* signature, uint8_t revision) {
    text(signature, 4);
    u32(0);  // length
    u8(revision);
    u8(0);  // checksum
    text("BERTH", 6);
    text("BERTHVM", 8);
    u32(1);  // OEM revision
    text("BRTH", 4);
    u32(1);  // creator revision
  }
  void finish() {
    put_u32(4, static_cast<uint32_t>(bytes_.size()));
    bytes_[9] = checksum(0, bytes_.size());
  }
  uint8_t checksum(size_t from, size_t to) const {
    uint8_t sum = 0;
    for (size_t i = from; i < to; ++i) sum = static_cast<uint8_t>(sum + bytes_[i]);
    return static_cast<uint8_t>(-sum);
  }

 private:
  std::vector<uint8_t> bytes_;
};

// A Generic Address Structure for one I/O port byte.
void io_port_gas(Table& t, uint16_t port) {
  t.u8(1);  // system I/O space
  t.u8(8);  // register bit width
  t.u8(0);  // bit offset
  t.u8(1);  // byte access
  t.u64(port);
}

Table dsdt() {
  Table t;
  t.header("DSDT", 2);
  // AML: Name (_S5, Package (4) { 5, 5, 0, 0 }) -- the SLP_TYP values for soft off.
  const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, kAcpiS5SleepType,
                        0x0a, kAcpiS5SleepType, 0x00, 0x00};
  for (uint8_t b : s5) t.u8(b);
  t.finish();
  return t;
}

Table fadt(uint64_t dsdt_addr) {
  Table t;
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

Table madt(uint32_t vcpu_count) {
  Table t;
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
  t.u8(4);   // local APIC NMI on LINT1 of every processor
  t.u8(6);
  t.u8(0xff);
  t.u16(0);
  t.u8(1);
  t.finish();
  return t;
}

}  // namespace

uint64_t write_acpi_tables(vmm::GuestMemory& mem, uint32_t vcpu_count) {
  if (vcpu_count == 0 || vcpu_count > 254) {
    throw Error("BOOT_VCPU_COUNT", "ACPI tables describe 1 to 254 vCPUs, not " + std::to_string(vcpu_count));
  }
  // RSDP (36 bytes) at kAcpiAddr, then the tables at 64-byte alignment.
  uint64_t next = kAcpiAddr + 64;
  auto place = [&](Table& t) {
    uint64_t at = next;
    if (at + t.size() > kAcpiEnd) throw Error("BOOT_ACPI", "ACPI tables do not fit their area");
    mem.write(at, t.bytes());
    next = (at + t.size() + 63) & ~uint64_t{63};
    return at;
  };
  Table d = dsdt();
  uint64_t dsdt_addr = place(d);
  Table f = fadt(dsdt_addr);
  uint64_t fadt_addr = place(f);
  Table m = madt(vcpu_count);
  uint64_t madt_addr = place(m);
  Table x;
  x.header("XSDT", 1);
  x.u64(fadt_addr);
  x.u64(madt_addr);
  x.finish();
  uint64_t xsdt_addr = place(x);

  Table r;
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
