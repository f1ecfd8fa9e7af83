#include "devices/platform/fw_cfg_formats.h"

#include <cstdio>

#include "common/error.h"

namespace berth::devices::platform {

namespace {

constexpr size_t kBzSetupSects = 0x1f1;  // boot protocol header fields
constexpr size_t kBzHeaderMagic = 0x202;
constexpr uint32_t kHdrS = 0x53726448;  // "HdrS"
constexpr uint32_t kDefaultSetupSects = 4;
constexpr size_t kSectorSize = 512;
constexpr const char* kPciRoot = "/pci@i0cf8";

void put_le(std::vector<uint8_t>& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%x", v);
  return buf;
}

}  // namespace

std::vector<uint8_t> e820_file(std::span<const E820Entry> entries) {
  std::vector<uint8_t> out;
  out.reserve(entries.size() * kE820EntrySize);
  for (const auto& e : entries) {
    put_le(out, e.address, 8);
    put_le(out, e.length, 8);
    put_le(out, e.type, 4);
  }
  return out;
}

namespace ofw_path {

std::string pci_device(std::string_view name, uint32_t slot, uint32_t function) {
  if (slot > 31 || function > 7) {
    throw Error("INVALID_ARGUMENT", "PCI slot " + std::to_string(slot) + " function " +
                                        std::to_string(function) +
                                        " does not exist (slots 0-31, functions 0-7)");
  }
  std::string path = std::string(kPciRoot) + "/" + std::string(name) + "@" + hex(slot);
  if (function) path += "," + hex(function);
  return path;
}

std::string virtio_blk(uint32_t slot, uint32_t function) {
  return pci_device("scsi", slot, function) + "/disk@0,0";
}

std::string virtio_scsi(uint32_t slot, uint32_t function, uint32_t target, uint32_t lun) {
  return pci_device("scsi", slot, function) + "/channel@0/disk@" + hex(target) + "," + hex(lun);
}

std::string virtio_net(uint32_t slot, uint32_t function) {
  return pci_device("ethernet", slot, function);
}

}  // namespace ofw_path

std::vector<uint8_t> bootorder_file(std::span<const std::string> paths, bool strict) {
  std::string text;
  for (const auto& p : paths) {
    if (!text.empty()) text += '\n';
    text += p;
  }
  if (strict) text += text.empty() ? "HALT" : "\nHALT";
  std::vector<uint8_t> out(text.begin(), text.end());
  out.push_back(0);
  return out;
}

std::vector<uint8_t> le_file(uint64_t value, size_t bytes) {
  std::vector<uint8_t> out;
  put_le(out, value, bytes > 8 ? 8 : bytes);
  return out;
}

std::vector<uint8_t> text_file(std::string_view text) { return {text.begin(), text.end()}; }

void add_linux_boot(FwCfg& fw_cfg, std::span<const uint8_t> bzimage, std::vector<uint8_t> initrd,
                    std::string_view cmdline) {
  using namespace fw_cfg_key;
  if (bzimage.size() < kBzHeaderMagic + 4 ||
      (bzimage[kBzHeaderMagic] | bzimage[kBzHeaderMagic + 1] << 8 |
       bzimage[kBzHeaderMagic + 2] << 16 | uint32_t{bzimage[kBzHeaderMagic + 3]} << 24) != kHdrS) {
    throw Error("BOOT_BAD_IMAGE",
                "the kernel is not a bzImage (no 'HdrS' boot header at 0x202); firmware boot "
                "takes a Linux bzImage");
  }
  uint32_t setup_sects = bzimage[kBzSetupSects];
  if (setup_sects == 0) setup_sects = kDefaultSetupSects;
  const size_t setup_size = (setup_sects + 1) * kSectorSize;
  if (bzimage.size() <= setup_size) {
    throw Error("BOOT_BAD_IMAGE", "the kernel has " + std::to_string(bzimage.size()) +
                                      " bytes, no more than its " + std::to_string(setup_size) +
                                      " bytes of setup sectors: it is cut short");
  }
  if (bzimage.size() > FwCfg::kMaxItemSize) {
    throw Error("BOOT_KERNEL_TOO_BIG", "the kernel has " + std::to_string(bzimage.size()) +
                                           " bytes; firmware boot takes at most " +
                                           std::to_string(FwCfg::kMaxItemSize));
  }
  if (initrd.size() > FwCfg::kMaxItemSize) {
    throw Error("BOOT_INITRD_TOO_BIG", "the initrd has " + std::to_string(initrd.size()) +
                                           " bytes; firmware boot takes at most " +
                                           std::to_string(FwCfg::kMaxItemSize));
  }
  const auto setup = bzimage.subspan(0, setup_size);
  const auto kernel = bzimage.subspan(setup_size);
  fw_cfg.add_u32(kSetupSize, static_cast<uint32_t>(setup.size()));
  fw_cfg.add_item(kSetupData, {setup.begin(), setup.end()});
  fw_cfg.add_u32(kKernelSize, static_cast<uint32_t>(kernel.size()));
  fw_cfg.add_item(kKernelData, {kernel.begin(), kernel.end()});
  if (!initrd.empty()) {
    fw_cfg.add_u32(kInitrdSize, static_cast<uint32_t>(initrd.size()));
    fw_cfg.add_item(kInitrdData, std::move(initrd));
  }
  std::vector<uint8_t> line(cmdline.begin(), cmdline.end());
  line.push_back(0);
  fw_cfg.add_u32(kCmdlineSize, static_cast<uint32_t>(line.size()));
  fw_cfg.add_item(kCmdlineData, std::move(line));
}

}  // namespace berth::devices::platform
