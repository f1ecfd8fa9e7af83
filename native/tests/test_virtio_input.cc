// virtio-input as an absolute tablet, through virtio-mmio as a guest driver drives it:
// configuration queries, events delivered one per buffer, status queue drained, bounds.
#include <cstring>
#include <string>

#include "devices/virtio/input.h"
#include "devices/virtio/mmio.h"
#include "tests/check.h"
#include "tests/mmio_driver.h"
#include "tests/state_helpers.h"
#include "tests/virtio_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using namespace berth::test;

namespace {

constexpr uint64_t kBuf = 0x40000;

uint8_t cfg8(VirtioMmio& m, uint32_t off) {
  uint8_t v = 0;
  m.read(kMmioConfig + off, std::span<uint8_t>(&v, 1));
  return v;
}
void select(VirtioMmio& m, uint8_t sel, uint8_t sub) {
  m.write(kMmioConfig + 0, std::span<const uint8_t>(&sel, 1));
  m.write(kMmioConfig + 1, std::span<const uint8_t>(&sub, 1));
}
std::string cfg_string(VirtioMmio& m) {
  std::string s;
  for (uint32_t i = 0; i < cfg8(m, 2); ++i) s.push_back(static_cast<char>(cfg8(m, 8 + i)));
  return s;
}
bool cfg_bit(VirtioMmio& m, uint16_t bit) { return bit / 8 < cfg8(m, 2) && (cfg8(m, 8 + bit / 8) >> (bit % 8)) & 1; }

struct Rig {
  vmm::GuestMemory mem{1 << 20};
  CountingInterrupt irq;
  std::shared_ptr<VirtioInput> tablet = std::make_shared<VirtioInput>();
  VirtioMmio m{mem, tablet, irq};
  TestRing events{mem, 16, 0x1000}, status{mem, 8, 0x10000};

  void start(int buffers) {
    CHECK(negotiate(m));
    setup_queue(m, 0, events);
    setup_queue(m, 1, status);
    for (int i = 0; i < buffers; ++i) offer_event_buffer();
    driver_ok(m);
    m.sync();
  }
  uint16_t next = 0;
  void offer_event_buffer(uint32_t len = 8) {
    events.set_desc(next, kBuf + 8ull * next, len, kDescWrite);
    events.offer(next);
    ++next;
  }
  // The i-th event the device returned: type, code, value.
  std::array<uint32_t, 3> event(uint16_t i) {
    const uint32_t head = events.used_id(i);
    return {mem.read_obj<uint16_t>(kBuf + 8ull * head), mem.read_obj<uint16_t>(kBuf + 8ull * head + 2),
            mem.read_obj<uint32_t>(kBuf + 8ull * head + 4)};
  }
};

#define CHECK_EVENT(rig, i, type, code, value)  \
  do {                                          \
    auto e_ = (rig).event(i);                   \
    CHECK_EQ(e_[0], uint32_t{type});            \
    CHECK_EQ(e_[1], uint32_t{code});            \
    CHECK_EQ(e_[2], uint32_t{value});           \
  } while (0)

}  // namespace

TEST(virtio_input_config_describes_a_tablet) {
  Rig r;
  CHECK_EQ(rd(r.m, kMmioDeviceId), 18u);
  select(r.m, 0x01, 0);
  CHECK_STR(cfg_string(r.m), "Berth virtio tablet");
  select(r.m, 0x02, 0);
  CHECK_STR(cfg_string(r.m), "berth-tablet-0");
  select(r.m, 0x03, 0);
  CHECK_EQ(cfg8(r.m, 2), 8);
  CHECK_EQ(cfg8(r.m, 8), 0x06);  // BUS_VIRTUAL
  select(r.m, 0x10, 0);
  CHECK_EQ(cfg8(r.m, 2), 0);  // no properties
  select(r.m, 0x11, 0x01);    // EV_KEY
  CHECK(cfg_bit(r.m, 0x110) && cfg_bit(r.m, 0x111) && cfg_bit(r.m, 0x112));
  CHECK(!cfg_bit(r.m, 0x113));
  select(r.m, 0x11, 0x03);  // EV_ABS
  CHECK(cfg_bit(r.m, 0) && cfg_bit(r.m, 1) && !cfg_bit(r.m, 2));
  select(r.m, 0x11, 0x02);  // EV_REL: none
  CHECK_EQ(cfg8(r.m, 2), 0);
  select(r.m, 0x12, 0x01);  // ABS_INFO Y
  CHECK_EQ(cfg8(r.m, 2), 20);
  CHECK_EQ(rd(r.m, kMmioConfig + 8), 0u);
  CHECK_EQ(rd(r.m, kMmioConfig + 12), 32767u);
  select(r.m, 0x12, 0x05);
  CHECK_EQ(cfg8(r.m, 2), 0);
  select(r.m, 0x7f, 0);
  CHECK_EQ(cfg8(r.m, 2), 0);
  CHECK_EQ(cfg8(r.m, 0), 0x7f);  // select reads back
  CHECK_EQ(rd(r.m, kMmioConfig + 136), 0u);  // past the structure
}

