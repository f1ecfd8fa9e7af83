#include <cstring>
#include <string>
#include <vector>

#include "devices/platform/fw_cfg.h"
#include "tests/check.h"
#include "tests/state_helpers.h"
#include "vmm/guest_memory.h"

using berth::devices::platform::FwCfg;
namespace key = berth::devices::platform::fw_cfg_key;
namespace dma = berth::devices::platform::fw_cfg_dma;
using namespace berth::test::state_bytes;

#define CHECK_BYTES(a, b) CHECK((a) == (b))

namespace {

constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kDesc = 0x1000;  // where the tests put a FWCfgDmaAccess
constexpr uint64_t kBuf = 0x2000;

struct Rig {
  berth::vmm::GuestMemory mem{kRam};
  FwCfg fw{mem};

  void select(uint16_t k) {
    uint8_t b[2] = {static_cast<uint8_t>(k), static_cast<uint8_t>(k >> 8)};
    fw.write(FwCfg::kSelectorOffset, b);
  }
  std::vector<uint8_t> data(size_t n) {
    std::vector<uint8_t> out(n);
    for (auto& b : out) fw.read(FwCfg::kDataOffset, std::span<uint8_t>(&b, 1));
    return out;
  }
  std::string text(size_t n) {
    auto d = data(n);
    return std::string(d.begin(), d.end());
  }
  // Writes a FWCfgDmaAccess at kDesc and starts it the way OVMF does (high half, then low).
  uint32_t run_dma(uint32_t control, uint32_t length, uint64_t address, uint64_t desc = kDesc) {
    uint8_t access[16];
    put_be32(access, control);
    put_be32(access + 4, length);
    put_be32(access + 8, static_cast<uint32_t>(address >> 32));
    put_be32(access + 12, static_cast<uint32_t>(address));
    if (mem.contains(desc, 16)) mem.write(desc, access);
    uint8_t hi[4], lo[4];
    put_be32(hi, static_cast<uint32_t>(desc >> 32));
    put_be32(lo, static_cast<uint32_t>(desc));
    fw.write(FwCfg::kDmaOffset, hi);
    fw.write(FwCfg::kDmaOffset + 4, lo);
    return mem.contains(desc, 4) ? control_word(desc) : 0xdeadbeef;
  }
  uint32_t control_word(uint64_t desc = kDesc) {
    uint8_t b[4];
    mem.read(desc, b);
    return uint32_t{b[0]} << 24 | b[1] << 16 | b[2] << 8 | b[3];
  }
  std::string guest(uint64_t gpa, size_t n) {
    std::string s(n, '\0');
    mem.read(gpa, std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.data()), n));
    return s;
  }
  static void put_be32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  }
};

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace

TEST(fw_cfg_signature_id_and_dma_register) {
  Rig r;
  r.select(key::kSignature);
  CHECK_STR(r.text(4), "QEMU");
  CHECK_BYTES(r.data(3), (std::vector<uint8_t>{0, 0, 0}));  // past the end
  r.select(key::kId);
  CHECK_BYTES(r.data(4), (std::vector<uint8_t>{3, 0, 0, 0}));  // traditional + DMA
  // A 16-bit data read is two consecutive bytes.
  r.select(key::kSignature);
  uint8_t two[2];
  r.fw.read(FwCfg::kDataOffset, two);
  CHECK_EQ(two[0], 'Q');
  CHECK_EQ(two[1], 'E');
  uint8_t sig[8];
  r.fw.read(FwCfg::kDmaOffset, sig);
  CHECK_STR(std::string(sig, sig + 8), "QEMU CFG");
  uint8_t half[4];
  r.fw.read(FwCfg::kDmaOffset + 4, half);
  CHECK_STR(std::string(half, half + 4), " CFG");
  // Data-port writes are ignored; the selector port reads 0.
  uint8_t junk = 0x55;
  r.fw.write(FwCfg::kDataOffset, std::span<const uint8_t>(&junk, 1));
  CHECK_STR(r.text(2), "MU");
  uint8_t sel = 0xaa;
  r.fw.read(FwCfg::kSelectorOffset, std::span<uint8_t>(&sel, 1));
  CHECK_EQ(sel, 0);
}

