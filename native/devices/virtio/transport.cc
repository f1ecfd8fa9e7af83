#include "devices/virtio/transport.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/error.h"

namespace berth::devices::virtio {

namespace {

constexpr uint32_t kTagKick = 0x10000;
constexpr uint32_t kTagStop = 0x10001;
constexpr uint32_t kTagSync = 0x10002;
constexpr uint32_t kTagComplete = 0x10003;

UniqueFd make_eventfd() {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw SystemError("VIRTIO_SETUP", "eventfd for a virtio device", errno);
  return UniqueFd(fd);
}

void signal_fd(int fd) {
  uint64_t one = 1;
  // EAGAIN means the counter is saturated: the reader is already due to wake up.
  while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

uint64_t drain_fd(int fd) {
  uint64_t v = 0;
  while (::read(fd, &v, sizeof v) < 0) {
    if (errno != EINTR) return 0;
  }
  return v;
}

}  // namespace

TransportCore::TransportCore(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, TransportHooks& hooks)
    : memory_(memory), device_(std::move(device)), hooks_(hooks) {
  uint16_t n = device_->queue_count();
  queues_.reserve(n);
  for (uint16_t i = 0; i < n; ++i) {
    queues_.emplace_back(memory_);
    notify_fds_.push_back(make_eventfd());
  }
  kick_fd_ = make_eventfd();
  complete_fd_ = make_eventfd();
  stop_fd_ = make_eventfd();
  sync_fd_ = make_eventfd();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) throw SystemError("VIRTIO_SETUP", "epoll for a virtio device", errno);
  epoll_fd_ = UniqueFd(ep);
  auto watch = [&](int fd, uint32_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) throw SystemError("VIRTIO_SETUP", "epoll_ctl", errno);
  };
  for (uint16_t i = 0; i < n; ++i) watch(notify_fds_[i].get(), i);
  watch(kick_fd_.get(), kTagKick);
  watch(complete_fd_.get(), kTagComplete);
  watch(stop_fd_.get(), kTagStop);
  watch(sync_fd_.get(), kTagSync);
  device_->bind(*this);
  thread_ = std::thread([this] { io_loop(); });
}

TransportCore::~TransportCore() {
  {
    // A device with a worker thread stops touching guest memory and posting completions
    // here, before the eventfds it posts to are closed.
    std::lock_guard<std::mutex> lock(mu_);
    try {
      device_->reset();
    } catch (...) {
      // Destruction goes on regardless.
    }
  }
  signal_fd(stop_fd_.get());
  if (thread_.joinable()) thread_.join();
}

void TransportCore::run_device(const std::function<void()>& work) {
  try {
    work();
  } catch (const std::exception& e) {
    set_needs_reset(std::string("device error: ") + e.what());
  }
  check_queues();
}

