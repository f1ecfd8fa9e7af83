#include "boot/mptable.h"

#include <cstring>
#include <vector>

#include "boot/layout.h"
#include "tests/check.h"

using namespace berth::boot;
using berth::vmm::GuestMemory;

namespace {

uint8_t sum(std::span<const uint8_t> b) {
  uint8_t s = 0;
  for (uint8_t x : b) s = static_cast<uint8_t>(s + x);
  return s;
}
uint32_t le(std::span<const uint8_t> b, size_t off, unsigned n) {
  uint32_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint32_t{b[off + i]} << (8 * i);
  return v;
}

struct Parsed {
  uint32_t config_addr = 0;
  std::vector<std::vector<uint8_t>> cpus, buses, ioapics, ioints, lints;
};

// Parses the tables back the way a guest would, checking signatures and checksums.
Parsed parse(GuestMemory& mem) {
  Parsed p;
  auto fp = mem.slice(kMpFloatingPointerAddr, 16);
  CHECK(std::memcmp(fp.data(), "_MP_", 4) == 0);
  CHECK_EQ(fp[8], uint8_t{1});
  CHECK_EQ(fp[9], uint8_t{4});
  CHECK_EQ(fp[11], uint8_t{0});
  CHECK_EQ(sum(fp), uint8_t{0});
  p.config_addr = le(fp, 4, 4);
  auto hdr = mem.slice(p.config_addr, 44);
  CHECK(std::memcmp(hdr.data(), "PCMP", 4) == 0);
  const uint32_t len = le(hdr, 4, 2);
  const uint32_t count = le(hdr, 34, 2);
  CHECK_EQ(le(hdr, 36, 4), 0xfee00000u);
  auto table = mem.slice(p.config_addr, len);
  CHECK_EQ(sum(table), uint8_t{0});
  size_t off = 44;
  for (uint32_t i = 0; i < count; ++i) {
    CHECK(off < len);
    if (off >= len) break;
    const uint8_t type = table[off];
    const size_t size = type == 0 ? 20 : 8;
    std::vector<uint8_t> e(table.begin() + off, table.begin() + off + size);
    switch (type) {
      case 0: p.cpus.push_back(e); break;
      case 1: p.buses.push_back(e); break;
      case 2: p.ioapics.push_back(e); break;
      case 3: p.ioints.push_back(e); break;
      case 4: p.lints.push_back(e); break;
      default: CHECK(false);
    }
    off += size;
  }
  CHECK_EQ(off, size_t{len});
  return p;
}

}  // namespace

TEST(boot_mptable_four_vcpus) {
  GuestMemory mem(16 << 20);
  write_mptable(mem, 4);
  auto p = parse(mem);
  CHECK_EQ(p.config_addr, uint32_t{kEbdaAddr + 16});
  CHECK_EQ(p.cpus.size(), size_t{4});
  for (size_t i = 0; i < p.cpus.size(); ++i) {
    CHECK_EQ(p.cpus[i][1], static_cast<uint8_t>(i));              // APIC ID
    CHECK_EQ(p.cpus[i][3], static_cast<uint8_t>(i == 0 ? 3 : 1));  // enabled (+ BSP)
  }
  CHECK_EQ(p.buses.size(), size_t{1});
  CHECK(std::memcmp(p.buses[0].data() + 2, "ISA   ", 6) == 0);
  CHECK_EQ(p.ioapics.size(), size_t{1});
  CHECK_EQ(p.ioapics[0][1], uint8_t{4});     // ID = vcpu_count
  CHECK_EQ(p.ioapics[0][2], uint8_t{0x11});  // version
  CHECK_EQ(p.ioapics[0][3], uint8_t{1});     // enabled
  CHECK_EQ(le(p.ioapics[0], 4, 4), 0xfec00000u);
  CHECK_EQ(p.ioints.size(), size_t{16});
  for (size_t i = 0; i < p.ioints.size(); ++i) {
    CHECK_EQ(p.ioints[i][1], uint8_t{0});  // INT
    CHECK_EQ(p.ioints[i][4], uint8_t{0});  // ISA bus
    CHECK_EQ(p.ioints[i][5], static_cast<uint8_t>(i));
    CHECK_EQ(p.ioints[i][6], uint8_t{4});
    CHECK_EQ(p.ioints[i][7], static_cast<uint8_t>(i));  // identity pin
  }
  CHECK_EQ(p.lints.size(), size_t{2});
  CHECK_EQ(p.lints[0][1], uint8_t{3});  // ExtINT
  CHECK_EQ(p.lints[0][7], uint8_t{0});  // LINT0
  CHECK_EQ(p.lints[1][1], uint8_t{1});  // NMI
  CHECK_EQ(p.lints[1][6], uint8_t{0xff});
  CHECK_EQ(p.lints[1][7], uint8_t{1});  // LINT1
}

TEST(boot_mptable_grows_into_bios_area) {
  GuestMemory mem(16 << 20);
  // The largest count that fits the EBDA, then one more.
  uint32_t fit = 1;
  while (mp_config_table_addr(fit + 1) != kMpConfigAddrLarge) ++fit;
  CHECK(mp_config_table_size(fit) + 16 <= 1024);
  write_mptable(mem, fit);
  CHECK_EQ(parse(mem).cpus.size(), size_t{fit});
  write_mptable(mem, kMaxMpVcpus);
  auto p = parse(mem);
  CHECK_EQ(p.config_addr, uint32_t{0xf0000});
  CHECK_EQ(p.cpus.size(), size_t{254});
  CHECK_EQ(p.cpus[253][1], uint8_t{253});
  CHECK_EQ(p.ioapics[0][1], uint8_t{254});
}

TEST(boot_mptable_rejects_bad_counts) {
  GuestMemory mem(16 << 20);
  CHECK_THROWS_CODE(write_mptable(mem, 0), "BOOT_VCPU_COUNT", "use 1 to 254 vCPUs");
  CHECK_THROWS_CODE(write_mptable(mem, 255), "BOOT_VCPU_COUNT", "255 vCPUs");
}
