#include "boot/boot.h"

#include "boot/acpi.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "boot/acpi.h"
#include "boot/e820.h"
#include "boot/elf.h"
#include "boot/layout.h"
#include "boot/mptable.h"
#include "common/error.h"

namespace berth::boot {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kKernelVirtualBase = 0xffffffff80000000ull;

// Linux setup header / boot_params offsets (Documentation/arch/x86/boot.rst, zero-page.rst).
constexpr size_t kExtRamdiskImage = 0x0c0;
constexpr size_t kExtRamdiskSize = 0x0c4;
constexpr size_t kExtCmdLinePtr = 0x0c8;
constexpr size_t kAcpiRsdpAddr = 0x070;
constexpr size_t kE820Entries = 0x1e8;
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kHeader = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kTypeOfLoader = 0x210;
constexpr size_t kLoadFlags = 0x211;
constexpr size_t kRamdiskImage = 0x218;
constexpr size_t kRamdiskSize = 0x21c;
constexpr size_t kHeapEndPtr = 0x224;
constexpr size_t kCmdLinePtr = 0x228;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kRelocatableKernel = 0x234;
constexpr size_t kXLoadFlags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kHardwareSubarch = 0x23c;
constexpr size_t kSetupData = 0x250;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;
constexpr size_t kHeader212End = 0x268;  // end of the fields protocol 2.12 defines
constexpr size_t kSetupHeaderMaxEnd = 0x290;  // struct setup_header ends before this in boot_params
constexpr size_t kE820Table = 0x2d0;
constexpr size_t kE820MaxEntries = 128;

constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kMinProtocol = 0x20c;     // 2.12: xloadflags
constexpr uint16_t kXlfKernel64 = 1;
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint8_t kCanUseHeap = 0x80;
constexpr uint32_t kDefaultInitrdAddrMax = 0x37ffffff;
constexpr uint32_t kVmlinuxCmdlineMax = 2047;  // COMMAND_LINE_SIZE 2048 including the NUL
constexpr uint32_t kPvhCmdlineMax = kCmdlineMax - 1;

// Selectors in the GDTs written below.
constexpr uint16_t kLinuxCs = 0x10, kLinuxDs = 0x18, kLinuxTr = 0x20;
constexpr uint16_t kPvhCs = 0x08, kPvhDs = 0x10, kPvhTr = 0x18;

uint64_t rd(std::span<const uint8_t> d, size_t off, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{d[off + i]} << (8 * i);
  return v;
}
void wr(std::span<uint8_t> d, size_t off, unsigned n, uint64_t v) {
  for (unsigned i = 0; i < n; ++i) d[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
// Whole MiB, rounded up.
std::string mib_up(uint64_t bytes) {
  return std::to_string(bytes / kMiB + (bytes % kMiB ? 1 : 0)) + " MiB";
}
// MiB with one decimal unless whole.
std::string mib(uint64_t bytes) {
  if (bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / kMiB);
  return buf;
}
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }  // caller checks overflow
uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

struct Segment {
  uint64_t paddr = 0;
  uint64_t memsz = 0;
  std::span<const uint8_t> bytes;
};

// Everything decided before guest memory is touched.
struct Plan {
  BootProtocol protocol = BootProtocol::kPvh;
  std::vector<Segment> segments;
  uint64_t kernel_start = 0, kernel_end = 0;
  uint64_t entry = 0;
  uint64_t cmdline_limit = 0;
  uint64_t initrd_max_end = 0;            // exclusive
  std::array<uint8_t, kZeroPageSize> zero_page{};  // Linux only: header filled in
};

class Loader {
 public:
  Loader(vmm::GuestMemory& mem, std::span<const uint8_t> kernel, std::span<const uint8_t> initrd,
         const BootConfig& cfg)
      : mem_(mem), kernel_(kernel), initrd_(initrd), cfg_(cfg) {
    kname_ = cfg.kernel_path.empty() ? "the kernel image" : cfg.kernel_path;
    iname_ = cfg.initrd_path.empty() ? "the initrd" : cfg.initrd_path;
    for (const auto& r : mem.regions()) {
      if (r.gpa == 0) low_end_ = r.size;
    }
  }

  BootResult run();

 private:
  [[noreturn]] void bad(const std::string& what) const {
    throw Error("BOOT_BAD_IMAGE", kname_ + " is damaged: " + what +
                                      " (rebuild the kernel or check that the file was copied "
                                      "completely)");
  }
  [[noreturn]] void unknown(const std::string& detail) const {
    throw Error("BOOT_UNKNOWN_FORMAT",
                kname_ + " is not a bootable kernel: expected a PVH ELF (with a "
                         "XEN_ELFNOTE_PHYS32_ENTRY note), a Linux bzImage (64-bit boot protocol "
                         "2.12 or later) or an x86-64 ELF vmlinux" +
                    (detail.empty() ? "" : " (" + detail + ")"));
  }
  [[noreturn]] void kernel_too_big(uint64_t end) const {
    std::string msg = "kernel " + kname_ + " needs memory up to " + mib_up(end) +
                      " but the VM has " + mib(mem_.size());
    if (low_end_ < mem_.size()) {
      msg += " (of which " + mib(low_end_) + " lie below the 3 GiB PCI hole, where the kernel must load)";
    }
    throw Error("BOOT_KERNEL_TOO_BIG", msg + "; give the VM more memory");
  }

  void plan_pvh(const ElfFile& elf, std::span<const uint8_t> entry_desc, Plan& p);
  void plan_elf_segments(const ElfFile& elf, Plan& p);
  void plan_vmlinux(const ElfFile& elf, Plan& p);
  void plan_bzimage(Plan& p);
  void check_kernel_range(uint64_t start, uint64_t end) const;
  void check_cmdline(const Plan& p) const;
  uint64_t place_initrd(const Plan& p) const;
  void write_linux_zero_page(Plan& p, uint64_t initrd_start);
  void write_pvh_start_info(uint64_t initrd_start);
  void write_common(const Plan& p);

  vmm::GuestMemory& mem_;
  std::span<const uint8_t> kernel_;
  std::span<const uint8_t> initrd_;
  const BootConfig& cfg_;
  std::string kname_, iname_;
  uint64_t low_end_ = 0;
};

void Loader::check_kernel_range(uint64_t start, uint64_t end) const {
  if (start < kBootAreaEnd) {
    bad("it loads at " + hex(start) + ", below 1 MiB, where Berth keeps its boot structures");
  }
  if (end > low_end_) kernel_too_big(end);
}

void Loader::plan_elf_segments(const ElfFile& elf, Plan& p) {
  uint64_t start = UINT64_MAX, end = 0;
  for (const auto& ph : elf.program_headers()) {
    if (ph.type != kPtLoad || ph.memsz == 0) continue;
    p.segments.push_back({ph.paddr, ph.memsz, elf.segment_bytes(ph)});
    start = std::min(start, ph.paddr);
    end = std::max(end, ph.paddr + ph.memsz);  // no overflow: checked by ElfFile
  }
  if (p.segments.empty()) bad("the ELF file has no loadable segments");
  check_kernel_range(start, end);
  p.kernel_start = start;
  p.kernel_end = end;
}

void Loader::plan_pvh(const ElfFile& elf, std::span<const uint8_t> desc, Plan& p) {
  p.protocol = BootProtocol::kPvh;
  uint64_t entry;
  if (desc.size() == 4) {
    entry = rd(desc, 0, 4);
  } else if (desc.size() == 8) {
    entry = rd(desc, 0, 8);
    if (entry > UINT32_MAX) bad("the PVH entry point " + hex(entry) + " is not a 32-bit address");
  } else {
    bad("the XEN_ELFNOTE_PHYS32_ENTRY note has " + std::to_string(desc.size()) +
        " bytes of data; expected 4 or 8");
  }
  plan_elf_segments(elf, p);
  if (entry < p.kernel_start || entry >= p.kernel_end) {
    bad("the PVH entry point " + hex(entry) + " lies outside the loaded segments [" +
        hex(p.kernel_start) + ", " + hex(p.kernel_end) + ")");
  }
  p.entry = entry;
  p.cmdline_limit = kPvhCmdlineMax;
  p.initrd_max_end = 1ull << 32;
}

void Loader::plan_vmlinux(const ElfFile& elf, Plan& p) {
  p.protocol = BootProtocol::kLinuxElf;
  plan_elf_segments(elf, p);
  uint64_t entry = elf.entry();
  if (entry >= kKernelVirtualBase) entry -= kKernelVirtualBase;
  if (entry < p.kernel_start || entry >= p.kernel_end) {
    bad("the entry point " + hex(elf.entry()) + " lies outside the loaded segments [" +
        hex(p.kernel_start) + ", " + hex(p.kernel_end) + ")");
  }
  p.entry = entry;
  p.cmdline_limit = kVmlinuxCmdlineMax;
  p.initrd_max_end = uint64_t{0x7fffffff} + 1;

  // A synthesized setup header, as a bzImage would carry it.
  auto zp = std::span<uint8_t>(p.zero_page);
  wr(zp, kBootFlag, 2, 0xaa55);
  wr(zp, kHeader, 4, kHdrSMagic);
  wr(zp, kVersion, 2, 0x20c);
  wr(zp, kLoadFlags, 1, kLoadedHigh);
  wr(zp, kInitrdAddrMax, 4, 0x7fffffff);
  wr(zp, kKernelAlignment, 4, 2 * kMiB);
  wr(zp, kXLoadFlags, 2, kXlfKernel64);
  wr(zp, kCmdlineSize, 4, kVmlinuxCmdlineMax);
}

void Loader::plan_bzimage(Plan& p) {
  p.protocol = BootProtocol::kLinuxBzImage;
  const auto& k = kernel_;
  if (k.size() < kVersion + 2) bad("the Linux setup header is truncated");
  const uint16_t version = static_cast<uint16_t>(rd(k, kVersion, 2));
  if (version < kMinProtocol) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "it is a Linux bzImage with boot protocol %u.%02u",
                  version >> 8, version & 0xff);
    unknown(buf);
  }
  const size_t header_end = kHeader + k[0x201];
  if (k.size() < kHeader212End || k.size() < header_end) {
    bad("the Linux setup header is truncated (the file has " + std::to_string(k.size()) +
        " bytes)");
  }
  if (header_end < kHeader212End) {
    bad("the Linux setup header claims to end at " + hex(header_end) +
        ", before the fields of boot protocol 2.12");
  }
  if (!(rd(k, kXLoadFlags, 2) & kXlfKernel64)) {
    unknown("it is a Linux bzImage without the 64-bit entry point (XLF_KERNEL_64)");
  }
  uint64_t setup_sects = k[kSetupSects];
  if (setup_sects == 0) setup_sects = 4;
  const uint64_t pm_offset = (setup_sects + 1) * 512;
  if (pm_offset >= k.size()) {
    bad("the protected-mode kernel should start at offset " + hex(pm_offset) +
        " but the file has only " + std::to_string(k.size()) + " bytes");
  }
  const uint64_t pm_size = k.size() - pm_offset;
  const uint64_t need = std::max<uint64_t>(rd(k, kInitSize, 4), pm_size);
  const bool relocatable = k[kRelocatableKernel] != 0;
  const uint64_t align = rd(k, kKernelAlignment, 4);
  if (relocatable && (align == 0 || (align & (align - 1)) != 0 || align > (1ull << 30))) {
    bad("the kernel alignment " + hex(align) + " is not a power of two up to 1 GiB");
  }

