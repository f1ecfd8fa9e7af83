#include "vmm/guest_memory.h"

#include <sys/mman.h>

#include <cerrno>

#include "common/error.h"

namespace berth::vmm {

namespace {

uint8_t* map_anonymous(uint64_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw SystemError("GUEST_MEMORY_MAP",
                      "cannot reserve " + std::to_string(size >> 20) +
                          " MiB of guest memory (lower the VM's memory size)",
                      errno);
  }
#ifdef MADV_HUGEPAGE
  // Transparent huge pages cut TLB misses for the guest and the VMM's own copies into
  // guest buffers (virtio); best effort: hosts with THP disabled just ignore it.
  madvise(p, size, MADV_HUGEPAGE);
#endif
  return static_cast<uint8_t*>(p);
}

}  // namespace

GuestMemory::GuestMemory(uint64_t size_bytes) : size_(size_bytes) {
  if (size_bytes == 0 || size_bytes % 4096 != 0) {
    throw Error("GUEST_MEMORY_SIZE", "guest memory size must be a non-zero multiple of 4 KiB");
  }
  try {
    uint64_t low = size_bytes < kPciHoleStart ? size_bytes : kPciHoleStart;
    regions_.push_back({0, low, map_anonymous(low)});
    if (size_bytes > low) {
      uint64_t high = size_bytes - low;
      regions_.push_back({kHighRamStart, high, map_anonymous(high)});
    }
  } catch (...) {
    for (auto& r : regions_) munmap(r.host, r.size);
    throw;
  }
}

GuestMemory::~GuestMemory() {
  for (auto& r : regions_) munmap(r.host, r.size);
}

bool GuestMemory::contains(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    if (gpa >= r.gpa && len <= r.size && gpa - r.gpa <= r.size - len) return true;
  }
  return false;
}

std::span<uint8_t> GuestMemory::slice(uint64_t gpa, uint64_t len) {
  for (auto& r : regions_) {
    if (gpa >= r.gpa && len <= r.size && gpa - r.gpa <= r.size - len) {
      return {r.host + (gpa - r.gpa), static_cast<size_t>(len)};
    }
  }
  throw Error("GUEST_MEMORY_RANGE", "guest-physical range 0x" + [gpa] {
    char buf[32];
    snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(gpa));
    return std::string(buf);
  }() + " (+" + std::to_string(len) + " bytes) is not guest RAM");
}

void GuestMemory::write(uint64_t gpa, std::span<const uint8_t> bytes) {
  auto dst = slice(gpa, bytes.size());
  std::memcpy(dst.data(), bytes.data(), bytes.size());
}

void GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) {
  auto src = slice(gpa, out.size());
  std::memcpy(out.data(), src.data(), out.size());
}

void GuestMemory::clear() {
  for (auto& r : regions_) {
    // MADV_DONTNEED on private anonymous memory gives back zero pages and frees RSS.
    madvise(r.host, r.size, MADV_DONTNEED);
  }
}

}  // namespace berth::vmm
