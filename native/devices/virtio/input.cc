#include "devices/virtio/input.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

namespace berth::devices::virtio {

namespace {

// struct virtio_input_config selectors.
constexpr uint8_t kCfgIdName = 0x01, kCfgIdSerial = 0x02, kCfgIdDevids = 0x03, kCfgPropBits = 0x10,
                  kCfgEvBits = 0x11, kCfgAbsInfo = 0x12;
constexpr uint32_t kCfgSelect = 0, kCfgSubsel = 1, kCfgSize = 2, kCfgData = 8;

// linux/input-event-codes.h
constexpr uint16_t kEvSyn = 0x00, kEvKey = 0x01, kEvAbs = 0x03;
constexpr uint16_t kSynReport = 0;
constexpr uint16_t kBtnLeft = 0x110, kBtnRight = 0x111, kBtnMiddle = 0x112;
constexpr uint16_t kAbsX = 0x00, kAbsY = 0x01;
constexpr uint16_t kBusVirtual = 0x06;

constexpr std::string_view kName = "Berth virtio tablet";
constexpr std::string_view kSerial = "berth-tablet-0";

constexpr size_t kEventBytes = 8;

struct ButtonMap {
  uint8_t host;
  uint16_t code;
};
constexpr ButtonMap kButtons[] = {{VirtioInput::kButtonLeft, kBtnLeft},
                                  {VirtioInput::kButtonRight, kBtnRight},
                                  {VirtioInput::kButtonMiddle, kBtnMiddle}};

void put_le(uint8_t* p, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void set_bit(uint8_t* bitmap, uint16_t bit, uint8_t& size) {
  bitmap[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
  size = std::max<uint8_t>(size, static_cast<uint8_t>(bit / 8 + 1));
}

}  // namespace

std::array<uint8_t, VirtioInput::kConfigSize> VirtioInput::config_bytes() const {
  std::array<uint8_t, kConfigSize> c{};
  c[kCfgSelect] = select_;
  c[kCfgSubsel] = subsel_;
  uint8_t size = 0;
  uint8_t* u = c.data() + kCfgData;
  auto string = [&](std::string_view s) {
    std::memcpy(u, s.data(), s.size());
    size = static_cast<uint8_t>(s.size());
  };
  switch (select_) {
    case kCfgIdName:
      if (subsel_ == 0) string(kName);
      break;
    case kCfgIdSerial:
      if (subsel_ == 0) string(kSerial);
      break;
    case kCfgIdDevids:
      if (subsel_ == 0) {
        put_le(u, kBusVirtual, 2);
        put_le(u + 2, 0, 2);  // vendor
        put_le(u + 4, 1, 2);  // product
        put_le(u + 6, 1, 2);  // version
        size = 8;
      }
      break;
    case kCfgPropBits: break;  // no properties: size 0
    case kCfgEvBits:
      if (subsel_ == kEvKey) {
        for (const auto& b : kButtons) set_bit(u, b.code, size);
      } else if (subsel_ == kEvAbs) {
        set_bit(u, kAbsX, size);
        set_bit(u, kAbsY, size);
      } else if (subsel_ == kEvSyn) {
        set_bit(u, kEvSyn, size);
      }
      break;
    case kCfgAbsInfo:
      if (subsel_ == kAbsX || subsel_ == kAbsY) {
        put_le(u, 0, 4);            // min
        put_le(u + 4, kAbsMax, 4);  // max
        // fuzz, flat, res: 0
        size = 20;
      }
      break;
  }
  c[kCfgSize] = size;
  return c;
}

void VirtioInput::read_config(uint32_t offset, std::span<uint8_t> data) {
  const auto c = config_bytes();
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < c.size() ? c[offset + i] : 0;
}

void VirtioInput::write_config(uint32_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i == kCfgSelect) select_ = data[i];
    if (offset + i == kCfgSubsel) subsel_ = data[i];
  }
}

void VirtioInput::activate(std::span<Virtqueue> queues, uint64_t) {
  eventq_ = queues[0].active() ? &queues[0] : nullptr;
  statusq_ = queues[1].active() ? &queues[1] : nullptr;
  fill_events();
  drain_status();
}

void VirtioInput::reset() {
  eventq_ = statusq_ = nullptr;
  select_ = subsel_ = 0;
}

void VirtioInput::queue_notify(uint16_t queue) {
  if (queue == 0) fill_events();
  if (queue == 1) drain_status();
}

void VirtioInput::pointer_absolute(uint32_t x, uint32_t y, uint8_t buttons) {
  x = std::min(x, kAbsMax);
  y = std::min(y, kAbsMax);
  Event report[8];
  size_t n = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!reported_ || x != x_) report[n++] = {kEvAbs, kAbsX, x};
    if (!reported_ || y != y_) report[n++] = {kEvAbs, kAbsY, y};
    for (const auto& b : kButtons) {
      if ((buttons ^ buttons_) & b.host) report[n++] = {kEvKey, b.code, (buttons & b.host) ? 1u : 0u};
    }
    if (n == 0) return;  // nothing moved
    report[n++] = {kEvSyn, kSynReport, 0};
    if (pending_.size() + n > kMaxPendingEvents) {
      ++dropped_;
      return;
    }
    pending_.insert(pending_.end(), report, report + n);
    x_ = x;
    y_ = y;
    buttons_ = buttons & (kButtonLeft | kButtonRight | kButtonMiddle);
    reported_ = true;
  }
  if (context_) context_->kick();
}

