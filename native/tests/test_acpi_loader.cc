#include <cstring>
#include <string>
#include <vector>

#include "devices/platform/acpi_loader.h"
#include "tests/check.h"

using berth::devices::platform::AcpiLoader;
using berth::devices::platform::LoaderZone;

namespace {

// One expected 128-byte command built field by field.
struct Cmd {
  std::vector<uint8_t> b = std::vector<uint8_t>(128, 0);
  explicit Cmd(uint32_t command) { u32(0, command); }
  Cmd& u32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
    return *this;
  }
  Cmd& u8(size_t at, uint8_t v) {
    b[at] = v;
    return *this;
  }
  Cmd& name(size_t at, const std::string& n) {
    std::memcpy(b.data() + at, n.data(), n.size());
    return *this;
  }
};

std::vector<uint8_t> command(const AcpiLoader& l, size_t i) {
  return {l.script().begin() + i * 128, l.script().begin() + (i + 1) * 128};
}

}  // namespace

TEST(acpi_loader_command_bytes) {
  AcpiLoader l;
  l.allocate("etc/acpi/rsdp", 36, 16, LoaderZone::kFseg);
  l.allocate("etc/acpi/tables", 0x2000, 64, LoaderZone::kHigh);
  l.add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 24, 8);
  l.add_checksum("etc/acpi/rsdp", 8, 0, 20);
  l.write_pointer("etc/vmgenid_addr", 8, "etc/acpi/tables", 0, 0x40, 8);
  CHECK_EQ(l.command_count(), 5u);
  CHECK_EQ(l.script().size(), 5 * 128u);

  CHECK(command(l, 0) == Cmd(1).name(4, "etc/acpi/rsdp").u32(60, 16).u8(64, 2).b);
  CHECK(command(l, 1) == Cmd(1).name(4, "etc/acpi/tables").u32(60, 64).u8(64, 1).b);
  CHECK(command(l, 2) ==
        Cmd(2).name(4, "etc/acpi/rsdp").name(60, "etc/acpi/tables").u32(116, 24).u8(120, 8).b);
  CHECK(command(l, 3) == Cmd(3).name(4, "etc/acpi/rsdp").u32(60, 8).u32(64, 0).u32(68, 20).b);
  CHECK(command(l, 4) == Cmd(4)
                             .name(4, "etc/vmgenid_addr")
                             .name(60, "etc/acpi/tables")
                             .u32(116, 0)
                             .u32(120, 0x40)
                             .u8(124, 8)
                             .b);
  // Spot-check raw bytes: the ALLOCATE's alignment and zone, the pointer's offset.
  CHECK_EQ(l.script()[0], 1);
  CHECK_EQ(l.script()[60], 16);
  CHECK_EQ(l.script()[64], 2);
  CHECK_EQ(l.script()[2 * 128 + 116], 24);
  CHECK_EQ(l.script()[2 * 128 + 120], 8);
}

TEST(acpi_loader_longest_name_keeps_its_nul) {
  AcpiLoader l;
  const std::string longest(55, 'x');
  l.allocate(longest, 1, 1, LoaderZone::kHigh);
  CHECK_EQ(l.script()[4 + 54], 'x');
  CHECK_EQ(l.script()[4 + 55], 0);
  CHECK_THROWS_CODE(l.allocate(std::string(56, 'y'), 1, 1, LoaderZone::kHigh), "ACPI_LOADER",
                    "1 to 55 characters");
  CHECK_THROWS_CODE(l.allocate("", 1, 1, LoaderZone::kHigh), "ACPI_LOADER", "1 to 55");
  CHECK_THROWS_CODE(l.add_pointer(longest, std::string(56, 'x'), 0, 1), "ACPI_LOADER", "1 to 55");
  CHECK_EQ(l.command_count(), 1u);
}

TEST(acpi_loader_refuses_what_firmware_rejects) {
  AcpiLoader l;
  l.allocate("t", 100, 4096, LoaderZone::kHigh);
  l.allocate("r", 36, 16, LoaderZone::kFseg);
  CHECK_THROWS_CODE(l.allocate("t", 100, 8, LoaderZone::kHigh), "ACPI_LOADER", "allocated twice");
  CHECK_THROWS_CODE(l.allocate("e", 0, 8, LoaderZone::kHigh), "ACPI_LOADER", "empty");
  CHECK_THROWS_CODE(l.allocate("a", 1, 0, LoaderZone::kHigh), "ACPI_LOADER", "power of two");
  CHECK_THROWS_CODE(l.allocate("a", 1, 24, LoaderZone::kHigh), "ACPI_LOADER", "power of two");
  CHECK_THROWS_CODE(l.allocate("a", 1, 8192, LoaderZone::kHigh), "ACPI_LOADER", "up to 4096");
  CHECK_THROWS_CODE(l.allocate("a", 1, 8, static_cast<LoaderZone>(3)), "ACPI_LOADER", "zone");
  CHECK_THROWS_CODE(l.add_pointer("nope", "t", 0, 4), "ACPI_LOADER", "'nope' was not allocated");
  CHECK_THROWS_CODE(l.add_pointer("t", "nope", 0, 4), "ACPI_LOADER", "source 'nope'");
  CHECK_THROWS_CODE(l.add_pointer("r", "t", 16, 3), "ACPI_LOADER", "must be 1, 2, 4 or 8");
  CHECK_THROWS_CODE(l.add_pointer("r", "t", 32, 8), "ACPI_LOADER", "outside 'r' (36 bytes)");
  CHECK_THROWS_CODE(l.add_pointer("r", "t", 0xfffffffc, 8), "ACPI_LOADER", "outside");
  l.add_pointer("r", "t", 32, 4);  // the last 4 bytes fit
  CHECK_THROWS_CODE(l.add_checksum("nope", 0, 0, 1), "ACPI_LOADER", "not allocated");
  CHECK_THROWS_CODE(l.add_checksum("r", 36, 0, 20), "ACPI_LOADER", "checksum byte");
  CHECK_THROWS_CODE(l.add_checksum("r", 8, 20, 17), "ACPI_LOADER", "checksum range");
  CHECK_THROWS_CODE(l.add_checksum("r", 8, 0xffffffff, 2), "ACPI_LOADER", "checksum range");
  l.add_checksum("r", 35, 0, 36);
  CHECK_THROWS_CODE(l.write_pointer("w", 8, "nope", 0, 0, 8), "ACPI_LOADER", "not allocated");
  CHECK_THROWS_CODE(l.write_pointer("w", 8, "t", 4, 0, 8), "ACPI_LOADER", "outside 'w'");
  CHECK_THROWS_CODE(l.write_pointer("w", 8, "t", 0, 100, 8), "ACPI_LOADER", "source offset");
  CHECK_THROWS_CODE(l.write_pointer("w", 8, "t", 0, 0, 16), "ACPI_LOADER", "1, 2, 4 or 8");
  CHECK_THROWS_CODE(l.write_pointer(std::string(60, 'w'), 8, "t", 0, 0, 8), "ACPI_LOADER", "1 to 55");
  CHECK_EQ(l.command_count(), 4u);  // the refused commands added nothing
}
