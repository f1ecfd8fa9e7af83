// The DVD-ROM target gets CDBs straight from the guest: any bytes, any length, any
// allocation length, in any order with the host's inserts and ejects, must end in GOOD or
// CHECK CONDITION with sense, data no longer than asked for, and reads planned inside the
// medium; never a crash. A saved-state record made of fuzz bytes must load or be refused
// (STATE_INVALID, STATE_VERSION) and nothing else.
//
// Input: a sequence of commands, each a byte `n` then n bytes of CDB (n 0..63). n = 64..79
// are host actions (insert, eject, polite eject, bus reset, save and load). An input whose
// first byte is 0xff is a scsi-cdrom state record instead.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/scsi/cdrom.h"
#include "virtio_fuzz.h"

using namespace berth::devices::scsi;

namespace {

constexpr uint64_t kSectors = 64;

// The allocation length of the commands whose data it bounds (0xffffffff: not checked).
uint64_t allocation(const std::vector<uint8_t>& c) {
  switch (c[0]) {
    case 0x03: case 0x12: case 0x1a: return c[0] == 0x12 ? be16(&c[3]) : c[4];
    case 0x43: case 0x46: case 0x4a: case 0x51: case 0x5a: return be16(&c[7]);
    case 0xbd: return be16(&c[8]);
    case 0xa0: return be32(&c[6]);
    default: return 0xffffffff;
  }
}

void check(bool ok) {
  if (!ok) abort();
}

void run(ScsiCdrom& d, const std::vector<uint8_t>& cdb) {
  Command c = d.execute(cdb);
  if (c.io) {
    check(c.reply.status == kStatusGood && c.io->length > 0 && c.io->length % 2048 == 0);
    check(c.io->offset + c.io->length <= c.io->medium->bytes && c.io->length <= kSectors * 2048);
    std::vector<uint8_t> buf(c.io->length);
    c.io->medium->disk->read(c.io->offset, buf);
    Reply r = d.finish_io(*c.io, static_cast<int64_t>(buf.size()), "");
    check(r.status == kStatusGood && r.data.empty());
    return;
  }
  const Reply& r = c.reply;
  check(r.status == kStatusGood || r.status == kStatusCheckCondition);
  if (r.status == kStatusCheckCondition) check(r.sense.key != kKeyNoSense && r.data.empty());
  if (!cdb.empty() && cdb.size() >= cdb_length(cdb[0]) && cdb_length(cdb[0]) != 0) {
    check(r.data.size() <= allocation(cdb));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string image = berth::fuzz::temp_image("iso", kSectors * 2048, 0x5a);
  if (size == 0) return 0;
  ScsiCdrom d("FUZZ");
  if (data[0] == 0xff) {
    berth::state::Reader r(std::span(data + 1, size - 1), "fuzz");
    try {
      d.prepare_load(r)();
    } catch (const berth::Error& e) {
      if (e.code() != "STATE_INVALID" && e.code() != "STATE_VERSION") abort();
      return 0;
    }
    for (uint8_t op : {0x00, 0x03, 0x25, 0x4a}) run(d, std::vector<uint8_t>{op, 1, 0, 0, 0xff, 0, 0, 0xff, 0xff, 0});
    return 0;
  }
  size_t at = 0;
  while (at < size) {
    const uint8_t n = data[at++];
    if (n < 64) {
      const size_t len = n < size - at ? n : size - at;
      run(d, std::vector<uint8_t>(data + at, data + at + len));
      at += len;
      continue;
    }
    switch (n % 6) {
      case 0: d.insert(image); break;
      case 1: d.eject(); break;
      case 2: d.request_eject(); break;
      case 3: d.bus_reset(); break;
      case 4: {
        berth::state::Writer w;
        d.save_state(w);
        berth::state::Reader r(w.data(), "fuzz");
        d.prepare_load(r)();
        break;
      }
      default: break;
    }
  }
  return 0;
}
