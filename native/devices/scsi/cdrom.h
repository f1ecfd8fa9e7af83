// A DVD-ROM drive (MMC-6 over SPC-4): one logical unit whose medium is an ISO image opened
// read-only through the disk layer, with 2048-byte blocks. Hyper-V's and QEMU's DVD drives
// are the model: the guest sees a tray it may lock and eject; the host inserts and ejects
// media at run time, and the host wins: eject() takes the medium out even while the guest
// holds the tray locked (request_eject() is the polite variant that asks the guest first
// through GET EVENT STATUS NOTIFICATION's eject request).
//
// A media change is announced the two ways guests look for it: a unit attention
// (06/28/00 after an insert, 06/3A/00 after an eject) reported once, on the next command
// other than INQUIRY, REQUEST SENSE, REPORT LUNS, GET CONFIGURATION and GET EVENT STATUS
// NOTIFICATION, and a media class event (NewMedia, MediaRemoval) reported once through
// GET EVENT STATUS NOTIFICATION, which Linux's sr driver polls.
//
// Reads that fail (an I/O error, or an image truncated while in the drive: the disk layer
// reads bytes past a file's end as zeroes, so the file's size is checked after each read)
// end in MEDIUM ERROR / UNRECOVERED READ ERROR and set last_error() for the host.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "devices/scsi/target.h"

namespace berth::devices::scsi {

// GET EVENT STATUS NOTIFICATION media event codes (MMC-6 6.8.2.5).
enum class MediaEvent : uint8_t { kNone = 0, kEjectRequest = 1, kNewMedia = 2, kMediaRemoval = 3 };

class ScsiCdrom final : public Target {
 public:
  static constexpr uint32_t kBlockSize = 2048;
  static constexpr size_t kMaxPathBytes = 4096;

  // serial: the unit serial number page's text (at most 20 bytes; longer is cut).
  explicit ScsiCdrom(std::string serial = "");

  // Host API, any thread. insert opens `path` read-only as a raw image and puts it in the
  // drive, replacing any medium (DVD_MEDIA_NOT_FOUND for a missing file, DVD_MEDIA_INVALID
  // for an empty one, a size not a multiple of 2048 bytes or a disk image format; the disk
  // layer's error for anything else; the drive is unchanged when it throws).
  void insert(const std::string& path);
  // Takes the medium out, locked tray or not; returns whether there was one.
  bool eject();
  // Ejects when the guest has not locked the tray (returns true); otherwise posts an eject
  // request event for the guest to act on and returns false.
  bool request_eject();
  std::string media_path() const;  // "" when empty
  bool locked() const;
  // The last failure the host should hear about (a read error, a truncated image, a saved
  // medium that could not be opened again); "" when none.
  std::string last_error() const;
  // Called (on the I/O thread, under the transport's lock: post a message, do not call
  // back into the device) when the guest ejected the medium with START STOP UNIT.
  void set_guest_eject_handler(std::function<void()> handler);

  Command execute(std::span<const uint8_t> cdb) override;
  Reply finish_io(const IoPlan& plan, int64_t result, const std::string& error) override;
  // Unlocks the tray (a rebooting guest must not inherit its predecessor's lock). Pending
  // unit attentions and media events stay.
  void bus_reset() override;

  // Record "scsi-cdrom": medium path and size, tray lock and state, the pending unit
  // attention and media event. A saved medium that cannot be opened again (or now has
  // another size) loads as an empty drive (or the new image) with a unit attention, and
  // the reason in last_error(), not as a failure.
  void save_state(state::Writer& w) const override;
  std::function<void()> prepare_load(state::Reader& r) override;

 private:
  // Commands, with mu_ held.
  Command dispatch(std::span<const uint8_t> cdb, bool& guest_ejected);
  Reply inquiry(std::span<const uint8_t> cdb) const;
  Reply request_sense(std::span<const uint8_t> cdb);
  Reply read_capacity() const;
  Command read(std::span<const uint8_t> cdb) const;
  Reply start_stop(std::span<const uint8_t> cdb, bool& guest_ejected);
  Reply read_toc(std::span<const uint8_t> cdb) const;
  Reply get_configuration(std::span<const uint8_t> cdb) const;
  Reply mode_sense(std::span<const uint8_t> cdb) const;
  Reply event_status(std::span<const uint8_t> cdb);
  Reply disc_information(std::span<const uint8_t> cdb) const;
  Reply mechanism_status(std::span<const uint8_t> cdb) const;
  Sense not_ready() const { return tray_open_ ? sense::kNoMediumTrayOpen : sense::kNoMedium; }
  uint64_t blocks() const { return medium_ ? medium_->bytes / kBlockSize : 0; }
  void post_event(MediaEvent e);

  static std::shared_ptr<Medium> open_medium(const std::string& path);

  const std::string serial_;
  mutable std::mutex mu_;
  std::shared_ptr<Medium> medium_;
  bool locked_ = false;     // PREVENT ALLOW MEDIUM REMOVAL
  bool tray_open_ = false;  // the guest ejected and has not loaded since
  std::optional<Sense> unit_attention_;
  MediaEvent media_event_ = MediaEvent::kNone;
  std::string last_error_;
  std::function<void()> on_guest_eject_;
};

}  // namespace berth::devices::scsi
