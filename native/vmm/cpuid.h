// The CPUID a vCPU sees: what the hypervisor supports, with a topology that matches the
// VM (one socket, one core per vCPU, APIC ID = vCPU index) and a leaf naming Berth.
#pragma once

#include <cstdint>
#include <vector>

#include "hv/hv.h"

namespace berth::vmm {

// The hypervisor signature at leaf 0x40000000 ("BerthVMM" padded with NULs).
constexpr char kHypervisorSignature[13] = "BerthVMM\0\0\0\0";
// Where the host hypervisor's own paravirtual leaves move to (guests scan in 0x100 steps).
constexpr uint32_t kHostHypervisorLeafBase = 0x40000100;

std::vector<hv::CpuidEntry> build_cpuid(const std::vector<hv::CpuidEntry>& supported,
                                        uint32_t vcpu_index, uint32_t vcpu_count);

}  // namespace berth::vmm
