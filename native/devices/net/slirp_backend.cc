// NAT through libslirp: a user-mode TCP/IP stack that terminates the guest's connections
// on host sockets. Guest network 10.0.2.0/24, gateway (and host) 10.0.2.2, DNS forwarder
// 10.0.2.3, DHCP leases from 10.0.2.15.
//
// libslirp is not thread-safe: every call into it happens under mu_. The poll thread owns
// the host sockets (slirp_pollfds_fill -> poll -> slirp_pollfds_poll) and the timers;
// send() (the device's I/O thread) calls slirp_input directly, which may answer at once
// through send_packet on that same thread.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libslirp.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <list>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"
#include "devices/net/backend.h"

namespace berth::devices::net {

namespace {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

in_addr ipv4(const char* dotted) {
  in_addr a{};
  inet_pton(AF_INET, dotted, &a);
  return a;
}

class SlirpBackend final : public NetBackend {
 public:
  explicit SlirpBackend(const NicConfig& config);
  ~SlirpBackend() override;

  void start(Receive receive) override;
  void send(std::span<const uint8_t> frame) override;
  void stop() override;
  std::string describe() const override { return restricted_ ? "nat (restricted)" : "nat"; }
  BackendStats stats() const override {
    return {sent_.load(), 0, received_.load()};
  }

 private:
  struct Timer {
    SlirpTimerCb cb = nullptr;  // timer_new
    SlirpTimerId id{};           // timer_new_opaque
    bool by_id = false;
    void* cb_opaque = nullptr;
    int64_t expire_ms = -1;  // -1: not armed
  };

  // SlirpCb callbacks (opaque = this).
  static ssize_t cb_send_packet(const void* buf, size_t len, void* opaque);
  static void cb_guest_error(const char* msg, void* opaque);
  static int64_t cb_clock_get_ns(void* opaque);
  static void* cb_timer_new(SlirpTimerCb cb, void* cb_opaque, void* opaque);
  static void* cb_timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque);
  static void cb_timer_free(void* timer, void* opaque);
  static void cb_timer_mod(void* timer, int64_t expire_time, void* opaque);
  static void cb_register_poll_fd(int fd, void* opaque);
  static void cb_unregister_poll_fd(int fd, void* opaque);
  static void cb_notify(void* opaque);
  static int cb_add_poll(int fd, int events, void* opaque);
  static int cb_get_revents(int idx, void* opaque);

  void wake();
  void loop();
  void run_timers();  // under mu_

  bool restricted_;
  SlirpCb callbacks_{};
  std::mutex mu_;
  Slirp* slirp_ = nullptr;
  std::list<Timer> timers_;
  std::vector<pollfd> pollfds_;  // poll thread only
  Receive receive_;
  UniqueFd wake_fd_;
  std::atomic<bool> quit_{false};
  std::thread thread_;
  std::atomic<uint64_t> sent_{0}, received_{0};
};

SlirpBackend::SlirpBackend(const NicConfig& config) : restricted_(config.restricted) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw SystemError("NET_SETUP", "eventfd for the NAT backend", errno);
  wake_fd_ = UniqueFd(fd);

  callbacks_.send_packet = cb_send_packet;
  callbacks_.guest_error = cb_guest_error;
  callbacks_.clock_get_ns = cb_clock_get_ns;
  callbacks_.timer_new = cb_timer_new;
  callbacks_.timer_free = cb_timer_free;
  callbacks_.timer_mod = cb_timer_mod;
  callbacks_.register_poll_fd = cb_register_poll_fd;
  callbacks_.unregister_poll_fd = cb_unregister_poll_fd;
  callbacks_.notify = cb_notify;
  callbacks_.timer_new_opaque = cb_timer_new_opaque;

