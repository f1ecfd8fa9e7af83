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

}  // namespace

VirtioBlk::VirtioBlk(std::unique_ptr<disk::BlockDevice> disk, std::string serial, bool read_only)
    : disk_(std::move(disk)), serial_(std::move(serial)) {
  if (serial_.size() > kBlkIdBytes) serial_.resize(kBlkIdBytes);
  read_only_ = read_only || disk_->read_only();
  capacity_sectors_ = disk_->capacity() / kSector;
  blk_size_ = disk_->logical_block_size();
  if (blk_size_ < kSector || (blk_size_ & (blk_size_ - 1)) != 0) blk_size_ = kSector;
  worker_ = std::thread([this] { worker_loop(); });
}

VirtioBlk::~VirtioBlk() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

uint64_t VirtioBlk::device_features() const {
  uint64_t f = kBlkFeatureSizeMax | kBlkFeatureSegMax | kBlkFeatureBlkSize | kBlkFeatureFlush;
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
  // topology (24..31), writeback (32), num_queues (34): features not offered.
  put<uint32_t>(c, 36, kMaxDiscardSectors);
  put<uint32_t>(c, 40, kMaxDiscardSeg);
  put<uint32_t>(c, 44, 1);  // discard_sector_alignment, in sectors
  put<uint32_t>(c, 48, kMaxWriteZeroesSectors);
  put<uint32_t>(c, 52, kMaxWriteZeroesSeg);
  c[56] = 1;  // write_zeroes_may_unmap
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < kConfigSize ? c[offset + i] : 0;
}

void VirtioBlk::activate(std::span<Virtqueue> queues, uint64_t /*features*/) {
  queue_ = queues[0].active() ? &queues[0] : nullptr;
  inflight_ = 0;
  throttled_ = false;
}

void VirtioBlk::reset() {
  std::unique_lock<std::mutex> lock(mu_);
  // Requests not started yet are dropped; the one in progress finishes first, so nothing
  // touches guest memory once this returns.
  for (auto& r : pending_) free_.push_back(std::move(r));
  pending_.clear();
  idle_cv_.wait(lock, [&] { return !busy_; });
  for (auto& r : done_) free_.push_back(std::move(r));
  done_.clear();
  queue_ = nullptr;
  inflight_ = 0;
  throttled_ = false;
}

void VirtioBlk::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return !busy_ && pending_.empty(); });
}

void VirtioBlk::close_disk() {
  wait_idle();
  std::lock_guard<std::mutex> lock(mu_);
  disk_.reset();
}

uint64_t VirtioBlk::completed_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

void VirtioBlk::queue_notify(uint16_t queue) {
  if (queue == 0) process_queue();
}

void VirtioBlk::finish_now(Request& req, uint8_t status) {
  *req.status = status;
  queue_->push_used(req.head, req.written ? req.written : 1);
}

void VirtioBlk::process_queue() {
  if (!queue_) return;
  bool used = false, handed = false;
  for (;;) {
    // A driver may offer chains faster than the disk completes them (even reuse heads it
    // has not got back): never hold more than one queue's worth.
    if (inflight_ >= queue_->size) {
      throttled_ = true;
      break;
    }
    if (queue_->pop(chain_) != Virtqueue::Pop::kChain) break;
    if (chain_.writable_bytes == 0) {
      context_->fail("virtio-blk: request without a device-writable status byte");
      break;
    }
    std::unique_ptr<Request> req;
    if (free_.empty()) {
      req = std::make_unique<Request>();
    } else {
      req = std::move(free_.back());
      free_.pop_back();
    }
    uint8_t status = kBlkStatusOk;
    if (!parse(*req, status)) {
      finish_now(*req, status);
      used = true;
      free_.push_back(std::move(req));
      continue;
    }
    ++inflight_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(std::move(req));
    }
    handed = true;
  }
  if (handed) work_cv_.notify_one();
  if (used) context_->signal_used(0);
}

bool VirtioBlk::parse(Request& req, uint8_t& status) {
  req.head = chain_.head;
  req.in.clear();
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
      req.in.push_back(s.subspan(0, n));
      left -= n;
    }
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
      if (s.size() > kSizeMax) return false;
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
      if (!segments_ok(req.in) || in_bytes % kSector != 0 || !in_range(in_bytes)) {
        status = kBlkStatusIoErr;
        return false;
      }
      req.written = static_cast<uint32_t>(in_bytes + 1);
      return true;
    case kBlkTypeOut:
      collect_out();
      if (read_only_ || !segments_ok(req.out) || out_bytes % kSector != 0 || !in_range(out_bytes)) {
        status = kBlkStatusIoErr;
        return false;
      }
      return true;
    case kBlkTypeFlush:
      return true;
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

// Worker thread. Segments are copied out of guest memory once, all checked, then applied.
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

void VirtioBlk::execute(Request& req) {
  uint8_t status = kBlkStatusOk;
  try {
    if (!disk_) throw Error("DISK_IO", "the disk is closed");
    switch (req.type) {
      case kBlkTypeIn: disk_->readv(req.sector * kSector, req.in); break;
      case kBlkTypeOut: disk_->writev(req.sector * kSector, req.out); break;
      case kBlkTypeFlush:
        if (!read_only_) disk_->flush();
        break;
      case kBlkTypeDiscard:
      case kBlkTypeWriteZeroes: status = do_segments(req); break;
      default: status = kBlkStatusUnsupp; break;
    }
  } catch (const std::exception&) {
    status = kBlkStatusIoErr;
  }
  if (status != kBlkStatusOk) req.written = 1;
  *req.status = status;
}

void VirtioBlk::worker_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
    if (stop_) return;
    std::unique_ptr<Request> req = std::move(pending_.front());
    pending_.pop_front();
    busy_ = true;
    lock.unlock();
    execute(*req);
    lock.lock();
    done_.push_back(std::move(req));
    ++completed_;
    // Posted while still busy: reset() (and the transport's destruction after it) waits
    // for busy_ to drop, so the transport is alive here.
    context_->post_completion();
    busy_ = false;
    idle_cv_.notify_all();
  }
}

void VirtioBlk::complete() {
  std::vector<std::unique_ptr<Request>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(done_);
  }
  if (batch.empty() || !queue_) return;
  for (auto& r : batch) {
    queue_->push_used(r->head, r->written);
    if (inflight_) --inflight_;
    free_.push_back(std::move(r));
  }
  context_->signal_used(0);
  if (throttled_) {
    throttled_ = false;
    process_queue();
  }
}

}  // namespace berth::devices::virtio
