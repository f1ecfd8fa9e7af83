// The output buffer inside a PS/2 device: bytes wait here until the i8042 takes them.
// Bounded like a real device's (16 bytes); a sequence that does not fit whole is dropped
// and counted, never partly queued and never grown.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace berth::devices::input {

class Ps2Queue {
 public:
  static constexpr size_t kCapacity = 16;

  // All of `bytes` or none of them; false (and one more drop counted) when they do not fit.
  bool push(std::span<const uint8_t> bytes) {
    if (bytes.size() > kCapacity - count_) {
      ++dropped_;
      return false;
    }
    for (uint8_t b : bytes) {
      data_[(head_ + count_) % kCapacity] = b;
      ++count_;
    }
    return true;
  }
  bool push(uint8_t b) { return push(std::span<const uint8_t>(&b, 1)); }

  bool empty() const { return count_ == 0; }
  size_t size() const { return count_; }
  size_t room() const { return kCapacity - count_; }
  uint8_t pop() {  // callers check empty() first
    const uint8_t b = data_[head_];
    head_ = (head_ + 1) % kCapacity;
    --count_;
    return b;
  }
  void clear() { head_ = count_ = 0; }

  // The queued bytes, oldest first (saved state).
  size_t copy_out(std::span<uint8_t, kCapacity> out) const {
    for (size_t i = 0; i < count_; ++i) out[i] = data_[(head_ + i) % kCapacity];
    return count_;
  }

  // Sequences dropped because the queue was full since power-on (never reset by the guest).
  uint64_t dropped() const { return dropped_; }
  void set_dropped(uint64_t n) { dropped_ = n; }

 private:
  std::array<uint8_t, kCapacity> data_{};
  size_t head_ = 0, count_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace berth::devices::input
