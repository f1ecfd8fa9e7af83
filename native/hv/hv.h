// The hypervisor interface: Hypervisor -> Vm -> Vcpu. Backends (KVM on Linux,
// Hypervisor.framework on macOS) implement it; nothing here knows about devices.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace berth::hv {

// General-purpose registers of an x86-64 vCPU.
struct Regs {
  uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
  uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
  uint64_t rip = 0, rflags = 0x2;
};

struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type = 0;  // descriptor type field (code/data, accessed, ...)
  bool present = false;
  uint8_t dpl = 0;
  bool db = false;  // default operand size 32-bit
  bool s = false;   // code/data (true) or system (false)
  bool l = false;   // 64-bit code segment
  bool g = false;   // 4 KiB granularity
  bool unusable = false;
};

struct DescriptorTable {
  uint64_t base = 0;
  uint16_t limit = 0;
};

// Segment, control and system registers.
struct SpecialRegs {
  Segment cs, ds, es, fs, gs, ss, tr, ldt;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0, efer = 0, apic_base = 0;
};

// The register state a boot protocol asks the boot vCPU to start with.
struct InitialCpuState {
  Regs regs;
  SpecialRegs sregs;
};

struct CpuidEntry {
  uint32_t function = 0, index = 0, flags = 0;
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};
constexpr uint32_t kCpuidFlagSignificantIndex = 1;

struct MsrEntry {
  uint32_t index = 0;
  uint64_t value = 0;
};

// Events a vCPU has pending or in injection (architectural, x86 SDM vol. 3 ch. 6).
struct VcpuEvents {
  bool exception_injected = false, exception_pending = false, exception_has_error_code = false;
  uint8_t exception_nr = 0;
  uint32_t exception_error_code = 0;
  bool interrupt_injected = false, interrupt_soft = false;
  uint8_t interrupt_nr = 0;
  uint8_t interrupt_shadow = 0;  // STI / MOV SS blocking
  bool nmi_injected = false, nmi_pending = false, nmi_masked = false;
  uint32_t sipi_vector = 0;
  bool smm = false, smi_pending = false, smm_inside_nmi = false, latched_init = false;
};

// What a vCPU is doing when it is not executing (the multiprocessor state).
enum class MpState : uint32_t { kRunnable = 0, kUninitialized, kInitReceived, kHalted, kSipiReceived };
constexpr uint32_t kMpStateCount = 5;

struct DebugRegs {
  uint64_t db[4] = {0, 0, 0, 0};
  uint64_t dr6 = 0, dr7 = 0;
};

struct XcrEntry {
  uint32_t index = 0;
  uint64_t value = 0;
};

// Everything a vCPU holds, for saved state. The XSAVE area (the XSAVE instruction's
// standard layout) and the local APIC's 1 KiB register page are architectural formats.
struct VcpuState {
  Regs regs;
  SpecialRegs sregs;
  std::vector<uint8_t> xsave;
  std::vector<XcrEntry> xcrs;
  std::vector<MsrEntry> msrs;
  std::vector<uint8_t> lapic;
  MpState mp_state = MpState::kRunnable;
  VcpuEvents events;
  DebugRegs debug;
};
constexpr size_t kLapicStateBytes = 1024;
constexpr size_t kMaxXsaveBytes = 64 * 1024;
constexpr size_t kMaxSavedMsrs = 256;
constexpr size_t kMaxXcrs = 16;

// The state of interrupt controllers and timers the hypervisor emulates itself (KVM: the
// PICs, the IOAPIC and the PIT; none under a backend without them), and the VM clock.
// Their layouts belong to the backend: `backend` names it and another backend refuses them.
struct PlatformState {
  std::string backend;
  std::vector<std::vector<uint8_t>> chips;  // backend-defined order and sizes
  uint64_t clock_ns = 0;                    // the guest's paravirtual clock (kvmclock)
};
constexpr size_t kMaxPlatformChips = 8;
constexpr size_t kMaxPlatformChipBytes = 4096;

enum class ExitKind {
  kIo,             // port I/O: see VcpuExit::io
  kMmio,           // access to guest-physical memory no RAM backs: see VcpuExit::mmio
  kHalt,           // HLT with no in-kernel interrupt controller to wait on
  kShutdown,       // triple fault: the machine resets
  kSystemReset,    // the platform asked for a reset
  kSystemOff,      // the platform asked to power off
  kInterrupted,    // a kick (signal / immediate exit) ended the run
  kInternalError,  // the hypervisor could not emulate an instruction
  kFailEntry,      // the hypervisor refused to enter the guest
  kOther,
};

struct IoExit {
  uint16_t port = 0;
  uint8_t size = 0;  // bytes per access: 1, 2 or 4
  bool is_write = false;
  uint32_t count = 0;      // >1 for string instructions (rep ins/outs)
  uint8_t* data = nullptr; // size*count bytes, valid until the next run()
};

struct MmioExit {
  uint64_t address = 0;
  uint32_t length = 0;
  bool is_write = false;
  uint8_t* data = nullptr;  // length bytes, valid until the next run()
};

struct VcpuExit {
  ExitKind kind = ExitKind::kOther;
  IoExit io;
  MmioExit mmio;
  uint32_t raw_reason = 0;  // backend-specific reason, for diagnostics
  std::string detail;       // human-readable detail for errors
};

class Vcpu {
 public:
  virtual ~Vcpu() = default;
  virtual uint32_t id() const = 0;