  SlirpConfig cfg{};
  cfg.version = 4 < SLIRP_CONFIG_VERSION_MAX ? 4 : SLIRP_CONFIG_VERSION_MAX;
  cfg.restricted = config.restricted ? 1 : 0;
  cfg.in_enabled = true;
  cfg.vnetwork = ipv4(kNatNetwork);
  cfg.vnetmask = ipv4(kNatNetmask);
  cfg.vhost = ipv4(kNatGateway);
  cfg.in6_enabled = false;
  cfg.vhostname = "berth";
  cfg.vdhcp_start = ipv4(kNatGuestAddress);
  cfg.vnameserver = ipv4(kNatDns);
  slirp_ = slirp_new(&cfg, &callbacks_, this);
  if (!slirp_) throw Error("NET_SETUP", "the NAT network stack (libslirp) could not be created");

  for (const auto& f : config.port_forwards) {
    in_addr host{};
    if (inet_pton(AF_INET, f.host_address.c_str(), &host) != 1) {
      slirp_cleanup(slirp_);
      throw Error("NET_PORT_FORWARD", "port forward host address " + f.host_address + " is not an IPv4 address");
    }
    if (slirp_add_hostfwd(slirp_, f.udp ? 1 : 0, host, f.host_port, ipv4(kNatGuestAddress), f.guest_port) < 0) {
      int err = errno;
      slirp_cleanup(slirp_);
      throw Error("NET_PORT_FORWARD", std::string("cannot forward ") + (f.udp ? "udp" : "tcp") + " " +
                                          f.host_address + ":" + std::to_string(f.host_port) + " to the guest: " +
                                          "the host port is in use or not allowed" +
                                          (err ? std::string(" (") + std::strerror(err) + ")" : std::string()));
    }
  }
}

SlirpBackend::~SlirpBackend() {
  stop();
  std::lock_guard<std::mutex> lock(mu_);
  if (slirp_) slirp_cleanup(slirp_);
  slirp_ = nullptr;
}

void SlirpBackend::start(Receive receive) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    receive_ = std::move(receive);
  }
  thread_ = std::thread([this] { loop(); });
}

void SlirpBackend::stop() {
  quit_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  receive_ = nullptr;
}

void SlirpBackend::send(std::span<const uint8_t> frame) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!slirp_) return;
  sent_.fetch_add(1, std::memory_order_relaxed);
  slirp_input(slirp_, frame.data(), static_cast<int>(frame.size()));
  // Whatever slirp now wants to send to the host waits for the poll thread; wake it so
  // it polls the (maybe new) sockets.
  wake();
}

void SlirpBackend::wake() {
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof one);
}

ssize_t SlirpBackend::cb_send_packet(const void* buf, size_t len, void* opaque) {
  auto* self = static_cast<SlirpBackend*>(opaque);  // mu_ is held (inside a slirp call)
  self->received_.fetch_add(1, std::memory_order_relaxed);
  if (self->receive_) self->receive_(std::span<const uint8_t>(static_cast<const uint8_t*>(buf), len));
  return static_cast<ssize_t>(len);
}

void SlirpBackend::cb_guest_error(const char* /*msg*/, void* /*opaque*/) {
  // A malformed packet from the guest: slirp drops it; nothing for the host to do.
}

int64_t SlirpBackend::cb_clock_get_ns(void* /*opaque*/) { return now_ns(); }

void* SlirpBackend::cb_timer_new(SlirpTimerCb cb, void* cb_opaque, void* opaque) {
  auto* self = static_cast<SlirpBackend*>(opaque);
  Timer t;
  t.cb = cb;
  t.cb_opaque = cb_opaque;
  self->timers_.push_back(t);
  return &self->timers_.back();
}

void* SlirpBackend::cb_timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque) {
  auto* self = static_cast<SlirpBackend*>(opaque);
  Timer t;
  t.id = id;
  t.by_id = true;
  t.cb_opaque = cb_opaque;
  self->timers_.push_back(t);
  return &self->timers_.back();
}

void SlirpBackend::cb_timer_free(void* timer, void* opaque) {
  auto* self = static_cast<SlirpBackend*>(opaque);
  self->timers_.remove_if([timer](const Timer& t) { return &t == timer; });
}