TEST(fw_cfg_numeric_items_and_selectors_out_of_range) {
  Rig r;
  r.fw.add_u16(key::kNbCpus, 4);
  r.fw.add_u16(key::kMaxCpus, 8);
  r.fw.add_u64(key::kRamSize, 0x12345678abull);
  r.fw.add_u32(key::kX86E820Table, 0);
  r.select(key::kNbCpus);
  CHECK_BYTES(r.data(3), (std::vector<uint8_t>{4, 0, 0}));
  r.select(key::kNbCpus | key::kWriteFlag);  // the old write flag selects the same item
  CHECK_BYTES(r.data(2), (std::vector<uint8_t>{4, 0}));
  r.select(key::kRamSize);
  CHECK_BYTES(r.data(8), (std::vector<uint8_t>{0xab, 0x78, 0x56, 0x34, 0x12, 0, 0, 0}));
  r.select(key::kX86E820Table);
  CHECK_BYTES(r.data(4), (std::vector<uint8_t>{0, 0, 0, 0}));
  for (uint16_t k : {uint16_t{0x07}, uint16_t{0x3fff}, uint16_t{0x8005}, uint16_t{0xffff},
                     uint16_t{0x20}, uint16_t{0x4019 | 0x8000}}) {
    r.select(k);
    CHECK_BYTES(r.data(2), (std::vector<uint8_t>{0, 0}));
  }
  CHECK_BYTES(r.fw.item_data(key::kMaxCpus).value(), (std::vector<uint8_t>{8, 0}));
}

TEST(fw_cfg_file_directory_sorted_by_name) {
  Rig r;
  r.fw.add_file("etc/table-loader", std::vector<uint8_t>(256, 1));
  r.fw.add_file("etc/e820", bytes("e820e820"));
  r.fw.add_file("bootorder", bytes("/pci@i0cf8/scsi@4/disk@0,0"));
  CHECK_EQ(r.fw.file_key("bootorder").value(), 0x20);
  CHECK_EQ(r.fw.file_key("etc/e820").value(), 0x21);
  CHECK_EQ(r.fw.file_key("etc/table-loader").value(), 0x22);
  CHECK(!r.fw.file_key("etc/acpi/rsdp").has_value());

  r.select(key::kFileDir);
  auto dir = r.data(4 + 3 * 64 + 2);
  std::vector<uint8_t> expect = {0, 0, 0, 3};
  auto entry = [&](uint32_t size, uint16_t sel, const std::string& name) {
    expect.insert(expect.end(), {static_cast<uint8_t>(size >> 24), static_cast<uint8_t>(size >> 16),
                                 static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size),
                                 static_cast<uint8_t>(sel >> 8), static_cast<uint8_t>(sel), 0, 0});
    std::vector<uint8_t> n(56, 0);
    std::memcpy(n.data(), name.data(), name.size());
    expect.insert(expect.end(), n.begin(), n.end());
  };
  entry(26, 0x20, "bootorder");
  entry(8, 0x21, "etc/e820");
  entry(256, 0x22, "etc/table-loader");
  expect.insert(expect.end(), {0, 0});  // past the end
  CHECK(dir == expect);

  r.select(0x21);
  CHECK_STR(r.text(8), "e820e820");
  // A file added later renumbers the ones after it, as on QEMU.
  r.fw.add_file("etc/boot-fail-wait", {0xff, 0xff, 0xff, 0xff});
  CHECK_EQ(r.fw.file_key("etc/boot-fail-wait").value(), 0x21);
  CHECK_EQ(r.fw.file_key("etc/e820").value(), 0x22);
  CHECK_EQ(r.fw.file_key("bootorder").value(), 0x20);
}

