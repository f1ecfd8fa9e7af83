// TransportCore's freeze/thaw and its part of a transport's saved state (transport.h).
#include <cstdio>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/virtio/transport.h"

namespace berth::devices::virtio {

namespace {

constexpr size_t kMaxLastError = 4096;

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

void TransportCore::freeze() {
  std::lock_guard<std::mutex> lock(mu_);
  if (frozen_) return;
  // Set first: the I/O thread, waiting for the lock now, must find it set.
  frozen_ = true;
  device_->freeze();
}

void TransportCore::thaw() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!frozen_) return;
  frozen_ = false;
  device_->thaw();
  recheck_locked();
}

bool TransportCore::frozen() const {
  std::lock_guard<std::mutex> lock(mu_);
  return frozen_;
}

void TransportCore::save_state(state::Writer& w, const char* name, uint32_t version,
                               const std::function<void(state::Writer&, uint32_t)>& transport_fields) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!frozen_) throw Error("VIRTIO_SETUP", std::string(device_->name()) + ": saving state needs a frozen device");
  size_t token = w.begin(name, version);
  w.u32(device_->device_id());
  w.u16(static_cast<uint16_t>(queues_.size()));
  w.u32(status_);
  w.u32(device_features_sel);
  w.u32(driver_features_sel);
  w.u64(driver_features_);
  w.u32(queue_sel);
  w.u32(config_generation_);
  transport_fields(w, version);
  w.str(last_error_.size() <= kMaxLastError ? last_error_ : last_error_.substr(0, kMaxLastError));
  for (const auto& q : queues_) q.save_state(w);
  device_->save_state(w);
  w.end(token);
}

void TransportCore::load_state(state::Reader& parent, const char* name, uint32_t max_version,
                               const std::function<void(state::Reader&, uint32_t)>& read_transport_fields,
                               const std::function<void()>& apply_transport_fields) {
  std::lock_guard<std::mutex> lock(mu_);
  auto rec = parent.record(name, max_version);
  state::Reader& r = rec.body;
  const uint32_t device_id = r.u32("device_id");
  if (device_id != device_->device_id()) {
    r.fail("device_id is " + std::to_string(device_id) + ", but this is " + device_->name() + " (device id " +
           std::to_string(device_->device_id()) + ")");
  }
  const uint16_t queue_count = r.u16("queue_count");
  if (queue_count != queues_.size()) {
    r.fail("queue_count is " + std::to_string(queue_count) + ", but this " + device_->name() + " has " +
           std::to_string(queues_.size()));
  }
  const uint32_t status = r.u32("status");
  const uint32_t device_features_sel_saved = r.u32("device_features_sel");
  const uint32_t driver_features_sel_saved = r.u32("driver_features_sel");
  const uint64_t driver_features = r.u64("driver_features");
  const uint32_t queue_sel_saved = r.u32("queue_sel");
  const uint32_t config_generation = r.u32("config_generation");
  read_transport_fields(r, rec.version);
  std::string last_error = r.str(kMaxLastError, "last_error");
  // What write_status lets a driver reach, no more.
  if ((status & kStatusDriverOk) && !(status & kStatusFeaturesOk)) r.fail("status has DRIVER_OK without FEATURES_OK");
  if ((status & kStatusFeaturesOk) &&
      ((driver_features & ~offered_features()) || !(driver_features & kFeatureVersion1))) {
    r.fail("driver_features " + hex(driver_features) +
           " were not all offered (or lack VERSION_1), yet status has FEATURES_OK");
  }

  reset_locked();
  try {
    for (uint16_t i = 0; i < queues_.size(); ++i) queues_[i].load_state(r, device_->queue_max_size(i));
    device_->load_state(r);
    r.expect_end();
  } catch (...) {
    reset_locked();  // no half-loaded queue stays behind
    throw;
  }
  status_ = status;
  device_features_sel = device_features_sel_saved;
  driver_features_sel = driver_features_sel_saved;
  driver_features_ = driver_features;
  queue_sel = queue_sel_saved;
  config_generation_ = config_generation;
  last_error_ = std::move(last_error);
  apply_transport_fields();
  if (dispatchable()) activate_locked();
  recheck_locked();
}

}  // namespace berth::devices::virtio
