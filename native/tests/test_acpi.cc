// The ACPI tables, parsed back the way a guest reads them.
#include <cstring>
#include <string>
#include <vector>

#include "boot/acpi.h"
#include "tests/check.h"
#include "vmm/guest_memory.h"

using namespace berth;

namespace {

uint8_t sum(vmm::GuestMemory& mem, uint64_t at, uint64_t len) {
  uint8_t s = 0;
  for (uint8_t b : mem.slice(at, len)) s = static_cast<uint8_t>(s + b);
  return s;
}

std::string sig(vmm::GuestMemory& mem, uint64_t at) {
  auto b = mem.slice(at, 4);
  return std::string(b.begin(), b.end());
}

// The DSDT's AML (after its 36-byte header) as a guest finds it: RSDP -> XSDT -> FADT -> DSDT;
// its checksum checked on the way.
std::string dsdt_aml(vmm::GuestMemory& mem) {
  uint64_t xsdt = mem.read_obj<uint64_t>(boot::kAcpiAddr + 24);
  uint64_t fadt = mem.read_obj<uint64_t>(xsdt + 36);
  uint64_t dsdt = mem.read_obj<uint64_t>(fadt + 140);
  uint32_t dlen = mem.read_obj<uint32_t>(dsdt + 4);
  CHECK_EQ(sum(mem, dsdt, dlen), 0);
  auto aml = mem.slice(dsdt + 36, dlen - 36);
  return std::string(aml.begin(), aml.end());
}

}  // namespace

TEST(acpi_tables_parse_back_with_valid_checksums) {
  vmm::GuestMemory mem(64ull << 20);
  uint64_t rsdp = boot::write_acpi_tables(mem, 3);
  CHECK_EQ(rsdp, boot::kAcpiAddr);
  auto r = mem.slice(rsdp, 36);
  CHECK(std::memcmp(r.data(), "RSD PTR ", 8) == 0);
  CHECK_EQ(sum(mem, rsdp, 20), 0);
  CHECK_EQ(sum(mem, rsdp, 36), 0);
  CHECK_EQ(r[15], 2);  // revision
  uint64_t xsdt = mem.read_obj<uint64_t>(rsdp + 24);
  CHECK(sig(mem, xsdt) == "XSDT");
  uint32_t xlen = mem.read_obj<uint32_t>(xsdt + 4);
  CHECK_EQ(sum(mem, xsdt, xlen), 0);
  CHECK_EQ(xlen, 36u + 16u);

  uint64_t fadt = mem.read_obj<uint64_t>(xsdt + 36);
  uint64_t madt = mem.read_obj<uint64_t>(xsdt + 44);
  CHECK(sig(mem, fadt) == "FACP");
  CHECK_EQ(mem.read_obj<uint32_t>(fadt + 4), 276u);
  CHECK_EQ(sum(mem, fadt, 276), 0);
  CHECK(mem.read_obj<uint32_t>(fadt + 112) & (1u << 20));  // hardware-reduced
  CHECK_EQ(mem.read_obj<uint8_t>(fadt + 244), 1);          // sleep control: system I/O
  CHECK_EQ(mem.read_obj<uint64_t>(fadt + 248), uint64_t{boot::kAcpiSleepControlPort});
  CHECK_EQ(mem.read_obj<uint64_t>(fadt + 260), uint64_t{boot::kAcpiSleepStatusPort});
  uint64_t dsdt = mem.read_obj<uint64_t>(fadt + 140);
  CHECK_EQ(uint64_t{mem.read_obj<uint32_t>(fadt + 40)}, dsdt);
  CHECK(sig(mem, dsdt) == "DSDT");
  uint32_t dlen = mem.read_obj<uint32_t>(dsdt + 4);
  CHECK_EQ(sum(mem, dsdt, dlen), 0);
  auto aml = mem.slice(dsdt + 36, dlen - 36);
  CHECK(std::string(aml.begin(), aml.end()).find("_S5_") != std::string::npos);

  CHECK(sig(mem, madt) == "APIC");
  uint32_t mlen = mem.read_obj<uint32_t>(madt + 4);
  CHECK_EQ(sum(mem, madt, mlen), 0);
  CHECK_EQ(mem.read_obj<uint32_t>(madt + 36), 0xfee00000u);
  int cpus = 0, ioapics = 0;
  for (uint64_t at = madt + 44; at < madt + mlen;) {
    uint8_t type = mem.read_obj<uint8_t>(at), len = mem.read_obj<uint8_t>(at + 1);
    CHECK(len >= 2);
    if (type == 0) {
      CHECK_EQ(mem.read_obj<uint8_t>(at + 3), cpus);  // APIC ID = vCPU index
      ++cpus;
    }
    if (type == 1) {
      ++ioapics;
      CHECK_EQ(mem.read_obj<uint32_t>(at + 4), 0xfec00000u);
    }
    at += len;
  }
  CHECK_EQ(cpus, 3);
  CHECK_EQ(ioapics, 1);
}

