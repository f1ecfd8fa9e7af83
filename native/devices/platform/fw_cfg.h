// QEMU's firmware configuration interface (fw_cfg) on x86 I/O ports, the way OVMF and
// SeaBIOS find their configuration: RAM layout, CPU counts, ACPI tables, boot order, a
// kernel to boot directly. See QEMU's docs/specs/fw_cfg.rst.
//
// Ports (offsets from kPortBase = 0x510):
//   0      selector: a 16-bit write selects an item and rewinds it (bit 14, the old write
//          flag, is ignored; bit 15 selects the architecture-local items 0x8000..)
//   1      data: each byte read returns the selected item's next byte, 0 past its end or for
//          an item that does not exist; a wider read returns consecutive bytes. Writes are
//          ignored (QEMU dropped data-port writes in 2.4).
//   4..11  DMA address, big-endian: a 32-bit write at 4 sets the high half (and clears the
//          low one), a 32-bit write at 8 sets the low half and starts the transfer, a 64-bit
//          write at 4 sets both and starts it. Reads return the signature "QEMU CFG". The
//          address register is cleared after each transfer (SeaBIOS writes only the low half).
//
// A DMA transfer reads a FWCfgDmaAccess {be32 control; be32 length; be64 address} from
// guest memory: control bit 3 selects item control>>16 first; then bit 1 reads `length`
// bytes of the item into guest memory (zeros past its end), else bit 4 writes guest bytes
// into the item (only a file added with a write callback, and only inside its size), else
// bit 2 skips. On completion the control word is written back as 0, or 1 (error) when any
// guest address was not RAM or a write was refused. Guest addresses are checked against
// vmm::GuestMemory; nothing the guest writes can crash the VMM.
//
// Items: 0x0000 signature "QEMU", 0x0001 ID (traditional + DMA), 0x0019 the file
// directory (be32 count, then per file be32 size, be16 select, be16 reserved, 56-byte
// NUL-padded name), files from 0x0020 in name order (as QEMU sorts them: adding a file
// renumbers the files after it, so add them all before the guest runs), and the numeric
// items the machine adds (add_item).
//
// Thread-safe: one mutex guards all state. Callbacks run with it held: they must not call
// back into this device.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/state_stream.h"
#include "vmm/bus_device.h"
#include "vmm/guest_memory.h"

namespace berth::devices::platform {

// Numeric item keys (QEMU's include/standard-headers/linux/qemu_fw_cfg.h).
namespace fw_cfg_key {
constexpr uint16_t kSignature = 0x00;
constexpr uint16_t kId = 0x01;
constexpr uint16_t kUuid = 0x02;            // 16 bytes, SMBIOS byte order
constexpr uint16_t kRamSize = 0x03;         // u64 LE
constexpr uint16_t kNoGraphic = 0x04;       // u16 LE; SeaBIOS: nonzero -> serial console on 0x3f8
constexpr uint16_t kNbCpus = 0x05;          // u16 LE: CPUs present at boot
constexpr uint16_t kMachineId = 0x06;
constexpr uint16_t kKernelAddr = 0x07;      // u32 LE
constexpr uint16_t kKernelSize = 0x08;      // u32 LE
constexpr uint16_t kKernelCmdline = 0x09;   // u32 LE (the command line's address, legacy)
constexpr uint16_t kInitrdAddr = 0x0a;      // u32 LE
constexpr uint16_t kInitrdSize = 0x0b;      // u32 LE
constexpr uint16_t kBootDevice = 0x0c;      // u16 LE
constexpr uint16_t kNuma = 0x0d;            // u64 LE count, then per-CPU and per-node u64s
constexpr uint16_t kBootMenu = 0x0e;        // u16 LE: 1 shows the firmware's boot menu
constexpr uint16_t kMaxCpus = 0x0f;         // u16 LE: possible CPUs
constexpr uint16_t kKernelEntry = 0x10;
constexpr uint16_t kKernelData = 0x11;      // the bzImage after its setup sectors
constexpr uint16_t kInitrdData = 0x12;
constexpr uint16_t kCmdlineAddr = 0x13;     // u32 LE
constexpr uint16_t kCmdlineSize = 0x14;     // u32 LE, including the NUL
constexpr uint16_t kCmdlineData = 0x15;     // NUL-terminated
constexpr uint16_t kSetupAddr = 0x16;       // u32 LE
constexpr uint16_t kSetupSize = 0x17;       // u32 LE
constexpr uint16_t kSetupData = 0x18;       // the bzImage's setup sectors (boot sector included)
constexpr uint16_t kFileDir = 0x19;
constexpr uint16_t kFileFirst = 0x20;
constexpr uint16_t kWriteFlag = 0x4000;     // ignored in a selector
constexpr uint16_t kArchLocal = 0x8000;
constexpr uint16_t kEntryMask = 0x3fff;
constexpr uint16_t kX86AcpiTables = 0x8000;     // legacy, SeaBIOS reads a u16 count
constexpr uint16_t kX86SmbiosEntries = 0x8001;  // legacy, SeaBIOS reads a u16 count
constexpr uint16_t kX86Irq0Override = 0x8002;   // u8
constexpr uint16_t kX86E820Table = 0x8003;      // legacy reservations, u32 count
constexpr uint16_t kX86Hpet = 0x8004;
}  // namespace fw_cfg_key

// DMA control bits.
namespace fw_cfg_dma {
constexpr uint32_t kError = 0x01;
constexpr uint32_t kRead = 0x02;
constexpr uint32_t kSkip = 0x04;
constexpr uint32_t kSelect = 0x08;
constexpr uint32_t kWrite = 0x10;
constexpr uint64_t kSignature = 0x51454d5520434647ull;  // "QEMU CFG", big-endian
}  // namespace fw_cfg_dma

class FwCfg : public vmm::BusDevice {
 public:
  static constexpr uint16_t kPortBase = 0x510;
  static constexpr uint64_t kPortCount = 12;  // 0x510..0x51b
  static constexpr uint64_t kSelectorOffset = 0, kDataOffset = 1, kDmaOffset = 4;
  static constexpr uint32_t kIdTraditional = 1, kIdDma = 2;

