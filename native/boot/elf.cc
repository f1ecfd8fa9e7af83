#include "boot/elf.h"

#include <cstdio>

#include "common/error.h"

namespace berth::boot {

namespace {

uint64_t le(std::span<const uint8_t> d, uint64_t off, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{d[off + i]} << (8 * i);
  return v;
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// True when [off, off+len) lies inside a buffer of `size` bytes, without overflow.
bool in_bounds(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

}  // namespace

bool ElfFile::has_magic(std::span<const uint8_t> data) {
  return data.size() >= 4 && data[0] == 0x7f && data[1] == 'E' && data[2] == 'L' &&
         data[3] == 'F';
}

void ElfFile::bad(const std::string& what) const {
  throw Error("BOOT_BAD_IMAGE", name_ + " is a damaged ELF file: " + what +
                                    " (rebuild the kernel or check that the file was copied "
                                    "completely)");
}

ElfFile::ElfFile(std::span<const uint8_t> data, std::string name)
    : data_(data), name_(std::move(name)) {
  if (!has_magic(data_)) bad("it does not start with the ELF magic");
  if (data_.size() < 0x34) bad("the ELF header is truncated (" + std::to_string(data_.size()) + " bytes)");
  uint8_t cls = data_[4];
  if (cls != 1 && cls != 2) bad("unknown ELF class " + std::to_string(cls));
  if (data_[5] != 1) bad("it is not little-endian");
  is_64_ = cls == 2;
  const uint64_t ehsize = is_64_ ? 0x40 : 0x34;
  if (data_.size() < ehsize) bad("the ELF header is truncated (" + std::to_string(data_.size()) + " bytes)");

  type_ = static_cast<uint16_t>(le(data_, 0x10, 2));
  machine_ = static_cast<uint16_t>(le(data_, 0x12, 2));
  uint64_t phoff, phentsize, phnum;
  if (is_64_) {
    entry_ = le(data_, 0x18, 8);
    phoff = le(data_, 0x20, 8);
    phentsize = le(data_, 0x36, 2);
    phnum = le(data_, 0x38, 2);
  } else {
    entry_ = le(data_, 0x18, 4);
    phoff = le(data_, 0x1c, 4);
    phentsize = le(data_, 0x2a, 2);
    phnum = le(data_, 0x2c, 2);
  }
  if (phnum == 0) bad("it has no program headers");
  if (phnum == 0xffff) bad("it uses extended program header numbering, which is not supported");
  const uint64_t min_phentsize = is_64_ ? 56 : 32;
  if (phentsize < min_phentsize) {
    bad("program header entry size " + std::to_string(phentsize) + " is smaller than " +
        std::to_string(min_phentsize));
  }
  // phnum < 2^16 and phentsize < 2^16: the product cannot overflow.
  if (!in_bounds(phoff, phnum * phentsize, data_.size())) {
    bad("the program header table (offset " + hex(phoff) + ", " + std::to_string(phnum) +
        " entries) lies outside the file (" + std::to_string(data_.size()) + " bytes)");
  }

  phdrs_.reserve(phnum);
  for (uint64_t i = 0; i < phnum; ++i) {
    const uint64_t p = phoff + i * phentsize;
    ElfProgramHeader ph;
    ph.type = static_cast<uint32_t>(le(data_, p, 4));
    if (is_64_) {
      ph.flags = static_cast<uint32_t>(le(data_, p + 4, 4));
      ph.offset = le(data_, p + 8, 8);
      ph.vaddr = le(data_, p + 16, 8);
      ph.paddr = le(data_, p + 24, 8);
      ph.filesz = le(data_, p + 32, 8);
      ph.memsz = le(data_, p + 40, 8);
      ph.align = le(data_, p + 48, 8);
    } else {
      ph.offset = le(data_, p + 4, 4);
      ph.vaddr = le(data_, p + 8, 4);
      ph.paddr = le(data_, p + 12, 4);
      ph.filesz = le(data_, p + 16, 4);
      ph.memsz = le(data_, p + 20, 4);
      ph.flags = static_cast<uint32_t>(le(data_, p + 24, 4));
      ph.align = le(data_, p + 28, 4);
    }
    if (ph.type == kPtLoad || ph.type == kPtNote) {
      const std::string which = "program header " + std::to_string(i);
      if (!in_bounds(ph.offset, ph.filesz, data_.size())) {
        bad(which + " (offset " + hex(ph.offset) + ", " + std::to_string(ph.filesz) +
            " bytes) lies outside the file (" + std::to_string(data_.size()) + " bytes)");
      }
      if (ph.type == kPtLoad) {
        if (ph.filesz > ph.memsz) {
          bad(which + " has a file size (" + std::to_string(ph.filesz) +
              ") larger than its memory size (" + std::to_string(ph.memsz) + ")");
        }
        if (ph.memsz > UINT64_MAX - ph.paddr || ph.memsz > UINT64_MAX - ph.vaddr) {
          bad(which + " at " + hex(ph.paddr) + " with size " + hex(ph.memsz) +
              " wraps around the address space");
        }
      }
    }
    phdrs_.push_back(ph);
  }
}

std::span<const uint8_t> ElfFile::segment_bytes(const ElfProgramHeader& ph) const {
  if (!in_bounds(ph.offset, ph.filesz, data_.size())) {
    bad("a segment (offset " + hex(ph.offset) + ") lies outside the file");
  }
  return data_.subspan(ph.offset, ph.filesz);
}

std::vector<ElfNote> ElfFile::notes() const {
  std::vector<ElfNote> out;
  for (const auto& ph : phdrs_) {
    if (ph.type != kPtNote) continue;
    auto seg = segment_bytes(ph);
    const uint64_t align = ph.align == 8 ? 8 : 4;
    auto round = [align](uint64_t v) { return (v + align - 1) & ~(align - 1); };
    uint64_t off = 0;
    while (off < seg.size()) {
      if (seg.size() - off < 12) bad("a note header in a PT_NOTE segment is truncated");
      const uint64_t namesz = le(seg, off, 4);
      const uint64_t descsz = le(seg, off + 4, 4);
      const uint32_t type = static_cast<uint32_t>(le(seg, off + 8, 4));
      const uint64_t name_off = off + 12;
      // namesz and descsz are < 2^32, so these sums cannot overflow a uint64_t.
      const uint64_t desc_off = name_off + round(namesz);
      if (!in_bounds(name_off, namesz, seg.size()) || !in_bounds(desc_off, descsz, seg.size())) {
        bad("a note (type " + std::to_string(type) + ") runs past the end of its PT_NOTE segment");
      }
      ElfNote n;
      n.type = type;
      const char* name = reinterpret_cast<const char*>(seg.data() + name_off);
      uint64_t len = namesz;
      if (len > 0 && name[len - 1] == '\0') --len;
      n.name = std::string_view(name, len);
      n.desc = seg.subspan(desc_off, descsz);
      out.push_back(n);
      off = desc_off + round(descsz);
    }
  }
  return out;
}

}  // namespace berth::boot
