#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "devices/platform/pflash.h"
#include "tests/check.h"
#include "tests/state_helpers.h"

using berth::devices::platform::Pflash;
using namespace berth::test::state_bytes;

namespace {

constexpr uint64_t kVarsSize = 0x84000;  // OVMF_VARS_4M.fd
constexpr uint64_t kCodeSize = 0x37c000;  // OVMF_CODE_4M.fd
constexpr uint64_t kBlock = Pflash::kBlockSize;

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/var/tmp/berth-pflash-XXXXXX";
    path = ::mkdtemp(t) ? t : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// A file of `size` bytes: a pattern, with a firmware-volume header of `fv_length` at the
// start when fv_length is nonzero (as OVMF_VARS files have).
std::string make_file(const TempDir& d, const std::string& name, uint64_t size, uint64_t fv_length = 0) {
  std::vector<uint8_t> bytes(size);
  for (uint64_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  if (fv_length) {
    for (int i = 0; i < 16; ++i) bytes[i] = 0;  // zero vector, as OVMF's
    for (int i = 0; i < 8; ++i) bytes[0x20 + i] = static_cast<uint8_t>(fv_length >> (8 * i));
    std::memcpy(bytes.data() + 0x28, "_FVH", 4);
  }
  const std::string path = d.file(name);
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  CHECK(fd >= 0);
  CHECK_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(size));
  ::close(fd);
  return path;
}

uint8_t file_byte(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDONLY);
  uint8_t b = 0;
  CHECK_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
  return b;
}

struct Flash {
  std::unique_ptr<Pflash> f;
  std::vector<bool> modes;
  Flash(const std::string& path, Pflash::Access access) : f(std::make_unique<Pflash>(path, access)) {
    f->set_mode_callback([this](bool array) { modes.push_back(array); });
  }
  void wr(uint64_t off, uint8_t v) { f->write(off, std::span<const uint8_t>(&v, 1)); }
  uint8_t rd(uint64_t off) {
    uint8_t v = 0;
    f->read(off, std::span<uint8_t>(&v, 1));
    return v;
  }
};

}  // namespace

TEST(pflash_ovmf_detection_sequence_finds_writable_flash) {
  TempDir d;
  const auto path = make_file(d, "vars.fd", kVarsSize, kVarsSize);
  Flash fl(path, Pflash::Access::kWritable);
  CHECK(fl.f->array_mode());
  // QemuFlashDetected: the first byte of block 0 that is not 0x50, 0x70 or 0x00.
  uint64_t probe = 0;
  while (fl.rd(probe) == 0x50 || fl.rd(probe) == 0x70 || fl.rd(probe) == 0x00) ++probe;
  CHECK_EQ(probe, 16u);
  const uint8_t original = fl.rd(probe);
  fl.wr(probe, 0x50);  // clear status: stays in read-array mode
  CHECK_EQ(fl.rd(probe), original);
  CHECK(fl.modes.empty());
  fl.wr(probe, 0x70);  // read status
  CHECK_EQ(fl.rd(probe), 0x00);
  fl.wr(probe, 0x10);
  fl.wr(probe, original);
  fl.wr(probe, 0x70);
  CHECK_EQ(fl.rd(probe), Pflash::kStatusReady);  // no program error: writable flash
  fl.wr(probe, 0xff);
  CHECK_EQ(fl.rd(probe), original);
  CHECK(fl.modes == (std::vector<bool>{false, true}));
  CHECK(fl.f->array_mode());
}

// Debian's OVMF (edk2-stable202211) probes without the program step: 0x50, read, 0x70,
// read (0x00 means flash), 0xff. Read-only flash answers like ROM (the byte itself), and
// OVMF then keeps its variables in memory.
TEST(pflash_ovmf_2022_11_detection_and_rom_answer) {
  TempDir d;
  Flash fl(make_file(d, "vars.fd", kVarsSize, kVarsSize), Pflash::Access::kWritable);
  const uint64_t probe = 16;
  const uint8_t original = fl.rd(probe);
  fl.wr(probe, 0x50);
  CHECK_EQ(fl.rd(probe), original);
  fl.wr(probe, 0x70);
  CHECK_EQ(fl.rd(probe), 0x00);
  fl.wr(probe, 0xff);
  CHECK(fl.modes == (std::vector<bool>{false, true}));
  CHECK_EQ(fl.rd(probe), original);

  Flash rom(make_file(d, "ro-vars.fd", kVarsSize, kVarsSize), Pflash::Access::kReadOnly);
  const uint8_t rom_original = rom.rd(probe);
  rom.wr(probe, 0x50);
  rom.wr(probe, 0x70);
  CHECK_EQ(rom.rd(probe), rom_original);  // "FD behaves as ROM"
  CHECK(rom.modes.empty());
}