void SlirpBackend::cb_timer_mod(void* timer, int64_t expire_time, void* opaque) {
  static_cast<Timer*>(timer)->expire_ms = expire_time;
  static_cast<SlirpBackend*>(opaque)->wake();
}

void SlirpBackend::cb_register_poll_fd(int /*fd*/, void* /*opaque*/) {}
void SlirpBackend::cb_unregister_poll_fd(int /*fd*/, void* /*opaque*/) {}
void SlirpBackend::cb_notify(void* opaque) { static_cast<SlirpBackend*>(opaque)->wake(); }

int SlirpBackend::cb_add_poll(int fd, int events, void* opaque) {
  auto* self = static_cast<SlirpBackend*>(opaque);
  pollfd p{fd, 0, 0};
  if (events & SLIRP_POLL_IN) p.events |= POLLIN;
  if (events & SLIRP_POLL_OUT) p.events |= POLLOUT;
  if (events & SLIRP_POLL_PRI) p.events |= POLLPRI;
  self->pollfds_.push_back(p);
  return static_cast<int>(self->pollfds_.size() - 1);
}

int SlirpBackend::cb_get_revents(int idx, void* opaque) {
  auto* self = static_cast<SlirpBackend*>(opaque);
  if (idx < 0 || static_cast<size_t>(idx) >= self->pollfds_.size()) return 0;
  short r = self->pollfds_[static_cast<size_t>(idx)].revents;
  int out = 0;
  if (r & POLLIN) out |= SLIRP_POLL_IN;
  if (r & POLLOUT) out |= SLIRP_POLL_OUT;
  if (r & POLLPRI) out |= SLIRP_POLL_PRI;
  if (r & POLLERR) out |= SLIRP_POLL_ERR;
  if (r & POLLHUP) out |= SLIRP_POLL_HUP;
  return out;
}

void SlirpBackend::run_timers() {
  int64_t now_ms = now_ns() / 1000000;
  // A callback may free or re-arm timers, so look for one due timer at a time.
  for (bool fired = true; fired;) {
    fired = false;
    for (auto& t : timers_) {
      if (t.expire_ms >= 0 && t.expire_ms <= now_ms) {
        t.expire_ms = -1;
        if (t.by_id) slirp_handle_timer(slirp_, t.id, t.cb_opaque);
        else if (t.cb) t.cb(t.cb_opaque);
        fired = true;
        break;
      }
    }
  }
}

void SlirpBackend::loop() {
  while (!quit_) {
    uint32_t timeout = 1000;
    {
      std::lock_guard<std::mutex> lock(mu_);
      int64_t now_ms = now_ns() / 1000000;
      for (const auto& t : timers_) {
        if (t.expire_ms < 0) continue;
        int64_t left = t.expire_ms - now_ms;
        if (left < 0) left = 0;
        if (left < timeout) timeout = static_cast<uint32_t>(left);
      }
      pollfds_.clear();
      slirp_pollfds_fill(slirp_, &timeout, cb_add_poll, this);
      pollfds_.push_back({wake_fd_.get(), POLLIN, 0});
    }
    int n = ::poll(pollfds_.data(), pollfds_.size(), static_cast<int>(timeout));
    if (pollfds_.back().revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_.get(), &v, sizeof v);
    }
    if (quit_) break;
    std::lock_guard<std::mutex> lock(mu_);
    slirp_pollfds_poll(slirp_, n < 0 ? 1 : 0, cb_get_revents, this);
    run_timers();
  }
}

}  // namespace

std::unique_ptr<NetBackend> open_slirp_backend(const NicConfig& config) {
  return std::make_unique<SlirpBackend>(config);
}

std::unique_ptr<NetBackend> open_backend(const NicConfig& config) {
  if (config.kind == NicConfig::Kind::kTap) return open_tap_backend(config);
  return open_slirp_backend(config);
}

}  // namespace berth::devices::net
