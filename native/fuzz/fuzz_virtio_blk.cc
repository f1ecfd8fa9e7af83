// virtio-blk requests come from guest memory the guest controls completely: any header,
// segment layout, sector, length and DISCARD/WRITE_ZEROES segment list must end in a
// status byte written inside guest RAM (or, for a chain without a writable byte, the
// device failing the queue), never a crash, a hang, or disk I/O outside the image.
//
// Input: an 8-byte header (queue size exponent, ring addresses, read-only flag, event
// index), then the bytes that fill 64 KiB of guest RAM. The disk is a 1 MiB raw image in
// a temporary file, shared by all runs.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "devices/virtio/blk.h"
#include "disk/block_device.h"
#include "vmm/guest_memory.h"
#include "virtio_fuzz.h"

using berth::fuzz::u16_at;
using Context = berth::fuzz::RecordingContext;
using berth::devices::virtio::VirtioBlk;
using berth::devices::virtio::Virtqueue;

namespace {

constexpr uint64_t kRam = 64 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static berth::vmm::GuestMemory memory(kRam);
  static const std::string image = berth::fuzz::temp_image("blk", 1 << 20);
  static Context context;
  static std::unique_ptr<VirtioBlk> rw, ro;
  if (!rw) {
    rw = std::make_unique<VirtioBlk>(berth::disk::open_disk(image), "fuzz-rw");
    rw->bind(context);
    ro = std::make_unique<VirtioBlk>(berth::disk::open_disk(image, {.read_only = true}), "fuzz-ro", true);
    ro->bind(context);
  }
  if (size < 8) return 0;
  const auto& region = memory.regions()[0];
  size_t fill = size - 8 < kRam ? size - 8 : kRam;
  std::memcpy(region.host, data + 8, fill);
  std::memset(region.host + fill, 0, kRam - fill);

  VirtioBlk& blk = (data[7] & 1) ? *ro : *rw;
  Virtqueue q(memory);
  q.size = 1u << (data[0] % 9);  // 1..256
  q.desc_addr = u16_at(data + 1) & ~uint64_t{15};
  q.avail_addr = u16_at(data + 3) & ~uint64_t{1};
  q.used_addr = u16_at(data + 5) & ~uint64_t{3};
  if (!q.activate((data[7] & 2) != 0, VirtioBlk::kQueueSize)) return 0;
  std::span<Virtqueue> queues(&q, 1);
  context.failed = false;
  blk.activate(queues, 0);
  blk.queue_notify(0);
  // Finish what went to the disk; a throttled queue is popped further as requests complete.
  blk.run_until_idle();
  blk.reset();
  return 0;
}
