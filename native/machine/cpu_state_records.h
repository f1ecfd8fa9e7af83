// The saved-state records of the processor side of a VM: each vCPU's state, the
// hypervisor's platform devices and clock, and the CPUID the guest was given (so a VM is
// resumed only on a host whose CPU has every feature the guest saw).
#pragma once

#include <string>
#include <vector>

#include "common/state_stream.h"
#include "hv/hv.h"

namespace berth::machine {

void save_vcpu_record(state::Writer& w, const hv::VcpuState& vcpu);
hv::VcpuState load_vcpu_record(state::Reader& r);

void save_platform_record(state::Writer& w, const hv::PlatformState& platform);
hv::PlatformState load_platform_record(state::Reader& r);

// The hypervisor's supported CPUID at save time; the guest's CPUID is built from it again.
void save_cpuid_record(state::Writer& w, const std::vector<hv::CpuidEntry>& supported);
std::vector<hv::CpuidEntry> load_cpuid_record(state::Reader& r);
constexpr size_t kMaxCpuidEntries = 512;

// The features (by name where known, else "CPUID leaf 0x7 EBX bit 5") set in `saved` but
// missing from `host`; empty when the host can run the saved guest.
std::vector<std::string> missing_cpu_features(const std::vector<hv::CpuidEntry>& saved,
                                              const std::vector<hv::CpuidEntry>& host);

}  // namespace berth::machine