void TransportCore::io_loop() {
  epoll_event events[64];
  std::vector<uint16_t> notified;
  for (;;) {
    int n = epoll_wait(epoll_fd_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    bool stop = false, kicked = false, completed = false;
    uint64_t syncs = 0;
    notified.clear();
    for (int i = 0; i < n; ++i) {
      uint32_t tag = events[i].data.u32;
      if (tag == kTagStop) {
        stop = true;
      } else if (tag == kTagKick) {
        drain_fd(kick_fd_.get());
        kicked = true;
      } else if (tag == kTagComplete) {
        drain_fd(complete_fd_.get());
        completed = true;
      } else if (tag == kTagSync) {
        syncs += drain_fd(sync_fd_.get());
      } else if (tag < notify_fds_.size()) {
        drain_fd(notify_fds_[tag].get());
        notified.push_back(static_cast<uint16_t>(tag));
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stop) {
      sync_done_ = sync_requested_;
      sync_cv_.notify_all();
      return;
    }
    if (frozen_) {
      // What was signalled is dropped: thaw() has every queue looked at again.
      completed = kicked = false;
      notified.clear();
    }
    if (completed && dispatchable()) run_device([&] { device_->complete(); });
    for (uint16_t q : notified) {
      if (!dispatchable()) break;
      run_device([&] { device_->queue_notify(q); });
    }
    if (kicked && dispatchable()) run_device([&] { device_->host_event(); });
    if (syncs) {
      sync_done_ += syncs;
      sync_cv_.notify_all();
    }
  }
}

void TransportCore::sync() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t target = ++sync_requested_;
  signal_fd(sync_fd_.get());
  sync_cv_.wait(lock, [&] { return sync_done_ >= target; });
}

void TransportCore::notify(uint64_t queue) {
  if (queue < notify_fds_.size()) signal_fd(notify_fds_[queue].get());
}

uint32_t TransportCore::locked_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

std::string TransportCore::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

// ---- DeviceContext (called from device callbacks, with mu_ held, except kick) ----

void TransportCore::signal_used(uint16_t queue) {
  if (queue < queues_.size() && queues_[queue].should_notify()) hooks_.queue_interrupt(queue);
}

void TransportCore::kick() { signal_fd(kick_fd_.get()); }

void TransportCore::post_completion() { signal_fd(complete_fd_.get()); }

void TransportCore::fail(const std::string& why) { set_needs_reset(why); }

void TransportCore::config_changed() {
  ++config_generation_;
  if (status_ & kStatusDriverOk) hooks_.config_interrupt();
}

void TransportCore::set_needs_reset(const std::string& why) {
  if (status_ & kStatusNeedsReset) return;
  last_error_ = why;
  status_ |= kStatusNeedsReset;
  // virtio 1.x 2.1.2: with DRIVER_OK set, the device must also send a configuration
  // change notification.
  if (status_ & kStatusDriverOk) hooks_.config_interrupt();
}

void TransportCore::check_queues() {
  for (size_t i = 0; i < queues_.size(); ++i) {
    if (queues_[i].error() != QueueError::kNone) {
      set_needs_reset("queue " + std::to_string(i) + ": " + queues_[i].error_detail());
      return;
    }
  }
}

void TransportCore::recheck_locked() {
  if (!dispatchable()) return;
  for (auto& fd : notify_fds_) signal_fd(fd.get());
  signal_fd(kick_fd_.get());
  signal_fd(complete_fd_.get());
}

void TransportCore::activate_locked() {
  try {
    device_->activate(queues_, driver_features_);
  } catch (const std::exception& e) {
    set_needs_reset(std::string("device activation failed: ") + e.what());
  }
}

// ---- registers (locked) ----

uint64_t TransportCore::offered_features() const {
  return device_->device_features() | kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx;
}

uint32_t TransportCore::device_features_word() const {
  const uint64_t offered = offered_features();
  return device_features_sel == 0   ? static_cast<uint32_t>(offered)
         : device_features_sel == 1 ? static_cast<uint32_t>(offered >> 32)
                                    : 0;
}

uint32_t TransportCore::driver_features_word() const {
  return driver_features_sel == 0   ? static_cast<uint32_t>(driver_features_)
         : driver_features_sel == 1 ? static_cast<uint32_t>(driver_features_ >> 32)
                                    : 0;
}

void TransportCore::write_driver_features_word(uint32_t value) {
  if (status_ & kStatusFeaturesOk) return;
  if (driver_features_sel == 0) {
    driver_features_ = (driver_features_ & ~0xffffffffull) | value;
  } else if (driver_features_sel == 1) {
    driver_features_ = (driver_features_ & 0xffffffffull) | (static_cast<uint64_t>(value) << 32);
  }
}

void TransportCore::write_status(uint32_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  // The driver only sets bits (clearing needs a reset); NEEDS_RESET is the device's.
  uint32_t next = status_ | (value & ~kStatusNeedsReset);
  if ((next & kStatusFeaturesOk) && !(status_ & kStatusFeaturesOk)) {
    if ((driver_features_ & ~offered_features()) || !(driver_features_ & kFeatureVersion1)) next &= ~kStatusFeaturesOk;
  }
  if ((next & kStatusDriverOk) && !(status_ & kStatusDriverOk)) {
    if (!(next & kStatusFeaturesOk)) {
      next &= ~kStatusDriverOk;
    } else {
      status_ = next;
      if (!(status_ & kStatusNeedsReset)) {
        activate_locked();
        // Buffers the driver queued before DRIVER_OK are picked up now.
        recheck_locked();
      }
      return;
    }
  }
  status_ = next;
}

Virtqueue* TransportCore::selected() { return queue_sel < queues_.size() ? &queues_[queue_sel] : nullptr; }

const Virtqueue* TransportCore::selected_queue() const {
  return queue_sel < queues_.size() ? &queues_[queue_sel] : nullptr;
}

uint32_t TransportCore::selected_queue_max() const {
  if (queue_sel >= queues_.size()) return 0;
  return std::min<uint32_t>(device_->queue_max_size(static_cast<uint16_t>(queue_sel)), kMaxQueueSize);
}

void TransportCore::set_queue_size(uint32_t size) {
  Virtqueue* q = selected();
  if (q && !q->active()) q->size = size;
}

void TransportCore::set_queue_ring(QueueRing ring, bool high_half, uint32_t value) {
  Virtqueue* q = selected();
  if (!q || q->active()) return;
  uint64_t& a = ring == QueueRing::kDesc ? q->desc_addr : ring == QueueRing::kDriver ? q->avail_addr : q->used_addr;
  a = high_half ? (a & 0xffffffffull) | (static_cast<uint64_t>(value) << 32) : (a & ~0xffffffffull) | value;
}

void TransportCore::preset_queue_sizes() {
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    if (!queues_[i].active()) queues_[i].size = std::min<uint32_t>(device_->queue_max_size(i), kMaxQueueSize);
  }
}

void TransportCore::set_queue_ready(uint32_t value) {
  Virtqueue* q = selected();
  if (!q) return;
  if (value == 1 && !q->active()) {
    if (status_ & kStatusNeedsReset) return;
    if (!q->activate((driver_features_ & kFeatureEventIdx) != 0, selected_queue_max())) {
      set_needs_reset("queue " + std::to_string(queue_sel) + ": " + q->error_detail());
    }
  } else if (value == 0 && q->active()) {
    Virtqueue keep = *q;
    q->reset();
    q->size = keep.size;
    q->desc_addr = keep.desc_addr;
    q->avail_addr = keep.avail_addr;
    q->used_addr = keep.used_addr;
  }
}

void TransportCore::read_device_config(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  uint32_t size = device_->config_size();
  if (offset >= size) return;
  size_t n = std::min<uint64_t>(data.size(), size - offset);
  device_->read_config(static_cast<uint32_t>(offset), data.subspan(0, n));
}

void TransportCore::write_device_config(uint64_t offset, std::span<const uint8_t> data) {
  uint32_t size = device_->config_size();
  if (offset >= size) return;
  size_t n = std::min<uint64_t>(data.size(), size - offset);
  device_->write_config(static_cast<uint32_t>(offset), data.subspan(0, n));
}

void TransportCore::reset_locked() {
  device_->reset();
  for (auto& q : queues_) q.reset();
  status_ = 0;
  device_features_sel = driver_features_sel = 0;
  driver_features_ = 0;
  queue_sel = 0;
  hooks_.transport_reset();
}

void TransportCore::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  reset_locked();
}

}  // namespace berth::devices::virtio
