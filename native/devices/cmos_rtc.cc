#include "devices/cmos_rtc.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "vmm/guest_memory.h"

namespace berth::devices {

namespace {

constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06,
                  kDayOfMonth = 0x07, kMonth = 0x08, kYear = 0x09, kStatusA = 0x0a,
                  kStatusB = 0x0b, kStatusC = 0x0c, kStatusD = 0x0d, kCentury = 0x32;

constexpr uint8_t kStatusADefault = 0x26;  // 32.768 kHz time base, 1024 Hz rate
constexpr uint8_t kStatusBSet = 0x80, kStatusBUpdateIrq = 0x10, kStatusBBinary = 0x04,
                  kStatusB24Hour = 0x02;
constexpr uint8_t kStatusBDefault = kStatusB24Hour;
constexpr uint8_t kStatusDValidRam = 0x80;

constexpr uint8_t kEquipment = 0x14, kBaseMemLow = 0x15, kBaseMemHigh = 0x16,
                  kExtMemLow = 0x17, kExtMemHigh = 0x18, kExtMem2Low = 0x30,
                  kExtMem2High = 0x31, kMem16MLow = 0x34, kMem16MHigh = 0x35,
                  kMem4GLow = 0x5b, kMem4GMid = 0x5c, kMem4GHigh = 0x5d,
                  kChecksumHigh = 0x2e, kChecksumLow = 0x2f;

constexpr int64_t kSecondsPerDay = 86400;
// About 12,000 years either way: far beyond what a guest can set (years 0..9999), small
// enough that host time plus the offset never overflows a calendar computation.
constexpr int64_t kMaxOffsetSeconds = 400'000'000'000;
constexpr int64_t kMaxFrozenYear = 99'999;

int clamp(int v, int lo, int hi) { return std::min(std::max(v, lo), hi); }

}  // namespace

int64_t CmosRtc::host_unix_seconds() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

CmosRtc::CmosRtc(std::function<int64_t()> now_unix_seconds) : now_(std::move(now_unix_seconds)) {
  reset_status();
  ram_[kEquipment] = 0x02;  // math coprocessor present, EGA/VGA display, no floppy
  ram_[kBaseMemLow] = 640 & 0xff;
  ram_[kBaseMemHigh] = 640 >> 8;
  update_checksum();
}

void CmosRtc::reset_status() {
  index_ = 0;
  reg_a_ = kStatusADefault;
  reg_b_ = kStatusBDefault;
  reg_c_ = 0;
  frozen_ = false;
}

void CmosRtc::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  reset_status();
}

CmosRtc::Time CmosRtc::to_time(int64_t unix_seconds) {
  using namespace std::chrono;
  int64_t days_since_epoch = unix_seconds / kSecondsPerDay;
  int64_t secs = unix_seconds % kSecondsPerDay;
  if (secs < 0) {
    secs += kSecondsPerDay;
    --days_since_epoch;
  }
  const sys_days day_point{days(days_since_epoch)};
  const year_month_day ymd{day_point};
  Time t;
  t.year = static_cast<int>(ymd.year());
  t.month = static_cast<int>(static_cast<unsigned>(ymd.month()));
  t.day = static_cast<int>(static_cast<unsigned>(ymd.day()));
  t.hour = static_cast<int>(secs / 3600);
  t.minute = static_cast<int>(secs / 60 % 60);
  t.second = static_cast<int>(secs % 60);
  t.weekday = static_cast<int>(weekday(day_point).c_encoding()) + 1;
  return t;
}

// Out-of-range fields (a guest writing garbage) are clamped rather than rejected.
int64_t CmosRtc::to_unix(const Time& t) {
  using namespace std::chrono;
  const int y = static_cast<int>(std::clamp<int64_t>(t.year, 0, 9999));
  const sys_days first{year(y) / month(static_cast<unsigned>(clamp(t.month, 1, 12))) / day(1)};
  const int64_t days_since_epoch = first.time_since_epoch().count() + clamp(t.day, 1, 31) - 1;
  return days_since_epoch * kSecondsPerDay + clamp(t.hour, 0, 23) * 3600 +
         clamp(t.minute, 0, 59) * 60 + clamp(t.second, 0, 59);
}

CmosRtc::Time CmosRtc::current_time() const {
  if (frozen_) return frozen_time_;
  return to_time(now_() + offset_);
}

