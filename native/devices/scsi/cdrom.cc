// ScsiCdrom's command dispatch and the SPC/SBC-style commands; MMC's own are in
// cdrom_mmc.cc, media and saved state in cdrom_media.cc.
#include "devices/scsi/cdrom.h"

#include <algorithm>
#include <cstring>

namespace berth::devices::scsi {

namespace {

constexpr char kVendor[] = "BERTH   ";          // 8 bytes, T10 vendor identification
constexpr char kProduct[] = "Virtual DVD-ROM ";  // 16 bytes
constexpr char kRevision[] = "1.0 ";             // 4 bytes
constexpr uint8_t kTypeCdrom = 0x05;
constexpr size_t kMaxSerial = 20;

// Commands a pending unit attention does not stop (SPC-4 5.14, MMC-6 4.1.6.1 for the last two).
bool ignores_unit_attention(uint8_t opcode) {
  return opcode == op::kInquiry || opcode == op::kRequestSense || opcode == op::kReportLuns ||
         opcode == op::kGetConfiguration || opcode == op::kGetEventStatusNotification;
}

bool known(uint8_t opcode) {
  switch (opcode) {
    case op::kTestUnitReady: case op::kRequestSense: case op::kInquiry: case op::kModeSense6:
    case op::kStartStopUnit: case op::kPreventAllowMediumRemoval: case op::kReadCapacity10:
    case op::kRead10: case op::kReadToc: case op::kGetConfiguration:
    case op::kGetEventStatusNotification: case op::kReadDiscInformation: case op::kModeSense10:
    case op::kRead16: case op::kReportLuns: case op::kRead12: case op::kMechanismStatus:
      return true;
    default:
      return false;
  }
}

void put_text(std::vector<uint8_t>& d, size_t at, const char* text, size_t n) { std::memcpy(&d[at], text, n); }

}  // namespace

ScsiCdrom::ScsiCdrom(std::string serial) : serial_(serial.substr(0, kMaxSerial)) {}

Command ScsiCdrom::execute(std::span<const uint8_t> cdb) {
  bool guest_ejected = false;
  Command c;
  std::shared_ptr<Medium> released;
  {
    std::lock_guard lock(mu_);
    if (cdb.empty() || !known(cdb[0])) return {Reply::check(sense::kInvalidOpcode), {}};
    const size_t length = cdb_length(cdb[0]);
    // A CDB cut short by the transport, or one asking for NACA (SAM-5 5.9; not supported).
    if (cdb.size() < length || (cdb[length - 1] & 0x04) != 0) return {Reply::check(sense::kInvalidFieldInCdb), {}};
    cdb = cdb.first(length);
    if (unit_attention_ && !ignores_unit_attention(cdb[0])) {
      Sense ua = *unit_attention_;
      unit_attention_.reset();
      return {Reply::check(ua), {}};
    }
    std::shared_ptr<Medium> before = medium_;
    c = dispatch(cdb, guest_ejected);
    if (guest_ejected) released = std::move(before);
  }
  // Outside the lock: the handler may take locks of its own, and the medium's last
  // reference may close its asynchronous path.
  released.reset();
  if (guest_ejected && on_guest_eject_) on_guest_eject_();
  return c;
}

Command ScsiCdrom::dispatch(std::span<const uint8_t> cdb, bool& guest_ejected) {
  switch (cdb[0]) {
    case op::kTestUnitReady:
      return {medium_ ? Reply::good() : Reply::check(not_ready()), {}};
    case op::kRequestSense: return {request_sense(cdb), {}};
    case op::kInquiry: return {inquiry(cdb), {}};
    case op::kReportLuns: return {report_luns_lun0(cdb), {}};
    case op::kReadCapacity10: return {read_capacity(), {}};
    case op::kRead10:
    case op::kRead12:
    case op::kRead16: return read(cdb);
    case op::kPreventAllowMediumRemoval:
      locked_ = (cdb[4] & 0x01) != 0;  // PREVENT field bit 0; bit 1 (persistent) is not kept apart
      return {Reply::good(), {}};
    case op::kStartStopUnit: return {start_stop(cdb, guest_ejected), {}};
    case op::kReadToc: return {read_toc(cdb), {}};
    case op::kGetConfiguration: return {get_configuration(cdb), {}};
    case op::kModeSense6:
    case op::kModeSense10: return {mode_sense(cdb), {}};
    case op::kGetEventStatusNotification: return {event_status(cdb), {}};
    case op::kReadDiscInformation: return {disc_information(cdb), {}};
    case op::kMechanismStatus: return {mechanism_status(cdb), {}};
    default: return {Reply::check(sense::kInvalidOpcode), {}};
  }
}

// SPC-4 6.4: standard data (36 bytes) or the vital product data pages 00h, 80h, 83h.
Reply ScsiCdrom::inquiry(std::span<const uint8_t> cdb) const {
  const bool evpd = (cdb[1] & 0x01) != 0;
  const uint8_t page = cdb[2];
  const uint16_t allocation = be16(&cdb[3]);
  if ((cdb[1] & 0x02) != 0 || (!evpd && page != 0)) return Reply::check(sense::kInvalidFieldInCdb);  // CMDDT is obsolete
  std::vector<uint8_t> d;
  if (!evpd) {
    d.assign(36, 0);
    d[0] = kTypeCdrom;
    d[1] = 0x80;  // RMB: removable medium
    d[2] = 0x05;  // SPC-3
    d[3] = 0x02;  // response data format 2
    d[4] = static_cast<uint8_t>(d.size() - 5);
    put_text(d, 8, kVendor, 8);
    put_text(d, 16, kProduct, 16);
    put_text(d, 32, kRevision, 4);
    return Reply::with_data(std::move(d), allocation);
  }
  d = {kTypeCdrom, page, 0, 0};
  switch (page) {
    case 0x00:  // supported pages, ascending
      d.insert(d.end(), {0x00, 0x80, 0x83});
      break;
    case 0x80:  // unit serial number
      d.insert(d.end(), serial_.begin(), serial_.end());
      break;
    case 0x83: {  // device identification: one T10 vendor ID based designator for the LU
      std::vector<uint8_t> id(kVendor, kVendor + 8);
      id.insert(id.end(), serial_.begin(), serial_.end());
      d.insert(d.end(), {0x02, 0x01, 0x00, static_cast<uint8_t>(id.size())});  // ASCII, LU, type 1
      d.insert(d.end(), id.begin(), id.end());
      break;
    }
    default:
      return Reply::check(sense::kInvalidFieldInCdb);
  }
  put_be16(&d[2], static_cast<uint16_t>(d.size() - 4));
  return Reply::with_data(std::move(d), allocation);
}

// SPC-4 6.39: fixed format whatever DESC asks (allowed when descriptor format is not
// supported). Reports, in order: a pending unit attention (clearing it), no medium, nothing.
Reply ScsiCdrom::request_sense(std::span<const uint8_t> cdb) {
  Sense s = sense::kNone;
  if (unit_attention_) {
    s = *unit_attention_;
    unit_attention_.reset();
  } else if (!medium_) {
    s = not_ready();
  }
  std::vector<uint8_t> d(kFixedSenseBytes);
  write_fixed_sense(s, std::span<uint8_t, kFixedSenseBytes>(d.data(), kFixedSenseBytes));
  return Reply::with_data(std::move(d), cdb[4]);
}

// SBC-3 5.16 as MMC-6 6.23 uses it: the last LBA and the 2048-byte block length.
Reply ScsiCdrom::read_capacity() const {
  if (!medium_) return Reply::check(not_ready());
  std::vector<uint8_t> d(8);
  const uint64_t last = blocks() - 1;  // a medium has at least one block (insert checks)
  put_be32(&d[0], last > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(last));
  put_be32(&d[4], kBlockSize);
  return Reply::with_data(std::move(d), d.size());
}

Command ScsiCdrom::read(std::span<const uint8_t> cdb) const {
  uint64_t lba = 0, count = 0;
  switch (cdb[0]) {
    case op::kRead10: lba = be32(&cdb[2]); count = be16(&cdb[7]); break;
    case op::kRead12: lba = be32(&cdb[2]); count = be32(&cdb[6]); break;
    default: lba = be64(&cdb[2]); count = be32(&cdb[10]); break;
  }
  if (!medium_) return {Reply::check(not_ready()), {}};
  const uint64_t total = blocks();
  if (lba > total || count > total - lba) return {Reply::check(sense::kLbaOutOfRange), {}};
  if (count == 0) return {Reply::good(), {}};
  return {Reply::good(), IoPlan{medium_, disk::AsyncOp::kRead, lba * kBlockSize, count * kBlockSize}};
}

// SBC-3 5.25 / MMC-6 6.39: LoEj with Start clear ejects (refused while the guest holds the
// tray locked), with Start set loads (closes the tray). A power condition ignores LoEj.
Reply ScsiCdrom::start_stop(std::span<const uint8_t> cdb, bool& guest_ejected) {
  const bool load_eject = (cdb[4] & 0x02) != 0;
  const bool start = (cdb[4] & 0x01) != 0;
  if ((cdb[4] >> 4) != 0 || !load_eject) return Reply::good();
  if (start) {
    tray_open_ = false;
    return Reply::good();
  }
  if (locked_) return Reply::check(sense::kRemovalPrevented);
  guest_ejected = medium_ != nullptr;
  medium_.reset();  // the caller holds a reference until the lock is dropped
  tray_open_ = true;
  return Reply::good();
}

Reply ScsiCdrom::finish_io(const IoPlan& plan, int64_t result, const std::string& error) {
  // The disk layer reads past a file's end as zeroes: a file cut short since the read
  // started shows only in its size.
  uint64_t file_size = 0;
  std::string size_error;
  if (result == static_cast<int64_t>(plan.length)) {
    try {
      file_size = plan.medium->disk->info().file_size;
    } catch (const std::exception& e) {
      size_error = e.what();
    }
  }
  std::lock_guard lock(mu_);
  if (plan.medium != medium_) {
    // Changed while the read was on the disk: what was read belongs to another medium.
    if (unit_attention_) {
      Sense ua = *unit_attention_;
      unit_attention_.reset();
      return Reply::check(ua);
    }
    return Reply::check(medium_ ? sense::kMediumChanged : not_ready());
  }
  const std::string& path = plan.medium->path;
  if (result != static_cast<int64_t>(plan.length)) {
    last_error_ = result < 0 ? "reading the DVD image failed: " + error
                             : "reading the DVD image " + path + " returned " + std::to_string(result) + " of " +
                                   std::to_string(plan.length) + " bytes";
    return Reply::check(sense::kUnrecoveredRead);
  }
  if (!size_error.empty() || file_size < plan.offset + plan.length) {
    last_error_ = !size_error.empty()
                      ? "checking the DVD image " + path + " failed: " + size_error
                      : "the DVD image " + path + " was cut to " + std::to_string(file_size) +
                            " bytes while in the drive (it was " + std::to_string(plan.medium->bytes) +
                            "); the guest's reads past that fail. Eject it and insert the complete image";
    return Reply::check(sense::kUnrecoveredRead);
  }
  return Reply::good();
}

void ScsiCdrom::bus_reset() {
  std::lock_guard lock(mu_);
  locked_ = false;
}

}  // namespace berth::devices::scsi
