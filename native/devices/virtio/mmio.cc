#include "devices/virtio/mmio.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

uint32_t load32(std::span<const uint8_t> data) {
  uint32_t v = 0;
  std::memcpy(&v, data.data(), 4);
  return v;
}

}  // namespace

VirtioMmio::VirtioMmio(vmm::GuestMemory& memory, std::shared_ptr<VirtioDevice> device, EdgeInterrupt& irq)
    : memory_(memory), device_(std::move(device)), irq_(irq) {
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

VirtioMmio::~VirtioMmio() {
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

void VirtioMmio::io_loop() {
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
    if (completed && dispatchable()) {
      try {
        device_->complete();
      } catch (const std::exception& e) {
        set_needs_reset(std::string("device error: ") + e.what());
      }
      check_queues();
    }
    for (uint16_t q : notified) {
      if (!dispatchable()) break;
      try {
        device_->queue_notify(q);
      } catch (const std::exception& e) {
        set_needs_reset(std::string("device error: ") + e.what());
      }
      check_queues();
    }
    if (kicked && dispatchable()) {
      try {
        device_->host_event();
      } catch (const std::exception& e) {
        set_needs_reset(std::string("device error: ") + e.what());
      }
      check_queues();
    }
    if (syncs) {
      sync_done_ += syncs;
      sync_cv_.notify_all();
    }
  }
}

void VirtioMmio::sync() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t target = ++sync_requested_;
  signal_fd(sync_fd_.get());
  sync_cv_.wait(lock, [&] { return sync_done_ >= target; });
}

uint32_t VirtioMmio::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

std::string VirtioMmio::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

// ---- DeviceContext (called from device callbacks, with mu_ held, except kick) ----

void VirtioMmio::signal_used(uint16_t queue) {
  if (queue < queues_.size() && queues_[queue].should_notify()) raise(kInterruptUsedBuffer);
}

void VirtioMmio::kick() { signal_fd(kick_fd_.get()); }

void VirtioMmio::post_completion() { signal_fd(complete_fd_.get()); }

void VirtioMmio::fail(const std::string& why) { set_needs_reset(why); }

void VirtioMmio::config_changed() {
  ++config_generation_;
  if (status_ & kStatusDriverOk) raise(kInterruptConfigChange);
}

void VirtioMmio::raise(uint32_t bits) {
  interrupt_status_.fetch_or(bits);
  irq_.trigger();
}

void VirtioMmio::set_needs_reset(const std::string& why) {
  if (status_ & kStatusNeedsReset) return;
  last_error_ = why;
  status_ |= kStatusNeedsReset;
  // virtio 1.x 2.1.2: with DRIVER_OK set, the device must also send a configuration
  // change notification.
  if (status_ & kStatusDriverOk) raise(kInterruptConfigChange);
}

void VirtioMmio::check_queues() {
  for (size_t i = 0; i < queues_.size(); ++i) {
    if (queues_[i].error() != QueueError::kNone) {
      set_needs_reset("queue " + std::to_string(i) + ": " + queues_[i].error_detail());
      return;
    }
  }
}

void VirtioMmio::recheck_locked() {
  if (!dispatchable()) return;
  for (auto& fd : notify_fds_) signal_fd(fd.get());
  signal_fd(kick_fd_.get());
  signal_fd(complete_fd_.get());
}

// ---- registers (vCPU thread) ----

