// ScsiDisk's descriptive data: INQUIRY and its vital product data pages, READ CAPACITY,
// MODE SENSE (SPC-4 6.4, 7.8; SBC-3 5.16, 5.17, 6.4, 6.5).
#include <algorithm>
#include <cstring>

#include "devices/scsi/disk.h"

namespace berth::devices::scsi {

namespace {

constexpr char kVendor[] = "BERTH   ";          // 8 bytes, T10 vendor identification
constexpr char kProduct[] = "Virtual Disk    ";  // 16 bytes
constexpr char kRevision[] = "1.0 ";             // 4 bytes
constexpr uint8_t kTypeDisk = 0x00;
constexpr uint8_t kPageCaching = 0x08;
constexpr uint8_t kPageControl = 0x0a;
constexpr uint8_t kPageAll = 0x3f;
constexpr uint8_t kSubpageAll = 0xff;
constexpr uint8_t kPageControlChangeable = 1;
constexpr uint8_t kPageControlSaved = 3;

void put_text(std::vector<uint8_t>& d, size_t at, const char* text, size_t n) { std::memcpy(&d[at], text, n); }

// A mode page as reported for page control `pc`: values, or (changeable) a mask of zeroes,
// since nothing can be changed with MODE SELECT.
void append_page(std::vector<uint8_t>& d, uint8_t page, uint8_t pc) {
  std::vector<uint8_t> p;
  if (page == kPageCaching) {
    p.assign(20, 0);
    p[2] = 0x04;  // WCE: writes may sit in the host's cache until SYNCHRONIZE CACHE
  } else {
    p.assign(12, 0);  // control: all defaults (no descriptor sense, no D_SENSE, queue algorithm 0)
  }
  if (pc == kPageControlChangeable) std::fill(p.begin(), p.end(), 0);
  p[0] = page;
  p[1] = static_cast<uint8_t>(p.size() - 2);
  d.insert(d.end(), p.begin(), p.end());
}

}  // namespace

// Standard data (36 bytes) or a vital product data page.
Reply ScsiDisk::inquiry(std::span<const uint8_t> cdb) const {
  const bool evpd = (cdb[1] & 0x01) != 0;
  const uint8_t page = cdb[2];
  const uint16_t allocation = be16(&cdb[3]);
  if ((cdb[1] & 0x02) != 0 || (!evpd && page != 0)) return Reply::check(sense::kInvalidFieldInCdb);  // CMDDT is obsolete
  if (evpd) return vpd_page(page, allocation);
  std::vector<uint8_t> d(36, 0);
  d[0] = kTypeDisk;
  d[2] = 0x05;  // SPC-3
  d[3] = 0x02;  // response data format 2
  d[4] = static_cast<uint8_t>(d.size() - 5);
  d[7] = 0x02;  // CMDQUE: commands may be queued
  put_text(d, 8, kVendor, 8);
  put_text(d, 16, kProduct, 16);
  put_text(d, 32, kRevision, 4);
  return Reply::with_data(std::move(d), allocation);
}

// Pages 00h (supported), 80h (unit serial number), 83h (device identification), B0h
// (block limits), B1h (block device characteristics), B2h (logical block provisioning).
Reply ScsiDisk::vpd_page(uint8_t page, uint16_t allocation) const {
  std::vector<uint8_t> d = {kTypeDisk, page, 0, 0};
  switch (page) {
    case 0x00:
      d.insert(d.end(), {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2});  // ascending
      break;
    case 0x80:
      d.insert(d.end(), serial_.begin(), serial_.end());
      break;
    case 0x83: {  // one T10 vendor ID based designator for the logical unit
      std::vector<uint8_t> id(kVendor, kVendor + 8);
      id.insert(id.end(), serial_.begin(), serial_.end());
      d.insert(d.end(), {0x02, 0x01, 0x00, static_cast<uint8_t>(id.size())});  // ASCII, LU, type 1
      d.insert(d.end(), id.begin(), id.end());
      break;
    }
    case 0xb0: {
      d.resize(64, 0);
      put_be16(&d[6], 1);                                                      // optimal transfer granularity
      put_be32(&d[8], static_cast<uint32_t>(kMaxTransferBytes / block_size_));  // maximum transfer length
      // Optimal transfer length, prefetch, UNMAP and WRITE SAME limits: 0 (not reported,
      // no UNMAP, no WRITE SAME).
      break;
    }
    case 0xb1:
      d.resize(64, 0);  // rotation rate and form factor not reported: the host's storage is unknown
      break;
    case 0xb2:
      d.resize(8, 0);  // no LBPU, LBPWS, LBPWS10; provisioning type 0 (fully provisioned)
      break;
    default:
      return Reply::check(sense::kInvalidFieldInCdb);
  }
  put_be16(&d[2], static_cast<uint16_t>(d.size() - 4));
  return Reply::with_data(std::move(d), allocation);
}

// The last LBA (FFFFFFFFh when it does not fit: the guest then asks READ CAPACITY(16)) and
// the block length. PMI set with an LBA is obsolete in SBC-3 and answered the same way;
// an LBA without PMI is an error.
Reply ScsiDisk::read_capacity10(std::span<const uint8_t> cdb) const {
  if ((cdb[8] & 0x01) == 0 && be32(&cdb[2]) != 0) return Reply::check(sense::kInvalidFieldInCdb);
  std::vector<uint8_t> d(8);
  const uint64_t last = blocks_ - 1;
  put_be32(&d[0], last > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(last));
  put_be32(&d[4], block_size_);
  return Reply::with_data(std::move(d), d.size());
}

Reply ScsiDisk::read_capacity16(std::span<const uint8_t> cdb) const {
  if ((cdb[14] & 0x01) == 0 && be64(&cdb[2]) != 0) return Reply::check(sense::kInvalidFieldInCdb);
  std::vector<uint8_t> d(32, 0);
  put_be64(&d[0], blocks_ - 1);
  put_be32(&d[8], block_size_);
  // Byte 12: no protection; 13: one logical block per physical block, 14-15: LBPME 0,
  // lowest aligned LBA 0.
  return Reply::with_data(std::move(d), be32(&cdb[10]));
}

// MODE SENSE(6) and (10): header (write protect in the device-specific parameter), a
// block descriptor unless DBD, then the caching page, the control page, or both (3Fh).
Reply ScsiDisk::mode_sense(std::span<const uint8_t> cdb) const {
  const bool ten = cdb[0] == op::kModeSense10;
  const bool dbd = (cdb[1] & 0x08) != 0;
  const bool long_lba = ten && (cdb[1] & 0x10) != 0;
  const uint8_t pc = cdb[2] >> 6;
  const uint8_t page = cdb[2] & 0x3f;
  const uint8_t subpage = cdb[3];
  const size_t allocation = ten ? be16(&cdb[7]) : cdb[4];
  if (pc == kPageControlSaved) return Reply::check(sense::kSavingNotSupported);
  if (subpage != 0 && !(page == kPageAll && subpage == kSubpageAll)) return Reply::check(sense::kInvalidFieldInCdb);
  if (page != kPageCaching && page != kPageControl && page != kPageAll) return Reply::check(sense::kInvalidFieldInCdb);

  const size_t header = ten ? 8 : 4;
  std::vector<uint8_t> d(header, 0);
  const uint8_t device_specific = read_only_ ? 0x80 : 0x00;  // WP; DPOFUA 0
  d[ten ? 3 : 2] = device_specific;
  if (!dbd) {
    if (long_lba) {  // long LBA block descriptor: 8-byte block count
      d.resize(header + 16, 0);
      put_be64(&d[header], blocks_);
      put_be32(&d[header + 12], block_size_);
      d[4] = 0x01;  // LONGLBA
    } else {  // short: 4-byte block count (FFFFFFFFh when larger), 3-byte block length
      d.resize(header + 8, 0);
      put_be32(&d[header], blocks_ > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(blocks_));
      d[header + 5] = static_cast<uint8_t>(block_size_ >> 16);
      put_be16(&d[header + 6], static_cast<uint16_t>(block_size_));
    }
  }
  const size_t descriptors = d.size() - header;
  if (page == kPageCaching || page == kPageAll) append_page(d, kPageCaching, pc);
  if (page == kPageControl || page == kPageAll) append_page(d, kPageControl, pc);
  if (ten) {
    put_be16(&d[0], static_cast<uint16_t>(d.size() - 2));
    put_be16(&d[6], static_cast<uint16_t>(descriptors));
  } else {
    d[0] = static_cast<uint8_t>(d.size() - 1);
    d[3] = static_cast<uint8_t>(descriptors);
  }
  return Reply::with_data(std::move(d), allocation);
}

}  // namespace berth::devices::scsi
