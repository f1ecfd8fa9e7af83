// Builders for the fw_cfg files and items whose bytes have a structure the firmware parses:
// the "etc/e820" RAM map, the "bootorder" list of OpenFirmware device paths, integers in
// the little-endian form SeaBIOS's romfile_loadint reads, and the items of a direct Linux
// kernel boot.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "devices/platform/fw_cfg.h"

namespace berth::devices::platform {

// "etc/e820": packed little-endian {u64 address; u64 length; u32 type} entries, 20 bytes
// each. OVMF takes its RAM below and above 4 GiB from the type-1 entries (the highest end
// below 4 GiB is its low-memory size); SeaBIOS adds RAM and reserved entries to its own
// map (and reserves the top 256 KiB below 4 GiB itself).
struct E820Entry {
  uint64_t address = 0;
  uint64_t length = 0;
  uint32_t type = 0;
};
constexpr uint32_t kE820Ram = 1, kE820Reserved = 2, kE820Acpi = 3, kE820Nvs = 4;
constexpr size_t kE820EntrySize = 20;
std::vector<uint8_t> e820_file(std::span<const E820Entry> entries);

// OpenFirmware paths for "bootorder", as QEMU writes them for devices on the root bus (PCI
// host at "/pci@i0cf8"); slots and functions in hex, ",function" only when nonzero.
// SeaBIOS matches a virtio-blk disk by the glob "/pci@i0cf8/*@slot" and a SCSI disk by
// "/pci@i0cf8/*@slot/*@0/*@target,lun"; OVMF's QemuBootOrderLib translates these two forms
// (scsi@slot/disk@0,0 and scsi@slot/channel@0/disk@target,lun) to
// PciRoot(0x0)/Pci(slot,fn)[/Scsi(target,lun)]. A CD on virtio-scsi has the disk form too.
// Throw INVALID_ARGUMENT for a slot above 31 or a function above 7.
namespace ofw_path {
std::string pci_device(std::string_view name, uint32_t slot, uint32_t function = 0);
std::string virtio_blk(uint32_t slot, uint32_t function = 0);
std::string virtio_scsi(uint32_t slot, uint32_t function, uint32_t target, uint32_t lun);
std::string virtio_net(uint32_t slot, uint32_t function = 0);
}  // namespace ofw_path

// The "bootorder" file: the paths, first to boot first, joined by '\n' and ended by a NUL
// (QEMU's format). `strict` adds the line "HALT": SeaBIOS then boots nothing unlisted.
std::vector<uint8_t> bootorder_file(std::span<const std::string> paths, bool strict = false);

// An integer file as SeaBIOS reads it (romfile_loadint: little-endian, 1 to 8 bytes), e.g.
// "etc/boot-fail-wait" (4 bytes, milliseconds before a failed boot retries; QEMU's
// default -1 never retries), "etc/sercon-port" (2 bytes), "etc/boot-menu-wait" (2 bytes,
// ms; OVMF reads it too).
std::vector<uint8_t> le_file(uint64_t value, size_t bytes);
// A text file as OVMF's QemuFwCfgSimpleParserLib reads it ("opt/ovmf/X-PciMmio64Mb",
// "opt/ovmf/PcdSetNxForStack": decimal or 0x hex, or y/n/true/false).
std::vector<uint8_t> text_file(std::string_view text);

// Direct kernel boot: splits a bzImage into its setup part (boot sector and setup
// sectors) and the rest, the way QEMU hands them to the firmware: kSetupSize/kSetupData,
// kKernelSize/kKernelData, kInitrdSize/kInitrdData (when an initrd is given) and
// kCmdlineSize/kCmdlineData (NUL-terminated). OVMF's QemuKernelLoaderFsDxe needs both the
// setup and kernel sizes nonzero. Throws BOOT_BAD_IMAGE for an image without the "HdrS"
// header or shorter than its setup sectors.
void add_linux_boot(FwCfg& fw_cfg, std::span<const uint8_t> bzimage, std::vector<uint8_t> initrd,
                    std::string_view cmdline);

}  // namespace berth::devices::platform
