// Saved-state records come from a state file on disk, which is untrusted: any bytes given
// to a device's load_state must end in a loaded device or a berth::Error STATE_INVALID /
// STATE_VERSION, never a crash, a hang, or an access outside guest memory. A record that
// loads must save back to the same bytes (nothing is half-read or invented), and a loaded
// transport must then run: its I/O thread serves whatever the restored queues point at in
// guest memory until freeze() takes it back.
//
// Input: one byte choosing the device (virtio-blk or virtio-console behind virtio-mmio,
// the UART, the RTC, the i8042, ACPI sleep), a u16 count of bytes that fill the 64 KiB of
// guest RAM from address 0, those bytes, then the record.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/acpi_sleep.h"
#include "devices/cmos_rtc.h"
#include "devices/input/i8042.h"
#include "devices/uart16550.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/mmio.h"
#include "disk/block_device.h"
#include "vmm/guest_memory.h"

using namespace berth;
using namespace berth::devices;

namespace {

constexpr uint64_t kRam = 64 * 1024;

class NoInterrupt final : public virtio::EdgeInterrupt {
 public:
  void trigger() override {}
};
class NoIrqLine final : public vmm::IrqLine {
 public:
  void set_level(bool) override {}
};

std::string make_image() {
  char path[] = "/tmp/berth-fuzz-state-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) abort();
  if (ftruncate(fd, 1 << 20) != 0) abort();
  close(fd);
  return path;
}

struct Devices {
  vmm::GuestMemory memory{kRam};
  NoInterrupt irq;
  NoIrqLine line;
  std::string image = make_image();
  virtio::VirtioMmio blk{memory, std::make_shared<virtio::VirtioBlk>(disk::open_disk(image), "fuzz", false, 2), irq};
  virtio::VirtioMmio console{memory, std::make_shared<virtio::VirtioConsole>([](std::span<const uint8_t>) {}), irq};
  Uart16550 uart{line, [](std::span<const uint8_t>) {}};
  CmosRtc rtc{[] { return int64_t{1709214356}; }};
  input::I8042 kbc{line, line, [] {}};
  AcpiSleep sleep{5, [] {}};
  Devices() {
    // Frozen between inputs: nothing touches guest memory while the next input fills it.
    blk.freeze();
    console.freeze();
  }
};

// Loads, then checks that saving gives back exactly the bytes the load consumed.
template <typename Device>
bool round_trip(Device& d, std::span<const uint8_t> record) {
  state::Reader r(record, "fuzz");
  try {
    d.load_state(r);
  } catch (const Error& e) {
    if (e.code() != "STATE_INVALID" && e.code() != "STATE_VERSION") abort();
    return false;
  }
  state::Writer w;
  d.save_state(w);
  const auto& saved = w.data();
  if (saved.size() > record.size() || std::memcmp(saved.data(), record.data(), saved.size()) != 0) abort();
  return true;
}

// As round_trip, for a device whose older record versions load: a record that loads must
// save to either the same bytes or (an older version) bytes that load back and save again
// unchanged.
template <typename Device>
void round_trip_upgrading(Device& d, std::span<const uint8_t> record) {
  state::Reader r(record, "fuzz");
  try {
    d.load_state(r);
  } catch (const Error& e) {
    if (e.code() != "STATE_INVALID" && e.code() != "STATE_VERSION") abort();
    return;
  }
  state::Writer w;
  d.save_state(w);
  const auto saved = w.take();
  if (saved.size() <= record.size() && std::memcmp(saved.data(), record.data(), saved.size()) == 0) return;
  // Only an older version may save differently (it loaded, so its header is whole).
  uint32_t name_len = 0, version = 0, current = 0;
  std::memcpy(&name_len, record.data(), 4);
  std::memcpy(&version, record.data() + 4 + name_len, 4);
  std::memcpy(&current, saved.data() + 4 + name_len, 4);
  if (version >= current) abort();
  if (!round_trip(d, saved)) abort();
}

void run(virtio::VirtioMmio& transport) {
  transport.thaw();
  transport.sync();
  transport.freeze();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Devices* devices = new Devices;  // never destroyed: the I/O threads outlive the runs
  if (size < 3) return 0;
  const uint8_t target = data[0] % 6;
  size_t fill = static_cast<size_t>(data[1] | (data[2] << 8));
  if (fill > size - 3) fill = size - 3;
  if (fill > kRam) fill = kRam;
  auto& region = devices->memory.regions()[0];
  std::memcpy(region.host, data + 3, fill);
  std::memset(region.host + fill, 0, kRam - fill);
  std::span<const uint8_t> record(data + 3 + fill, size - 3 - fill);

  switch (target) {
    case 0:
      if (round_trip(devices->blk, record)) run(devices->blk);
      break;
    case 1:
      if (round_trip(devices->console, record)) run(devices->console);
      break;
    case 2: round_trip(devices->uart, record); break;
    case 3: round_trip(devices->rtc, record); break;
    case 4: round_trip_upgrading(devices->kbc, record); break;
    case 5: round_trip(devices->sleep, record); break;
  }
  return 0;
}
