// ScsiCdrom's media: opening ISO images, the host's insert and eject, saved state.
#include "common/error.h"
#include "devices/scsi/cdrom.h"

namespace berth::devices::scsi {

namespace {

constexpr uint8_t kMaxMediaEvent = static_cast<uint8_t>(MediaEvent::kMediaRemoval);

}  // namespace

std::shared_ptr<Medium> ScsiCdrom::open_medium(const std::string& path) {
  if (path.empty()) throw Error("DVD_MEDIA_NOT_FOUND", "no DVD image was named: choose an ISO file");
  if (path.size() > kMaxPathBytes) throw Error("DVD_MEDIA_INVALID", "the DVD image's path is longer than 4096 bytes");
  disk::OpenOptions options;
  options.read_only = true;
  options.open_backing = false;
  auto medium = std::make_shared<Medium>();
  try {
    medium->disk = disk::open_disk(path, options);
  } catch (const Error& e) {
    if (e.code() == "DISK_NOT_FOUND") {
      throw Error("DVD_MEDIA_NOT_FOUND", "the DVD image " + path + " does not exist: check the path or choose another ISO file");
    }
    throw;
  }
  const disk::ImageInfo info = medium->disk->info();
  if (info.format != disk::Format::kRaw) {
    throw Error("DVD_MEDIA_INVALID", path + " is a " + disk::format_name(info.format) +
                                         " disk image, not an ISO image: a DVD drive takes raw ISO files");
  }
  const uint64_t bytes = medium->disk->capacity();
  if (bytes == 0 || bytes % kBlockSize != 0) {
    throw Error("DVD_MEDIA_INVALID", path + " is " + std::to_string(bytes) +
                                         " bytes long, not a whole number of 2048-byte DVD sectors (and not empty): "
                                         "it is not an ISO image, or an incomplete copy of one");
  }
  medium->aio = medium->disk->open_async(kMediumDepth);
  medium->path = info.path.empty() ? path : info.path;
  medium->bytes = bytes;
  return medium;
}

void ScsiCdrom::insert(const std::string& path) {
  std::shared_ptr<Medium> medium = open_medium(path);
  std::lock_guard lock(mu_);
  medium_.swap(medium);  // the old medium, if any, is closed after the lock is dropped
  tray_open_ = false;
  unit_attention_ = sense::kMediumChanged;
  media_event_ = MediaEvent::kNewMedia;
  last_error_.clear();
}

bool ScsiCdrom::eject() {
  std::shared_ptr<Medium> old;
  std::lock_guard lock(mu_);
  if (!medium_) return false;
  old.swap(medium_);
  unit_attention_ = sense::kMediumRemoved;
  media_event_ = MediaEvent::kMediaRemoval;
  last_error_.clear();
  return true;
}

bool ScsiCdrom::request_eject() {
  {
    std::lock_guard lock(mu_);
    if (!medium_) return false;
    if (locked_) {
      post_event(MediaEvent::kEjectRequest);
      return false;
    }
  }
  return eject();
}

std::string ScsiCdrom::media_path() const {
  std::lock_guard lock(mu_);
  return medium_ ? medium_->path : std::string();
}

bool ScsiCdrom::locked() const {
  std::lock_guard lock(mu_);
  return locked_;
}

std::string ScsiCdrom::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void ScsiCdrom::set_guest_eject_handler(std::function<void()> handler) {
  std::lock_guard lock(mu_);
  on_guest_eject_ = std::move(handler);
}

void ScsiCdrom::save_state(state::Writer& w) const {
  std::lock_guard lock(mu_);
  size_t token = w.begin("scsi-cdrom", 1);
  w.str(medium_ ? medium_->path : std::string());
  w.u64(medium_ ? medium_->bytes : 0);
  w.boolean(locked_);
  w.boolean(tray_open_);
  w.boolean(unit_attention_.has_value());
  const Sense ua = unit_attention_.value_or(Sense{});
  w.u8(ua.key);
  w.u8(ua.asc);
  w.u8(ua.ascq);
  w.u8(static_cast<uint8_t>(media_event_));
  w.end(token);
}

std::function<void()> ScsiCdrom::prepare_load(state::Reader& parent) {
  auto rec = parent.record("scsi-cdrom", 1);
  state::Reader& r = rec.body;
  const std::string path = r.str(kMaxPathBytes, "media_path");
  const uint64_t bytes = r.u64("media_bytes");
  const bool locked = r.boolean("locked");
  const bool tray_open = r.boolean("tray_open");
  const bool ua_pending = r.boolean("unit_attention");
  Sense ua;
  ua.key = r.u8("unit_attention_key");
  ua.asc = r.u8("unit_attention_asc");
  ua.ascq = r.u8("unit_attention_ascq");
  if (ua_pending && ua.key != kKeyUnitAttention) r.fail("unit_attention_key is " + std::to_string(ua.key) + ", not 6");
  const uint8_t event = r.u8("media_event");
  if (event > kMaxMediaEvent) r.fail("media_event is " + std::to_string(event));
  r.expect_end();
  if (path.empty() && bytes != 0) r.fail("media_bytes is " + std::to_string(bytes) + " without a medium");

  // The image may have gone or changed since the state was saved: the drive then comes
  // back empty (or with the image as it is now) and the guest sees a media change.
  std::shared_ptr<Medium> medium;
  std::string warning;
  bool changed = false;
  if (!path.empty()) {
    try {
      medium = open_medium(path);
      if (medium->bytes != bytes) {
        changed = true;
        warning = "the DVD image " + path + " is " + std::to_string(medium->bytes) + " bytes now, " +
                  std::to_string(bytes) + " when the state was saved: the guest sees a new disc";
      }
    } catch (const std::exception& e) {
      changed = true;
      warning = std::string("the DVD image of the saved state could not be opened (") + e.what() +
                "): the drive is empty now";
    }
  }
  return [this, medium = std::move(medium), warning, changed, locked, tray_open, ua_pending, ua, event]() mutable {
    std::lock_guard lock(mu_);
    medium_ = std::move(medium);
    locked_ = locked;
    tray_open_ = tray_open;
    unit_attention_.reset();
    if (ua_pending) unit_attention_ = ua;
    media_event_ = static_cast<MediaEvent>(event);
    if (changed) {
      unit_attention_ = medium_ ? sense::kMediumChanged : sense::kMediumRemoved;
      media_event_ = medium_ ? MediaEvent::kNewMedia : MediaEvent::kMediaRemoval;
    }
    last_error_ = warning;
  };
}

}  // namespace berth::devices::scsi