  // Limits, defined once.
  static constexpr size_t kFileNameSize = 56;  // directory field, NUL included
  static constexpr size_t kMaxFileNameLength = kFileNameSize - 1;
  static constexpr size_t kMaxFiles = 256;  // keys 0x20..0x11f
  static constexpr uint32_t kMaxItemSize = 1u << 30;  // an initrd fits; the guest's RAM bounds it anyway
  static constexpr size_t kDirEntrySize = 64;

  // A guest DMA write of `bytes` at `offset` into a writable file, after the file's bytes
  // were updated.
  using WriteCallback = std::function<void(uint32_t offset, std::span<const uint8_t> bytes)>;
  // Runs when the guest selects the file; may update its bytes (and size) in place, e.g.
  // ACPI tables built once the firmware has placed the PCI BARs, like QEMU's
  // acpi_build_update. Keep the size stable once the guest has read the directory.
  using SelectCallback = std::function<void(std::vector<uint8_t>& data)>;

  struct FileOptions {
    WriteCallback on_write;  // empty: DMA writes set the error bit
    SelectCallback on_select;
  };

  explicit FwCfg(vmm::GuestMemory& memory);

  // A numeric item (keys 0x02..0x1f except 0x19, or 0x8000..0x801f), replacing any earlier
  // one. Throws FW_CFG_ITEM for a key the device owns or reserves, or bytes over
  // kMaxItemSize.
  void add_item(uint16_t key, std::vector<uint8_t> bytes);
  void add_u16(uint16_t key, uint16_t value);  // little-endian
  void add_u32(uint16_t key, uint32_t value);
  void add_u64(uint16_t key, uint64_t value);
  // A named file. Throws FW_CFG_FILE for an empty or too long name (over
  // kMaxFileNameLength), a name already added, more than kMaxFiles files, or bytes over
  // kMaxItemSize.
  void add_file(std::string_view name, std::vector<uint8_t> bytes, FileOptions options = {});
  // New contents for an existing file (FW_CFG_FILE if there is none).
  void replace_file(std::string_view name, std::vector<uint8_t> bytes);

  std::optional<uint16_t> file_key(std::string_view name) const;
  std::optional<std::vector<uint8_t>> file_data(std::string_view name) const;
  std::optional<std::vector<uint8_t>> item_data(uint16_t key) const;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Power-on: no item selected (the signature, key 0, at offset 0), DMA address 0. Items
  // stay: they come from the VM's configuration.
  void reset();

  // Transfers the guest asked for that ended with the error bit (for diagnostics).
  uint64_t dma_errors() const;

  // Saved state: record "fw-cfg" with the selector as the guest wrote it, the offset in
  // the selected item and the DMA address register. Items are rebuilt from the VM's
  // configuration, not saved: load after adding them. A bad record (an offset beyond the
  // selected item) throws STATE_INVALID and changes nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  struct Item {
    std::vector<uint8_t> data;
    FileOptions options;
  };
  struct File {
    std::string name;
    Item item;
  };

  Item* find(uint16_t selector);
  const Item* find(uint16_t selector) const;
  void select(uint16_t selector);
  uint8_t next_byte();
  void dma(uint64_t descriptor);
  bool dma_read(Item* item, uint64_t address, uint32_t length);
  bool dma_write(Item* item, uint64_t address, uint32_t length);
  void rebuild_directory();

  vmm::GuestMemory& memory_;
  mutable std::mutex mu_;
  std::map<uint16_t, Item> items_;  // by key with the write flag cleared
  std::vector<File> files_;         // sorted by name; key kFileFirst + index
  uint16_t selector_ = 0;
  uint32_t offset_ = 0;
  uint64_t dma_address_ = 0;
  uint64_t dma_errors_ = 0;
};

}  // namespace berth::devices::platform
