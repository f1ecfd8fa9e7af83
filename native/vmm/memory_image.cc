#include "vmm/memory_image.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace berth::vmm {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kChunk = 2ull << 20;  // mincore and hole probing granularity

bool page_is_zero(const uint8_t* p) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t acc = 0;
  for (size_t i = 0; i < kPage / 8; i += 8) {
    acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    if (acc) return false;
  }
  return true;
}

int write_all(int fd, const uint8_t* data, uint64_t len, uint64_t at) noexcept {
  while (len > 0) {
    ssize_t n = pwrite(fd, data, len, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ENOSPC;
    data += n;
    at += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return 0;
}

// Whether [at, at+len) of the image file a VM was resumed from holds any data.
bool image_has_data(int fd, uint64_t at, uint64_t len) {
  off_t data = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
  if (data < 0) return errno != ENXIO;  // ENXIO: only a hole follows; other errors: assume data
  return static_cast<uint64_t>(data) < at + len;
}

}  // namespace

int write_memory_image_raw(const GuestMemory& memory, int fd, uint64_t offset, unsigned char* resident,
                           MemoryImageStats& stats) noexcept {
  static_assert(kMemoryImageScratchBytes == kChunk / kPage);
  uint64_t image_pos = 0;  // where the region starts inside the image
  for (const auto& r : memory.regions()) {
    for (uint64_t chunk = 0; chunk < r.size; chunk += kChunk) {
      uint64_t len = std::min(kChunk, r.size - chunk);
      uint8_t* host = r.host + chunk;
      // A page never touched is not resident; one of the file a VM was resumed from may
      // hold data without being resident, so such a chunk is read whole.
      bool from_image = memory.image_fd() >= 0 &&
                        image_has_data(memory.image_fd(), memory.image_offset() + image_pos + chunk, len);
      if (!from_image && mincore(host, len, resident) != 0) return errno;
      uint64_t run_start = 0, run_len = 0;
      for (uint64_t page = 0; page <= len; page += kPage) {
        bool used = page < len && (from_image || (resident[page / kPage] & 1)) && !page_is_zero(host + page);
        if (used) {
          if (run_len == 0) run_start = page;
          run_len += kPage;
          continue;
        }
        if (run_len) {
          if (int err = write_all(fd, host + run_start, run_len, offset + image_pos + chunk + run_start)) return err;
          stats.bytes_written += run_len;
          run_len = 0;
        }
        if (page < len) stats.bytes_skipped += kPage;
      }
    }
    image_pos += r.size;
  }
  return 0;
}

MemoryImageStats write_memory_image(const GuestMemory& memory, int fd, uint64_t offset) {
  MemoryImageStats stats;
  unsigned char resident[kMemoryImageScratchBytes];
  if (int err = write_memory_image_raw(memory, fd, offset, resident, stats)) {
    throw SystemError("STATE_IO", "cannot write the saved memory image", err);
  }
  return stats;
}

}  // namespace berth::vmm
