// Checks of a NIC configuration that every caller (the addon, the worker's machine spec)
// applies the same way: the MAC's text form and which settings go with which backend.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "devices/net/backend.h"

namespace berth::devices::net {

// "52:54:00:12:34:56" -> bytes; false unless six two-digit hex groups separated by ':'.
bool parse_mac(std::string_view text, std::array<uint8_t, 6>& out);

// What is wrong with the MAC (multicast, all zeros) or with settings that belong to the
// other backend (port forwards on a tap device, a bridge on NAT); nullopt when fine.
std::optional<std::string> nic_problem(const NicConfig& nic);

}  // namespace berth::devices::net
