#include "devices/virtio/console.h"

#include <vector>

#include "common/state_stream.h"

namespace berth::devices::virtio {

void VirtioConsole::enqueue_input(std::span<const uint8_t> bytes) {
  {
    std::lock_guard<std::mutex> lock(input_mu_);
    size_t room = kMaxPendingInput - input_.size();
    size_t n = bytes.size() < room ? bytes.size() : room;
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  }
  if (context_) context_->kick();
}

void VirtioConsole::activate(std::span<Virtqueue> queues, uint64_t /*features*/) {
  rx_ = queues[0].active() ? &queues[0] : nullptr;
  tx_ = queues[1].active() ? &queues[1] : nullptr;
}

void VirtioConsole::queue_notify(uint16_t queue) {
  if (queue == 0) fill_receive();
  if (queue == 1) drain_transmit();
}

void VirtioConsole::fill_receive() {
  if (!rx_) return;
  std::lock_guard<std::mutex> lock(input_mu_);
  std::vector<uint8_t> bytes;
  bool used = false;
  while (!input_.empty()) {
    if (rx_->pop(chain_) != Virtqueue::Pop::kChain) break;
    if (chain_.readable_bytes != 0) {
      context_->fail("virtio-console: receive buffer with a device-readable part");
      return;
    }
    size_t n = chain_.writable_bytes < input_.size() ? chain_.writable_bytes : input_.size();
    bytes.assign(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(n));
    size_t written = chain_.write(bytes);
    input_.erase(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(written));
    rx_->push_used(chain_.head, static_cast<uint32_t>(written));
    used = true;
  }
  if (used) context_->signal_used(0);
}

void VirtioConsole::drain_transmit() {
  if (!tx_) return;
  std::vector<uint8_t> bytes;
  bool used = false;
  while (tx_->pop(chain_) == Virtqueue::Pop::kChain) {
    // Device-writable parts of a transmit chain are ignored (nothing is written to them).
    bytes.resize(chain_.readable_bytes < (1u << 20) ? chain_.readable_bytes : (1u << 20));
    size_t n = chain_.read(bytes);
    if (n) output_(std::span<const uint8_t>(bytes.data(), n));
    tx_->push_used(chain_.head, 0);
    used = true;
  }
  if (used) context_->signal_used(1);
}

void VirtioConsole::save_state(state::Writer& w) const {
  size_t token = w.begin(name(), 1);
  {
    std::lock_guard<std::mutex> lock(input_mu_);
    std::vector<uint8_t> pending(input_.begin(), input_.end());
    w.blob(pending);
  }
  w.end(token);
}

void VirtioConsole::load_state(state::Reader& parent) {
  auto rec = parent.record(name(), 1);
  auto pending = rec.body.blob(kMaxPendingInput, "pending_input");
  rec.body.expect_end();
  std::lock_guard<std::mutex> lock(input_mu_);
  input_.assign(pending.begin(), pending.end());
}

}  // namespace berth::devices::virtio
