#include "hv/kvm/kvm.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

namespace berth::hv::kvm {

namespace {

constexpr int kKvmApiVersion = 12;

// The headers of KVM's variable-length arguments. <linux/kvm.h> declares them with a
// flexible-array macro that C++ compilers lay out 4 bytes too long (wrong ioctl numbers
// and entry offsets), so Berth declares the wire layout itself.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
struct MsrListHeader {
  uint32_t nmsrs;
};
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
// struct kvm_xsave ends in a flexible array too: its fixed 4 KiB part, for the ioctl numbers.
struct Xsave4k {
  uint32_t region[1024];
};
constexpr size_t kXsaveLegacyBytes = sizeof(Xsave4k);
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, Xsave4k);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, Xsave4k);
constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, Xsave4k);

// The MSRs saved state carries beyond those in the special registers (EFER, APIC base):
// time (TSC, kvmclock), system-call entry points, memory types, speculation control and
// the paravirtual features a Linux guest enables. Those the host's KVM does not list are
// left out; TSC_DEADLINE is set last, after the local APIC (it only takes effect in
// TSC-deadline mode).
constexpr uint32_t kMsrTscDeadline = 0x6e0;
constexpr uint32_t kSavedMsrCandidates[] = {
    0x10,        // TSC
    0x3b,        // TSC_ADJUST
    0x48,        // SPEC_CTRL
    0x174, 0x175, 0x176,  // SYSENTER_CS/ESP/EIP
    0x1a0,       // MISC_ENABLE
    0x277,       // PAT
    0xda0,       // XSS
    0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,  // STAR, LSTAR, CSTAR, SFMASK
    0xc0000102,  // KERNEL_GS_BASE
    0xc0000103,  // TSC_AUX
    0xc001011f,  // AMD VIRT_SPEC_CTRL
    0x11, 0x12,  // kvmclock (old numbers)
    0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05, 0x4b564d06,  // kvmclock, PV
    kMsrTscDeadline,
};
// Memory-type range registers: KVM keeps them without listing them.
constexpr uint32_t kMtrrMsrs[] = {0x2ff, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
                                  0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207,
                                  0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f};

kvm_cpuid_entry2* cpuid_entries(std::vector<uint8_t>& buf) {
  return reinterpret_cast<kvm_cpuid_entry2*>(buf.data() + sizeof(CpuidHeader));
}

// Retries an ioctl interrupted by a signal, except KVM_RUN which must return EINTR.
int xioctl(int fd, unsigned long request, unsigned long arg = 0) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

template <typename T>
int xioctl(int fd, unsigned long request, T* arg) {
  return xioctl(fd, request, reinterpret_cast<unsigned long>(arg));
}

[[noreturn]] void fail(const char* code, const std::string& what) {
  throw SystemError(code, what, errno);
}

void to_kvm(const Segment& s, kvm_segment& k) {
  k = {};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  k.unusable = s.unusable;
}

Segment from_kvm(const kvm_segment& k) {
  Segment s;
  s.base = k.base;
  s.limit = k.limit;
  s.selector = k.selector;
  s.type = k.type;
  s.present = k.present;
  s.dpl = k.dpl;
  s.db = k.db;
  s.s = k.s;
  s.l = k.l;
  s.g = k.g;
  s.unusable = k.unusable;
  return s;
}

class KvmVcpu final : public Vcpu {
 public:
  KvmVcpu(uint32_t id, UniqueFd fd, size_t run_size, const std::vector<uint32_t>& saved_msrs, size_t xsave_bytes)
      : id_(id), fd_(std::move(fd)), run_size_(run_size), saved_msrs_(saved_msrs), xsave_bytes_(xsave_bytes) {
    void* p = mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (p == MAP_FAILED) fail("HV_VCPU_CREATE", "cannot map the KVM run structure of vCPU " + std::to_string(id));
    run_ = static_cast<kvm_run*>(p);
  }
  ~KvmVcpu() override { munmap(run_, run_size_); }

  uint32_t id() const override { return id_; }

  Regs get_regs() override {
    kvm_regs k{};
    if (xioctl(fd_.get(), KVM_GET_REGS, &k) < 0) fail("HV_VCPU_STATE", "KVM_GET_REGS");
    Regs r;
    r.rax = k.rax; r.rbx = k.rbx; r.rcx = k.rcx; r.rdx = k.rdx;
    r.rsi = k.rsi; r.rdi = k.rdi; r.rsp = k.rsp; r.rbp = k.rbp;
    r.r8 = k.r8; r.r9 = k.r9; r.r10 = k.r10; r.r11 = k.r11;
    r.r12 = k.r12; r.r13 = k.r13; r.r14 = k.r14; r.r15 = k.r15;
    r.rip = k.rip; r.rflags = k.rflags;
    return r;
  }

