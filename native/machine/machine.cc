#include "machine/machine.h"

#include <sys/eventfd.h>
#include <time.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/unique_fd.h"
#include "boot/acpi.h"
#include "devices/acpi_sleep.h"
#include "devices/cmos_rtc.h"
#include "devices/debug_exit.h"
#include "devices/input/i8042.h"
#include "devices/uart16550.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/console.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net.h"
#include "devices/scsi/cdrom.h"
#include "devices/scsi/disk.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/scsi.h"
#include "devices/platform/fw_cfg_formats.h"
#include "disk/block_device.h"
#include "machine/pc_platform.h"
#include "machine/virtio_slot.h"
#include "vmm/cpuid.h"

namespace berth::machine {

namespace {

// COM1 and the RTC are where the DSDT says they are.
constexpr uint16_t kCom1Port = boot::kAcpiCom1Port;
constexpr uint32_t kCom1Irq = boot::kAcpiCom1Irq;
constexpr uint16_t kRtcPort = boot::kAcpiRtcPort;
constexpr uint16_t kTestExitPort = 0xf4;

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Reads a "VmRSS:"-style line of /proc/self/status, in bytes.
uint64_t proc_status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  size_t key_len = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, key_len, key) == 0) {
      return std::strtoull(line.c_str() + key_len, nullptr, 10) * 1024;
    }
  }
  return 0;
}

}  // namespace

const char* state_name(MachineState s) {
  switch (s) {
    case MachineState::kCreated: return "created";
    case MachineState::kRunning: return "running";
    case MachineState::kPaused: return "paused";
    case MachineState::kStopped: return "stopped";
  }
  return "unknown";
}

const char* exit_reason_name(ExitReason r) {
  switch (r) {
    case ExitReason::kGuestExit: return "guest-exit";
    case ExitReason::kReset: return "reset";
    case ExitReason::kPowerOff: return "power-off";
    case ExitReason::kHostStop: return "stopped";
    case ExitReason::kError: return "error";
    case ExitReason::kSaved: return "saved";
  }
  return "unknown";
}

namespace {

// An interrupt output wired to nothing.
class UnconnectedIrqLine final : public vmm::IrqLine {
 public:
  void set_level(bool) override {}
};

}  // namespace

// An ISA interrupt line of the in-kernel PIC/IOAPIC of whichever hypervisor VM is current.
class Machine::KvmIrqLine final : public vmm::IrqLine {
 public:
  KvmIrqLine(Machine& machine, uint32_t irq) : machine_(machine), irq_(irq) {}
  void set_level(bool high) override {
    std::shared_lock<std::shared_mutex> lock(machine_.vm_mu_);
    if (machine_.vm_) machine_.vm_->set_irq_line(irq_, high);
  }

 private:
  Machine& machine_;
  uint32_t irq_;
};

void Machine::add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device) {
  if (platform_) {
    auto slot = std::make_unique<VirtioSlot>();
    slot->pci = std::make_shared<devices::virtio::VirtioPci>(memory_, std::move(device), *msi_);
    slot->notify_at.resize(slot->pci->queue_count());
    VirtioSlot* raw = slot.get();
    slot->pci->set_bar_listener([this, raw] {
      std::shared_lock<std::shared_mutex> lock(vm_mu_);
      if (vm_) move_pci_notify(*raw, *vm_);
    });
    slot->pci_slot = platform_->add_device(slot->pci);
    virtio_.push_back(std::move(slot));
    return;
  }
  size_t n = virtio_.size();
  if (n >= std::size(kVirtioIrqs)) throw Error("VM_DEVICES", "too many virtio devices");
  auto slot = std::make_unique<VirtioSlot>();
  slot->base = kVirtioMmioBase + n * kVirtioMmioStride;
  slot->irq = std::make_unique<VirtioIrq>(*this, kVirtioIrqs[n], hypervisor_->capabilities().irqfd);
  slot->mmio = std::make_shared<devices::virtio::VirtioMmio>(memory_, std::move(device), *slot->irq);
  mmio_bus_.insert(slot->base, devices::virtio::kMmioWindowSize, slot->mmio,
                   "virtio-mmio " + std::to_string(n));
  char entry[64];
  std::snprintf(entry, sizeof entry, "virtio_mmio.device=0x%llx@0x%llx:%u",
                static_cast<unsigned long long>(devices::virtio::kMmioWindowSize),
                static_cast<unsigned long long>(slot->base), kVirtioIrqs[n]);
  std::string& cmdline = config_.boot.cmdline;
  cmdline += cmdline.empty() ? "" : " ";
  cmdline += entry;
  config_.boot.virtio_mmio.push_back({slot->base, static_cast<uint32_t>(devices::virtio::kMmioWindowSize), kVirtioIrqs[n]});
  virtio_.push_back(std::move(slot));
}