TEST(fw_cfg_dma_read_select_skip_and_zero_fill) {
  Rig r;
  r.fw.add_file("etc/e820", bytes("0123456789"));
  const uint16_t k = r.fw.file_key("etc/e820").value();
  CHECK_EQ(r.run_dma(uint32_t{k} << 16 | dma::kSelect | dma::kRead, 4, kBuf), 0u);
  CHECK_STR(r.guest(kBuf, 4), "0123");
  // No select: the next transfer continues where the last ended.
  CHECK_EQ(r.run_dma(dma::kSkip, 2, 0), 0u);
  CHECK_EQ(r.run_dma(dma::kRead, 2, kBuf), 0u);
  CHECK_STR(r.guest(kBuf, 4), "6723");
  // Past the end: the rest of the buffer is zeroed.
  r.mem.write(kBuf, bytes("xxxxxxxx"));
  CHECK_EQ(r.run_dma(dma::kRead, 8, kBuf), 0u);
  CHECK(r.guest(kBuf, 8) == std::string("89\0\0\0\0\0\0", 8));
  // The traditional port continues from the same offset (the end).
  CHECK_BYTES(r.data(1), (std::vector<uint8_t>{0}));
  // Select only: rewinds, moves nothing.
  CHECK_EQ(r.run_dma(uint32_t{k} << 16 | dma::kSelect, 100, kBuf), 0u);
  CHECK_STR(r.text(3), "012");
  // A 64-bit write of the address register starts it too.
  uint8_t access[16] = {0, 0x20, 0, dma::kSelect | dma::kRead, 0, 0, 0, 4};
  access[14] = 0x30;  // address 0x3000
  r.mem.write(0x800, access);
  uint8_t reg[8] = {0, 0, 0, 0, 0, 0, 0x08, 0x00};
  r.fw.write(FwCfg::kDmaOffset, reg);
  CHECK_EQ(r.control_word(0x800), 0u);
  CHECK_STR(r.guest(0x3000, 4), "0123");
  CHECK_EQ(r.fw.dma_errors(), 0u);
}

TEST(fw_cfg_dma_bad_addresses_set_the_error_bit) {
  Rig r;
  r.fw.add_file("blob", bytes("abcdefgh"));
  const uint32_t sel = uint32_t{r.fw.file_key("blob").value()} << 16 | dma::kSelect;
  // Buffer outside RAM, and a buffer running past its end.
  CHECK_EQ(r.run_dma(sel | dma::kRead, 4, 0xfee00000), dma::kError);
  CHECK_EQ(r.run_dma(sel | dma::kRead, 8, kRam - 4), dma::kError);
  CHECK_EQ(r.run_dma(sel | dma::kRead, 0xffffffff, kBuf), dma::kError);
  CHECK_EQ(r.run_dma(sel | dma::kRead, 16, ~uint64_t{0} - 7), dma::kError);
  // A descriptor outside RAM cannot even be answered: nothing happens.
  r.run_dma(sel | dma::kRead, 4, kBuf, kRam - 8);
  r.run_dma(sel | dma::kRead, 4, kBuf, 0xffffffff00000000ull);
  CHECK_EQ(r.fw.dma_errors(), 6u);
  // Reading an item that does not exist zero-fills; writing one is an error.
  r.mem.write(kBuf, bytes("zzzz"));
  CHECK_EQ(r.run_dma(uint32_t{0x1234} << 16 | dma::kSelect | dma::kRead, 4, kBuf), 0u);
  CHECK(r.guest(kBuf, 4) == std::string(4, '\0'));
  CHECK_EQ(r.run_dma(uint32_t{0x1234} << 16 | dma::kSelect | dma::kWrite, 4, kBuf), dma::kError);
  // Only the low half written: the high half was cleared after the last transfer.
  uint8_t lo[4] = {0, 0, 0x10, 0x00};
  uint8_t access[16] = {0, 0, 0, dma::kSelect | dma::kRead, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0x40, 0};
  r.mem.write(kDesc, access);
  r.fw.write(FwCfg::kDmaOffset + 4, lo);
  CHECK_EQ(r.control_word(), 0u);
  CHECK_STR(r.guest(0x4000, 4), "QEMU");
  // Odd widths and offsets on the DMA register do nothing.
  uint8_t one = 0x10;
  r.fw.write(FwCfg::kDmaOffset + 7, std::span<const uint8_t>(&one, 1));
  r.fw.write(FwCfg::kDmaOffset + 2, std::span<const uint8_t>(lo, 2));
  CHECK_EQ(r.fw.dma_errors(), 7u);
}

