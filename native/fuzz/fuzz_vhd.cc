// VHD images are files the user picks: opening, reading, writing and checking any bytes
// must end in a berth::Error or success, never a crash or an out-of-bounds access, on the
// synchronous calls and on the asynchronous path.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "disk/block_device.h"
#include "fuzz/async_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int fd = ::memfd_create("fuzz-vhd", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (::ftruncate(fd, 0) != 0) return 0;
  for (size_t done = 0; done < size;) {
    ssize_t n = ::pwrite(fd, data + done, size - done, off_t(done));
    if (n <= 0) return 0;
    done += size_t(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    berth::disk::OpenOptions options;
    options.open_backing = false;
    options.read_only = size % 2 == 0;
    // Other formats have their own harnesses: only VHD (and the raw fallback) here.
    auto format = berth::disk::probe_format(path);
    if (format != berth::disk::Format::kVhd && format != berth::disk::Format::kRaw) return 0;
    auto disk = berth::disk::open_disk(path, options);
    uint64_t cap = disk->capacity();
    std::vector<uint8_t> buf(65536);
    for (uint64_t off = 0, i = 0; off < cap && i < 64; i++) {
      try {
        auto e = disk->block_status(off, cap - off);
        size_t n = size_t(std::min<uint64_t>(std::min<uint64_t>(buf.size(), cap - off), e.length ? e.length : 1));
        disk->read(off, std::span<uint8_t>(buf.data(), n));
        off += e.length ? e.length : 1;
      } catch (const berth::Error&) {
        off += 1 << 20;
      }
    }
    if (!disk->read_only() && cap > 0) {
      std::vector<uint8_t> w(3000, 0xA5);
      uint64_t at = (size * 7919) % cap;
      size_t n = size_t(std::min<uint64_t>(w.size(), cap - at));
      disk->write(at, std::span<const uint8_t>(w.data(), n));
      disk->write_zeroes(at / 2, std::min<uint64_t>(cap - at / 2, 5000), true);
      disk->flush();
      disk->read(at, std::span<uint8_t>(w.data(), n));
    }
    exercise_async(*disk, size);
    disk->check(false);
  } catch (const berth::Error&) {
    // Refusing bad input with an error is the expected outcome.
  }
  return 0;
}