  void set_regs(const Regs& r) override {
    kvm_regs k{};
    k.rax = r.rax; k.rbx = r.rbx; k.rcx = r.rcx; k.rdx = r.rdx;
    k.rsi = r.rsi; k.rdi = r.rdi; k.rsp = r.rsp; k.rbp = r.rbp;
    k.r8 = r.r8; k.r9 = r.r9; k.r10 = r.r10; k.r11 = r.r11;
    k.r12 = r.r12; k.r13 = r.r13; k.r14 = r.r14; k.r15 = r.r15;
    k.rip = r.rip; k.rflags = r.rflags;
    if (xioctl(fd_.get(), KVM_SET_REGS, &k) < 0) fail("HV_VCPU_STATE", "KVM_SET_REGS");
  }

  SpecialRegs get_sregs() override {
    kvm_sregs k{};
    if (xioctl(fd_.get(), KVM_GET_SREGS, &k) < 0) fail("HV_VCPU_STATE", "KVM_GET_SREGS");
    SpecialRegs s;
    s.cs = from_kvm(k.cs); s.ds = from_kvm(k.ds); s.es = from_kvm(k.es);
    s.fs = from_kvm(k.fs); s.gs = from_kvm(k.gs); s.ss = from_kvm(k.ss);
    s.tr = from_kvm(k.tr); s.ldt = from_kvm(k.ldt);
    s.gdt = {k.gdt.base, k.gdt.limit};
    s.idt = {k.idt.base, k.idt.limit};
    s.cr0 = k.cr0; s.cr2 = k.cr2; s.cr3 = k.cr3; s.cr4 = k.cr4; s.cr8 = k.cr8;
    s.efer = k.efer; s.apic_base = k.apic_base;
    return s;
  }

  void set_sregs(const SpecialRegs& s) override {
    // Start from KVM's view so fields we do not model (interrupt bitmap) stay valid.
    kvm_sregs k{};
    if (xioctl(fd_.get(), KVM_GET_SREGS, &k) < 0) fail("HV_VCPU_STATE", "KVM_GET_SREGS");
    to_kvm(s.cs, k.cs); to_kvm(s.ds, k.ds); to_kvm(s.es, k.es);
    to_kvm(s.fs, k.fs); to_kvm(s.gs, k.gs); to_kvm(s.ss, k.ss);
    to_kvm(s.tr, k.tr); to_kvm(s.ldt, k.ldt);
    k.gdt.base = s.gdt.base; k.gdt.limit = s.gdt.limit;
    k.idt.base = s.idt.base; k.idt.limit = s.idt.limit;
    k.cr0 = s.cr0; k.cr2 = s.cr2; k.cr3 = s.cr3; k.cr4 = s.cr4; k.cr8 = s.cr8;
    k.efer = s.efer;
    if (s.apic_base) k.apic_base = s.apic_base;
    if (xioctl(fd_.get(), KVM_SET_SREGS, &k) < 0) fail("HV_VCPU_STATE", "KVM_SET_SREGS");
  }

  void set_cpuid(const std::vector<CpuidEntry>& entries) override {
    std::vector<uint8_t> buf(sizeof(CpuidHeader) + entries.size() * sizeof(kvm_cpuid_entry2));
    auto* c = reinterpret_cast<CpuidHeader*>(buf.data());
    c->nent = static_cast<uint32_t>(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      auto& k = cpuid_entries(buf)[i];
      k.function = entries[i].function;
      k.index = entries[i].index;
      k.flags = entries[i].flags;
      k.eax = entries[i].eax; k.ebx = entries[i].ebx; k.ecx = entries[i].ecx; k.edx = entries[i].edx;
    }
    if (xioctl(fd_.get(), kSetCpuid2, c) < 0) fail("HV_VCPU_STATE", "KVM_SET_CPUID2");
  }

  void set_msrs(const std::vector<MsrEntry>& msrs) override {
    std::vector<uint8_t> buf(sizeof(MsrsHeader) + msrs.size() * sizeof(kvm_msr_entry));
    auto* m = reinterpret_cast<MsrsHeader*>(buf.data());
    m->nmsrs = static_cast<uint32_t>(msrs.size());
    auto* entries = reinterpret_cast<kvm_msr_entry*>(buf.data() + sizeof(MsrsHeader));
    for (size_t i = 0; i < msrs.size(); ++i) {
      entries[i].index = msrs[i].index;
      entries[i].data = msrs[i].value;
    }
    int n = xioctl(fd_.get(), kSetMsrs, m);
    if (n < 0) fail("HV_VCPU_STATE", "KVM_SET_MSRS");
    if (static_cast<size_t>(n) != msrs.size()) {
      throw Error("HV_VCPU_STATE", "KVM refused MSR 0x" + [&] {
        char b[16];
        snprintf(b, sizeof b, "%x", msrs[n].index);
        return std::string(b);
      }());
    }
  }

  void reset_fpu() override {
    kvm_fpu f{};
    f.fcw = 0x37f;
    f.mxcsr = 0x1f80;
    if (xioctl(fd_.get(), KVM_SET_FPU, &f) < 0) fail("HV_VCPU_STATE", "KVM_SET_FPU");
  }

