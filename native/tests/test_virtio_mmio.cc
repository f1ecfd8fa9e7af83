// The virtio-mmio transport's register protocol with virtio-rng and virtio-console behind
// it, the fallback notification path, DEVICE_NEEDS_RESET, and the KVM ioeventfd/irqfd
// registrations the machine uses.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

#include "common/unique_fd.h"
#include "devices/virtio/console.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/rng.h"
#include "hv/hv.h"
#include "tests/check.h"
#include "tests/mmio_driver.h"
#include "tests/virtio_driver.h"
#include "vmm/cpuid.h"

using namespace berth;
using namespace berth::devices::virtio;
using namespace berth::test;

namespace {

constexpr uint64_t kBuf = 0x40000;

}  // namespace

TEST(virtio_mmio_identifies_itself) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  CHECK_EQ(rd(m, kMmioMagic), 0x74726976u);
  CHECK_EQ(rd(m, kMmioVersion), 2u);
  CHECK_EQ(rd(m, kMmioDeviceId), 4u);
  CHECK_EQ(rd(m, kMmioVendorId), 0x48545242u);
  wr(m, kMmioDeviceFeaturesSel, 1);
  CHECK_EQ(rd(m, kMmioDeviceFeatures), 1u);  // VIRTIO_F_VERSION_1 (bit 32)
  wr(m, kMmioDeviceFeaturesSel, 0);
  CHECK((rd(m, kMmioDeviceFeatures) & (1u << 28)) != 0);  // indirect descriptors
  wr(m, kMmioDeviceFeaturesSel, 7);
  CHECK_EQ(rd(m, kMmioDeviceFeatures), 0u);
  wr(m, kMmioQueueSel, 0);
  CHECK_EQ(rd(m, kMmioQueueNumMax), 256u);
  wr(m, kMmioQueueSel, 1);
  CHECK_EQ(rd(m, kMmioQueueNumMax), 0u);  // no such queue
  CHECK_EQ(rd(m, kMmioShmLenLow), 0xffffffffu);
  // Registers answer 32-bit accesses only; narrower ones read 0 and writes are dropped.
  uint8_t b = 0xaa;
  m.read(kMmioMagic, std::span<uint8_t>(&b, 1));
  CHECK_EQ(b, 0);
  uint8_t two = 2;
  m.write(kMmioQueueSel, std::span<const uint8_t>(&two, 1));
  CHECK_EQ(rd(m, kMmioQueueSel), 0u);  // write-only register reads 0 either way
}

TEST(virtio_mmio_features_ok_needs_version_1_and_offered_bits_only) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  CHECK(!negotiate(m, 0));                              // legacy driver: refused
  CHECK(!negotiate(m, kFeatureVersion1 | (1ull << 40)));  // a bit never offered
  CHECK(negotiate(m, kFeatureVersion1 | kFeatureEventIdx));
  // Features are frozen after FEATURES_OK.
  wr(m, kMmioDriverFeaturesSel, 0);
  wr(m, kMmioDriverFeatures, 0xffffffff);
  wr(m, kMmioStatus, rd(m, kMmioStatus) | kStatusDriverOk);
  CHECK((rd(m, kMmioStatus) & kStatusNeedsReset) == 0);
  // Status bits are only cleared by a reset.
  wr(m, kMmioStatus, kStatusAcknowledge);
  CHECK((rd(m, kMmioStatus) & kStatusDriverOk) != 0);
  wr(m, kMmioStatus, 0);
  CHECK_EQ(rd(m, kMmioStatus), 0u);
}

TEST(virtio_mmio_driver_ok_without_features_ok_is_ignored) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  wr(m, kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  CHECK((rd(m, kMmioStatus) & kStatusDriverOk) == 0);
}

TEST(virtio_rng_fills_a_request_through_the_fallback_notify_and_interrupts) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  TestRing r(mem, 16);
  CHECK(negotiate(m));
  setup_queue(m, 0, r);
  CHECK_EQ(rd(m, kMmioQueueReady), 1u);
  CHECK_EQ(rd(m, kMmioQueueNum), 16u);
  CHECK_EQ(rd(m, kMmioQueueDescLow), static_cast<uint32_t>(r.desc));
  driver_ok(m);
  for (int round = 0; round < 2; ++round) {
    r.set_desc(round, kBuf + 64 * round, 64, kDescWrite);
    r.offer(static_cast<uint16_t>(round));
    wr(m, kMmioQueueNotify, 0);  // without ioeventfd the register write signals the I/O thread
    m.sync();
    CHECK_EQ(r.used_idx(), round + 1);
    CHECK_EQ(r.used_len(static_cast<uint16_t>(round)), 64u);
  }
  std::vector<uint8_t> a(64), b(64), zero(64, 0);
  mem.read(kBuf, a);
  mem.read(kBuf + 64, b);
  CHECK(a != b);
  CHECK(a != zero);
  CHECK((rd(m, kMmioInterruptStatus) & kInterruptUsedBuffer) != 0);
  CHECK(irq.count.load() >= 1);
  wr(m, kMmioInterruptAck, kInterruptUsedBuffer);
  CHECK_EQ(rd(m, kMmioInterruptStatus), 0u);
  // Queue registers are frozen while the queue is ready.
  wr(m, kMmioQueueNum, 4);
  CHECK_EQ(rd(m, kMmioQueueNum), 16u);
  // Notifying a queue that does not exist is harmless.
  wr(m, kMmioQueueNotify, 9);
  m.sync();
  CHECK_EQ(rd(m, kMmioStatus) & kStatusNeedsReset, 0u);
}

