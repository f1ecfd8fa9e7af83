#include <cstring>

#include "tests/check.h"
#include "vmm/guest_memory.h"

using berth::vmm::GuestMemory;

TEST(guest_memory_small_is_one_region) {
  GuestMemory mem(64ull << 20);
  CHECK_EQ(mem.regions().size(), size_t{1});
  CHECK_EQ(mem.regions()[0].gpa, uint64_t{0});
  CHECK_EQ(mem.regions()[0].size, uint64_t{64} << 20);
}

TEST(guest_memory_above_3g_skips_pci_hole) {
  GuestMemory mem(5ull << 30);
  CHECK_EQ(mem.regions().size(), size_t{2});
  CHECK_EQ(mem.regions()[0].size, uint64_t{3} << 30);
  CHECK_EQ(mem.regions()[1].gpa, uint64_t{4} << 30);
  CHECK_EQ(mem.regions()[1].size, uint64_t{2} << 30);
  CHECK(!mem.contains(3ull << 30, 1));
  CHECK(mem.contains((4ull << 30) + 100, 100));
}

TEST(guest_memory_round_trip_and_bounds) {
  GuestMemory mem(1 << 20);
  mem.write_obj<uint32_t>(0x1000, 0xdeadbeef);
  CHECK_EQ(mem.read_obj<uint32_t>(0x1000), 0xdeadbeefu);
  CHECK_THROWS_CODE(mem.slice((1 << 20) - 2, 4), "GUEST_MEMORY_RANGE", "is not guest RAM");
  CHECK_THROWS_CODE(mem.slice(~0ull - 1, 4), "GUEST_MEMORY_RANGE", "0xfffffffffffffffe");
  mem.clear();
  CHECK_EQ(mem.read_obj<uint32_t>(0x1000), 0u);
}

TEST(guest_memory_refuses_bad_size) {
  CHECK_THROWS_CODE(GuestMemory(4095), "GUEST_MEMORY_SIZE", "multiple of 4 KiB");
}
