// A virtual machine: guest memory, vCPU threads, the PC devices and the boot image,
// assembled over the hypervisor interface. The supervisor thread carries out resets and
// stops that the guest or the host request, so vCPU threads never join each other.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "boot/boot.h"
#include "devices/net/backend.h"
#include "hv/hv.h"
#include "machine/state_file.h"
#include "vmm/bus.h"
#include "vmm/guest_memory.h"
#include "vmm/vcpu_runner.h"

namespace berth::devices {
namespace scsi {
class ScsiCdrom;
class ScsiDisk;
}
class Uart16550;
class CmosRtc;
namespace input {
class I8042;
}
class DebugExit;
class AcpiSleep;
namespace virtio {
class VirtioDevice;
class VirtioMmio;
class VirtioConsole;
class VirtioNet;
}  // namespace virtio
namespace display {
class Framebuffer;
}  // namespace display
}  // namespace berth::devices

namespace berth::machine {

class PcPlatform;

// A disk image attached as a virtio-blk device.
struct DiskConfig {
  std::string path;
  bool read_only = false;
  // Optional: the format the caller expects ("raw", "qcow2", "vhdx", "vhd",
  // "host-device"). The format is always probed from the image's magic bytes; a hint that
  // disagrees fails creation with DISK_FORMAT_MISMATCH.
  std::string format;
  std::string serial;  // GET_ID's answer (the SCSI unit serial number), at most 20 bytes
  // On the firmware VM's SCSI controller as a SCSI hard disk instead of on a virtio-blk
  // device of its own (VM_DEVICES for a VM that boots a kernel file).
  bool scsi = false;
};

// The firmware a Generation 1 (BIOS) or 2 (UEFI) VM boots instead of a kernel file: the
// Q35-like platform with PCI, its chipset, fw_cfg and flash (machine/firmware_image.h).
enum class FirmwareKind { kNone, kUefi, kBios };

struct FirmwareConfig {
  FirmwareKind kind = FirmwareKind::kNone;
  std::string code_path;  // OVMF's code image (UEFI) or SeaBIOS's ROM (BIOS)
  std::string vars_path;  // UEFI: the VM's own variable store, which the firmware writes
  // Which kinds of device the firmware tries, first to last (passed as fw_cfg "bootorder").
  enum class BootDevice { kDvd, kDisk, kNetwork };
  std::vector<BootDevice> boot_order{BootDevice::kDvd, BootDevice::kDisk, BootDevice::kNetwork};
  // A bochs-display PCI display at 00:02.0 (devices/display/bochs_display.h), with this
  // option ROM in its ROM BAR when not empty (BIOS VMs: SeaBIOS's
  // vgabios-bochs-display.bin, which draws the BIOS's text into the framebuffer).
  bool display = false;
  std::string display_rom_path;
};

// A DVD drive of a firmware-booted VM (on its SCSI controller): an ISO image as read-only
// media, or empty.
struct DvdConfig {
  std::string path;  // empty: no media
};

struct MachineConfig {
  uint64_t memory_bytes = 64ull << 20;
  uint32_t vcpu_count = 1;
  boot::BootConfig boot;  // used when firmware.kind is kNone
  FirmwareConfig firmware;
  bool test_exit_port = false;   // the 0xf4 port that lets a test guest end the VM
  bool restart_on_reset = true;  // a guest reset reboots the VM (false: the VM stops)
  // virtio-mmio devices, in this order, at kVirtioMmioBase + n * 0x1000 with ISA IRQs
  // from kVirtioIrqs; each is announced on the kernel command line as
  // "virtio_mmio.device=0x200@<base>:<irq>" (Linux's syntax; the test guest reads it too).
  bool rng = false;             // virtio-rng fed by the host's getrandom()
  bool virtio_console = false;  // virtio-console: a second byte-stream console
  // virtio-blk devices, after rng and console, and SCSI disks. Opened (DISK_NOT_FOUND,
  // DISK_IN_USE, ...) when the machine is created and kept open across guest resets.
  std::vector<DiskConfig> disks;
  // virtio-net cards, one per entry (after the disks), each on its own backend.
  std::vector<devices::net::NicConfig> nics;
  // DVD drives (firmware-booted VMs only). The SCSI controller's targets are the SCSI
  // disks (in disks order) from target 0, then the DVD drives, each with LUN 0.
  std::vector<DvdConfig> dvds;
  // A saved-state file (machine/state_file.h) to resume from instead of booting. It must
  // have been saved by a machine of this same configuration (STATE_MACHINE_MISMATCH); it
  // is only read, and must stay unchanged while the VM runs (its memory is mapped).
  std::string restore_from;
};

constexpr uint64_t kVirtioMmioBase = 0xd0000000;  // in the 32-bit PCI hole: no RAM there
constexpr uint64_t kVirtioMmioStride = 0x1000;
constexpr uint32_t kVirtioIrqs[] = {5, 6, 7, 9, 10, 11, 12, 14, 15};

enum class MachineState { kCreated, kRunning, kPaused, kStopped };
const char* state_name(MachineState);

// Why the VM stopped, with a stable name for each reason.
enum class ExitReason { kGuestExit, kReset, kPowerOff, kHostStop, kError, kSaved };
const char* exit_reason_name(ExitReason);

struct ExitInfo {
  ExitReason reason = ExitReason::kHostStop;
  uint32_t code = 0;   // the value a guest wrote to the test-exit port
  std::string detail;  // for kError and kReset: what happened
};

// Receives events; called from vCPU, supervisor or caller threads, never concurrently
// for console output of one machine... but possibly concurrently across kinds.
class MachineEvents {
 public:
  virtual ~MachineEvents() = default;
  virtual void on_state(MachineState state) = 0;
  virtual void on_console_output(std::span<const uint8_t> bytes) = 0;
  // Output of the virtio console (MachineConfig::virtio_console), from its I/O thread.
  virtual void on_console2_output(std::span<const uint8_t> /*bytes*/) {}
  virtual void on_reset(const std::string& reason) = 0;
  virtual void on_exit(const ExitInfo& info) = 0;
};

struct VcpuStats {
  uint32_t id = 0;
  uint64_t exits_io = 0, exits_mmio = 0, exits_halt = 0, exits_interrupted = 0,
           exits_shutdown = 0, exits_other = 0;
  uint64_t cpu_time_ns = 0;
};

// One virtio-blk disk: how its requests reach the image, and how many it has carried.
struct DiskStats {
  std::string path;
  std::string io_backend;  // "io_uring", "threads" or "serial" (disk/async_disk.h)
  uint32_t queues = 0;
  uint64_t completed = 0;
  uint32_t peak_in_flight = 0;  // most requests on the disk at once since start
};

struct MachineStats {
  std::vector<VcpuStats> vcpus;
  std::vector<DiskStats> disks;
  uint64_t uptime_ns = 0;
  uint64_t rss_bytes = 0;
  uint64_t peak_rss_bytes = 0;
  uint64_t memory_bytes = 0;
  uint32_t resets = 0;
  std::string boot_protocol;
};

// What saving the VM's state cost.
struct SaveResult {
  uint64_t state_bytes = 0;   // the file's allocated size
  uint64_t memory_bytes = 0;  // guest memory written (untouched and zero pages are not)
  double pause_ms = 0;        // how long the guest did not run
  double total_ms = 0;
  std::string detail;  // set when a checkpoint's disks moved but its memory could not be kept
};

class Machine {
 public:
  // Opens the hypervisor, reserves memory and loads the boot image; throws berth::Error.
  Machine(MachineConfig config, MachineEvents& events);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  void start(bool paused = false);
  void pause();
  void resume();
  // Hard stop (turning the power off); returns when every vCPU has stopped.
  void stop();
  // Host-initiated reset: reboots the VM in place.
  void reset();
  // Presses the ACPI power button (one edge on the GED's interrupt): a guest that handles
  // it shuts down and powers off; one that does not carries on. Only while running.
  void press_power_button();
  // Blocks until the VM has stopped; returns why.
  ExitInfo wait();

