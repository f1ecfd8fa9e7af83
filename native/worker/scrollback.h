// The last bytes of console output, replayed to a client that attaches (a terminal that
// opens mid-session shows what came before).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace berth::worker {

class Scrollback {
 public:
  explicit Scrollback(size_t capacity) : capacity_(capacity) {}
  void push(std::span<const uint8_t> bytes);
  // The buffered bytes, oldest first.
  std::vector<uint8_t> contents() const;
  size_t size() const { return size_; }

 private:
  size_t capacity_;
  std::vector<uint8_t> ring_;  // grows to capacity_, then wraps
  size_t start_ = 0;           // index of the oldest byte
  size_t size_ = 0;
};

}  // namespace berth::worker