  auto place = [&](uint64_t want) -> uint64_t {  // UINT64_MAX when it cannot fit
    uint64_t a = std::max(want, kKernelDefaultAddr);
    if (relocatable) {
      if (a > UINT64_MAX - align) return UINT64_MAX;
      a = align_up(a, align);
    }
    return a;
  };
  uint64_t addr = place(rd(k, kPrefAddress, 8));
  auto fits = [&](uint64_t a) { return a != UINT64_MAX && a <= low_end_ && need <= low_end_ - a; };
  if (!fits(addr) && relocatable) {
    const uint64_t low = place(kKernelDefaultAddr);
    if (fits(low)) addr = low;
  }
  if (!fits(addr)) {
    kernel_too_big(addr == UINT64_MAX || addr > UINT64_MAX - need ? UINT64_MAX : addr + need);
  }
  p.segments.push_back({addr, pm_size, k.subspan(pm_offset)});
  p.kernel_start = addr;
  p.kernel_end = addr + need;
  p.entry = addr + 0x200;  // 64-bit entry point

  uint64_t cmdline_size = rd(k, kCmdlineSize, 4);
  p.cmdline_limit = std::min<uint64_t>(cmdline_size, kCmdlineMax - 1);
  uint64_t initrd_max = rd(k, kInitrdAddrMax, 4);
  if (initrd_max == 0) initrd_max = kDefaultInitrdAddrMax;
  p.initrd_max_end = initrd_max + 1;

