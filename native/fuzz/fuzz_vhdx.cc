// VHDX images are files the user picks: any bytes must open as a disk or fail with a
// berth::Error, never crash or touch memory out of bounds. The input is written to a memfd
// and opened through open_disk; reads, block_status, check() and (on a writable open) a
// few writes exercise the BAT, the log replay and the metadata paths, and the asynchronous
// path maps the same image.
//
// VHDX structures sit megabytes apart (headers, log at 1 MiB, BAT and metadata further on),
// past libFuzzer's default input limit, so an input may also be a sparse description of the
// file: "VXSP" then records {u32 offset in 4 KiB units, u16 length, bytes}; a record of
// length 0 only extends the file to its offset. seed_vhdx.sh writes its seeds that way.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "disk/block_device.h"
#include "fuzz/async_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = memfd_create("fuzz-vhdx", 0);
  if (fd < 0) return 0;
  auto put = [&](uint64_t offset, const uint8_t* bytes, size_t len) {
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::pwrite(fd, bytes + done, len - done, static_cast<off_t>(offset + done));
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
  };
  if (size >= 4 && std::memcmp(data, "VXSP", 4) == 0) {
    uint64_t end = 0;
    for (size_t pos = 4; pos + 6 <= size;) {
      uint32_t unit;
      uint16_t len;
      std::memcpy(&unit, data + pos, 4);
      std::memcpy(&len, data + pos + 4, 2);
      pos += 6;
      len = static_cast<uint16_t>(std::min<size_t>(len, size - pos));
      uint64_t offset = (uint64_t{unit} & 0xffff) * 4096;  // at most 256 MiB into the file
      put(offset, data + pos, len);
      end = std::max(end, offset + len);
      pos += len;
    }
    if (::ftruncate(fd, static_cast<off_t>(end)) != 0) {
      ::close(fd);
      return 0;
    }
  } else {
    put(0, data, size);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    berth::disk::OpenOptions options;
    options.open_backing = false;                       // never follow a parent named by the input
    options.read_only = size > 200 && (data[200] & 1);  // an unused byte of the file identifier
    auto dev = berth::disk::open_disk(path, options);
    const uint64_t cap = dev->capacity();
    std::vector<uint8_t> buf(64 * 1024);
    for (uint64_t off : {uint64_t{0}, cap / 2, cap > buf.size() ? cap - buf.size() : 0}) {
      uint64_t n = std::min<uint64_t>(buf.size(), cap - std::min(cap, off));
      if (n) dev->read(off, std::span<uint8_t>(buf.data(), n));
    }
    uint64_t pos = 0;
    for (int i = 0; i < 64 && pos < cap; ++i) {
      auto e = dev->block_status(pos, cap - pos);
      if (e.length == 0) break;
      pos += e.length;
    }
    exercise_async(*dev, size);
    dev->check(false);
    (void)dev->info();
    if (!dev->read_only() && cap) {
      std::fill(buf.begin(), buf.end(), 0x5a);
      uint64_t n = std::min<uint64_t>(cap, 4096);
      dev->write(0, std::span<const uint8_t>(buf.data(), n));
      dev->write(cap - n, std::span<const uint8_t>(buf.data(), n));
      dev->write_zeroes(0, std::min<uint64_t>(cap, 2u << 20), true);
      dev->read(0, std::span<uint8_t>(buf.data(), n));
      dev->flush();
    }
  } catch (const berth::Error&) {
    // Refusing bad input with an error is the expected outcome.
  }
  ::close(fd);
  return 0;
}
