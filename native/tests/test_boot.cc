#include "boot/boot.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "boot/layout.h"
#include "tests/check.h"
#include "tests/test_boot_images.h"

using namespace berth::boot;
using namespace berth::test;
using berth::vmm::GuestMemory;

namespace {

constexpr uint64_t MiB = 1ull << 20;

BootConfig config(std::string cmdline = "console=ttyS0", uint32_t vcpus = 1) {
  BootConfig c;
  c.kernel_path = "/images/kernel";
  c.initrd_path = "/images/initrd";
  c.cmdline = std::move(cmdline);
  c.vcpu_count = vcpus;
  return c;
}

std::vector<uint8_t> bytes_at(GuestMemory& mem, uint64_t gpa, size_t n) {
  auto s = mem.slice(gpa, n);
  return {s.begin(), s.end()};
}

uint64_t rd(GuestMemory& mem, uint64_t gpa, unsigned n) {
  return get(bytes_at(mem, gpa, n), 0, n);
}

std::string cstr(GuestMemory& mem, uint64_t gpa) {
  std::string s;
  for (;;) {
    char c = static_cast<char>(mem.read_obj<uint8_t>(gpa++));
    if (!c) return s;
    s.push_back(c);
  }
}

void check_mp_present(GuestMemory& mem) {
  CHECK(std::memcmp(mem.slice(kMpFloatingPointerAddr, 4).data(), "_MP_", 4) == 0);
}

void check_long_mode_state(const BootResult& r, uint64_t entry) {
  const auto& s = r.cpu.sregs;
  CHECK_EQ(r.cpu.regs.rip, entry);
  CHECK_EQ(r.cpu.regs.rsi, uint64_t{0x7000});
  CHECK_EQ(r.cpu.regs.rflags, uint64_t{2});
  CHECK_EQ(s.cs.selector, uint16_t{0x10});
  CHECK(s.cs.l && !s.cs.db && s.cs.present && s.cs.s && s.cs.g);
  CHECK_EQ(s.cs.type, uint8_t{0xb});
  for (const auto* d : {&s.ds, &s.es, &s.ss}) {
    CHECK_EQ(d->selector, uint16_t{0x18});
    CHECK_EQ(d->type, uint8_t{3});
    CHECK(d->present && d->db && d->g);
    CHECK_EQ(d->limit, 0xffffffffu);
  }
  CHECK_EQ(s.tr.type, uint8_t{11});
  CHECK(s.tr.present && !s.tr.s);
  CHECK_EQ(s.cr0, uint64_t{0x80000011});
  CHECK_EQ(s.cr3, uint64_t{0x9000});
  CHECK_EQ(s.cr4, uint64_t{0x20});
  CHECK_EQ(s.efer, uint64_t{0x500});
  CHECK_EQ(s.gdt.base, uint64_t{0x500});
}

void check_linux_gdt(GuestMemory& mem) {
  CHECK_EQ(rd(mem, 0x500 + 0x10, 8), uint64_t{0x00af9b000000ffff});
  CHECK_EQ(rd(mem, 0x500 + 0x18, 8), uint64_t{0x00cf93000000ffff});
  const uint64_t tss = rd(mem, 0x500 + 0x20, 8);
  CHECK_EQ((tss >> 40) & 0xff, uint64_t{0x8b});
  CHECK_EQ(tss & 0xffff, uint64_t{0x67});
}

void check_page_tables(GuestMemory& mem) {
  CHECK_EQ(rd(mem, 0x9000, 8), uint64_t{0xa003});
  for (uint64_t i = 0; i < 4; ++i) CHECK_EQ(rd(mem, 0xa000 + i * 8, 8), (0xb000 + i * 0x1000) | 3);
  CHECK_EQ(rd(mem, 0xa000 + 4 * 8, 8), uint64_t{0});
  CHECK_EQ(rd(mem, 0xb000, 8), uint64_t{0x83});
  CHECK_EQ(rd(mem, 0xb000 + 8, 8), uint64_t{0x200083});
  CHECK_EQ(rd(mem, 0xe000 + 511 * 8, 8), uint64_t{0xffe00083});
}

void check_e820_zero_page(GuestMemory& mem, uint64_t mem_size) {
  CHECK_EQ(rd(mem, 0x7000 + 0x1e8, 1), uint64_t{4});
  const uint64_t t = 0x7000 + 0x2d0;
  CHECK_EQ(rd(mem, t + 0, 8), uint64_t{0});
  CHECK_EQ(rd(mem, t + 8, 8), uint64_t{0x9fc00});
  CHECK_EQ(rd(mem, t + 16, 4), uint64_t{1});
  CHECK_EQ(rd(mem, t + 20, 8), uint64_t{0x9fc00});
  CHECK_EQ(rd(mem, t + 20 + 16, 4), uint64_t{2});
  CHECK_EQ(rd(mem, t + 60, 8), uint64_t{0x100000});
  CHECK_EQ(rd(mem, t + 68, 8), mem_size - 0x100000);
}

}  // namespace

