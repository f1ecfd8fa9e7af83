// Fixed addresses of the Q35-like PCI platform, defined once: the machine registers its
// bus devices here and the ACPI tables (MCFG, DSDT _CRS and _PRT) announce the same values.
#pragma once

#include <cstdint>

namespace berth::devices::pci {

// Configuration mechanism #1: the address register (dword accesses at 0xCF8) and the data
// window (0xCFC..0xCFF). One port device covers 0xCF8..0xCFF; it hands byte accesses at
// 0xCF9 to the reset control register (see ConfigPorts).
constexpr uint16_t kConfigPortsBase = 0xcf8;
constexpr uint16_t kConfigPortsCount = 8;

// ECAM (PCI Express enhanced configuration access): bus << 20 | device << 15 |
// function << 12 | register. Both firmwares program PCIEXBAR with this base (OVMF's
// PcdPciExpressBaseAddress, SeaBIOS's Q35_HOST_BRIDGE_PCIEXBAR_ADDR).
constexpr uint64_t kEcamBase = 0xb0000000;
constexpr uint64_t kEcamSize = 256ull << 20;  // buses 0..255
constexpr uint32_t kEcamBusCount = 256;

// Where BARs are decoded. OVMF assigns 32-bit MMIO from kEcamBase + kEcamSize up to
// 0xFC000000, SeaBIOS up to 0xFEC00000 (the IOAPIC). OVMF assigns I/O from 0x6000 and
// SeaBIOS from 0xC000; the window starts lower so a guest OS may move I/O BARs anywhere
// above the platform's fixed ports (all below 0x1000).
constexpr uint64_t kMmio32WindowBase = 0xc0000000;
constexpr uint64_t kMmio32WindowEnd = 0xfec00000;
constexpr uint64_t kIoWindowBase = 0x1000;
constexpr uint64_t kIoWindowEnd = 0x10000;

// Legacy INTx: pin p (1 = INTA# .. 4 = INTD#) of slot s drives IOAPIC input
// kIntxFirstGsi + ((s + p - 1) % kIntxGsiCount), level-triggered, active high. The DSDT's
// _PRT is generated from the same function.
constexpr uint32_t kIntxFirstGsi = 16;
constexpr uint32_t kIntxGsiCount = 8;
constexpr uint32_t intx_gsi(uint32_t slot, uint32_t pin) {
  return kIntxFirstGsi + ((slot + pin - 1) % kIntxGsiCount);
}

// Where the chipset's functions sit on bus 0.
constexpr uint32_t kHostBridgeSlot = 0;
constexpr uint32_t kLpcSlot = 0x1f;
// The display (when the VM has one), where QEMU's Q35 machine puts its first display.
constexpr uint32_t kDisplaySlot = 2;

}  // namespace berth::devices::pci