// The hypervisor VM is new (first build or a reset): its ioeventfds and irqfds are too.
void Machine::attach_virtio(hv::Vm& vm) {
  const auto& caps = hypervisor_->capabilities();
  for (const auto& slot : virtio_) {
    if (slot->pci) {
      // The new VM has no ioeventfds yet: register where the BAR is now (nowhere after a reset).
      {
        std::lock_guard<std::mutex> lock(slot->notify_mu);
        for (auto& at : slot->notify_at) at.reset();
      }
      move_pci_notify(*slot, vm);
      continue;
    }
    if (caps.ioeventfd) {
      for (uint16_t q = 0; q < slot->mmio->queue_count(); ++q) {
        vm.register_ioevent(slot->base + devices::virtio::kMmioQueueNotify, 4, true, q, slot->mmio->notify_fd(q));
      }
    }
    if (slot->irq->fd() >= 0) vm.register_irqfd(slot->irq->fd(), slot->irq->irq(), -1);
  }
}

// Without ioeventfds a notify write reaches the function's BAR on the vCPU thread, which
// signals the same eventfd: slower, still correct.
void Machine::move_pci_notify(VirtioSlot& slot, hv::Vm& vm) {
  if (!hypervisor_->capabilities().ioeventfd) return;
  constexpr uint32_t kLen = devices::virtio::VirtioPci::kNotifyAccessSize;
  std::lock_guard<std::mutex> lock(slot.notify_mu);
  for (uint16_t q = 0; q < slot.notify_at.size(); ++q) {
    const std::optional<uint64_t> now = slot.pci->notify_address(q);
    auto& at = slot.notify_at[q];
    if (at == now) continue;
    // A refusal (firmware sizing BARs can overlap two functions for a moment) only costs
    // speed: the write then reaches the BAR, which signals the same eventfd.
    try {
      if (at) vm.unregister_ioevent(*at, kLen, false, 0, slot.pci->notify_fd(q));
      at.reset();
      if (now) {
        vm.register_ioevent(*now, kLen, false, 0, slot.pci->notify_fd(q));
        at = now;
      }
    } catch (const Error&) {
      at.reset();
    }
  }
}

namespace {

StateFile open_restore(const MachineConfig& config) {
  return config.restore_from.empty() ? StateFile{} : open_state_file(config.restore_from);
}

vmm::GuestMemory make_memory(const MachineConfig& config, const StateFile& restore) {
  const uint64_t bytes = config.memory_bytes;
  // Firmware VMs keep RAM below 2 GiB: the PCI configuration space (ECAM) and BAR window follow.
  const uint64_t low = config.firmware.kind == FirmwareKind::kNone ? vmm::kPciHoleStart : vmm::kFirmwareLowRamLimit;
  if (!restore.fd.valid()) return vmm::GuestMemory(bytes, low);
  if (restore.memory_bytes != bytes) {
    throw Error("STATE_MACHINE_MISMATCH", "the saved state holds " + std::to_string(restore.memory_bytes >> 20) +
                                              " MiB of memory, but the VM has " + std::to_string(bytes >> 20) +
                                              " MiB: set the memory back, or delete the saved state");
  }
  return vmm::GuestMemory(bytes, vmm::MemoryImage{restore.fd.get(), restore.memory_offset}, low);
}

}  // namespace