TEST(boot_pvh_32bit_elf) {
  GuestMemory mem(64 * MiB);
  auto junk = mem.slice(0x100100, 0x10000);
  std::memset(junk.data(), 0xcc, junk.size());  // bss must be cleared
  auto img = make_pvh_elf(false);
  auto r = load_kernel_bytes(mem, img, {}, config("console=hvc0 quiet", 2));
  CHECK(r.protocol == BootProtocol::kPvh);
  CHECK(std::string(protocol_name(r.protocol)) == "pvh");
  CHECK_EQ(r.kernel_start, uint64_t{0x100000});
  CHECK_EQ(r.kernel_end, uint64_t{0x100000 + 256 + 0x10000});
  CHECK(bytes_at(mem, 0x100000, 256) == pattern(256, 0x11));
  CHECK(bytes_at(mem, 0x100100, 0x10000) == std::vector<uint8_t>(0x10000, 0));
  CHECK_EQ(r.initrd_size, uint64_t{0});

  // hvm_start_info
  CHECK_EQ(rd(mem, 0x6000, 4), uint64_t{0x336ec578});
  CHECK_EQ(rd(mem, 0x6004, 4), uint64_t{1});
  CHECK_EQ(rd(mem, 0x600c, 4), uint64_t{0});  // nr_modules
  CHECK_EQ(rd(mem, 0x6018, 8), uint64_t{0x20000});
  CHECK(cstr(mem, 0x20000) == "console=hvc0 quiet");
  CHECK_EQ(rd(mem, 0x6028, 8), uint64_t{0x6040});
  CHECK_EQ(rd(mem, 0x6030, 4), uint64_t{4});
  CHECK_EQ(rd(mem, 0x6040 + 0, 8), uint64_t{0});
  CHECK_EQ(rd(mem, 0x6040 + 8, 8), uint64_t{0x9fc00});
  CHECK_EQ(rd(mem, 0x6040 + 16, 4), uint64_t{1});
  CHECK_EQ(rd(mem, 0x6040 + 24, 8), uint64_t{0x9fc00});
  CHECK_EQ(rd(mem, 0x6040 + 24 + 16, 4), uint64_t{2});
  CHECK_EQ(rd(mem, 0x6040 + 72, 8), uint64_t{0x100000});
  CHECK_EQ(rd(mem, 0x6040 + 80, 8), 64 * MiB - 0x100000);

  // 32-bit protected mode entry
  const auto& s = r.cpu.sregs;
  CHECK_EQ(r.cpu.regs.rip, uint64_t{0x100010});
  CHECK_EQ(r.cpu.regs.rbx, uint64_t{0x6000});
  CHECK_EQ(r.cpu.regs.rflags, uint64_t{2});
  CHECK_EQ(s.cs.selector, uint16_t{0x8});
  CHECK(s.cs.db && !s.cs.l && s.cs.g && s.cs.present);
  CHECK_EQ(s.cs.limit, 0xffffffffu);
  CHECK_EQ(s.ds.selector, uint16_t{0x10});
  CHECK_EQ(s.ss.selector, uint16_t{0x10});
  CHECK_EQ(s.tr.selector, uint16_t{0x18});
  CHECK_EQ(s.tr.type, uint8_t{11});
  CHECK(s.tr.present);
  CHECK_EQ(s.cr0, uint64_t{0x11});
  CHECK_EQ(s.cr4, uint64_t{0});
  CHECK_EQ(s.efer, uint64_t{0});
  CHECK_EQ(s.gdt.limit, uint16_t{31});
  CHECK_EQ(rd(mem, 0x508, 8), uint64_t{0x00cf9b000000ffff});
  CHECK_EQ(rd(mem, 0x510, 8), uint64_t{0x00cf93000000ffff});
  CHECK_EQ((rd(mem, 0x518, 8) >> 40) & 0xff, uint64_t{0x8b});
  check_mp_present(mem);
}

