#include "devices/display/video_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/error.h"

namespace berth::devices::display {

VideoMemory::VideoMemory(uint64_t size) : size_(size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw Error("DISPLAY_MEMORY", "cannot map " + std::to_string(size >> 20) + " MiB of video memory: " +
                                      std::strerror(errno) + "; free host memory or lower other VMs' memory");
  }
  data_ = static_cast<uint8_t*>(p);
}

VideoMemory::~VideoMemory() {
  if (data_) munmap(data_, size_);
}

void VideoMemory::clear() {
  // MADV_DONTNEED on a private anonymous mapping reads back zero pages.
  if (madvise(data_, size_, MADV_DONTNEED) != 0) std::memset(data_, 0, size_);
}

}  // namespace berth::devices::display