  // Saves the whole VM to `path` (vCPUs, platform, devices, memory) and ends it with
  // ExitReason::kSaved; its disks are flushed and closed. Only while running or paused.
  SaveResult save(const std::string& path);
  // A checkpoint of a running VM: saves as save() does, then moves each virtio-blk disk
  // onto its new file (new_disks, in MachineConfig::disks order: an overlay whose backing
  // file is the disk's current file) and continues as it was (running or paused). On an
  // error the VM continues on its old files.
  SaveResult checkpoint(const std::string& path, const std::vector<std::string>& new_disks);

  // Puts the ISO at `path` into DVD drive `drive` (MachineConfig::dvds order), replacing
  // what is there, or ejects it when path is empty; the guest sees the media change.
  // Throws INVALID_ARGUMENT for no such drive, DVD_MEDIA_NOT_FOUND / DVD_MEDIA_INVALID
  // for a file that is not there or not an ISO image (the drive is then unchanged).
  void change_media(uint32_t drive, const std::string& path);

  void write_console(std::span<const uint8_t> bytes);
  // The PS/2 keyboard and mouse: an evdev key code pressed or released; relative pointer
  // movement (dx right, dy down, dz wheel clicks up, buttons devices::input::button bits).
  // Any thread; the guest sees them once its driver has turned the devices on.
  void key_event(uint16_t evdev_code, bool down);
  void pointer_motion(int32_t dx, int32_t dy, int32_t dz, uint8_t buttons);
  // Types into the virtio console; dropped when the VM has none.
  void write_console2(std::span<const uint8_t> bytes);
  MachineState state() const;
  MachineStats stats() const;
  // The display's picture (FirmwareConfig::display), or nullptr when the VM has none.
  devices::display::Framebuffer* framebuffer();