  VcpuState get_state() override;
  void set_state(const VcpuState& state) override;

  const VcpuExit& run() override {
    exit_ = VcpuExit{};
    if (ioctl(fd_.get(), KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        exit_.kind = ExitKind::kInterrupted;
        return exit_;
      }
      fail("HV_VCPU_RUN", "KVM_RUN on vCPU " + std::to_string(id_));
    }
    exit_.raw_reason = run_->exit_reason;
    switch (run_->exit_reason) {
      case KVM_EXIT_IO:
        exit_.kind = ExitKind::kIo;
        exit_.io.port = run_->io.port;
        exit_.io.size = run_->io.size;
        exit_.io.is_write = run_->io.direction == KVM_EXIT_IO_OUT;
        exit_.io.count = run_->io.count;
        exit_.io.data = reinterpret_cast<uint8_t*>(run_) + run_->io.data_offset;
        break;
      case KVM_EXIT_MMIO:
        exit_.kind = ExitKind::kMmio;
        exit_.mmio.address = run_->mmio.phys_addr;
        exit_.mmio.length = run_->mmio.len;
        exit_.mmio.is_write = run_->mmio.is_write;
        exit_.mmio.data = run_->mmio.data;
        break;
      case KVM_EXIT_HLT:
        exit_.kind = ExitKind::kHalt;
        break;
      case KVM_EXIT_SHUTDOWN:
        exit_.kind = ExitKind::kShutdown;
        break;
      case KVM_EXIT_INTR:
        exit_.kind = ExitKind::kInterrupted;
        break;
      case KVM_EXIT_SYSTEM_EVENT:
        exit_.kind = run_->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? ExitKind::kSystemOff
                                                                          : ExitKind::kSystemReset;
        break;
      case KVM_EXIT_FAIL_ENTRY: {
        exit_.kind = ExitKind::kFailEntry;
        char b[96];
        snprintf(b, sizeof b, "hardware entry failure reason 0x%llx",
                 static_cast<unsigned long long>(run_->fail_entry.hardware_entry_failure_reason));
        exit_.detail = b;
        break;
      }
      case KVM_EXIT_INTERNAL_ERROR: {
        exit_.kind = ExitKind::kInternalError;
        std::string d = "KVM internal error, suberror " + std::to_string(run_->internal.suberror);
        if (run_->internal.ndata > 0) {
          d += ", data:";
          uint32_t n = run_->internal.ndata < 16 ? run_->internal.ndata : 16;
          for (uint32_t i = 0; i < n; ++i) {
            char b[24];
            snprintf(b, sizeof b, " %llx", static_cast<unsigned long long>(run_->internal.data[i]));
            d += b;
          }
        }
        exit_.detail = d;
        break;
      }
      default:
        exit_.kind = ExitKind::kOther;
        exit_.detail = "unhandled KVM exit reason " + std::to_string(run_->exit_reason);
        break;
    }
    return exit_;
  }

  void request_immediate_exit(bool on) override {
    __atomic_store_n(&run_->immediate_exit, on ? 1 : 0, __ATOMIC_SEQ_CST);
  }

 private:
  uint32_t id_;
  UniqueFd fd_;
  size_t run_size_;
  kvm_run* run_ = nullptr;
  VcpuExit exit_;
  std::vector<uint32_t> saved_msrs_;
  size_t xsave_bytes_;

  std::vector<MsrEntry> get_msrs(const std::vector<uint32_t>& indices);
};

std::vector<MsrEntry> KvmVcpu::get_msrs(const std::vector<uint32_t>& indices) {
  std::vector<uint8_t> buf(sizeof(MsrsHeader) + indices.size() * sizeof(kvm_msr_entry));
  auto* m = reinterpret_cast<MsrsHeader*>(buf.data());
  m->nmsrs = static_cast<uint32_t>(indices.size());
  auto* entries = reinterpret_cast<kvm_msr_entry*>(buf.data() + sizeof(MsrsHeader));
  for (size_t i = 0; i < indices.size(); ++i) entries[i].index = indices[i];
  int n = xioctl(fd_.get(), kGetMsrs, m);
  if (n < 0) fail("HV_VCPU_STATE", "KVM_GET_MSRS");
  std::vector<MsrEntry> out;
  for (int i = 0; i < n; ++i) out.push_back({entries[i].index, entries[i].data});
  return out;
}

