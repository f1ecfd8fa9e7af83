// Bridged networking through a TAP device: frames go to and come from the host kernel's
// network stack as if the guest were plugged into a host interface. Creating a tap device
// (or attaching one to a bridge) needs CAP_NET_ADMIN; an existing persistent tap owned by
// the user can be opened without it.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "devices/net/backend.h"

namespace berth::devices::net {

namespace {

std::string tap_label(const std::string& name) {
  return name.empty() ? std::string("a tap device") : "tap device " + name;
}

// `what` says what was attempted: "creating tap device tap0".
Error permission_error(const std::string& name, const std::string& what) {
  return Error("NET_TAP_PERMISSION",
               what + " needs CAP_NET_ADMIN: run Berth with that capability (e.g. sudo setcap cap_net_admin+ep on "
                   "the executable), create the device beforehand for your user (ip tuntap add dev " +
                   (name.empty() ? std::string("tap0") : name) + " mode tap user $USER), or use NAT");
}

void set_up(const std::string& name) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  UniqueFd sock(s);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0) return;
  if (ifr.ifr_flags & IFF_UP) return;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  // Best effort: a user without CAP_NET_ADMIN may use a pre-made tap but not bring it up.
  (void)ioctl(sock.get(), SIOCSIFFLAGS, &ifr);
}

void attach_to_bridge(const std::string& tap, const std::string& bridge) {
  struct stat st;
  std::string sys = "/sys/class/net/" + bridge + "/bridge";
  if (::stat(sys.c_str(), &st) != 0) {
    throw Error("NET_BRIDGE_NOT_FOUND", "bridge " + bridge + " does not exist (or is not a bridge): create it "
                                        "(ip link add " + bridge + " type bridge) or leave the bridge out");
  }
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw SystemError("NET_TAP", "socket for the bridge ioctl", errno);
  UniqueFd sock(s);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, tap.c_str(), IFNAMSIZ - 1);
  if (ioctl(sock.get(), SIOCGIFINDEX, &ifr) < 0) throw SystemError("NET_TAP", "index of tap device " + tap, errno);
  int index = ifr.ifr_ifindex;
  ifr = ifreq{};
  std::strncpy(ifr.ifr_name, bridge.c_str(), IFNAMSIZ - 1);
  ifr.ifr_ifindex = index;
  if (ioctl(sock.get(), SIOCBRADDIF, &ifr) < 0) {
    int err = errno;
    if (err == EPERM || err == EACCES) throw permission_error(tap, "attaching tap device " + tap + " to bridge " + bridge);
    if (err == EBUSY) return;  // already a port of a bridge (this one, presumably)
    throw SystemError("NET_TAP", "attaching tap device " + tap + " to bridge " + bridge, err);
  }
}

class TapBackend final : public NetBackend {
 public:
  explicit TapBackend(const NicConfig& config) {
    if (config.tap_name.size() >= IFNAMSIZ) {
      throw Error("NET_TAP", "tap device name " + config.tap_name + " is longer than " +
                                 std::to_string(IFNAMSIZ - 1) + " characters");
    }
    int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT || err == ENODEV || err == ENXIO) {
        throw Error("NET_TAP_UNAVAILABLE", "/dev/net/tun is missing, so tap device " +
                                               (config.tap_name.empty() ? std::string("(any)") : config.tap_name) +
                                               " cannot be opened: load the tun module (modprobe tun) or use NAT");
      }
      if (err == EPERM || err == EACCES) throw permission_error(config.tap_name, "opening /dev/net/tun for " + tap_label(config.tap_name));
      throw SystemError("NET_TAP", "opening /dev/net/tun", err);
    }
    fd_ = UniqueFd(fd);
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::strncpy(ifr.ifr_name, config.tap_name.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd_.get(), TUNSETIFF, &ifr) < 0) {
      int err = errno;
      if (err == EPERM || err == EACCES) throw permission_error(config.tap_name, "creating " + tap_label(config.tap_name));
      if (err == EBUSY) throw Error("NET_TAP", "tap device " + config.tap_name + " is in use by another program");
      if (err == EINVAL) {
        throw Error("NET_TAP", "interface " + config.tap_name + " exists but is not a tap device");
      }
      throw SystemError("NET_TAP", "creating tap device " + config.tap_name, err);
    }
    name_ = ifr.ifr_name;
    set_up(name_);
    if (!config.bridge.empty()) attach_to_bridge(name_, config.bridge);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) throw SystemError("NET_SETUP", "eventfd for the tap backend", errno);
    stop_fd_ = UniqueFd(efd);
  }
  ~TapBackend() override { stop(); }

  void start(Receive receive) override {
    receive_ = std::move(receive);
    thread_ = std::thread([this] { loop(); });
  }

  void send(std::span<const uint8_t> frame) override {
    ssize_t n;
    do {
      n = ::write(fd_.get(), frame.data(), frame.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      dropped_.fetch_add(1, std::memory_order_relaxed);  // EAGAIN (queue full), link down, ...
      return;
    }
    sent_.fetch_add(1, std::memory_order_relaxed);
  }

  void stop() override {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (!thread_.joinable()) return;
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }

  std::string describe() const override { return "tap " + name_; }
  BackendStats stats() const override { return {sent_.load(), dropped_.load(), received_.load()}; }

 private:
  void loop() {
    std::vector<uint8_t> buf(65536);
    for (;;) {
      pollfd p[2] = {{fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents) return;
      if (!(p[0].revents & POLLIN)) {
        if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) return;
        continue;
      }
      for (;;) {
        ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
        if (n <= 0) break;
        received_.fetch_add(1, std::memory_order_relaxed);
        receive_(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
      }
    }
  }

  UniqueFd fd_, stop_fd_;
  std::string name_;
  Receive receive_;
  std::mutex stop_mu_;
  std::thread thread_;
  std::atomic<uint64_t> sent_{0}, dropped_{0}, received_{0};
};

}  // namespace

std::unique_ptr<NetBackend> open_tap_backend(const NicConfig& config) { return std::make_unique<TapBackend>(config); }

}  // namespace berth::devices::net
