// Inside the machine (machine.cc, machine_state.cc): a virtio device's transport (virtio-mmio
// for kernel-booted VMs, virtio-pci on firmware-booted ones) and its interrupt.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>
#include <shared_mutex>

#include "common/error.h"
#include "common/unique_fd.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/pci.h"
#include "machine/machine.h"

namespace berth::machine {

// A virtio-mmio device's interrupt: one edge per trigger() on its ISA IRQ. Through a KVM
// irqfd when the host has them (no VMM lock, no ioctl on the device thread), else as a
// pulse on the in-kernel controllers' line.
class Machine::VirtioIrq final : public devices::virtio::EdgeInterrupt {
 public:
  VirtioIrq(Machine& machine, uint32_t irq, bool use_irqfd) : machine_(machine), irq_(irq) {
    if (use_irqfd) {
      int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (fd < 0) throw SystemError("VIRTIO_SETUP", "eventfd for a virtio interrupt", errno);
      fd_ = UniqueFd(fd);
    }
  }
  void trigger() override {
    if (fd_.valid()) {
      uint64_t one = 1;
      (void)!::write(fd_.get(), &one, sizeof one);  // EAGAIN: already pending
      return;
    }
    std::shared_lock<std::shared_mutex> lock(machine_.vm_mu_);
    if (!machine_.vm_) return;
    machine_.vm_->set_irq_line(irq_, true);
    machine_.vm_->set_irq_line(irq_, false);
  }
  int fd() const { return fd_.get(); }
  uint32_t irq() const { return irq_; }

 private:
  Machine& machine_;
  uint32_t irq_;
  UniqueFd fd_;
};

// Message-signalled interrupts of the virtio-pci functions, to whichever hypervisor VM is
// current (none between a reset's teardown and the new VM: the message is lost, as on
// hardware during a reset).
class Machine::MsiToVm final : public devices::virtio::MsiSink {
 public:
  explicit MsiToVm(Machine& machine) : machine_(machine) {}
  void send_msi(uint64_t address, uint32_t data) override {
    std::shared_lock<std::shared_mutex> lock(machine_.vm_mu_);
    if (machine_.vm_) machine_.vm_->signal_msi(address, data);
  }

 private:
  Machine& machine_;
};

struct Machine::VirtioSlot {
  // virtio-mmio: its window and ISA interrupt.
  uint64_t base = 0;
  std::unique_ptr<VirtioIrq> irq;
  std::shared_ptr<devices::virtio::VirtioMmio> mmio;
  // virtio-pci: its slot on bus 0, and where each queue's notify ioeventfd is registered on
  // the current hypervisor VM (its BAR moves when the firmware or the guest places it).
  std::shared_ptr<devices::virtio::VirtioPci> pci;
  uint32_t pci_slot = 0;
  std::mutex notify_mu;
  std::vector<std::optional<uint64_t>> notify_at;

  // Calls f with whichever transport the device has (both offer the same operations).
  template <typename F>
  decltype(auto) with(F&& f) {
    return mmio ? f(*mmio) : f(*pci);
  }
  devices::virtio::VirtioDevice& device() { return mmio ? mmio->device() : pci->device(); }
  const devices::virtio::VirtioDevice& device() const { return mmio ? mmio->device() : pci->device(); }
};

}  // namespace berth::machine
