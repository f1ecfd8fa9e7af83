// A split virtqueue (virtio 1.x, section 2.7) read from and written to guest memory by the
// device side. The guest is untrusted: every index, address and length it supplies is
// checked, and a malformed queue moves the queue into a sticky error state instead of
// touching host memory outside guest RAM. The transport turns that error into
// DEVICE_NEEDS_RESET.
//
// Not thread-safe: one queue is used by one thread at a time (the device's I/O thread, or
// the transport while the device is inactive).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/guest_memory.h"

namespace berth::state {
class Reader;
class Writer;
}  // namespace berth::state

namespace berth::devices::virtio {

constexpr uint32_t kMaxQueueSize = 32768;

// Descriptor flags (virtq_desc.flags).
constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
// virtq_avail.flags / virtq_used.flags
constexpr uint16_t kAvailNoInterrupt = 1;
constexpr uint16_t kUsedNoNotify = 1;

enum class QueueError {
  kNone,
  kBadSize,             // size 0, not a power of two, or above the maximum
  kBadRingAddress,      // a ring outside guest RAM or misaligned
  kAvailIndexJump,      // avail.idx more than the queue size ahead of what was consumed
  kBadHead,             // a descriptor index >= queue size (or >= indirect table length)
  kChainTooLong,        // more descriptors than the queue size (a loop) or the table length
  kBufferOutOfRange,    // a buffer not entirely inside guest RAM (includes addr+len overflow)
  kReadableAfterWritable,
  kNestedIndirect,
  kBadIndirectTable,    // length not a multiple of 16, empty, too long, or INDIRECT|NEXT
};
const char* queue_error_name(QueueError e);

// One descriptor chain popped from the available ring: the device may read `readable` and
// write `writable`, nothing else. Spans point into guest RAM (the guest may change them
// concurrently; devices copy before they interpret).
struct Chain {
  uint16_t head = 0;
  std::vector<std::span<const uint8_t>> readable;
  std::vector<std::span<uint8_t>> writable;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;

  void clear();
  // Gathers up to out.size() readable bytes into out; returns the count copied.
  size_t read(std::span<uint8_t> out, uint64_t skip = 0) const;
  // Scatters bytes into the writable buffers from offset `skip`; returns the count written.
  size_t write(std::span<const uint8_t> bytes, uint64_t skip = 0) const;
};

class Virtqueue {
 public:
  enum class Pop { kEmpty, kChain, kError };

  explicit Virtqueue(vmm::GuestMemory& memory) : memory_(memory) {}

  // Driver-visible configuration (the transport's queue registers).
  uint32_t size = 0;
  uint64_t desc_addr = 0, avail_addr = 0, used_addr = 0;

  // Validates the configuration and starts the queue at index 0. event_idx: the driver
  // negotiated VIRTIO_F_EVENT_IDX. On failure the queue is in the error state.
  bool activate(bool event_idx, uint32_t max_size = kMaxQueueSize);
  bool active() const { return active_; }

  // Takes the next available chain. On kError, error() says why and the queue stays
  // broken (every later call returns kError) until reset().
  Pop pop(Chain& chain);
  // Returns a chain to the driver with the number of bytes the device wrote into it.
  void push_used(uint16_t head, uint32_t written);
  // After one or more push_used: whether the driver wants an interrupt now.
  bool should_notify();

  QueueError error() const { return error_; }
  const std::string& error_detail() const { return error_detail_; }
  void reset();

  uint16_t last_avail() const { return last_avail_; }
  uint16_t used_index() const { return used_idx_; }

  // Saved state: the driver-visible configuration and the device's place in the rings.
  // load_state runs over guest memory that already holds the saved rings; it refuses
  // (STATE_INVALID naming the field) what activate() would refuse and indices that
  // disagree with the rings in guest memory, and changes nothing when it refuses.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r, uint32_t max_size = kMaxQueueSize);

 private:
  // The rings' host addresses, or (bad set) the first ring outside guest RAM or misaligned.
  struct RingMap {
    uint8_t* desc = nullptr;
    uint8_t* avail = nullptr;
    uint8_t* used = nullptr;
    const char* bad = nullptr;        // "descriptor table", ...
    const char* bad_field = nullptr;  // "desc_addr", ...
    uint64_t bad_addr = 0;
  };
  RingMap map_rings() const;
  static uint32_t size_limit(uint32_t max_size) { return max_size < kMaxQueueSize ? max_size : kMaxQueueSize; }
  static bool valid_size(uint32_t size, uint32_t limit) { return size != 0 && (size & (size - 1)) == 0 && size <= limit; }

  Pop fail(QueueError e, std::string detail);
  bool add_buffer(Chain& chain, uint64_t addr, uint32_t len, bool writable, bool& seen_writable);
  uint16_t load_avail_idx() const;
  uint16_t load_avail_flags() const;
  uint16_t load_used_event() const;

  vmm::GuestMemory& memory_;
  bool active_ = false;
  bool event_idx_ = false;
  QueueError error_ = QueueError::kNone;
  std::string error_detail_;
  uint8_t* desc_ = nullptr;   // size * 16 bytes
  uint8_t* avail_ = nullptr;  // 4 + 2*size (+2 used_event)
  uint8_t* used_ = nullptr;   // 4 + 8*size (+2 avail_event)
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  uint16_t signalled_used_ = 0;  // used index at the last interrupt (event idx)
  bool signalled_valid_ = false;
};

}  // namespace berth::devices::virtio
