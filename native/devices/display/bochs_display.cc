#include "devices/display/bochs_display.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/error.h"

namespace berth::devices::display {

namespace {

constexpr uint64_t kMaxRomSize = 16ull << 20;
constexpr uint64_t kMinRomBar = 2048;

pci::PciFunction::Identity identity() {
  pci::PciFunction::Identity id;
  id.vendor_id = kPciVendorId;
  id.device_id = kPciDeviceId;
  id.revision = kPciRevision;
  id.class_code = kPciClassCode;
  id.subsystem_vendor_id = kPciSubsystemVendorId;
  id.subsystem_id = kPciSubsystemId;
  return id;
}

uint64_t little_endian(std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t{data[i]} << (8 * i);
  return v;
}

void put_little_endian(std::span<uint8_t> data, uint64_t v) {
  for (size_t i = 0; i < data.size() && i < 8; ++i) data[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

std::vector<uint8_t> read_option_rom(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("DISPLAY_ROM_INVALID", "cannot open the display option ROM " + path + "; check the path");
  std::vector<uint8_t> rom;
  char buf[65536];
  while (f.read(buf, sizeof buf) || f.gcount() > 0) {
    rom.insert(rom.end(), buf, buf + f.gcount());
    if (rom.size() > kMaxRomSize) break;
  }
  if (rom.size() > kMaxRomSize) {
    throw Error("DISPLAY_ROM_INVALID", "the display option ROM " + path + " is larger than 16 MiB");
  }
  if (rom.size() < 3 || rom[0] != 0x55 || rom[1] != 0xaa) {
    throw Error("DISPLAY_ROM_INVALID", "the display option ROM " + path +
                                           " does not start with the 0x55 0xAA signature of a PCI option ROM; "
                                           "use SeaBIOS's vgabios-bochs-display.bin");
  }
  return rom;
}

BochsDisplay::BochsDisplay(std::vector<uint8_t> rom)
    : PciFunction(identity()), vram_(kVideoMemorySize), edid_(build_edid()) {
  declare_bar(kFramebufferBar, pci::BarKind::kMem32, kVideoMemorySize, /*prefetchable=*/true);
  declare_bar(kMmioBar, pci::BarKind::kMem32, kMmioBarSize);
  if (!rom.empty()) {
    if (rom.size() > kMaxRomSize) throw Error("DISPLAY_ROM_INVALID", "the display option ROM is larger than 16 MiB");
    const uint64_t bar = std::max<uint64_t>(kMinRomBar, std::bit_ceil(uint64_t{rom.size()}));
    rom.resize(bar, 0);
    declare_expansion_rom(bar);
    rom_ = std::move(rom);
  }
}

void BochsDisplay::config_write(uint32_t offset, std::span<const uint8_t> data) {
  PciFunction::config_write(offset, data);
  check_framebuffer_moved();
}

std::optional<uint64_t> BochsDisplay::framebuffer_address() const {
  auto m = bar_mapping(kFramebufferBar);
  if (!m) return std::nullopt;
  return m->address;
}

void BochsDisplay::set_framebuffer_listener(FramebufferListener listener) {
  std::lock_guard<std::mutex> lock(fb_mu_);
  fb_listener_ = std::move(listener);
  last_fb_ = framebuffer_address();
}

void BochsDisplay::check_framebuffer_moved() {
  FramebufferListener listener;
  std::optional<uint64_t> now;
  {
    std::lock_guard<std::mutex> lock(fb_mu_);
    now = framebuffer_address();
    if (now == last_fb_) return;
    last_fb_ = now;
    listener = fb_listener_;
  }
  if (listener) listener(now);
}

void BochsDisplay::bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (data.empty() || data.size() > 8) return;
  switch (bar) {
    case kFramebufferBar:
      if (offset < vram_.size() && data.size() <= vram_.size() - offset) {
        std::memcpy(data.data(), vram_.data() + offset, data.size());
      }
      return;
    case kMmioBar:
      if (offset < kMmioBarSize && data.size() <= kMmioBarSize - offset) {
        put_little_endian(data, read_mmio(offset, data.size()));
      }
      return;
    case pci::kExpansionRomBar:
      if (offset < rom_.size() && data.size() <= rom_.size() - offset) {
        std::memcpy(data.data(), rom_.data() + offset, data.size());
      }
      return;
    default:
      return;
  }
}

void BochsDisplay::bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty() || data.size() > 8) return;
  if (bar == kFramebufferBar) {
    if (offset < vram_.size() && data.size() <= vram_.size() - offset) {
      std::memcpy(vram_.data() + offset, data.data(), data.size());
      unlogged_writes_ = true;
    }
  } else if (bar == kMmioBar) {
    if (offset < kMmioBarSize && data.size() <= kMmioBarSize - offset) {
      write_mmio(offset, data.size(), little_endian(data));
    }
  }
}

uint64_t BochsDisplay::read_mmio(uint64_t offset, size_t size) {
  if (offset < kEdidOffset + kEdidRegionSize) {
    if (offset + size > kEdidRegionSize) return ~uint64_t{0};
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) {
      const uint64_t at = offset - kEdidOffset + i;
      v |= uint64_t{at < edid_.size() ? edid_[at] : uint8_t{0}} << (8 * i);
    }
    return v;
  }
  if (offset >= kDispiOffset && offset + size <= kDispiOffset + kDispiSize) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) {
      const uint64_t byte = offset - kDispiOffset + i;
      const uint32_t index = static_cast<uint32_t>(byte / 2);
      uint16_t reg = 0xffff;
      if (index == dispi::kId) {
        reg = dispi::kId5;
      } else if (index == dispi::kVideoMemory64K) {
        reg = static_cast<uint16_t>(vram_.size() / 0x10000);
      } else if (index < dispi::kStoredCount) {
        reg = regs_[index];
      }
      v |= uint64_t{static_cast<uint8_t>(reg >> (8 * (byte % 2)))} << (8 * i);
    }
    return v;
  }
  if (offset >= kQextOffset && offset + size <= kQextOffset + kQextSize && size == 4 && offset % 4 == 0) {
    if (offset - kQextOffset == kQextRegSize) return kQextSize;
    std::lock_guard<std::mutex> lock(mu_);
    return big_endian_ ? kQextBigEndian : kQextLittleEndian;
  }
  return ~uint64_t{0};
}

