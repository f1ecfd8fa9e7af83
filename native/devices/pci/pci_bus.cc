#include "devices/pci/pci_bus.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "common/error.h"

namespace berth::devices::pci {

namespace {

constexpr uint32_t kHeaderTypeOffset = 0x0e;
constexpr uint8_t kMultiFunction = 0x80;
// CF8: enable (31), bus (23:16), device (15:11), function (10:8), register (7:2).
constexpr uint32_t kConfigAddressMask = 0x80fffffc;

bool valid_access(uint32_t offset, size_t size) {
  return (size == 1 || size == 2 || size == 4) && (offset & 3) + size <= 4 &&
         offset < kExtendedConfigSize;
}

bool same(const std::vector<DecodedBar>& a, const std::vector<DecodedBar>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const DecodedBar& x, const DecodedBar& y) {
    return x.slot == y.slot && x.function == y.function && x.bar == y.bar &&
           x.mapping.kind == y.mapping.kind && x.mapping.address == y.mapping.address &&
           x.mapping.size == y.mapping.size;
  });
}

std::string where(uint32_t slot, uint32_t function) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "00:%02x.%x", slot, function);
  return buf;
}

}  // namespace

// The wired OR of the INTx outputs sharing one GSI: the line is high while any is high.
class PciBus::IntxCombiner {
 public:
  explicit IntxCombiner(vmm::IrqLine* out) : out_(out) {}
  void update(bool& input, bool high) {
    std::lock_guard<std::mutex> lock(mu_);
    if (input == high) return;
    input = high;
    asserted_ += high ? 1 : -1;
    const bool level = asserted_ > 0;
    if (level != level_) {
      level_ = level;
      if (out_) out_->set_level(level);
    }
  }

 private:
  std::mutex mu_;
  vmm::IrqLine* out_;
  int asserted_ = 0;
  bool level_ = false;
};

namespace {

class IntxInput final : public vmm::IrqLine {
 public:
  using Update = std::function<void(bool& input, bool high)>;
  explicit IntxInput(Update update) : update_(std::move(update)) {}
  void set_level(bool high) override { update_(level_, high); }

 private:
  Update update_;
  bool level_ = false;
};

}  // namespace

PciBus::PciBus(LineProvider lines) : lines_(std::move(lines)), map_(std::make_shared<DecodeMap>()) {
  combiners_.resize(kIntxGsiCount);
}

PciBus::~PciBus() {
  for (auto& f : functions_) {
    if (f) f->connect_intx(nullptr);
  }
}

void PciBus::add(uint32_t slot, uint32_t function, std::shared_ptr<PciDevice> device) {
  if (slot >= kSlotCount || function >= kFunctionCount || !device) {
    throw Error("PCI_SLOT_INVALID", "PCI function " + std::to_string(slot) + "." + std::to_string(function) +
                                        (device ? " is outside slots 0..31, functions 0..7" : " has no device"));
  }
  auto& cell = functions_[slot * kFunctionCount + function];
  if (cell) {
    throw Error("PCI_SLOT_IN_USE", "PCI function " + where(slot, function) +
                                       " already holds a device; give each device its own slot or function");
  }
  std::lock_guard<std::mutex> lock(config_mu_);
  cell = std::move(device);
  uint8_t pin = 0;
  cell->config_read(0x3d, std::span<uint8_t>(&pin, 1));
  if (pin >= 1 && pin <= 4 && lines_) {
    const uint32_t gsi = intx_gsi(slot, pin);
    auto& combiner = combiners_[gsi - kIntxFirstGsi];
    if (!combiner) combiner = std::make_unique<IntxCombiner>(lines_(gsi));
    IntxCombiner* c = combiner.get();
    intx_inputs_.push_back(std::make_unique<IntxInput>([c](bool& input, bool high) { c->update(input, high); }));
    cell->connect_intx(intx_inputs_.back().get());
  }
  rebuild_locked();
}

std::shared_ptr<PciDevice> PciBus::function(uint32_t slot, uint32_t function) const {
  if (slot >= kSlotCount || function >= kFunctionCount) return nullptr;
  return functions_[slot * kFunctionCount + function];
}

PciDevice* PciBus::find(uint32_t bus, uint32_t slot, uint32_t function) const {
  if (bus != 0 || slot >= kSlotCount || function >= kFunctionCount) return nullptr;
  return functions_[slot * kFunctionCount + function].get();
}

