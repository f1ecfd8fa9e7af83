#include "devices/virtio/msix.h"

#include <algorithm>
#include <cstring>

namespace berth::devices::virtio {

namespace {

bool aligned_access(uint64_t offset, size_t size) { return (size == 4 || size == 8) && offset % size == 0; }

void store(std::span<uint8_t> data, uint64_t value) {
  for (size_t i = 0; i < data.size() && i < 8; ++i) data[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t load(std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t{data[i]} << (8 * i);
  return v;
}

}  // namespace

MsixTable::MsixTable(uint16_t vectors)
    : vectors_(std::clamp<uint16_t>(vectors, 1, 2048)), entries_(vectors_), pending_((vectors_ + 63) / 64) {}

uint32_t& MsixTable::field(Entry& e, uint64_t dword) {
  switch (dword) {
    case 0: return e.address_low;
    case 1: return e.address_high;
    case 2: return e.data;
    default: return e.control;
  }
}

uint32_t MsixTable::field(const Entry& e, uint64_t dword) {
  switch (dword) {
    case 0: return e.address_low;
    case 1: return e.address_high;
    case 2: return e.data;
    default: return e.control;
  }
}

void MsixTable::read_table(uint64_t offset, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);
  if (!aligned_access(offset, data.size()) || offset >= table_bytes()) return;
  const Entry& e = entries_[offset / kMsixEntrySize];
  const uint64_t dword = (offset % kMsixEntrySize) / 4;
  uint64_t v = field(e, dword);
  if (data.size() == 8) v |= uint64_t{field(e, dword + 1)} << 32;
  store(data, v);
}

void MsixTable::write_table(uint64_t offset, std::span<const uint8_t> data, bool function_masked, MsiSink& sink) {
  if (!aligned_access(offset, data.size()) || offset >= table_bytes()) return;
  const auto vector = static_cast<uint16_t>(offset / kMsixEntrySize);
  Entry& e = entries_[vector];
  const uint64_t dword = (offset % kMsixEntrySize) / 4;
  const uint64_t v = load(data);
  const bool was_masked = e.control & kMsixVectorMasked;
  for (uint64_t i = 0; i < data.size() / 4; ++i) {
    const auto value = static_cast<uint32_t>(v >> (32 * i));
    // Only the mask bit of vector control is implemented; the rest reads 0 (reserved).
    field(e, dword + i) = dword + i == 3 ? (value & kMsixVectorMasked) : value;
  }
  if (was_masked && !(e.control & kMsixVectorMasked) && !function_masked && pending(vector)) {
    pending_[vector / 64] &= ~(uint64_t{1} << (vector % 64));
    send(vector, sink);
  }
}

void MsixTable::read_pba(uint64_t offset, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);
  if (!aligned_access(offset, data.size()) || offset >= pba_bytes()) return;
  uint64_t word = pending_[offset / 8];
  store(data, offset % 8 ? word >> 32 : word);
}

bool MsixTable::pending(uint16_t vector) const {
  return vector < vectors_ && (pending_[vector / 64] >> (vector % 64)) & 1;
}

bool MsixTable::masked(uint16_t vector) const {
  return vector >= vectors_ || (entries_[vector].control & kMsixVectorMasked);
}

void MsixTable::send(uint16_t vector, MsiSink& sink) const {
  const Entry& e = entries_[vector];
  sink.send_msi((uint64_t{e.address_high} << 32) | e.address_low, e.data);
}

void MsixTable::fire(uint16_t vector, bool function_masked, MsiSink& sink) {
  if (vector >= vectors_) return;
  if (function_masked || masked(vector)) {
    pending_[vector / 64] |= uint64_t{1} << (vector % 64);
    return;
  }
  send(vector, sink);
}

void MsixTable::deliver_pending(bool function_masked, MsiSink& sink) {
  if (function_masked) return;
  for (uint16_t v = 0; v < vectors_; ++v) {
    if (pending(v) && !masked(v)) {
      pending_[v / 64] &= ~(uint64_t{1} << (v % 64));
      send(v, sink);
    }
  }
}

void MsixTable::clear_pending() { std::fill(pending_.begin(), pending_.end(), 0); }

void MsixTable::reset() {
  std::fill(entries_.begin(), entries_.end(), Entry{});
  clear_pending();
}

void MsixTable::save_state(state::Writer& w) const {
  w.u16(vectors_);
  for (const Entry& e : entries_) {
    w.u32(e.address_low);
    w.u32(e.address_high);
    w.u32(e.data);
    w.u32(e.control);
  }
  for (uint64_t word : pending_) w.u64(word);
}

void MsixTable::load_state(state::Reader& r) {
  const uint16_t vectors = r.u16("msix_vectors");
  if (vectors != vectors_) {
    r.fail("msix_vectors is " + std::to_string(vectors) + ", but this function has " + std::to_string(vectors_));
  }
  std::vector<Entry> entries(vectors_);
  for (Entry& e : entries) {
    e.address_low = r.u32("msix_address_low");
    e.address_high = r.u32("msix_address_high");
    e.data = r.u32("msix_data");
    e.control = r.u32("msix_vector_control");
    if (e.control & ~kMsixVectorMasked) r.fail("msix_vector_control " + std::to_string(e.control) + " has reserved bits");
  }
  std::vector<uint64_t> pending(pending_.size());
  for (size_t i = 0; i < pending.size(); ++i) {
    pending[i] = r.u64("msix_pending");
    const uint32_t first = static_cast<uint32_t>(i) * 64;
    const uint32_t valid = std::min<uint32_t>(64, vectors_ - first);
    if (valid < 64 && (pending[i] >> valid)) r.fail("msix_pending has bits beyond the last vector");
  }
  entries_ = std::move(entries);
  pending_ = std::move(pending);
}

}  // namespace berth::devices::virtio