VcpuState KvmVcpu::get_state() {
  VcpuState st;
  st.regs = get_regs();
  st.sregs = get_sregs();
  st.xsave.assign(xsave_bytes_, 0);
  unsigned long get_xsave = xsave_bytes_ > kXsaveLegacyBytes ? kGetXsave2 : kGetXsave;
  if (xioctl(fd_.get(), get_xsave, st.xsave.data()) < 0) fail("HV_VCPU_STATE", "KVM_GET_XSAVE");
  kvm_xcrs xcrs{};
  if (xioctl(fd_.get(), KVM_GET_XCRS, &xcrs) < 0) fail("HV_VCPU_STATE", "KVM_GET_XCRS");
  for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; ++i) st.xcrs.push_back({xcrs.xcrs[i].xcr, xcrs.xcrs[i].value});
  // KVM_GET_MSRS stops at the first MSR it cannot read: drop that one and go on.
  std::vector<uint32_t> want = saved_msrs_;
  while (!want.empty()) {
    auto got = get_msrs(want);
    st.msrs.insert(st.msrs.end(), got.begin(), got.end());
    if (got.size() == want.size()) break;
    want.erase(want.begin(), want.begin() + static_cast<long>(got.size()) + 1);
  }
  kvm_lapic_state lapic{};
  if (xioctl(fd_.get(), KVM_GET_LAPIC, &lapic) < 0) fail("HV_VCPU_STATE", "KVM_GET_LAPIC");
  st.lapic.assign(reinterpret_cast<uint8_t*>(lapic.regs), reinterpret_cast<uint8_t*>(lapic.regs) + kLapicStateBytes);
  kvm_mp_state mp{};
  if (xioctl(fd_.get(), KVM_GET_MP_STATE, &mp) < 0) fail("HV_VCPU_STATE", "KVM_GET_MP_STATE");
  if (mp.mp_state >= kMpStateCount) {
    throw Error("HV_VCPU_STATE", "vCPU " + std::to_string(id_) + " is in multiprocessor state " +
                                     std::to_string(mp.mp_state) + ", which saved state cannot hold");
  }
  st.mp_state = static_cast<MpState>(mp.mp_state);
  kvm_vcpu_events ev{};
  if (xioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &ev) < 0) fail("HV_VCPU_STATE", "KVM_GET_VCPU_EVENTS");
  auto& e = st.events;
  e.exception_injected = ev.exception.injected;
  e.exception_pending = ev.exception.pending;
  e.exception_has_error_code = ev.exception.has_error_code;
  e.exception_nr = ev.exception.nr;
  e.exception_error_code = ev.exception.error_code;
  e.interrupt_injected = ev.interrupt.injected;
  e.interrupt_soft = ev.interrupt.soft;
  e.interrupt_nr = ev.interrupt.nr;
  e.interrupt_shadow = ev.interrupt.shadow;
  e.nmi_injected = ev.nmi.injected;
  e.nmi_pending = ev.nmi.pending;
  e.nmi_masked = ev.nmi.masked;
  e.sipi_vector = ev.sipi_vector;
  e.smm = ev.smi.smm;
  e.smi_pending = ev.smi.pending;
  e.smm_inside_nmi = ev.smi.smm_inside_nmi;
  e.latched_init = ev.smi.latched_init;
  kvm_debugregs dbg{};
  if (xioctl(fd_.get(), KVM_GET_DEBUGREGS, &dbg) < 0) fail("HV_VCPU_STATE", "KVM_GET_DEBUGREGS");
  for (int i = 0; i < 4; ++i) st.debug.db[i] = dbg.db[i];
  st.debug.dr6 = dbg.dr6;
  st.debug.dr7 = dbg.dr7;
  return st;
}

