// ACPI tables for guests that read them instead of (or besides) the MP table: RSDP, XSDT,
// a hardware-reduced FADT whose sleep control register powers the VM off, a DSDT naming
// \_S5, COM1, the RTC and the power button behind a Generic Event Device, and a MADT listing every vCPU and the IOAPIC. Linux kernels
// built without MP-table support (Debian's cloud kernel, for one) find CPUs and the IOAPIC
// only here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "boot/aml.h"
#include "vmm/guest_memory.h"

namespace berth::boot {

constexpr uint64_t kAcpiAddr = 0xe0000;  // RSDP here (found by the BIOS-area scan), tables after it
constexpr uint64_t kAcpiEnd = 0xf0000;
// The I/O ports of the sleep control and status registers the FADT points to.
constexpr uint16_t kAcpiSleepControlPort = 0x600;
constexpr uint16_t kAcpiSleepStatusPort = 0x601;
// The legacy devices the DSDT describes (a hardware-reduced platform has no ISA interrupts
// unless the DSDT names them): COM1 with its interrupt, and the CMOS RTC (no interrupt).
constexpr uint16_t kAcpiCom1Port = 0x3f8;
constexpr uint8_t kAcpiCom1Irq = 4;
constexpr uint16_t kAcpiRtcPort = 0x70;
// The Generic Event Device's interrupt (ISA IRQ 13 is free: no FPU error line here). One
// edge on it makes the GED run _EVT, which notifies the power button (PNP0C0C).
constexpr uint32_t kAcpiGedIrq = 13;
// SLP_TYP value the DSDT's \_S5 object gives for "soft off".
constexpr uint8_t kAcpiS5SleepType = 5;

// A virtio-mmio device the DSDT names (_HID "LNRO0005", its register window and edge-triggered
// interrupt), for kernels that find virtio-mmio devices only in ACPI (Debian's cloud kernel
// is built without virtio_mmio's command-line devices).
struct AcpiMmioDevice {
  uint64_t base = 0;
  uint32_t size = 0;
  uint32_t irq = 0;
};
constexpr size_t kAcpiMaxMmioDevices = 16;

// A seven-character EISA/PNP id ("PNP0501") compressed as AML's EisaId() does it.
uint32_t acpi_eisa_id(const char* id);

// An ISA interrupt wired other than ISA's default (edge, active high, GSI = IRQ).
struct AcpiIrqOverride {
  uint8_t isa_irq = 0;
  uint32_t gsi = 0;
  bool level = false;
  bool active_low = false;
};

// The MADT: every vCPU's local APIC, the IOAPIC, the overrides, LINT1 as NMI.
AcpiTable acpi_madt(uint32_t vcpu_count, const std::vector<AcpiIrqOverride>& overrides);

// Writes the tables; returns the guest-physical address of the RSDP.
uint64_t write_acpi_tables(vmm::GuestMemory& mem, uint32_t vcpu_count,
                           const std::vector<AcpiMmioDevice>& virtio_mmio = {});

}  // namespace berth::boot
