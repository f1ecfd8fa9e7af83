// virtio-scsi requests and control messages come from guest memory the guest controls
// completely: any request header, LUN bytes, CDB, response and data-in layout, and any
// cdb_size/sense_size the driver wrote, must end in a response written inside guest RAM
// (or the device failing the queue), never a crash, a hang, or a read outside the image.
//
// Input: a 16-byte header (for the control and the request queue each: queue size
// exponent, ring addresses; then cdb_size, sense_size, which queue is notified first), then
// the bytes that fill 64 KiB of guest RAM. Target 0 holds a 256 KiB image shared by all
// runs, target 1 is empty.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "devices/scsi/cdrom.h"
#include "devices/virtio/scsi.h"
#include "vmm/guest_memory.h"
#include "virtio_fuzz.h"

using berth::fuzz::u16_at;
using Context = berth::fuzz::RecordingContext;
using berth::devices::virtio::VirtioScsi;
using berth::devices::virtio::Virtqueue;

namespace {

constexpr uint64_t kRam = 64 * 1024;

bool setup(Virtqueue& q, const uint8_t* h) {
  q.size = 1u << (h[0] % 9);  // 1..256
  q.desc_addr = u16_at(h + 1) & ~uint64_t{15};
  q.avail_addr = u16_at(h + 3) & ~uint64_t{1};
  q.used_addr = u16_at(h + 5) & ~uint64_t{3};
  return q.activate(false, VirtioScsi::kQueueSize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static berth::vmm::GuestMemory memory(kRam);
  static const std::string image = berth::fuzz::temp_image("vscsi", 256 << 10);
  static Context context;
  static std::unique_ptr<VirtioScsi> scsi;
  if (!scsi) {
    auto drive = std::make_shared<berth::devices::scsi::ScsiCdrom>("FUZZ");
    drive->insert(image);
    scsi = std::make_unique<VirtioScsi>(
        std::vector<std::shared_ptr<berth::devices::scsi::Target>>{drive, std::make_shared<berth::devices::scsi::ScsiCdrom>()});
    scsi->bind(context);
  }
  constexpr size_t kHeader = 16;
  if (size < kHeader) return 0;
  const auto& region = memory.regions()[0];
  size_t fill = size - kHeader < kRam ? size - kHeader : kRam;
  std::memcpy(region.host, data + kHeader, fill);
  std::memset(region.host + fill, 0, kRam - fill);

  std::vector<Virtqueue> queues(3, Virtqueue(memory));
  const bool control_ok = setup(queues[0], data);
  const bool request_ok = setup(queues[2], data + 7);
  if (!control_ok && !request_ok) return 0;
  const uint32_t cdb_size = data[14] % 40, sense_size = data[15] & 0x7f;
  scsi->write_config(24, std::span(reinterpret_cast<const uint8_t*>(&cdb_size), 4));
  scsi->write_config(20, std::span(reinterpret_cast<const uint8_t*>(&sense_size), 4));
  context.failed = false;
  scsi->activate(queues, 0);
  if (data[15] & 0x80) scsi->queue_notify(VirtioScsi::kControlQueue);
  scsi->queue_notify(VirtioScsi::kRequestQueue);
  scsi->run_until_idle();
  scsi->reset();
  return 0;
}
