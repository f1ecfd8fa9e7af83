#include "devices/virtio/scsi.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace berth::devices::virtio {

namespace {

template <typename T>
void put(uint8_t* base, size_t at, T v) {
  std::memcpy(base + at, &v, sizeof v);
}

// Writes bytes into the writable buffers from offset `skip`; returns the count written.
size_t scatter(const std::vector<std::span<uint8_t>>& writable, std::span<const uint8_t> bytes, uint64_t skip) {
  size_t done = 0;
  for (auto s : writable) {
    if (done == bytes.size()) break;
    if (skip >= s.size()) {
      skip -= s.size();
      continue;
    }
    size_t n = std::min<uint64_t>(s.size() - skip, bytes.size() - done);
    std::memcpy(s.data() + skip, bytes.data() + done, n);
    done += n;
    skip = 0;
  }
  return done;
}

}  // namespace

VirtioScsi::VirtioScsi(std::vector<std::shared_ptr<scsi::Target>> targets) : targets_(std::move(targets)) {
  if (targets_.size() > kMaxTargets) {
    throw Error("VIRTIO_SETUP", "a virtio-scsi controller takes at most " + std::to_string(kMaxTargets) +
                                    " drives, not " + std::to_string(targets_.size()));
  }
  for (const auto& t : targets_) {
    if (!t) throw Error("VIRTIO_SETUP", "virtio-scsi: a target slot without a drive");
  }
}

VirtioScsi::~VirtioScsi() { drop_everything(); }

void VirtioScsi::read_config(uint32_t offset, std::span<uint8_t> data) {
  uint8_t c[kConfigSize] = {};
  put<uint32_t>(c, 0, 1);  // num_queues: request queues
  put<uint32_t>(c, 4, kSegMax);
  put<uint32_t>(c, 8, kMaxSectors);
  put<uint32_t>(c, 12, kQueueSize);  // cmd_per_lun
  put<uint32_t>(c, 16, 16);          // event_info_size: struct virtio_scsi_event
  put<uint32_t>(c, 20, sense_size_);
  put<uint32_t>(c, 24, cdb_size_);
  put<uint16_t>(c, 28, 0);  // max_channel
  put<uint16_t>(c, 30, static_cast<uint16_t>(targets_.empty() ? 0 : targets_.size() - 1));  // max_target
  put<uint32_t>(c, 32, 0);  // max_lun
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < kConfigSize ? c[offset + i] : 0;
}

// sense_size and cdb_size are the driver's to set (5.6.4); whole 32-bit writes only.
void VirtioScsi::write_config(uint32_t offset, std::span<const uint8_t> data) {
  if (data.size() != 4 || (offset != 20 && offset != 24)) return;
  uint32_t v = 0;
  std::memcpy(&v, data.data(), 4);
  if (offset == 20 && v <= kMaxSenseSize) sense_size_ = v;
  if (offset == 24 && v <= kMaxCdbSize) cdb_size_ = v;
}

void VirtioScsi::activate(std::span<Virtqueue> queues, uint64_t /*features*/) {
  control_ = queues.size() > kControlQueue && queues[kControlQueue].active() ? &queues[kControlQueue] : nullptr;
  request_ = queues.size() > kRequestQueue && queues[kRequestQueue].active() ? &queues[kRequestQueue] : nullptr;
  outstanding_ = 0;
  request_used_ = false;
}

void VirtioScsi::queue_notify(uint16_t queue) {
  if (queue == kControlQueue) control();
  run();
}

void VirtioScsi::complete() { run(); }

void VirtioScsi::run_until_idle() {
  control();
  for (;;) {
    run();
    if (on_disk_.empty()) return;
    take_completions(true);
  }
}

void VirtioScsi::run() {
  for (;;) {
    const uint64_t before = completed_.load(std::memory_order_relaxed);
    requests();
    bool progress = start_backlog();
    progress |= take_completions(false);
    progress |= completed_.load(std::memory_order_relaxed) != before;
    if (!progress) break;
  }
  if (request_used_) {
    request_used_ = false;
    context_->signal_used(kRequestQueue);
  }
}

