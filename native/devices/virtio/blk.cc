#include "devices/virtio/blk.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace berth::devices::virtio {

namespace {

constexpr uint64_t kSector = 512;
constexpr size_t kHeaderBytes = 16;   // struct virtio_blk_req: type, reserved, sector
constexpr size_t kSegmentBytes = 16;  // struct virtio_blk_discard_write_zeroes

template <typename T>
void put(uint8_t* base, size_t at, T v) {
  std::memcpy(base + at, &v, sizeof v);
}

size_t segment_size(const iovec& v) { return v.iov_len; }
size_t segment_size(std::span<const uint8_t> s) { return s.size(); }

bool is_data(uint32_t type) { return type == kBlkTypeIn || type == kBlkTypeOut; }

}  // namespace

VirtioBlk::VirtioBlk(std::unique_ptr<disk::BlockDevice> disk, std::string serial, bool read_only, uint16_t queues)
    : disk_(std::move(disk)), serial_(std::move(serial)) {
  if (serial_.size() > kBlkIdBytes) serial_.resize(kBlkIdBytes);
  if (queues == 0 || queues > kMaxQueues) {
    throw Error("VIRTIO_SETUP", "virtio-blk takes 1 to " + std::to_string(kMaxQueues) + " queues, not " +
                                    std::to_string(queues));
  }
  queues_.resize(queues);
  read_only_ = read_only || disk_->read_only();
  capacity_sectors_ = disk_->capacity() / kSector;
  blk_size_ = disk_->logical_block_size();
  if (blk_size_ < kSector || (blk_size_ & (blk_size_ - 1)) != 0) blk_size_ = kSector;
  path_ = disk_->info().path;
  aio_ = disk_->open_async(kDepth);
  io_backend_ = aio_->backend();
}

VirtioBlk::~VirtioBlk() {
  try {
    drop_everything();
  } catch (...) {
    // The disk's queue failed; destroying it still waits for what the kernel holds.
  }
}

uint64_t VirtioBlk::device_features() const {
  uint64_t f = kBlkFeatureSizeMax | kBlkFeatureSegMax | kBlkFeatureBlkSize | kBlkFeatureFlush;
  if (queues_.size() > 1) f |= kBlkFeatureMq;
  if (read_only_) return f | kBlkFeatureRo;
  return f | kBlkFeatureDiscard | kBlkFeatureWriteZeroes;
}

void VirtioBlk::read_config(uint32_t offset, std::span<uint8_t> data) {
  uint8_t c[kConfigSize] = {};
  put<uint64_t>(c, 0, capacity_sectors_);
  put<uint32_t>(c, 8, kSizeMax);
  put<uint32_t>(c, 12, kSegMax);
  // geometry (16..19) stays 0: VIRTIO_BLK_F_GEOMETRY is not offered.
  put<uint32_t>(c, 20, blk_size_);
  // topology (24..31), writeback (32): features not offered.
  put<uint16_t>(c, 34, static_cast<uint16_t>(queues_.size()));
  put<uint32_t>(c, 36, kMaxDiscardSectors);
  put<uint32_t>(c, 40, kMaxDiscardSeg);
  put<uint32_t>(c, 44, 1);  // discard_sector_alignment, in sectors
  put<uint32_t>(c, 48, kMaxWriteZeroesSectors);
  put<uint32_t>(c, 52, kMaxWriteZeroesSeg);
  c[56] = 1;  // write_zeroes_may_unmap
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < kConfigSize ? c[offset + i] : 0;
}

void VirtioBlk::activate(std::span<Virtqueue> queues, uint64_t /*features*/) {
  if (aio_ && !completion_fd_set_) {
    aio_->set_completion_fd(context_->completion_fd());
    completion_fd_set_ = true;
  }
  for (size_t q = 0; q < queues_.size(); ++q) {
    queues_[q] = QueueState{};
    if (q < queues.size() && queues[q].active()) queues_[q].ring = &queues[q];
  }
}