TEST(boot_pvh_64bit_elf_with_initrd) {
  GuestMemory mem(64 * MiB);
  auto img = make_pvh_elf(true, 8);
  auto initrd = pattern(5000, 0x55);
  auto r = load_kernel_bytes(mem, img, initrd, config(""));
  CHECK(r.protocol == BootProtocol::kPvh);
  CHECK_EQ(r.cpu.regs.rip, uint64_t{0x100010});
  const uint64_t want = (64 * MiB - 5000) & ~uint64_t{0xfff};
  CHECK_EQ(r.initrd_start, want);
  CHECK_EQ(r.initrd_size, uint64_t{5000});
  CHECK(bytes_at(mem, want, 5000) == initrd);
  CHECK_EQ(rd(mem, 0x600c, 4), uint64_t{1});
  CHECK_EQ(rd(mem, 0x6010, 8), uint64_t{0x6400});
  CHECK_EQ(rd(mem, 0x6400, 8), want);
  CHECK_EQ(rd(mem, 0x6408, 8), uint64_t{5000});
  CHECK_EQ(rd(mem, 0x6410, 8), uint64_t{0});
  CHECK(cstr(mem, 0x20000).empty());
}

TEST(boot_bzimage_loads_at_pref_address) {
  GuestMemory mem(64 * MiB);
  auto img = make_bzimage();
  auto initrd = pattern(3 * 4096 + 1, 0x66);
  auto r = load_kernel_bytes(mem, img, initrd, config("root=/dev/vda", 3));
  CHECK(r.protocol == BootProtocol::kLinuxBzImage);
  CHECK(std::string(protocol_name(r.protocol)) == "linux-bzimage");
  CHECK_EQ(r.kernel_start, uint64_t{16 * MiB});
  CHECK_EQ(r.kernel_end, uint64_t{20 * MiB});
  CHECK(bytes_at(mem, 16 * MiB, 2048) == pattern(2048, 0x44));
  check_long_mode_state(r, 16 * MiB + 0x200);
  check_linux_gdt(mem);
  check_page_tables(mem);
  check_mp_present(mem);

  // The zero page: copied setup header plus the loader's fields.
  const uint64_t zp = 0x7000;
  CHECK_EQ(rd(mem, zp + 0x1fe, 2), uint64_t{0xaa55});
  CHECK_EQ(rd(mem, zp + 0x202, 4), uint64_t{0x53726448});
  CHECK_EQ(rd(mem, zp + 0x206, 2), uint64_t{0x20f});
  CHECK_EQ(rd(mem, zp + 0x236, 2), uint64_t{3});
  CHECK_EQ(rd(mem, zp + 0x210, 1), uint64_t{0xff});
  CHECK_EQ(rd(mem, zp + 0x211, 1), uint64_t{0x81});
  CHECK_EQ(rd(mem, zp + 0x224, 2), uint64_t{0xfe00});
  CHECK_EQ(rd(mem, zp + 0x228, 4), uint64_t{0x20000});
  CHECK(cstr(mem, 0x20000) == "root=/dev/vda");
  CHECK_EQ(rd(mem, zp + 0x250, 8), uint64_t{0});  // setup_data cleared
  const uint64_t want = (64 * MiB - initrd.size()) & ~uint64_t{0xfff};
  CHECK_EQ(r.initrd_start, want);
  CHECK_EQ(rd(mem, zp + 0x218, 4), want);
  CHECK_EQ(rd(mem, zp + 0x21c, 4), uint64_t{initrd.size()});
  CHECK_EQ(rd(mem, zp + 0x0c0, 4), uint64_t{0});
  CHECK(bytes_at(mem, want, initrd.size()) == initrd);
  check_e820_zero_page(mem, 64 * MiB);
  CHECK_EQ(rd(mem, 0x7000 + 0x300, 1), uint64_t{0});  // nothing past the header copy
}