TEST(fw_cfg_dma_write_only_to_writable_files) {
  Rig r;
  std::vector<std::pair<uint32_t, std::string>> writes;
  FwCfg::FileOptions writable;
  writable.on_write = [&](uint32_t off, std::span<const uint8_t> b) {
    writes.emplace_back(off, std::string(b.begin(), b.end()));
  };
  r.fw.add_file("etc/vmgenid_addr", std::vector<uint8_t>(8, 0), writable);
  r.fw.add_file("etc/acpi/tables", bytes("readonly"));
  const uint32_t wsel = uint32_t{r.fw.file_key("etc/vmgenid_addr").value()} << 16 | dma::kSelect;
  const uint32_t rsel = uint32_t{r.fw.file_key("etc/acpi/tables").value()} << 16 | dma::kSelect;
  r.mem.write(kBuf, bytes("ABCDEFGHIJ"));
  // OVMF's WRITE_POINTER: select, skip to the offset, write.
  CHECK_EQ(r.run_dma(wsel | dma::kSkip, 2, 0), 0u);
  CHECK_EQ(r.run_dma(dma::kWrite, 4, kBuf), 0u);
  CHECK_EQ(writes.size(), 1u);
  CHECK_EQ(writes[0].first, 2u);
  CHECK_STR(writes[0].second, "ABCD");
  CHECK(r.fw.file_data("etc/vmgenid_addr").value() == (std::vector<uint8_t>{0, 0, 'A', 'B', 'C', 'D', 0, 0}));
  // A write running past the file's end is refused whole.
  CHECK_EQ(r.run_dma(dma::kWrite, 3, kBuf), dma::kError);
  CHECK_EQ(writes.size(), 1u);
  CHECK_EQ(r.fw.file_data("etc/vmgenid_addr").value()[6], 0);
  // From a buffer outside RAM: refused.
  CHECK_EQ(r.run_dma(wsel | dma::kWrite, 4, 0xfee00000), dma::kError);
  // A file without a write callback: refused, unchanged.
  CHECK_EQ(r.run_dma(rsel | dma::kWrite, 4, kBuf), dma::kError);
  CHECK(r.fw.file_data("etc/acpi/tables").value() == bytes("readonly"));
  CHECK_EQ(writes.size(), 1u);
  // Numeric items are never writable.
  r.fw.add_u16(key::kBootMenu, 0);
  CHECK_EQ(r.run_dma(uint32_t{key::kBootMenu} << 16 | dma::kSelect | dma::kWrite, 2, kBuf), dma::kError);
}

TEST(fw_cfg_select_callback_refreshes_a_file) {
  Rig r;
  int calls = 0;
  FwCfg::FileOptions opts;
  opts.on_select = [&](std::vector<uint8_t>& d) {
    ++calls;
    d = bytes("tables v" + std::to_string(calls));
  };
  r.fw.add_file("etc/acpi/tables", bytes("stale"), opts);
  const uint16_t k = r.fw.file_key("etc/acpi/tables").value();
  r.select(k);
  CHECK_STR(r.text(9), "tables v1");
  CHECK_EQ(r.run_dma(uint32_t{k} << 16 | dma::kSelect | dma::kRead, 9, kBuf), 0u);
  CHECK_STR(r.guest(kBuf, 9), "tables v2");
  // The directory follows the new size.
  r.select(key::kFileDir);
  auto dir = r.data(8);
  CHECK_EQ(dir[7], 9);
  CHECK_EQ(calls, 2);
}

