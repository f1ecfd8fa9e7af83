#include "devices/pci/pci_function.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"

namespace berth::devices::pci {

namespace {

using namespace config;

constexpr uint8_t kClaimedRegister = 1, kClaimedCapability = 2;
constexpr uint16_t kCommandWritable = kCommandIo | kCommandMemory | kCommandBusMaster |
                                      kCommandParity | kCommandSerr | kCommandInterruptDisable;
constexpr uint64_t kIoSpaceSize = 0x10000;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

uint32_t bar_offset(uint32_t index) { return kBar0 + 4 * index; }

// The identity registers a saved record must agree with (offset, size).
constexpr std::pair<uint32_t, uint32_t> kIdentityFields[] = {
    {kVendorId, 4}, {kRevision, 4}, {kHeaderType, 1}, {kSubsystemVendorId, 4}, {kInterruptPin, 1}};

}  // namespace

PciFunction::PciFunction(const Identity& id) {
  if (id.class_code > 0xffffff) {
    throw Error("PCI_FUNCTION_INVALID", "PCI class code " + hex(id.class_code) + " is wider than 24 bits");
  }
  if (id.interrupt_pin > 4) {
    throw Error("PCI_FUNCTION_INVALID", "PCI interrupt pin " + std::to_string(id.interrupt_pin) +
                                            " is not 0 (none) or 1..4 (INTA#..INTD#)");
  }
  put(config_, kVendorId, 2, id.vendor_id);
  put(config_, kDeviceId, 2, id.device_id);
  put(config_, kRevision, 1, id.revision);
  put(config_, kClassCode, 3, id.class_code);
  put(config_, kSubsystemVendorId, 2, id.subsystem_vendor_id);
  put(config_, kSubsystemId, 2, id.subsystem_id);
  put(config_, kInterruptPin, 1, id.interrupt_pin);
  set_mask(writable_, kCommand, 2, kCommandWritable);
  set_mask(write_one_to_clear_, kStatus, 2, kStatusWriteOneToClear);
  set_mask(writable_, kCacheLineSize, 1, 0xff);
  set_mask(writable_, kLatencyTimer, 1, 0xff);
  set_mask(writable_, kInterruptLine, 1, 0xff);
  power_on_ = config_;
}

void PciFunction::set_mask(std::array<uint8_t, kConventionalConfigSize>& mask, uint32_t offset,
                           uint32_t size, uint64_t value) {
  put(mask, offset, size, value);
}

void PciFunction::put(std::array<uint8_t, kConventionalConfigSize>& bytes, uint32_t offset,
                      uint32_t size, uint64_t value) {
  for (uint32_t i = 0; i < size && offset + i < kConventionalConfigSize; ++i) {
    bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
  }
}

uint64_t PciFunction::get(uint32_t offset, uint32_t size) const {
  uint64_t v = 0;
  for (uint32_t i = 0; i < size && i < 8 && offset + i < kConventionalConfigSize; ++i) {
    v |= uint64_t{config_[offset + i]} << (8 * i);
  }
  return v;
}

void PciFunction::declare_bar(uint32_t index, BarKind kind, uint64_t size, bool prefetchable) {
  const std::string what = "PCI BAR " + std::to_string(index);
  const uint32_t slots = kind == BarKind::kMem64 ? 2 : 1;
  if (index >= kBarCount || index + slots > kBarCount) {
    throw Error("PCI_BAR_INVALID", what + " does not exist (a 64-bit BAR takes two of BARs 0..5)");
  }
  for (uint32_t i = index; i < index + slots; ++i) {
    if (bars_[i].size != 0 || (i > 0 && bars_[i - 1].kind == BarKind::kMem64 && bars_[i - 1].size)) {
      throw Error("PCI_BAR_INVALID", what + " overlaps a BAR already declared");
    }
  }
  const uint64_t min = kind == BarKind::kIo ? 4 : 16;
  const uint64_t max = kind == BarKind::kIo ? 256 : kind == BarKind::kMem32 ? (1ull << 31) : (1ull << 63);
  if (!std::has_single_bit(size) || size < min || size > max) {
    throw Error("PCI_BAR_INVALID", what + " size " + hex(size) + " is not a power of two in [" + hex(min) +
                                       ", " + hex(max) + "]");
  }
  if (kind == BarKind::kIo && prefetchable) {
    throw Error("PCI_BAR_INVALID", what + " is an I/O BAR and cannot be prefetchable");
  }
  bars_[index] = {kind, size, prefetchable};
  const uint32_t off = bar_offset(index);
  uint64_t type = prefetchable ? kBarPrefetchable : 0;
  switch (kind) {
    case BarKind::kIo:
      put(config_, off, 4, kBarIo);
      set_mask(writable_, off, 4, ~(size - 1) & 0xfffc);
      break;
    case BarKind::kMem32:
      put(config_, off, 4, type);
      set_mask(writable_, off, 4, ~(size - 1) & 0xfffffff0);
      break;
    case BarKind::kMem64:
      put(config_, off, 8, type | kBarMem64);
      set_mask(writable_, off, 8, ~(size - 1) & ~uint64_t{0xf});
      break;
  }
  power_on_ = config_;
}

void PciFunction::declare_expansion_rom(uint64_t size) {
  constexpr uint64_t kMinRom = 2048, kMaxRom = 16ull << 20;
  if (rom_size_ != 0) throw Error("PCI_BAR_INVALID", "the PCI expansion ROM BAR is already declared");
  if (!std::has_single_bit(size) || size < kMinRom || size > kMaxRom) {
    throw Error("PCI_BAR_INVALID", "PCI expansion ROM size " + hex(size) + " is not a power of two in [" +
                                       hex(kMinRom) + ", " + hex(kMaxRom) + "]");
  }
  rom_size_ = size;
  set_mask(writable_, kExpansionRom, 4, (~(size - 1) & 0xfffff800) | kExpansionRomEnable);
}

bool PciFunction::reserved(uint32_t offset, uint32_t size) const {
  for (uint32_t i = offset; i < offset + size; ++i) {
    if (i >= kConventionalConfigSize || claimed_[i]) return true;
  }
  return false;
}

uint8_t PciFunction::add_capability(uint8_t id, std::span<const uint8_t> initial,
                                    std::span<const uint8_t> writable) {
  const uint32_t length = 2 + static_cast<uint32_t>(initial.size());
  uint32_t offset = next_capability_offset_;
  while (offset + length <= kConventionalConfigSize && reserved(offset, length)) offset += 4;
  if (offset + length > kConventionalConfigSize || capability_count_ == capabilities_.size()) {
    throw Error("PCI_CAPABILITY_INVALID", "PCI capability " + hex(id) + " of " + std::to_string(length) +
                                              " bytes does not fit below configuration offset 0x100");
  }
  const auto at = static_cast<uint8_t>(offset);
  config_[at] = id;
  config_[at + 1] = 0;
  for (size_t i = 0; i < initial.size(); ++i) {
    config_[at + 2 + i] = initial[i];
    writable_[at + 2 + i] = i < writable.size() ? writable[i] : 0;
  }
  std::fill_n(claimed_.begin() + at, length, kClaimedCapability);
  if (capability_count_ == 0) {
    config_[kCapabilityPointer] = at;
    config_[kStatus] |= kStatusCapabilityList;
  } else {
    config_[capabilities_[capability_count_ - 1].offset + 1] = at;
  }
  capabilities_[capability_count_++] = {at, id, static_cast<uint8_t>(length)};
  next_capability_offset_ = static_cast<uint8_t>(std::min<uint32_t>((offset + length + 3) & ~3u, 0xfc));
  power_on_ = config_;
  return at;
}

void PciFunction::set_config_register(uint32_t offset, uint32_t size, uint64_t initial,
                                      uint64_t writable, uint64_t write_one_to_clear) {
  if (offset < kDeviceSpecific || size == 0 || size > 8 || reserved(offset, size)) {
    throw Error("PCI_CAPABILITY_INVALID", "PCI configuration register at " + hex(offset) + " (" +
                                              std::to_string(size) +
                                              " bytes) is outside 0x40..0xff or overlaps another");
  }
  std::fill_n(claimed_.begin() + offset, size, kClaimedRegister);
  put(config_, offset, size, initial);
  set_mask(writable_, offset, size, writable);
  set_mask(write_one_to_clear_, offset, size, write_one_to_clear);
  power_on_ = config_;
}

void PciFunction::set_device_owned(uint32_t offset, uint32_t size, uint64_t mask) {
  std::lock_guard<std::mutex> lock(mu_);
  set_mask(device_owned_, offset, size, mask);
}

void PciFunction::set_multi_function(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto* bytes : {&config_, &power_on_}) {
    (*bytes)[kHeaderType] = static_cast<uint8_t>(((*bytes)[kHeaderType] & ~kHeaderTypeMultiFunction) |
                                                 (on ? kHeaderTypeMultiFunction : 0));
  }
}

