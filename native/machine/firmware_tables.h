// The ACPI tables of a firmware-booted VM (the Q35-like platform): built here from a
// description of the machine, and handed to the firmware through fw_cfg as two blobs
// ("etc/acpi/tables", "etc/acpi/rsdp") plus the pointer and checksum fixups its table
// loader ("etc/table-loader") applies once it has placed the blobs in guest memory. OVMF
// and SeaBIOS both install what they are given this way; neither writes tables of its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace berth::machine {

constexpr const char* kAcpiTablesFile = "etc/acpi/tables";
constexpr const char* kAcpiRsdpFile = "etc/acpi/rsdp";

// What the tables describe: addresses and wiring of the chipset the machine built.
struct FirmwarePlatform {
  uint32_t vcpu_count = 1;
  uint16_t pm_base = 0;           // ACPI PM block: PM1 event at +0, PM1 control at +4, timer at +8
  uint16_t gpe0_offset = 0;       // GPE0 block, from pm_base
  uint8_t gpe0_length = 0;
  bool pm_timer_32bit = false;    // FADT TMR_VAL_EXT
  uint8_t sci_irq = 9;            // level, active high
  uint8_t s5_sleep_type = 0;      // \_S5's SLP_TYP
  uint16_t reset_port = 0;        // FADT RESET_REG (system I/O)
  uint8_t reset_value = 0;
  uint64_t ecam_base = 0;         // MCFG, and reserved through a PNP0C02 device
  uint8_t ecam_last_bus = 0;
  uint32_t mmio32_start = 0, mmio32_end = 0;  // inclusive ends
  uint64_t mmio64_start = 0, mmio64_end = 0;  // empty when start > end
  uint8_t lpc_slot = 0x1f;        // the ISA devices sit under the LPC bridge's _ADR
  std::function<uint32_t(uint8_t slot, uint8_t pin)> intx_gsi;  // pin 1..4 = INTA..INTD
};

// ADD_POINTER: add the address at which `src` was placed to the `size`-byte little-endian
// field at `offset` of `dest` (which holds an offset into src).
struct LoaderPointer {
  std::string dest, src;
  uint32_t offset = 0;
  uint8_t size = 0;
};

// ADD_CHECKSUM: make the bytes [start, start+length) of `file` sum to zero by adjusting
// the byte at `result_offset` (which lies inside the range and is zero beforehand).
struct LoaderChecksum {
  std::string file;
  uint32_t result_offset = 0, start = 0, length = 0;
};

struct FirmwareTables {
  std::vector<uint8_t> tables;  // FACS, DSDT, FADT, MADT, MCFG, XSDT, 64-byte aligned
  std::vector<uint8_t> rsdp;    // 36 bytes; the firmware puts it in the BIOS area (FSEG)
  std::vector<LoaderPointer> pointers;
  std::vector<LoaderChecksum> checksums;
};

// Throws berth::Error BOOT_ACPI for a description the tables cannot carry.
FirmwareTables build_firmware_tables(const FirmwarePlatform& platform);

}  // namespace berth::machine
