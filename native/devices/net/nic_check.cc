#include "devices/net/nic_check.h"

namespace berth::devices::net {

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool parse_mac(std::string_view s, std::array<uint8_t, 6>& out) {
  if (s.size() != 17) return false;
  for (size_t i = 0; i < 6; ++i) {
    int hi = hex_digit(s[3 * i]), lo = hex_digit(s[3 * i + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':')) return false;
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

std::optional<std::string> nic_problem(const NicConfig& nic) {
  if (nic.mac[0] & 1) return "the MAC address is a multicast address; use a unicast one (first byte even)";
  if (nic.mac == std::array<uint8_t, 6>{}) return "the MAC address must not be all zeros";
  if (nic.kind == NicConfig::Kind::kTap && (!nic.port_forwards.empty() || nic.restricted)) {
    return "port forwards and restricted mode apply to NAT only, not to a tap device";
  }
  if (nic.kind == NicConfig::Kind::kNat && (!nic.tap_name.empty() || !nic.bridge.empty())) {
    return "a tap name and a bridge apply to a tap device only";
  }
  return std::nullopt;
}

}  // namespace berth::devices::net
