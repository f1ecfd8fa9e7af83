#include "devices/virtio/virtqueue.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace berth::devices::virtio {

namespace {

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == 16);

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

const char* queue_error_name(QueueError e) {
  switch (e) {
    case QueueError::kNone: return "none";
    case QueueError::kBadSize: return "bad queue size";
    case QueueError::kBadRingAddress: return "ring outside guest RAM or misaligned";
    case QueueError::kAvailIndexJump: return "available index too far ahead";
    case QueueError::kBadHead: return "descriptor index out of range";
    case QueueError::kChainTooLong: return "descriptor chain too long (loop)";
    case QueueError::kBufferOutOfRange: return "buffer outside guest RAM";
    case QueueError::kReadableAfterWritable: return "device-readable buffer after a writable one";
    case QueueError::kNestedIndirect: return "nested indirect table";
    case QueueError::kBadIndirectTable: return "malformed indirect table";
  }
  return "unknown";
}

void Chain::clear() {
  head = 0;
  readable.clear();
  writable.clear();
  readable_bytes = 0;
  writable_bytes = 0;
}

size_t Chain::read(std::span<uint8_t> out, uint64_t skip) const {
  size_t done = 0;
  for (const auto& s : readable) {
    if (done == out.size()) break;
    if (skip >= s.size()) {
      skip -= s.size();
      continue;
    }
    size_t n = std::min<size_t>(s.size() - skip, out.size() - done);
    std::memcpy(out.data() + done, s.data() + skip, n);
    done += n;
    skip = 0;
  }
  return done;
}

size_t Chain::write(std::span<const uint8_t> bytes, uint64_t skip) const {
  size_t done = 0;
  for (const auto& s : writable) {
    if (done == bytes.size()) break;
    if (skip >= s.size()) {
      skip -= s.size();
      continue;
    }
    size_t n = std::min<size_t>(s.size() - skip, bytes.size() - done);
    std::memcpy(s.data() + skip, bytes.data() + done, n);
    done += n;
    skip = 0;
  }
  return done;
}

Virtqueue::Pop Virtqueue::fail(QueueError e, std::string detail) {
  if (error_ == QueueError::kNone) {
    error_ = e;
    error_detail_ = std::string(queue_error_name(e)) + (detail.empty() ? "" : ": " + detail);
  }
  active_ = false;
  return Pop::kError;
}

void Virtqueue::reset() {
  active_ = false;
  event_idx_ = false;
  error_ = QueueError::kNone;
  error_detail_.clear();
  desc_ = avail_ = used_ = nullptr;
  last_avail_ = used_idx_ = signalled_used_ = 0;
  signalled_valid_ = false;
  size = 0;
  desc_addr = avail_addr = used_addr = 0;
}

Virtqueue::RingMap Virtqueue::map_rings() const {
  RingMap m;
  auto ring = [&](uint64_t addr, uint64_t len, uint64_t align, const char* what, const char* field) -> uint8_t* {
    if (m.bad) return nullptr;
    if (addr % align != 0 || !memory_.contains(addr, len)) {
      m.bad = what;
      m.bad_field = field;
      m.bad_addr = addr;
      return nullptr;
    }
    return memory_.slice(addr, len).data();
  };
  m.desc = ring(desc_addr, 16ull * size, 16, "descriptor table", "desc_addr");
  m.avail = ring(avail_addr, 6 + 2ull * size, 2, "available ring", "avail_addr");
  m.used = ring(used_addr, 6 + 8ull * size, 4, "used ring", "used_addr");
  return m;
}

bool Virtqueue::activate(bool event_idx, uint32_t max_size) {
  active_ = false;
  error_ = QueueError::kNone;
  error_detail_.clear();
  uint32_t limit = size_limit(max_size);
  if (!valid_size(size, limit)) {
    fail(QueueError::kBadSize, std::to_string(size) + " (limit " + std::to_string(limit) + ")");
    return false;
  }
  RingMap m = map_rings();
  if (m.bad) {
    fail(QueueError::kBadRingAddress, std::string(m.bad) + " at " + hex(m.bad_addr));
    return false;
  }
  desc_ = m.desc;
  avail_ = m.avail;
  used_ = m.used;
  event_idx_ = event_idx;
  last_avail_ = used_idx_ = signalled_used_ = 0;
  signalled_valid_ = false;
  active_ = true;
  return true;
}

uint16_t Virtqueue::load_avail_idx() const {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(avail_ + 2), __ATOMIC_ACQUIRE);
}
uint16_t Virtqueue::load_avail_flags() const {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(avail_), __ATOMIC_ACQUIRE);
}
uint16_t Virtqueue::load_used_event() const {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(avail_ + 4 + 2 * size), __ATOMIC_ACQUIRE);
}

