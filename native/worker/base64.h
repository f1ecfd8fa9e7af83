// Base64 (RFC 4648, with padding) for console bytes on the control socket.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace berth::worker {

std::string base64_encode(std::span<const uint8_t> bytes);
// nullopt unless text is canonical padded base64 (what the protocol's schema accepts).
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text);

}  // namespace berth::worker
