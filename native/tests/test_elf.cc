#include "boot/elf.h"

#include "tests/check.h"
#include "tests/test_boot_images.h"

using berth::boot::ElfFile;
using namespace berth::test;

TEST(boot_elf_parses_64bit_headers_and_notes) {
  auto img = make_vmlinux();
  ElfFile elf(img, "vmlinux");
  CHECK(elf.is_64());
  CHECK_EQ(elf.machine(), uint16_t{62});
  CHECK_EQ(elf.entry(), 0xffffffff81000040ull);
  CHECK_EQ(elf.program_headers().size(), size_t{3});
  const auto& text = elf.program_headers()[0];
  CHECK_EQ(text.type, 1u);
  CHECK_EQ(text.paddr, uint64_t{0x1000000});
  CHECK_EQ(text.vaddr, 0xffffffff81000000ull);
  CHECK_EQ(text.filesz, uint64_t{512});
  auto bytes = elf.segment_bytes(text);
  CHECK_EQ(bytes.size(), size_t{512});
  CHECK_EQ(bytes[1], pattern(512, 0x22)[1]);
  CHECK_EQ(elf.program_headers()[1].memsz, uint64_t{0x3000});
  auto notes = elf.notes();
  CHECK_EQ(notes.size(), size_t{1});
  CHECK(notes[0].name == "GNU");
  CHECK_EQ(notes[0].type, 3u);
  CHECK_EQ(notes[0].desc.size(), size_t{4});
}

TEST(boot_elf_parses_32bit_pvh_note) {
  auto img = make_pvh_elf(false);
  ElfFile elf(img, "pvh");
  CHECK(!elf.is_64());
  CHECK_EQ(elf.machine(), uint16_t{3});
  auto notes = elf.notes();
  CHECK_EQ(notes.size(), size_t{2});
  CHECK(notes[1].name == "Xen");
  CHECK_EQ(notes[1].type, 18u);
  CHECK_EQ(notes[1].desc.size(), size_t{4});
  CHECK_EQ(notes[1].desc[0], uint8_t{0x10});
}

TEST(boot_elf_rejects_truncated_and_foreign_headers) {
  auto img = make_vmlinux();
  CHECK(ElfFile::has_magic(img));
  std::vector<uint8_t> short_img(img.begin(), img.begin() + 0x30);
  CHECK_THROWS_CODE(ElfFile(short_img, "k"), "BOOT_BAD_IMAGE", "ELF header is truncated");
  std::vector<uint8_t> short64(img.begin(), img.begin() + 0x38);
  CHECK_THROWS_CODE(ElfFile(short64, "k"), "BOOT_BAD_IMAGE", "ELF header is truncated");
  auto be = img;
  be[5] = 2;
  CHECK_THROWS_CODE(ElfFile(be, "k"), "BOOT_BAD_IMAGE", "not little-endian");
  auto cls = img;
  cls[4] = 7;
  CHECK_THROWS_CODE(ElfFile(cls, "k"), "BOOT_BAD_IMAGE", "unknown ELF class 7");
  std::vector<uint8_t> not_elf = {'M', 'Z', 0, 0};
  CHECK(!ElfFile::has_magic(not_elf));
  CHECK_THROWS_CODE(ElfFile(not_elf, "k"), "BOOT_BAD_IMAGE", "ELF magic");
}

TEST(boot_elf_rejects_program_headers_outside_file) {
  auto img = make_vmlinux();
  auto a = img;
  put(a, 0x20, 8, img.size() - 10);  // e_phoff near the end
  CHECK_THROWS_CODE(ElfFile(a, "/k/vmlinux"), "BOOT_BAD_IMAGE", "/k/vmlinux is a damaged ELF file");
  CHECK_THROWS_CODE(ElfFile(a, "k"), "BOOT_BAD_IMAGE", "program header table");
  auto b = img;
  put(b, 0x20, 8, ~0ull - 8);  // e_phoff that would overflow
  CHECK_THROWS_CODE(ElfFile(b, "k"), "BOOT_BAD_IMAGE", "lies outside the file");
  auto c = img;
  put(c, 0x36, 2, 20);  // phentsize too small
  CHECK_THROWS_CODE(ElfFile(c, "k"), "BOOT_BAD_IMAGE", "entry size 20");
  auto d = img;
  put(d, 0x38, 2, 0);
  CHECK_THROWS_CODE(ElfFile(d, "k"), "BOOT_BAD_IMAGE", "no program headers");
}

TEST(boot_elf_rejects_bad_segments) {
  auto img = make_vmlinux();
  const size_t ph0 = 64;
  auto a = img;
  put(a, ph0 + 8, 8, img.size());  // p_offset at the end, filesz 512
  CHECK_THROWS_CODE(ElfFile(a, "k"), "BOOT_BAD_IMAGE", "program header 0 (offset");
  auto b = img;
  put(b, ph0 + 32, 8, ~0ull);  // p_filesz huge: offset + filesz overflows
  CHECK_THROWS_CODE(ElfFile(b, "k"), "BOOT_BAD_IMAGE", "lies outside the file");
  auto c = img;
  put(c, ph0 + 40, 8, 16);  // memsz < filesz
  CHECK_THROWS_CODE(ElfFile(c, "k"), "BOOT_BAD_IMAGE", "larger than its memory size");
  auto d = img;
  put(d, ph0 + 40, 8, ~0ull - 0x100);  // paddr + memsz wraps
  CHECK_THROWS_CODE(ElfFile(d, "k"), "BOOT_BAD_IMAGE", "wraps around");
}

TEST(boot_elf_rejects_notes_past_segment) {
  auto img = make_pvh_elf(false);
  ElfFile ok(img, "k");
  const auto& note_ph = ok.program_headers()[1];
  CHECK_EQ(note_ph.type, 4u);
  auto a = img;
  put(a, note_ph.offset + 4, 4, 0x1000);  // first note's descsz
  ElfFile elf(a, "k");
  CHECK_THROWS_CODE(elf.notes(), "BOOT_BAD_IMAGE", "runs past the end");
  auto b = img;
  put(b, note_ph.offset, 4, 0xffffffff);  // namesz
  ElfFile elf2(b, "k");
  CHECK_THROWS_CODE(elf2.notes(), "BOOT_BAD_IMAGE", "runs past the end");
  auto c = img;
  put(c, 52 + 32 + 16, 4, note_ph.filesz - 2);  // note segment filesz cut mid-header
  ElfFile elf3(c, "k");
  CHECK_THROWS_CODE(elf3.notes(), "BOOT_BAD_IMAGE", "PT_NOTE");
}