Machine::Machine(MachineConfig config, MachineEvents& events)
    : config_(std::move(config)), events_(events), hypervisor_(hv::open_hypervisor()),
      restore_(open_restore(config_)), memory_(make_memory(config_, restore_)) {
  const auto& caps = hypervisor_->capabilities();
  if (config_.vcpu_count == 0 || config_.vcpu_count > caps.max_vcpus) {
    throw Error("VM_VCPU_COUNT", "a VM can have 1 to " + std::to_string(caps.max_vcpus) +
                                     " vCPUs on this host, not " + std::to_string(config_.vcpu_count));
  }
  irq_lines_.push_back(std::make_unique<KvmIrqLine>(*this, kCom1Irq));
  uart_ = std::make_shared<devices::Uart16550>(
      *irq_lines_.back(), [this](std::span<const uint8_t> bytes) { events_.on_console_output(bytes); });
  rtc_ = std::make_shared<devices::CmosRtc>();
  {
    const auto& regions = memory_.regions();
    rtc_->set_memory_layout(regions[0].size, regions.size() > 1 ? regions[1].size : 0);
  }
  irq_lines_.push_back(std::make_unique<KvmIrqLine>(*this, devices::input::I8042::kKeyboardIrq));
  vmm::IrqLine& keyboard_irq = *irq_lines_.back();
  // Direct-boot VMs hand IRQ 12 to a virtio-mmio device (kVirtioIrqs): their mouse has no
  // interrupt, so Linux's aux probe leaves it alone. Firmware VMs route it (the DSDT's MOU_).
  vmm::IrqLine* aux_irq = nullptr;
  if (firmware()) {
    irq_lines_.push_back(std::make_unique<KvmIrqLine>(*this, devices::input::I8042::kAuxIrq));
    aux_irq = irq_lines_.back().get();
  } else {
    unconnected_irq_ = std::make_unique<UnconnectedIrqLine>();
    aux_irq = unconnected_irq_.get();
  }
  i8042_ = std::make_shared<devices::input::I8042>(keyboard_irq, *aux_irq, [this] { post_reset("i8042"); });
  io_bus_.insert(kCom1Port, 8, uart_, "COM1 (16550A UART)");
  io_bus_.insert(kRtcPort, 2, rtc_, "CMOS RTC");
  io_bus_.insert(devices::input::I8042::kBase, devices::input::I8042::kPortCount, i8042_, "i8042 controller");
  if (firmware()) {
    if (!caps.readonly_memory || !caps.msi) {
      throw Error("HV_MISSING_CAPABILITY", "firmware-booted VMs need KVM's read-only memory slots and MSI injection; "
                                           "update the host kernel");
    }
    msi_ = std::make_unique<MsiToVm>(*this);
    PcPlatform::Wiring wiring{memory_, io_bus_, mmio_bus_,
                              [this](uint32_t gsi) -> vmm::IrqLine& {
                                irq_lines_.push_back(std::make_unique<KvmIrqLine>(*this, gsi));
                                return *irq_lines_.back();
                              },
                              [this](const std::function<void(hv::Vm&)>& f) {
                                std::shared_lock<std::shared_mutex> lock(vm_mu_);
                                if (vm_) f(*vm_);
                              },
                              [this] { post_exit({ExitReason::kPowerOff, 0, "acpi"}); },
                              [this] { post_reset("reset-register"); }};
    platform_ = std::make_unique<PcPlatform>(config_, std::move(wiring));
  } else {
    acpi_sleep_ = std::make_shared<devices::AcpiSleep>(boot::kAcpiS5SleepType, [this] {
      post_exit({ExitReason::kPowerOff, 0, "acpi"});
    });
    io_bus_.insert(boot::kAcpiSleepControlPort, devices::AcpiSleep::kPortCount, acpi_sleep_, "ACPI sleep registers");
  }
  if (config_.test_exit_port) {
    debug_exit_ = std::make_shared<devices::DebugExit>([this](uint32_t code) {
      post_exit({ExitReason::kGuestExit, code, ""});
    });
    io_bus_.insert(kTestExitPort, 4, debug_exit_, "test-exit port");
  }
  for (uint32_t i = 0; i < config_.vcpu_count; ++i) {
    counters_.push_back(std::make_unique<vmm::VcpuExitCounters>());
  }
  cpu_time_before_reset_.assign(config_.vcpu_count, 0);
  if (config_.rng) add_virtio(std::make_shared<devices::virtio::VirtioRng>());
  if (config_.virtio_console) {
    virtio_console_ = std::make_shared<devices::virtio::VirtioConsole>(
        [this](std::span<const uint8_t> bytes) { events_.on_console2_output(bytes); });
    add_virtio(virtio_console_);
  }
  std::vector<std::string> opened;
  for (const auto& d : config_.disks) {
    // The same image twice in one VM would be two writers of one file.
    char resolved[PATH_MAX];
    std::string real = realpath(d.path.c_str(), resolved) ? std::string(resolved) : d.path;
    for (const auto& o : opened) {
      if (o == real) throw Error("DISK_IN_USE", d.path + " is attached to this VM twice");
    }
    opened.push_back(real);
    disk::OpenOptions options;
    options.read_only = d.read_only;
    options.direct = true;  // like cache=none: the guest has its own page cache
    auto image = disk::open_disk(d.path, options);
    if (!d.format.empty() && d.format != disk::format_name(image->info().format)) {
      throw Error("DISK_FORMAT_MISMATCH", d.path + " is a " + disk::format_name(image->info().format) +
                                              " image, not " + d.format);
    }
    disk_fingerprints_.push_back(std::to_string(image->info().virtual_size) + (d.read_only ? ":ro" : ":rw"));
    if (d.scsi) {
      if (!platform_) {
        throw Error("VM_DEVICES", d.path + " is attached as a SCSI disk, but only Generation 1 and 2 VMs (firmware-booted) "
                                          "have a SCSI controller: attach it as a virtio disk");
      }
      disk_fingerprints_.back() += ":scsi";
      scsi_disks_.push_back(std::make_shared<devices::scsi::ScsiDisk>(std::move(image), d.serial, d.read_only));
      continue;
    }
    // A request queue per vCPU, so a guest's CPUs do not contend for one ring.
    auto queues = static_cast<uint16_t>(std::min<uint32_t>(config_.vcpu_count, devices::virtio::VirtioBlk::kMaxQueues));
    add_virtio(std::make_shared<devices::virtio::VirtioBlk>(std::move(image), d.serial, d.read_only, queues));
  }
  for (const auto& nic : config_.nics) {
    auto net = std::make_shared<devices::virtio::VirtioNet>(nic.mac, devices::net::open_backend(nic));
    add_virtio(net);
    nets_.push_back(std::move(net));
  }
  if (platform_ && (!config_.dvds.empty() || !scsi_disks_.empty())) {
    // The SCSI controller, one logical unit per target (LUN 0): the SCSI disks from target
    // 0, then the DVD drives, each in its MachineConfig order.
    std::vector<std::shared_ptr<devices::scsi::Target>> targets(scsi_disks_.begin(), scsi_disks_.end());
    for (const auto& d : config_.dvds) {
      auto drive = std::make_shared<devices::scsi::ScsiCdrom>("berth-dvd-" + std::to_string(dvds_.size()));
      if (!d.path.empty()) drive->insert(d.path);
      dvds_.push_back(drive);
      targets.push_back(drive);
    }
    add_virtio(std::make_shared<devices::virtio::VirtioScsi>(std::move(targets)));
  }
  if (platform_) {
    using Boot = FirmwareConfig::BootDevice;
    std::vector<std::pair<Boot, std::string>> boot_devices;
    for (const auto& slot : virtio_) {
      if (dynamic_cast<const devices::virtio::VirtioScsi*>(&slot->device())) {
        const auto disks = static_cast<uint32_t>(scsi_disks_.size());
        for (uint32_t t = 0; t < disks + dvds_.size(); ++t) {
          boot_devices.emplace_back(t < disks ? Boot::kDisk : Boot::kDvd,
                                    devices::platform::ofw_path::virtio_scsi(slot->pci_slot, 0, t, 0));
        }
      }
      if (dynamic_cast<const devices::virtio::VirtioBlk*>(&slot->device())) {
        boot_devices.emplace_back(Boot::kDisk, devices::platform::ofw_path::virtio_blk(slot->pci_slot));
      } else if (dynamic_cast<const devices::virtio::VirtioNet*>(&slot->device())) {
        boot_devices.emplace_back(Boot::kNetwork, devices::platform::ofw_path::virtio_net(slot->pci_slot));
      }
    }
    platform_->set_boot_devices(std::move(boot_devices));
    platform_->finish(config_);
  }
  if (restore_.fd.valid()) {
    build_restored();
    restore_.records.clear();
    restore_.records.shrink_to_fit();
  } else {
    build();
  }
  for (auto& net : nets_) net->start();  // frames may arrive from now on
}

