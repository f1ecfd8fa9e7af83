// The chipset's reset control register (ICH9 RST_CNT) at I/O port kPort (0xCF9). It shares
// the configuration ports' dword at 0xCF8, so the machine does not register it itself:
// pci::ConfigPorts hands it the byte accesses at 0xCF9 (offset 0 here).
//
// Bit 1 (SYS_RST) and bit 3 (FULL_RST) are stored; writing bit 2 (RST_CPU) resets the
// machine through on_reset, whatever the other bits say (0x06, the FADT's RESET_VALUE, and
// 0x0e are the usual writes; SeaBIOS writes 0x02 first, OVMF 0x06 at once). Reading returns
// the stored bits.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices::platform {

class ResetControl final : public vmm::BusDevice {
 public:
  static constexpr uint16_t kPort = 0xcf9;
  static constexpr uint8_t kSystemReset = 0x02, kResetCpu = 0x04, kFullReset = 0x08;
  // The FADT's RESET_REG (system I/O, 8 bits at kPort) and RESET_VALUE.
  static constexpr uint8_t kFadtResetValue = kSystemReset | kResetCpu;

  explicit ResetControl(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

  // One byte at offset 0; anything else reads 0xff and is ignored.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  // Machine reset: the register to 0.
  void reset() { value_ = 0; }

  // Saved state: record "reset-control" (version 1) with the stored bits.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  std::function<void()> on_reset_;
  std::atomic<uint8_t> value_{0};
};

}  // namespace berth::devices::platform
