// The SCSI hard disk target gets CDBs straight from the guest: any bytes, any length, any
// allocation length, on a read-write or a read-only disk, must end in GOOD or CHECK
// CONDITION with sense, data no longer than asked for, and I/O planned inside the disk in
// whole blocks (writes never on a read-only disk); never a crash. Planned I/O is carried
// out on the image (writes with fuzz bytes) or failed, as the input says. A saved-state
// record made of fuzz bytes must load or be refused (STATE_INVALID, STATE_VERSION).
//
// Input: first byte bit 0 read-only, 0xff a scsi-disk state record instead. Then a
// sequence of commands, each a byte `n` then n bytes of CDB (n 0..63); n = 64..127 fail the
// next command's I/O, n >= 128 save and load the state.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/scsi/disk.h"
#include "disk/block_device.h"
#include "virtio_fuzz.h"

using namespace berth::devices::scsi;
namespace disk = berth::disk;

namespace {

constexpr uint64_t kBlocks = 64;

uint64_t allocation(const std::vector<uint8_t>& c) {
  switch (c[0]) {
    case 0x03: case 0x1a: return c[4];
    case 0x12: return be16(&c[3]);
    case 0x5a: return be16(&c[7]);
    case 0x25: return 8;
    case 0x9e: case 0xa0: return be32(c[0] == 0x9e ? &c[10] : &c[6]);
    default: return 0;  // no data-in
  }
}

void check(bool ok) {
  if (!ok) abort();
}

void run(ScsiDisk& d, const std::vector<uint8_t>& cdb, bool fail_io, const uint8_t* fill, size_t fill_size) {
  Command c = d.execute(cdb);
  if (c.io) {
    const IoPlan& p = *c.io;
    check(c.reply.status == kStatusGood);
    check(p.length % 512 == 0 && p.offset % 512 == 0 && p.offset + p.length <= kBlocks * 512);
    check(p.op == disk::AsyncOp::kFlush ? p.length == 0 : p.length > 0);
    check(!d.read_only() || p.op == disk::AsyncOp::kRead);
    int64_t result = static_cast<int64_t>(p.length);
    if (fail_io) {
      result = -5;
    } else if (p.op == disk::AsyncOp::kRead) {
      std::vector<uint8_t> buf(p.length);
      p.medium->disk->read(p.offset, buf);
    } else if (p.op == disk::AsyncOp::kWrite) {
      std::vector<uint8_t> buf(p.length, 0);
      for (size_t i = 0; i < buf.size() && fill_size; ++i) buf[i] = fill[i % fill_size];
      p.medium->disk->write(p.offset, buf);
    } else {
      p.medium->disk->flush();
    }
    Reply r = d.finish_io(p, result, fail_io ? "injected" : "");
    check(r.data.empty());
    check(fail_io ? r.status == kStatusCheckCondition && !d.last_error().empty() : r.status == kStatusGood);
    return;
  }
  const Reply& r = c.reply;
  check(r.status == kStatusGood || r.status == kStatusCheckCondition);
  if (r.status == kStatusCheckCondition) check(r.sense.key != kKeyNoSense && r.data.empty());
  if (!cdb.empty() && cdb_length(cdb[0]) != 0 && cdb.size() >= cdb_length(cdb[0])) check(r.data.size() <= allocation(cdb));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string image = berth::fuzz::temp_image("disk", kBlocks * 512, 0x5a);
  if (size == 0) return 0;
  const bool read_only = (data[0] & 1) != 0;
  disk::OpenOptions o;
  o.read_only = read_only;
  ScsiDisk d(disk::open_disk(image, o), "FUZZ", read_only);
  if (data[0] == 0xff) {
    berth::state::Reader r(std::span(data + 1, size - 1), "fuzz");
    try {
      d.prepare_load(r)();
    } catch (const berth::Error& e) {
      if (e.code() != "STATE_INVALID" && e.code() != "STATE_VERSION") abort();
    }
    return 0;
  }
  size_t at = 1;
  bool fail_next = false;
  while (at < size) {
    const uint8_t n = data[at++];
    if (n < 64) {
      const size_t len = n < size - at ? n : size - at;
      run(d, std::vector<uint8_t>(data + at, data + at + len), fail_next, data + at, len);
      fail_next = false;
      at += len;
    } else if (n < 128) {
      fail_next = true;
    } else {
      berth::state::Writer w;
      d.save_state(w);
      berth::state::Reader r(w.data(), "fuzz");
      d.prepare_load(r)();
    }
  }
  return 0;
}
