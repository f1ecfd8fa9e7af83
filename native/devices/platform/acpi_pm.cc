#include "devices/platform/acpi_pm.h"

#include <chrono>
#include <cstdio>
#include <string>

namespace berth::devices::platform {

namespace {

constexpr uint16_t kPm1StatusBits = 0xc531;  // TMR, BM, GBL, PWRBTN, RTC, PCIEXP_WAKE, WAK
constexpr uint16_t kPm1EnableBits = 0x4521;  // TMR, GBL, PWRBTN, RTC, PCIEXP_WAKE_DIS
constexpr uint16_t kSciSources = 0x0521;     // the enables that raise the SCI
constexpr uint16_t kPm1ControlStored = 0x1c02;  // SLP_TYP, BM_RLD
constexpr uint16_t kSleepTypeShift = 10;
constexpr uint32_t kTimerMask = 0xffffff;
constexpr uint64_t kNsPerSecond = 1'000'000'000;

bool in(uint64_t offset, uint16_t start, uint16_t size) { return offset >= start && offset < start + size; }

// Byte `index` of value.
uint8_t byte_of(uint64_t value, uint64_t index) { return static_cast<uint8_t>(value >> (8 * index)); }

template <typename T>
void set_byte(T& reg, uint64_t index, uint8_t value, T writable) {
  const T lane = static_cast<T>(T{0xff} << (8 * index));
  reg = static_cast<T>((reg & ~(lane & writable)) | ((static_cast<T>(value) << (8 * index)) & lane & writable));
}

template <typename T>
void clear_byte(T& reg, uint64_t index, uint8_t value, T clearable) {
  reg = static_cast<T>(reg & ~((static_cast<T>(value) << (8 * index)) & clearable));
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

uint64_t AcpiPm::host_monotonic_ns() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count());
}

AcpiPm::AcpiPm(vmm::IrqLine& sci, std::function<void()> on_power_off, std::function<uint64_t()> now_ns)
    : sci_(sci), on_power_off_(std::move(on_power_off)), now_ns_(std::move(now_ns)) {
  timer_epoch_ns_ = now_ns_();
  power_on_locked();
}

void AcpiPm::power_on_locked() {
  pm1_status_ = 0;
  pm1_enable_ = 0;
  pm1_control_ = 0;
  gpe0_status_ = 0;
  gpe0_enable_ = 0;
  smi_enable_ = kSmiEnableApmc;
  smi_status_ = 0;
}

uint64_t AcpiPm::ticks_locked() const {
  const uint64_t now = now_ns_();
  const uint64_t ns = now > timer_epoch_ns_ ? now - timer_epoch_ns_ : 0;
  return timer_base_ + ns / kNsPerSecond * kTimerHz + ns % kNsPerSecond * kTimerHz / kNsPerSecond;
}

uint32_t AcpiPm::timer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<uint32_t>(ticks_locked() & kTimerMask);
}

uint8_t AcpiPm::read_byte_locked(uint64_t o, uint32_t timer) const {
  if (in(o, kPm1Status, 2)) return byte_of(pm1_status_, o - kPm1Status);
  if (in(o, kPm1Enable, 2)) return byte_of(pm1_enable_, o - kPm1Enable);
  if (in(o, kPm1Control, 4)) return byte_of(pm1_control_ | kPm1ControlSciEnable, o - kPm1Control);
  if (in(o, kPmTimer, 4)) return byte_of(timer, o - kPmTimer);
  if (in(o, kGpe0Status, 8)) return byte_of(gpe0_status_, o - kGpe0Status);
  if (in(o, kGpe0Enable, 8)) return byte_of(gpe0_enable_, o - kGpe0Enable);
  if (in(o, kSmiEnable, 4)) return byte_of(smi_enable_, o - kSmiEnable);
  if (in(o, kSmiStatus, 4)) return byte_of(smi_status_, o - kSmiStatus);
  return 0;
}