TEST(virtio_rng_buffers_queued_before_driver_ok_are_served) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  TestRing r(mem, 8);
  CHECK(negotiate(m));
  setup_queue(m, 0, r);
  r.set_desc(0, kBuf, 32, kDescWrite);
  r.offer(0);
  wr(m, kMmioQueueNotify, 0);  // before DRIVER_OK: ignored then, picked up at DRIVER_OK
  m.sync();
  CHECK_EQ(r.used_idx(), 0);
  driver_ok(m);
  m.sync();
  CHECK_EQ(r.used_idx(), 1);
}

TEST(virtio_mmio_bad_queue_size_sets_needs_reset_and_reset_recovers) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  for (uint32_t bad : {100u, 512u, 0u, 65536u}) {
    TestRing r(mem, 8);
    CHECK(negotiate(m));
    r.size = bad;
    setup_queue(m, 0, r);
    CHECK_EQ(rd(m, kMmioQueueReady), 0u);
    CHECK((rd(m, kMmioStatus) & kStatusNeedsReset) != 0);
    CHECK(m.last_error().find("bad queue size") != std::string::npos);
    wr(m, kMmioStatus, 0);
    CHECK_EQ(rd(m, kMmioStatus), 0u);
    r.size = 8;
    CHECK(negotiate(m));
    setup_queue(m, 0, r);
    CHECK_EQ(rd(m, kMmioQueueReady), 1u);
  }
}

TEST(virtio_rng_hostile_chains_set_needs_reset_with_a_config_interrupt) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioRng>(), irq);
  struct Case {
    const char* name;
    void (*make)(TestRing&);
    const char* error;
  };
  const Case cases[] = {
      {"loop",
       [](TestRing& r) {
         r.set_desc(0, kBuf, 8, kDescWrite | kDescNext, 1);
         r.set_desc(1, kBuf, 8, kDescWrite | kDescNext, 0);
         r.offer(0);
       },
       "chain too long"},
      {"outside RAM", [](TestRing& r) { r.set_desc(0, 0xe0000000ull, 64, kDescWrite); r.offer(0); }, "outside guest RAM"},
      {"huge length", [](TestRing& r) { r.set_desc(0, kBuf, 0xffffffffu, kDescWrite); r.offer(0); }, "outside guest RAM"},
      {"read-only buffer", [](TestRing& r) { r.set_desc(0, kBuf, 64, 0); r.offer(0); }, "virtio-rng"},
      {"avail jump", [](TestRing& r) { r.set_desc(0, kBuf, 64, kDescWrite); r.set_avail_idx(100); }, "too far ahead"},
  };
  for (const auto& k : cases) {
    TestRing r(mem, 8);
    mem.clear();
    CHECK(negotiate(m));
    setup_queue(m, 0, r);
    driver_ok(m);
    int before = irq.count.load();
    k.make(r);
    wr(m, kMmioQueueNotify, 0);
    m.sync();
    uint32_t status = rd(m, kMmioStatus);
    if (!(status & kStatusNeedsReset)) ::berth::test::fail(__FILE__, __LINE__, std::string("no reset for ") + k.name);
    CHECK((rd(m, kMmioInterruptStatus) & kInterruptConfigChange) != 0);
    CHECK(irq.count.load() > before);
    CHECK(m.last_error().find(k.error) != std::string::npos);
    // Further kicks are ignored until the driver resets the device.
    wr(m, kMmioQueueNotify, 0);
    m.sync();
    wr(m, kMmioStatus, 0);
    CHECK_EQ(rd(m, kMmioInterruptStatus), 0u);
    // And then it works again.
    TestRing good(mem, 8);
    mem.clear();
    CHECK(negotiate(m));
    setup_queue(m, 0, good);
    driver_ok(m);
    good.set_desc(0, kBuf, 64, kDescWrite);
    good.offer(0);
    wr(m, kMmioQueueNotify, 0);
    m.sync();
    CHECK_EQ(good.used_idx(), 1);
    CHECK_EQ(rd(m, kMmioStatus) & kStatusNeedsReset, 0u);
  }
}

