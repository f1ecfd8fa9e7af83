#include <vector>

#include "tests/check.h"
#include "vmm/bus.h"

using berth::vmm::Bus;
using berth::vmm::BusDevice;

namespace {

// Remembers the offsets it is accessed at; reads return the low byte of the offset.
class OffsetDevice : public BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = static_cast<uint8_t>(offset);
    reads.push_back(offset);
  }
  void write(uint64_t offset, std::span<const uint8_t>) override { writes.push_back(offset); }
  std::vector<uint64_t> reads, writes;
};

}  // namespace

TEST(bus_dispatches_relative_offsets) {
  Bus bus("I/O port");
  auto uart = std::make_shared<OffsetDevice>();
  auto rtc = std::make_shared<OffsetDevice>();
  bus.insert(0x3f8, 8, uart, "COM1");
  bus.insert(0x70, 2, rtc, "RTC");
  uint8_t b[1] = {0};
  CHECK(bus.read(0x3fd, b));
  CHECK_EQ(b[0], 5);
  CHECK(bus.write(0x71, b));
  CHECK_EQ(rtc->writes.at(0), uint64_t{1});
  CHECK(!bus.read(0x3f7, b));
  CHECK(!bus.read(0x400, b));
  CHECK(!bus.read(0x72, b));
  uint8_t wide[4];
  CHECK(!bus.read(0x3fe, wide));  // straddles the end of COM1
}

TEST(bus_refuses_overlaps_naming_both) {
  Bus bus("MMIO");
  auto d = std::make_shared<OffsetDevice>();
  bus.insert(0x1000, 0x100, d, "first");
  CHECK_THROWS_CODE(bus.insert(0x10ff, 1, d, "second"), "BUS_OVERLAP", "second at 0x10ff-0x10ff overlaps first at 0x1000-0x10ff");
  CHECK_THROWS_CODE(bus.insert(0xf00, 0x101, d, "third"), "BUS_OVERLAP", "overlaps first");
  CHECK_THROWS_CODE(bus.insert(0x0, 0x10000, d, "fourth"), "BUS_OVERLAP", "overlaps first");
  CHECK_THROWS_CODE(bus.insert(0x2000, 0, d, "empty"), "BUS_RANGE", "empty");
  CHECK_THROWS_CODE(bus.insert(~0ull - 2, 8, d, "wrap"), "BUS_RANGE", "wrapping");
  bus.insert(0x1100, 0x10, d, "adjacent");
  bus.insert(0xff0, 0x10, d, "below");
  CHECK_EQ(bus.size(), size_t{3});
}
