// ScsiDisk's command dispatch, the data transfers and their completion, saved state; the
// INQUIRY, MODE SENSE and READ CAPACITY data are in disk_pages.cc.
#include "devices/scsi/disk.h"

#include <cerrno>

#include "common/error.h"

namespace berth::devices::scsi {

namespace {

std::shared_ptr<Medium> open_medium(std::unique_ptr<disk::BlockDevice> disk) {
  if (!disk) throw Error("VIRTIO_SETUP", "a SCSI disk needs a disk image");
  const uint32_t block = disk->logical_block_size();
  if (block < 512 || (block & (block - 1)) != 0 || disk->capacity() < block) {
    throw Error("DISK_SIZE", disk->info().path + " is " + std::to_string(disk->capacity()) +
                                 " bytes: a SCSI disk needs at least one " + std::to_string(block) +
                                 "-byte block; resize the image");
  }
  auto m = std::make_shared<Medium>();
  m->path = disk->info().path;
  m->bytes = disk->capacity();
  m->aio = disk->open_async(kMediumDepth);
  m->disk = std::move(disk);
  return m;
}

bool is_write(uint8_t opcode) {
  switch (opcode) {
    case op::kWrite6: case op::kWrite10: case op::kWrite12: case op::kWrite16:
    case op::kWriteAndVerify10: case op::kWriteAndVerify12: case op::kWriteAndVerify16:
      return true;
    default:
      return false;
  }
}

}  // namespace

ScsiDisk::ScsiDisk(std::unique_ptr<disk::BlockDevice> disk, std::string serial, bool read_only)
    : ScsiDisk(open_medium(std::move(disk)), std::move(serial), read_only) {}

ScsiDisk::ScsiDisk(std::shared_ptr<Medium> medium, std::string serial, bool read_only)
    : serial_(serial.substr(0, kMaxSerial)),
      read_only_(read_only || medium->disk->read_only()),
      block_size_(medium->disk->logical_block_size()),
      blocks_(medium->bytes / block_size_),
      medium_(std::move(medium)) {}

Command ScsiDisk::execute(std::span<const uint8_t> cdb) {
  std::lock_guard lock(mu_);
  if (!medium_) return {Reply::check(sense::kNoMedium), {}};
  return dispatch(cdb);
}

Command ScsiDisk::dispatch(std::span<const uint8_t> cdb) const {
  if (cdb.empty()) return {Reply::check(sense::kInvalidOpcode), {}};
  const size_t length = cdb_length(cdb[0]);
  if (length == 0) return {Reply::check(sense::kInvalidOpcode), {}};
  // A CDB cut short by the transport, or one asking for NACA (SAM-5 5.9; not supported).
  if (cdb.size() < length || (cdb[length - 1] & 0x04) != 0) return {Reply::check(sense::kInvalidFieldInCdb), {}};
  cdb = cdb.first(length);
  switch (cdb[0]) {
    case op::kTestUnitReady:
    case op::kStartStopUnit:               // no spindle: start and stop change nothing
    case op::kPreventAllowMediumRemoval:   // nothing to remove
      return {Reply::good(), {}};
    case op::kRequestSense: {
      // Every error is reported with its command (autosense): nothing is left pending.
      std::vector<uint8_t> d(kFixedSenseBytes);
      write_fixed_sense(sense::kNone, std::span<uint8_t, kFixedSenseBytes>(d.data(), kFixedSenseBytes));
      return {Reply::with_data(std::move(d), cdb[4]), {}};
    }
    case op::kInquiry: return {inquiry(cdb), {}};
    case op::kReportLuns: return {report_luns_lun0(cdb), {}};
    case op::kReadCapacity10: return {read_capacity10(cdb), {}};
    case op::kServiceActionIn16:
      if ((cdb[1] & 0x1f) != op::kSaReadCapacity16) return {Reply::check(sense::kInvalidFieldInCdb), {}};
      return {read_capacity16(cdb), {}};
    case op::kModeSense6:
    case op::kModeSense10: return {mode_sense(cdb), {}};
    case op::kRead6: case op::kRead10: case op::kRead12: case op::kRead16:
    case op::kWrite6: case op::kWrite10: case op::kWrite12: case op::kWrite16:
    case op::kWriteAndVerify10: case op::kWriteAndVerify12: case op::kWriteAndVerify16:
      return transfer(cdb);
    case op::kVerify10: case op::kVerify12: case op::kVerify16: return {verify(cdb), {}};
    case op::kSynchronizeCache10:
    case op::kSynchronizeCache16: return synchronize_cache(cdb);
    default: return {Reply::check(sense::kInvalidOpcode), {}};
  }
}

// READ and WRITE (6/10/12/16), WRITE AND VERIFY (10/12/16; the verify is the write's
// success): SBC-3 5.7-5.16, 5.30-5.36.
Command ScsiDisk::transfer(std::span<const uint8_t> cdb) const {
  const uint8_t opcode = cdb[0];
  uint64_t lba = 0, count = 0;
  switch (opcode) {
    case op::kRead6:
    case op::kWrite6:
      lba = static_cast<uint64_t>(cdb[1] & 0x1f) << 16 | be16(&cdb[2]);
      count = cdb[4] == 0 ? 256 : cdb[4];  // 0 means 256 blocks for the 6-byte commands
      break;
    case op::kRead10: case op::kWrite10: case op::kWriteAndVerify10:
      lba = be32(&cdb[2]);
      count = be16(&cdb[7]);
      break;
    case op::kRead12: case op::kWrite12: case op::kWriteAndVerify12:
      lba = be32(&cdb[2]);
      count = be32(&cdb[6]);
      break;
    default:  // the 16-byte commands
      lba = be64(&cdb[2]);
      count = be32(&cdb[10]);
      break;
  }
  // RDPROTECT/WRPROTECT (bits 7-5 of byte 1, but for the 6-byte commands' LBA): no
  // protection information is kept.
  if (opcode != op::kRead6 && opcode != op::kWrite6 && (cdb[1] & 0xe0) != 0) {
    return {Reply::check(sense::kInvalidFieldInCdb), {}};
  }
  const bool write = is_write(opcode);
  if (write && read_only_) return {Reply::check(sense::kWriteProtected), {}};
  if (!in_range(lba, count)) return {Reply::check(sense::kLbaOutOfRange), {}};
  if (count * block_size_ > kMaxTransferBytes) return {Reply::check(sense::kInvalidFieldInCdb), {}};
  if (count == 0) return {Reply::good(), {}};
  return {Reply::good(), IoPlan{medium_, write ? disk::AsyncOp::kWrite : disk::AsyncOp::kRead, lba * block_size_,
                                count * block_size_}};
}

// SBC-3 5.22, 5.23: the range is checked; everything written is made durable (a flush of
// the whole disk covers any range).
Command ScsiDisk::synchronize_cache(std::span<const uint8_t> cdb) const {
  uint64_t lba = 0, count = 0;
  if (cdb[0] == op::kSynchronizeCache10) {
    lba = be32(&cdb[2]);
    count = be16(&cdb[7]);
  } else {
    lba = be64(&cdb[2]);
    count = be32(&cdb[10]);
  }
  if (!in_range(lba, count)) return {Reply::check(sense::kLbaOutOfRange), {}};
  if (read_only_) return {Reply::good(), {}};  // nothing was written
  return {Reply::good(), IoPlan{medium_, disk::AsyncOp::kFlush, 0, 0}};
}

// SBC-3 5.27-5.29: with BYTCHK 0 the medium is "verified" by its range; comparing with
// data-out is not offered.
Reply ScsiDisk::verify(std::span<const uint8_t> cdb) const {
  if ((cdb[1] & 0xe6) != 0) return Reply::check(sense::kInvalidFieldInCdb);  // VRPROTECT, BYTCHK
  uint64_t lba = 0, count = 0;
  switch (cdb[0]) {
    case op::kVerify10: lba = be32(&cdb[2]); count = be16(&cdb[7]); break;
    case op::kVerify12: lba = be32(&cdb[2]); count = be32(&cdb[6]); break;
    default: lba = be64(&cdb[2]); count = be32(&cdb[10]); break;
  }
  return in_range(lba, count) ? Reply::good() : Reply::check(sense::kLbaOutOfRange);
}

Reply ScsiDisk::finish_io(const IoPlan& plan, int64_t result, const std::string& error) {
  completed_io_.fetch_add(1, std::memory_order_relaxed);
  const int64_t expected = static_cast<int64_t>(plan.length);
  if (result == expected) return Reply::good();
  const char* what = plan.op == disk::AsyncOp::kRead ? "reading" : plan.op == disk::AsyncOp::kWrite ? "writing" : "flushing";
  std::lock_guard lock(mu_);
  last_error_ = result < 0 ? std::string(what) + " the SCSI disk failed: " + error
                           : std::string(what) + " the SCSI disk " + plan.medium->path + " moved " + std::to_string(result) +
                                 " of " + std::to_string(plan.length) + " bytes";
  if (result == -ENOSPC) return Reply::check(sense::kSpaceAllocationFailed);
  return Reply::check(plan.op == disk::AsyncOp::kRead ? sense::kUnrecoveredRead : sense::kWriteError);
}

std::string ScsiDisk::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

std::string ScsiDisk::path() const {
  std::lock_guard lock(mu_);
  return medium_ ? medium_->path : std::string();
}

std::string ScsiDisk::io_backend() const {
  std::lock_guard lock(mu_);
  return medium_ ? medium_->aio->backend() : std::string();
}

void ScsiDisk::flush_disk() {
  std::lock_guard lock(mu_);
  if (!medium_) throw Error("VIRTIO_SETUP", "the SCSI disk is closed");
  if (!read_only_) medium_->disk->flush();
}

void ScsiDisk::replace_disk(std::unique_ptr<disk::BlockDevice> disk) {
  if (!disk) throw Error("VIRTIO_SETUP", "no disk to replace the SCSI disk's image with");
  const std::string old_path = path();
  const std::string new_path = disk->info().path;
  if (disk->capacity() / block_size_ != blocks_ || disk->logical_block_size() != block_size_) {
    throw Error("DISK_SIZE_MISMATCH", new_path + " is " + std::to_string(disk->capacity()) + " bytes, but the guest's disk " +
                                          old_path + " is " + std::to_string(blocks_ * block_size_) + " bytes");
  }
  if (!read_only_ && disk->read_only()) throw Error("DISK_READ_ONLY", new_path + " is read-only, but the guest writes to " + old_path);
  std::shared_ptr<Medium> fresh = open_medium(std::move(disk));  // before the old one goes: a failure changes nothing
  std::shared_ptr<Medium> old;
  std::lock_guard lock(mu_);
  old = std::move(medium_);  // nothing in flight: closed after the lock is dropped
  medium_ = std::move(fresh);
}

void ScsiDisk::close_disk() {
  std::shared_ptr<Medium> old;
  std::lock_guard lock(mu_);
  old = std::move(medium_);
}

void ScsiDisk::save_state(state::Writer& w) const {
  size_t token = w.begin("scsi-disk", 1);
  w.u32(block_size_);
  w.u64(blocks_);
  w.boolean(read_only_);
  w.end(token);
}

std::function<void()> ScsiDisk::prepare_load(state::Reader& parent) {
  auto rec = parent.record("scsi-disk", 1);
  state::Reader& r = rec.body;
  const uint32_t block_size = r.u32("block_size");
  if (block_size != block_size_) {
    r.fail("block_size is " + std::to_string(block_size) + ", but the disk has " + std::to_string(block_size_));
  }
  const uint64_t blocks = r.u64("blocks");
  if (blocks != blocks_) {
    r.fail("blocks is " + std::to_string(blocks) + ", but the disk has " + std::to_string(blocks_));
  }
  const bool read_only = r.boolean("read_only");
  if (read_only != read_only_) {
    r.fail(std::string("read_only is ") + (read_only ? "true" : "false") + ", but the disk is attached " +
           (read_only_ ? "read-only" : "read-write"));
  }
  r.expect_end();
  return [] {};  // nothing but the checks: the disk holds no state of its own
}

}  // namespace berth::devices::scsi