Machine::~Machine() {
  try {
    stop();
  } catch (...) {
    // Destruction must not throw; the VM is being torn down either way.
  }
  // Network backends deliver into their devices' transports: stop them while those exist.
  for (auto& net : nets_) net->shutdown();
  // Quiet every transport (no queues, no interrupts) before the PCI bus they hang off goes.
  for (auto& slot : virtio_) slot->with([](auto& t) { t.reset(); });
  {
    std::lock_guard<std::mutex> lock(request_mu_);
    supervisor_quit_ = true;
  }
  request_cv_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
}

void Machine::build() {
  auto vm = hypervisor_->create_vm();
  uint32_t slot = 0;
  for (const auto& r : memory_.regions()) vm->map_memory(slot++, r.gpa, r.size, r.host);
  attach_virtio(*vm);
  boot::BootResult loaded;
  if (platform_) {
    // The firmware starts at the reset vector, where a new vCPU already points.
    platform_->attach(*vm);
    platform_->load_firmware();
    boot_protocol_ = config_.firmware.kind == FirmwareKind::kUefi ? "uefi" : "bios";
  } else {
    boot::BootConfig boot = config_.boot;
    boot.vcpu_count = config_.vcpu_count;
    loaded = boot::load_kernel(memory_, boot);
    boot_protocol_ = boot::protocol_name(loaded.protocol);
  }
  auto supported = vm->supported_cpuid();
  std::vector<std::unique_ptr<hv::Vcpu>> vcpus;
  for (uint32_t i = 0; i < config_.vcpu_count; ++i) {
    auto vcpu = vm->create_vcpu(i);
    vcpu->set_cpuid(vmm::build_cpuid(supported, i, config_.vcpu_count));
    if (i == 0 && !platform_) {
      // Application processors wait for INIT/SIPI from the guest, as on real hardware.
      vcpu->set_sregs(loaded.cpu.sregs);
      vcpu->set_regs(loaded.cpu.regs);
      vcpu->reset_fpu();
    }
    vcpus.push_back(std::move(vcpu));
  }
  std::unique_lock<std::shared_mutex> lock(vm_mu_);
  vm_ = std::move(vm);
  vcpus_ = std::move(vcpus);
}