uint64_t VirtioInput::dropped_reports() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

void VirtioInput::fill_events() {
  if (!eventq_) return;
  bool used = false;
  std::lock_guard<std::mutex> lock(mu_);
  while (!pending_.empty()) {
    const auto pop = eventq_->pop(chain_);
    if (pop == Virtqueue::Pop::kError) {
      context_->fail("virtio-input event queue: broken");
      return;
    }
    if (pop != Virtqueue::Pop::kChain) break;
    if (chain_.writable_bytes < kEventBytes) {
      // Too small for an event: handed back empty, the event waits for the next buffer.
      eventq_->push_used(chain_.head, 0);
      used = true;
      continue;
    }
    const Event& e = pending_.front();
    uint8_t bytes[kEventBytes];
    put_le(bytes, e.type, 2);
    put_le(bytes + 2, e.code, 2);
    put_le(bytes + 4, e.value, 4);
    chain_.write(bytes);
    eventq_->push_used(chain_.head, kEventBytes);
    pending_.pop_front();
    used = true;
  }
  if (used) context_->signal_used(0);
}

void VirtioInput::drain_status() {
  if (!statusq_) return;
  bool used = false;
  for (;;) {
    const auto pop = statusq_->pop(chain_);
    if (pop == Virtqueue::Pop::kError) {
      context_->fail("virtio-input status queue: broken");
      return;
    }
    if (pop != Virtqueue::Pop::kChain) break;
    statusq_->push_used(chain_.head, 0);  // LED state: nothing to show it on
    used = true;
  }
  if (used) context_->signal_used(1);
}

void VirtioInput::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t token = w.begin(name(), 1);
  w.u8(select_);
  w.u8(subsel_);
  w.u32(x_);
  w.u32(y_);
  w.u8(buttons_);
  w.boolean(reported_);
  w.u64(dropped_);
  w.u32(static_cast<uint32_t>(pending_.size()));
  for (const Event& e : pending_) {
    w.u16(e.type);
    w.u16(e.code);
    w.u32(e.value);
  }
  w.end(token);
}

void VirtioInput::load_state(state::Reader& parent) {
  auto rec = parent.record(name(), 1);
  state::Reader& r = rec.body;
  const uint8_t select = r.u8("select");
  const uint8_t subsel = r.u8("subsel");
  const uint32_t x = r.u32("x"), y = r.u32("y");
  if (x > kAbsMax) r.fail("x is " + std::to_string(x) + ", beyond " + std::to_string(kAbsMax));
  if (y > kAbsMax) r.fail("y is " + std::to_string(y) + ", beyond " + std::to_string(kAbsMax));
  const uint8_t buttons = r.u8("buttons");
  if (buttons & ~(kButtonLeft | kButtonRight | kButtonMiddle)) r.fail("buttons is " + std::to_string(buttons) + ", beyond the three buttons");
  const bool reported = r.boolean("reported");
  const uint64_t dropped = r.u64("dropped");
  const uint32_t n = r.count(kMaxPendingEvents, "pending");
  std::deque<Event> pending;
  for (uint32_t i = 0; i < n; ++i) {
    Event e;
    e.type = r.u16("event type");
    e.code = r.u16("event code");
    e.value = r.u32("event value");
    pending.push_back(e);
  }
  r.expect_end();
  std::lock_guard<std::mutex> lock(mu_);
  select_ = select;
  subsel_ = subsel;
  x_ = x;
  y_ = y;
  buttons_ = buttons;
  reported_ = reported;
  dropped_ = dropped;
  pending_ = std::move(pending);
}

}  // namespace berth::devices::virtio
