// Saved state of the split virtqueue and the virtio-mmio transport with virtio-rng,
// virtio-console and virtio-net behind it: a driver that ran before the save carries on
// against a fresh transport over the same guest memory; freeze holds the I/O thread; and
// hostile records are refused with the field named. virtio-blk is in
// test_virtio_blk_state.cc.
#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/virtio/console.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "tests/check.h"
#include "tests/mmio_driver.h"
#include "tests/state_helpers.h"
#include "tests/virtio_driver.h"

using namespace berth;
using namespace berth::devices::virtio;
using namespace berth::test;
using namespace berth::test::state_bytes;

namespace {

constexpr uint64_t kBuf = 0x40000;
// Where a "virtqueue" record's body starts: name length, "virtqueue", version, length.
constexpr size_t kQueueBody = 4 + 9 + 4 + 8;
// Where a "virtio-mmio" record's status field is: its body, device_id, queue_count.
constexpr size_t kMmioStatusAt = 4 + 11 + 4 + 8 + 4 + 2;

// A queue of 8 with three writable buffers offered, two taken, one answered.
struct QueueRig {
  vmm::GuestMemory mem{1 << 20};
  TestRing ring{mem, 8};
  Virtqueue queue{mem};
  QueueRig() {
    ring.attach(queue);
    CHECK(queue.activate(true, 256));
    for (uint16_t i = 0; i < 3; ++i) {
      ring.set_desc(i, kBuf + 64 * i, 64, kDescWrite);
      ring.offer(i);
    }
    Chain c;
    CHECK(queue.pop(c) == Virtqueue::Pop::kChain);
    CHECK(queue.pop(c) == Virtqueue::Pop::kChain);
    queue.push_used(0, 64);
    CHECK(queue.should_notify());
  }
};

// A running virtio-rng behind a transport, one request answered.
struct RngRig {
  vmm::GuestMemory& mem;
  CountingInterrupt irq;
  VirtioMmio mmio;
  TestRing ring;
  explicit RngRig(vmm::GuestMemory& m, uint64_t ring_base = 0x1000)
      : mem(m), mmio(m, std::make_shared<VirtioRng>(), irq), ring(m, 16, ring_base) {
    CHECK(negotiate(mmio, kFeatureVersion1 | kFeatureEventIdx));
    setup_queue(mmio, 0, ring);
    driver_ok(mmio);
    request();
    mmio.sync();
    CHECK_EQ(ring.used_idx(), 1);
  }
  void request() {
    uint16_t d = ring.avail_idx % 16;
    ring.set_desc(d, kBuf + 64 * d, 64, kDescWrite);
    ring.offer(d);
    wr(mmio, kMmioQueueNotify, 0);
  }
};

}  // namespace

TEST(virtqueue_state_continues_where_the_saved_queue_stopped) {
  QueueRig a;
  auto bytes = save(a.queue);
  Virtqueue b(a.mem);
  load(b, bytes);
  CHECK(b.active());
  CHECK_EQ(b.last_avail(), 2);
  CHECK_EQ(b.used_index(), 1);
  Chain c;
  CHECK(b.pop(c) == Virtqueue::Pop::kChain);
  CHECK_EQ(c.head, 2);
  CHECK(b.pop(c) == Virtqueue::Pop::kEmpty);
  CHECK_EQ(a.ring.avail_event(), 3);  // event index: the restored queue asks to be kicked at 3
  b.push_used(1, 64);
  CHECK_EQ(a.ring.used_idx(), 2);
  CHECK_EQ(a.ring.used_id(1), 1u);
  // Event index state came along: used_event 0 was already signalled past, so no interrupt.
  CHECK(!b.should_notify());
  a.ring.set_used_event(2);
  b.push_used(2, 64);
  CHECK(b.should_notify());
}

