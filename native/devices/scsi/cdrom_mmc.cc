// ScsiCdrom's MMC-6 commands: READ TOC/PMA/ATIP, GET CONFIGURATION, MODE SENSE, GET EVENT
// STATUS NOTIFICATION, READ DISC INFORMATION, MECHANISM STATUS. Called with the lock held.
#include <vector>

#include "devices/scsi/cdrom.h"

namespace berth::devices::scsi {

namespace {

constexpr uint16_t kProfileDvdRom = 0x0010;
constexpr uint16_t kProfileCdRom = 0x0008;
constexpr uint8_t kAdrControlData = 0x14;  // ADR 1 (Q sub-channel position), control 4 (data track)
constexpr uint8_t kLeadOut = 0xaa;
constexpr uint16_t kReadSpeedKbps = 8448;  // 48x CD speed, as the capabilities page reports it

// MMC-6 addresses in MSF form: LBA 0 is 00:02:00 (150 frames of lead-in).
void put_address(uint8_t* p, uint64_t lba, bool msf) {
  if (!msf) {
    put_be32(p, static_cast<uint32_t>(lba));
    return;
  }
  const uint64_t frames = lba + 150;
  p[0] = 0;
  p[1] = static_cast<uint8_t>(frames / (75 * 60) > 255 ? 255 : frames / (75 * 60));
  p[2] = static_cast<uint8_t>(frames / 75 % 60);
  p[3] = static_cast<uint8_t>(frames % 75);
}

struct Feature {
  uint16_t code;
  std::vector<uint8_t> bytes;  // the whole descriptor
  bool current;
};

Feature feature(uint16_t code, uint8_t version, bool persistent, bool current, std::vector<uint8_t> data) {
  std::vector<uint8_t> b(4);
  put_be16(&b[0], code);
  b[2] = static_cast<uint8_t>(version << 2 | (persistent ? 2 : 0) | (current ? 1 : 0));
  b[3] = static_cast<uint8_t>(data.size());
  b.insert(b.end(), data.begin(), data.end());
  return {code, std::move(b), current};
}

}  // namespace

// MMC-6 6.33: format 0 (TOC: track 1 and the lead-out) and 1 (session information) of a
// single-session disc with one data track; the format may also come in byte 9's top bits
// (SFF-8020 style, as Linux's sr_vendor asks for the session).
Reply ScsiCdrom::read_toc(std::span<const uint8_t> cdb) const {
  const bool msf = (cdb[1] & 0x02) != 0;
  uint8_t format = cdb[2] & 0x0f;
  if (format == 0) format = cdb[9] >> 6;
  const uint8_t track = cdb[6];
  const uint16_t allocation = be16(&cdb[7]);
  if (!medium_) return Reply::check(not_ready());
  std::vector<uint8_t> d(4);
  d[2] = 1;  // first track / session
  d[3] = 1;  // last track / session
  auto descriptor = [&](uint8_t number, uint64_t lba) {
    const size_t at = d.size();
    d.resize(at + 8);
    d[at + 1] = kAdrControlData;
    d[at + 2] = number;
    put_address(&d[at + 4], lba, msf);
  };
  switch (format) {
    case 0:
      if (track > 1 && track != kLeadOut) return Reply::check(sense::kInvalidFieldInCdb);
      if (track <= 1) descriptor(1, 0);
      descriptor(kLeadOut, blocks());
      break;
    case 1:
      descriptor(1, 0);  // first track of the last session
      break;
    default:
      return Reply::check(sense::kInvalidFieldInCdb);
  }
  put_be16(&d[0], static_cast<uint16_t>(d.size() - 2));
  return Reply::with_data(std::move(d), allocation);
}

// MMC-6 6.6: the feature header (current profile DVD-ROM with a medium, none without) and
// the features Profile List, Core, Morphing, Removable Medium, Random Readable, DVD Read.
Reply ScsiCdrom::get_configuration(std::span<const uint8_t> cdb) const {
  const uint8_t rt = cdb[1] & 0x03;
  const uint16_t start = be16(&cdb[2]);
  const uint16_t allocation = be16(&cdb[7]);
  if (rt == 3) return Reply::check(sense::kInvalidFieldInCdb);
  const bool media = medium_ != nullptr;

  std::vector<uint8_t> profiles(8, 0);
  put_be16(&profiles[0], kProfileDvdRom);
  profiles[2] = media ? 1 : 0;  // CurrentP
  put_be16(&profiles[4], kProfileCdRom);
  std::vector<uint8_t> random_readable(8, 0);
  put_be32(&random_readable[0], kBlockSize);
  put_be16(&random_readable[4], 16);  // blocking: 16 sectors per ECC block on DVD
  const Feature all[] = {
      feature(0x0000, 0, true, true, profiles),
      feature(0x0001, 2, true, true, {0, 0, 0, 1, 0x01, 0, 0, 0}),  // SCSI interface, DBE
      feature(0x0002, 1, true, true, {0, 0, 0, 0}),                 // polling only, no OCEvent
      feature(0x0003, 0, true, true, {0x29, 0, 0, 0}),              // tray, Eject, Lock
      feature(0x0010, 0, false, media, random_readable),
      feature(0x001f, 0, false, media, {}),
  };
  std::vector<uint8_t> d(8, 0);
  put_be16(&d[6], media ? kProfileDvdRom : 0);
  for (const Feature& f : all) {
    const bool wanted = rt == 2 ? f.code == start : f.code >= start && (rt == 0 || f.current);
    if (wanted) d.insert(d.end(), f.bytes.begin(), f.bytes.end());
  }
  put_be32(&d[0], static_cast<uint32_t>(d.size() - 4));
  return Reply::with_data(std::move(d), allocation);
}

// SPC-4 6.11/6.12 with MMC-6 7's pages: 01h (read error recovery) and 2Ah (capabilities and
// mechanical status), or both for 3Fh; no block descriptors; saved values are not kept.
Reply ScsiCdrom::mode_sense(std::span<const uint8_t> cdb) const {
  const bool ten = cdb[0] == op::kModeSense10;
  const uint8_t pc = cdb[2] >> 6;
  const uint8_t page = cdb[2] & 0x3f;
  const uint8_t subpage = cdb[3];
  const uint16_t allocation = ten ? be16(&cdb[7]) : cdb[4];
  if (pc == 3) return Reply::check(sense::kSavingNotSupported);
  if (subpage != 0 && !(page == 0x3f && subpage == 0xff)) return Reply::check(sense::kInvalidFieldInCdb);
  if (page != 0x01 && page != 0x2a && page != 0x3f) return Reply::check(sense::kInvalidFieldInCdb);
  const bool changeable = pc == 1;  // nothing is: all-zero masks

  std::vector<uint8_t> d(ten ? 8 : 4, 0);
  if (page == 0x01 || page == 0x3f) {
    const size_t at = d.size();
    d.resize(at + 12, 0);
    d[at] = 0x01;
    d[at + 1] = 0x0a;
  }
  if (page == 0x2a || page == 0x3f) {
    const size_t at = d.size();
    d.resize(at + 22, 0);
    d[at] = 0x2a;
    d[at + 1] = 0x14;
    if (!changeable) {
      uint8_t* p = &d[at];
      p[2] = 0x0b;  // reads CD-R, CD-RW, DVD-ROM
      p[4] = 0x70;  // mode 2 form 1 and 2, multi-session
      p[6] = static_cast<uint8_t>(0x20 | 0x08 | 0x01 | (locked_ ? 0x02 : 0));  // tray, eject, lock (+ locked)
      put_be16(&p[8], kReadSpeedKbps);   // maximum read speed (obsolete field guests still read)
      put_be16(&p[12], 512);             // buffer size, KiB
      put_be16(&p[14], kReadSpeedKbps);  // current read speed
    }
  }
  if (ten) {
    put_be16(&d[0], static_cast<uint16_t>(d.size() - 2));
  } else {
    d[0] = static_cast<uint8_t>(d.size() - 1);
  }
  return Reply::with_data(std::move(d), allocation);
}

// MMC-6 6.8: polled only; the media class is the one supported. Reporting an event
// consumes it.
Reply ScsiCdrom::event_status(std::span<const uint8_t> cdb) {
  const bool polled = (cdb[1] & 0x01) != 0;
  const uint8_t requested = cdb[4];
  const uint16_t allocation = be16(&cdb[7]);
  if (!polled) return Reply::check(sense::kInvalidFieldInCdb);
  constexpr uint8_t kMediaClass = 0x10;
  std::vector<uint8_t> d(4, 0);
  d[3] = kMediaClass;  // supported event classes
  if ((requested & kMediaClass) == 0) {
    d[2] = 0x80;  // NEA: none of the requested classes is supported
  } else {
    d[2] = 0x04;  // media class
    d.push_back(static_cast<uint8_t>(media_event_));
    d.push_back(static_cast<uint8_t>((tray_open_ ? 0x01 : 0) | (medium_ ? 0x02 : 0)));
    d.push_back(0);
    d.push_back(0);
    media_event_ = MediaEvent::kNone;
  }
  put_be16(&d[0], static_cast<uint16_t>(d.size() - 2));
  return Reply::with_data(std::move(d), allocation);
}

// MMC-6 6.22: standard disc information of a finalized single-session disc.
Reply ScsiCdrom::disc_information(std::span<const uint8_t> cdb) const {
  if ((cdb[1] & 0x07) != 0) return Reply::check(sense::kInvalidFieldInCdb);  // only data type 0
  if (!medium_) return Reply::check(not_ready());
  std::vector<uint8_t> d(34, 0);
  put_be16(&d[0], static_cast<uint16_t>(d.size() - 2));
  d[2] = 0x0e;  // not erasable, last session complete, disc finalized
  d[3] = 1;     // first track on disc
  d[4] = 1;     // sessions
  d[5] = 1;     // first track in last session
  d[6] = 1;     // last track in last session
  return Reply::with_data(std::move(d), be16(&cdb[7]));
}

// MMC-6 6.10: no changer, idle mechanism, the tray's state.
Reply ScsiCdrom::mechanism_status(std::span<const uint8_t> cdb) const {
  std::vector<uint8_t> d(8, 0);
  d[1] = tray_open_ ? 0x10 : 0;
  return Reply::with_data(std::move(d), be16(&cdb[8]));
}

void ScsiCdrom::post_event(MediaEvent e) {
  // An eject request never hides a media change the guest has not seen.
  if (e == MediaEvent::kEjectRequest && media_event_ != MediaEvent::kNone) return;
  media_event_ = e;
}

}  // namespace berth::devices::scsi