void BochsDisplay::write_mmio(uint64_t offset, size_t size, uint64_t value) {
  if (offset >= kDispiOffset && offset + size <= kDispiOffset + kDispiSize) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < size; ++i) {
      const uint64_t byte = offset - kDispiOffset + i;
      const uint32_t index = static_cast<uint32_t>(byte / 2);
      if (index >= dispi::kStoredCount) continue;  // VIDEO_MEMORY_64K is read-only
      const unsigned shift = 8 * (byte % 2);
      const auto b = static_cast<uint16_t>((value >> (8 * i)) & 0xff);
      regs_[index] = static_cast<uint16_t>((regs_[index] & ~(0xff << shift)) | (b << shift));
    }
    update_mode_locked();
    return;
  }
  if (offset == kQextOffset + kQextRegByteOrder && size == 4) {
    std::lock_guard<std::mutex> lock(mu_);
    if (value == kQextBigEndian) big_endian_ = true;
    if (value == kQextLittleEndian) big_endian_ = false;
    update_mode_locked();
  }
}

void BochsDisplay::update_mode_locked() {
  const DisplayMode now = mode_from_registers(regs_, vram_.size(), big_endian_);
  if (now == mode_) return;
  mode_ = now;
  ++mode_generation_;
}

void BochsDisplay::reset() {
  PciFunction::reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    regs_ = {};
    big_endian_ = false;
    update_mode_locked();
  }
  check_framebuffer_moved();
}

DisplayMode BochsDisplay::mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_;
}

uint64_t BochsDisplay::mode_generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_generation_;
}

DispiRegisters BochsDisplay::registers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return regs_;
}

bool BochsDisplay::big_endian_framebuffer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return big_endian_;
}

}  // namespace berth::devices::display