bool VirtioScsi::address(const uint8_t* lun8, uint16_t& target, uint16_t& lun) const {
  if (lun8[0] != 1 || lun8[1] >= targets_.size()) return false;
  const uint8_t method = lun8[2] >> 6;
  if (method > 1 || lun8[4] || lun8[5] || lun8[6] || lun8[7]) return false;
  target = lun8[1];
  lun = static_cast<uint16_t>((lun8[2] & 0x3f) << 8 | lun8[3]);
  return true;
}

// Task management and asynchronous notification queries (5.6.6.2, 5.6.6.3).
void VirtioScsi::control() {
  if (!control_) return;
  bool any = false;
  Virtqueue::Pop popped;
  while ((popped = control_->pop(chain_)) == Virtqueue::Pop::kChain) {
    any = true;
    uint8_t head[28] = {};
    const size_t got = chain_.read(head);
    uint32_t type = 0;
    std::memcpy(&type, head, 4);
    uint32_t written = 0;
    uint16_t target = 0, lun = 0;
    if (type == kScsiTTmf && chain_.writable_bytes >= 1) {
      uint8_t response = kScsiSFailure;
      if (got >= 24) {
        uint32_t subtype = 0;
        std::memcpy(&subtype, head + 4, 4);
        if (!address(head + 8, target, lun)) {
          response = kScsiSBadTarget;
        } else {
          answer_tmf(response, subtype, target);
        }
      }
      written = static_cast<uint32_t>(chain_.write(std::span<const uint8_t>(&response, 1)));
    } else if ((type == kScsiTAnQuery || type == kScsiTAnSubscribe) && chain_.writable_bytes >= 5) {
      uint8_t out[5] = {};  // event_actual 0: no asynchronous event is supported
      out[4] = got < 16 ? kScsiSFailure : address(head + 4, target, lun) ? kScsiSOk : kScsiSBadTarget;
      written = static_cast<uint32_t>(chain_.write(out));
    }
    control_->push_used(chain_.head, written);
  }
  if (popped == Virtqueue::Pop::kError) context_->fail(std::string("virtio-scsi control queue: ") + control_->error_detail());
  if (any) context_->signal_used(kControlQueue);
}

// Commands here are short or already on the disk: aborts and resets let the reads in
// flight finish (answered normally) and then report the function complete.
void VirtioScsi::answer_tmf(uint8_t& response, uint32_t subtype, uint16_t target) {
  if (subtype == kScsiTmfClearAca || subtype > kScsiTmfQueryTaskSet) {
    response = kScsiSFunctionRejected;  // no ACA; unknown functions
    return;
  }
  drain();
  if (subtype == kScsiTmfLogicalUnitReset || subtype == kScsiTmfItNexusReset) targets_[target]->bus_reset();
  response = kScsiSOk;  // FUNCTION_COMPLETE
}

VirtioScsi::Request* VirtioScsi::new_request() {
  if (free_.empty()) {
    pool_.push_back(std::make_unique<Request>());
    return pool_.back().get();
  }
  Request* r = free_.back();
  free_.pop_back();
  return r;
}

void VirtioScsi::release(Request* req) {
  req->plan = {};  // the last reference to an ejected medium closes it
  req->writes = false;
  req->data_out_bytes = 0;
  req->data.clear();
  req->writable.clear();
  free_.push_back(req);
}

// Writes virtio_scsi_cmd_resp (and the data a reply carries) and returns the chain.
void VirtioScsi::respond(Request& req, uint8_t response, const scsi::Reply* reply, uint64_t transferred) {
  std::vector<uint8_t> resp(kRespHeaderBytes + sense_size_, 0);
  uint32_t sense_len = 0;
  if (reply && reply->status == scsi::kStatusCheckCondition) {
    uint8_t sense[scsi::kFixedSenseBytes];
    scsi::write_fixed_sense(reply->sense, sense);
    sense_len = static_cast<uint32_t>(std::min<size_t>(sizeof sense, sense_size_));
    std::memcpy(resp.data() + kRespHeaderBytes, sense, sense_len);
  }
  uint64_t residual = req.data_in_bytes - transferred;
  if (reply) {
    const uint64_t written_data = reply->data.empty() ? transferred : scatter(req.writable, std::span(reply->data).first(transferred), req.response_bytes);
    transferred = written_data;
    residual = req.data_in_bytes - transferred;
    resp[10] = reply->status;
  }
  if (req.writes) {  // transferred counts data-out bytes: nothing of the writable part was used
    residual = req.data_out_bytes - transferred;
    transferred = 0;
  }
  put<uint32_t>(resp.data(), 0, sense_len);
  put<uint32_t>(resp.data(), 4, static_cast<uint32_t>(residual));
  resp[11] = response;
  const size_t header = scatter(req.writable, resp, 0);
  request_->push_used(req.head, static_cast<uint32_t>(header + transferred));
  request_used_ = true;
  if (outstanding_) --outstanding_;
  completed_.fetch_add(1, std::memory_order_relaxed);
  release(&req);
}

