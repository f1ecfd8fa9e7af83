// The display's video memory: host pages the VMM owns (an anonymous mapping, released with
// the object) that the machine maps into the guest at BAR 0 as a memory slot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace berth::devices::display {

class VideoMemory {
 public:
  // Throws berth::Error DISPLAY_MEMORY when the host cannot map `size` bytes.
  explicit VideoMemory(uint64_t size);
  ~VideoMemory();
  VideoMemory(const VideoMemory&) = delete;
  VideoMemory& operator=(const VideoMemory&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<uint8_t> bytes() { return {data_, static_cast<size_t>(size_)}; }
  std::span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }
  // Zero again, returning the pages to the host.
  void clear();

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace berth::devices::display
