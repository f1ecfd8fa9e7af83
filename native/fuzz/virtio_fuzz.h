// What the virtio device harnesses share: a DeviceContext without a transport that records a
// device's failure, a temporary disk image, and little-endian reads of the input.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/unique_fd.h"
#include "devices/virtio/virtio_device.h"

namespace berth::fuzz {

class RecordingContext final : public devices::virtio::DeviceContext {
 public:
  void signal_used(uint16_t) override {}
  void kick() override {}
  void post_completion() override {}
  int completion_fd() override { return events.get(); }
  void fail(const std::string&) override { failed = true; }
  void config_changed() override {}
  bool failed = false;
  UniqueFd events{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
};

// A temporary file of `bytes` bytes, all `fill` (zero: sparse); the harnesses share it for
// all runs.
inline std::string temp_image(const char* name, uint64_t bytes, uint8_t fill = 0) {
  std::string path = std::string("/tmp/berth-fuzz-") + name + "-XXXXXX";
  int fd = mkstemp(path.data());
  if (fd < 0) abort();
  if (fill == 0) {
    if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) abort();
  } else {
    std::string bytes_of_fill(bytes, static_cast<char>(fill));
    if (write(fd, bytes_of_fill.data(), bytes_of_fill.size()) != static_cast<ssize_t>(bytes_of_fill.size())) abort();
  }
  close(fd);
  return path;
}

inline uint16_t u16_at(const uint8_t* d) { return static_cast<uint16_t>(d[0] | (d[1] << 8)); }

}  // namespace berth::fuzz