TEST(pflash_program_as_qemu_flash_write_and_persist) {
  TempDir d;
  const auto path = make_file(d, "vars.fd", kVarsSize, kVarsSize);
  {
    Flash fl(path, Pflash::Access::kWritable);
    // QemuFlashWrite (Lba 2, Offset 5, "abc"): 0x10 + byte for each, then 0xff at the last.
    const uint64_t base = 2 * kBlock + 5;
    const uint8_t data[] = {'a', 'b', 'c'};
    for (int i = 0; i < 3; ++i) {
      fl.wr(base + i, 0x10);
      CHECK_EQ(fl.rd(base), Pflash::kStatusReady);  // reads answer the status meanwhile
      fl.wr(base + i, data[i]);
      CHECK(!fl.f->array_mode());
    }
    uint8_t wide[4];
    fl.f->read(base, wide);
    CHECK(wide[0] == 0x80 && wide[3] == 0x80);
    fl.wr(base + 2, 0xff);
    CHECK(fl.modes == (std::vector<bool>{false, true}));
    CHECK_EQ(fl.rd(base), 'a');
    CHECK_EQ(fl.f->memory()[base + 2], 'c');
    // In the file as soon as the guest is back in read-array mode.
    CHECK_EQ(file_byte(path, base), 'a');
    CHECK_EQ(file_byte(path, base + 2), 'c');
    CHECK_EQ(file_byte(path, base + 3), static_cast<uint8_t>((base + 3) * 7 + 1));
    // A 4-byte program writes 4 bytes (little-endian), as QEMU does for a wide write.
    fl.wr(0x100, 0x40);
    const uint8_t four[4] = {1, 2, 3, 4};
    fl.f->write(0x100, four);
    fl.wr(0x100, 0xff);
    uint32_t got = 0;
    fl.f->read(0x100, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&got), 4));
    CHECK_EQ(got, 0x04030201u);
  }
  // A new mapping of the same file sees everything.
  Flash again(path, Pflash::Access::kWritable);
  CHECK_EQ(again.rd(2 * kBlock + 6), 'b');
  CHECK_EQ(again.rd(0x103), 4);
}

TEST(pflash_block_erase_as_qemu_flash_erase_block) {
  TempDir d;
  const auto path = make_file(d, "vars.fd", kVarsSize, kVarsSize);
  Flash fl(path, Pflash::Access::kWritable);
  const uint64_t block = 3 * kBlock;
  const uint8_t before_next = fl.rd(block + kBlock);
  const uint8_t before_prev = fl.rd(block - 1);
  fl.wr(block, 0x20);
  fl.wr(block, 0xd0);
  CHECK_EQ(fl.rd(block), Pflash::kStatusReady);  // status until read array
  fl.wr(block, 0xff);
  for (uint64_t i = 0; i < kBlock; i += 511) CHECK_EQ(fl.rd(block + i), 0xff);
  CHECK_EQ(fl.rd(block + kBlock - 1), 0xff);
  CHECK_EQ(fl.rd(block + kBlock), before_next);
  CHECK_EQ(fl.rd(block - 1), before_prev);
  CHECK_EQ(file_byte(path, block + 17), 0xff);
  // The confirm's address picks the block, wherever in it.
  const uint64_t other = 5 * kBlock;
  fl.wr(other + 100, 0x20);
  fl.wr(other + 200, 0xd0);
  fl.wr(other, 0xff);
  CHECK_EQ(fl.rd(other), 0xff);
  CHECK_EQ(fl.rd(other + kBlock - 1), 0xff);
  // Erase cancelled by read array, or by a wrong confirm: nothing erased, back to array mode.
  const uint64_t kept = 7 * kBlock;
  const uint8_t v = fl.rd(kept + 1);
  fl.wr(kept, 0x20);
  fl.wr(kept, 0xff);
  CHECK(fl.f->array_mode());
  fl.wr(kept, 0x20);
  fl.wr(kept, 0x33);
  CHECK(fl.f->array_mode());
  CHECK_EQ(fl.rd(kept + 1), v);
  // Clear status zeroes the status.
  fl.wr(0, 0x70);
  CHECK_EQ(fl.rd(0), 0x80);
  fl.wr(0, 0x50);
  fl.wr(0, 0x70);
  CHECK_EQ(fl.rd(0), 0x00);
  fl.wr(0, 0xff);
}

