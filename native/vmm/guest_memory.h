// Guest RAM: one anonymous MAP_NORESERVE mapping per RAM region. Below 4 GiB RAM stops
// at the 32-bit PCI hole (3 GiB; 2 GiB for firmware-booted VMs, whose PCI configuration
// space (ECAM) and BAR window sit above it); the rest is mapped from 4 GiB up. A VM resumed from saved
// state maps its RAM privately from the state file instead (pages load when first touched,
// writes stay in the process), until a reset gives it fresh anonymous memory.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace berth::vmm {

constexpr uint64_t kPciHoleStart = 3ull << 30;
constexpr uint64_t kFirmwareLowRamLimit = 2ull << 30;
constexpr uint64_t kHighRamStart = 4ull << 30;

struct RamRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;  // owned by GuestMemory
};

// Where a saved memory image lies: the regions one after another from `offset` of `fd`.
struct MemoryImage {
  int fd = -1;          // duplicated by GuestMemory, which keeps it while mapped
  uint64_t offset = 0;  // a multiple of the page size
};

class GuestMemory {
 public:
  explicit GuestMemory(uint64_t size_bytes, uint64_t low_ram_limit = kPciHoleStart);
  GuestMemory(uint64_t size_bytes, const MemoryImage& image, uint64_t low_ram_limit = kPciHoleStart);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t size() const { return size_; }
  const std::vector<RamRegion>& regions() const { return regions_; }

  // Host view of [gpa, gpa+len); throws berth::Error GUEST_MEMORY_RANGE when the range is
  // not entirely inside one RAM region.
  std::span<uint8_t> slice(uint64_t gpa, uint64_t len);
  bool contains(uint64_t gpa, uint64_t len) const;

  void write(uint64_t gpa, std::span<const uint8_t> bytes);
  void read(uint64_t gpa, std::span<uint8_t> out);
  template <typename T>
  void write_obj(uint64_t gpa, const T& value) {
    write(gpa, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }
  template <typename T>
  T read_obj(uint64_t gpa) {
    T value;
    read(gpa, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
    return value;
  }

  // Returns every page to the zero state (used on machine reset).
  void clear();

  // The file RAM is mapped from (-1 for anonymous memory), for writing a new image.
  int image_fd() const { return image_fd_; }
  uint64_t image_offset() const { return image_offset_; }

 private:
  void map_regions(const MemoryImage* image);

  uint64_t size_;
  uint64_t low_ram_limit_;
  std::vector<RamRegion> regions_;
  int image_fd_ = -1;
  uint64_t image_offset_ = 0;
};

}  // namespace berth::vmm
