// The KVM backend on this machine's real /dev/kvm: a few bytes of real-mode code.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "hv/hv.h"
#include "hv/kvm/kvm.h"
#include "tests/check.h"
#include "vmm/cpuid.h"
#include "vmm/guest_memory.h"

using namespace berth;

TEST_KVM(kvm_probe_reports_capabilities) {
  auto hv = hv::open_hypervisor();
  CHECK(hv->capabilities().backend == "kvm");
  CHECK_EQ(hv->capabilities().api_version, 12);
  CHECK(hv->capabilities().max_vcpus >= 1);
  CHECK(hv->capabilities().immediate_exit);
}

TEST(kvm_probe_explains_missing_device) {
  CHECK_THROWS_CODE(hv::kvm::open_kvm("/nonexistent/kvm"), "HV_NOT_FOUND", "modprobe kvm_intel");
}

TEST(kvm_probe_tells_kvm_pvm_from_hardware_kvm) {
  // A /sys/module of our own: kvm-pvm alone is refused, beside kvm_amd or kvm_intel it is not.
  char dir[] = "/tmp/berth-sys-module-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  const std::string root = dir;
  CHECK(!hv::kvm::only_kvm_pvm_loaded(root));
  CHECK(mkdir((root + "/kvm").c_str(), 0700) == 0);
  CHECK(mkdir((root + "/kvm_pvm").c_str(), 0700) == 0);
  CHECK(hv::kvm::only_kvm_pvm_loaded(root));
  CHECK(mkdir((root + "/kvm_amd").c_str(), 0700) == 0);
  CHECK(!hv::kvm::only_kvm_pvm_loaded(root));
  for (const char* m : {"/kvm_amd", "/kvm_pvm", "/kvm", ""}) rmdir((root + m).c_str());
}

TEST(kvm_probe_explains_a_device_that_is_not_kvm) {
  // /dev/null opens but answers no KVM ioctl: the API version check must catch it.
  CHECK_THROWS_CODE(hv::kvm::open_kvm("/dev/null"), "HV_API_VERSION", "update the host kernel");
}

TEST_KVM(kvm_runs_real_mode_port_io) {
  auto hv = hv::open_hypervisor();
  auto vm = hv->create_vm();
  vmm::GuestMemory mem(1 << 20);
  vm->map_memory(0, 0, mem.size(), mem.regions()[0].host);
  // mov al,0x5a; out 0x80,al; in al,0x81; out 0x82,al; out 0x83,al
  const uint8_t code[] = {0xb0, 0x5a, 0xe6, 0x80, 0xe4, 0x81, 0xe6, 0x82, 0xe6, 0x83};
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

  const auto& e1 = vcpu->run();
  CHECK(e1.kind == hv::ExitKind::kIo);
  CHECK_EQ(e1.io.port, 0x80);
  CHECK(e1.io.is_write);
  CHECK_EQ(e1.io.data[0], 0x5a);
  const auto& e2 = vcpu->run();
  CHECK(e2.kind == hv::ExitKind::kIo);
  CHECK_EQ(e2.io.port, 0x81);
  CHECK(!e2.io.is_write);
  e2.io.data[0] = 0xa5;  // the value the IN instruction receives
  const auto& e3 = vcpu->run();
  CHECK_EQ(e3.io.port, 0x82);
  CHECK_EQ(e3.io.data[0], 0xa5);

  // An immediate-exit request makes the next run return without entering the guest.
  vcpu->request_immediate_exit(true);
  CHECK(vcpu->run().kind == hv::ExitKind::kInterrupted);
  vcpu->request_immediate_exit(false);
  const auto& e4 = vcpu->run();
  CHECK_EQ(e4.io.port, 0x83);
}

