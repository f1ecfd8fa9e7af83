// A minimal virtio driver side for unit tests: writes descriptor tables and rings into a
// GuestMemory the way a guest would, and reads the used ring back.
#pragma once

#include <cstdint>

#include "devices/virtio/virtqueue.h"
#include "vmm/guest_memory.h"

namespace berth::test {

struct TestRing {
  vmm::GuestMemory& mem;
  uint32_t size;
  uint64_t desc, avail, used;
  uint16_t avail_idx = 0;

  TestRing(vmm::GuestMemory& m, uint32_t n, uint64_t base = 0x1000)
      : mem(m), size(n), desc(base), avail(base + 16ull * n), used((base + 16ull * n + 6 + 2ull * n + 4095) & ~4095ull) {}

  void attach(devices::virtio::Virtqueue& q) const {
    q.size = size;
    q.desc_addr = desc;
    q.avail_addr = avail;
    q.used_addr = used;
  }
  void set_desc(uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0, uint64_t table = 0) {
    uint64_t at = (table ? table : desc) + 16ull * i;
    mem.write_obj<uint64_t>(at, addr);
    mem.write_obj<uint32_t>(at + 8, len);
    mem.write_obj<uint16_t>(at + 12, flags);
    mem.write_obj<uint16_t>(at + 14, next);
  }
  void offer(uint16_t head) {
    mem.write_obj<uint16_t>(avail + 4 + 2ull * (avail_idx % size), head);
    ++avail_idx;
    mem.write_obj<uint16_t>(avail + 2, avail_idx);
  }
  void set_avail_idx(uint16_t v) {
    avail_idx = v;
    mem.write_obj<uint16_t>(avail + 2, v);
  }
  void set_avail_flags(uint16_t f) { mem.write_obj<uint16_t>(avail, f); }
  void set_used_event(uint16_t v) { mem.write_obj<uint16_t>(avail + 4 + 2ull * size, v); }
  uint16_t used_idx() { return mem.read_obj<uint16_t>(used + 2); }
  uint16_t avail_event() { return mem.read_obj<uint16_t>(used + 4 + 8ull * size); }
  uint32_t used_id(uint16_t i) { return mem.read_obj<uint32_t>(used + 4 + 8ull * (i % size)); }
  uint32_t used_len(uint16_t i) { return mem.read_obj<uint32_t>(used + 8 + 8ull * (i % size)); }
};

}  // namespace berth::test
