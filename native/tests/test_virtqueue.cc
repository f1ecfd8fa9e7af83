// The split virtqueue against well-formed and hostile drivers.
#include <cstring>
#include <string>

#include "devices/virtio/virtqueue.h"
#include "tests/check.h"
#include "tests/virtio_driver.h"

using namespace berth;
using devices::virtio::Chain;
using devices::virtio::QueueError;
using devices::virtio::Virtqueue;
using test::TestRing;
using Pop = Virtqueue::Pop;

namespace {

constexpr uint64_t kMem = 1 << 20;
constexpr uint64_t kBuf = 0x40000;

// Expects the next pop to fail with `e`, the error to be sticky, and reset() to clear it.
void expect_error(Virtqueue& q, QueueError e) {
  Chain c;
  CHECK(q.pop(c) == Pop::kError);
  CHECK(q.error() == e);
  CHECK(!q.error_detail().empty());
  CHECK(!q.active());
  CHECK(q.pop(c) == Pop::kError);  // sticky
  q.reset();
  CHECK(q.error() == QueueError::kNone);
  CHECK(q.pop(c) == Pop::kEmpty);  // inactive until activated again
}

}  // namespace

TEST(virtqueue_pops_a_readable_then_writable_chain_and_returns_it) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  mem.write(kBuf, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("hello"), 5));
  r.set_desc(3, kBuf, 5, devices::virtio::kDescNext, 5);
  r.set_desc(5, kBuf + 0x100, 16, devices::virtio::kDescWrite | devices::virtio::kDescNext, 6);
  r.set_desc(6, kBuf + 0x200, 16, devices::virtio::kDescWrite);
  r.offer(3);
  Chain c;
  CHECK(q.pop(c) == Pop::kChain);
  CHECK_EQ(c.head, 3);
  CHECK_EQ(c.readable.size(), 1u);
  CHECK_EQ(c.writable.size(), 2u);
  CHECK_EQ(c.readable_bytes, 5u);
  CHECK_EQ(c.writable_bytes, 32u);
  uint8_t got[8] = {};
  CHECK_EQ(c.read(got), 5u);
  CHECK(std::memcmp(got, "hello", 5) == 0);
  CHECK_EQ(c.read(std::span<uint8_t>(got, 2), 3), 2u);
  CHECK(std::memcmp(got, "lo", 2) == 0);
  // A write that spans both writable buffers, starting inside the first.
  uint8_t data[20];
  for (int i = 0; i < 20; ++i) data[i] = static_cast<uint8_t>(i + 1);
  CHECK_EQ(c.write(data, 4), 20u);
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x100 + 4), 1);
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x200), 13);
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x200 + 7), 20);
  CHECK_EQ(c.write(data, 30), 2u);  // only 2 bytes of room left after offset 30
  CHECK(q.pop(c) == Pop::kEmpty);
  q.push_used(3, 24);
  CHECK_EQ(r.used_idx(), 1);
  CHECK_EQ(r.used_id(0), 3u);
  CHECK_EQ(r.used_len(0), 24u);
  CHECK(q.should_notify());
  r.set_avail_flags(devices::virtio::kAvailNoInterrupt);
  CHECK(!q.should_notify());
}

TEST(virtqueue_follows_an_indirect_table) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 4);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  const uint64_t table = 0x30000;
  r.set_desc(0, kBuf, 10, devices::virtio::kDescNext, 2, table);
  r.set_desc(2, kBuf + 0x100, 7, devices::virtio::kDescNext, 1, table);
  r.set_desc(1, kBuf + 0x200, 100, devices::virtio::kDescWrite, 0, table);
  r.set_desc(2, table, 3 * 16, devices::virtio::kDescIndirect);
  r.offer(2);
  Chain c;
  CHECK(q.pop(c) == Pop::kChain);
  CHECK_EQ(c.head, 2);
  CHECK_EQ(c.readable_bytes, 17u);
  CHECK_EQ(c.writable_bytes, 100u);
}

TEST(virtqueue_indices_wrap_around_16_bits) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 4);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  for (uint32_t i = 0; i < 4; ++i) r.set_desc(i, kBuf + 64 * i, 8, devices::virtio::kDescWrite);
  Chain c;
  bool ok = true;
  for (uint32_t n = 0; n < 70000; n += 3) {
    for (uint16_t k = 0; k < 3; ++k) r.offer(static_cast<uint16_t>((n + k) % 4));
    for (uint16_t k = 0; k < 3; ++k) {
      ok = ok && q.pop(c) == Pop::kChain && c.head == (n + k) % 4;
      q.push_used(c.head, 8);
    }
    ok = ok && q.pop(c) == Pop::kEmpty;
  }
  CHECK(ok);
  CHECK_EQ(q.last_avail(), static_cast<uint16_t>(70002));
  CHECK_EQ(r.used_idx(), static_cast<uint16_t>(70002));
}

