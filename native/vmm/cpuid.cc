#include "vmm/cpuid.h"

#include <cstring>

namespace berth::vmm {

namespace {

uint32_t bits_for(uint32_t count) {
  uint32_t bits = 0;
  while ((1u << bits) < count) ++bits;
  return bits;
}

uint32_t sig_word(int i) {
  uint32_t w;
  std::memcpy(&w, kHypervisorSignature + 4 * i, 4);
  return w;
}

}  // namespace

std::vector<hv::CpuidEntry> build_cpuid(const std::vector<hv::CpuidEntry>& supported,
                                        uint32_t vcpu_index, uint32_t vcpu_count) {
  const uint32_t apic_id = vcpu_index;
  const uint32_t core_bits = bits_for(vcpu_count);
  std::vector<hv::CpuidEntry> out;
  uint32_t host_hv_max = 0;
  for (hv::CpuidEntry e : supported) {
    switch (e.function) {
      case 0x1:
        e.ebx = (e.ebx & 0x0000ffff) | (apic_id << 24) | ((vcpu_count > 1 ? (1u << core_bits) : 1u) << 16);
        if (vcpu_count > 1) e.edx |= 1u << 28;  // HTT: the package holds several logical CPUs
        else e.edx &= ~(1u << 28);
        e.ecx |= 1u << 31;                      // running under a hypervisor
        break;
      case 0x4:
        // Cores per package, and one thread sharing each cache level below L3.
        if ((e.eax & 0x1f) != 0) {
          uint32_t level = (e.eax >> 5) & 0x7;
          uint32_t sharing = level >= 3 ? (1u << core_bits) - 1 : 0;
          e.eax = (e.eax & 0x3ff) | (sharing << 14) | (((1u << core_bits) - 1) << 26);
        }
        break;
      case 0xb:
      case 0x1f:
        // Level 0: SMT (one thread per core); level 1: cores; then the end marker.
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1u << 8) | e.index;
        } else if (e.index == 1) {
          e.eax = core_bits;
          e.ebx = vcpu_count;
          e.ecx = (2u << 8) | e.index;
        } else {
          e.eax = e.ebx = 0;
          e.ecx = e.index;
        }
        e.edx = apic_id;
        e.flags |= hv::kCpuidFlagSignificantIndex;
        break;
      case 0x80000008:
        e.ecx = (e.ecx & ~0xf0ffu) | (core_bits << 12) | (vcpu_count - 1);
        break;
      default:
        break;
    }
    if (e.function >= 0x40000000 && e.function < 0x40000100) {
      // Move the host hypervisor's leaves up so ours can name Berth at 0x40000000.
      if (e.function == 0x40000000) host_hv_max = e.eax;
      e.function += kHostHypervisorLeafBase - 0x40000000;
    }
    out.push_back(e);
  }
  for (auto& e : out) {
    if (e.function == kHostHypervisorLeafBase && host_hv_max >= 0x40000000) {
      e.eax = host_hv_max + (kHostHypervisorLeafBase - 0x40000000);
    }
  }
  out.push_back({0x40000000, 0, 0, 0x40000000, sig_word(0), sig_word(1), sig_word(2)});
  return out;
}

}  // namespace berth::vmm