TEST(pflash_read_id_and_cfi_query) {
  TempDir d;
  Flash fl(make_file(d, "vars.fd", kVarsSize), Pflash::Access::kWritable);
  fl.wr(0, 0x90);
  CHECK_EQ(fl.rd(0), Pflash::kManufacturerId);
  CHECK_EQ(fl.rd(1), Pflash::kDeviceId);
  CHECK_EQ(fl.rd(2), 0);
  CHECK_EQ(fl.rd(kBlock + 1), Pflash::kDeviceId);  // per block
  fl.wr(0, 0x00);  // 0x00 reads the array too
  CHECK(fl.f->array_mode());
  fl.wr(0, 0x98);
  CHECK_EQ(fl.rd(0x10), 'Q');
  CHECK_EQ(fl.rd(0x11), 'R');
  CHECK_EQ(fl.rd(0x12), 'Y');
  CHECK_EQ(fl.rd(0x27), 20);  // 0x84000 bytes: 2^20 covers it
  CHECK_EQ(fl.rd(0x2d) | fl.rd(0x2e) << 8, 0x84 - 1);
  CHECK_EQ(fl.rd(0x2f) | fl.rd(0x30) << 8, 0x10);  // 4096 / 256
  fl.wr(0, 0x70);  // ignored in query mode, as on QEMU
  CHECK_EQ(fl.rd(0x10), 'Q');
  fl.wr(0, 0xff);
  CHECK(fl.f->array_mode());
  CHECK(fl.modes == (std::vector<bool>{false, true, false, true}));
  // Unknown commands return to read array.
  fl.wr(0, 0x70);
  fl.wr(0, 0xe8);
  CHECK(fl.f->array_mode());
}

TEST(pflash_read_only_code_ignores_writes) {
  TempDir d;
  const auto path = make_file(d, "code.fd", kCodeSize);
  Flash fl(path, Pflash::Access::kReadOnly);
  CHECK(fl.f->read_only());
  CHECK_EQ(fl.f->size(), kCodeSize);
  const uint8_t v = fl.rd(0x1234);
  fl.wr(0x1234, 0x10);
  fl.wr(0x1234, 0x00);
  fl.wr(0x1234, 0x70);
  fl.wr(0x1234, 0x20);
  fl.wr(0x1234, 0xd0);
  CHECK_EQ(fl.f->ignored_writes(), 5u);
  CHECK(fl.f->array_mode());
  CHECK(fl.modes.empty());
  CHECK_EQ(fl.rd(0x1234), v);
  CHECK_EQ(fl.f->memory()[0x1234], v);
  CHECK_EQ(file_byte(path, 0x1234), v);
  // A wide read at the end: the bytes past it read 0xff.
  uint8_t tail[4];
  fl.f->read(kCodeSize - 2, tail);
  CHECK_EQ(tail[0], static_cast<uint8_t>((kCodeSize - 2) * 7 + 1));
  CHECK_EQ(tail[2], 0xff);
  fl.wr(kCodeSize + 5, 0x10);  // outside: not even counted
  CHECK_EQ(fl.f->ignored_writes(), 5u);
}

TEST(pflash_file_errors_name_the_file_and_size) {
  TempDir d;
  CHECK_THROWS_CODE(Pflash(d.file("missing.fd"), Pflash::Access::kReadOnly), "FLASH_FILE", "missing.fd");
  CHECK_THROWS_CODE(Pflash(make_file(d, "empty.fd", 0), Pflash::Access::kReadOnly), "FLASH_SIZE", "(0 bytes");
  CHECK_THROWS_CODE(Pflash(make_file(d, "odd.fd", 4097), Pflash::Access::kWritable), "FLASH_SIZE",
                    "'" + d.file("odd.fd") + "' (4097 bytes, 0x1001)");
  const std::string big = d.file("big.fd");
  int fd = ::open(big.c_str(), O_CREAT | O_WRONLY, 0644);
  CHECK_EQ(::ftruncate(fd, (16 << 20) + kBlock), 0);
  ::close(fd);
  CHECK_THROWS_CODE(Pflash(big, Pflash::Access::kReadOnly), "FLASH_SIZE", "at most 16 MiB");
  CHECK_THROWS_CODE(Pflash(d.path, Pflash::Access::kReadOnly), "FLASH_SIZE", "regular file");
  // A variable store whose firmware volume is another size: another build's.
  CHECK_THROWS_CODE(Pflash(make_file(d, "vars2m.fd", kVarsSize, 0x20000), Pflash::Access::kWritable),
                    "FLASH_LAYOUT", "firmware volume of 0x20000 bytes");

  Pflash code(make_file(d, "code.fd", kCodeSize), Pflash::Access::kReadOnly);
  Pflash vars(make_file(d, "vars.fd", kVarsSize, kVarsSize), Pflash::Access::kWritable);
  Pflash::check_pair(code, vars);
  Pflash small(make_file(d, "vars-small.fd", 0x20000, 0x20000), Pflash::Access::kWritable);
  CHECK_THROWS_CODE(Pflash::check_pair(code, small), "FLASH_LAYOUT", "expects 0x84000 bytes of variables");
  CHECK_EQ(Pflash::expected_vars_size(kCodeSize).value(), kVarsSize);
  CHECK_EQ(Pflash::expected_vars_size(0x1e0000).value(), 0x20000u);
  CHECK(!Pflash::expected_vars_size(0x123000).has_value());
  Pflash huge_code(make_file(d, "c.fd", 12 << 20), Pflash::Access::kReadOnly);
  Pflash huge_vars(make_file(d, "v.fd", 5 << 20), Pflash::Access::kReadOnly);
  CHECK_THROWS_CODE(Pflash::check_pair(huge_code, huge_vars), "FLASH_SIZE", "together exceed 16 MiB");
}

