// virtio-input (virtio 1.x 5.8, device id 18) as an absolute pointer: a tablet whose
// position maps the whole display to 0..32767 on both axes, with left, right and middle
// buttons. The guest's evdev sees ABS_X/ABS_Y and BTN_LEFT/RIGHT/MIDDLE, so the pointer
// lands where the host's is, with no acceleration or grabbing.
//
// Queues: eventq (0) takes one 8-byte virtio_input_event per buffer; statusq (1) carries
// the driver's LED/feedback events, which are taken and ignored.
//
// Configuration (struct virtio_input_config, 136 bytes): the driver writes select and
// subsel, then reads size and the answer: ID_NAME, ID_SERIAL, ID_DEVIDS, PROP_BITS (none),
// EV_BITS for EV_KEY (the three buttons) and EV_ABS (X, Y) and EV_SYN, ABS_INFO for X and
// Y. Anything else reads size 0.
//
// Host input: pointer_absolute (any thread) queues a report (changed axes and buttons,
// then SYN_REPORT); at most kMaxPendingEvents events wait for the guest's buffers, a
// report that does not fit whole is dropped and counted.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>

#include "devices/virtio/virtio_device.h"

namespace berth::devices::virtio {

class VirtioInput final : public VirtioDevice {
 public:
  static constexpr uint32_t kAbsMax = 32767;
  static constexpr size_t kMaxPendingEvents = 1024;
  static constexpr uint32_t kConfigSize = 136;

  // Host buttons for pointer_absolute.
  static constexpr uint8_t kButtonLeft = 0x01, kButtonRight = 0x02, kButtonMiddle = 0x04;

  struct Event {
    uint16_t type = 0, code = 0;
    uint32_t value = 0;
  };

  // Any thread: the pointer is at (x, y) (clamped to 0..kAbsMax) with `buttons` held.
  void pointer_absolute(uint32_t x, uint32_t y, uint8_t buttons);
  // Reports dropped because too many events were waiting.
  uint64_t dropped_reports() const;

  uint32_t device_id() const override { return kDeviceIdInput; }
  uint64_t device_features() const override { return 0; }
  uint16_t queue_count() const override { return 2; }
  uint32_t config_size() const override { return kConfigSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;
  void write_config(uint32_t offset, std::span<const uint8_t> data) override;

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void host_event() override { fill_events(); }
  void reset() override;

  // Record "virtio-input": the configuration selector, the events the guest has not taken
  // and the last reported position and buttons.
  const char* name() const override { return "virtio-input"; }
  void save_state(state::Writer& w) const override;
  void load_state(state::Reader& r) override;

 private:
  std::array<uint8_t, kConfigSize> config_bytes() const;
  void fill_events();
  void drain_status();

  Virtqueue* eventq_ = nullptr;
  Virtqueue* statusq_ = nullptr;
  Chain chain_;
  uint8_t select_ = 0, subsel_ = 0;  // guarded by the transport's lock

  mutable std::mutex mu_;  // the host-side state below
  std::deque<Event> pending_;
  uint32_t x_ = 0, y_ = 0;
  uint8_t buttons_ = 0;
  bool reported_ = false;  // a position was reported since power-on
  uint64_t dropped_ = 0;
};

}  // namespace berth::devices::virtio