bool Virtqueue::add_buffer(Chain& chain, uint64_t addr, uint32_t len, bool writable, bool& seen_writable) {
  if (!writable && seen_writable) {
    fail(QueueError::kReadableAfterWritable, "descriptor at " + hex(addr));
    return false;
  }
  if (len == 0) return true;
  if (!memory_.contains(addr, len)) {
    fail(QueueError::kBufferOutOfRange, hex(addr) + " + " + std::to_string(len));
    return false;
  }
  auto s = memory_.slice(addr, len);
  if (writable) {
    seen_writable = true;
    chain.writable.push_back(s);
    chain.writable_bytes += len;
  } else {
    chain.readable.push_back(s);
    chain.readable_bytes += len;
  }
  return true;
}

Virtqueue::Pop Virtqueue::pop(Chain& chain) {
  chain.clear();
  if (error_ != QueueError::kNone) return Pop::kError;
  if (!active_) return Pop::kEmpty;
  uint16_t avail_idx = load_avail_idx();
  uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
  if (pending == 0 && event_idx_) {
    // Ask for a notification when the driver adds past what we consumed, then look again
    // so a chain added meanwhile is not missed.
    __atomic_store_n(reinterpret_cast<uint16_t*>(used_ + 4 + 8 * size), last_avail_, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    avail_idx = load_avail_idx();
    pending = static_cast<uint16_t>(avail_idx - last_avail_);
  }
  if (pending == 0) return Pop::kEmpty;
  if (pending > size) {
    return fail(QueueError::kAvailIndexJump,
                "avail.idx " + std::to_string(avail_idx) + ", consumed " + std::to_string(last_avail_));
  }
  uint16_t head = __atomic_load_n(reinterpret_cast<const uint16_t*>(avail_ + 4 + 2 * (last_avail_ % size)),
                                  __ATOMIC_RELAXED);
  chain.head = head;

  const uint8_t* table = desc_;
  uint32_t table_len = size;
  uint32_t index = head;
  uint32_t count = 0;
  bool indirect = false;
  bool seen_writable = false;
  for (;;) {
    if (index >= table_len) {
      return fail(QueueError::kBadHead, "index " + std::to_string(index) + " of " + std::to_string(table_len));
    }
    if (++count > table_len) {
      return fail(QueueError::kChainTooLong, "more than " + std::to_string(table_len) + " descriptors");
    }
    Desc d;
    std::memcpy(&d, table + 16ull * index, sizeof d);
    if (d.flags & kDescIndirect) {
      if (indirect) return fail(QueueError::kNestedIndirect, "");
      if (d.flags & kDescNext) return fail(QueueError::kBadIndirectTable, "INDIRECT together with NEXT");
      if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > kMaxQueueSize) {
        return fail(QueueError::kBadIndirectTable, "length " + std::to_string(d.len));
      }
      if (!memory_.contains(d.addr, d.len)) {
        return fail(QueueError::kBufferOutOfRange, "indirect table " + hex(d.addr) + " + " + std::to_string(d.len));
      }
      table = memory_.slice(d.addr, d.len).data();
      table_len = d.len / 16;
      index = 0;
      count = 0;
      indirect = true;
      continue;
    }
    if (!add_buffer(chain, d.addr, d.len, (d.flags & kDescWrite) != 0, seen_writable)) return Pop::kError;
    if (!(d.flags & kDescNext)) break;
    index = d.next;
  }
  ++last_avail_;
  return Pop::kChain;
}

void Virtqueue::push_used(uint16_t head, uint32_t written) {
  if (!active_) return;
  uint8_t* elem = used_ + 4 + 8 * (used_idx_ % size);
  uint32_t id = head;
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &written, 4);
  ++used_idx_;
  __atomic_store_n(reinterpret_cast<uint16_t*>(used_ + 2), used_idx_, __ATOMIC_RELEASE);
}

bool Virtqueue::should_notify() {
  if (!active_) return false;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (!event_idx_) return (load_avail_flags() & kAvailNoInterrupt) == 0;
  uint16_t event = load_used_event();
  uint16_t old = signalled_used_;
  bool valid = signalled_valid_;
  signalled_used_ = used_idx_;
  signalled_valid_ = true;
  if (!valid) return true;
  // virtio 1.x 2.7.10: notify when used_event lies in [old, new).
  return static_cast<uint16_t>(used_idx_ - event - 1) < static_cast<uint16_t>(used_idx_ - old);
}

}  // namespace berth::devices::virtio
