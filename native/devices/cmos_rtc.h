// MC146818 real-time clock and CMOS NVRAM at I/O ports 0x70 (offset 0: index; bit 7 is
// the NMI mask and is ignored) and 0x71 (offset 1: data). Reading the index port returns
// 0xff.
//
// The clock runs off the host's clock (UTC). Time the guest sets (with status B's SET bit,
// or by writing a time register directly) is kept as an offset from host time, so it keeps
// running and survives reset(). Status B's DM (binary) and 24/12-hour bits select how the
// time registers (and the century byte 0x32) are encoded on every read and decoded on
// every write. While SET is on, the time registers are frozen and take the guest's
// writes; clearing SET commits them. Alarm registers (0x01, 0x03, 0x05) are plain
// storage; periodic, alarm and update-ended interrupts are not generated (status C reads
// 0) and UIP always reads 0.
//
// Bytes 0x0e..0x7f (except 0x32) are NVRAM that survives reset(). The constructor fills
// the equipment byte (0x14: FPU present, VGA, no floppy) and base memory (0x15/0x16 = 640
// KiB); set_memory_size / set_memory_layout fill the memory-size bytes and the standard
// checksum at 0x2e/0x2f (sum of 0x10..0x2d).
//
// Thread-safe: one mutex guards all state; now_unix_seconds is called with it held, so it
// must not call back into this device.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices {

class CmosRtc : public vmm::BusDevice {
 public:
  static constexpr uint16_t kBase = 0x70;
  static constexpr uint64_t kPortCount = 2;

  // Default clock: the host's real time.
  static int64_t host_unix_seconds();

  explicit CmosRtc(std::function<int64_t()> now_unix_seconds = host_unix_seconds);

  // BusDevice: 1-byte ports at offsets 0 and 1 (a wider access is handled as consecutive
  // byte accesses); other offsets read 0xff and ignore writes.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Resets the index and status registers A-D (A=0x26, B=0x02, C=0, D=0x80), dropping
  // any time the guest was in the middle of setting. The clock offset and NVRAM survive.
  void reset();

  // Memory-size bytes for `bytes` of RAM laid out like vmm::GuestMemory: RAM below 4 GiB
  // stops at the PCI hole (3 GiB), the rest is above 4 GiB.
  void set_memory_size(uint64_t bytes);
  // Same with an explicit split. Fills 0x15/0x16 (640 KiB base), 0x17/0x18 and 0x30/0x31
  // (KiB above 1 MiB, capped at 0xffff), 0x34/0x35 (64 KiB blocks above 16 MiB below
  // 4 GiB, capped at 0xffff), 0x5b/0x5c/0x5d (64 KiB blocks above 4 GiB, capped at
  // 0xffffff), then the checksum.
  void set_memory_layout(uint64_t below_4g_bytes, uint64_t above_4g_bytes);

  // Guest time minus host time, in seconds (0 until the guest sets the clock).
  int64_t offset_seconds() const;

  // Saved state: record "cmos-rtc" with the CMOS RAM (alarms and NVRAM), the index and
  // status registers, a time the guest is in the middle of setting (status B's SET), and
  // the guest's clock as an offset from host time, so a restored guest's clock runs on
  // with the host's (it moves on by however long the VM was saved). A bad record throws
  // STATE_INVALID and changes nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  struct Time {
    int64_t year = 1970;
    int month = 1, day = 1, hour = 0, minute = 0, second = 0;
    int weekday = 1;  // 1 = Sunday
  };

  static Time to_time(int64_t unix_seconds);
  static int64_t to_unix(const Time& t);
  Time current_time() const;
  uint8_t encode(int value) const;
  int decode(uint8_t value) const;
  uint8_t encode_hour(int hour) const;
  int decode_hour(uint8_t value) const;
  uint8_t read_data();
  void write_data(uint8_t value);
  void write_time_register(uint8_t reg, uint8_t value);
  void update_checksum();
  void reset_status();

  std::function<int64_t()> now_;
  mutable std::mutex mu_;
  uint8_t index_ = 0;
  uint8_t reg_a_ = 0, reg_b_ = 0, reg_c_ = 0;
  int64_t offset_ = 0;
  bool frozen_ = false;
  Time frozen_time_;
  std::array<uint8_t, 128> ram_{};
};

}  // namespace berth::devices