  // Copy the setup header the kernel expects to find in its zero page.
  const size_t copy_end = std::min(header_end, kSetupHeaderMaxEnd);
  std::memcpy(p.zero_page.data() + kSetupSects, k.data() + kSetupSects, copy_end - kSetupSects);
  auto zp = std::span<uint8_t>(p.zero_page);
  wr(zp, kSetupData, 8, 0);        // no setup_data chain from the image
  wr(zp, kHardwareSubarch, 4, 0);  // a normal PC
}

void Loader::check_cmdline(const Plan& p) const {
  const uint64_t n = cfg_.cmdline.size();
  if (n <= p.cmdline_limit) return;
  std::string who = p.protocol == BootProtocol::kPvh ? "the PVH kernel " + kname_ : "kernel " + kname_;
  throw Error("BOOT_CMDLINE_TOO_LONG", "the kernel command line is " + std::to_string(n) +
                                           " bytes; " + who + " accepts at most " +
                                           std::to_string(p.cmdline_limit) + " (shorten it)");
}

uint64_t Loader::place_initrd(const Plan& p) const {
  const uint64_t size = initrd_.size();
  const uint64_t limit = std::min(low_end_, p.initrd_max_end);
  const uint64_t floor = align_up(p.kernel_end, kPage);  // kernel_end < 3 GiB: no overflow
  const uint64_t room = limit > floor ? align_down(limit, kPage) - floor : 0;
  if (size > room) {
    throw Error("BOOT_INITRD_TOO_BIG",
                "initrd " + iname_ + " is " + mib(size) + " (" + std::to_string(size) +
                    " bytes) but only " + mib(room) + " (" + std::to_string(room) +
                    " bytes) of guest memory is free for it (above the kernel, which ends at " +
                    mib(p.kernel_end) + ", and below " + mib(limit) +
                    "); give the VM more memory or use a smaller initrd");
  }
  return align_down(limit - size, kPage);
}

