#include <string>
#include <vector>

#include "devices/platform/fw_cfg_formats.h"
#include "tests/check.h"
#include "vmm/guest_memory.h"

using namespace berth::devices::platform;
namespace key = berth::devices::platform::fw_cfg_key;

TEST(fw_cfg_e820_file_layout) {
  const E820Entry entries[] = {{0, 0x80000000, kE820Ram}, {0x100000000ull, 0x40000000, kE820Ram},
                               {0xfeffc000, 0x4000, kE820Reserved}};
  auto f = e820_file(entries);
  CHECK_EQ(f.size(), 3 * kE820EntrySize);
  const std::vector<uint8_t> second = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 1, 0, 0, 0};
  CHECK(std::vector<uint8_t>(f.begin() + 20, f.begin() + 40) == second);
  const std::vector<uint8_t> third = {0, 0xc0, 0xff, 0xfe, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0};
  CHECK(std::vector<uint8_t>(f.begin() + 40, f.end()) == third);
  CHECK_EQ(f[11], 0x80);  // first length 0x80000000
}

TEST(fw_cfg_bootorder_paths_and_file) {
  CHECK_STR(ofw_path::virtio_blk(4), "/pci@i0cf8/scsi@4/disk@0,0");
  CHECK_STR(ofw_path::virtio_blk(0x1e, 3), "/pci@i0cf8/scsi@1e,3/disk@0,0");
  CHECK_STR(ofw_path::virtio_scsi(3, 0, 0, 1), "/pci@i0cf8/scsi@3/channel@0/disk@0,1");
  CHECK_STR(ofw_path::virtio_scsi(0xa, 1, 0x10, 0), "/pci@i0cf8/scsi@a,1/channel@0/disk@10,0");
  CHECK_STR(ofw_path::virtio_net(5), "/pci@i0cf8/ethernet@5");
  CHECK_THROWS_CODE(ofw_path::virtio_blk(32), "INVALID_ARGUMENT", "slot 32");
  CHECK_THROWS_CODE(ofw_path::virtio_net(1, 8), "INVALID_ARGUMENT", "function 8");

  const std::vector<std::string> paths = {ofw_path::virtio_scsi(3, 0, 0, 0), ofw_path::virtio_blk(4)};
  auto f = bootorder_file(paths);
  static const char kExpect[] = "/pci@i0cf8/scsi@3/channel@0/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0";
  const std::string expect(kExpect, sizeof kExpect);  // the NUL included
  CHECK(std::string(f.begin(), f.end()) == expect);
  auto strict = bootorder_file(paths, true);
  static const char kStrict[] = "/pci@i0cf8/scsi@3/channel@0/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0\nHALT";
  CHECK(std::string(strict.begin(), strict.end()) == std::string(kStrict, sizeof kStrict));
  auto empty = bootorder_file({});
  CHECK(empty == std::vector<uint8_t>{0});
}

TEST(fw_cfg_integer_and_text_files) {
  CHECK(le_file(0xffffffff, 4) == (std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff}));
  CHECK(le_file(0x3f8, 2) == (std::vector<uint8_t>{0xf8, 0x03}));
  CHECK(le_file(1, 12).size() == 8u);
  CHECK(text_file("0x8000") == (std::vector<uint8_t>{'0', 'x', '8', '0', '0', '0'}));
}

TEST(fw_cfg_linux_boot_items) {
  berth::vmm::GuestMemory mem(1 << 20);
  FwCfg fw(mem);
  std::vector<uint8_t> bz(6 * 512 + 100, 0xaa);
  bz[0x1f1] = 3;  // setup sectors: 3 + the boot sector
  bz[0x202] = 'H';
  bz[0x203] = 'd';
  bz[0x204] = 'r';
  bz[0x205] = 'S';
  add_linux_boot(fw, bz, {1, 2, 3}, "console=ttyS0");
  auto u32 = [&](uint16_t k) {
    auto d = fw.item_data(k).value();
    return d.size() == 4 ? uint32_t{d[0]} | d[1] << 8 | d[2] << 16 | uint32_t{d[3]} << 24 : 0xffffffffu;
  };
  CHECK_EQ(u32(key::kSetupSize), 2048u);
  CHECK_EQ(fw.item_data(key::kSetupData).value().size(), 2048u);
  CHECK_EQ(fw.item_data(key::kSetupData).value()[0x202], 'H');
  CHECK_EQ(u32(key::kKernelSize), 1124u);
  CHECK_EQ(fw.item_data(key::kKernelData).value().size(), 1124u);
  CHECK_EQ(u32(key::kInitrdSize), 3u);
  CHECK(fw.item_data(key::kInitrdData).value() == (std::vector<uint8_t>{1, 2, 3}));
  CHECK_EQ(u32(key::kCmdlineSize), 14u);
  auto line = fw.item_data(key::kCmdlineData).value();
  CHECK(std::string(line.begin(), line.end()) == std::string("console=ttyS0\0", 14));

  // setup_sects 0 means 4; no initrd leaves its items out.
  FwCfg fw2(mem);
  bz[0x1f1] = 0;
  add_linux_boot(fw2, bz, {}, "");
  CHECK_EQ(fw2.item_data(key::kSetupData).value().size(), 2560u);
  CHECK(!fw2.item_data(key::kInitrdSize).has_value());
  CHECK(fw2.item_data(key::kCmdlineData).value() == std::vector<uint8_t>{0});

  bz.resize(2560);
  CHECK_THROWS_CODE(add_linux_boot(fw2, bz, {}, ""), "BOOT_BAD_IMAGE", "cut short");
  std::vector<uint8_t> elf(4096, 0);
  CHECK_THROWS_CODE(add_linux_boot(fw2, elf, {}, ""), "BOOT_BAD_IMAGE", "not a bzImage");
  CHECK_THROWS_CODE(add_linux_boot(fw2, std::vector<uint8_t>(10), {}, ""), "BOOT_BAD_IMAGE", "HdrS");
}
