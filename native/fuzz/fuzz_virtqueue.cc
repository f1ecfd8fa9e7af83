// The split virtqueue is parsed from guest memory the guest controls completely: any
// ring contents, queue size and ring addresses must end in chains whose buffers lie inside
// guest RAM, an empty queue, or the queue's error state; never a crash, a hang or an
// access outside guest memory.
//
// Input: a 16-byte header (queue size, ring addresses, event index, a script of queue
// operations), then the bytes that fill the 64 KiB of guest RAM.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "devices/virtio/virtqueue.h"
#include "vmm/guest_memory.h"

using berth::devices::virtio::Chain;
using berth::devices::virtio::Virtqueue;

namespace {

constexpr uint64_t kRam = 64 * 1024;

void check_inside(const berth::vmm::RamRegion& r, const uint8_t* p, size_t n) {
  if (p < r.host || n > r.size || static_cast<size_t>(p - r.host) > r.size - n) __builtin_trap();
}

uint16_t u16_at(const uint8_t* d) { return static_cast<uint16_t>(d[0] | (d[1] << 8)); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static berth::vmm::GuestMemory memory(kRam);
  if (size < 16) return 0;
  const auto& region = memory.regions()[0];
  size_t fill = size - 16 < kRam ? size - 16 : kRam;
  std::memcpy(region.host, data + 16, fill);
  std::memset(region.host + fill, 0, kRam - fill);

  Virtqueue q(memory);
  // Sizes: mostly small powers of two, sometimes anything.
  uint16_t raw_size = u16_at(data);
  q.size = (raw_size & 0x8000) ? raw_size : (1u << (raw_size % 10));
  // Addresses: mostly inside the 64 KiB, sometimes far outside (bit 15 of the word).
  auto addr = [&](const uint8_t* d) -> uint64_t {
    uint16_t v = u16_at(d);
    return (v & 0x8000) ? 0xfffffffffffff000ull + (v & 0x7fff) : v;
  };
  q.desc_addr = addr(data + 2) & ~uint64_t{15};
  q.avail_addr = addr(data + 4) & ~uint64_t{1};
  q.used_addr = addr(data + 6) & ~uint64_t{3};
  bool event_idx = data[8] & 1;
  if (!q.activate(event_idx, (data[8] & 2) ? 256 : 32768)) return 0;

  // Operations: pop / push_used / should_notify / poke guest memory (the guest changing
  // the rings while the device works).
  Chain chain;
  uint16_t pending[64];
  unsigned npending = 0;
  for (size_t i = 9; i < 16 + 64 && i < size; ++i) {
    uint8_t op = data[i];
    switch (op & 3) {
      case 0:
      case 1: {
        auto r = q.pop(chain);
        if (r == Virtqueue::Pop::kChain) {
          uint64_t rsum = 0, wsum = 0;
          for (auto s : chain.readable) {
            check_inside(region, s.data(), s.size());
            rsum += s.size();
          }
          for (auto s : chain.writable) {
            check_inside(region, s.data(), s.size());
            wsum += s.size();
          }
          if (rsum != chain.readable_bytes || wsum != chain.writable_bytes) __builtin_trap();
          uint8_t scratch[32];
          chain.read(scratch, op >> 2);
          std::memset(scratch, op, sizeof scratch);
          chain.write(scratch, op >> 3);
          if (npending < 64) pending[npending++] = chain.head;
        } else if (r == Virtqueue::Pop::kError) {
          if (q.error() == berth::devices::virtio::QueueError::kNone) __builtin_trap();
          return 0;
        }
        break;
      }
      case 2:
        if (npending) q.push_used(pending[--npending], op);
        q.should_notify();
        break;
      case 3: {
        uint64_t at = (static_cast<uint64_t>(op) * 257u + i * 31u) % kRam;
        region.host[at] = static_cast<uint8_t>(op ^ i);
        break;
      }
    }
  }
  return 0;
}