void write_page_tables(vmm::GuestMemory& mem) {
  std::vector<uint8_t> page(kPage, 0);
  wr(page, 0, 8, kPdptAddr | 0x3);  // present, writable
  mem.write(kPml4Addr, page);
  std::fill(page.begin(), page.end(), 0);
  for (uint32_t i = 0; i < kPdCount; ++i) wr(page, i * 8, 8, (kPdAddr + i * kPage) | 0x3);
  mem.write(kPdptAddr, page);
  for (uint32_t i = 0; i < kPdCount; ++i) {
    for (uint64_t j = 0; j < 512; ++j) {
      const uint64_t phys = (uint64_t{i} << 30) | (j << 21);
      wr(page, j * 8, 8, phys | 0x83);  // present, writable, 2 MiB page
    }
    mem.write(kPdAddr + i * kPage, page);
  }
}

uint64_t gdt_entry(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags) {
  return (uint64_t{limit} & 0xffff) | ((uint64_t{base} & 0xffffff) << 16) |
         (uint64_t{access} << 40) | ((uint64_t{limit} >> 16 & 0xf) << 48) |
         (uint64_t{flags & 0xfu} << 52) | ((uint64_t{base} >> 24 & 0xff) << 56);
}

hv::Segment flat_segment(uint16_t selector, bool code, bool long_mode) {
  hv::Segment s;
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = code ? 0xb : 0x3;  // execute/read or read/write, accessed
  s.present = true;
  s.s = true;
  s.l = code && long_mode;
  s.db = !s.l;
  s.g = true;
  return s;
}

