// A bounds-checked reader for ELF32/ELF64 little-endian files held in memory. The bytes are
// untrusted: every offset and size is checked (without overflow) before use, and anything
// malformed throws berth::Error BOOT_BAD_IMAGE naming the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace berth::boot {

constexpr uint32_t kPtLoad = 1;
constexpr uint32_t kPtNote = 4;
constexpr uint16_t kEmI386 = 3;
constexpr uint16_t kEmX86_64 = 62;

struct ElfProgramHeader {
  uint32_t type = 0;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint64_t vaddr = 0;
  uint64_t paddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint64_t align = 0;
};

struct ElfNote {
  uint32_t type = 0;
  std::string_view name;           // without the terminating NUL
  std::span<const uint8_t> desc;   // points into the file bytes
};

class ElfFile {
 public:
  // True when the bytes start with the ELF magic (\x7fELF).
  static bool has_magic(std::span<const uint8_t> data);

  // Parses the ELF header and program header table. `name` is used in error messages
  // (usually the file path). Checks that PT_LOAD and PT_NOTE segments lie inside the file,
  // that filesz <= memsz and that paddr/vaddr + memsz do not overflow.
  ElfFile(std::span<const uint8_t> data, std::string name);

  bool is_64() const { return is_64_; }
  uint16_t type() const { return type_; }
  uint16_t machine() const { return machine_; }
  uint64_t entry() const { return entry_; }
  const std::vector<ElfProgramHeader>& program_headers() const { return phdrs_; }

  // The file bytes of a segment: [offset, offset+filesz). Only for headers returned by
  // program_headers() (PT_LOAD and PT_NOTE are pre-checked; others are checked here).
  std::span<const uint8_t> segment_bytes(const ElfProgramHeader& ph) const;

  // Every note in every PT_NOTE segment, in file order. Malformed notes throw.
  std::vector<ElfNote> notes() const;

 private:
  [[noreturn]] void bad(const std::string& what) const;

  std::span<const uint8_t> data_;
  std::string name_;
  bool is_64_ = false;
  uint16_t type_ = 0;
  uint16_t machine_ = 0;
  uint64_t entry_ = 0;
  std::vector<ElfProgramHeader> phdrs_;
};

}  // namespace berth::boot