void KvmVcpu::set_state(const VcpuState& st) {
  auto refuse = [&](const std::string& what) {
    throw Error("STATE_INVALID", "saved state, vCPU " + std::to_string(id_) + ": " + what);
  };
  if (st.lapic.size() != kLapicStateBytes) refuse("the local APIC state is not " + std::to_string(kLapicStateBytes) + " bytes");
  if (st.xsave.size() < kXsaveLegacyBytes || st.xsave.size() > xsave_bytes_) {
    refuse("its XSAVE area is " + std::to_string(st.xsave.size()) + " bytes; this host's KVM takes " +
           std::to_string(kXsaveLegacyBytes) + " to " + std::to_string(xsave_bytes_));
  }
  if (st.xcrs.size() > KVM_MAX_XCRS) refuse("more extended control registers than KVM has");
  set_sregs(st.sregs);
  set_regs(st.regs);
  std::vector<uint8_t> xsave(xsave_bytes_, 0);
  std::memcpy(xsave.data(), st.xsave.data(), st.xsave.size());
  if (xioctl(fd_.get(), kSetXsave, xsave.data()) < 0) fail("HV_VCPU_STATE", "KVM_SET_XSAVE (the saved FPU/vector state)");
  kvm_xcrs xcrs{};
  xcrs.nr_xcrs = static_cast<uint32_t>(st.xcrs.size());
  for (size_t i = 0; i < st.xcrs.size(); ++i) {
    xcrs.xcrs[i].xcr = st.xcrs[i].index;
    xcrs.xcrs[i].value = st.xcrs[i].value;
  }
  if (xioctl(fd_.get(), KVM_SET_XCRS, &xcrs) < 0) fail("HV_VCPU_STATE", "KVM_SET_XCRS (the saved XCR0: a feature this CPU lacks?)");
  std::vector<MsrEntry> msrs, deadline;
  for (const auto& m : st.msrs) (m.index == kMsrTscDeadline ? deadline : msrs).push_back(m);
  set_msrs(msrs);
  kvm_mp_state mp{};
  mp.mp_state = static_cast<uint32_t>(st.mp_state);
  if (xioctl(fd_.get(), KVM_SET_MP_STATE, &mp) < 0) fail("HV_VCPU_STATE", "KVM_SET_MP_STATE");
  kvm_lapic_state lapic{};
  std::memcpy(lapic.regs, st.lapic.data(), kLapicStateBytes);
  if (xioctl(fd_.get(), KVM_SET_LAPIC, &lapic) < 0) fail("HV_VCPU_STATE", "KVM_SET_LAPIC");
  if (!deadline.empty()) set_msrs(deadline);
  kvm_vcpu_events ev{};
  const auto& e = st.events;
  ev.exception.injected = e.exception_injected;
  ev.exception.pending = e.exception_pending;
  ev.exception.has_error_code = e.exception_has_error_code;
  ev.exception.nr = e.exception_nr;
  ev.exception.error_code = e.exception_error_code;
  ev.interrupt.injected = e.interrupt_injected;
  ev.interrupt.soft = e.interrupt_soft;
  ev.interrupt.nr = e.interrupt_nr;
  ev.interrupt.shadow = e.interrupt_shadow;
  ev.nmi.injected = e.nmi_injected;
  ev.nmi.pending = e.nmi_pending;
  ev.nmi.masked = e.nmi_masked;
  ev.sipi_vector = e.sipi_vector;
  ev.smi.smm = e.smm;
  ev.smi.pending = e.smi_pending;
  ev.smi.smm_inside_nmi = e.smm_inside_nmi;
  ev.smi.latched_init = e.latched_init;
  ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW |
             KVM_VCPUEVENT_VALID_SMM;
  if (xioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &ev) < 0) fail("HV_VCPU_STATE", "KVM_SET_VCPU_EVENTS");
  kvm_debugregs dbg{};
  for (int i = 0; i < 4; ++i) dbg.db[i] = st.debug.db[i];
  dbg.dr6 = st.debug.dr6;
  dbg.dr7 = st.debug.dr7;
  if (xioctl(fd_.get(), KVM_SET_DEBUGREGS, &dbg) < 0) fail("HV_VCPU_STATE", "KVM_SET_DEBUGREGS");
}

class KvmVm final : public Vm {
 public:
  KvmVm(int kvm_fd, UniqueFd vm_fd, size_t run_size, const std::vector<uint32_t>& saved_msrs, size_t xsave_bytes)
      : kvm_fd_(kvm_fd), fd_(std::move(vm_fd)), run_size_(run_size), saved_msrs_(saved_msrs), xsave_bytes_(xsave_bytes) {
    // The TSS (three pages) and identity-map page KVM needs on Intel, in the hole below the
    // local APIC where neither RAM, PCI windows nor firmware flash (the top 16 MiB) lie.
    if (xioctl(fd_.get(), KVM_SET_TSS_ADDR, 0xfeffd000ul) < 0) fail("HV_VM_CREATE", "KVM_SET_TSS_ADDR");
    uint64_t identity = 0xfeffc000ull;
    if (xioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
      fail("HV_VM_CREATE", "KVM_SET_IDENTITY_MAP_ADDR");
    if (xioctl(fd_.get(), KVM_CREATE_IRQCHIP) < 0) fail("HV_VM_CREATE", "KVM_CREATE_IRQCHIP");
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    if (xioctl(fd_.get(), KVM_CREATE_PIT2, &pit) < 0) fail("HV_VM_CREATE", "KVM_CREATE_PIT2");
  }

  void map_memory(uint32_t slot, uint64_t gpa, uint64_t size, void* host, bool read_only,
                  bool track_writes) override {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = (read_only ? KVM_MEM_READONLY : 0) | (track_writes ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
      fail("HV_MEMORY", "KVM_SET_USER_MEMORY_REGION for " + std::to_string(size >> 10) + " KiB");
    std::lock_guard<std::mutex> lock(tracked_mu_);
    if (track_writes) {
      tracked_pages_[slot] = (size + kWrittenPageSize - 1) / kWrittenPageSize;
    } else {
      tracked_pages_.erase(slot);
    }
  }

  void take_written_pages(uint32_t slot, std::span<uint64_t> bitmap) override {
    std::lock_guard<std::mutex> lock(tracked_mu_);
    auto it = tracked_pages_.find(slot);
    if (it == tracked_pages_.end()) {
      throw Error("HV_MEMORY", "memory slot " + std::to_string(slot) + " does not track guest writes");
    }
    if (bitmap.size() < (it->second + 63) / 64) {
      throw Error("HV_MEMORY", "the written-pages bitmap of slot " + std::to_string(slot) + " holds " +
                                   std::to_string(bitmap.size() * 64) + " pages, the slot has " +
                                   std::to_string(it->second));
    }
    kvm_dirty_log log{};
    log.slot = slot;
    log.dirty_bitmap = bitmap.data();
    if (xioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log) < 0) fail("HV_MEMORY", "KVM_GET_DIRTY_LOG of slot " + std::to_string(slot));
  }

  void unmap_memory(uint32_t slot) override {
    std::lock_guard<std::mutex> lock(tracked_mu_);
    tracked_pages_.erase(slot);
    kvm_userspace_memory_region r{};
    r.slot = slot;  // size 0 deletes the slot
    if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0) fail("HV_MEMORY", "removing memory slot " + std::to_string(slot));
  }