void PciBus::config_read(uint32_t bus, uint32_t slot, uint32_t function, uint32_t offset,
                         std::span<uint8_t> data) {
  PciDevice* device = find(bus, slot, function);
  if (!device || !valid_access(offset, data.size())) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(config_mu_);
    device->config_read(offset, data);
  }
  if (function == 0 && offset <= kHeaderTypeOffset && offset + data.size() > kHeaderTypeOffset) {
    for (uint32_t f = 1; f < kFunctionCount; ++f) {
      if (functions_[slot * kFunctionCount + f]) {
        data[kHeaderTypeOffset - offset] |= kMultiFunction;
        break;
      }
    }
  }
}

void PciBus::config_write(uint32_t bus, uint32_t slot, uint32_t function, uint32_t offset,
                          std::span<const uint8_t> data) {
  PciDevice* device = find(bus, slot, function);
  if (!device || !valid_access(offset, data.size())) return;
  std::lock_guard<std::mutex> lock(config_mu_);
  device->config_write(offset, data);
  rebuild_locked();
}

void PciBus::rebuild_locked() {
  auto map = std::make_shared<DecodeMap>();
  for (uint32_t i = 0; i < functions_.size(); ++i) {
    PciDevice* device = functions_[i].get();
    if (!device) continue;
    for (uint32_t b = 0; b < kBarSlotCount; ++b) {
      auto m = device->bar_mapping(b);
      if (!m || m->size == 0 || m->address + m->size < m->address) continue;
      const BarSpace space = m->kind == BarKind::kIo ? BarSpace::kIo : BarSpace::kMemory;
      map->push_back({m->address, m->address + m->size, space,
                      DecodedBar{i / kFunctionCount, i % kFunctionCount, b, *m}, device});
    }
  }
  std::vector<DecodedBar> before, after;
  for (const Entry& e : *snapshot()) before.push_back(e.bar);
  for (const Entry& e : *map) after.push_back(e.bar);
  if (same(before, after)) return;
  {
    std::unique_lock<std::shared_mutex> lock(map_mu_);
    map_ = std::move(map);
  }
  if (on_bars_changed_) on_bars_changed_();
}

std::shared_ptr<const PciBus::DecodeMap> PciBus::snapshot() const {
  std::shared_lock<std::shared_mutex> lock(map_mu_);
  return map_;
}

const PciBus::Entry* PciBus::lookup(const DecodeMap& map, BarSpace space, uint64_t address,
                                    uint64_t size) const {
  for (const Entry& e : map) {
    if (e.space == space && address >= e.start && address < e.end && size <= e.end - address) return &e;
  }
  return nullptr;
}

bool PciBus::bar_read(BarSpace space, uint64_t address, std::span<uint8_t> data) const {
  const auto map = snapshot();
  const Entry* e = lookup(*map, space, address, data.size());
  if (!e) return false;
  e->device->bar_read(e->bar.bar, address - e->start, data);
  return true;
}

bool PciBus::bar_write(BarSpace space, uint64_t address, std::span<const uint8_t> data) const {
  const auto map = snapshot();
  const Entry* e = lookup(*map, space, address, data.size());
  if (!e) return false;
  e->device->bar_write(e->bar.bar, address - e->start, data);
  return true;
}

std::vector<DecodedBar> PciBus::decoded_bars() const {
  std::vector<DecodedBar> out;
  for (const Entry& e : *snapshot()) out.push_back(e.bar);
  return out;
}

std::optional<BarMapping> PciBus::bar(uint32_t slot, uint32_t function, uint32_t bar) const {
  for (const Entry& e : *snapshot()) {
    if (e.bar.slot == slot && e.bar.function == function && e.bar.bar == bar) return e.bar.mapping;
  }
  return std::nullopt;
}

void PciBus::set_bars_changed_listener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(config_mu_);
  on_bars_changed_ = std::move(listener);
}

void PciBus::reset() {
  std::lock_guard<std::mutex> lock(config_mu_);
  config_address_ = 0;
  for (auto& f : functions_) {
    if (f) f->reset();
  }
  rebuild_locked();
}

void PciBus::refresh() {
  std::lock_guard<std::mutex> lock(config_mu_);
  rebuild_locked();
}

uint32_t PciBus::config_address() const { return config_address_.load(); }

void PciBus::set_config_address(uint32_t value) { config_address_ = value & kConfigAddressMask; }

void PciBus::save_state(state::Writer& w) const {
  const size_t token = w.begin("pci-bus", 1);
  w.u32(config_address_.load());
  w.end(token);
}

void PciBus::load_state(state::Reader& parent) {
  auto rec = parent.record("pci-bus", 1);
  state::Reader& r = rec.body;
  const uint32_t address = r.u32("config_address");
  r.expect_end();
  if (address & ~kConfigAddressMask) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", address);
    r.fail(std::string("config_address is ") + buf + ", with reserved bits set");
  }
  config_address_ = address;
}

}  // namespace berth::devices::pci