 private:
  class KvmIrqLine;
  class VirtioIrq;
  class MsiToVm;
  struct VirtioSlot;
  enum class Request { kNone, kReset, kExit };

  void build();     // creates the hypervisor VM and vCPUs for the current memory contents
  void teardown();  // stops and destroys vCPUs and the hypervisor VM
  void reboot();    // after teardown: devices and memory to power-on state, a new hypervisor VM
  void start_runners(bool paused);
  bool handle_exit(hv::Vcpu& vcpu, const hv::VcpuExit& exit);
  void post_reset(const std::string& reason);
  void post_exit(ExitInfo info);
  void supervise();
  void add_virtio(std::shared_ptr<devices::virtio::VirtioDevice> device);
  void attach_virtio(hv::Vm& vm);  // ioeventfds and irqfds of the virtio devices on a new VM
  // A virtio-pci function's BAR moved: its queues' notify ioeventfds follow it.
  void move_pci_notify(VirtioSlot& slot, hv::Vm& vm);
  bool firmware() const { return config_.firmware.kind != FirmwareKind::kNone; }
  void set_state(MachineState s);
  void finish(ExitInfo info);
  // Saved state (machine_state.cc).
  SaveResult save_locked(const std::string& path, const std::function<void()>& before_thaw, bool keep_running);
  std::vector<uint8_t> capture_records();
  bool snapshot_fits(const std::string& path) const;
  void build_restored();  // build() for a VM resumed from restore_
  std::string fingerprint() const;

  MachineConfig config_;
  MachineEvents& events_;
  std::unique_ptr<hv::Hypervisor> hypervisor_;
  StateFile restore_;  // the state being resumed (records and the mapped memory image)
  vmm::GuestMemory memory_;
  std::vector<std::string> disk_fingerprints_;  // "<virtual size>:<ro|rw>" per disk
  vmm::Bus io_bus_{"I/O port"};
  vmm::Bus mmio_bus_{"MMIO"};
  std::shared_ptr<devices::Uart16550> uart_;
  std::shared_ptr<devices::CmosRtc> rtc_;
  std::shared_ptr<devices::input::I8042> i8042_;
  std::shared_ptr<devices::DebugExit> debug_exit_;
  std::shared_ptr<devices::AcpiSleep> acpi_sleep_;
  std::vector<std::unique_ptr<KvmIrqLine>> irq_lines_;
  std::unique_ptr<vmm::IrqLine> unconnected_irq_;  // the mouse's, in direct-boot VMs
  std::unique_ptr<MsiToVm> msi_;

  // The hypervisor VM is replaced on reset; interrupt lines read it under a shared lock.
  mutable std::shared_mutex vm_mu_;
  std::unique_ptr<hv::Vm> vm_;
  std::vector<std::unique_ptr<hv::Vcpu>> vcpus_;
  std::vector<std::unique_ptr<vmm::VcpuRunner>> runners_;
  std::vector<std::unique_ptr<vmm::VcpuExitCounters>> counters_;
  std::vector<uint64_t> cpu_time_before_reset_;
  std::string boot_protocol_;

  // control_mu_ serializes start/pause/resume/stop/reset and the supervisor's work.
  mutable std::mutex control_mu_;
  MachineState state_ = MachineState::kCreated;
  bool paused_ = false;

  // Requests from vCPU threads to the supervisor.
  std::mutex request_mu_;
  std::condition_variable request_cv_;
  Request request_ = Request::kNone;
  std::atomic<bool> stop_pending_{false};  // a reset or exit is posted: vCPUs stop at their next exit
  std::string reset_reason_;
  ExitInfo exit_request_;
  bool supervisor_quit_ = false;
  std::thread supervisor_;

  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::optional<ExitInfo> exit_info_;

  uint64_t started_at_ns_ = 0;
  uint32_t resets_ = 0;

  // Last, so the device I/O threads stop before anything they use goes away.
  std::shared_ptr<devices::virtio::VirtioConsole> virtio_console_;
  std::vector<std::shared_ptr<devices::virtio::VirtioNet>> nets_;  // backends stopped in ~Machine
  std::vector<std::shared_ptr<devices::scsi::ScsiCdrom>> dvds_;     // on the SCSI controller
  std::vector<std::shared_ptr<devices::scsi::ScsiDisk>> scsi_disks_;  // there too, before the DVD drives
  std::vector<std::unique_ptr<VirtioSlot>> virtio_;
  // Firmware-booted VMs' chipset and firmware. After the virtio slots: its PCI bus lets go
  // of the (by then quiescent) virtio-pci functions first, which the slots then destroy.
  std::unique_ptr<PcPlatform> platform_;
};

}  // namespace berth::machine
