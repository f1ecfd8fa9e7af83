// Saved state of a Machine: save, checkpoint (save and continue on new disk files) and
// resuming a VM from a state file. The records come in one order: machine, cpuid, each
// vCPU, platform, then the devices as the machine creates them.
#include <time.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/acpi_sleep.h"
#include "devices/cmos_rtc.h"
#include "devices/input/i8042.h"
#include "devices/scsi/disk.h"
#include "devices/uart16550.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "disk/block_device.h"
#include "machine/cpu_state_records.h"
#include "machine/machine.h"
#include "machine/pc_platform.h"
#include "machine/virtio_slot.h"
#include "vmm/cpuid.h"

namespace berth::machine {

namespace {

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// This process's resident memory (guest pages it touched and the VMM's own).
uint64_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return UINT64_MAX;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : UINT64_MAX;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

// What a saved state must be resumed into: the same memory, vCPUs and devices in the same
// order (their records follow it), each disk of the same size.
std::string Machine::fingerprint() const {
  std::string f = "memory=" + std::to_string(config_.memory_bytes) + " vcpus=" + std::to_string(config_.vcpu_count);
  f += std::string(" test-exit=") + (config_.test_exit_port ? "1" : "0");
  f += std::string(" rng=") + (config_.rng ? "1" : "0");
  f += std::string(" console=") + (config_.virtio_console ? "1" : "0");
  f += " disks=[" + join(disk_fingerprints_) + "]";
  std::vector<std::string> macs;
  for (const auto& n : config_.nics) {
    char mac[18];
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", n.mac[0], n.mac[1], n.mac[2], n.mac[3], n.mac[4], n.mac[5]);
    macs.push_back(mac);
  }
  f += " nics=[" + join(macs) + "]";
  // Only firmware VMs name their firmware, so states saved before it existed still match.
  if (config_.firmware.kind != FirmwareKind::kNone) {
    f += config_.firmware.kind == FirmwareKind::kUefi ? " firmware=uefi" : " firmware=bios";
    f += " dvds=" + std::to_string(config_.dvds.size());
  }
  return f;
}

std::vector<uint8_t> Machine::capture_records() {
  state::Writer w;
  size_t rec = w.begin("machine", 1);
  w.str(hypervisor_->capabilities().backend);
  w.str(fingerprint());
  w.end(rec);
  save_cpuid_record(w, vm_->supported_cpuid());
  for (auto& vcpu : vcpus_) save_vcpu_record(w, vcpu->get_state());
  save_platform_record(w, vm_->get_platform_state());
  uart_->save_state(w);
  rtc_->save_state(w);
  i8042_->save_state(w);
  if (platform_) {
    platform_->save_state(w);
  } else {
    acpi_sleep_->save_state(w);
  }
  for (auto& slot : virtio_) slot->with([&](auto& t) { t.save_state(w); });
  return w.take();
}

void Machine::build_restored() {
  state::Reader top(restore_.records, "VM");
  {
    auto rec = top.record("machine", 1);
    std::string backend = rec.body.str(16, "hypervisor");
    std::string saved = rec.body.str(4096, "configuration");
    rec.body.expect_end();
    if (backend != hypervisor_->capabilities().backend) {
      throw Error("STATE_MACHINE_MISMATCH", "the state was saved under the '" + backend + "' hypervisor; this host has '" +
                                                hypervisor_->capabilities().backend + "'");
    }
    if (saved != fingerprint()) {
      throw Error("STATE_MACHINE_MISMATCH",
                  "the VM's hardware changed since its state was saved (saved: " + saved + "; now: " + fingerprint() +
                      "): put the hardware back as it was, or delete the saved state");
    }
  }
  auto saved_cpuid = load_cpuid_record(top);
  std::vector<hv::VcpuState> vcpu_states;
  for (uint32_t i = 0; i < config_.vcpu_count; ++i) vcpu_states.push_back(load_vcpu_record(top));
  auto platform = load_platform_record(top);

  auto vm = hypervisor_->create_vm();
  auto missing = missing_cpu_features(saved_cpuid, vm->supported_cpuid());
  if (!missing.empty()) {
    throw Error("STATE_CPU_MISMATCH", "this host's processor lacks features the guest was using when it was saved: " +
                                          join(missing) + ". Resume it on a host with them, or delete the saved state");
  }
  uint32_t slot = 0;
  for (const auto& r : memory_.regions()) vm->map_memory(slot++, r.gpa, r.size, r.host);
  std::vector<std::unique_ptr<hv::Vcpu>> vcpus;
  for (uint32_t i = 0; i < config_.vcpu_count; ++i) {
    auto vcpu = vm->create_vcpu(i);
    vcpu->set_cpuid(vmm::build_cpuid(saved_cpuid, i, config_.vcpu_count));
    vcpu->set_state(vcpu_states[i]);
    vcpus.push_back(std::move(vcpu));
  }
  vm->set_platform_state(platform);
  // Devices after the interrupt controllers: a device's load may raise an interrupt (its
  // irqfd is attached below and delivers what is pending), which the controllers' state
  // must not overwrite.
  uart_->load_state(top);
  rtc_->load_state(top);
  i8042_->load_state(top);
  if (platform_) {
    platform_->load_state(top);
  } else {
    acpi_sleep_->load_state(top);
  }
  for (auto& s : virtio_) s->with([&](auto& t) { t.load_state(top); });
  top.expect_end();
  if (platform_) {
    platform_->devices_loaded();  // decode the BARs the functions' records placed
    platform_->attach(*vm);
  }
  attach_virtio(*vm);
  boot_protocol_ = "saved state";
  std::unique_lock<std::shared_mutex> lock(vm_mu_);
  vm_ = std::move(vm);
  vcpus_ = std::move(vcpus);
}

// With control_mu_ held. Pauses the vCPUs, freezes the devices, writes the state; then
// either keeps the VM stopped (the caller tears it down) or runs before_thaw and continues.
SaveResult Machine::save_locked(const std::string& path, const std::function<void()>& before_thaw, bool keep_running) {
  if (state_ != MachineState::kRunning && state_ != MachineState::kPaused) {
    throw Error("VM_STATE", std::string("the VM cannot be saved: it is ") + state_name(state_));
  }
  if (stop_pending_.load()) throw Error("VM_STATE", "the VM cannot be saved while it is restarting or stopping");
  double t0 = now_ms();
  bool was_paused = paused_;
  for (auto& r : runners_) r->pause();
  size_t frozen = 0;
  bool thawed = false;
  SaveResult result;
  auto thaw = [&] {
    if (thawed) return;
    thawed = true;
    for (size_t i = 0; i < frozen; ++i) virtio_[i]->with([](auto& t) { t.thaw(); });
    if (!was_paused) {
      for (auto& r : runners_) r->resume();
    }
    result.pause_ms = was_paused ? 0 : now_ms() - t0;
  };
  try {
    for (; frozen < virtio_.size(); ++frozen) virtio_[frozen]->with([](auto& t) { t.freeze(); });
    // A reset or exit the guest asked for while we paused wins over the save.
    if (stop_pending_.load()) throw Error("VM_STATE", "the VM began restarting or stopping while it was being saved");
    auto records = capture_records();
    StateFileWriteStats stats;
    if (!keep_running) {
      stats = write_state_file(path, records, memory_);
    } else if (!snapshot_fits(path)) {
      // Too little room to be sure the snapshot's writer succeeds once the VM runs on
      // new disks: write while paused, where a failure still leaves it on its old ones.
      stats = write_state_file(path, records, memory_);
      before_thaw();
      thaw();
    } else {
      stats = write_state_file_while_running(path, records, memory_, [&] {
        before_thaw();
        thaw();
      });
    }
    result.state_bytes = stats.file_bytes;
    result.memory_bytes = stats.memory_bytes_written;
  } catch (...) {
    thaw();
    throw;
  }
  result.total_ms = now_ms() - t0;
  if (!keep_running) result.pause_ms = was_paused ? 0 : result.total_ms;
  return result;
}

// Whether the file system holding `path` has room for every page the guest may have used
// (the process's resident memory, an upper bound) with a margin.
bool Machine::snapshot_fits(const std::string& path) const {
  struct statvfs fs{};
  auto slash = path.rfind('/');
  std::string folder = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  if (statvfs(folder.c_str(), &fs) != 0) return false;
  uint64_t available = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  uint64_t needed = std::min<uint64_t>(resident_bytes(), config_.memory_bytes) + (64ull << 20);
  return available > needed;
}

SaveResult Machine::save(const std::string& path) {
  SaveResult result;
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    result = save_locked(path, {}, false);
    teardown();
  }
  finish({ExitReason::kSaved, 0, path});
  return result;
}

SaveResult Machine::checkpoint(const std::string& path, const std::vector<std::string>& new_disks) {
  std::lock_guard<std::mutex> lock(control_mu_);
  // Each disk's device, in MachineConfig::disks order: virtio-blk devices were made in that
  // order (skipping the SCSI disks), and so were the SCSI disks.
  std::vector<devices::virtio::VirtioBlk*> blks;
  for (auto& slot : virtio_) {
    if (auto* blk = dynamic_cast<devices::virtio::VirtioBlk*>(&slot->device())) blks.push_back(blk);
  }
  if (new_disks.size() != config_.disks.size() || blks.size() + scsi_disks_.size() != config_.disks.size()) {
    throw Error("VM_STATE", "a checkpoint needs one new file per disk: the VM has " + std::to_string(config_.disks.size()) +
                                ", " + std::to_string(new_disks.size()) + " were given");
  }
  struct DiskDevice {
    devices::virtio::VirtioBlk* blk = nullptr;
    devices::scsi::ScsiDisk* scsi = nullptr;
  };
  std::vector<DiskDevice> devices;
  for (size_t i = 0, b = 0, c = 0; i < config_.disks.size(); ++i) {
    devices.push_back(config_.disks[i].scsi ? DiskDevice{nullptr, scsi_disks_[c++].get()} : DiskDevice{blks[b++], nullptr});
  }
  bool switched = false;
  try {
    return save_locked(path, [&] {
      // Every old image is flushed before the new ones open it as their backing file; if
      // any new one fails to open, the VM keeps all its old ones. A disk given its own
      // current path (a passthrough disk, which has no overlay) stays as it is.
      for (auto& d : devices) d.blk ? d.blk->flush_disk() : d.scsi->flush_disk();
      std::vector<std::unique_ptr<disk::BlockDevice>> opened(devices.size());
      for (size_t i = 0; i < devices.size(); ++i) {
        if (new_disks[i] == config_.disks[i].path) continue;
        disk::OpenOptions options;
        options.read_only = config_.disks[i].read_only;
        options.direct = true;
        opened[i] = disk::open_disk(new_disks[i], options);
      }
      for (size_t i = 0; i < devices.size(); ++i) {
        if (!opened[i]) continue;
        devices[i].blk ? devices[i].blk->replace_disk(std::move(opened[i])) : devices[i].scsi->replace_disk(std::move(opened[i]));
        config_.disks[i].path = new_disks[i];
        switched = true;
      }
    }, true);
  } catch (const Error& e) {
    if (switched) {
      // The VM already runs on the new files, so the checkpoint's disks are what they
      // must be; only its memory is lost (the snapshot's writer failed). It is reported
      // without memory rather than undone, which would take the VM's disks away.
      unlink(path.c_str());
      SaveResult disks_only;
      disks_only.detail = std::string("the checkpoint holds no memory: ") + e.what();
      return disks_only;
    }
    unlink(path.c_str());
    throw;
  } catch (...) {
    // The VM goes on with its old files: a state file beside them would describe disks
    // it does not use.
    unlink(path.c_str());
    throw;
  }
}

}  // namespace berth::machine