void PciFunction::config_read(uint32_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t o = uint64_t{offset} + i;
    data[i] = o < kConventionalConfigSize ? config_[o] : 0;
  }
}

void PciFunction::config_write(uint32_t offset, std::span<const uint8_t> data) {
  if (offset >= kConventionalConfigSize || data.empty()) return;
  const uint32_t size = static_cast<uint32_t>(std::min<size_t>(data.size(), kConventionalConfigSize - offset));
  bool register_written = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t i = 0; i < size; ++i) {
      const uint32_t o = offset + i;
      const uint8_t v = data[i];
      uint8_t c = static_cast<uint8_t>((config_[o] & ~writable_[o]) | (v & writable_[o]));
      config_[o] = static_cast<uint8_t>(c & ~(v & write_one_to_clear_[o]));
      register_written |= claimed_[o] == kClaimedRegister;
    }
    if (offset <= kCommand + 1 && offset + size > kCommand) update_intx_locked();
  }
  // Capabilities are fixed after setup, so reading the table without the mutex is safe.
  for (uint32_t c = 0; c < capability_count_; ++c) {
    const Capability& cap = capabilities_[c];
    const uint32_t lo = std::max<uint32_t>(offset, cap.offset);
    const uint32_t hi = std::min<uint32_t>(offset + size, cap.offset + cap.length);
    if (lo < hi) on_capability_write(cap.offset, cap.id, lo - cap.offset, hi - lo);
  }
  if (register_written) on_config_write(offset, size);
}