bool AcpiPm::write_byte_locked(uint64_t o, uint8_t v) {
  if (in(o, kPm1Status, 2)) {
    clear_byte(pm1_status_, o - kPm1Status, v, kPm1StatusBits);
  } else if (in(o, kPm1Enable, 2)) {
    set_byte(pm1_enable_, o - kPm1Enable, v, kPm1EnableBits);
  } else if (in(o, kPm1Control, 2)) {
    set_byte(pm1_control_, o - kPm1Control, v, kPm1ControlStored);
    const uint16_t written = static_cast<uint16_t>(v << (8 * (o - kPm1Control)));
    if (written & kPm1ControlSleepEnable) {
      return (pm1_control_ >> kSleepTypeShift & 7) == kS5SleepType;
    }
  } else if (in(o, kGpe0Status, 8)) {
    clear_byte(gpe0_status_, o - kGpe0Status, v, ~uint64_t{0});
  } else if (in(o, kGpe0Enable, 8)) {
    set_byte(gpe0_enable_, o - kGpe0Enable, v, ~uint64_t{0});
  } else if (in(o, kSmiEnable, 4)) {
    set_byte(smi_enable_, o - kSmiEnable, v, ~uint32_t{0});
  } else if (in(o, kSmiStatus, 4)) {
    clear_byte(smi_status_, o - kSmiStatus, v, ~uint32_t{0});
  }
  return false;
}

void AcpiPm::update_sci_locked() {
  const bool level = (pm1_status_ & pm1_enable_ & kSciSources) || (gpe0_status_ & gpe0_enable_);
  if (level == sci_level_) return;
  sci_level_ = level;
  sci_.set_level(level);
}

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto timer = static_cast<uint32_t>(ticks_locked() & kTimerMask);
  for (size_t i = 0; i < data.size(); ++i) data[i] = read_byte_locked(offset + i, timer);
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
  bool power_off = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) power_off |= write_byte_locked(offset + i, data[i]);
    update_sci_locked();
  }
  if (power_off && on_power_off_) on_power_off_();
}

void AcpiPm::press_power_button() {
  std::lock_guard<std::mutex> lock(mu_);
  pm1_status_ |= kPm1PowerButton;
  update_sci_locked();
}

void AcpiPm::raise_gpe(uint32_t bit) {
  if (bit >= kGpe0Count) return;
  std::lock_guard<std::mutex> lock(mu_);
  gpe0_status_ |= uint64_t{1} << bit;
  update_sci_locked();
}

void AcpiPm::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  power_on_locked();
  update_sci_locked();
}

void AcpiPm::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t token = w.begin("ich9-acpi-pm", 1);
  w.u16(pm1_status_);
  w.u16(pm1_enable_);
  w.u16(pm1_control_);
  w.u64(gpe0_status_);
  w.u64(gpe0_enable_);
  w.u32(smi_enable_);
  w.u32(smi_status_);
  w.u64(ticks_locked());
  w.end(token);
}

void AcpiPm::load_state(state::Reader& parent) {
  auto rec = parent.record("ich9-acpi-pm", 1);
  state::Reader& r = rec.body;
  const uint16_t status = r.u16("pm1_status");
  const uint16_t enable = r.u16("pm1_enable");
  const uint16_t control = r.u16("pm1_control");
  const uint64_t gpe_status = r.u64("gpe0_status");
  const uint64_t gpe_enable = r.u64("gpe0_enable");
  const uint32_t smi_enable = r.u32("smi_enable");
  const uint32_t smi_status = r.u32("smi_status");
  const uint64_t ticks = r.u64("timer_ticks");
  r.expect_end();
  if (status & ~kPm1StatusBits) r.fail("pm1_status is " + hex(status) + ", with undefined bits set");
  if (enable & ~kPm1EnableBits) r.fail("pm1_enable is " + hex(enable) + ", with undefined bits set");
  if (control & ~kPm1ControlStored) r.fail("pm1_control is " + hex(control) + ", with bits no write keeps");

  std::lock_guard<std::mutex> lock(mu_);
  pm1_status_ = status;
  pm1_enable_ = enable;
  pm1_control_ = control;
  gpe0_status_ = gpe_status;
  gpe0_enable_ = gpe_enable;
  smi_enable_ = smi_enable;
  smi_status_ = smi_status;
  timer_base_ = ticks;
  timer_epoch_ns_ = now_ns_();
  sci_level_ = (pm1_status_ & pm1_enable_ & kSciSources) || (gpe0_status_ & gpe0_enable_);
  sci_.set_level(sci_level_);
}

}  // namespace berth::devices::platform