TEST(boot_bzimage_falls_back_to_low_address) {
  GuestMemory mem(16 * MiB);  // pref_address 16 MiB does not fit
  auto r = load_kernel_bytes(mem, make_bzimage(), {}, config());
  CHECK_EQ(r.kernel_start, uint64_t{2 * MiB});  // 1 MiB aligned up to 2 MiB
  CHECK_EQ(r.cpu.regs.rip, uint64_t{2 * MiB + 0x200});
  BzParams fixed;
  fixed.relocatable = 0;
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_bzimage(fixed), {}, config()),
                    "BOOT_KERNEL_TOO_BIG",
                    "kernel /images/kernel needs memory up to 20 MiB but the VM has 16 MiB; give the VM more memory");
}

TEST(boot_bzimage_initrd_below_addr_max) {
  GuestMemory mem(64 * MiB);
  BzParams p;
  p.initrd_addr_max = 32 * MiB - 1;
  auto initrd = pattern(8192, 1);
  auto r = load_kernel_bytes(mem, make_bzimage(p), initrd, config());
  CHECK_EQ(r.initrd_start, uint64_t{32 * MiB - 8192});
  p.initrd_addr_max = 21 * MiB - 1;  // kernel owns [16, 20) MiB: 1 MiB left
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_bzimage(p), pattern(MiB + 1, 2), config()),
                    "BOOT_INITRD_TOO_BIG",
                    "initrd /images/initrd is 1.0 MiB (1048577 bytes) but only 1 MiB (1048576 bytes) of guest memory is free");
  CHECK_EQ(load_kernel_bytes(mem, make_bzimage(p), pattern(MiB, 2), config()).initrd_start,
           uint64_t{20 * MiB});
}

