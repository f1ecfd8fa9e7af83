#include "boot/e820.h"

#include "tests/check.h"

using berth::boot::build_e820;
using berth::boot::E820Entry;
using berth::vmm::GuestMemory;

static bool same(const E820Entry& e, uint64_t addr, uint64_t size, uint32_t type) {
  return e.addr == addr && e.size == size && e.type == type;
}

TEST(boot_e820_small_vm) {
  GuestMemory mem(64ull << 20);
  auto map = build_e820(mem);
  CHECK_EQ(map.size(), size_t{4});
  CHECK(same(map[0], 0, 0x9fc00, 1));
  CHECK(same(map[1], 0x9fc00, 0x400, 2));
  CHECK(same(map[2], 0xe0000, 0x20000, 2));  // ACPI tables + BIOS area
  CHECK(same(map[3], 0x100000, (64ull << 20) - 0x100000, 1));
}

TEST(boot_e820_above_3g_has_high_ram) {
  GuestMemory mem(5ull << 30);
  auto map = build_e820(mem);
  CHECK_EQ(map.size(), size_t{5});
  CHECK(same(map[3], 0x100000, (3ull << 30) - 0x100000, 1));
  CHECK(same(map[4], 4ull << 30, 2ull << 30, 1));
  for (size_t i = 1; i < map.size(); ++i) CHECK(map[i - 1].addr + map[i - 1].size <= map[i].addr);
}

TEST(boot_e820_tiny_vm_clips_ram) {
  GuestMemory mem(256 << 10);
  auto map = build_e820(mem);
  CHECK_EQ(map.size(), size_t{3});
  CHECK(same(map[0], 0, 256 << 10, 1));
  CHECK_EQ(map[1].type, 2u);
  CHECK_EQ(map[2].type, 2u);
}
