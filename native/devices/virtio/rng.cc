#include "devices/virtio/rng.h"

#include <sys/random.h>

#include <cerrno>
#include <vector>

namespace berth::devices::virtio {

void VirtioRng::activate(std::span<Virtqueue> queues, uint64_t /*features*/) {
  queue_ = queues[0].active() ? &queues[0] : nullptr;
}

void VirtioRng::queue_notify(uint16_t queue) {
  if (queue != 0 || !queue_) return;
  std::vector<uint8_t> bytes;
  for (;;) {
    auto r = queue_->pop(chain_);
    if (r != Virtqueue::Pop::kChain) return;  // empty, or broken: the transport sees the error
    // The request is write-only; a chain the device cannot write into (or with bytes meant
    // for the device to read) is a driver bug virtio-rng has no status to report.
    if (chain_.readable_bytes != 0 || chain_.writable_bytes == 0) {
      context_->fail("virtio-rng: request without a writable buffer, or with a device-readable one");
      return;
    }
    size_t want = chain_.writable_bytes < kMaxRequestBytes ? chain_.writable_bytes : kMaxRequestBytes;
    bytes.resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n = getrandom(bytes.data() + got, want - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      got += static_cast<size_t>(n);
    }
    size_t written = chain_.write(std::span<const uint8_t>(bytes.data(), got));
    queue_->push_used(chain_.head, static_cast<uint32_t>(written));
    context_->signal_used(0);
  }
}

}  // namespace berth::devices::virtio