void VirtioScsi::requests() {
  if (!request_) return;
  while (outstanding_ < request_->size) {
    const Virtqueue::Pop popped = request_->pop(chain_);
    if (popped == Virtqueue::Pop::kError) {
      context_->fail(std::string("virtio-scsi request queue: ") + request_->error_detail());
      return;
    }
    if (popped != Virtqueue::Pop::kChain) break;
    if (chain_.writable_bytes < kRespHeaderBytes) {
      context_->fail("virtio-scsi: a request without room for its response");
      return;
    }
    ++outstanding_;
    Request* req = new_request();
    req->head = chain_.head;
    req->writable = chain_.writable;
    req->response_bytes = std::min<uint64_t>(chain_.writable_bytes, kRespHeaderBytes + sense_size_);
    req->data_in_bytes = chain_.writable_bytes - req->response_bytes;

    std::vector<uint8_t> header(kCmdHeaderBytes + cdb_size_);
    if (chain_.read(header) != header.size()) {
      respond(*req, kScsiSFailure, nullptr, 0);
      continue;
    }
    uint16_t target = 0, lun = 0;
    if (!address(header.data(), target, lun)) {
      respond(*req, kScsiSBadTarget, nullptr, 0);
      continue;
    }
    req->target = target;
    const std::span<const uint8_t> cdb(header.data() + kCmdHeaderBytes, cdb_size_);
    if (lun != 0) {
      scsi::Reply reply = scsi::missing_lun_reply(cdb);
      respond(*req, kScsiSOk, &reply, std::min<uint64_t>(reply.data.size(), req->data_in_bytes));
      continue;
    }
    scsi::Command cmd = targets_[target]->execute(cdb);
    if (!cmd.io) {
      respond(*req, kScsiSOk, &cmd.reply, std::min<uint64_t>(cmd.reply.data.size(), req->data_in_bytes));
      continue;
    }
    // Data-out (a write's data) follows the CDB in the readable part of the chain.
    const bool writes = cmd.io->op == disk::AsyncOp::kWrite;
    const uint64_t data_out_bytes = chain_.readable_bytes - header.size();
    if (cmd.io->length > (writes ? data_out_bytes : req->data_in_bytes)) {
      respond(*req, kScsiSOverrun, nullptr, 0);
      continue;
    }
    req->plan = std::move(*cmd.io);
    req->writes = writes;
    req->data_out_bytes = data_out_bytes;
    if (writes) {
      uint64_t skip = header.size(), left = req->plan.length;
      for (auto s : chain_.readable) {
        if (left == 0) break;
        if (skip >= s.size()) {
          skip -= s.size();
          continue;
        }
        const size_t n = std::min<uint64_t>(s.size() - skip, left);
        req->data.push_back({const_cast<uint8_t*>(s.data() + skip), n});  // only read by the disk
        left -= n;
        skip = 0;
      }
    } else {
      uint64_t skip = req->response_bytes, left = req->plan.length;
      for (auto s : req->writable) {
        if (left == 0) break;
        if (skip >= s.size()) {
          skip -= s.size();
          continue;
        }
        const size_t n = std::min<uint64_t>(s.size() - skip, left);
        req->data.push_back({s.data() + skip, n});
        left -= n;
        skip = 0;
      }
    }
    backlog_.push_back(req);
  }
}

// Whether req overlaps a request on the same medium's disk where either of them writes.
bool VirtioScsi::conflicts(const Request& req) const {
  const scsi::IoPlan& p = req.plan;
  if (p.op == disk::AsyncOp::kFlush) return false;
  for (const Request* r : on_disk_) {
    const scsi::IoPlan& q = r->plan;
    if (q.medium != p.medium || q.op == disk::AsyncOp::kFlush) continue;
    if (q.op != disk::AsyncOp::kWrite && p.op != disk::AsyncOp::kWrite) continue;
    if (p.offset < q.offset + q.length && q.offset < p.offset + p.length) return true;
  }
  return false;
}

