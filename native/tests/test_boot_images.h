// Builders for the synthetic kernel images the boot tests load: a tiny ELF (32 or 64-bit,
// with optional PT_NOTE notes) and a bzImage-shaped file with a Linux setup header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace berth::test {

inline void put(std::vector<uint8_t>& b, size_t off, unsigned n, uint64_t v) {
  if (b.size() < off + n) b.resize(off + n, 0);
  for (unsigned i = 0; i < n; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t get(const std::vector<uint8_t>& b, size_t off, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{b[off + i]} << (8 * i);
  return v;
}

struct TestSegment {
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  std::vector<uint8_t> data;
  uint64_t memsz = 0;  // 0 = data.size()
};

struct TestNote {
  std::string name;  // without NUL
  uint32_t type = 0;
  std::vector<uint8_t> desc;
};

// Layout: ELF header, program headers (PT_LOAD per segment, then one PT_NOTE when there
// are notes), segment data (each at a 16-byte aligned offset), then the notes.
inline std::vector<uint8_t> make_elf(bool is64, uint16_t machine, uint64_t entry,
                                     const std::vector<TestSegment>& segs,
                                     const std::vector<TestNote>& notes = {}) {
  const size_t ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32;
  const size_t phnum = segs.size() + (notes.empty() ? 0 : 1);
  std::vector<uint8_t> b(ehsize + phnum * phentsize, 0);
  b[0] = 0x7f; b[1] = 'E'; b[2] = 'L'; b[3] = 'F';
  b[4] = is64 ? 2 : 1; b[5] = 1; b[6] = 1;
  put(b, 0x10, 2, 2);  // ET_EXEC
  put(b, 0x12, 2, machine);
  put(b, 0x14, 4, 1);
  if (is64) {
    put(b, 0x18, 8, entry); put(b, 0x20, 8, ehsize);
    put(b, 0x34, 2, ehsize); put(b, 0x36, 2, phentsize); put(b, 0x38, 2, phnum);
  } else {
    put(b, 0x18, 4, entry); put(b, 0x1c, 4, ehsize);
    put(b, 0x28, 2, ehsize); put(b, 0x2a, 2, phentsize); put(b, 0x2c, 2, phnum);
  }
  auto phdr = [&](size_t i, uint32_t type, uint64_t off, uint64_t vaddr, uint64_t paddr,
                  uint64_t filesz, uint64_t memsz, uint64_t align) {
    size_t p = ehsize + i * phentsize;
    put(b, p, 4, type);
    if (is64) {
      put(b, p + 4, 4, 5); put(b, p + 8, 8, off); put(b, p + 16, 8, vaddr);
      put(b, p + 24, 8, paddr); put(b, p + 32, 8, filesz); put(b, p + 40, 8, memsz);
      put(b, p + 48, 8, align);
    } else {
      put(b, p + 4, 4, off); put(b, p + 8, 4, vaddr); put(b, p + 12, 4, paddr);
      put(b, p + 16, 4, filesz); put(b, p + 20, 4, memsz); put(b, p + 24, 4, 5);
      put(b, p + 28, 4, align);
    }
  };
  for (size_t i = 0; i < segs.size(); ++i) {
    b.resize((b.size() + 15) & ~size_t{15}, 0);
    const size_t off = b.size();
    b.insert(b.end(), segs[i].data.begin(), segs[i].data.end());
    phdr(i, 1, off, segs[i].vaddr, segs[i].paddr, segs[i].data.size(),
         segs[i].memsz ? segs[i].memsz : segs[i].data.size(), 0x1000);
  }
  if (!notes.empty()) {
    b.resize((b.size() + 3) & ~size_t{3}, 0);
    const size_t start = b.size();
    for (const auto& n : notes) {
      const size_t h = b.size();
      put(b, h, 4, n.name.size() + 1);
      put(b, h + 4, 4, n.desc.size());
      put(b, h + 8, 4, n.type);
      b.insert(b.end(), n.name.begin(), n.name.end());
      b.push_back(0);
      b.resize((b.size() + 3) & ~size_t{3}, 0);
      b.insert(b.end(), n.desc.begin(), n.desc.end());
      b.resize((b.size() + 3) & ~size_t{3}, 0);
    }
    phdr(segs.size(), 4, start, 0, 0, b.size() - start, b.size() - start, 4);
  }
  return b;
}

inline std::vector<uint8_t> le_bytes(uint64_t v, unsigned n) {
  std::vector<uint8_t> out(n);
  for (unsigned i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
  return out;
}

inline std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + i * 7);
  return out;
}

// A PVH kernel: code at 1 MiB (+ 64 KiB of bss), entry 1 MiB + 0x10 in the Xen note.
inline std::vector<uint8_t> make_pvh_elf(bool is64 = false, unsigned desc_size = 4) {
  TestSegment s{0x100000, 0x100000, pattern(256, 0x11), 256 + 0x10000};
  return make_elf(is64, is64 ? 62 : 3, 0x100000,
                  {s}, {{"GNU", 3, {1, 2, 3, 4}}, {"Xen", 18, le_bytes(0x100010, desc_size)}});
}

// A vmlinux: text at 16 MiB physical / 0xffffffff81000000 virtual, data + bss after it.
inline std::vector<uint8_t> make_vmlinux() {
  TestSegment text{0x1000000, 0xffffffff81000000ull, pattern(512, 0x22), 0};
  TestSegment data{0x1200000, 0xffffffff81200000ull, pattern(128, 0x33), 0x3000};
  return make_elf(true, 62, 0xffffffff81000000ull + 0x40, {text, data}, {{"GNU", 3, {1, 2, 3, 4}}});
}

struct BzParams {
  uint8_t setup_sects = 4;
  uint16_t version = 0x20f;
  uint16_t xloadflags = 0x3;  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x400000;
  uint32_t kernel_alignment = 0x200000;
  uint8_t relocatable = 1;
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fffffff;
  size_t payload_size = 2048;
};

inline std::vector<uint8_t> make_bzimage(const BzParams& p = {}) {
  const size_t setup = (size_t{p.setup_sects ? p.setup_sects : 4u} + 1) * 512;
  std::vector<uint8_t> b(setup, 0);
  put(b, 0x1f1, 1, p.setup_sects);
  put(b, 0x1fe, 2, 0xaa55);
  put(b, 0x200, 1, 0xeb);
  put(b, 0x201, 1, 0x6a);  // jump over the header: it ends at 0x26c
  put(b, 0x202, 4, 0x53726448);
  put(b, 0x206, 2, p.version);
  put(b, 0x211, 1, 0x01);  // LOADED_HIGH
  put(b, 0x22c, 4, p.initrd_addr_max);
  put(b, 0x230, 4, p.kernel_alignment);
  put(b, 0x234, 1, p.relocatable);
  put(b, 0x236, 2, p.xloadflags);
  put(b, 0x238, 4, p.cmdline_size);
  put(b, 0x250, 8, 0x1234);  // a setup_data pointer the loader must clear
  put(b, 0x258, 8, p.pref_address);
  put(b, 0x260, 4, p.init_size);
  auto payload = pattern(p.payload_size, 0x44);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

}  // namespace berth::test
