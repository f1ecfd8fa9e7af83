// Virtqueue saved state (virtqueue.h). The record comes from an untrusted state file, so it
// is checked the way activate() checks the driver's registers, plus against the rings the
// restored guest memory holds.
#include <cstdio>

#include "common/state_stream.h"
#include "devices/virtio/virtqueue.h"

namespace berth::devices::virtio {

namespace {

constexpr size_t kMaxErrorDetail = 1024;

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

uint16_t load16(const uint8_t* p) { return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE); }

}  // namespace

void Virtqueue::save_state(state::Writer& w) const {
  size_t token = w.begin("virtqueue", 1);
  w.u32(size);
  w.u64(desc_addr);
  w.u64(avail_addr);
  w.u64(used_addr);
  w.boolean(active_);
  w.boolean(event_idx_);
  w.u16(last_avail_);
  w.u16(used_idx_);
  w.u16(signalled_used_);
  w.boolean(signalled_valid_);
  w.u8(static_cast<uint8_t>(error_));
  w.str(error_detail_.size() <= kMaxErrorDetail ? error_detail_ : error_detail_.substr(0, kMaxErrorDetail));
  w.end(token);
}

void Virtqueue::load_state(state::Reader& parent, uint32_t max_size) {
  auto rec = parent.record("virtqueue", 1);
  state::Reader& r = rec.body;
  Virtqueue q(memory_);  // read and checked here, copied into *this only when all is well
  q.size = r.u32("size");
  q.desc_addr = r.u64("desc_addr");
  q.avail_addr = r.u64("avail_addr");
  q.used_addr = r.u64("used_addr");
  const bool active = r.boolean("active");
  const bool event_idx = r.boolean("event_idx");
  const uint16_t last_avail = r.u16("last_avail");
  const uint16_t used_idx = r.u16("used_idx");
  const uint16_t signalled_used = r.u16("signalled_used");
  const bool signalled_valid = r.boolean("signalled_valid");
  const uint8_t error = r.u8("error");
  if (error > static_cast<uint8_t>(QueueError::kBadIndirectTable)) {
    r.fail("error is " + std::to_string(error) + ", not a queue error");
  }
  std::string error_detail = r.str(kMaxErrorDetail, "error_detail");
  r.expect_end();

  RingMap rings;
  if (active) {
    if (error != 0) r.fail("an active queue cannot hold an error");
    const uint32_t limit = size_limit(max_size);
    if (!valid_size(q.size, limit)) {
      r.fail("size is " + std::to_string(q.size) + ", not a power of two up to " + std::to_string(limit));
    }
    rings = q.map_rings();
    if (rings.bad) {
      r.fail(std::string(rings.bad_field) + " " + hex(rings.bad_addr) + ": the " + rings.bad +
             " is outside guest RAM or misaligned");
    }
    // Guest memory was restored first: the rings must be where the device left them.
    const uint16_t ring_used = load16(rings.used + 2);
    if (ring_used != used_idx) {
      r.fail("used_idx is " + std::to_string(used_idx) + " but the used ring in guest memory holds " +
             std::to_string(ring_used));
    }
    const uint16_t avail_idx = load16(rings.avail + 2);
    if (static_cast<uint16_t>(avail_idx - last_avail) > q.size) {
      r.fail("last_avail " + std::to_string(last_avail) + " is more than the queue size behind avail.idx " +
             std::to_string(avail_idx));
    }
  }

  size = q.size;
  desc_addr = q.desc_addr;
  avail_addr = q.avail_addr;
  used_addr = q.used_addr;
  active_ = active;
  event_idx_ = event_idx;
  error_ = static_cast<QueueError>(error);
  error_detail_ = std::move(error_detail);
  desc_ = rings.desc;
  avail_ = rings.avail;
  used_ = rings.used;
  last_avail_ = last_avail;
  used_idx_ = used_idx;
  signalled_used_ = signalled_used;
  signalled_valid_ = signalled_valid;
}

}  // namespace berth::devices::virtio
