// A test-exit port like QEMU's isa-debug-exit: a guest write tells the host to stop with
// a status. Registered at I/O port 0xf4, 4 ports.
//
// A write of 1, 2 or 4 bytes at offset 0 calls on_exit with the value written
// (little-endian, zero-extended). Other writes are ignored; reads return 0xff bytes.
// on_exit runs on the writing vCPU thread; the device holds no lock and no state.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/bus_device.h"

namespace berth::devices {

class DebugExit : public vmm::BusDevice {
 public:
  static constexpr uint16_t kBase = 0xf4;
  static constexpr uint64_t kPortCount = 4;

  explicit DebugExit(std::function<void(uint32_t value)> on_exit);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::function<void(uint32_t)> on_exit_;
};

}  // namespace berth::devices