// Returns every request to the pool without answering it; the ones on the disk are waited
// for first, so nothing touches guest memory once this returns.
void VirtioBlk::drop_everything() {
  for (Request* r : backlog_) free_.push_back(r);
  backlog_.clear();
  disk::AsyncCompletion got[16];
  while (aio_ && !on_disk_.empty()) {
    size_t n = aio_->harvest(got, 1);
    for (size_t i = 0; i < n; ++i) {
      auto* r = reinterpret_cast<Request*>(got[i].tag);
      std::erase(on_disk_, r);
      free_.push_back(r);
    }
  }
  on_disk_.clear();
}

void VirtioBlk::reset() {
  drop_everything();
  for (auto& q : queues_) q = QueueState{};
}

void VirtioBlk::close_disk() {
  drop_everything();
  aio_.reset();
  disk_.reset();
}

void VirtioBlk::queue_notify(uint16_t queue) {
  if (queue < queues_.size()) pop_queue(queue);
  run();
}

void VirtioBlk::complete() { run(); }

void VirtioBlk::run_until_idle() {
  for (;;) {
    run();
    if (on_disk_.empty()) return;
    take_completions(1);
  }
}

// Starts what can start and answers what is done until neither moves, then interrupts the
// driver once per queue that got answers.
void VirtioBlk::run() {
  for (;;) {
    bool progress = false;
    for (uint16_t q = 0; q < queues_.size(); ++q) {
      if (queues_[q].throttled && queues_[q].ring && queues_[q].outstanding < queues_[q].ring->size) {
        queues_[q].throttled = false;
        progress |= pop_queue(q);
      }
    }
    progress |= start_backlog();
    progress |= take_completions(0);
    if (!progress) break;
  }
  signal_answered();
}

// Interrupts the driver once per queue that got answers.
void VirtioBlk::signal_answered() {
  for (uint16_t q = 0; q < queues_.size(); ++q) {
    if (queues_[q].used) {
      queues_[q].used = false;
      context_->signal_used(q);
    }
  }
}

VirtioBlk::Request* VirtioBlk::new_request() {
  if (free_.empty()) {
    pool_.push_back(std::make_unique<Request>());
    return pool_.back().get();
  }
  Request* r = free_.back();
  free_.pop_back();
  return r;
}

void VirtioBlk::finish(Request* req, uint8_t status) {
  if (status != kBlkStatusOk) req->written = 1;
  *req->status = status;
  QueueState& q = queues_[req->queue];
  if (q.ring) {
    q.ring->push_used(req->head, req->written);
    q.used = true;
    if (q.outstanding) --q.outstanding;
  }
  completed_.fetch_add(1, std::memory_order_relaxed);
  free_.push_back(req);
}

bool VirtioBlk::pop_queue(uint16_t queue) {
  QueueState& q = queues_[queue];
  if (!q.ring) return false;
  bool any = false;
  for (;;) {
    // A driver may offer chains faster than the disk completes them (even reuse heads it
    // has not got back): never hold more than one queue's worth.
    if (q.outstanding >= q.ring->size) {
      q.throttled = true;
      break;
    }
    if (q.ring->pop(chain_) != Virtqueue::Pop::kChain) break;
    if (chain_.writable_bytes == 0) {
      context_->fail("virtio-blk: request without a device-writable status byte");
      break;
    }
    any = true;
    Request* req = new_request();
    req->queue = queue;
    ++q.outstanding;
    uint8_t status = kBlkStatusOk;
    if (parse(*req, status)) {
      backlog_.push_back(req);
    } else {
      finish(req, status);
    }
  }
  return any;
}

bool VirtioBlk::conflicts(const Request& req) const {
  for (const Request* r : on_disk_) {
    if (!is_data(r->type) || (r->type != kBlkTypeOut && req.type != kBlkTypeOut)) continue;
    if (req.begin < r->end && r->begin < req.end) return true;
  }
  return false;
}