TEST(pflash_debian_ovmf_images_fit) {
  const std::string code = "/usr/share/OVMF/OVMF_CODE_4M.fd", vars = "/usr/share/OVMF/OVMF_VARS_4M.fd";
  if (::access(code.c_str(), R_OK) != 0 || ::access(vars.c_str(), R_OK) != 0) SKIP("no Debian OVMF here");
  Pflash c(code, Pflash::Access::kReadOnly);
  Pflash v(vars, Pflash::Access::kReadOnly);
  Pflash::check_pair(c, v);
  CHECK_EQ(c.size(), kCodeSize);
  CHECK_EQ(v.size(), kVarsSize);
}

TEST(pflash_reset_and_state_round_trip) {
  TempDir d;
  const auto path = make_file(d, "vars.fd", kVarsSize, kVarsSize);
  Flash a(path, Pflash::Access::kWritable);
  a.wr(0x40, 0x10);  // waiting for the byte to program
  auto good = save(*a.f);
  CHECK_EQ(good.size(), 4 + 6 + 4 + 8 + 3u);

  Flash b(path, Pflash::Access::kWritable);
  load(*b.f, good);
  CHECK(b.modes == std::vector<bool>{false});  // the machine unmaps the slot
  CHECK(save(*b.f) == good);
  b.wr(0x40, 0x5a);
  b.wr(0x40, 0xff);
  CHECK_EQ(b.rd(0x40), 0x5a);

  // Reset: read-array mode, status ready.
  b.wr(0, 0x50);
  b.wr(0, 0x70);
  b.f->reset();
  CHECK(b.f->array_mode());
  CHECK_EQ(b.f->status(), Pflash::kStatusReady);
  CHECK(b.modes == (std::vector<bool>{false, true, false, true}));

  // Hostile records change nothing.
  auto body = [&](uint8_t cmd, uint8_t cycle, uint8_t status) {
    auto bytes = good;
    bytes[bytes.size() - 3] = cmd;
    bytes[bytes.size() - 2] = cycle;
    bytes[bytes.size() - 1] = status;
    return bytes;
  };
  CHECK_THROWS_CODE(load(*b.f, body(0x33, 0, 0x80)), "STATE_INVALID", "command is 0x33");
  CHECK_THROWS_CODE(load(*b.f, body(0x10, 2, 0x80)), "STATE_INVALID", "cycle is 2");
  CHECK_THROWS_CODE(load(*b.f, body(0x70, 1, 0x80)), "STATE_INVALID", "cycle is 1 for command 0x70");
  CHECK_THROWS_CODE(load(*b.f, body(0x98, 0, 0x80)), "STATE_INVALID", "CFI query");
  CHECK_THROWS_CODE(load(*b.f, body(0x70, 0, 0x81)), "STATE_INVALID", "status is 0x81");
  CHECK_THROWS_CODE(load(*b.f, shorten_body(good, 1)), "STATE_INVALID", "truncated at status");
  CHECK_THROWS_CODE(load(*b.f, with_version(good, 2)), "STATE_VERSION", "version 2");
  CHECK(b.f->array_mode());
  CHECK_EQ(b.f->status(), Pflash::kStatusReady);
  CHECK_EQ(b.modes.size(), 4u);

  Flash ro(make_file(d, "code.fd", kCodeSize), Pflash::Access::kReadOnly);
  CHECK_THROWS_CODE(load(*ro.f, good), "STATE_INVALID", "read-only flash");
  load(*ro.f, body(0x00, 0, 0x80));
  CHECK(ro.f->array_mode());
}