void VirtioMmio::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  // The interrupt handler's registers are atomic: a guest taking an interrupt never waits
  // for device work that holds the lock (a qcow2 cluster allocation, say).
  if (offset == kMmioInterruptStatus && data.size() == 4) {
    uint32_t v = interrupt_status_.load();
    std::memcpy(data.data(), &v, 4);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (offset >= kMmioConfig) {
    uint64_t off = offset - kMmioConfig;
    uint32_t size = device_->config_size();
    if (off >= size) return;
    size_t n = std::min<uint64_t>(data.size(), size - off);
    device_->read_config(static_cast<uint32_t>(off), data.subspan(0, n));
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;  // registers are 32-bit only
  uint32_t v = read_register(offset);
  std::memcpy(data.data(), &v, 4);
}

void VirtioMmio::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == kMmioInterruptAck && data.size() == 4) {
    interrupt_status_.fetch_and(~load32(data));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (offset >= kMmioConfig) {
    uint64_t off = offset - kMmioConfig;
    uint32_t size = device_->config_size();
    if (off >= size) return;
    size_t n = std::min<uint64_t>(data.size(), size - off);
    device_->write_config(static_cast<uint32_t>(off), data.subspan(0, n));
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;
  write_register(offset, load32(data));
}

uint32_t VirtioMmio::read_register(uint64_t offset) {
  const uint64_t offered = device_->device_features() | kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx;
  Virtqueue* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  switch (offset) {
    case kMmioMagic: return kMmioMagicValue;
    case kMmioVersion: return 2;
    case kMmioDeviceId: return device_->device_id();
    case kMmioVendorId: return kMmioVendorBerth;
    case kMmioDeviceFeatures:
      return device_features_sel_ == 0   ? static_cast<uint32_t>(offered)
             : device_features_sel_ == 1 ? static_cast<uint32_t>(offered >> 32)
                                         : 0;
    case kMmioQueueNumMax: {
      if (!q) return 0;
      uint32_t max = device_->queue_max_size(static_cast<uint16_t>(queue_sel_));
      return max < kMaxQueueSize ? max : kMaxQueueSize;
    }
    case kMmioQueueNum: return q ? q->size : 0;
    case kMmioQueueReady: return q && q->active() ? 1 : 0;
    case kMmioInterruptStatus: return interrupt_status_.load();
    case kMmioStatus: return status_;
    case kMmioQueueDescLow: return q ? static_cast<uint32_t>(q->desc_addr) : 0;
    case kMmioQueueDescHigh: return q ? static_cast<uint32_t>(q->desc_addr >> 32) : 0;
    case kMmioQueueDriverLow: return q ? static_cast<uint32_t>(q->avail_addr) : 0;
    case kMmioQueueDriverHigh: return q ? static_cast<uint32_t>(q->avail_addr >> 32) : 0;
    case kMmioQueueDeviceLow: return q ? static_cast<uint32_t>(q->used_addr) : 0;
    case kMmioQueueDeviceHigh: return q ? static_cast<uint32_t>(q->used_addr >> 32) : 0;
    case kMmioShmLenLow:
    case kMmioShmLenHigh:
    case kMmioShmBaseLow:
    case kMmioShmBaseHigh: return 0xffffffffu;  // no shared memory regions
    case kMmioConfigGeneration: return config_generation_;
    default: return 0;
  }
}

void VirtioMmio::write_register(uint64_t offset, uint32_t value) {
  Virtqueue* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  // Queue registers may change only while the queue is not ready (virtio 1.x 4.2.2.2).
  Virtqueue* cfg = q && !q->active() ? q : nullptr;
  auto set_low = [](uint64_t& a, uint32_t v) { a = (a & ~0xffffffffull) | v; };
  auto set_high = [](uint64_t& a, uint32_t v) { a = (a & 0xffffffffull) | (static_cast<uint64_t>(v) << 32); };
  switch (offset) {
    case kMmioDeviceFeaturesSel: device_features_sel_ = value; break;
    case kMmioDriverFeaturesSel: driver_features_sel_ = value; break;
    case kMmioDriverFeatures:
      if (status_ & kStatusFeaturesOk) break;
      if (driver_features_sel_ == 0) set_low(driver_features_, value);
      else if (driver_features_sel_ == 1) set_high(driver_features_, value);
      break;
    case kMmioQueueSel: queue_sel_ = value; break;
    case kMmioQueueNum:
      if (cfg) cfg->size = value;
      break;
    case kMmioQueueReady:
      if (!q) break;
      if (value == 1 && !q->active()) {
        if (status_ & kStatusNeedsReset) break;
        uint32_t max = device_->queue_max_size(static_cast<uint16_t>(queue_sel_));
        if (!q->activate((driver_features_ & kFeatureEventIdx) != 0, max)) {
          set_needs_reset("queue " + std::to_string(queue_sel_) + ": " + q->error_detail());
        }
      } else if (value == 0 && q->active()) {
        Virtqueue keep = *q;
        q->reset();
        q->size = keep.size;
        q->desc_addr = keep.desc_addr;
        q->avail_addr = keep.avail_addr;
        q->used_addr = keep.used_addr;
      }
      break;
    case kMmioQueueNotify:
      // Reached only without ioeventfd: hand the kick to the I/O thread all the same.
      if (value < notify_fds_.size()) signal_fd(notify_fds_[value].get());
      break;
    case kMmioInterruptAck: interrupt_status_.fetch_and(~value); break;
    case kMmioStatus: write_status(value); break;
    case kMmioQueueDescLow: if (cfg) set_low(cfg->desc_addr, value); break;
    case kMmioQueueDescHigh: if (cfg) set_high(cfg->desc_addr, value); break;
    case kMmioQueueDriverLow: if (cfg) set_low(cfg->avail_addr, value); break;
    case kMmioQueueDriverHigh: if (cfg) set_high(cfg->avail_addr, value); break;
    case kMmioQueueDeviceLow: if (cfg) set_low(cfg->used_addr, value); break;
    case kMmioQueueDeviceHigh: if (cfg) set_high(cfg->used_addr, value); break;
    default: break;  // read-only or unknown registers
  }
}

void VirtioMmio::write_status(uint32_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  // The driver only sets bits (clearing needs a reset); NEEDS_RESET is the device's.
  uint32_t next = status_ | (value & ~kStatusNeedsReset);
  if ((next & kStatusFeaturesOk) && !(status_ & kStatusFeaturesOk)) {
    const uint64_t offered = device_->device_features() | kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx;
    if ((driver_features_ & ~offered) || !(driver_features_ & kFeatureVersion1)) next &= ~kStatusFeaturesOk;
  }
  if ((next & kStatusDriverOk) && !(status_ & kStatusDriverOk)) {
    if (!(next & kStatusFeaturesOk)) {
      next &= ~kStatusDriverOk;
    } else {
      status_ = next;
      if (!(status_ & kStatusNeedsReset)) {
        try {
          device_->activate(queues_, driver_features_);
        } catch (const std::exception& e) {
          set_needs_reset(std::string("device activation failed: ") + e.what());
        }
        // Buffers the driver queued before DRIVER_OK are picked up now.
        recheck_locked();
      }
      return;
    }
  }
  status_ = next;
}

void VirtioMmio::reset_locked() {
  device_->reset();
  for (auto& q : queues_) q.reset();
  status_ = 0;
  device_features_sel_ = driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = 0;
  interrupt_status_.store(0);
}

void VirtioMmio::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  reset_locked();
}

}  // namespace berth::devices::virtio