TEST(virtqueue_state_refuses_what_activate_would_and_indices_guest_memory_contradicts) {
  QueueRig a;
  auto good = save(a.queue);
  Virtqueue b(a.mem);
  auto patched = [&](size_t at, std::vector<uint8_t> bytes) {
    auto v = good;
    for (size_t i = 0; i < bytes.size(); ++i) v[kQueueBody + at + i] = bytes[i];
    return v;
  };
  CHECK_THROWS_CODE(load(b, patched(0, {6})), "STATE_INVALID", "size is 6, not a power of two up to 32768");
  CHECK_THROWS_CODE(([&] {
                      state::Reader r(good, "q");
                      b.load_state(r, 4);  // a device whose queues hold at most 4
                    }()),
                    "STATE_INVALID", "size is 8, not a power of two up to 4");
  CHECK_THROWS_CODE(load(b, patched(4 + 3, {0x10})), "STATE_INVALID",
                    "desc_addr 0x10001000: the descriptor table is outside guest RAM");
  CHECK_THROWS_CODE(load(b, patched(12, {0x81})), "STATE_INVALID", "avail_addr 0x1081: the available ring");
  CHECK_THROWS_CODE(load(b, patched(37, {99})), "STATE_INVALID", "error is 99, not a queue error");
  CHECK_THROWS_CODE(load(b, patched(37, {1})), "STATE_INVALID", "an active queue cannot hold an error");
  CHECK_THROWS_CODE(load(b, patched(28, {2})), "STATE_INVALID", "active is 2");
  CHECK_THROWS_CODE(load(b, shorten_body(good, 3)), "STATE_INVALID", "truncated at error_detail");
  CHECK_THROWS_CODE(load(b, with_version(good, 2)), "STATE_VERSION", "'virtqueue' record is version 2");
  // Guest memory (restored before the devices) must hold the rings the record describes.
  a.mem.write_obj<uint16_t>(a.ring.used + 2, 5);
  CHECK_THROWS_CODE(load(b, good), "STATE_INVALID", "used_idx is 1 but the used ring in guest memory holds 5");
  a.mem.write_obj<uint16_t>(a.ring.used + 2, 1);
  a.ring.set_avail_idx(11);
  CHECK_THROWS_CODE(load(b, good), "STATE_INVALID", "last_avail 2 is more than the queue size behind avail.idx 11");
  a.ring.set_avail_idx(10);
  load(b, good);  // 8 behind: a full queue, allowed
  CHECK(b.active());
}

