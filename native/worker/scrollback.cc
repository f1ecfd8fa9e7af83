#include "worker/scrollback.h"

#include <algorithm>

namespace berth::worker {

// The ring's memory grows with the output, up to the capacity: a quiet guest's worker does
// not carry (and touch) the whole buffer.
void Scrollback::push(std::span<const uint8_t> bytes) {
  const size_t cap = capacity_;
  if (cap == 0) return;
  if (bytes.size() >= cap) {  // only the newest capacity bytes survive
    bytes = bytes.subspan(bytes.size() - cap);
    ring_.assign(bytes.begin(), bytes.end());
    start_ = 0;
    size_ = cap;
    return;
  }
  if (ring_.size() < cap) {  // still filling: append, wrapping once the capacity is reached
    const size_t room = cap - ring_.size();
    const size_t now = std::min(room, bytes.size());
    ring_.insert(ring_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(now));
    size_ = ring_.size();
    bytes = bytes.subspan(now);
  }
  for (uint8_t b : bytes) {  // full: overwrite the oldest
    ring_[start_] = b;
    start_ = (start_ + 1) % cap;
  }
}

std::vector<uint8_t> Scrollback::contents() const {
  std::vector<uint8_t> out(size_);
  for (size_t i = 0; i < size_; ++i) out[i] = ring_[(start_ + i) % ring_.size()];
  return out;
}

}  // namespace berth::worker
