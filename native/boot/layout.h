// The fixed low-memory layout Berth uses to boot a guest kernel. Everything the loader
// writes below 1 MiB lives at one of these addresses; the kernel itself goes at 1 MiB or
// above (where its image asks).
//
//   0x00000 - 0x004ff  free (real-mode IVT / BIOS data area; not written)
//   0x00500 - 0x0052f  GDT (per protocol, see boot.cc)
//   0x00600 - 0x00667  TSS (all zero; TR points here)
//   0x06000 - 0x06037  PVH hvm_start_info
//   0x06040 - 0x063ff  PVH memory map (hvm_memmap_table_entry[])
//   0x06400 - 0x0641f  PVH module list (hvm_modlist_entry[1]: the initrd)
//   0x07000 - 0x07fff  Linux zero page (struct boot_params)
//   0x08000 - 0x08fff  free (kept for the test guest's AP trampoline)
//   0x09000 - 0x09fff  PML4
//   0x0a000 - 0x0afff  PDPT
//   0x0b000 - 0x0efff  4 page directories: identity map of [0, 4 GiB) with 2 MiB pages
//   0x10000 - 0x1ffff  boot stack (RSP starts at 0x20000)
//   0x20000 - 0x2ffff  kernel command line (at most 64 KiB including the NUL)
//   0x9fc00 - 0x9ffff  EBDA: MP floating pointer (+ MP configuration table when it fits)
//   0xf0000 - 0xfffff  BIOS area: MP configuration table for many vCPUs
//   0x100000 -         kernel (1 MiB, or the bzImage's pref_address, or the ELF's p_paddr)
//   highest fit below the low-RAM end: initrd
#pragma once

#include <cstdint>

namespace berth::boot {

constexpr uint64_t kGdtAddr = 0x500;
constexpr uint64_t kTssAddr = 0x600;
constexpr uint32_t kTssLimit = 0x67;

constexpr uint64_t kPvhStartInfoAddr = 0x6000;
constexpr uint64_t kPvhMemmapAddr = 0x6040;
constexpr uint64_t kPvhModlistAddr = 0x6400;
constexpr uint32_t kPvhMaxMemmapEntries = (kPvhModlistAddr - kPvhMemmapAddr) / 24;

constexpr uint64_t kZeroPageAddr = 0x7000;
constexpr uint64_t kZeroPageSize = 0x1000;

constexpr uint64_t kApTrampolineAddr = 0x8000;  // not written by the loader

constexpr uint64_t kPml4Addr = 0x9000;
constexpr uint64_t kPdptAddr = 0xa000;
constexpr uint64_t kPdAddr = 0xb000;
constexpr uint32_t kPdCount = 4;  // 4 x 1 GiB

constexpr uint64_t kBootStackTop = 0x20000;

constexpr uint64_t kCmdlineAddr = 0x20000;
constexpr uint64_t kCmdlineMax = 0x10000;  // bytes including the terminating NUL

constexpr uint64_t kEbdaAddr = 0x9fc00;
constexpr uint64_t kEbdaEnd = 0xa0000;
constexpr uint64_t kBiosAreaAddr = 0xf0000;
constexpr uint64_t kBiosAreaEnd = 0x100000;
constexpr uint64_t kMpFloatingPointerAddr = kEbdaAddr;
constexpr uint64_t kMpConfigAddrLarge = kBiosAreaAddr;  // when the table does not fit the EBDA

constexpr uint64_t kKernelDefaultAddr = 0x100000;  // 1 MiB
constexpr uint64_t kBootAreaEnd = 0x100000;        // the loader owns nothing at or above this

constexpr uint64_t kIoApicAddr = 0xfec00000;
constexpr uint64_t kLocalApicAddr = 0xfee00000;

}  // namespace berth::boot