TEST(virtqueue_a_descriptor_loop_is_cut_at_the_queue_size) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_desc(0, kBuf, 8, devices::virtio::kDescWrite | devices::virtio::kDescNext, 1);
  r.set_desc(1, kBuf, 8, devices::virtio::kDescWrite | devices::virtio::kDescNext, 0);
  r.offer(0);
  expect_error(q, QueueError::kChainTooLong);
  // A self-loop as well.
  r.attach(q);
  CHECK(q.activate(false));
  r.set_avail_idx(0);
  r.set_desc(4, kBuf, 8, devices::virtio::kDescNext, 4);
  r.offer(4);
  expect_error(q, QueueError::kChainTooLong);
}

TEST(virtqueue_a_loop_inside_an_indirect_table_is_cut_at_its_length) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  const uint64_t table = 0x30000;
  r.set_desc(0, kBuf, 8, devices::virtio::kDescNext, 1, table);
  r.set_desc(1, kBuf, 8, devices::virtio::kDescNext, 0, table);
  r.set_desc(0, table, 32, devices::virtio::kDescIndirect);
  r.offer(0);
  expect_error(q, QueueError::kChainTooLong);
}

TEST(virtqueue_rejects_nested_and_malformed_indirect_tables) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  const uint64_t table = 0x30000;
  struct Case {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    QueueError want;
  };
  const Case cases[] = {
      {table, 0, devices::virtio::kDescIndirect, QueueError::kBadIndirectTable},
      {table, 24, devices::virtio::kDescIndirect, QueueError::kBadIndirectTable},
      {table, 0xfffffff0u, devices::virtio::kDescIndirect, QueueError::kBadIndirectTable},
      {table, 32, devices::virtio::kDescIndirect | devices::virtio::kDescNext, QueueError::kBadIndirectTable},
      {kMem - 16, 32, devices::virtio::kDescIndirect, QueueError::kBufferOutOfRange},
  };
  for (const auto& k : cases) {
    r.attach(q);
    CHECK(q.activate(false));
    r.set_avail_idx(0);
    r.set_desc(0, k.addr, k.len, k.flags, 1);
    r.offer(0);
    expect_error(q, k.want);
  }
  // An indirect descriptor inside the indirect table.
  r.attach(q);
  CHECK(q.activate(false));
  r.set_avail_idx(0);
  r.set_desc(0, table + 0x100, 16, devices::virtio::kDescIndirect, 0, table);
  r.set_desc(0, table, 16, devices::virtio::kDescIndirect);
  r.offer(0);
  expect_error(q, QueueError::kNestedIndirect);
}

TEST(virtqueue_buffers_outside_guest_ram_and_huge_lengths_are_refused) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  struct Case {
    uint64_t addr;
    uint32_t len;
  };
  const Case cases[] = {
      {0xd0000000ull, 64},           // MMIO hole
      {kMem - 8, 16},                // straddles the end of RAM
      {0x1000, 0xffffffffu},         // huge length
      {0xfffffffffffff000ull, 0x2000},  // addr + len wraps around 2^64
      {kMem, 1},
  };
  for (const auto& k : cases) {
    for (uint16_t flags : {uint16_t{0}, devices::virtio::kDescWrite}) {
      r.attach(q);
      CHECK(q.activate(false));
      r.set_avail_idx(0);
      r.set_desc(0, k.addr, k.len, flags);
      r.offer(0);
      expect_error(q, QueueError::kBufferOutOfRange);
    }
  }
}

TEST(virtqueue_a_readable_buffer_after_a_writable_one_is_refused) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_desc(0, kBuf, 8, devices::virtio::kDescWrite | devices::virtio::kDescNext, 1);
  r.set_desc(1, kBuf + 8, 8, 0);
  r.offer(0);
  expect_error(q, QueueError::kReadableAfterWritable);
}

