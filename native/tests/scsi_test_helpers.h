// Helpers for the SCSI target tests: a small ISO-like image (2048-byte sectors with a
// known pattern) and a synchronous runner that carries out a target's planned reads.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "devices/scsi/cdrom.h"

namespace berth::test {

inline uint8_t iso_byte(uint64_t sector, uint64_t i) { return static_cast<uint8_t>(sector * 7 + i * 3 + 1); }

inline void write_iso(const std::string& path, uint64_t sectors, uint64_t extra_bytes = 0) {
  std::vector<char> bytes(sectors * 2048 + extra_bytes);
  for (uint64_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(iso_byte(i / 2048, i % 2048));
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

struct ScsiResult {
  uint8_t status = 0;
  devices::scsi::Sense sense;
  std::vector<uint8_t> data;
  bool ok() const { return status == devices::scsi::kStatusGood; }
};

// Runs one command; a planned read is done synchronously through the medium's disk.
inline ScsiResult run_cdb(devices::scsi::Target& t, std::vector<uint8_t> cdb) {
  devices::scsi::Command c = t.execute(cdb);
  if (!c.io) return {c.reply.status, c.reply.sense, c.reply.data};
  std::vector<uint8_t> buf(c.io->length);
  int64_t result = static_cast<int64_t>(buf.size());
  std::string error;
  try {
    c.io->medium->disk->read(c.io->offset, buf);
  } catch (const std::exception& e) {
    result = -5;
    error = e.what();
  }
  devices::scsi::Reply r = t.finish_io(*c.io, result, error);
  if (r.status != devices::scsi::kStatusGood) buf.clear();
  return {r.status, r.sense, buf};
}

inline bool sense_is(const ScsiResult& r, uint8_t key, uint8_t asc, uint8_t ascq) {
  return r.status == devices::scsi::kStatusCheckCondition && r.sense.key == key && r.sense.asc == asc &&
         r.sense.ascq == ascq;
}

inline std::vector<uint8_t> read10(uint32_t lba, uint16_t count) {
  return {0x28, 0, static_cast<uint8_t>(lba >> 24), static_cast<uint8_t>(lba >> 16), static_cast<uint8_t>(lba >> 8),
          static_cast<uint8_t>(lba), 0, static_cast<uint8_t>(count >> 8), static_cast<uint8_t>(count), 0};
}

}  // namespace berth::test