hv::Segment tss_segment(uint16_t selector) {
  hv::Segment s;
  s.base = kTssAddr;
  s.limit = kTssLimit;
  s.selector = selector;
  s.type = 0xb;  // busy 32/64-bit TSS
  s.present = true;
  return s;
}

hv::InitialCpuState initial_state(bool long_mode, uint64_t entry) {
  hv::InitialCpuState st;
  auto& r = st.regs;
  auto& sr = st.sregs;
  r.rip = entry;
  r.rflags = 0x2;  // interrupts off
  const uint16_t cs = long_mode ? kLinuxCs : kPvhCs;
  const uint16_t ds = long_mode ? kLinuxDs : kPvhDs;
  const uint16_t tr = long_mode ? kLinuxTr : kPvhTr;
  sr.cs = flat_segment(cs, true, long_mode);
  sr.ds = sr.es = sr.fs = sr.gs = sr.ss = flat_segment(ds, false, long_mode);
  sr.tr = tss_segment(tr);
  sr.ldt.type = 0x2;  // LDT, present, empty
  sr.ldt.present = true;
  sr.ldt.limit = 0xffff;
  sr.gdt.base = kGdtAddr;
  sr.gdt.limit = static_cast<uint16_t>((long_mode ? 6 : 4) * 8 - 1);
  sr.idt.base = 0;
  sr.idt.limit = 0;
  sr.apic_base = kLocalApicAddr | 0x800 | 0x100;  // xAPIC enabled, BSP
  if (long_mode) {
    sr.cr0 = 0x80000011;  // PG | ET | PE
    sr.cr3 = kPml4Addr;
    sr.cr4 = 0x20;        // PAE
    sr.efer = 0x500;      // LMA | LME
    r.rsi = kZeroPageAddr;
    r.rsp = r.rbp = kBootStackTop;
  } else {
    sr.cr0 = 0x11;  // ET | PE
    r.rbx = kPvhStartInfoAddr;
  }
  return st;
}

void write_gdt(vmm::GuestMemory& mem, bool long_mode) {
  std::vector<uint8_t> gdt;
  auto push = [&gdt](uint64_t e) {
    for (int i = 0; i < 8; ++i) gdt.push_back(static_cast<uint8_t>(e >> (8 * i)));
  };
  const uint64_t tss = gdt_entry(static_cast<uint32_t>(kTssAddr), kTssLimit, 0x8b, 0x0);
  push(0);
  if (long_mode) {
    push(0);                                          // 0x08 unused
    push(gdt_entry(0, 0xfffff, 0x9b, 0xa));           // 0x10 64-bit code
    push(gdt_entry(0, 0xfffff, 0x93, 0xc));           // 0x18 flat data
    push(tss);                                        // 0x20 64-bit TSS (16 bytes)
    push(kTssAddr >> 32);
  } else {
    push(gdt_entry(0, 0xfffff, 0x9b, 0xc));           // 0x08 32-bit code
    push(gdt_entry(0, 0xfffff, 0x93, 0xc));           // 0x10 flat data
    push(tss);                                        // 0x18 32-bit TSS
  }
  mem.write(kGdtAddr, gdt);
  std::vector<uint8_t> tss_bytes(kTssLimit + 1, 0);
  mem.write(kTssAddr, tss_bytes);
}