  void signal_msi(uint64_t address, uint32_t data) override {
    kvm_msi m{};
    m.address_lo = static_cast<uint32_t>(address);
    m.address_hi = static_cast<uint32_t>(address >> 32);
    m.data = data;
    // 0: the message reached no APIC (the guest programmed a destination that is not there).
    if (xioctl(fd_.get(), KVM_SIGNAL_MSI, &m) < 0) fail("HV_IRQ", "KVM_SIGNAL_MSI");
  }

  std::unique_ptr<Vcpu> create_vcpu(uint32_t id) override {
    int fd = xioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) fail("HV_VCPU_CREATE", "KVM_CREATE_VCPU " + std::to_string(id));
    return std::make_unique<KvmVcpu>(id, UniqueFd(fd), run_size_, saved_msrs_, xsave_bytes_);
  }

  void set_irq_line(uint32_t irq, bool level) override {
    kvm_irq_level l{};
    l.irq = irq;
    l.level = level ? 1 : 0;
    if (xioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) fail("HV_IRQ", "KVM_IRQ_LINE " + std::to_string(irq));
  }

  void register_ioevent(uint64_t gpa, uint32_t len, bool has_datamatch, uint64_t datamatch, int fd) override {
    kvm_ioeventfd e{};
    e.addr = gpa;
    e.len = len;
    e.fd = fd;
    e.datamatch = datamatch;
    e.flags = has_datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0;
    if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) fail("HV_IOEVENTFD", "KVM_IOEVENTFD at guest address " + std::to_string(gpa));
  }

  void unregister_ioevent(uint64_t gpa, uint32_t len, bool has_datamatch, uint64_t datamatch, int fd) override {
    kvm_ioeventfd e{};
    e.addr = gpa;
    e.len = len;
    e.fd = fd;
    e.datamatch = datamatch;
    e.flags = KVM_IOEVENTFD_FLAG_DEASSIGN | (has_datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
    if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) fail("HV_IOEVENTFD", "removing the KVM_IOEVENTFD at guest address " + std::to_string(gpa));
  }

  void register_irqfd(int fd, uint32_t gsi, int resample_fd) override {
    kvm_irqfd r{};
    r.fd = static_cast<uint32_t>(fd);
    r.gsi = gsi;
    if (resample_fd >= 0) {
      r.flags = KVM_IRQFD_FLAG_RESAMPLE;
      r.resamplefd = static_cast<uint32_t>(resample_fd);
    }
    if (xioctl(fd_.get(), KVM_IRQFD, &r) < 0) fail("HV_IRQFD", "KVM_IRQFD for interrupt line " + std::to_string(gsi));
  }

  std::vector<CpuidEntry> supported_cpuid() override {
    for (uint32_t n = 64; n <= 256; n *= 2) {  // KVM caps the list at 256 entries
      std::vector<uint8_t> buf(sizeof(CpuidHeader) + n * sizeof(kvm_cpuid_entry2));
      auto* c = reinterpret_cast<CpuidHeader*>(buf.data());
      c->nent = n;
      if (xioctl(kvm_fd_, kGetSupportedCpuid, c) < 0) {
        if (errno == E2BIG) continue;
        fail("HV_CPUID", "KVM_GET_SUPPORTED_CPUID");
      }
      std::vector<CpuidEntry> out;
      for (uint32_t i = 0; i < c->nent; ++i) {
        const auto& k = cpuid_entries(buf)[i];
        out.push_back({k.function, k.index, k.flags, k.eax, k.ebx, k.ecx, k.edx});
      }
      return out;
    }
    throw Error("HV_CPUID", "KVM_GET_SUPPORTED_CPUID returned more than 256 entries");
  }

  // chips: PIC master, PIC slave, IOAPIC (each KVM's 512-byte kvm_irqchip union), then
  // the PIT (kvm_pit_state2).
  PlatformState get_platform_state() override {
    PlatformState st;
    st.backend = "kvm";
    for (uint32_t chip = 0; chip < 3; ++chip) {
      kvm_irqchip c{};
      c.chip_id = chip;
      if (xioctl(fd_.get(), KVM_GET_IRQCHIP, &c) < 0) fail("HV_VCPU_STATE", "KVM_GET_IRQCHIP");
      auto* p = reinterpret_cast<const uint8_t*>(&c.chip);
      st.chips.emplace_back(p, p + sizeof c.chip);
    }
    kvm_pit_state2 pit{};
    if (xioctl(fd_.get(), KVM_GET_PIT2, &pit) < 0) fail("HV_VCPU_STATE", "KVM_GET_PIT2");
    auto* p = reinterpret_cast<const uint8_t*>(&pit);
    st.chips.emplace_back(p, p + sizeof pit);
    kvm_clock_data clock{};
    if (xioctl(fd_.get(), KVM_GET_CLOCK, &clock) < 0) fail("HV_VCPU_STATE", "KVM_GET_CLOCK");
    st.clock_ns = clock.clock;
    return st;
  }

  void set_platform_state(const PlatformState& st) override {
    auto refuse = [](const std::string& what) { throw Error("STATE_INVALID", "saved state, platform: " + what); };
    if (st.backend != "kvm") refuse("it was saved under the '" + st.backend + "' hypervisor, not KVM");
    if (st.chips.size() != 4) refuse("KVM's platform state has 4 parts, not " + std::to_string(st.chips.size()));
    for (uint32_t chip = 0; chip < 3; ++chip) {
      kvm_irqchip c{};
      if (st.chips[chip].size() != sizeof c.chip) refuse("interrupt controller " + std::to_string(chip) + " has the wrong size");
      c.chip_id = chip;
      std::memcpy(&c.chip, st.chips[chip].data(), sizeof c.chip);
      if (chip == 2 && c.chip.ioapic.base_address != 0xfec00000) refuse("the IOAPIC is not at 0xfec00000");
      if (xioctl(fd_.get(), KVM_SET_IRQCHIP, &c) < 0) fail("HV_VCPU_STATE", "KVM_SET_IRQCHIP");
    }
    kvm_pit_state2 pit{};
    if (st.chips[3].size() != sizeof pit) refuse("the PIT state has the wrong size");
    std::memcpy(&pit, st.chips[3].data(), sizeof pit);
    for (const auto& ch : pit.channels) {
      // Modes 0-7 (6 and 7 alias 2 and 3); 0xff is a channel never programmed.
      if ((ch.mode > 7 && ch.mode != 0xff) || ch.rw_mode > 4 || ch.read_state > 4 || ch.write_state > 4) {
        refuse("a PIT channel has an invalid mode");
      }
    }
    if (xioctl(fd_.get(), KVM_SET_PIT2, &pit) < 0) fail("HV_VCPU_STATE", "KVM_SET_PIT2");
    kvm_clock_data clock{};
    clock.clock = st.clock_ns;
    if (xioctl(fd_.get(), KVM_SET_CLOCK, &clock) < 0) fail("HV_VCPU_STATE", "KVM_SET_CLOCK");
  }

 private:
  int kvm_fd_;  // owned by KvmHypervisor, which outlives its VMs
  UniqueFd fd_;
  size_t run_size_;
  std::vector<uint32_t> saved_msrs_;
  size_t xsave_bytes_;
  // Slots mapped with track_writes and their page counts (a display reads them from its
  // own thread while a vCPU may move the slot).
  std::mutex tracked_mu_;
  std::map<uint32_t, uint64_t> tracked_pages_;
};

