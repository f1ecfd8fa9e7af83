// Picks the host's hypervisor backend.
#include "hv/hv.h"

#if defined(__linux__) && defined(__x86_64__)
#include "hv/kvm/kvm.h"
#endif
#include "common/error.h"

namespace berth::hv {

std::unique_ptr<Hypervisor> open_hypervisor() {
#if defined(__linux__) && defined(__x86_64__)
  return kvm::open_kvm();
#else
  throw Error("HV_UNSUPPORTED_HOST", "this build of Berth has no hypervisor backend for this host");
#endif
}

}  // namespace berth::hv