void Machine::teardown() {
  for (auto& r : runners_) r->request_stop();
  for (size_t i = 0; i < runners_.size(); ++i) {
    runners_[i]->join();
    cpu_time_before_reset_[i] += runners_[i]->cpu_time_ns();
  }
  runners_.clear();
  std::unique_lock<std::shared_mutex> lock(vm_mu_);
  vcpus_.clear();
  vm_.reset();
}

void Machine::start_runners(bool paused) {
  for (auto& vcpu : vcpus_) {
    auto* counters = counters_[vcpu->id()].get();
    runners_.push_back(std::make_unique<vmm::VcpuRunner>(
        *vcpu, [this](hv::Vcpu& v, const hv::VcpuExit& e) { return handle_exit(v, e); }, *counters));
  }
  for (auto& r : runners_) r->start(paused);
}

void Machine::start(bool paused) {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (state_ != MachineState::kCreated) {
    throw Error("VM_STATE", std::string("the VM cannot start: it is ") + state_name(state_));
  }
  started_at_ns_ = now_ns();
  supervisor_ = std::thread([this] { supervise(); });
  paused_ = paused;
  start_runners(paused);
  set_state(paused ? MachineState::kPaused : MachineState::kRunning);
}

void Machine::pause() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (state_ == MachineState::kPaused) return;
  if (state_ != MachineState::kRunning) {
    throw Error("VM_STATE", std::string("the VM cannot pause: it is ") + state_name(state_));
  }
  for (auto& r : runners_) r->pause();
  paused_ = true;
  set_state(MachineState::kPaused);
}

