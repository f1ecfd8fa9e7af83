// VirtioBlk's freeze/thaw, saved state and image replacement (blk.h).
#include "common/error.h"
#include "common/state_stream.h"
#include "devices/virtio/blk.h"

namespace berth::devices::virtio {

namespace {

constexpr uint64_t kSector = 512;

}  // namespace

void VirtioBlk::freeze() {
  // With nothing on the disk every backlog request can start (or is answered at once), so
  // this ends; it waits for the disk only while something is on it.
  while (!backlog_.empty() || !on_disk_.empty()) {
    start_backlog();
    take_completions(on_disk_.empty() ? 0 : 1);
  }
  signal_answered();
  frozen_.store(true);
}

void VirtioBlk::thaw() { frozen_.store(false); }

void VirtioBlk::require_frozen(const char* what) const {
  if (!frozen_.load()) throw Error("VIRTIO_SETUP", std::string("virtio-blk: ") + what + " needs a frozen device");
  if (!backlog_.empty() || !on_disk_.empty()) {
    throw Error("VIRTIO_SETUP", std::string("virtio-blk: ") + what + " with requests in flight");
  }
}

void VirtioBlk::save_state(state::Writer& w) const {
  require_frozen("saving state");
  size_t token = w.begin("virtio-blk", 1);
  w.u64(capacity_sectors_);
  w.boolean(read_only_);
  w.u16(static_cast<uint16_t>(queues_.size()));
  w.u64(completed_.load(std::memory_order_relaxed));
  w.end(token);
}

void VirtioBlk::load_state(state::Reader& parent) {
  auto rec = parent.record("virtio-blk", 1);
  state::Reader& r = rec.body;
  const uint64_t capacity = r.u64("capacity_sectors");
  if (capacity != capacity_sectors_) {
    r.fail("capacity_sectors is " + std::to_string(capacity) + ", but " + path_ + " has " +
           std::to_string(capacity_sectors_));
  }
  const bool read_only = r.boolean("read_only");
  if (read_only != read_only_) {
    r.fail(std::string("read_only is ") + (read_only ? "true" : "false") + ", but the disk is attached " +
           (read_only_ ? "read-only" : "read-write"));
  }
  const uint16_t queues = r.u16("queues");
  if (queues != queues_.size()) {
    r.fail("queues is " + std::to_string(queues) + ", but the device has " + std::to_string(queues_.size()));
  }
  const uint64_t completed = r.u64("completed_requests");
  r.expect_end();
  completed_.store(completed, std::memory_order_relaxed);
}

void VirtioBlk::flush_disk() {
  require_frozen("flushing the disk");
  if (!disk_) throw Error("VIRTIO_SETUP", "virtio-blk: the disk is closed");
  disk_->flush();
}

void VirtioBlk::replace_disk(std::unique_ptr<disk::BlockDevice> disk) {
  require_frozen("replacing the disk");
  if (!disk) throw Error("VIRTIO_SETUP", "virtio-blk: no disk to replace " + path_ + " with");
  const std::string new_path = disk->info().path;
  if (disk->capacity() / kSector != capacity_sectors_) {
    throw Error("DISK_SIZE_MISMATCH", new_path + " is " + std::to_string(disk->capacity()) + " bytes, but the guest's disk " +
                                          path_ + " is " + std::to_string(capacity_sectors_ * kSector) + " bytes");
  }
  if (!read_only_ && disk->read_only()) {
    throw Error("DISK_READ_ONLY", new_path + " is read-only, but the guest writes to " + path_);
  }
  // Opened before the old path is closed, so a failure leaves the device as it was.
  std::unique_ptr<disk::AsyncDisk> aio = disk->open_async(kDepth);
  if (completion_fd_set_) aio->set_completion_fd(context_->completion_fd());
  aio_.reset();  // nothing in flight: returns at once
  disk_ = std::move(disk);
  aio_ = std::move(aio);
  path_ = new_path;
  io_backend_ = aio_->backend();
}

}  // namespace berth::devices::virtio
