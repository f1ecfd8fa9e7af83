// KVM implementation of the hypervisor interface (Linux, x86-64).
#pragma once

#include <memory>
#include <string>

#include "hv/hv.h"

namespace berth::hv::kvm {

// Checks /dev/kvm and the capabilities Berth needs; throws berth::Error that says how to
// fix what is missing.
std::unique_ptr<Hypervisor> open_kvm(const char* device_path = "/dev/kvm");

// True when module_dir (/sys/module) shows kvm-pvm and no hardware KVM (kvm_intel, kvm_amd):
// such a /dev/kvm runs only PVM guest kernels, so open_kvm() refuses it with HV_NOT_FOUND.
bool only_kvm_pvm_loaded(const std::string& module_dir);

}  // namespace berth::hv::kvm