void Machine::resume() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (state_ == MachineState::kRunning) return;
  if (state_ != MachineState::kPaused) {
    throw Error("VM_STATE", std::string("the VM cannot resume: it is ") + state_name(state_));
  }
  for (auto& r : runners_) r->resume();
  paused_ = false;
  set_state(MachineState::kRunning);
}

void Machine::stop() {
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    if (state_ == MachineState::kStopped) return;
    teardown();
  }
  finish({ExitReason::kHostStop, 0, ""});
}

void Machine::reset() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (state_ != MachineState::kRunning && state_ != MachineState::kPaused) {
    throw Error("VM_STATE", std::string("the VM cannot reset: it is ") + state_name(state_));
  }
  teardown();
  reboot();
  start_runners(paused_);
  events_.on_reset("host");
}

void Machine::press_power_button() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (state_ != MachineState::kRunning) {
    throw Error("VM_STATE", std::string("the power button works only while the VM runs: it is ") + state_name(state_));
  }
  if (platform_) {
    platform_->press_power_button();  // the fixed power button: PWRBTN_STS and the SCI
    return;
  }
  std::shared_lock<std::shared_mutex> vm_lock(vm_mu_);
  if (!vm_) return;  // between a guest's reset and its new VM: the press is lost, as on hardware
  vm_->set_irq_line(boot::kAcpiGedIrq, true);
  vm_->set_irq_line(boot::kAcpiGedIrq, false);
}

void Machine::reboot() {
  // Devices first: nothing may touch the memory their queues point into once it is cleared.
  if (platform_) platform_->reset();  // the chipset and every PCI function, virtio-pci included
  for (auto& v : virtio_) v->with([](auto& t) { t.reset(); });
  memory_.clear();
  uart_->reset();
  rtc_->reset();  // keeps its NVRAM, as a real CMOS does
  i8042_->reset();
  build();
  ++resets_;
}

devices::display::Framebuffer* Machine::framebuffer() { return platform_ ? platform_->framebuffer() : nullptr; }

ExitInfo Machine::wait() {
  std::unique_lock<std::mutex> lock(done_mu_);
  done_cv_.wait(lock, [&] { return exit_info_.has_value(); });
  return *exit_info_;
}

void Machine::change_media(uint32_t drive, const std::string& path) {
  if (drive >= dvds_.size()) {
    throw Error("INVALID_ARGUMENT", "the VM has " + std::to_string(dvds_.size()) + " DVD drive(s); there is no drive " +
                                        std::to_string(drive));
  }
  if (path.empty()) {
    dvds_[drive]->eject();
  } else {
    dvds_[drive]->insert(path);
  }
}

