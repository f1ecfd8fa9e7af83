// KVM implementation of the hypervisor interface (Linux, x86-64).
#pragma once

#include "hv/hv.h"

namespace berth::hv::kvm {

// Checks /dev/kvm and the capabilities Berth needs; throws berth::Error that says how to
// fix what is missing.
std::unique_ptr<Hypervisor> open_kvm(const char* device_path = "/dev/kvm");

}  // namespace berth::hv::kvm
