#include "devices/pci/pci_access.h"

#include <algorithm>

namespace berth::devices::pci {

namespace {

constexpr uint64_t kAddressPorts = 4;
constexpr uint64_t kResetControlOffset = 1;
constexpr uint32_t kEnable = 0x80000000;

void float_high(std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

struct Target {
  uint32_t bus, slot, function, offset;
};

// The function and register the CF8 address selects, plus the data port's byte lane.
Target from_config_address(uint32_t address, uint64_t lane) {
  return {address >> 16 & 0xff, address >> 11 & 0x1f, address >> 8 & 0x7,
          (address & 0xfc) + static_cast<uint32_t>(lane)};
}

Target from_ecam_offset(uint64_t offset) {
  return {static_cast<uint32_t>(offset >> 20 & 0xff), static_cast<uint32_t>(offset >> 15 & 0x1f),
          static_cast<uint32_t>(offset >> 12 & 0x7), static_cast<uint32_t>(offset & 0xfff)};
}

}  // namespace

ConfigPorts::ConfigPorts(std::shared_ptr<PciBus> bus, std::shared_ptr<vmm::BusDevice> reset_control)
    : bus_(std::move(bus)), reset_control_(std::move(reset_control)) {}

void ConfigPorts::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset < kAddressPorts) {
    if (offset == 0 && data.size() == 4) {
      const uint32_t v = bus_->config_address();
      for (size_t i = 0; i < 4; ++i) data[i] = static_cast<uint8_t>(v >> (8 * i));
    } else if (offset == kResetControlOffset && data.size() == 1 && reset_control_) {
      reset_control_->read(0, data);
    } else {
      float_high(data);
    }
    return;
  }
  const uint64_t lane = offset - kAddressPorts;
  const uint32_t address = bus_->config_address();
  if (!(address & kEnable) || lane + data.size() > 4) return float_high(data);
  const Target t = from_config_address(address, lane);
  bus_->config_read(t.bus, t.slot, t.function, t.offset, data);
}

void ConfigPorts::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset < kAddressPorts) {
    if (offset == 0 && data.size() == 4) {
      bus_->set_config_address(static_cast<uint32_t>(data[0] | data[1] << 8 | data[2] << 16 |
                                                     static_cast<uint32_t>(data[3]) << 24));
    } else if (offset == kResetControlOffset && data.size() == 1 && reset_control_) {
      reset_control_->write(0, data);
    }
    return;
  }
  const uint64_t lane = offset - kAddressPorts;
  const uint32_t address = bus_->config_address();
  if (!(address & kEnable) || lane + data.size() > 4) return;
  const Target t = from_config_address(address, lane);
  bus_->config_write(t.bus, t.slot, t.function, t.offset, data);
}

void Ecam::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset >= kEcamSize) return float_high(data);
  if (data.size() == 8 && offset % 8 == 0) {
    read(offset, data.first(4));
    read(offset + 4, data.last(4));
    return;
  }
  const Target t = from_ecam_offset(offset);
  bus_->config_read(t.bus, t.slot, t.function, t.offset, data);  // checks size and alignment
}

void Ecam::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kEcamSize) return;
  if (data.size() == 8 && offset % 8 == 0) {
    write(offset, data.first(4));
    write(offset + 4, data.last(4));
    return;
  }
  const Target t = from_ecam_offset(offset);
  bus_->config_write(t.bus, t.slot, t.function, t.offset, data);
}

void BarWindow::read(uint64_t offset, std::span<uint8_t> data) {
  if (base_ + offset < base_ || !bus_->bar_read(space_, base_ + offset, data)) float_high(data);
}

void BarWindow::write(uint64_t offset, std::span<const uint8_t> data) {
  if (base_ + offset < base_) return;
  bus_->bar_write(space_, base_ + offset, data);
}

}  // namespace berth::devices::pci