bool VirtioBlk::start_backlog() {
  bool any = false;
  while (!backlog_.empty()) {
    Request* req = backlog_.front();
    if (!aio_) {  // closed
      backlog_.pop_front();
      finish(req, kBlkStatusIoErr);
      any = true;
      continue;
    }
    if (req->type == kBlkTypeDiscard || req->type == kBlkTypeWriteZeroes) {
      if (!on_disk_.empty()) break;  // the synchronous driver runs alone
      backlog_.pop_front();
      uint8_t status = kBlkStatusIoErr;
      try {
        status = do_segments(*req);
      } catch (const std::exception&) {
        status = kBlkStatusIoErr;
      }
      finish(req, status);
      any = true;
      continue;
    }
    if (on_disk_.size() >= aio_->depth() || conflicts(*req)) break;
    backlog_.pop_front();
    any = true;
    disk::DiskRequest dr;
    dr.op = req->type == kBlkTypeIn ? disk::AsyncOp::kRead
            : req->type == kBlkTypeOut ? disk::AsyncOp::kWrite
                                       : disk::AsyncOp::kFlush;
    dr.offset = req->begin;
    dr.iov = req->data;
    dr.tag = reinterpret_cast<uint64_t>(req);
    try {
      aio_->submit(dr);
    } catch (const std::exception&) {
      finish(req, kBlkStatusIoErr);  // refused: nothing was queued
      continue;
    }
    on_disk_.push_back(req);
    unsigned n = static_cast<unsigned>(on_disk_.size());
    if (n > peak_in_flight_.load(std::memory_order_relaxed)) peak_in_flight_.store(n, std::memory_order_relaxed);
  }
  if (any && aio_) aio_->commit();
  return any;
}

bool VirtioBlk::take_completions(unsigned wait_for) {
  if (!aio_ || on_disk_.empty()) return false;
  disk::AsyncCompletion got[32];
  bool any = false;
  for (;;) {
    size_t n = aio_->harvest(got, wait_for);
    for (size_t i = 0; i < n; ++i) {
      auto* req = reinterpret_cast<Request*>(got[i].tag);
      std::erase(on_disk_, req);
      uint64_t expected = 0;
      for (const iovec& v : req->data) expected += v.iov_len;
      bool ok = req->type == kBlkTypeFlush ? got[i].result == 0 : got[i].result == static_cast<int64_t>(expected);
      finish(req, ok ? kBlkStatusOk : kBlkStatusIoErr);
    }
    any |= n > 0;
    if (n < std::size(got)) return any;
    wait_for = 0;
  }
}