TEST(boot_vmlinux_elf) {
  GuestMemory mem(64 * MiB);
  auto junk = mem.slice(0x1200080, 0x3000 - 0x80);
  std::memset(junk.data(), 0xcc, junk.size());
  auto r = load_kernel_bytes(mem, make_vmlinux(), pattern(100, 9), config("console=ttyS0", 4));
  CHECK(r.protocol == BootProtocol::kLinuxElf);
  CHECK(std::string(protocol_name(r.protocol)) == "linux-elf");
  CHECK_EQ(r.kernel_start, uint64_t{0x1000000});
  CHECK_EQ(r.kernel_end, uint64_t{0x1203000});
  CHECK(bytes_at(mem, 0x1000000, 512) == pattern(512, 0x22));
  CHECK(bytes_at(mem, 0x1200000, 128) == pattern(128, 0x33));
  CHECK(bytes_at(mem, 0x1200080, 0x3000 - 0x80) == std::vector<uint8_t>(0x3000 - 0x80, 0));
  check_long_mode_state(r, 0x1000040);
  check_linux_gdt(mem);
  check_page_tables(mem);
  const uint64_t zp = 0x7000;
  CHECK_EQ(rd(mem, zp + 0x1fe, 2), uint64_t{0xaa55});
  CHECK_EQ(rd(mem, zp + 0x202, 4), uint64_t{0x53726448});
  CHECK_EQ(rd(mem, zp + 0x206, 2), uint64_t{0x20c});
  CHECK_EQ(rd(mem, zp + 0x210, 1), uint64_t{0xff});
  CHECK_EQ(rd(mem, zp + 0x230, 4), uint64_t{2 * MiB});
  CHECK_EQ(rd(mem, zp + 0x238, 4), uint64_t{2047});
  CHECK_EQ(rd(mem, zp + 0x228, 4), uint64_t{0x20000});
  CHECK_EQ(rd(mem, zp + 0x218, 4), r.initrd_start);
  CHECK_EQ(rd(mem, zp + 0x21c, 4), uint64_t{100});
  check_e820_zero_page(mem, 64 * MiB);
  check_mp_present(mem);
}

TEST(boot_errors_unknown_format) {
  GuestMemory mem(32 * MiB);
  const std::string expect =
      "/images/kernel is not a bootable kernel: expected a PVH ELF (with a "
      "XEN_ELFNOTE_PHYS32_ENTRY note), a Linux bzImage (64-bit boot protocol 2.12 or later) "
      "or an x86-64 ELF vmlinux";
  CHECK_THROWS_CODE(load_kernel_bytes(mem, pattern(4096, 3), {}, config()), "BOOT_UNKNOWN_FORMAT", expect);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, {}, {}, config()), "BOOT_UNKNOWN_FORMAT", expect);
  TestSegment s{0x100000, 0x100000, pattern(64, 1), 0};
  auto arm = make_elf(true, 183, 0x100000, {s});
  CHECK_THROWS_CODE(load_kernel_bytes(mem, arm, {}, config()), "BOOT_UNKNOWN_FORMAT", "another machine");
  auto i386 = make_elf(false, 3, 0x100000, {s});
  CHECK_THROWS_CODE(load_kernel_bytes(mem, i386, {}, config()), "BOOT_UNKNOWN_FORMAT", expect);
  BzParams old;
  old.version = 0x20a;
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_bzimage(old), {}, config()), "BOOT_UNKNOWN_FORMAT",
                    "boot protocol 2.10");
  BzParams no64;
  no64.xloadflags = 0;
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_bzimage(no64), {}, config()), "BOOT_UNKNOWN_FORMAT",
                    "XLF_KERNEL_64");
}