TEST(acpi_tables_fit_the_largest_vm_and_refuse_impossible_counts) {
  vmm::GuestMemory mem(64ull << 20);
  boot::write_acpi_tables(mem, 254);
  CHECK_THROWS_CODE(boot::write_acpi_tables(mem, 0), "BOOT_VCPU_COUNT", "1 to 254");
  CHECK_THROWS_CODE(boot::write_acpi_tables(mem, 255), "BOOT_VCPU_COUNT", "not 255");
}

TEST(acpi_eisa_ids_compress_like_aml_eisaid) {
  CHECK_EQ(boot::acpi_eisa_id("PNP0501"), 0x0105d041u);
  CHECK_EQ(boot::acpi_eisa_id("PNP0B00"), 0x000bd041u);
  CHECK_EQ(boot::acpi_eisa_id("PNP0303"), 0x0303d041u);
}

// A hardware-reduced platform has no legacy PIC, so Linux maps an ISA interrupt only for a
// device the DSDT describes: COM1 must be there with IRQ 4, or its driver never transmits.
TEST(acpi_dsdt_describes_com1_with_its_interrupt_and_the_rtc) {
  vmm::GuestMemory mem(64ull << 20);
  boot::write_acpi_tables(mem, 1);
  const std::string s = dsdt_aml(mem);

  // Device (\_SB.COM1): DeviceOp, a one-byte PkgLength covering the rest of the device.
  size_t at = s.find("\\._SB_COM1");
  CHECK(at != std::string::npos);
  CHECK(at >= 3);
  CHECK_EQ(static_cast<uint8_t>(s[at - 3]), 0x5b);
  CHECK_EQ(static_cast<uint8_t>(s[at - 2]), 0x82);
  const size_t pkg = static_cast<uint8_t>(s[at - 1]);
  CHECK(pkg < 0x40);
  CHECK_EQ(at - 1 + pkg, s.find("\x5b\x82", at));  // the RTC's DeviceOp follows at once
  const std::string dev = s.substr(at, pkg - 1);
  // _HID EisaId ("PNP0501"), then _CRS: IO (Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags () {4}.
  CHECK(dev.find(std::string("_HID\x0c\x41\xd0\x05\x01", 9)) != std::string::npos);
  CHECK(dev.find(std::string("\x47\x01\xf8\x03\xf8\x03\x01\x08\x22\x10\x00\x79\x00", 13)) != std::string::npos);

  size_t rtc = s.find("\\._SB_RTC_");
  CHECK(rtc != std::string::npos);
  const std::string rtc_dev = s.substr(rtc, static_cast<uint8_t>(s[rtc - 1]) - 1);
  CHECK(rtc_dev.find(std::string("_HID\x0c\x41\xd0\x0b\x00", 9)) != std::string::npos);
  // IO (Decode16, 0x70, 0x70, 1, 2) and no interrupt: the RTC raises none.
  CHECK(rtc_dev.find(std::string("\x47\x01\x70\x00\x70\x00\x01\x02\x79\x00", 10)) != std::string::npos);
  CHECK(rtc_dev.find('\x22') == std::string::npos);
}