bool VirtioScsi::start_backlog() {
  bool any = false;
  std::vector<disk::AsyncDisk*> submitted;
  while (!backlog_.empty()) {
    Request* req = backlog_.front();
    scsi::Medium& medium = *req->plan.medium;
    if (medium.aio->in_flight() >= medium.aio->depth() || conflicts(*req)) break;
    backlog_.pop_front();
    any = true;
    if (!medium.completion_fd_set) {
      medium.aio->set_completion_fd(context_->completion_fd());
      medium.completion_fd_set = true;
    }
    disk::DiskRequest dr;
    dr.op = req->plan.op;
    dr.offset = req->plan.offset;
    dr.iov = req->data;
    dr.tag = reinterpret_cast<uint64_t>(req);
    try {
      medium.aio->submit(dr);
    } catch (const std::exception& e) {
      finish_io(req, -EIO, e.what());  // refused: nothing was queued
      continue;
    }
    on_disk_.push_back(req);
    if (std::find(submitted.begin(), submitted.end(), medium.aio.get()) == submitted.end()) submitted.push_back(medium.aio.get());
  }
  for (disk::AsyncDisk* aio : submitted) aio->commit();
  return any;
}

// Harvests every medium with reads on it; wait: block until at least one read is done.
bool VirtioScsi::take_completions(bool wait) {
  bool any = false;
  std::vector<std::shared_ptr<scsi::Medium>> media;
  for (Request* r : on_disk_) {
    if (std::find(media.begin(), media.end(), r->plan.medium) == media.end()) media.push_back(r->plan.medium);
  }
  for (size_t m = 0; m < media.size(); ++m) {
    disk::AsyncCompletion got[32];
    unsigned wait_for = wait && m == 0 ? 1 : 0;
    for (;;) {
      size_t n = media[m]->aio->harvest(got, wait_for);
      for (size_t i = 0; i < n; ++i) {
        auto* req = reinterpret_cast<Request*>(got[i].tag);
        std::erase(on_disk_, req);
        finish_io(req, got[i].result, got[i].result < 0 ? media[m]->aio->error_for(got[i]).what() : "");
      }
      any |= n > 0;
      if (n < std::size(got)) break;
      wait_for = 0;
    }
  }
  return any;
}

void VirtioScsi::finish_io(Request* req, int64_t result, const std::string& error) {
  scsi::Reply reply = targets_[req->target]->finish_io(req->plan, result, error);
  respond(*req, kScsiSOk, &reply, reply.status == scsi::kStatusGood ? req->plan.length : 0);
}

void VirtioScsi::drain() {
  while (!backlog_.empty() || !on_disk_.empty()) {
    start_backlog();
    take_completions(!on_disk_.empty());
  }
}

void VirtioScsi::drop_everything() {
  for (Request* r : backlog_) release(r);
  backlog_.clear();
  std::vector<std::shared_ptr<scsi::Medium>> media;
  for (Request* r : on_disk_) {
    if (std::find(media.begin(), media.end(), r->plan.medium) == media.end()) media.push_back(r->plan.medium);
  }
  for (auto& m : media) {
    disk::AsyncCompletion got[32];
    while (std::any_of(on_disk_.begin(), on_disk_.end(), [&](Request* r) { return r->plan.medium == m; })) {
      try {
        size_t n = m->aio->harvest(got, 1);
        for (size_t i = 0; i < n; ++i) {
          auto* req = reinterpret_cast<Request*>(got[i].tag);
          std::erase(on_disk_, req);
          release(req);
        }
      } catch (const std::exception&) {
        break;  // the disk's queue failed; destroying the medium still waits for the kernel
      }
    }
  }
  for (Request* r : on_disk_) release(r);
  on_disk_.clear();
  outstanding_ = 0;
}

void VirtioScsi::reset() {
  drop_everything();
  control_ = nullptr;
  request_ = nullptr;
  request_used_ = false;
  cdb_size_ = kDefaultCdbSize;
  sense_size_ = kDefaultSenseSize;
  for (auto& t : targets_) t->bus_reset();
}

}  // namespace berth::devices::virtio