TEST(boot_errors_bad_image) {
  GuestMemory mem(32 * MiB);
  auto bz = make_bzimage();
  std::vector<uint8_t> cut(bz.begin(), bz.begin() + 0x240);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, cut, {}, config()), "BOOT_BAD_IMAGE",
                    "/images/kernel is damaged: the Linux setup header is truncated");
  std::vector<uint8_t> no_pm(bz.begin(), bz.begin() + 5 * 512);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, no_pm, {}, config()), "BOOT_BAD_IMAGE",
                    "protected-mode kernel should start at offset 0xa00");
  auto short_hdr = bz;
  short_hdr[0x201] = 0x20;
  CHECK_THROWS_CODE(load_kernel_bytes(mem, short_hdr, {}, config()), "BOOT_BAD_IMAGE", "claims to end");
  BzParams odd;
  odd.kernel_alignment = 0x3000;
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_bzimage(odd), {}, config()), "BOOT_BAD_IMAGE", "power of two");

  auto elf = make_vmlinux();
  auto phoff = elf;
  put(phoff, 0x20, 8, elf.size() + 100);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, phoff, {}, config()), "BOOT_BAD_IMAGE",
                    "program header table (offset");
  auto overflow = elf;
  put(overflow, 64 + 40, 8, ~0ull - 0x1000);  // memsz
  CHECK_THROWS_CODE(load_kernel_bytes(mem, overflow, {}, config()), "BOOT_BAD_IMAGE", "wraps around");
  auto entry = elf;
  put(entry, 0x18, 8, 0x5000000);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, entry, {}, config()), "BOOT_BAD_IMAGE",
                    "entry point 0x5000000 lies outside");
  TestSegment low{0x8000, 0x8000, pattern(64, 1), 0};
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_elf(true, 62, 0x8000, {low}), {}, config()),
                    "BOOT_BAD_IMAGE", "below 1 MiB");
  auto pvh = make_pvh_elf(false, 2);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, pvh, {}, config()), "BOOT_BAD_IMAGE", "expected 4 or 8");
  TestSegment s{0x100000, 0x100000, pattern(64, 1), 0};
  auto pvh_far = make_elf(false, 3, 0, {s}, {{"Xen", 18, le_bytes(0x200000, 4)}});
  CHECK_THROWS_CODE(load_kernel_bytes(mem, pvh_far, {}, config()), "BOOT_BAD_IMAGE",
                    "PVH entry point 0x200000 lies outside");
  auto pvh_high = make_elf(true, 62, 0, {s}, {{"Xen", 18, le_bytes(0x100000100000ull, 8)}});
  CHECK_THROWS_CODE(load_kernel_bytes(mem, pvh_high, {}, config()), "BOOT_BAD_IMAGE", "not a 32-bit address");
}

TEST(boot_errors_sizes) {
  GuestMemory mem(8 * MiB);
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_vmlinux(), {}, config()), "BOOT_KERNEL_TOO_BIG",
                    "kernel /images/kernel needs memory up to 19 MiB but the VM has 8 MiB; give the VM more memory");
  GuestMemory tiny(512 << 10);
  CHECK_THROWS_CODE(load_kernel_bytes(tiny, make_pvh_elf(), {}, config()), "BOOT_KERNEL_TOO_BIG",
                    "but the VM has 0.5 MiB");
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_pvh_elf(), pattern(8 * MiB, 1), config()),
                    "BOOT_INITRD_TOO_BIG", "initrd /images/initrd is 8 MiB (8388608 bytes) but only 6.9 MiB");
  CHECK_THROWS_CODE(load_kernel_bytes(mem, make_pvh_elf(), pattern(8 * MiB, 1), config()),
                    "BOOT_INITRD_TOO_BIG", "give the VM more memory or use a smaller initrd");

  BzParams p;
  p.cmdline_size = 100;
  GuestMemory mem2(32 * MiB);
  CHECK_THROWS_CODE(load_kernel_bytes(mem2, make_bzimage(p), {}, config(std::string(101, 'x'))),
                    "BOOT_CMDLINE_TOO_LONG",
                    "the kernel command line is 101 bytes; kernel /images/kernel accepts at most 100 (shorten it)");
  load_kernel_bytes(mem2, make_bzimage(p), {}, config(std::string(100, 'x')));
  CHECK_THROWS_CODE(load_kernel_bytes(mem2, make_vmlinux(), {}, config(std::string(2048, 'x'))),
                    "BOOT_CMDLINE_TOO_LONG", "accepts at most 2047");
  CHECK_THROWS_CODE(load_kernel_bytes(mem2, make_pvh_elf(), {}, config(std::string(65536, 'x'))),
                    "BOOT_CMDLINE_TOO_LONG", "the PVH kernel /images/kernel accepts at most 65535");
  auto r = load_kernel_bytes(mem2, make_pvh_elf(), {}, config(std::string(65535, 'y')));
  CHECK(r.protocol == BootProtocol::kPvh);
  CHECK_EQ(cstr(mem2, 0x20000).size(), size_t{65535});

  CHECK_THROWS_CODE(load_kernel_bytes(mem2, make_pvh_elf(), {}, config("", 0)), "BOOT_VCPU_COUNT", "use 1 to 254");
  CHECK_THROWS_CODE(load_kernel_bytes(mem2, make_pvh_elf(), {}, config("", 300)), "BOOT_VCPU_COUNT", "300 vCPUs");
}