TEST_KVM(cpuid_names_berth_and_keeps_topology_consistent) {
  auto hv = hv::open_hypervisor();
  auto vm = hv->create_vm();
  auto supported = vm->supported_cpuid();
  auto cpuid = vmm::build_cpuid(supported, 2, 4);
  bool found_sig = false, found_leaf1 = false, found_host_kvm = false;
  for (const auto& e : cpuid) {
    if (e.function == 0x40000000) {
      char sig[13] = {};
      std::memcpy(sig, &e.ebx, 4);
      std::memcpy(sig + 4, &e.ecx, 4);
      std::memcpy(sig + 8, &e.edx, 4);
      CHECK(std::string(sig) == "BerthVMM");
      found_sig = true;
    }
    if (e.function == vmm::kHostHypervisorLeafBase) {
      char sig[13] = {};
      std::memcpy(sig, &e.ebx, 4);
      std::memcpy(sig + 4, &e.ecx, 4);
      std::memcpy(sig + 8, &e.edx, 4);
      found_host_kvm = std::string(sig) == "KVMKVMKVM";
    }
    if (e.function == 1) {
      CHECK_EQ(e.ebx >> 24, 2u);           // APIC ID
      CHECK_EQ((e.ebx >> 16) & 0xff, 4u);  // logical processors per package
      CHECK(e.ecx & (1u << 31));           // hypervisor bit
      found_leaf1 = true;
    }
    if (e.function == 0xb && e.index == 1) {
      CHECK_EQ(e.ebx, 4u);
      CHECK_EQ(e.edx, 2u);
    }
  }
  CHECK(found_sig);
  CHECK(found_leaf1);
  CHECK(found_host_kvm);
}

TEST_KVM(kvm_logs_the_pages_a_guest_writes_in_a_tracked_slot) {
  auto hv = hv::open_hypervisor();
  auto vm = hv->create_vm();
  vmm::GuestMemory mem(1 << 20);
  vm->map_memory(0, 0, mem.size(), mem.regions()[0].host);
  // A tracked slot of 16 pages at 1 MiB, as a display's framebuffer.
  constexpr uint64_t kSlotGpa = 0x100000, kSlotPages = 16;
  std::vector<uint8_t> fb(kSlotPages * hv::kWrittenPageSize + 4096);
  auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(fb.data()) + 4095) & ~uintptr_t{4095});
  vm->map_memory(1, kSlotGpa, kSlotPages * hv::kWrittenPageSize, aligned, false, /*track_writes=*/true);
  std::vector<uint64_t> bitmap(1, ~uint64_t{0});
  vm->take_written_pages(1, bitmap);
  CHECK_EQ(bitmap[0], 0u);  // nothing written yet
  // Real mode reaches just past 1 MiB through segment 0xffff (KVM has no A20 gate):
  // mov ax,0xffff; mov es,ax; mov byte [es:0x3010],0x5a (0x103000: page 3);
  // mov byte [es:0xa010],0x5a (0x10a000: page 10); out 0x80,al; hlt
  const uint8_t code[] = {0xb8, 0xff, 0xff, 0x8e, 0xc0, 0x26, 0xc6, 0x06, 0x10, 0x30, 0x5a,
                          0x26, 0xc6, 0x06, 0x10, 0xa0, 0x5a, 0xe6, 0x80, 0xf4};
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
  CHECK(e.kind == hv::ExitKind::kIo);
  CHECK_EQ(aligned[3 * 4096], 0x5au);
  CHECK_EQ(aligned[10 * 4096], 0x5au);
  vm->take_written_pages(1, bitmap);
  CHECK_EQ(bitmap[0], (uint64_t{1} << 3) | (uint64_t{1} << 10));
  vm->take_written_pages(1, bitmap);
  CHECK_EQ(bitmap[0], 0u);  // taking the log cleared it
  std::vector<uint64_t> none;
  CHECK_THROWS_CODE(vm->take_written_pages(1, none), "HV_MEMORY", "bitmap");
  CHECK_THROWS_CODE(vm->take_written_pages(0, bitmap), "HV_MEMORY", "does not track");
  vm->unmap_memory(1);
  CHECK_THROWS_CODE(vm->take_written_pages(1, bitmap), "HV_MEMORY", "does not track");
}