TEST(virtio_mmio_state_restores_a_running_device_and_serves_a_kick_the_freeze_swallowed) {
  vmm::GuestMemory mem(1 << 20);
  std::vector<uint8_t> bytes;
  {
    RngRig a(mem);
    CHECK_THROWS_CODE(save(a.mmio), "VIRTIO_SETUP", "virtio-rng: saving state needs a frozen device");
    a.mmio.freeze();
    CHECK(a.mmio.frozen());
    a.request();  // kicked while frozen: not served
    a.mmio.sync();
    CHECK_EQ(a.ring.used_idx(), 1);
    bytes = save(a.mmio);
  }
  CountingInterrupt irq;
  VirtioMmio b(mem, std::make_shared<VirtioRng>(), irq);
  load(b, bytes);
  b.sync();
  TestRing ring(mem, 16);
  CHECK_EQ(ring.used_idx(), 2);  // the restored I/O thread looked at the queue by itself
  CHECK_EQ(ring.used_len(1), 64u);
  CHECK_EQ(rd(b, kMmioStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  CHECK_EQ(rd(b, kMmioQueueReady), 1u);
  CHECK_EQ(rd(b, kMmioQueueNum), 16u);
  CHECK((rd(b, kMmioInterruptStatus) & kInterruptUsedBuffer) != 0);
  CHECK(irq.count.load() >= 1);
  // The driver carries on with its own ring indices.
  ring.avail_idx = 2;
  ring.set_desc(2, kBuf + 128, 64, kDescWrite);
  ring.offer(2);
  wr(b, kMmioQueueNotify, 0);
  b.sync();
  CHECK_EQ(ring.used_idx(), 3);
}

TEST(virtio_mmio_freeze_holds_the_io_thread_until_thaw) {
  vmm::GuestMemory mem(1 << 20);
  RngRig a(mem);
  a.mmio.freeze();
  a.mmio.freeze();  // idempotent
  a.request();
  a.mmio.sync();
  CHECK_EQ(a.ring.used_idx(), 1);
  a.mmio.thaw();
  a.mmio.sync();
  CHECK_EQ(a.ring.used_idx(), 2);
  CHECK(!a.mmio.frozen());
  // An inactive transport freezes at once and thaws to nothing.
  CountingInterrupt irq;
  VirtioMmio idle(mem, std::make_shared<VirtioRng>(), irq);
  idle.freeze();
  auto bytes = save(idle);
  idle.thaw();
  VirtioMmio fresh(mem, std::make_shared<VirtioRng>(), irq);
  load(fresh, bytes);
  CHECK_EQ(rd(fresh, kMmioStatus), 0u);
}

TEST(virtio_mmio_state_refuses_hostile_records) {
  vmm::GuestMemory mem(1 << 20);
  RngRig a(mem, 0x80000);  // rings at 512 KiB
  a.mmio.freeze();
  auto good = save(a.mmio);
  CountingInterrupt irq;
  auto console = std::make_shared<VirtioConsole>([](std::span<const uint8_t>) {});
  VirtioMmio other(mem, console, irq);
  CHECK_THROWS_CODE(load(other, good), "STATE_INVALID", "device_id is 4, but this is virtio-console (device id 3)");
  VirtioMmio b(mem, std::make_shared<VirtioRng>(), irq);
  CHECK_THROWS_CODE(load(b, cut(good, good.size() / 2)), "STATE_INVALID", "longer than the data left");
  CHECK_THROWS_CODE(load(b, with_version(good, 2)), "STATE_VERSION", "'virtio-mmio' record is version 2");
  auto status = good;
  status[kMmioStatusAt] = kStatusAcknowledge | kStatusDriver | kStatusDriverOk;
  CHECK_THROWS_CODE(load(b, status), "STATE_INVALID", "status has DRIVER_OK without FEATURES_OK");
  auto features = good;
  features[kMmioStatusAt + 4 + 4 + 4 + 7] = 0x80;  // driver_features bit 63
  CHECK_THROWS_CODE(load(b, features), "STATE_INVALID", "driver_features 0x8000000120000000 were not all offered");
  // A machine with less memory: the saved rings are not in it.
  vmm::GuestMemory small(256 << 10);
  VirtioMmio s(small, std::make_shared<VirtioRng>(), irq);
  CHECK_THROWS_CODE(load(s, good), "STATE_INVALID",
                    "virtio-mmio/virtqueue: desc_addr 0x80000: the descriptor table is outside guest RAM");
  // Guest memory that disagrees with the queue.
  mem.write_obj<uint16_t>(a.ring.used + 2, 7);
  CHECK_THROWS_CODE(load(b, good), "STATE_INVALID", "used_idx is 1 but the used ring in guest memory holds 7");
  CHECK_EQ(rd(b, kMmioStatus), 0u);  // left reset, and usable
  CHECK_EQ(rd(b, kMmioQueueReady), 0u);
  mem.write_obj<uint16_t>(a.ring.used + 2, 1);
  load(b, good);
  CHECK((rd(b, kMmioStatus) & kStatusDriverOk) != 0);
}

TEST(virtio_console_state_keeps_input_the_guest_has_not_taken_and_holds_input_while_frozen) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  auto quiet = [](std::span<const uint8_t>) {};
  TestRing rx(mem, 8, 0x1000), tx(mem, 8, 0x10000);
  std::vector<uint8_t> bytes;
  {
    auto console = std::make_shared<VirtioConsole>(quiet);
    VirtioMmio a(mem, console, irq);
    CHECK(negotiate(a));
    setup_queue(a, 0, rx);
    setup_queue(a, 1, tx);
    driver_ok(a);
    rx.set_desc(0, kBuf, 2, kDescWrite);
    rx.offer(0);
    a.freeze();
    const std::string typed = "hello";
    console->enqueue_input(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(typed.data()), typed.size()));
    a.sync();
    CHECK_EQ(rx.used_idx(), 0);  // frozen: the input waits in the device
    a.thaw();
    a.sync();
    CHECK_EQ(rx.used_idx(), 1);  // "he"; "llo" waits for a buffer
    a.freeze();
    bytes = save(a);
  }
  auto console = std::make_shared<VirtioConsole>(quiet);
  VirtioMmio b(mem, console, irq);
  load(b, bytes);
  rx.set_desc(1, kBuf + 0x100, 16, kDescWrite);
  rx.offer(1);
  wr(b, kMmioQueueNotify, 0);
  b.sync();
  CHECK_EQ(rx.used_idx(), 2);
  CHECK_EQ(rx.used_len(1), 3u);
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x100), 'l');
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x102), 'o');
}

