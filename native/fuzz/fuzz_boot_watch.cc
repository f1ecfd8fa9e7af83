// A guest writes whatever it likes to its console; the boot watch reads all of it. Any bytes,
// in any chunking, must leave it with either no problem or a bounded, printable sentence.
#include <cstddef>
#include <cstdint>
#include <span>

#include "worker/boot_watch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  berth::worker::BootWatch watch;
  std::span<const uint8_t> rest(data, size);
  while (!rest.empty()) {
    size_t chunk = 1 + rest[0] % 64;  // the first byte of each chunk picks its length
    chunk = chunk < rest.size() ? chunk : rest.size();
    watch.feed(rest.first(chunk));
    rest = rest.subspan(chunk);
    if (const auto& p = watch.problem()) {
      if (p->size() > 600) __builtin_trap();
      for (char c : *p)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) __builtin_trap();
    }
  }
  return 0;
}
