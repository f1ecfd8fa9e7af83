// Control-socket lines come from any local process that can open the socket, and the
// machine spec is a file on disk: both parsers must turn any bytes into a request, a spec
// or a refusal, never a crash. The first byte picks the parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/error.h"
#include "worker/machine_spec.h"
#include "worker/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1) {
    try {
      berth::worker::parse_machine_spec(text);
    } catch (const berth::Error&) {
      // a refused spec is the expected outcome
    }
  } else {
    auto r = berth::worker::parse_request(text);
    if (!r.request && r.error.empty()) __builtin_trap();  // a refusal must say why
  }
  return 0;
}
