#include "devices/virtio/net.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/state_stream.h"

namespace berth::devices::virtio {

VirtioNet::VirtioNet(std::array<uint8_t, 6> mac, std::unique_ptr<net::NetBackend> backend)
    : mac_(mac), backend_(std::move(backend)) {
  tx_buffer_.reserve(kNetHeaderSize + kMaxFrame);
  rx_buffer_.reserve(kNetHeaderSize + kMaxFrame);
}

VirtioNet::~VirtioNet() { shutdown(); }

void VirtioNet::start() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);  // (backend_ is null after close_backend)
  if (started_ || !backend_) return;
  started_ = true;
  backend_->start([this](std::span<const uint8_t> frame) { enqueue_rx(frame); });
}

void VirtioNet::shutdown() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (!started_) return;
  started_ = false;
  backend_->stop();
}

void VirtioNet::close_backend() {
  shutdown();
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  backend_.reset();
}

void VirtioNet::enqueue_rx(std::span<const uint8_t> frame) {
  if (frame.size() < 14 || frame.size() > kMaxFrame) return;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    if (pending_.size() >= kMaxPendingFrames) {
      rx_queue_full_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    pending_.emplace_back(frame.begin(), frame.end());
  }
  if (context_) context_->kick();
}

NetStats VirtioNet::stats() const {
  NetStats s;
  s.tx_frames = tx_frames_.load(std::memory_order_relaxed);
  s.tx_bad_chain = tx_bad_chain_.load(std::memory_order_relaxed);
  s.rx_frames = rx_frames_.load(std::memory_order_relaxed);
  s.rx_queue_full = rx_queue_full_.load(std::memory_order_relaxed);
  s.rx_buffer_small = rx_buffer_small_.load(std::memory_order_relaxed);
  return s;
}

void VirtioNet::read_config(uint32_t offset, std::span<uint8_t> data) {
  uint8_t config[8];
  std::memcpy(config, mac_.data(), 6);
  config[6] = static_cast<uint8_t>(kNetStatusLinkUp);  // little endian u16
  config[7] = 0;
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < sizeof config ? config[offset + i] : 0;
}

void VirtioNet::activate(std::span<Virtqueue> queues, uint64_t /*features*/) {
  rx_ = queues[0].active() ? &queues[0] : nullptr;
  tx_ = queues[1].active() ? &queues[1] : nullptr;
  // Frames that arrived before the driver was ready go out from the I/O thread.
  if (context_) context_->kick();
}

void VirtioNet::reset() {
  rx_ = tx_ = nullptr;
  // Frames queued for the old driver instance are stale.
  std::lock_guard<std::mutex> lock(pending_mu_);
  pending_.clear();
}

namespace {

std::string mac_text(std::span<const uint8_t> mac) {
  char b[18];
  std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return b;
}

}  // namespace

void VirtioNet::save_state(state::Writer& w) const {
  size_t token = w.begin(name(), 1);
  w.bytes(mac_);
  w.end(token);
}

void VirtioNet::load_state(state::Reader& parent) {
  auto rec = parent.record(name(), 1);
  state::Reader& r = rec.body;
  auto mac = r.bytes(6, "mac");
  if (!std::equal(mac.begin(), mac.end(), mac_.begin())) {
    r.fail("mac is " + mac_text(mac) + ", but this NIC is configured with " + mac_text(mac_));
  }
  r.expect_end();
}

void VirtioNet::queue_notify(uint16_t queue) {
  if (queue == 0) fill_receive();
  if (queue == 1) drain_transmit();
}

void VirtioNet::fill_receive() {
  if (!rx_) return;
  bool used = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      if (pending_.empty()) break;
    }
    auto r = rx_->pop(chain_);
    if (r != Virtqueue::Pop::kChain) break;  // no buffer (frames wait), or a broken queue
    if (chain_.readable_bytes != 0) {
      context_->fail("virtio-net: receive buffer with a device-readable part");
      return;
    }
    std::vector<uint8_t> frame;
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      frame = std::move(pending_.front());
      pending_.pop_front();
    }
    uint32_t written = 0;
    if (chain_.writable_bytes < kNetHeaderSize + frame.size()) {
      // Without mergeable buffers every buffer must hold a whole frame; this one cannot.
      rx_buffer_small_.fetch_add(1, std::memory_order_relaxed);
    } else {
      rx_buffer_.assign(kNetHeaderSize, 0);
      rx_buffer_[10] = 1;  // num_buffers = 1 (little endian)
      rx_buffer_.insert(rx_buffer_.end(), frame.begin(), frame.end());
      written = static_cast<uint32_t>(chain_.write(rx_buffer_));
      rx_frames_.fetch_add(1, std::memory_order_relaxed);
    }
    rx_->push_used(chain_.head, written);
    used = true;
  }
  if (used) context_->signal_used(0);
}

void VirtioNet::drain_transmit() {
  if (!tx_) return;
  bool used = false;
  while (tx_->pop(chain_) == Virtqueue::Pop::kChain) {
    // Device-writable parts of a transmit chain are ignored (nothing is written to them).
    if (chain_.readable_bytes < kNetHeaderSize + 14 || chain_.readable_bytes > kNetHeaderSize + kMaxFrame) {
      tx_bad_chain_.fetch_add(1, std::memory_order_relaxed);
    } else {
      tx_buffer_.resize(chain_.readable_bytes);
      size_t n = chain_.read(tx_buffer_);
      // The header asks for nothing we offer (no checksum or segmentation offload), so
      // it is skipped rather than interpreted.
      if (n > kNetHeaderSize && backend_) {
        backend_->send(std::span<const uint8_t>(tx_buffer_.data() + kNetHeaderSize, n - kNetHeaderSize));
        tx_frames_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    tx_->push_used(chain_.head, 0);
    used = true;
  }
  if (used) context_->signal_used(1);
  // The backend may have answered at once (NAT: ARP, DHCP); hand that over now.
  fill_receive();
}

}  // namespace berth::devices::virtio
