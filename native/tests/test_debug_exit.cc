#include <vector>

#include "devices/debug_exit.h"
#include "tests/check.h"

using berth::devices::DebugExit;

TEST(debug_exit_values) {
  std::vector<uint32_t> values;
  DebugExit dev([&](uint32_t v) { values.push_back(v); });
  const uint8_t one[1] = {0x01};
  const uint8_t two[2] = {0x34, 0x12};
  const uint8_t four[4] = {0xef, 0xbe, 0xad, 0xde};
  dev.write(0, one);
  dev.write(0, two);
  dev.write(0, four);
  CHECK_EQ(values.size(), size_t{3});
  CHECK_EQ(values[0], 0x01u);
  CHECK_EQ(values[1], 0x1234u);
  CHECK_EQ(values[2], 0xdeadbeefu);
}

TEST(debug_exit_ignores_other_writes_and_reads_ff) {
  int calls = 0;
  DebugExit dev([&](uint32_t) { ++calls; });
  const uint8_t eight[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  const uint8_t one[1] = {1};
  dev.write(0, eight);
  dev.write(1, one);
  dev.write(2, std::span<const uint8_t>(one, 1));
  CHECK_EQ(calls, 0);
  uint8_t buf[4] = {0, 0, 0, 0};
  dev.read(0, buf);
  for (uint8_t b : buf) CHECK_EQ(b, 0xff);
}