uint8_t CmosRtc::encode(int value) const {
  if (reg_b_ & kStatusBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) % 10) << 4 | (value % 10));
}

int CmosRtc::decode(uint8_t value) const {
  if (reg_b_ & kStatusBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t CmosRtc::encode_hour(int hour) const {
  if (reg_b_ & kStatusB24Hour) return encode(hour);
  const int h12 = hour % 12 == 0 ? 12 : hour % 12;
  return static_cast<uint8_t>(encode(h12) | (hour >= 12 ? 0x80 : 0));
}

int CmosRtc::decode_hour(uint8_t value) const {
  if (reg_b_ & kStatusB24Hour) return decode(value);
  const int h12 = decode(value & 0x7f);
  return h12 % 12 + ((value & 0x80) ? 12 : 0);
}

uint8_t CmosRtc::read_data() {
  switch (index_) {
    case kSeconds: return encode(current_time().second);
    case kMinutes: return encode(current_time().minute);
    case kHours: return encode_hour(current_time().hour);
    case kWeekday: return encode(current_time().weekday);
    case kDayOfMonth: return encode(current_time().day);
    case kMonth: return encode(current_time().month);
    case kYear: return encode(static_cast<int>(current_time().year % 100));
    case kCentury: return encode(static_cast<int>(current_time().year / 100));
    case kStatusA: return reg_a_;  // UIP (bit 7) is never set
    case kStatusB: return reg_b_;
    case kStatusC: {
      const uint8_t value = reg_c_;
      reg_c_ = 0;
      return value;
    }
    case kStatusD: return kStatusDValidRam;
    default: return ram_[index_];  // alarms and NVRAM
  }
}

void CmosRtc::write_time_register(uint8_t reg, uint8_t value) {
  Time t = current_time();
  switch (reg) {
    case kSeconds: t.second = decode(value); break;
    case kMinutes: t.minute = decode(value); break;
    case kHours: t.hour = decode_hour(value); break;
    case kWeekday: t.weekday = decode(value); break;
    case kDayOfMonth: t.day = decode(value); break;
    case kMonth: t.month = decode(value); break;
    case kYear: t.year = t.year / 100 * 100 + decode(value) % 100; break;
    case kCentury: t.year = int64_t{decode(value)} * 100 + t.year % 100; break;
  }
  if (frozen_) {
    frozen_time_ = t;
  } else {
    // A write while the clock runs takes effect at once (the weekday follows the date).
    offset_ = to_unix(t) - now_();
  }
}

void CmosRtc::write_data(uint8_t value) {
  switch (index_) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kWeekday:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury:
      write_time_register(index_, value);
      return;
    case kStatusA:
      reg_a_ = value & 0x7f;
      return;
    case kStatusB: {
      const bool was_set = reg_b_ & kStatusBSet;
      const bool set = value & kStatusBSet;
      if (!was_set && set) {
        frozen_time_ = to_time(now_() + offset_);
        frozen_ = true;
        value &= static_cast<uint8_t>(~kStatusBUpdateIrq);  // SET clears UIE
      } else if (was_set && !set) {
        offset_ = to_unix(frozen_time_) - now_();
        frozen_ = false;
      }
      reg_b_ = value;
      return;
    }
    case kStatusC:
    case kStatusD:
      return;  // read-only
    default:
      ram_[index_] = value;
      return;
  }
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i == 1 ? read_data() : 0xff;
  }
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i == 0) {
      index_ = data[i] & 0x7f;  // bit 7: NMI mask, ignored
    } else if (offset + i == 1) {
      write_data(data[i]);
    }
  }
}

void CmosRtc::update_checksum() {
  unsigned sum = 0;
  for (unsigned i = 0x10; i <= 0x2d; ++i) sum += ram_[i];
  ram_[kChecksumHigh] = static_cast<uint8_t>(sum >> 8);
  ram_[kChecksumLow] = static_cast<uint8_t>(sum);
}

void CmosRtc::set_memory_size(uint64_t bytes) {
  const uint64_t below = std::min(bytes, vmm::kPciHoleStart);
  set_memory_layout(below, bytes - below);
}