// The power button the services press for Shut Down: Device (\_SB.PWRB) with _HID PNP0C0C,
// and the Generic Event Device whose one edge-triggered interrupt runs _EVT, which notifies
// the button with 0x80 ("pressed").
TEST(acpi_dsdt_has_a_power_button_behind_a_generic_event_device) {
  vmm::GuestMemory mem(64ull << 20);
  boot::write_acpi_tables(mem, 1);
  const std::string s = dsdt_aml(mem);

  // Device (\_SB.PWRB) { Name (_HID, EisaId ("PNP0C0C")) Name (_UID, Zero) }, whole.
  size_t button = s.find("\\._SB_PWRB\x08_HID");
  CHECK(button != std::string::npos);
  CHECK_EQ(static_cast<uint8_t>(s[button - 3]), 0x5b);
  CHECK_EQ(static_cast<uint8_t>(s[button - 2]), 0x82);
  const size_t button_len = static_cast<uint8_t>(s[button - 1]);
  CHECK(s.substr(button, button_len - 1) ==
        std::string("\\._SB_PWRB\x08_HID\x0c\x41\xd0\x0c\x0c\x08_UID\x00", 26));

  // Device (\_SB.GED_): the string _HID, the interrupt and the method, in one package.
  // Its body is over 63 bytes, so its PkgLength takes two bytes: low nibble, then the rest.
  size_t ged = s.find("\\._SB_GED_");
  CHECK(ged != std::string::npos);
  CHECK_EQ(static_cast<uint8_t>(s[ged - 3]), 0x82);
  const uint8_t lead = static_cast<uint8_t>(s[ged - 2]);
  CHECK_EQ(lead >> 6, 1);
  const size_t ged_len = (lead & 0x0fu) | (size_t{static_cast<uint8_t>(s[ged - 1])} << 4);
  CHECK_EQ(ged - 2 + ged_len, s.size());  // the last object of the DSDT
  const std::string dev = s.substr(ged, ged_len - 2);
  CHECK(dev.find(std::string("_HID\x0d" "ACPI0013\x00", 14)) != std::string::npos);
  // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 13 }, then the end tag.
  const std::string irq{'\x89', '\x06', '\x00', '\x03', '\x01', static_cast<char>(boot::kAcpiGedIrq), '\0', '\0', '\0',
                        '\x79', '\x00'};
  CHECK(dev.find("_CRS\x11") != std::string::npos);
  CHECK(dev.find(irq) != std::string::npos);
  // Method (_EVT, 1) { Notify (\_SB.PWRB, 0x80) }
  CHECK(dev.find(std::string("\x14\x13_EVT\x01\x86\\._SB_PWRB\x0a\x80", 20)) != std::string::npos);
}

// Kernels built without virtio_mmio's command-line devices (Debian's cloud kernel) find
// virtio-mmio devices only in ACPI: each one is Device (\_SB.VRnn) with _HID "LNRO0005", its
// register window and its edge-triggered interrupt; the GED stays the DSDT's last object.
TEST(acpi_dsdt_names_each_virtio_mmio_device) {
  vmm::GuestMemory mem(64ull << 20);
  boot::write_acpi_tables(mem, 2, {{0xd0000000, 0x200, 5}, {0xd0001000, 0x200, 6}});
  const std::string s = dsdt_aml(mem);
  for (int n = 0; n < 2; ++n) {
    const std::string name = std::string("\\._SB_VR0") + static_cast<char>('0' + n);
    size_t at = s.find(name);
    CHECK(at != std::string::npos);
    // DeviceOp, then a two-byte PkgLength (the body is over 63 bytes): low nibble, then the rest.
    CHECK_EQ(static_cast<uint8_t>(s[at - 4]), 0x5b);
    CHECK_EQ(static_cast<uint8_t>(s[at - 3]), 0x82);
    const uint8_t lead = static_cast<uint8_t>(s[at - 2]);
    CHECK_EQ(lead >> 6, 1);
    const size_t pkg = (lead & 0x0fu) | (size_t{static_cast<uint8_t>(s[at - 1])} << 4);
    const std::string dev = s.substr(at, pkg - 2);
    CHECK_EQ(dev.size(), pkg - 2);
    CHECK(dev.find(std::string("_HID\x0d" "LNRO0005\x00", 14)) != std::string::npos);
    CHECK(dev.find(std::string("_UID\x0a", 5) + static_cast<char>(n)) != std::string::npos);
    // Memory32Fixed (ReadWrite, 0xD000n000, 0x200), then Interrupt (..., Edge, ActiveHigh, ...) {5 + n}.
    const std::string res{'\x86', '\x09', '\x00', '\x01', '\x00', static_cast<char>(n * 0x10), '\x00', '\xd0',
                          '\x00', '\x02', '\x00', '\x00', '\x89', '\x06', '\x00', '\x03', '\x01',
                          static_cast<char>(5 + n), '\0', '\0', '\0', '\x79', '\x00'};
    CHECK(dev.find(res) != std::string::npos);
  }
  CHECK(s.find("\\._SB_VR02") == std::string::npos);
  size_t ged = s.find("\\._SB_GED_");
  CHECK(ged != std::string::npos);
  const size_t ged_len = (static_cast<uint8_t>(s[ged - 2]) & 0x0fu) | (size_t{static_cast<uint8_t>(s[ged - 1])} << 4);
  CHECK_EQ(ged - 2 + ged_len, s.size());

  // None without devices; more than the tables can name is refused.
  vmm::GuestMemory none(64ull << 20);
  boot::write_acpi_tables(none, 1);
  CHECK(dsdt_aml(none).find("LNRO0005") == std::string::npos);
  std::vector<boot::AcpiMmioDevice> many(boot::kAcpiMaxMmioDevices + 1, {0xd0000000, 0x200, 5});
  CHECK_THROWS_CODE(boot::write_acpi_tables(none, 1, many), "BOOT_ACPI", "at most");
}