TEST(virtio_input_delivers_reports_one_event_per_buffer) {
  Rig r;
  r.tablet->pointer_absolute(100, 200, 0);  // before the driver is ready: waits
  r.start(4);
  CHECK_EQ(r.events.used_idx(), 3);
  CHECK_EVENT(r, 0, 3, 0, 100);
  CHECK_EVENT(r, 1, 3, 1, 200);
  CHECK_EVENT(r, 2, 0, 0, 0);
  CHECK_EQ(r.events.used_len(0), 8u);
  r.tablet->pointer_absolute(100, 99999, VirtioInput::kButtonLeft);  // y clamped, x unchanged
  r.m.sync();
  CHECK_EQ(r.events.used_idx(), 4);  // one buffer left: the rest waits
  CHECK_EVENT(r, 3, 3, 1, 32767);
  for (int i = 0; i < 4; ++i) r.offer_event_buffer();
  wr(r.m, kMmioQueueNotify, 0);
  r.m.sync();
  CHECK_EQ(r.events.used_idx(), 6);
  CHECK_EVENT(r, 4, 1, 0x110, 1);
  CHECK_EVENT(r, 5, 0, 0, 0);
  r.tablet->pointer_absolute(100, 32767, VirtioInput::kButtonLeft);  // nothing changed
  r.m.sync();
  CHECK_EQ(r.events.used_idx(), 6);
  CHECK(r.irq.count > 0);
}

TEST(virtio_input_short_buffers_come_back_empty_and_status_is_drained) {
  Rig r;
  r.start(0);
  r.offer_event_buffer(4);
  r.offer_event_buffer(8);
  r.tablet->pointer_absolute(1, 1, 0);
  r.m.sync();
  CHECK_EQ(r.events.used_idx(), 2);
  CHECK_EQ(r.events.used_len(0), 0u);
  CHECK_EQ(r.events.used_len(1), 8u);
  CHECK_EVENT(r, 1, 3, 0, 1);
  r.mem.write_obj<uint64_t>(kBuf + 0x1000, 0x0000000100110011ull);  // EV_LED
  r.status.set_desc(0, kBuf + 0x1000, 8, 0);
  r.status.offer(0);
  wr(r.m, kMmioQueueNotify, 1);
  r.m.sync();
  CHECK_EQ(r.status.used_idx(), 1);
}

TEST(virtio_input_bounds_waiting_events) {
  Rig r;
  for (uint32_t i = 0; i < 400; ++i) r.tablet->pointer_absolute(i, i, 0);  // 3 events each
  CHECK_EQ(r.tablet->dropped_reports(), uint64_t{400 - VirtioInput::kMaxPendingEvents / 3});
}

TEST(virtio_input_state_keeps_waiting_events_and_refuses_bad_records) {
  using namespace berth::test::state_bytes;
  VirtioInput a;
  a.pointer_absolute(5, 6, VirtioInput::kButtonRight);
  auto bytes = save(a);
  VirtioInput b;
  load(b, bytes);
  CHECK(save(b) == bytes);
  b.pointer_absolute(5, 6, VirtioInput::kButtonRight);  // the same position: no new report
  CHECK(save(b) == bytes);
  auto bad = bytes;
  constexpr size_t body = 4 + 12 + 4 + 8;
  bad[body + 2 + 3] = 0x80;  // x far beyond 32767
  CHECK_THROWS_CODE(load(b, bad), "STATE_INVALID", "x is");
  auto buttons = bytes;
  buttons[body + 10] = 0x08;
  CHECK_THROWS_CODE(load(b, buttons), "STATE_INVALID", "buttons is 8");
  CHECK_THROWS_CODE(load(b, with_version(bytes, 2)), "STATE_VERSION", "version 2");
}
