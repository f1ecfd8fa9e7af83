// SCSI basics shared by every logical unit Berth emulates (SPC-4): status codes, sense
// keys and additional sense codes, fixed-format sense data, and how long a CDB of each
// operation code group is. Nothing here knows about the transport (virtio-scsi).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace berth::devices::scsi {

// Status (SAM-5 5.3).
constexpr uint8_t kStatusGood = 0x00;
constexpr uint8_t kStatusCheckCondition = 0x02;

// Sense keys (SPC-4 4.5.6).
constexpr uint8_t kKeyNoSense = 0x0;
constexpr uint8_t kKeyNotReady = 0x2;
constexpr uint8_t kKeyMediumError = 0x3;
constexpr uint8_t kKeyIllegalRequest = 0x5;
constexpr uint8_t kKeyUnitAttention = 0x6;
constexpr uint8_t kKeyDataProtect = 0x7;

// Operation codes (SPC-4, SBC-3, MMC-6).
namespace op {
constexpr uint8_t kTestUnitReady = 0x00;
constexpr uint8_t kRequestSense = 0x03;
constexpr uint8_t kRead6 = 0x08;
constexpr uint8_t kWrite6 = 0x0a;
constexpr uint8_t kInquiry = 0x12;
constexpr uint8_t kModeSense6 = 0x1a;
constexpr uint8_t kStartStopUnit = 0x1b;
constexpr uint8_t kPreventAllowMediumRemoval = 0x1e;
constexpr uint8_t kReadCapacity10 = 0x25;
constexpr uint8_t kRead10 = 0x28;
constexpr uint8_t kWrite10 = 0x2a;
constexpr uint8_t kWriteAndVerify10 = 0x2e;
constexpr uint8_t kVerify10 = 0x2f;
constexpr uint8_t kSynchronizeCache10 = 0x35;
constexpr uint8_t kReadToc = 0x43;
constexpr uint8_t kGetConfiguration = 0x46;
constexpr uint8_t kGetEventStatusNotification = 0x4a;
constexpr uint8_t kReadDiscInformation = 0x51;
constexpr uint8_t kModeSense10 = 0x5a;
constexpr uint8_t kRead16 = 0x88;
constexpr uint8_t kWrite16 = 0x8a;
constexpr uint8_t kWriteAndVerify16 = 0x8e;
constexpr uint8_t kVerify16 = 0x8f;
constexpr uint8_t kSynchronizeCache16 = 0x91;
constexpr uint8_t kServiceActionIn16 = 0x9e;  // service action 10h: READ CAPACITY (16)
constexpr uint8_t kReportLuns = 0xa0;
constexpr uint8_t kRead12 = 0xa8;
constexpr uint8_t kWrite12 = 0xaa;
constexpr uint8_t kWriteAndVerify12 = 0xae;
constexpr uint8_t kVerify12 = 0xaf;
constexpr uint8_t kMechanismStatus = 0xbd;
constexpr uint8_t kSaReadCapacity16 = 0x10;
}  // namespace op

// Sense key + additional sense code + qualifier.
struct Sense {
  uint8_t key = kKeyNoSense;
  uint8_t asc = 0;
  uint8_t ascq = 0;
  bool operator==(const Sense&) const = default;
};

namespace sense {
constexpr Sense kNone{};
constexpr Sense kInvalidOpcode{kKeyIllegalRequest, 0x20, 0x00};
constexpr Sense kLbaOutOfRange{kKeyIllegalRequest, 0x21, 0x00};
constexpr Sense kInvalidFieldInCdb{kKeyIllegalRequest, 0x24, 0x00};
constexpr Sense kLunNotSupported{kKeyIllegalRequest, 0x25, 0x00};
constexpr Sense kSavingNotSupported{kKeyIllegalRequest, 0x39, 0x00};
constexpr Sense kRemovalPrevented{kKeyIllegalRequest, 0x53, 0x02};
constexpr Sense kNoMedium{kKeyNotReady, 0x3a, 0x00};
constexpr Sense kNoMediumTrayOpen{kKeyNotReady, 0x3a, 0x02};
constexpr Sense kUnrecoveredRead{kKeyMediumError, 0x11, 0x00};
constexpr Sense kWriteError{kKeyMediumError, 0x0c, 0x00};
constexpr Sense kWriteProtected{kKeyDataProtect, 0x27, 0x00};
constexpr Sense kSpaceAllocationFailed{kKeyDataProtect, 0x27, 0x07};  // the host ran out of space
constexpr Sense kMediumChanged{kKeyUnitAttention, 0x28, 0x00};    // NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED
constexpr Sense kMediumRemoved{kKeyUnitAttention, 0x3a, 0x00};    // the medium went away
constexpr Sense kResetOccurred{kKeyUnitAttention, 0x29, 0x00};    // POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
}  // namespace sense

// Fixed-format sense data (SPC-4 4.5.3): response code 70h, additional length 10.
constexpr size_t kFixedSenseBytes = 18;
void write_fixed_sense(const Sense& s, std::span<uint8_t, kFixedSenseBytes> out);

// The length of a CDB with this operation code (SPC-4 4.2.5.1 groups), 0 for the reserved
// and vendor-specific groups.
size_t cdb_length(uint8_t opcode);

// What a command produced: status, sense (for CHECK CONDITION) and data-in already cut to
// the CDB's allocation length.
struct Reply {
  uint8_t status = kStatusGood;
  Sense sense;
  std::vector<uint8_t> data;

  static Reply good() { return {}; }
  static Reply check(const Sense& s) { return {kStatusCheckCondition, s, {}}; }
  // GOOD with the first min(size, allocation) bytes of `bytes`.
  static Reply with_data(std::vector<uint8_t> bytes, size_t allocation);
};

// Big-endian fields of CDBs and parameter data.
inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline uint64_t be64(const uint8_t* p) { return static_cast<uint64_t>(be32(p)) << 32 | be32(p + 4); }
inline void put_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put_be32(uint8_t* p, uint32_t v) {
  put_be16(p, static_cast<uint16_t>(v >> 16));
  put_be16(p + 2, static_cast<uint16_t>(v));
}
inline void put_be64(uint8_t* p, uint64_t v) {
  put_be32(p, static_cast<uint32_t>(v >> 32));
  put_be32(p + 4, static_cast<uint32_t>(v));
}

// Answers for a LUN that does not exist behind an existing target (SPC-4 6.6.1, 4.5.2):
// INQUIRY says "no device here" (qualifier 3, type 1Fh), REPORT LUNS is answered by the
// caller for LUN 0, REQUEST SENSE reports LOGICAL UNIT NOT SUPPORTED as data, and every
// other command ends in CHECK CONDITION with that sense.
Reply missing_lun_reply(std::span<const uint8_t> cdb);

// REPORT LUNS for a target with LUN 0 only (SPC-4 6.33).
Reply report_luns_lun0(std::span<const uint8_t> cdb);

}  // namespace berth::devices::scsi
