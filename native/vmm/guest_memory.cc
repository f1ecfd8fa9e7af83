#include "vmm/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

uint8_t* map_image(uint64_t size, int fd, uint64_t offset) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    throw SystemError("GUEST_MEMORY_MAP", "cannot map " + std::to_string(size >> 20) + " MiB of saved guest memory", errno);
  }
  return static_cast<uint8_t*>(p);
}

}  // namespace

GuestMemory::GuestMemory(uint64_t size_bytes, uint64_t low_ram_limit)
    : size_(size_bytes), low_ram_limit_(low_ram_limit) {
  map_regions(nullptr);
}

GuestMemory::GuestMemory(uint64_t size_bytes, const MemoryImage& image, uint64_t low_ram_limit)
    : size_(size_bytes), low_ram_limit_(low_ram_limit) {
  image_fd_ = fcntl(image.fd, F_DUPFD_CLOEXEC, 0);
  if (image_fd_ < 0) throw SystemError("GUEST_MEMORY_MAP", "cannot keep the saved memory image open", errno);
  image_offset_ = image.offset;
  try {
    map_regions(&image);
  } catch (...) {
    close(image_fd_);
    throw;
  }
}

void GuestMemory::map_regions(const MemoryImage* image) {
  if (size_ == 0 || size_ % 4096 != 0) {
    throw Error("GUEST_MEMORY_SIZE", "guest memory size must be a non-zero multiple of 4 KiB");
  }
  try {
    if (low_ram_limit_ == 0 || low_ram_limit_ > kPciHoleStart || low_ram_limit_ % 4096 != 0) {
      throw Error("GUEST_MEMORY_SIZE", "the end of RAM below 4 GiB must be a page-aligned address up to 3 GiB");
    }
    uint64_t low = size_ < low_ram_limit_ ? size_ : low_ram_limit_;
    regions_.push_back({0, low, image ? map_image(low, image->fd, image->offset) : map_anonymous(low)});
    if (size_ > low) {
      uint64_t high = size_ - low;
      regions_.push_back({kHighRamStart, high, image ? map_image(high, image->fd, image->offset + low) : map_anonymous(high)});
    }
  } catch (...) {
    for (auto& r : regions_) munmap(r.host, r.size);
    regions_.clear();
    throw;
  }
}

GuestMemory::~GuestMemory() {
  for (auto& r : regions_) munmap(r.host, r.size);
  if (image_fd_ >= 0) close(image_fd_);
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
  if (image_fd_ >= 0) {
    // A private file mapping would fall back to the file's pages: put fresh anonymous
    // memory at the same addresses instead (the hypervisor VM is rebuilt after a reset).
    for (auto& r : regions_) {
      void* p = mmap(r.host, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
      if (p == MAP_FAILED) throw SystemError("GUEST_MEMORY_MAP", "cannot replace the saved guest memory on reset", errno);
    }
    close(image_fd_);
    image_fd_ = -1;
    return;
  }
  for (auto& r : regions_) {
    // MADV_DONTNEED on private anonymous memory gives back zero pages and frees RSS.
    madvise(r.host, r.size, MADV_DONTNEED);
  }
}

}  // namespace berth::vmm
