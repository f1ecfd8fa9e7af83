// A PCI display with QEMU's "bochs-display" programming model (QEMU hw/display/
// bochs-display.c): 1234:1111, class 0x038000 (display, other), revision 2. SeaBIOS's
// vgabios-bochs-display ROM draws the BIOS's text into its framebuffer, OVMF's
// QemuVideoDxe and Linux's bochs DRM driver set modes through it.
//
//  - BAR 0: the framebuffer, kVideoMemorySize bytes of 32-bit prefetchable memory, backed
//    by VideoMemory. The machine maps it into the guest as a memory slot wherever BAR 0 is
//    decoded (set_framebuffer_listener tells it where, and when that changes); until then,
//    accesses that reach the device through the bus read and write the same memory.
//  - BAR 2: 4 KiB of MMIO: the EDID block at 0x000 (reads only; zeros up to 0x3ff), the
//    VBE DISPI registers at 0x500 (16-bit register i at 0x500 + 2 * i; 1..4-byte accesses
//    reach the bytes they cover), QEMU's extended registers at 0x600 (dword accesses:
//    size 8 at 0x600, framebuffer byte order at 0x604, written 0x1e1e1e1e for little or
//    0xbebebebe for big endian; other values are ignored). Everything else reads all-ones
//    and ignores writes.
//  - The expansion ROM BAR holds the option ROM image when one is given (BIOS VMs).
//
// DISPI registers keep what the guest writes (ID..Y_OFFSET, like QEMU): ID reads 0xB0C5,
// VIDEO_MEMORY_64K the video memory size, other indices all-ones. The picture is
// mode_from_registers of them (display_mode.h): values outside its limits show nothing.
//
// Locking: the registers and mode have one mutex; the framebuffer listener runs with none
// held. The guest writes video memory directly, from any vCPU, without a lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/state_stream.h"
#include "devices/display/display_mode.h"
#include "devices/display/edid.h"
#include "devices/display/video_memory.h"
#include "devices/pci/pci_function.h"

namespace berth::devices::display {

constexpr uint16_t kPciVendorId = 0x1234;
constexpr uint16_t kPciDeviceId = 0x1111;
constexpr uint8_t kPciRevision = 2;
constexpr uint32_t kPciClassCode = 0x038000;
constexpr uint16_t kPciSubsystemVendorId = 0x1af4, kPciSubsystemId = 0x1100;  // QEMU's defaults

constexpr uint32_t kFramebufferBar = 0;
constexpr uint32_t kMmioBar = 2;
constexpr uint64_t kVideoMemorySize = 16ull << 20;
constexpr uint64_t kMmioBarSize = 0x1000;
// BAR 2 layout.
constexpr uint64_t kEdidOffset = 0x000, kEdidRegionSize = 0x400;
constexpr uint64_t kDispiOffset = 0x500, kDispiSize = 2 * dispi::kRegisterCount;
constexpr uint64_t kQextOffset = 0x600, kQextSize = 8;
constexpr uint64_t kQextRegSize = 0, kQextRegByteOrder = 4;
constexpr uint32_t kQextLittleEndian = 0x1e1e1e1e, kQextBigEndian = 0xbebebebe;

// Reads an option ROM image (a PCI expansion ROM: 0x55 0xAA first, at most 16 MiB).
// Throws berth::Error DISPLAY_ROM_INVALID naming the file and what is wrong with it.
std::vector<uint8_t> read_option_rom(const std::string& path);

class BochsDisplay final : public pci::PciFunction {
 public:
  using FramebufferListener = std::function<void(std::optional<uint64_t> address)>;

  // `rom`: the option ROM for the expansion ROM BAR (empty: none). Throws DISPLAY_MEMORY
  // when video memory cannot be mapped, DISPLAY_ROM_INVALID for a ROM above 16 MiB.
  explicit BochsDisplay(std::vector<uint8_t> rom = {});

  // PciDevice.
  void config_write(uint32_t offset, std::span<const uint8_t> data) override;
  void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override;
  // Machine reset: configuration space and registers to power-on (no mode). Video memory
  // keeps its contents, as a real adapter's does.
  void reset() override;

  VideoMemory& video_memory() { return vram_; }
  const VideoMemory& video_memory() const { return vram_; }
  // Where BAR 0 is decoded now (placed and memory decoding on), else nullopt.
  std::optional<uint64_t> framebuffer_address() const;
  // Called with the new framebuffer_address() after it changed (placed, moved, decoding
  // switched on or off), from the thread that changed it: a vCPU's configuration write,
  // or reset() and load_state(). Set before the guest runs.
  void set_framebuffer_listener(FramebufferListener listener);

  DisplayMode mode() const;
  // Counts the changes of mode(): a reader that saw another value redraws everything.
  uint64_t mode_generation() const;
  // Whether video memory was written through bar_write (no memory slot mapped) since the
  // last call; such writes are not in the hypervisor's written-pages log.
  bool take_unlogged_writes() { return unlogged_writes_.exchange(false); }

  DispiRegisters registers() const;
  bool big_endian_framebuffer() const;

  // Saved state: record "bochs-display" (version 1): the "pci-function" record, the DISPI
  // registers, the byte order, then video memory up to its last page that is not all
  // zero (u32 page count, then the pages; the rest loads as zeros). A bad record throws
  // STATE_INVALID / STATE_VERSION naming the field and changes nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  uint64_t read_mmio(uint64_t offset, size_t size);
  void write_mmio(uint64_t offset, size_t size, uint64_t value);
  void update_mode_locked();
  void check_framebuffer_moved();

  VideoMemory vram_;
  std::vector<uint8_t> rom_;  // padded to the ROM BAR's size
  const std::array<uint8_t, kEdidBlockSize> edid_;
  std::atomic<bool> unlogged_writes_{false};

  mutable std::mutex mu_;
  DispiRegisters regs_{};
  bool big_endian_ = false;
  DisplayMode mode_;
  uint64_t mode_generation_ = 0;

  std::mutex fb_mu_;
  std::optional<uint64_t> last_fb_;
  FramebufferListener fb_listener_;
};

}  // namespace berth::devices::display
