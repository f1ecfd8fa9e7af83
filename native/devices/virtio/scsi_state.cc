// VirtioScsi's freeze/thaw and saved state (scsi.h).
#include "common/error.h"
#include "common/state_stream.h"
#include "devices/virtio/scsi.h"

namespace berth::devices::virtio {

void VirtioScsi::freeze() {
  drain();
  if (request_used_) {
    request_used_ = false;
    context_->signal_used(kRequestQueue);
  }
  frozen_.store(true);
}

void VirtioScsi::thaw() { frozen_.store(false); }

void VirtioScsi::save_state(state::Writer& w) const {
  if (!frozen_.load() || !backlog_.empty() || !on_disk_.empty()) {
    throw Error("VIRTIO_SETUP", "virtio-scsi: saving state needs a frozen device with nothing in flight");
  }
  size_t token = w.begin("virtio-scsi", 1);
  w.u32(static_cast<uint32_t>(targets_.size()));
  w.u32(cdb_size_);
  w.u32(sense_size_);
  for (const auto& t : targets_) t->save_state(w);
  w.end(token);
}

void VirtioScsi::load_state(state::Reader& parent) {
  auto rec = parent.record("virtio-scsi", 1);
  state::Reader& r = rec.body;
  const uint32_t count = r.u32("targets");
  if (count != targets_.size()) {
    r.fail("targets is " + std::to_string(count) + ", but the controller has " + std::to_string(targets_.size()));
  }
  const uint32_t cdb_size = r.u32("cdb_size");
  if (cdb_size > kMaxCdbSize) r.fail("cdb_size is " + std::to_string(cdb_size));
  const uint32_t sense_size = r.u32("sense_size");
  if (sense_size > kMaxSenseSize) r.fail("sense_size is " + std::to_string(sense_size));
  std::vector<std::function<void()>> commits;
  for (auto& t : targets_) commits.push_back(t->prepare_load(r));
  r.expect_end();
  cdb_size_ = cdb_size;
  sense_size_ = sense_size;
  for (auto& commit : commits) commit();
}

}  // namespace berth::devices::virtio
