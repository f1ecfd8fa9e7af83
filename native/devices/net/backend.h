// The host side of a virtual network card: where the guest's Ethernet frames go and where
// the frames for the guest come from. Two backends: NAT through libslirp (user mode, no
// privileges) and a TAP device (bridged networking; needs CAP_NET_ADMIN).
//
// Threading contract:
// - send() is called by one thread at a time (the device's I/O thread). It never blocks
//   for long: a frame the host cannot take at once is dropped and counted.
// - The receive callback given to start() is called on a thread the backend owns, or
//   (NAT only) on the thread that is inside send() when the stack answers at once. It must
//   be thread-safe and must not block; it must not call back into the backend.
// - stop() may be called from any thread except the backend's own; after it returns the
//   callback is never called again. The destructor stops the backend.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace berth::devices::net {

struct PortForward {
  bool udp = false;
  std::string host_address = "127.0.0.1";  // IPv4, dotted
  uint16_t host_port = 0;
  uint16_t guest_port = 0;  // on the guest's DHCP address, 10.0.2.15
};

struct NicConfig {
  enum class Kind { kNat, kTap };
  Kind kind = Kind::kNat;
  std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  // NAT: no connections from the guest to the outside; port forwards still work.
  bool restricted = false;
  std::vector<PortForward> port_forwards;  // NAT only
  // TAP: an existing tap device to attach to, or the name for a new one ("" = the kernel
  // picks tapN). The device is attached to `bridge` when that is set (it must exist).
  std::string tap_name;
  std::string bridge;
};

// The guest network the NAT backend provides.
constexpr const char* kNatNetwork = "10.0.2.0";
constexpr const char* kNatNetmask = "255.255.255.0";
constexpr const char* kNatGateway = "10.0.2.2";
constexpr const char* kNatDns = "10.0.2.3";
constexpr const char* kNatGuestAddress = "10.0.2.15";  // the first (only) DHCP lease

struct BackendStats {
  uint64_t sent = 0, send_dropped = 0, received = 0;
};

class NetBackend {
 public:
  using Receive = std::function<void(std::span<const uint8_t> frame)>;
  virtual ~NetBackend() = default;

  // Starts delivering frames for the guest to `receive`. Called once.
  virtual void start(Receive receive) = 0;
  // One Ethernet frame from the guest (destination MAC first, no virtio header).
  virtual void send(std::span<const uint8_t> frame) = 0;
  virtual void stop() = 0;
  // What the backend is attached to, for diagnostics ("nat", "tap tap0").
  virtual std::string describe() const = 0;
  virtual BackendStats stats() const = 0;
};

// Opens the backend a NIC configuration asks for. Everything that can fail for a reason
// the user can fix (permissions, a port in use, a missing bridge) fails here, before the
// VM runs, with a berth::Error: NET_TAP_PERMISSION, NET_TAP_UNAVAILABLE, NET_TAP,
// NET_BRIDGE_NOT_FOUND, NET_PORT_FORWARD, NET_SETUP.
std::unique_ptr<NetBackend> open_backend(const NicConfig& config);

std::unique_ptr<NetBackend> open_slirp_backend(const NicConfig& config);
std::unique_ptr<NetBackend> open_tap_backend(const NicConfig& config);

}  // namespace berth::devices::net