void CmosRtc::set_memory_layout(uint64_t below_4g_bytes, uint64_t above_4g_bytes) {
  constexpr uint64_t kMiB = 1 << 20;
  const uint64_t ext_kib =
      below_4g_bytes > kMiB ? std::min<uint64_t>((below_4g_bytes - kMiB) / 1024, 0xffff) : 0;
  const uint64_t blocks_16m =
      below_4g_bytes > 16 * kMiB ? std::min<uint64_t>((below_4g_bytes - 16 * kMiB) >> 16, 0xffff)
                                 : 0;
  const uint64_t blocks_4g = std::min<uint64_t>(above_4g_bytes >> 16, 0xffffff);
  std::lock_guard<std::mutex> lock(mu_);
  ram_[kBaseMemLow] = 640 & 0xff;
  ram_[kBaseMemHigh] = 640 >> 8;
  ram_[kExtMemLow] = ram_[kExtMem2Low] = static_cast<uint8_t>(ext_kib);
  ram_[kExtMemHigh] = ram_[kExtMem2High] = static_cast<uint8_t>(ext_kib >> 8);
  ram_[kMem16MLow] = static_cast<uint8_t>(blocks_16m);
  ram_[kMem16MHigh] = static_cast<uint8_t>(blocks_16m >> 8);
  ram_[kMem4GLow] = static_cast<uint8_t>(blocks_4g);
  ram_[kMem4GMid] = static_cast<uint8_t>(blocks_4g >> 8);
  ram_[kMem4GHigh] = static_cast<uint8_t>(blocks_4g >> 16);
  update_checksum();
}

int64_t CmosRtc::offset_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return offset_;
}

void CmosRtc::save_state(state::Writer& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t token = w.begin("cmos-rtc", 1);
  w.u8(index_);
  w.u8(reg_a_);
  w.u8(reg_b_);
  w.u8(reg_c_);
  w.u64(static_cast<uint64_t>(offset_));
  w.boolean(frozen_);
  w.u64(static_cast<uint64_t>(frozen_time_.year));
  for (int field : {frozen_time_.month, frozen_time_.day, frozen_time_.hour, frozen_time_.minute,
                    frozen_time_.second, frozen_time_.weekday}) {
    w.u8(static_cast<uint8_t>(field));
  }
  w.bytes(ram_);
  w.end(token);
}

void CmosRtc::load_state(state::Reader& parent) {
  auto rec = parent.record("cmos-rtc", 1);
  state::Reader& r = rec.body;
  const uint8_t index = r.u8("index");
  if (index > 0x7f) r.fail("index is " + std::to_string(index) + ", above 0x7f");
  const uint8_t reg_a = r.u8("status_a");
  if (reg_a > 0x7f) r.fail("status_a is " + std::to_string(reg_a) + ", with UIP set");
  const uint8_t reg_b = r.u8("status_b");
  const uint8_t reg_c = r.u8("status_c");
  const auto offset = static_cast<int64_t>(r.u64("offset_seconds"));
  if (offset < -kMaxOffsetSeconds || offset > kMaxOffsetSeconds) {
    r.fail("offset_seconds is " + std::to_string(offset) + ", beyond any clock a guest can set");
  }
  const bool frozen = r.boolean("setting_time");
  Time t;
  t.year = static_cast<int64_t>(r.u64("set_year"));
  if (t.year < -kMaxFrozenYear || t.year > kMaxFrozenYear) r.fail("set_year is " + std::to_string(t.year));
  // The other fields are whatever the guest wrote (decoded from one byte), clamped when used.
  t.month = r.u8("set_month");
  t.day = r.u8("set_day");
  t.hour = r.u8("set_hour");
  t.minute = r.u8("set_minute");
  t.second = r.u8("set_second");
  t.weekday = r.u8("set_weekday");
  auto ram = r.bytes(128, "cmos_ram");
  r.expect_end();
  if (frozen != ((reg_b & kStatusBSet) != 0)) r.fail("setting_time disagrees with status_b's SET bit");

  std::lock_guard<std::mutex> lock(mu_);
  index_ = index;
  reg_a_ = reg_a;
  reg_b_ = reg_b;
  reg_c_ = reg_c;
  offset_ = offset;
  frozen_ = frozen;
  frozen_time_ = t;
  std::copy(ram.begin(), ram.end(), ram_.begin());
}

}  // namespace berth::devices