  virtual Regs get_regs() = 0;
  virtual void set_regs(const Regs& regs) = 0;
  virtual SpecialRegs get_sregs() = 0;
  virtual void set_sregs(const SpecialRegs& sregs) = 0;
  virtual void set_cpuid(const std::vector<CpuidEntry>& entries) = 0;
  virtual void set_msrs(const std::vector<MsrEntry>& msrs) = 0;
  // Puts the FPU/SSE unit in its power-on state (FCW 0x37f, MXCSR 0x1f80).
  virtual void reset_fpu() = 0;

  // Saved state: only while the vCPU is not running (its runner paused, or before its
  // first run). get_state() after a paused run() has completed any pending I/O. set_state
  // throws HV_VCPU_STATE naming what the hypervisor refused; call set_cpuid() first.
  virtual VcpuState get_state() = 0;
  virtual void set_state(const VcpuState& state) = 0;

  // Runs the vCPU until it exits to the VMM. Must be called on the vCPU's own thread.
  virtual const VcpuExit& run() = 0;

  // Makes the current or next run() return kInterrupted at once. Safe from any thread;
  // the caller also signals the vCPU thread so a run in progress is interrupted.
  virtual void request_immediate_exit(bool on) = 0;
};

// The granularity of take_written_pages.
constexpr uint64_t kWrittenPageSize = 4096;

class Vm {
 public:
  virtual ~Vm() = default;
  // Maps host memory [host, host+size) at guest-physical gpa. A read-only mapping (needs
  // Capabilities::readonly_memory: firmware flash) is read directly; guest writes to it exit
  // as MMIO writes.
  // With track_writes, the hypervisor records which pages the guest writes (a display's
  // framebuffer): read them with take_written_pages.
  virtual void map_memory(uint32_t slot, uint64_t gpa, uint64_t size, void* host, bool read_only = false,
                          bool track_writes = false) = 0;
  // The pages of `slot` (mapped with track_writes) the guest wrote since the mapping or the
  // last call, which this call forgets: bit i of the bitmap (64 pages a word, least
  // significant bit first) is page i of kWrittenPageSize bytes from the slot's start. The
  // bitmap must hold ceil(pages / 64) words. Throws HV_MEMORY when the slot does not track
  // writes or the bitmap is too small.
  virtual void take_written_pages(uint32_t slot, std::span<uint64_t> bitmap) = 0;
  // Removes what map_memory put in `slot`: accesses there exit as MMIO from then on.
  virtual void unmap_memory(uint32_t slot) = 0;
  virtual std::unique_ptr<Vcpu> create_vcpu(uint32_t id) = 0;
  // Sets an interrupt line of the in-kernel interrupt controllers (PIC + IOAPIC).
  virtual void set_irq_line(uint32_t irq, bool level) = 0;
  // CPUID values the hypervisor can offer a guest, before the VMM edits them.
  virtual std::vector<CpuidEntry> supported_cpuid() = 0;

  // Saved state of the hypervisor's own platform devices and clock, with every vCPU paused.
  // set_platform_state throws STATE_INVALID for another backend's state or bad sizes.
  virtual PlatformState get_platform_state() = 0;
  virtual void set_platform_state(const PlatformState& state) = 0;

  // Needs Capabilities::ioeventfd. A guest write of `len` bytes (1, 2, 4 or 8) to MMIO
  // address gpa (with value `datamatch`, when has_datamatch) signals the eventfd `fd`
  // instead of exiting to the VMM. Registrations last as long as this Vm.
  virtual void register_ioevent(uint64_t gpa, uint32_t len, bool has_datamatch, uint64_t datamatch, int fd) = 0;
  // Undoes one register_ioevent with the same arguments (a PCI BAR moved).
  virtual void unregister_ioevent(uint64_t gpa, uint32_t len, bool has_datamatch, uint64_t datamatch, int fd) = 0;
  // Needs Capabilities::msi. Delivers one message-signalled interrupt (a PCI MSI/MSI-X
  // message: the address and data the guest programmed) to the local APICs it names.
  virtual void signal_msi(uint64_t address, uint32_t data) = 0;
  // Needs Capabilities::irqfd. Each signal of the eventfd `fd` raises interrupt line gsi
  // of the in-kernel controllers as an edge. With resample_fd >= 0 the line stays asserted
  // (level) until the guest's EOI, which signals resample_fd. Lasts as long as this Vm.
  virtual void register_irqfd(int fd, uint32_t gsi, int resample_fd) = 0;
};

struct Capabilities {
  std::string backend;  // "kvm" or "hvf"
  int api_version = 0;
  uint32_t max_vcpus = 0;
  bool irqchip = false;
  bool ioeventfd = false;
  bool irqfd = false;
  bool immediate_exit = false;
  bool readonly_memory = false;  // map_memory(read_only): firmware flash
  bool msi = false;              // signal_msi: PCI devices' MSI-X
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual const Capabilities& capabilities() const = 0;
  virtual std::unique_ptr<Vm> create_vm() = 0;
};

// Opens the host's hypervisor. Throws berth::Error with codes such as HV_NOT_FOUND,
// HV_PERMISSION_DENIED, HV_API_VERSION or HV_MISSING_CAPABILITY, each saying how to fix it.
std::unique_ptr<Hypervisor> open_hypervisor();

}  // namespace berth::hv