class KvmHypervisor final : public Hypervisor {
 public:
  KvmHypervisor(UniqueFd fd, Capabilities caps, size_t run_size)
      : fd_(std::move(fd)), caps_(std::move(caps)), run_size_(run_size) {
    saved_msrs_ = saved_msr_list(fd_.get());
#ifdef KVM_CAP_XSAVE2
    int xsave2 = ioctl(fd_.get(), KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    if (xsave2 > static_cast<int>(xsave_bytes_) && static_cast<size_t>(xsave2) <= kMaxXsaveBytes) {
      xsave_bytes_ = static_cast<size_t>(xsave2);
    }
#endif
  }

  const Capabilities& capabilities() const override { return caps_; }

  std::unique_ptr<Vm> create_vm() override {
    int vm = xioctl(fd_.get(), KVM_CREATE_VM, 0ul);
    if (vm < 0) {
      fail("HV_VM_CREATE", "KVM_CREATE_VM (the host may be out of memory or at its VM limit)");
    }
    return std::make_unique<KvmVm>(fd_.get(), UniqueFd(vm), run_size_, saved_msrs_, xsave_bytes_);
  }

 private:
  // The candidates KVM lists as saveable, then the MTRRs, then TSC_DEADLINE.
  static std::vector<uint32_t> saved_msr_list(int kvm_fd) {
    std::vector<uint32_t> listed;
    MsrListHeader probe{0};
    xioctl(kvm_fd, kGetMsrIndexList, &probe);  // E2BIG, with the count filled in
    std::vector<uint8_t> buf(sizeof(MsrListHeader) + probe.nmsrs * sizeof(uint32_t));
    auto* list = reinterpret_cast<MsrListHeader*>(buf.data());
    list->nmsrs = probe.nmsrs;
    if (probe.nmsrs > 0 && xioctl(kvm_fd, kGetMsrIndexList, list) == 0) {
      const auto* idx = reinterpret_cast<const uint32_t*>(buf.data() + sizeof(MsrListHeader));
      listed.assign(idx, idx + list->nmsrs);
    }
    std::vector<uint32_t> out;
    for (uint32_t m : kSavedMsrCandidates) {
      if (m != kMsrTscDeadline && std::find(listed.begin(), listed.end(), m) != listed.end()) out.push_back(m);
    }
    out.insert(out.end(), std::begin(kMtrrMsrs), std::end(kMtrrMsrs));
    if (std::find(listed.begin(), listed.end(), kMsrTscDeadline) != listed.end()) out.push_back(kMsrTscDeadline);
    return out;
  }

  UniqueFd fd_;
  Capabilities caps_;
  size_t run_size_;
  std::vector<uint32_t> saved_msrs_;
  size_t xsave_bytes_ = kXsaveLegacyBytes;
};

}  // namespace

