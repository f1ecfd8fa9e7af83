// The firmware platform's ACPI tables, loaded the way OVMF and SeaBIOS load them (blobs
// placed, pointers and checksums fixed up) and then read back as a guest reads them; the
// DSDT is judged by the ACPI reference compiler (iasl) too.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "machine/firmware_tables.h"
#include "tests/check.h"

using namespace berth;

namespace {

machine::FirmwarePlatform platform(uint32_t vcpus) {
  machine::FirmwarePlatform p;
  p.vcpu_count = vcpus;
  p.pm_base = 0x600;
  p.gpe0_offset = 0x20;
  p.gpe0_length = 16;
  p.pm_timer_32bit = true;
  p.sci_irq = 9;
  p.s5_sleep_type = 0;
  p.reset_port = 0xcf9;
  p.reset_value = 0x06;
  p.ecam_base = 0xb0000000;
  p.ecam_last_bus = 255;
  p.mmio32_start = 0xc0000000;
  p.mmio32_end = 0xfebfffff;
  p.mmio64_start = 0x800000000ull;
  p.mmio64_end = 0xfffffffffull;
  p.intx_gsi = [](uint8_t slot, uint8_t pin) { return 16u + (slot + pin - 1u) % 8u; };
  return p;
}

// Where the "firmware" placed each blob, and the blobs after the loader's fixups.
struct Loaded {
  std::map<std::string, std::vector<uint8_t>> files;
  std::map<std::string, uint64_t> at;
  uint64_t read(const std::string& f, uint64_t off, int size) const {
    uint64_t v = 0;
    for (int i = 0; i < size; ++i) v |= uint64_t{files.at(f)[off + i]} << (8 * i);
    return v;
  }
  // The file and offset a guest-physical address falls in.
  std::pair<std::string, uint64_t> locate(uint64_t gpa) const {
    for (const auto& [name, base] : at) {
      if (gpa >= base && gpa < base + files.at(name).size()) return {name, gpa - base};
    }
    return {"", 0};
  }
};

Loaded load(const machine::FirmwareTables& t) {
  Loaded l;
  l.files[machine::kAcpiTablesFile] = t.tables;
  l.files[machine::kAcpiRsdpFile] = t.rsdp;
  l.at[machine::kAcpiTablesFile] = 0x7ff00000;
  l.at[machine::kAcpiRsdpFile] = 0xf5a30;
  for (const auto& p : t.pointers) {
    auto& dest = l.files.at(p.dest);
    CHECK(p.offset + p.size <= dest.size());
    uint64_t v = l.read(p.dest, p.offset, p.size) + l.at.at(p.src);
    for (int i = 0; i < p.size; ++i) dest[p.offset + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  for (const auto& c : t.checksums) {
    auto& f = l.files.at(c.file);
    CHECK(c.start + c.length <= f.size());
    uint8_t sum = 0;
    for (uint32_t i = c.start; i < c.start + c.length; ++i) sum = static_cast<uint8_t>(sum + f[i]);
    f[c.result_offset] = static_cast<uint8_t>(f[c.result_offset] - sum);
  }
  return l;
}

std::string signature_at(const Loaded& l, uint64_t gpa) {
  auto [file, off] = l.locate(gpa);
  if (file.empty()) return "";
  return std::string(l.files.at(file).begin() + static_cast<long>(off), l.files.at(file).begin() + static_cast<long>(off) + 4);
}

// A whole table at gpa, its checksum checked.
std::vector<uint8_t> table_at(const Loaded& l, uint64_t gpa) {
  auto [file, off] = l.locate(gpa);
  CHECK(!file.empty());
  if (file.empty()) return {};
  uint32_t len = static_cast<uint32_t>(l.read(file, off + 4, 4));
  const auto& f = l.files.at(file);
  std::vector<uint8_t> t(f.begin() + static_cast<long>(off), f.begin() + static_cast<long>(off + len));
  uint8_t sum = 0;
  for (uint8_t b : t) sum = static_cast<uint8_t>(sum + b);
  CHECK_EQ(sum, 0);
  return t;
}

uint64_t le(const std::vector<uint8_t>& b, size_t off, int size) {
  uint64_t v = 0;
  for (int i = 0; i < size; ++i) v |= uint64_t{b[off + i]} << (8 * i);
  return v;
}

}  // namespace

TEST(firmware_tables_load_and_link_like_a_firmware_loader_does) {
  const auto t = machine::build_firmware_tables(platform(4));
  const Loaded l = load(t);
  const auto& rsdp = l.files.at(machine::kAcpiRsdpFile);
  CHECK_STR(std::string(rsdp.begin(), rsdp.begin() + 8), std::string("RSD PTR "));
  uint8_t s20 = 0, s36 = 0;
  for (int i = 0; i < 20; ++i) s20 = static_cast<uint8_t>(s20 + rsdp[i]);
  for (int i = 0; i < 36; ++i) s36 = static_cast<uint8_t>(s36 + rsdp[i]);
  CHECK_EQ(s20, 0);
  CHECK_EQ(s36, 0);
  const uint64_t xsdt_at = le(rsdp, 24, 8);
  CHECK_STR(signature_at(l, xsdt_at), std::string("XSDT"));
  const auto xsdt = table_at(l, xsdt_at);
  std::vector<std::string> found;
  for (size_t off = 36; off + 8 <= xsdt.size(); off += 8) found.push_back(signature_at(l, le(xsdt, off, 8)));
  CHECK(found == (std::vector<std::string>{"FACP", "APIC", "MCFG"}));
  const auto fadt = table_at(l, le(xsdt, 36, 8));
  CHECK_EQ(fadt.size(), 276u);
  CHECK_STR(signature_at(l, le(fadt, 36, 4)), std::string("FACS"));
  CHECK_EQ(le(fadt, 36, 4) % 64, 0u);  // FACS alignment
  CHECK_STR(signature_at(l, le(fadt, 40, 4)), std::string("DSDT"));
  CHECK_EQ(le(fadt, 140, 8), le(fadt, 40, 4));  // X_DSDT = DSDT
  table_at(l, le(fadt, 40, 4));
  CHECK_EQ(le(fadt, 46, 2), 9u);                // SCI
  CHECK_EQ(le(fadt, 56, 4), 0x600u);            // PM1a_EVT_BLK
  CHECK_EQ(le(fadt, 64, 4), 0x604u);            // PM1a_CNT_BLK
  CHECK_EQ(le(fadt, 76, 4), 0x608u);            // PM_TMR_BLK
  CHECK_EQ(le(fadt, 80, 4), 0x620u);            // GPE0_BLK
  CHECK((le(fadt, 112, 4) & (1u << 8)) != 0);   // TMR_VAL_EXT
  CHECK((le(fadt, 112, 4) & (1u << 4)) == 0);   // a fixed power button
  CHECK((le(fadt, 112, 4) & (1u << 20)) == 0);  // not hardware-reduced
  CHECK_EQ(le(fadt, 116 + 4, 8), 0xcf9u);       // RESET_REG
  CHECK_EQ(fadt[128], 0x06);
  const auto madt = table_at(l, le(xsdt, 44, 8));
  // 4 local APICs (8 bytes each), the IOAPIC (12), the SCI override (10), LINT1 NMI (6).
  CHECK_EQ(madt.size(), 44u + 4 * 8 + 12 + 10 + 6);
  const size_t iso = 44 + 4 * 8 + 12;
  CHECK_EQ(madt[iso], 2);
  CHECK_EQ(madt[iso + 3], 9);           // ISA IRQ 9
  CHECK_EQ(le(madt, iso + 4, 4), 9u);   // to GSI 9
  CHECK_EQ(le(madt, iso + 8, 2), 0x0du);  // level, active high
  const auto mcfg = table_at(l, le(xsdt, 52, 8));
  CHECK_EQ(le(mcfg, 44, 8), 0xb0000000u);
  CHECK_EQ(mcfg[55], 255);
}

TEST(firmware_tables_refuse_what_they_cannot_describe) {
  auto p = platform(1);
  p.vcpu_count = 0;
  CHECK_THROWS_CODE(machine::build_firmware_tables(p), "BOOT_VCPU_COUNT", "1 to 254 vCPUs");
  p = platform(1);
  p.intx_gsi = nullptr;
  CHECK_THROWS_CODE(machine::build_firmware_tables(p), "BOOT_ACPI", "interrupt routing");
}

// iasl disassembles the DSDT without errors and finds the objects Linux looks for.
TEST(firmware_dsdt_is_valid_aml_by_iasl) {
  if (system("command -v iasl >/dev/null 2>&1") != 0) SKIP("iasl is not installed (./setup.sh --with-tests installs acpica-tools)");
  const Loaded l = load(machine::build_firmware_tables(platform(2)));
  const auto& rsdp = l.files.at(machine::kAcpiRsdpFile);
  const auto xsdt = table_at(l, le(rsdp, 24, 8));
  const auto fadt = table_at(l, le(xsdt, 36, 8));
  const auto dsdt = table_at(l, le(fadt, 40, 4));
  char dir[] = "/tmp/berth-dsdt-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  const std::string base = std::string(dir) + "/dsdt";
  std::ofstream(base + ".aml", std::ios::binary).write(reinterpret_cast<const char*>(dsdt.data()), static_cast<long>(dsdt.size()));
  const std::string cmd = "cd " + std::string(dir) + " && iasl -d dsdt.aml > iasl.log 2>&1";
  CHECK_EQ(system(cmd.c_str()), 0);
  std::ifstream in(base + ".dsl");
  std::string dsl((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* want : {"Device (\\_SB.PCI0)", "EisaId (\"PNP0A08\")", "_PRT", "Device (\\_SB.PCI0.LPC.COM1)", "EisaId (\"PNP0501\")",
                           "Device (\\_SB.RES0)", "Memory32Fixed (ReadWrite,", "0xB0000000", "_S5_", "WordBusNumber",
                           "QWordMemory", "0x0000000800000000"}) {
    if (dsl.find(want) == std::string::npos) berth::test::fail(__FILE__, __LINE__, std::string("DSDT lacks ") + want);
  }
  // Recompiling the disassembly must succeed too (iasl checks names and resource templates).
  const std::string recompile = "cd " + std::string(dir) + " && iasl -p re dsdt.dsl >> iasl.log 2>&1";
  CHECK_EQ(system(recompile.c_str()), 0);
  std::ifstream log(std::string(dir) + "/iasl.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  if (text.find("0 Errors, 0 Warnings") == std::string::npos) berth::test::fail(__FILE__, __LINE__, "iasl:\n" + text);
  if (getenv("BERTH_KEEP_DSDT")) return;
  std::string rm = "rm -rf " + std::string(dir);
  CHECK_EQ(system(rm.c_str()), 0);
}