TEST(virtqueue_a_chain_gives_read_only_and_write_only_views) {
  // Device-readable buffers come back as const spans and writes go to writable ones only:
  // Chain::write on a chain without writable buffers writes nothing.
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  mem.write_obj<uint32_t>(kBuf, 0x11223344);
  r.set_desc(0, kBuf, 4, 0);
  r.offer(0);
  Chain c;
  CHECK(q.pop(c) == Pop::kChain);
  const uint8_t junk[4] = {9, 9, 9, 9};
  CHECK_EQ(c.write(junk), 0u);
  CHECK_EQ(mem.read_obj<uint32_t>(kBuf), 0x11223344u);
  uint8_t out[4];
  Chain w;
  r.set_desc(1, kBuf, 4, devices::virtio::kDescWrite);
  r.offer(1);
  CHECK(q.pop(w) == Pop::kChain);
  CHECK_EQ(w.read(out), 0u);
}

TEST(virtqueue_avail_index_more_than_the_size_ahead_is_refused) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_desc(0, kBuf, 8, devices::virtio::kDescWrite);
  r.set_avail_idx(8);  // exactly full: fine
  Chain c;
  CHECK(q.pop(c) == Pop::kChain);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_avail_idx(9);
  expect_error(q, QueueError::kAvailIndexJump);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_avail_idx(0xffff);  // "behind" is also more than the size ahead, modulo 2^16
  expect_error(q, QueueError::kAvailIndexJump);
}

TEST(virtqueue_a_head_index_beyond_the_table_is_refused) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  r.offer(8);
  expect_error(q, QueueError::kBadHead);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_avail_idx(0);
  r.set_desc(0, kBuf, 8, devices::virtio::kDescNext, 200);
  r.offer(0);
  expect_error(q, QueueError::kBadHead);
}

TEST(virtqueue_bad_sizes_and_ring_addresses_fail_activation) {
  vmm::GuestMemory mem(kMem);
  Virtqueue q(mem);
  TestRing r(mem, 8);
  for (uint32_t size : {0u, 3u, 100u, 65536u, 65535u, 0x80000000u}) {
    r.attach(q);
    q.size = size;
    CHECK(!q.activate(false));
    CHECK(q.error() == QueueError::kBadSize);
  }
  r.attach(q);
  q.size = 512;
  CHECK(!q.activate(false, 256));  // above the device's maximum
  CHECK(q.error() == QueueError::kBadSize);
  q.size = 32768;
  CHECK(q.activate(false));  // the largest size the specification allows (rings fit in 1 MiB)
  r.attach(q);
  q.desc_addr = 0x1008;  // misaligned
  CHECK(!q.activate(false));
  CHECK(q.error() == QueueError::kBadRingAddress);
  r.attach(q);
  q.used_addr = kMem - 8;  // does not fit
  CHECK(!q.activate(false));
  CHECK(q.error() == QueueError::kBadRingAddress);
  r.attach(q);
  q.avail_addr = 0xfffffffffffffffeull;
  CHECK(!q.activate(false));
  CHECK(q.error() == QueueError::kBadRingAddress);
  Chain c;
  CHECK(q.pop(c) == Pop::kError);
}

TEST(virtqueue_zero_length_descriptors_are_skipped) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(false));
  r.set_desc(0, 0xd0000000ull, 0, devices::virtio::kDescWrite);  // address never used
  r.offer(0);
  Chain c;
  CHECK(q.pop(c) == Pop::kChain);
  CHECK(c.writable.empty());
}

TEST(virtqueue_event_index_suppresses_interrupts_and_requests_kicks) {
  vmm::GuestMemory mem(kMem);
  TestRing r(mem, 8);
  Virtqueue q(mem);
  r.attach(q);
  CHECK(q.activate(true));
  for (uint32_t i = 0; i < 8; ++i) r.set_desc(i, kBuf + 16 * i, 8, devices::virtio::kDescWrite);
  Chain c;
  CHECK(q.pop(c) == Pop::kEmpty);
  CHECK_EQ(r.avail_event(), 0);  // "kick me at index 0"
  for (uint16_t i = 0; i < 4; ++i) r.offer(i);
  r.set_used_event(2);  // the driver wants an interrupt once used passes 2
  CHECK(q.pop(c) == Pop::kChain);
  q.push_used(c.head, 8);
  CHECK(q.should_notify());  // the first notification is always sent
  CHECK(q.pop(c) == Pop::kChain);
  q.push_used(c.head, 8);  // used idx 2: event 2 not yet crossed
  CHECK(!q.should_notify());
  CHECK(q.pop(c) == Pop::kChain);
  q.push_used(c.head, 8);  // used idx 3: crossed 2
  CHECK(q.should_notify());
  CHECK(q.pop(c) == Pop::kChain);
  q.push_used(c.head, 8);
  CHECK(!q.should_notify());
  CHECK(q.pop(c) == Pop::kEmpty);
  CHECK_EQ(r.avail_event(), 4);
}