void Loader::write_common(const Plan& p) {
  for (const auto& s : p.segments) {
    mem_.write(s.paddr, s.bytes);
    if (s.memsz > s.bytes.size()) {
      auto bss = mem_.slice(s.paddr + s.bytes.size(), s.memsz - s.bytes.size());
      std::memset(bss.data(), 0, bss.size());
    }
  }
  std::vector<uint8_t> cmd(cfg_.cmdline.begin(), cfg_.cmdline.end());
  cmd.push_back(0);
  mem_.write(kCmdlineAddr, cmd);
  write_page_tables(mem_);
  write_gdt(mem_, p.protocol != BootProtocol::kPvh);
  write_mptable(mem_, cfg_.vcpu_count);
  write_acpi_tables(mem_, cfg_.vcpu_count, cfg_.virtio_mmio);
}

void Loader::write_linux_zero_page(Plan& p, uint64_t initrd_start) {
  auto zp = std::span<uint8_t>(p.zero_page);
  wr(zp, kTypeOfLoader, 1, 0xff);
  wr(zp, kLoadFlags, 1, zp[kLoadFlags] | kCanUseHeap);
  wr(zp, kHeapEndPtr, 2, 0xfe00);
  wr(zp, kCmdLinePtr, 4, kCmdlineAddr);
  wr(zp, kExtCmdLinePtr, 4, 0);
  wr(zp, kAcpiRsdpAddr, 8, kAcpiAddr);
  wr(zp, kRamdiskImage, 4, initrd_start & 0xffffffff);
  wr(zp, kRamdiskSize, 4, initrd_.size() & 0xffffffff);
  wr(zp, kExtRamdiskImage, 4, initrd_start >> 32);
  wr(zp, kExtRamdiskSize, 4, uint64_t{initrd_.size()} >> 32);
  const auto map = build_e820(mem_);
  const size_t n = std::min(map.size(), kE820MaxEntries);
  wr(zp, kE820Entries, 1, n);
  for (size_t i = 0; i < n; ++i) {
    wr(zp, kE820Table + i * 20, 8, map[i].addr);
    wr(zp, kE820Table + i * 20 + 8, 8, map[i].size);
    wr(zp, kE820Table + i * 20 + 16, 4, map[i].type);
  }
  mem_.write(kZeroPageAddr, p.zero_page);
}

void Loader::write_pvh_start_info(uint64_t initrd_start) {
  std::vector<uint8_t> page(kZeroPageAddr - kPvhStartInfoAddr, 0);
  const auto map = build_e820(mem_);
  const size_t n = std::min<size_t>(map.size(), kPvhMaxMemmapEntries);
  const bool has_initrd = !initrd_.empty();
  wr(page, 0x00, 4, kHvmStartMagic);
  wr(page, 0x04, 4, 1);  // version
  wr(page, 0x08, 4, 0);  // flags
  wr(page, 0x0c, 4, has_initrd ? 1 : 0);
  wr(page, 0x10, 8, has_initrd ? kPvhModlistAddr : 0);
  wr(page, 0x18, 8, kCmdlineAddr);
  wr(page, 0x20, 8, kAcpiAddr);  // RSDP
  wr(page, 0x28, 8, kPvhMemmapAddr);
  wr(page, 0x30, 4, n);
  for (size_t i = 0; i < n; ++i) {
    const size_t off = kPvhMemmapAddr - kPvhStartInfoAddr + i * 24;
    wr(page, off, 8, map[i].addr);
    wr(page, off + 8, 8, map[i].size);
    wr(page, off + 16, 4, map[i].type);
  }
  if (has_initrd) {
    const size_t off = kPvhModlistAddr - kPvhStartInfoAddr;
    wr(page, off, 8, initrd_start);
    wr(page, off + 8, 8, initrd_.size());
    wr(page, off + 16, 8, 0);  // no module command line
  }
  mem_.write(kPvhStartInfoAddr, page);
}