bool only_kvm_pvm_loaded(const std::string& module_dir) {
  auto loaded = [&](const char* module) { return access((module_dir + "/" + module).c_str(), F_OK) == 0; };
  return loaded("kvm_pvm") && !loaded("kvm_intel") && !loaded("kvm_amd");
}

std::unique_ptr<Hypervisor> open_kvm(const char* device_path) {
  // kvm-pvm (the KVM a paravirtualized guest may offer its own guests) also provides
  // /dev/kvm, but runs only kernels built for PVM: firmware and ordinary kernels fail in
  // their first real-mode instructions with an internal error. Refuse it, saying what it is.
  if (std::string_view(device_path) == "/dev/kvm" && only_kvm_pvm_loaded("/sys/module")) {
    throw Error("HV_NOT_FOUND",
                "/dev/kvm here is kvm-pvm, the paravirtual KVM of a host that is itself a VM: it runs "
                "only PVM guest kernels, not the firmware and operating systems Berth starts. Use a "
                "host with hardware virtualization (kvm_intel or kvm_amd), or enable nested "
                "virtualization for this VM on its host.");
  }
  int fd = open(device_path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string path = device_path;
    if (err == ENOENT) {
      throw Error("HV_NOT_FOUND",
                  path + " does not exist: the KVM module is not loaded or this CPU has no hardware "
                         "virtualization. Enable VT-x/AMD-V in the firmware settings and load the "
                         "module (modprobe kvm_intel or modprobe kvm_amd); inside a VM, enable nested "
                         "virtualization on its host.");
    }
    if (err == EACCES || err == EPERM) {
      throw Error("HV_PERMISSION_DENIED",
                  "no permission to open " + path +
                      ": add your user to the group that owns it (usually 'kvm': sudo usermod -aG "
                      "kvm $USER) and log in again.");
    }
    throw SystemError("HV_OPEN", "cannot open " + path, err);
  }
  UniqueFd kvm(fd);

  Capabilities caps;
  caps.backend = "kvm";
  caps.api_version = ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (caps.api_version != kKvmApiVersion) {
    throw Error("HV_API_VERSION", "KVM API version " + std::to_string(caps.api_version) +
                                      " is not supported (Berth needs version " +
                                      std::to_string(kKvmApiVersion) + "); update the host kernel.");
  }
  auto check = [&](long cap) { return ioctl(kvm.get(), KVM_CHECK_EXTENSION, cap); };
  struct Required {
    long cap;
    const char* name;
  };
  const Required required[] = {
      {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP (in-kernel interrupt controllers)"},
      {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
      {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
      {KVM_CAP_PIT2, "KVM_CAP_PIT2 (in-kernel timer)"},
      {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
      {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT (needed to pause vCPUs reliably)"},
  };
  for (const auto& r : required) {
    if (check(r.cap) <= 0) {
      throw Error("HV_MISSING_CAPABILITY", std::string("the host's KVM lacks ") + r.name +
                                               "; update the host kernel (Linux 4.11 or later).");
    }
  }
  caps.irqchip = true;
  caps.immediate_exit = true;
  caps.ioeventfd = check(KVM_CAP_IOEVENTFD) > 0;
  caps.irqfd = check(KVM_CAP_IRQFD) > 0;
  caps.readonly_memory = check(KVM_CAP_READONLY_MEM) > 0;
  caps.msi = check(KVM_CAP_SIGNAL_MSI) > 0;
  int max = check(KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = check(KVM_CAP_NR_VCPUS);
  caps.max_vcpus = max > 0 ? static_cast<uint32_t>(max) : 1;

  int run_size = ioctl(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) fail("HV_OPEN", "KVM_GET_VCPU_MMAP_SIZE");
  return std::make_unique<KvmHypervisor>(std::move(kvm), std::move(caps), static_cast<size_t>(run_size));
}

}  // namespace berth::hv::kvm
