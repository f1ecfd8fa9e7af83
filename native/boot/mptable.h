// Intel MultiProcessor Specification 1.4 tables, so a guest without ACPI finds its vCPUs
// and the IOAPIC.
#pragma once

#include <cstdint>

#include "vmm/guest_memory.h"

namespace berth::boot {

// The most vCPUs the MP table describes: APIC IDs 0..253 for the vCPUs, 254 for the IOAPIC
// (255 is the broadcast ID). KVM allows no more either.
constexpr uint32_t kMaxMpVcpus = 254;
constexpr uint8_t kMpIoApicVersion = 0x11;
constexpr uint8_t kMpLocalApicVersion = 0x14;

// Bytes of the MP configuration table (header + entries) for `vcpu_count` vCPUs.
uint64_t mp_config_table_size(uint32_t vcpu_count);
// Where write_mptable puts the configuration table: right after the floating pointer in the
// EBDA when it fits in its 1 KiB, otherwise at the start of the reserved BIOS area (0xf0000).
uint64_t mp_config_table_addr(uint32_t vcpu_count);

// Writes the floating pointer at 0x9fc00 and the configuration table: one processor entry
// per vCPU (APIC ID = vCPU index, BSP = 0), one ISA bus, one IOAPIC (ID = vcpu_count,
// version 0x11, at 0xfec00000), ISA IRQ n -> IOAPIC pin n for n = 0..15, ExtINT on LINT0
// of the BSP, NMI on LINT1 of all. Throws berth::Error BOOT_VCPU_COUNT when vcpu_count is
// 0 or above 254, GUEST_MEMORY_RANGE when guest RAM does not cover 0x9fc00..0x100000.
void write_mptable(vmm::GuestMemory& mem, uint32_t vcpu_count);

}  // namespace berth::boot