std::optional<BarMapping> PciFunction::bar_mapping(uint32_t bar) const {
  if (bar == kExpansionRomBar && rom_size_ != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t rom = get(kExpansionRom, 4);
    const uint64_t address = rom & 0xfffff800;
    if (!(get(kCommand, 2) & kCommandMemory) || !(rom & kExpansionRomEnable) || address == 0) return std::nullopt;
    return BarMapping{BarKind::kMem32, address, rom_size_};
  }
  if (bar >= kBarCount || bars_[bar].size == 0) return std::nullopt;
  const Bar& b = bars_[bar];
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t command = get(kCommand, 2);
  const uint32_t off = bar_offset(bar);
  uint64_t address = 0;
  switch (b.kind) {
    case BarKind::kIo:
      if (!(command & kCommandIo)) return std::nullopt;
      address = get(off, 4) & 0xfffc;
      if (address + b.size > kIoSpaceSize) return std::nullopt;
      break;
    case BarKind::kMem32:
      if (!(command & kCommandMemory)) return std::nullopt;
      address = get(off, 4) & ~uint64_t{0xf};
      break;
    case BarKind::kMem64:
      if (!(command & kCommandMemory)) return std::nullopt;
      address = get(off, 8) & ~uint64_t{0xf};
      // The last slot of the address space would end at 2^64, which no window reaches.
      if (address > ~uint64_t{0} - b.size) return std::nullopt;
      break;
  }
  if (address == 0) return std::nullopt;
  return BarMapping{b.kind, address, b.size};
}

void PciFunction::bar_read(uint32_t, uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
}

void PciFunction::bar_write(uint32_t, uint64_t, std::span<const uint8_t>) {}

void PciFunction::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  config_ = power_on_;
  if (intx_level_) config_[kStatus] |= kStatusInterrupt;
  update_intx_locked();
}

void PciFunction::connect_intx(vmm::IrqLine* line) {
  std::lock_guard<std::mutex> lock(mu_);
  intx_line_ = line;
  if (intx_line_ && intx_output_) intx_line_->set_level(true);
}

void PciFunction::set_intx(bool level) {
  std::lock_guard<std::mutex> lock(mu_);
  intx_level_ = level;
  config_[kStatus] = static_cast<uint8_t>((config_[kStatus] & ~kStatusInterrupt) | (level ? kStatusInterrupt : 0));
  update_intx_locked();
}

void PciFunction::update_intx_locked() {
  const bool out = intx_level_ && config_[kInterruptPin] != 0 &&
                   !(get(kCommand, 2) & kCommandInterruptDisable);
  if (out == intx_output_) return;
  intx_output_ = out;
  if (intx_line_) intx_line_->set_level(out);
}

uint64_t PciFunction::config_value(uint32_t offset, uint32_t size) const {
  std::lock_guard<std::mutex> lock(mu_);
  return get(offset, size);
}

void PciFunction::set_config_value(uint32_t offset, uint32_t size, uint64_t value) {
  std::lock_guard<std::mutex> lock(mu_);
  put(config_, offset, std::min<uint32_t>(size, 8), value);
  if (offset <= kCommand + 1 && offset + size > kCommand) update_intx_locked();
}

void PciFunction::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t token = w.begin("pci-function", 1);
  w.bytes(config_);
  w.boolean(intx_level_);
  w.end(token);
}

void PciFunction::load_state(state::Reader& parent) {
  auto rec = parent.record("pci-function", 1);
  state::Reader& r = rec.body;
  const auto saved = r.bytes(kConventionalConfigSize, "config");
  const bool intx = r.boolean("intx_level");
  r.expect_end();

  std::lock_guard<std::mutex> lock(mu_);
  for (auto [offset, size] : kIdentityFields) {
    uint64_t theirs = 0;
    for (uint32_t i = 0; i < size; ++i) theirs |= uint64_t{saved[offset + i]} << (8 * i);
    if (theirs != get(offset, size)) {
      r.fail("identity register at " + hex(offset) + " is " + hex(theirs) + ", this function has " +
             hex(get(offset, size)) + " (the state is of another device)");
    }
  }
  for (uint32_t o = 0; o < kConventionalConfigSize; ++o) {
    const uint8_t restorable = writable_[o] | write_one_to_clear_[o] | device_owned_[o];
    config_[o] = static_cast<uint8_t>((config_[o] & ~restorable) | (saved[o] & restorable));
  }
  intx_level_ = intx;
  config_[kStatus] = static_cast<uint8_t>((config_[kStatus] & ~kStatusInterrupt) | (intx ? kStatusInterrupt : 0));
  intx_output_ = intx_level_ && config_[kInterruptPin] != 0 && !(get(kCommand, 2) & kCommandInterruptDisable);
  if (intx_line_) intx_line_->set_level(intx_output_);
}

}  // namespace berth::devices::pci
