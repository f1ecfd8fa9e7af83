// Loads a guest kernel (and initrd) into guest memory and returns the register state the
// boot vCPU must start with. Three formats, detected by their magic numbers:
//   - PVH: an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note; entered in 32-bit protected mode
//     with EBX = hvm_start_info.
//   - Linux bzImage with the 64-bit boot protocol (2.12+, XLF_KERNEL_64); entered in long
//     mode with RSI = zero page.
//   - Any other x86-64 ELF (a Linux vmlinux); same 64-bit entry with a synthesized header.
// All three also get an MP table (see mptable.h) and the memory map (see e820.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "boot/acpi.h"
#include "hv/hv.h"
#include "vmm/guest_memory.h"

namespace berth::boot {

enum class BootProtocol { kPvh, kLinuxBzImage, kLinuxElf };

struct BootConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty = none
  std::string cmdline;
  uint32_t vcpu_count = 1;
  std::vector<AcpiMmioDevice> virtio_mmio;  // named in the DSDT
};

struct BootResult {
  BootProtocol protocol = BootProtocol::kPvh;
  hv::InitialCpuState cpu;
  uint64_t kernel_start = 0, kernel_end = 0;  // guest-physical [start, end) the kernel owns
  uint64_t initrd_start = 0, initrd_size = 0;
};

// Reads cfg.kernel_path (and cfg.initrd_path when set) and loads them. Throws berth::Error:
// BOOT_FILE_READ, BOOT_UNKNOWN_FORMAT, BOOT_BAD_IMAGE, BOOT_KERNEL_TOO_BIG,
// BOOT_INITRD_TOO_BIG, BOOT_CMDLINE_TOO_LONG, BOOT_VCPU_COUNT.
BootResult load_kernel(vmm::GuestMemory& mem, const BootConfig& cfg);

// Same from bytes already in memory (the paths in cfg are only used in messages).
// An empty initrd span means no initrd.
BootResult load_kernel_bytes(vmm::GuestMemory& mem, std::span<const uint8_t> kernel,
                             std::span<const uint8_t> initrd, const BootConfig& cfg);

const char* protocol_name(BootProtocol protocol);

// hvm_start_info constants (Xen public ABI, arch/x86 hvm start_info).
constexpr uint32_t kHvmStartMagic = 0x336ec578;
constexpr uint32_t kXenElfNotePhys32Entry = 18;

}  // namespace berth::boot
