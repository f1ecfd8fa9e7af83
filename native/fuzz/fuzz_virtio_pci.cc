// The virtio-pci transport under a hostile driver: any sequence of configuration-space
// accesses (including the PCI_CFG window and the MSI-X capability), BAR 0 accesses of any
// width at any offset (common configuration, ISR, device configuration, notify, MSI-X table
// and PBA, unused pages) and guest-memory writes, with the I/O thread serving whatever the
// queues point at, must never crash, hang or touch memory outside guest RAM. A frozen
// transport must save, load its own record and save the same bytes again (or, when the
// guest's rings contradict the saved indices, refuse and be left reset).
//
// Input: one byte choosing the device (virtio-rng, virtio-blk with two queues over a 1 MiB
// raw image, virtio-console), then operations: an opcode byte and its arguments (see run()).
// Guest RAM is 64 KiB. Each input starts from a machine reset.
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/pci.h"
#include "devices/virtio/rng.h"
#include "disk/block_device.h"
#include "vmm/guest_memory.h"

using namespace berth;
using namespace berth::devices::virtio;

namespace {

constexpr uint64_t kRam = 64 * 1024;

class CountingMsi final : public MsiSink {
 public:
  void send_msi(uint64_t, uint32_t) override { ++sent; }
  std::atomic<uint64_t> sent{0};
};

class Line final : public vmm::IrqLine {
 public:
  void set_level(bool) override {}
};

std::string make_image() {
  char path[] = "/tmp/berth-fuzz-vpci-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) abort();
  if (ftruncate(fd, 1 << 20) != 0) abort();
  close(fd);
  return path;
}

struct Functions {
  vmm::GuestMemory memory{kRam};
  CountingMsi msi;
  Line line;
  std::string image = make_image();
  VirtioPci rng{memory, std::make_shared<VirtioRng>(), msi};
  VirtioPci blk{memory, std::make_shared<VirtioBlk>(disk::open_disk(image), "fuzz", false, 2), msi};
  VirtioPci console{memory, std::make_shared<VirtioConsole>([](std::span<const uint8_t>) {}), msi};
  Functions() {
    for (VirtioPci* f : {&rng, &blk, &console}) f->connect_intx(&line);
  }
};

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool done() const { return pos_ >= n_; }
  uint64_t take(size_t bytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes && pos_ < n_; ++i) v |= uint64_t{d_[pos_++]} << (8 * i);
    return v;
  }
  std::span<const uint8_t> rest(size_t max) {
    size_t k = std::min(max, n_ - pos_);
    std::span<const uint8_t> s(d_ + pos_, k);
    pos_ += k;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
};

// Saves and loads the function's own record. The one refusal allowed is guest memory that
// contradicts the saved ring indices (the guest may scribble over its rings at any time, as a
// corrupted memory image would): then the function must be left reset.
void round_trip(VirtioPci& f) {
  f.freeze();
  state::Writer w;
  f.save_state(w);
  const auto first = w.take();
  state::Reader r(first, "fuzz");
  try {
    f.load_state(r);
  } catch (const Error& e) {
    const std::string what = e.what();
    if (e.code() != "STATE_INVALID" ||
        (what.find("in guest memory") == std::string::npos && what.find("avail.idx") == std::string::npos)) {
      abort();
    }
    if (f.status() != 0 || f.bar_mapping(kPciBar) || f.msix_enabled()) abort();
    f.thaw();
    return;
  }
  state::Writer again;
  f.save_state(again);
  if (again.data() != first) abort();
  f.thaw();
}

void run(VirtioPci& f, vmm::GuestMemory& memory, Input& in) {
  static constexpr uint32_t kSizes[] = {1, 2, 4};
  while (!in.done()) {
    const uint8_t op = static_cast<uint8_t>(in.take(1)) % 8;
    switch (op) {
      case 0:
      case 1: {  // configuration read / write: 1, 2 or 4 bytes, not crossing a dword
        const uint32_t size = kSizes[in.take(1) % 3];
        const uint32_t offset = static_cast<uint32_t>(in.take(2) % berth::devices::pci::kExtendedConfigSize) & ~(size - 1);
        uint8_t b[4] = {};
        if (op == 0) {
          f.config_read(offset, std::span<uint8_t>(b, size));
        } else {
          const uint64_t v = in.take(4);
          for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
          f.config_write(offset, std::span<const uint8_t>(b, size));
        }
        break;
      }
      case 2:
      case 3: {  // BAR 0 read / write, 1..8 bytes anywhere in (and a little past) the BAR
        const uint32_t size = 1 + static_cast<uint32_t>(in.take(1) % 8);
        const uint64_t offset = in.take(2) % (kPciBarSize + 0x100);
        uint8_t b[8] = {};
        if (op == 2) {
          f.bar_read(kPciBar, offset, std::span<uint8_t>(b, size));
        } else {
          const uint64_t v = in.take(8);
          for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
          f.bar_write(kPciBar, offset, std::span<const uint8_t>(b, size));
        }
        break;
      }
      case 4: {  // guest memory: up to 64 bytes at an address
        const uint64_t addr = in.take(2);
        auto bytes = in.rest(in.take(1) % 65);
        if (addr + bytes.size() <= kRam) memory.write(addr, bytes);
        break;
      }
      case 5: f.sync(); break;
      case 6: round_trip(f); break;
      case 7: f.reset(); break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Functions* functions = new Functions;  // never destroyed: the I/O threads outlive the runs
  if (size < 1) return 0;
  VirtioPci* targets[] = {&functions->rng, &functions->blk, &functions->console};
  VirtioPci& f = *targets[data[0] % 3];
  f.reset();  // nothing runs on the queues while guest RAM is cleared
  functions->memory.clear();
  Input in(data + 1, size - 1);
  run(f, functions->memory, in);
  f.sync();
  f.reset();
  return 0;
}