void Machine::write_console(std::span<const uint8_t> bytes) { uart_->enqueue_input(bytes); }

void Machine::key_event(uint16_t evdev_code, bool down) { i8042_->key(evdev_code, down); }

void Machine::pointer_motion(int32_t dx, int32_t dy, int32_t dz, uint8_t buttons) {
  i8042_->pointer_motion(dx, dy, dz, buttons);
}

void Machine::write_console2(std::span<const uint8_t> bytes) {
  if (virtio_console_) virtio_console_->enqueue_input(bytes);
}

MachineState Machine::state() const {
  std::lock_guard<std::mutex> lock(control_mu_);
  return state_;
}

MachineStats Machine::stats() const {
  std::lock_guard<std::mutex> lock(control_mu_);
  MachineStats s;
  for (uint32_t i = 0; i < config_.vcpu_count; ++i) {
    const auto& c = *counters_[i];
    VcpuStats v;
    v.id = i;
    v.exits_io = c.io.load();
    v.exits_mmio = c.mmio.load();
    v.exits_halt = c.halt.load();
    v.exits_interrupted = c.interrupted.load();
    v.exits_shutdown = c.shutdown.load();
    v.exits_other = c.other.load();
    v.cpu_time_ns = cpu_time_before_reset_[i] + (i < runners_.size() ? runners_[i]->cpu_time_ns() : 0);
    s.vcpus.push_back(v);
  }
  s.uptime_ns = started_at_ns_ ? now_ns() - started_at_ns_ : 0;
  s.rss_bytes = proc_status_kib("VmRSS:");
  s.peak_rss_bytes = proc_status_kib("VmHWM:");
  s.memory_bytes = config_.memory_bytes;
  s.resets = resets_;
  s.boot_protocol = boot_protocol_;
  for (const auto& slot : virtio_) {
    if (auto* blk = dynamic_cast<const devices::virtio::VirtioBlk*>(&slot->device())) {
      s.disks.push_back({blk->path(), blk->io_backend(), blk->queue_count(), blk->completed_requests(),
                         blk->peak_in_flight()});
    }
  }
  for (const auto& d : scsi_disks_) s.disks.push_back({d->path(), d->io_backend(), 1, d->completed_io(), 0});
  return s;
}

bool Machine::handle_exit(hv::Vcpu& vcpu, const hv::VcpuExit& exit) {
  switch (exit.kind) {
    case hv::ExitKind::kIo: {
      const auto& io = exit.io;
      for (uint32_t i = 0; i < io.count; ++i) {
        uint8_t* data = io.data + static_cast<size_t>(i) * io.size;
        if (io.is_write) {
          io_bus_.write(io.port, std::span<const uint8_t>(data, io.size));
        } else if (!io_bus_.read(io.port, std::span<uint8_t>(data, io.size))) {
          std::memset(data, 0xff, io.size);  // nothing answers: the bus floats high
        }
      }
      // A write that powered off, reset or ended the VM takes effect at once: this vCPU
      // runs no further guest instruction (the others stop when the supervisor tears down).
      return !stop_pending_.load();
    }
    case hv::ExitKind::kMmio: {
      const auto& m = exit.mmio;
      if (m.is_write) {
        mmio_bus_.write(m.address, std::span<const uint8_t>(m.data, m.length));
      } else if (!mmio_bus_.read(m.address, std::span<uint8_t>(m.data, m.length))) {
        std::memset(m.data, 0xff, m.length);
      }
      return !stop_pending_.load();
    }
    case hv::ExitKind::kHalt:
      return true;
    case hv::ExitKind::kShutdown:
      post_reset("triple-fault");
      return false;
    case hv::ExitKind::kSystemReset:
      post_reset("platform");
      return false;
    case hv::ExitKind::kSystemOff:
      post_exit({ExitReason::kPowerOff, 0, ""});
      return false;
    case hv::ExitKind::kInterrupted:
      return true;
    default: {
      ExitInfo info{ExitReason::kError, 0,
                    "vCPU " + std::to_string(vcpu.id()) + ": " +
                        (exit.detail.empty() ? "unexpected exit" : exit.detail)};
      try {
        auto regs = vcpu.get_regs();
        char b[64];
        std::snprintf(b, sizeof b, " (rip 0x%llx)", static_cast<unsigned long long>(regs.rip));
        info.detail += b;
      } catch (const Error&) {
        // The registers are a diagnostic extra; the failure is reported either way.
      }
      post_exit(std::move(info));
      return false;
    }
  }
}

