// qcow2 images are files users bring: any bytes must open into a working device or a
// berth::Error, never a crash, a sanitizer report or an out-of-bounds access. The input
// goes into a memfd and is opened read-write without its backing chain (a fuzzed backing
// name must not reach the host's files); then reads, block_status, a few writes,
// discards, zeroing, check and flush run on it.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "disk/block_device.h"

namespace {

void exercise(berth::disk::BlockDevice& dev, const uint8_t* data, size_t size) {
  uint64_t cap = dev.capacity();
  (void)dev.info();
  std::vector<uint8_t> buf(128 * 1024);
  // Extents from the start, a bounded number.
  uint64_t pos = 0;
  for (int i = 0; i < 32 && pos < cap; ++i) {
    auto e = dev.block_status(pos, cap - pos);
    if (e.length == 0) break;
    pos += e.length;
  }
  // Reads at the start, in the middle and at the end.
  for (uint64_t off : {uint64_t(0), cap / 2, cap > buf.size() ? cap - buf.size() : 0}) {
    uint64_t n = std::min<uint64_t>(buf.size(), cap - std::min(cap, off));
    try {
      dev.read(off, std::span<uint8_t>(buf.data(), n));
    } catch (const berth::Error&) {
    }
  }
  if (dev.read_only() || cap == 0) return;
  // A few writes steered by the input's last bytes.
  uint64_t seed = size >= 8 ? data[size - 1] | (uint64_t(data[size - 2]) << 8) | (uint64_t(data[size - 3]) << 16) : 1;
  for (int i = 0; i < 4; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t off = (seed >> 11) % cap;
    uint64_t n = std::min<uint64_t>((seed >> 40) % 70000 + 1, cap - off);
    try {
      switch (i) {
        case 0:
        case 1: dev.write(off, std::span<const uint8_t>(buf.data(), std::min<uint64_t>(n, buf.size()))); break;
        case 2: dev.discard(off, n); break;
        case 3: dev.write_zeroes(off, n, (seed & 1) != 0); break;
      }
    } catch (const berth::Error&) {
    }
  }
  try {
    dev.read(0, std::span<uint8_t>(buf.data(), std::min<uint64_t>(buf.size(), cap)));
  } catch (const berth::Error&) {
  }
  try {
    (void)dev.check(false);
  } catch (const berth::Error&) {
  }
  dev.flush();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int fd = memfd_create("fuzz-qcow2", 0);
  if (fd < 0) return 0;
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  berth::disk::OpenOptions options;
  options.open_backing = false;
  options.read_only = size > 0 && (data[0] & 0x80) == 0 && size % 7 == 0;
  try {
    auto dev = berth::disk::open_disk(path, options);
    exercise(*dev, data, size);
  } catch (const berth::Error&) {
    // Refusing bad input with an error is the expected outcome.
  }
  return 0;
}
