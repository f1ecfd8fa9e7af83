#include "devices/scsi/scsi.h"

#include <algorithm>

namespace berth::devices::scsi {

void write_fixed_sense(const Sense& s, std::span<uint8_t, kFixedSenseBytes> out) {
  std::fill(out.begin(), out.end(), 0);
  out[0] = 0x70;  // current error, fixed format, INFORMATION not valid
  out[2] = s.key & 0x0f;
  out[7] = kFixedSenseBytes - 8;  // additional sense length
  out[12] = s.asc;
  out[13] = s.ascq;
}

size_t cdb_length(uint8_t opcode) {
  switch (opcode >> 5) {
    case 0: return 6;
    case 1:
    case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;  // 3: reserved (variable length); 6, 7: vendor specific
  }
}

Reply Reply::with_data(std::vector<uint8_t> bytes, size_t allocation) {
  if (bytes.size() > allocation) bytes.resize(allocation);
  Reply r;
  r.data = std::move(bytes);
  return r;
}

Reply missing_lun_reply(std::span<const uint8_t> cdb) {
  const uint8_t opcode = cdb.empty() ? 0xff : cdb[0];
  if (cdb.size() < cdb_length(opcode) || cdb_length(opcode) == 0) return Reply::check(sense::kLunNotSupported);
  switch (opcode) {
    case op::kInquiry: {
      if ((cdb[1] & 0x03) != 0 || cdb[2] != 0) return Reply::check(sense::kInvalidFieldInCdb);
      std::vector<uint8_t> d(36, 0);
      d[0] = 0x7f;  // peripheral qualifier 3: not capable of a device here; type 1Fh
      d[2] = 0x05;
      d[3] = 0x02;
      d[4] = static_cast<uint8_t>(d.size() - 5);
      return Reply::with_data(std::move(d), be16(&cdb[3]));
    }
    case op::kReportLuns:
      return report_luns_lun0(cdb);
    case op::kRequestSense: {
      std::vector<uint8_t> d(kFixedSenseBytes);
      write_fixed_sense(sense::kLunNotSupported, std::span<uint8_t, kFixedSenseBytes>(d.data(), kFixedSenseBytes));
      return Reply::with_data(std::move(d), cdb[4]);
    }
    default:
      return Reply::check(sense::kLunNotSupported);
  }
}

Reply report_luns_lun0(std::span<const uint8_t> cdb) {
  if (cdb.size() < 12) return Reply::check(sense::kInvalidFieldInCdb);
  const uint8_t select = cdb[2];
  const uint32_t allocation = be32(&cdb[6]);
  // SPC-4 6.33: an allocation length under 16 is an error; select report 0, 1 and 2 all
  // include LUN 0 here (no well-known LUNs), others are reserved.
  if (allocation < 16 || select > 2) return Reply::check(sense::kInvalidFieldInCdb);
  std::vector<uint8_t> d(16, 0);
  put_be32(&d[0], 8);  // one LUN, 8 bytes; LUN 0 is all zeroes
  return Reply::with_data(std::move(d), allocation);
}

}  // namespace berth::devices::scsi