bool VirtioBlk::parse(Request& req, uint8_t& status) {
  req.head = chain_.head;
  req.data.clear();
  req.out.clear();
  req.written = 1;
  auto& last = chain_.writable.back();
  req.status = last.data() + last.size() - 1;

  uint8_t header[kHeaderBytes];
  if (chain_.read(header) != kHeaderBytes) {
    status = kBlkStatusIoErr;  // header too short
    return false;
  }
  std::memcpy(&req.type, header, 4);
  std::memcpy(&req.sector, header + 8, 8);

  // The device-writable bytes before the status byte, and the readable bytes after the
  // header, as segment lists.
  const uint64_t in_bytes = chain_.writable_bytes - 1;
  const uint64_t out_bytes = chain_.readable_bytes - kHeaderBytes;
  auto collect_in = [&] {
    uint64_t left = in_bytes;
    for (auto s : chain_.writable) {
      if (left == 0) break;
      size_t n = std::min<uint64_t>(s.size(), left);
      req.data.push_back({s.data(), n});
      left -= n;
    }
  };
  auto out_as_data = [&] {
    for (auto s : req.out) req.data.push_back({const_cast<uint8_t*>(s.data()), s.size()});  // only read
    req.out.clear();
  };
  auto collect_out = [&] {
    uint64_t skip = kHeaderBytes;
    for (auto s : chain_.readable) {
      if (skip >= s.size()) {
        skip -= s.size();
        continue;
      }
      req.out.push_back(s.subspan(skip));
      skip = 0;
    }
  };
  auto segments_ok = [&](const auto& list) {
    if (list.size() > kSegMax) return false;
    for (const auto& s : list) {
      if (segment_size(s) > kSizeMax) return false;
    }
    return true;
  };
  auto in_range = [&](uint64_t bytes) {
    uint64_t sectors = bytes / kSector;
    return req.sector <= capacity_sectors_ && sectors <= capacity_sectors_ - req.sector;
  };

  switch (req.type) {
    case kBlkTypeIn:
      collect_in();
      if (!segments_ok(req.data) || in_bytes % kSector != 0 || !in_range(in_bytes)) {
        status = kBlkStatusIoErr;
        return false;
      }
      req.written = static_cast<uint32_t>(in_bytes + 1);
      req.begin = req.sector * kSector;
      req.end = req.begin + in_bytes;
      if (in_bytes == 0) return false;  // nothing to read: OK at once
      return true;
    case kBlkTypeOut:
      collect_out();
      if (read_only_ || !segments_ok(req.out) || out_bytes % kSector != 0 || !in_range(out_bytes)) {
        status = kBlkStatusIoErr;
        return false;
      }
      out_as_data();
      req.begin = req.sector * kSector;
      req.end = req.begin + out_bytes;
      return out_bytes != 0;  // nothing to write: OK at once
    case kBlkTypeFlush:
      return !read_only_;  // nothing a read-only disk could owe: OK at once
    case kBlkTypeGetId: {
      uint8_t id[kBlkIdBytes] = {};
      std::memcpy(id, serial_.data(), serial_.size());
      size_t n = std::min<uint64_t>(in_bytes, kBlkIdBytes);
      chain_.write(std::span<const uint8_t>(id, n));
      req.written = static_cast<uint32_t>(n + 1);
      status = kBlkStatusOk;
      return false;  // answered here: no disk access
    }
    case kBlkTypeDiscard:
    case kBlkTypeWriteZeroes: {
      collect_out();
      uint32_t max_seg = req.type == kBlkTypeDiscard ? kMaxDiscardSeg : kMaxWriteZeroesSeg;
      if (read_only_ || out_bytes == 0 || out_bytes % kSegmentBytes != 0 || out_bytes / kSegmentBytes > max_seg) {
        status = kBlkStatusIoErr;
        return false;
      }
      return true;
    }
    default:
      status = kBlkStatusUnsupp;
      return false;
  }
}

uint8_t VirtioBlk::do_segments(const Request& req) {
  struct Segment {
    uint64_t sector;
    uint32_t sectors;
    uint32_t flags;
  };
  std::vector<uint8_t> raw;
  for (const auto& s : req.out) raw.insert(raw.end(), s.begin(), s.end());
  std::vector<Segment> segs(raw.size() / kSegmentBytes);
  const bool discard = req.type == kBlkTypeDiscard;
  const uint32_t max_sectors = discard ? kMaxDiscardSectors : kMaxWriteZeroesSectors;
  for (size_t i = 0; i < segs.size(); ++i) {
    std::memcpy(&segs[i].sector, raw.data() + i * kSegmentBytes, 8);
    std::memcpy(&segs[i].sectors, raw.data() + i * kSegmentBytes + 8, 4);
    std::memcpy(&segs[i].flags, raw.data() + i * kSegmentBytes + 12, 4);
    const Segment& g = segs[i];
    // virtio 1.x 5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
    if ((g.flags & ~kBlkDiscardFlagUnmap) != 0 || (discard && (g.flags & kBlkDiscardFlagUnmap))) {
      return kBlkStatusUnsupp;
    }
    if (g.sectors > max_sectors || g.sector > capacity_sectors_ || g.sectors > capacity_sectors_ - g.sector) {
      return kBlkStatusIoErr;
    }
  }
  for (const auto& g : segs) {
    if (g.sectors == 0) continue;
    if (discard) {
      disk_->discard(g.sector * kSector, g.sectors * kSector);
    } else {
      disk_->write_zeroes(g.sector * kSector, g.sectors * kSector, (g.flags & kBlkDiscardFlagUnmap) != 0);
    }
  }
  return kBlkStatusOk;
}


}  // namespace berth::devices::virtio
