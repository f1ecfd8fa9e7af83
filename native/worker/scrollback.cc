#include "worker/scrollback.h"

#include <algorithm>

namespace berth::worker {

void Scrollback::push(std::span<const uint8_t> bytes) {
  const size_t cap = ring_.size();
  if (cap == 0) return;
  if (bytes.size() >= cap) {  // only the newest capacity bytes survive
    bytes = bytes.subspan(bytes.size() - cap);
    std::copy(bytes.begin(), bytes.end(), ring_.begin());
    start_ = 0;
    size_ = cap;
    return;
  }
  for (uint8_t b : bytes) {
    ring_[(start_ + size_) % cap] = b;
    if (size_ < cap) ++size_;
    else start_ = (start_ + 1) % cap;
  }
}

std::vector<uint8_t> Scrollback::contents() const {
  std::vector<uint8_t> out(size_);
  for (size_t i = 0; i < size_; ++i) out[i] = ring_[(start_ + i) % ring_.size()];
  return out;
}

}  // namespace berth::worker