TEST(virtio_net_state_restores_a_running_nic_and_refuses_another_mac) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  const std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  TestRing rx(mem, 8, 0x1000), tx(mem, 8, 0x10000);
  auto a_net = std::make_shared<VirtioNet>(mac, nullptr);
  VirtioMmio a(mem, a_net, irq);
  CHECK(negotiate(a, kFeatureVersion1 | kNetFeatureMac));
  setup_queue(a, 0, rx);
  setup_queue(a, 1, tx);
  driver_ok(a);
  a.freeze();
  auto bytes = save(a);
  VirtioMmio b(mem, std::make_shared<VirtioNet>(mac, nullptr), irq);
  load(b, bytes);
  CHECK_EQ(rd(b, kMmioConfig), 0x12005452u);  // the MAC in the configuration space
  wr(b, kMmioQueueSel, 1);
  CHECK_EQ(rd(b, kMmioQueueReady), 1u);
  auto other_mac = mac;
  other_mac[5] = 0x57;
  VirtioMmio c(mem, std::make_shared<VirtioNet>(other_mac, nullptr), irq);
  CHECK_THROWS_CODE(load(c, bytes), "STATE_INVALID",
                    "virtio-mmio/virtio-net: mac is 52:54:00:12:34:56, but this NIC is configured with 52:54:00:12:34:57");
}

// The "virtio-mmio" version 1 layout, field by field as the transport wrote it before the
// shared core existed: a state file from then still loads.
TEST(virtio_mmio_state_reads_the_version_1_layout) {
  vmm::GuestMemory mem(1 << 20);
  TestRing ring(mem, 8);
  Virtqueue q(mem);
  ring.attach(q);
  CHECK(q.activate(false, 256));
  state::Writer w;
  size_t token = w.begin("virtio-mmio", 1);
  w.u32(kDeviceIdRng);
  w.u16(1);  // queue_count
  w.u32(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  w.u32(1);  // device_features_sel
  w.u32(0);  // driver_features_sel
  w.u64(kFeatureVersion1);
  w.u32(0);  // queue_sel
  w.u32(5);  // config_generation
  w.u32(kInterruptUsedBuffer);
  w.str("");  // last_error
  q.save_state(w);
  w.end(w.begin("virtio-rng", 1));
  w.end(token);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  load(m, w.take());
  CHECK_EQ(rd(m, kMmioStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  CHECK_EQ(rd(m, kMmioConfigGeneration), 5u);
  CHECK_EQ(rd(m, kMmioInterruptStatus), kInterruptUsedBuffer);
  CHECK_EQ(irq.count.load(), 1);  // the unacknowledged interrupt is raised again
  CHECK_EQ(rd(m, kMmioDeviceFeatures), 1u);  // device_features_sel 1 came back
  CHECK_EQ(rd(m, kMmioQueueNum), 8u);
  ring.set_desc(0, kBuf, 16, kDescWrite);
  ring.offer(0);
  wr(m, kMmioQueueNotify, 0);
  m.sync();
  CHECK_EQ(ring.used_idx(), 1);
}