void Machine::post_reset(const std::string& reason) {
  std::lock_guard<std::mutex> lock(request_mu_);
  if (request_ != Request::kNone) return;  // the first request wins
  request_ = Request::kReset;
  stop_pending_.store(true);
  reset_reason_ = reason;
  request_cv_.notify_all();
}

void Machine::post_exit(ExitInfo info) {
  std::lock_guard<std::mutex> lock(request_mu_);
  if (request_ == Request::kExit) return;
  request_ = Request::kExit;
  stop_pending_.store(true);
  exit_request_ = std::move(info);
  request_cv_.notify_all();
}

void Machine::supervise() {
  for (;;) {
    Request request;
    std::string reset_reason;
    ExitInfo exit_info;
    {
      std::unique_lock<std::mutex> lock(request_mu_);
      request_cv_.wait(lock, [&] { return supervisor_quit_ || request_ != Request::kNone; });
      if (supervisor_quit_) return;
      request = request_;
      reset_reason = reset_reason_;
      exit_info = exit_request_;
    }
    bool finished = false;
    {
      std::lock_guard<std::mutex> lock(control_mu_);
      if (state_ == MachineState::kStopped) return;
      teardown();
      if (request == Request::kReset && config_.restart_on_reset) {
        events_.on_reset(reset_reason);
        try {
          reboot();
          // Clear the request only now, so vCPUs of the old VM could not post a second one.
          std::lock_guard<std::mutex> rl(request_mu_);
          request_ = Request::kNone;
          stop_pending_.store(false);
        } catch (const Error& e) {
          exit_info = {ExitReason::kError, 0, std::string("reboot failed: ") + e.what()};
          request = Request::kExit;
        }
        if (request == Request::kReset) start_runners(paused_);
      } else if (request == Request::kReset) {
        exit_info = {ExitReason::kReset, 0, reset_reason};
      }
      if (request == Request::kExit || !config_.restart_on_reset) finished = true;
    }
    if (finished) {
      finish(exit_info);
      return;
    }
  }
}

void Machine::set_state(MachineState s) {
  state_ = s;
  events_.on_state(s);
}

void Machine::finish(ExitInfo info) {
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    if (state_ == MachineState::kStopped) return;  // someone else finished first
    set_state(MachineState::kStopped);
  }
  // The VM cannot run again: its disk images are closed now (cleanly, so a VHDX has no
  // log left to replay and other programs may open them), not when the Machine goes away.
  for (auto& slot : virtio_) {
    if (auto* blk = dynamic_cast<devices::virtio::VirtioBlk*>(&slot->device())) {
      slot->with([](auto& t) { t.reset(); });
      blk->close_disk();
    } else if (dynamic_cast<devices::virtio::VirtioScsi*>(&slot->device()) && !scsi_disks_.empty()) {
      slot->with([](auto& t) { t.reset(); });
      for (auto& d : scsi_disks_) d->close_disk();
    }
  }
  // Likewise the network backends: the tap device and the forwarded host ports are freed.
  for (auto& slot : virtio_) {
    if (auto* net = dynamic_cast<devices::virtio::VirtioNet*>(&slot->device())) {
      slot->with([](auto& t) { t.reset(); });
      net->close_backend();
    }
  }
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    exit_info_ = info;
  }
  done_cv_.notify_all();
  events_.on_exit(info);
}

}  // namespace berth::machine
