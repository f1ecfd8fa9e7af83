// Kernel images are files the user picks: the boot loader must turn any bytes into a
// loaded image or a berth::Error, never a crash or an out-of-bounds access.
#include <cstddef>
#include <cstdint>
#include <span>

#include "boot/boot.h"
#include "common/error.h"
#include "vmm/guest_memory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static berth::vmm::GuestMemory memory(32ull << 20);
  berth::boot::BootConfig config;
  config.kernel_path = "fuzz-kernel";
  config.cmdline = "console=ttyS0";
  config.vcpu_count = 1 + (size % 4);
  // The first byte picks whether a small initrd comes along.
  std::span<const uint8_t> kernel(data, size);
  std::span<const uint8_t> initrd;
  if (size > 1 && (data[0] & 1)) initrd = kernel.subspan(0, size / 2);
  try {
    berth::boot::load_kernel_bytes(memory, kernel, initrd, config);
  } catch (const berth::Error&) {
    // Refusing bad input with an error is the expected outcome.
  }
  return 0;
}
