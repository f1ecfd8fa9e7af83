// Positioned I/O through a descriptor that may be O_DIRECT: requests whose offset, length
// and buffer are aligned go straight to the file; others go through an aligned bounce
// buffer (read-modify-write for writes). Shared by the raw and host-device drivers.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "common/error.h"

namespace berth::disk {

// The error for a failed read, write or flush of path (errno err): DISK_NO_SPACE when the
// device is full, otherwise DISK_IO with what and the system's message.
Error io_error(const std::string& what, const std::string& path, int err);

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], FreeDeleter>;

// Zero-filled memory aligned to `alignment` (a power of two); throws DISK_IO on failure.
AlignedBytes aligned_alloc_bytes(size_t size, size_t alignment = 4096);

// Reads buf.size() bytes at offset; bytes past the end of the file read as zeroes.
// With direct, `alignment` is the offset/length/memory alignment the descriptor needs.
void aligned_read(int fd, bool direct, uint32_t alignment, uint64_t offset, std::span<uint8_t> buf,
                  const std::string& path);
void aligned_write(int fd, bool direct, uint32_t alignment, uint64_t offset, std::span<const uint8_t> buf,
                   const std::string& path);
// Writes `length` zero bytes at offset (used when the OS cannot zero a range itself).
void aligned_write_zeroes(int fd, bool direct, uint32_t alignment, uint64_t offset, uint64_t length,
                          const std::string& path);

}  // namespace berth::disk
