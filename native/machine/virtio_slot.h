// Inside the machine (machine.cc, machine_state.cc): a virtio-mmio slot and its interrupt.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <shared_mutex>

#include "common/error.h"
#include "common/unique_fd.h"
#include "devices/virtio/mmio.h"
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

struct Machine::VirtioSlot {
  uint64_t base = 0;
  std::unique_ptr<VirtioIrq> irq;
  std::shared_ptr<devices::virtio::VirtioMmio> transport;
};

}  // namespace berth::machine