TEST(boot_load_kernel_reads_files) {
  GuestMemory mem(32 * MiB);
  char dir[] = "/tmp/berth-boot-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  const std::string kpath = std::string(dir) + "/vmlinux";
  const std::string ipath = std::string(dir) + "/initrd";
  auto write = [](const std::string& path, const std::vector<uint8_t>& b) {
    FILE* f = std::fopen(path.c_str(), "wb");
    CHECK(f != nullptr);
    if (!f) return;
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
  };
  write(kpath, make_vmlinux());
  write(ipath, pattern(70000, 4));
  BootConfig c;
  c.kernel_path = kpath;
  c.initrd_path = ipath;
  auto r = load_kernel(mem, c);
  CHECK(r.protocol == BootProtocol::kLinuxElf);
  CHECK_EQ(r.initrd_size, uint64_t{70000});
  CHECK(bytes_at(mem, r.initrd_start, 70000) == pattern(70000, 4));

  c.initrd_path = std::string(dir) + "/missing";
  CHECK_THROWS_CODE(load_kernel(mem, c), "BOOT_FILE_READ",
                    "cannot read initrd " + c.initrd_path + ": No such file or directory");
  c.initrd_path.clear();
  c.kernel_path = dir;  // a directory
  CHECK_THROWS_CODE(load_kernel(mem, c), "BOOT_FILE_READ", std::string("cannot read kernel ") + dir);
  c.kernel_path = ipath;  // not a kernel: the message names the file
  CHECK_THROWS_CODE(load_kernel(mem, c), "BOOT_UNKNOWN_FORMAT", ipath + " is not a bootable kernel");
  c.kernel_path.clear();
  CHECK_THROWS_CODE(load_kernel(mem, c), "BOOT_FILE_READ", "no path was given");
  std::remove(kpath.c_str());
  std::remove(ipath.c_str());
  rmdir(dir);
}

// Flips and truncates bytes of valid images: the loader must either succeed or throw
// berth::Error, never crash or read/write out of bounds (ASan/UBSan check the latter).
TEST(boot_fuzz_sweep_only_berth_errors) {
  GuestMemory mem(32 * MiB);
  auto initrd = pattern(300, 7);
  int loads = 0, errors = 0;
  auto attempt = [&](const std::vector<uint8_t>& img) {
    ++loads;
    try {
      load_kernel_bytes(mem, img, initrd, config("console=ttyS0", 2));
    } catch (const berth::Error&) {
      ++errors;
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("non-berth exception: ") + e.what());
    }
  };
  std::vector<std::pair<std::vector<uint8_t>, std::pair<size_t, size_t>>> images = {
      {make_pvh_elf(false), {0, 0}},
      {make_pvh_elf(true, 8), {0, 0}},
      {make_vmlinux(), {0, 0}},
      {make_bzimage(), {0x1f0, 0x270}},
  };
  for (auto& [img, range] : images) {
    const size_t lo = range.second ? range.first : 0;
    const size_t hi = range.second ? range.second : img.size();
    for (size_t i = lo; i < hi; ++i) {
      for (uint8_t mask : {uint8_t{0xff}, uint8_t{0x80}, uint8_t{0x01}, uint8_t{0x10}}) {
        auto m = img;
        m[i] ^= mask;
        attempt(m);
      }
    }
    const size_t step = img.size() > 1024 ? 37 : 1;
    for (size_t n = 0; n < img.size(); n += step) {
      attempt(std::vector<uint8_t>(img.begin(), img.begin() + n));
    }
  }
  CHECK(loads > 3000);
  CHECK(errors > 0);
}
