// virtio-input takes event buffers and status buffers from queues the guest controls
// completely, and configuration selects from the guest: any ring layout, buffer sizes,
// select/subsel values and host reports must end in events written inside guest RAM (or
// the device failing the queue), never a crash or a write past the configuration space;
// the saved state must load back into a fresh device and save the same bytes.
//
// Input: an 11-byte header (the two queues' size exponents, bit 7 of the second asking
// for event index; each queue's descriptor, available and used ring addresses in 256-byte
// units; config select and subsel; a byte saying which host reports to send), then the
// bytes that fill 64 KiB of guest RAM.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "common/error.h"
#include "devices/virtio/input.h"
#include "vmm/guest_memory.h"
#include "virtio_fuzz.h"

using Context = berth::fuzz::RecordingContext;
using berth::devices::virtio::VirtioInput;
using berth::devices::virtio::Virtqueue;

namespace {

constexpr uint64_t kRam = 64 * 1024;
constexpr size_t kHeader = 11;

std::vector<uint8_t> save(const VirtioInput& d) {
  berth::state::Writer w;
  d.save_state(w);
  return w.take();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static berth::vmm::GuestMemory memory(kRam);
  static Context context;
  if (size < kHeader) return 0;
  const auto& region = memory.regions()[0];
  const size_t fill = size - kHeader < kRam ? size - kHeader : kRam;
  std::memcpy(region.host, data + kHeader, fill);
  std::memset(region.host + fill, 0, kRam - fill);

  VirtioInput tablet;
  tablet.bind(context);
  // Configuration: select/subsel, then the whole structure and a read past it.
  tablet.write_config(0, std::span<const uint8_t>(data + 8, 2));
  uint8_t cfg[VirtioInput::kConfigSize];
  tablet.read_config(0, cfg);
  if (cfg[2] > 128) abort();  // size never claims more than the union holds
  // Host reports before and after the driver is ready.
  const uint8_t reports = data[10];
  for (uint8_t i = 0; i < reports % 8; ++i) tablet.pointer_absolute(i * 5000u, 40000u - i * 7000u, i);

  Virtqueue queues[2] = {Virtqueue(memory), Virtqueue(memory)};
  for (int i = 0; i < 2; ++i) {
    Virtqueue& q = queues[i];
    q.size = 1u << (data[i] % 9);
    q.desc_addr = static_cast<uint64_t>(data[2 + 3 * i]) << 8;
    q.avail_addr = static_cast<uint64_t>(data[3 + 3 * i]) << 8;
    q.used_addr = static_cast<uint64_t>(data[4 + 3 * i]) << 8;
    q.activate((data[1] & 0x80) != 0);  // a refused queue stays inactive
  }
  context.failed = false;
  tablet.activate(queues, 0);
  tablet.queue_notify(0);
  tablet.queue_notify(1);
  for (uint8_t i = 0; i < reports / 8 % 16; ++i) {
    tablet.pointer_absolute(i * 3000u, i * 2000u, static_cast<uint8_t>(reports >> (i % 8)));
    tablet.host_event();
  }
  const auto bytes = save(tablet);
  VirtioInput copy;
  berth::state::Reader r(bytes, "fuzz");
  try {
    copy.load_state(r);
  } catch (const berth::Error&) {
    abort();
  }
  if (save(copy) != bytes) abort();
  tablet.reset();
  return 0;
}