BootResult Loader::run() {
  if (cfg_.vcpu_count == 0 || cfg_.vcpu_count > kMaxMpVcpus) {
    throw Error("BOOT_VCPU_COUNT", "a VM with " + std::to_string(cfg_.vcpu_count) +
                                       " vCPUs cannot boot: use 1 to " +
                                       std::to_string(kMaxMpVcpus) + " vCPUs");
  }
  if (low_end_ < kBootAreaEnd) kernel_too_big(kBootAreaEnd + 1);

  Plan p;
  if (ElfFile::has_magic(kernel_)) {
    ElfFile elf(kernel_, kname_);
    std::span<const uint8_t> pvh_entry;
    bool is_pvh = false;
    for (const auto& note : elf.notes()) {
      if (note.name == "Xen" && note.type == kXenElfNotePhys32Entry) {
        pvh_entry = note.desc;
        is_pvh = true;
        break;
      }
    }
    if (is_pvh) {
      plan_pvh(elf, pvh_entry, p);
    } else if (elf.is_64() && elf.machine() == kEmX86_64) {
      plan_vmlinux(elf, p);
    } else {
      unknown("it is an ELF file for another machine or without a PVH entry note");
    }
  } else if (kernel_.size() >= kHeader + 4 && rd(kernel_, kHeader, 4) == kHdrSMagic) {
    plan_bzimage(p);
  } else {
    unknown("");
  }

  check_cmdline(p);
  const uint64_t initrd_start = initrd_.empty() ? 0 : place_initrd(p);
  if (!initrd_.empty()) mem_.write(initrd_start, initrd_);

  write_common(p);
  if (p.protocol == BootProtocol::kPvh) {
    write_pvh_start_info(initrd_start);
  } else {
    write_linux_zero_page(p, initrd_start);
  }

  BootResult res;
  res.protocol = p.protocol;
  res.cpu = initial_state(p.protocol != BootProtocol::kPvh, p.entry);
  res.kernel_start = p.kernel_start;
  res.kernel_end = p.kernel_end;
  res.initrd_start = initrd_start;
  res.initrd_size = initrd_.size();
  return res;
}

std::vector<uint8_t> read_file(const std::string& path, const char* what) {
  auto fail = [&](int err) {
    return Error("BOOT_FILE_READ", std::string("cannot read ") + what + " " + path + ": " +
                                       std::strerror(err) + " (check the path and its permissions)");
  };
  if (path.empty()) {
    throw Error("BOOT_FILE_READ", std::string("cannot read ") + what + ": no path was given");
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(errno);
  std::vector<uint8_t> out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw fail(err);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

}  // namespace

BootResult load_kernel_bytes(vmm::GuestMemory& mem, std::span<const uint8_t> kernel,
                             std::span<const uint8_t> initrd, const BootConfig& cfg) {
  return Loader(mem, kernel, initrd, cfg).run();
}

BootResult load_kernel(vmm::GuestMemory& mem, const BootConfig& cfg) {
  const auto kernel = read_file(cfg.kernel_path, "kernel");
  std::vector<uint8_t> initrd;
  if (!cfg.initrd_path.empty()) initrd = read_file(cfg.initrd_path, "initrd");
  return load_kernel_bytes(mem, kernel, initrd, cfg);
}

const char* protocol_name(BootProtocol protocol) {
  switch (protocol) {
    case BootProtocol::kPvh: return "pvh";
    case BootProtocol::kLinuxBzImage: return "linux-bzimage";
    case BootProtocol::kLinuxElf: return "linux-elf";
  }
  return "unknown";
}

}  // namespace berth::boot