TEST(virtio_console_carries_bytes_both_ways) {
  vmm::GuestMemory mem(1 << 20);
  CountingInterrupt irq;
  std::mutex mu;
  std::string out;
  auto console = std::make_shared<VirtioConsole>([&](std::span<const uint8_t> b) {
    std::lock_guard<std::mutex> lock(mu);
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  });
  VirtioMmio m(mem, console, irq);
  CHECK_EQ(rd(m, kMmioDeviceId), 3u);
  // Config space: 12 bytes of zeros, then nothing.
  CHECK_EQ(rd(m, kMmioConfig), 0u);
  CHECK_EQ(rd(m, kMmioConfig + 12), 0u);
  const char hello[] = "early";
  console->enqueue_input(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(hello), 5));
  TestRing rx(mem, 8, 0x1000), tx(mem, 8, 0x10000);
  CHECK(negotiate(m));
  setup_queue(m, 0, rx);
  setup_queue(m, 1, tx);
  rx.set_desc(0, kBuf, 3, kDescWrite);
  rx.set_desc(1, kBuf + 0x100, 64, kDescWrite);
  rx.offer(0);
  rx.offer(1);
  driver_ok(m);
  m.sync();
  // Input queued before the driver was ready arrives, split over the two buffers.
  CHECK_EQ(rx.used_idx(), 2);
  CHECK_EQ(rx.used_len(0), 3u);
  CHECK_EQ(rx.used_len(1), 2u);
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf), 'e');
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x100 + 1), 'y');
  // Guest output: two chains, one of them with two parts.
  mem.write(kBuf + 0x200, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("abcdef"), 6));
  tx.set_desc(0, kBuf + 0x200, 2, kDescNext, 1);
  tx.set_desc(1, kBuf + 0x203, 3, 0);
  tx.set_desc(2, kBuf + 0x202, 1, 0);
  tx.offer(0);
  tx.offer(2);
  wr(m, kMmioQueueNotify, 1);
  m.sync();
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(out == "abdefc");
  }
  CHECK_EQ(tx.used_idx(), 2);
  // Input without a receive buffer waits for one.
  console->enqueue_input(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("Z"), 1));
  m.sync();
  CHECK_EQ(rx.used_idx(), 2);
  rx.set_desc(2, kBuf + 0x300, 8, kDescWrite);
  rx.offer(2);
  wr(m, kMmioQueueNotify, 0);
  m.sync();
  CHECK_EQ(rx.used_idx(), 3);
  CHECK_EQ(mem.read_obj<uint8_t>(kBuf + 0x300), 'Z');
}

TEST_KVM(kvm_ioeventfd_catches_matching_mmio_writes_and_irqfd_registers) {
  auto hv = hv::open_hypervisor();
  if (!hv->capabilities().ioeventfd || !hv->capabilities().irqfd) SKIP("this KVM lacks ioeventfd or irqfd");
  auto vm = hv->create_vm();
  vmm::GuestMemory mem(1 << 20);
  vm->map_memory(0, 0, mem.size(), mem.regions()[0].host);
  UniqueFd ev(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  UniqueFd irqev(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  vm->register_ioevent(0x100050, 4, true, 1, ev.get());
  vm->register_irqfd(irqev.get(), 5, -1);
  // Real mode, DS = 0xffff: [0x60] is guest-physical 0x100050, just past RAM.
  // mov ax,0xffff; mov ds,ax; mov dword [0x60],1; mov dword [0x60],2; out 0x80,al
  const uint8_t code[] = {0xb8, 0xff, 0xff, 0x8e, 0xd8, 0x66, 0xc7, 0x06, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00,
                          0x66, 0xc7, 0x06, 0x60, 0x00, 0x02, 0x00, 0x00, 0x00, 0xe6, 0x80};
  mem.write(0x1000, code);
  auto vcpu = vm->create_vcpu(0);
  vcpu->set_cpuid(vmm::build_cpuid(vm->supported_cpuid(), 0, 1));
  auto s = vcpu->get_sregs();
  s.cs.base = 0;
  s.cs.selector = 0;
  vcpu->set_sregs(s);
  hv::Regs r;
  r.rip = 0x1000;
  vcpu->set_regs(r);
  const auto& e = vcpu->run();
  CHECK(e.kind == hv::ExitKind::kMmio);  // the value 2 does not match: a normal exit
  CHECK_EQ(e.mmio.address, 0x100050u);
  uint64_t count = 0;
  CHECK_EQ(::read(ev.get(), &count, sizeof count), 8);
  CHECK_EQ(count, 1u);  // the value 1 went to the eventfd without an exit
  CHECK(vcpu->run().kind == hv::ExitKind::kIo);
  uint64_t one = 1;
  CHECK_EQ(::write(irqev.get(), &one, sizeof one), 8);  // raises IRQ 5; nothing to observe here
}