TEST(fw_cfg_refuses_bad_items_and_files) {
  Rig r;
  for (uint16_t k : {key::kSignature, key::kId, key::kFileDir, key::kFileFirst, uint16_t{0x0100},
                     uint16_t{key::kNbCpus | key::kWriteFlag}, uint16_t{0x8020}}) {
    CHECK_THROWS_CODE(r.fw.add_item(k, {1}), "FW_CFG_ITEM", "cannot be added");
  }
  CHECK_THROWS_CODE(r.fw.add_file("", {}), "FW_CFG_FILE", "1 to 55 characters");
  CHECK_THROWS_CODE(r.fw.add_file(std::string(56, 'a'), {}), "FW_CFG_FILE", "1 to 55 characters");
  CHECK_THROWS_CODE(r.fw.add_file(std::string("a\0b", 3), {}), "FW_CFG_FILE", "no NUL");
  r.fw.add_file(std::string(55, 'a'), {1});
  CHECK_THROWS_CODE(r.fw.add_file(std::string(55, 'a'), {2}), "FW_CFG_FILE", "already added");
  CHECK_THROWS_CODE(r.fw.replace_file("nope", {}), "FW_CFG_FILE", "no file 'nope'");
  for (size_t i = 1; i < FwCfg::kMaxFiles; ++i) r.fw.add_file("f" + std::to_string(i), {});
  CHECK_THROWS_CODE(r.fw.add_file("one-too-many", {}), "FW_CFG_FILE", "room for 256 files");
  // The last file's key is still a valid selector.
  r.select(static_cast<uint16_t>(key::kFileFirst + FwCfg::kMaxFiles - 1));
  r.fw.replace_file("f99", {7});
  CHECK_BYTES(r.fw.file_data("f99").value(), (std::vector<uint8_t>{7}));
}

TEST(fw_cfg_reset_returns_to_power_on) {
  Rig r;
  r.fw.add_u16(key::kNbCpus, 2);
  r.select(key::kNbCpus);
  r.data(1);
  uint8_t hi[4] = {0, 0, 0, 1};
  r.fw.write(FwCfg::kDmaOffset, hi);
  r.fw.reset();
  CHECK_STR(r.text(4), "QEMU");
  // The high half written before the reset is gone: a low write alone reaches RAM.
  CHECK_EQ(r.run_dma(uint32_t{key::kNbCpus} << 16 | dma::kSelect | dma::kRead, 2, kBuf), 0u);
  CHECK_BYTES(r.fw.item_data(key::kNbCpus).value(), (std::vector<uint8_t>{2, 0}));
}

TEST(fw_cfg_state_round_trip_and_hostile_records) {
  Rig a;
  a.fw.add_file("bootorder", bytes("/pci@i0cf8/scsi@4/disk@0,0"));
  a.select(0x20);
  CHECK_STR(a.text(5), "/pci@");
  uint8_t hi[4] = {0, 0, 0, 0};
  a.fw.write(FwCfg::kDmaOffset, hi);
  auto good = save(a.fw);
  // Record: u16 selector, u32 offset, u64 DMA address (after the record header).
  CHECK_EQ(good.size(), 4 + 6 + 4 + 8 + 14u);

  Rig b;
  b.fw.add_file("bootorder", bytes("/pci@i0cf8/scsi@4/disk@0,0"));
  load(b.fw, good);
  CHECK(save(b.fw) == good);
  CHECK_STR(b.text(5), "i0cf8");

  // The offset beyond the selected item (the same record against a shorter file).
  Rig c;
  c.fw.add_file("bootorder", bytes("abc"));
  c.select(key::kId);
  CHECK_THROWS_CODE(load(c.fw, good), "STATE_INVALID", "offset is 5, beyond the 3 bytes");
  CHECK_BYTES(c.data(1), (std::vector<uint8_t>{3}));  // unchanged: still the ID at offset 0
  CHECK_THROWS_CODE(load(c.fw, shorten_body(good, 1)), "STATE_INVALID", "dma_address");
  CHECK_THROWS_CODE(load(c.fw, with_version(good, 2)), "STATE_VERSION", "version 2");
  CHECK_THROWS_CODE(load(c.fw, cut(good, 6)), "STATE_INVALID", "");
}
