#include "vmm/bus.h"

#include <cstdio>

#include "common/error.h"

namespace berth::vmm {

namespace {

std::string hex_range(uint64_t base, uint64_t length) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%llx-0x%llx", static_cast<unsigned long long>(base),
                static_cast<unsigned long long>(base + length - 1));
  return buf;
}

}  // namespace

void Bus::insert(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device, std::string label) {
  if (length == 0 || base + length < base) {
    throw Error("BUS_RANGE", name_ + " bus: " + label + " has an empty or wrapping range");
  }
  // The first range starting after base, and the one before it, are the only candidates.
  auto next = ranges_.upper_bound(base);
  if (next != ranges_.end() && next->first < base + length) {
    throw Error("BUS_OVERLAP", name_ + " bus: " + label + " at " + hex_range(base, length) +
                                   " overlaps " + next->second.label + " at " +
                                   hex_range(next->first, next->second.length));
  }
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.length > base) {
      throw Error("BUS_OVERLAP", name_ + " bus: " + label + " at " + hex_range(base, length) +
                                     " overlaps " + prev->second.label + " at " +
                                     hex_range(prev->first, prev->second.length));
    }
  }
  ranges_.emplace(base, Range{length, std::move(device), std::move(label)});
}

const std::pair<const uint64_t, Bus::Range>* Bus::find(uint64_t address, uint64_t size) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t offset = address - it->first;
  if (offset >= it->second.length || size > it->second.length - offset) return nullptr;
  return &*it;
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) const {
  auto* r = find(address, data.size());
  if (!r) return false;
  r->second.device->read(address - r->first, data);
  return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) const {
  auto* r = find(address, data.size());
  if (!r) return false;
  r->second.device->write(address - r->first, data);
  return true;
}

}  // namespace berth::vmm
