#include "disk/aligned_io.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace berth::disk {

namespace {

constexpr size_t kBounceChunk = 1 << 20;

bool is_aligned(uint64_t value, uint32_t alignment) { return (value & (alignment - 1)) == 0; }

// Reads what exists at offset into p; a short read means end of file: the rest is zeroed.
// (Under O_DIRECT a read continued from an unaligned offset would fail, so a short
// transfer is never continued.)
void pread_or_zero(int fd, uint64_t offset, uint8_t* p, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SystemError("DISK_IO", "read from " + path + " at offset " + std::to_string(offset + done) + " failed",
                        errno);
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
    if (done < n && (done & 511) != 0) break;
  }
  if (done < n) std::memset(p + done, 0, n - done);
}

void pwrite_all(int fd, uint64_t offset, const uint8_t* p, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw io_error("write to " + path + " at offset " + std::to_string(offset + done) + " failed", path, errno);
    }
    if (r == 0) throw Error("DISK_IO", "write to " + path + " made no progress");
    done += static_cast<size_t>(r);
  }
}

bool direct_ok(bool direct, uint32_t alignment, uint64_t offset, const uint8_t* p, size_t n) {
  return !direct || (is_aligned(offset, alignment) && is_aligned(n, alignment) &&
                     is_aligned(reinterpret_cast<uintptr_t>(p), alignment));
}

}  // namespace

Error io_error(const std::string& what, const std::string& path, int err) {
  if (err == ENOSPC) return Error("DISK_NO_SPACE", "no space left on the device holding " + path);
  return SystemError("DISK_IO", what, err);
}

AlignedBytes aligned_alloc_bytes(size_t size, size_t alignment) {
  void* p = nullptr;
  if (::posix_memalign(&p, alignment, std::max<size_t>(size, 1)) != 0) {
    throw Error("DISK_IO", "out of memory for a " + std::to_string(size) + "-byte I/O buffer");
  }
  std::memset(p, 0, size);
  return AlignedBytes(static_cast<uint8_t*>(p));
}

void aligned_read(int fd, bool direct, uint32_t alignment, uint64_t offset, std::span<uint8_t> buf,
                  const std::string& path) {
  if (direct_ok(direct, alignment, offset, buf.data(), buf.size())) {
    pread_or_zero(fd, offset, buf.data(), buf.size(), path);
    return;
  }
  AlignedBytes bounce = aligned_alloc_bytes(kBounceChunk + alignment, std::max<uint32_t>(alignment, 4096));
  size_t done = 0;
  while (done < buf.size()) {
    uint64_t pos = offset + done;
    uint64_t start = pos & ~uint64_t(alignment - 1);
    size_t skip = static_cast<size_t>(pos - start);
    size_t n = std::min(buf.size() - done, kBounceChunk - skip);
    size_t span_len = (skip + n + alignment - 1) & ~size_t(alignment - 1);
    pread_or_zero(fd, start, bounce.get(), span_len, path);
    std::memcpy(buf.data() + done, bounce.get() + skip, n);
    done += n;
  }
}

void aligned_write(int fd, bool direct, uint32_t alignment, uint64_t offset, std::span<const uint8_t> buf,
                   const std::string& path) {
  if (direct_ok(direct, alignment, offset, buf.data(), buf.size())) {
    pwrite_all(fd, offset, buf.data(), buf.size(), path);
    return;
  }
  AlignedBytes bounce = aligned_alloc_bytes(kBounceChunk + alignment, std::max<uint32_t>(alignment, 4096));
  size_t done = 0;
  while (done < buf.size()) {
    uint64_t pos = offset + done;
    uint64_t start = pos & ~uint64_t(alignment - 1);
    size_t skip = static_cast<size_t>(pos - start);
    size_t n = std::min(buf.size() - done, kBounceChunk - skip);
    size_t span_len = (skip + n + alignment - 1) & ~size_t(alignment - 1);
    // Read-modify-write only the partial first and last alignment units.
    if (skip != 0 || n < alignment) pread_or_zero(fd, start, bounce.get(), alignment, path);
    if ((skip + n) % alignment != 0 && span_len > alignment) {
      pread_or_zero(fd, start + span_len - alignment, bounce.get() + span_len - alignment, alignment, path);
    }
    std::memcpy(bounce.get() + skip, buf.data() + done, n);
    pwrite_all(fd, start, bounce.get(), span_len, path);
    done += n;
  }
}

void aligned_write_zeroes(int fd, bool direct, uint32_t alignment, uint64_t offset, uint64_t length,
                          const std::string& path) {
  AlignedBytes zeroes = aligned_alloc_bytes(kBounceChunk, 4096);
  for (uint64_t done = 0; done < length;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kBounceChunk, length - done));
    aligned_write(fd, direct, alignment, offset + done, std::span<const uint8_t>(zeroes.get(), n), path);
    done += n;
  }
}

}  // namespace berth::disk
