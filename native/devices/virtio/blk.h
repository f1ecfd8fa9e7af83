// virtio-blk (virtio 1.x 5.2, device id 2) over one disk::BlockDevice, with one request
// queue per vCPU up to kMaxQueues (VIRTIO_BLK_F_MQ). Requests are parsed and checked on the
// transport's I/O thread and handed to the disk's asynchronous path (disk/async_disk.h:
// io_uring, a thread pool, or the driver on a thread of its own for formats without a
// parallel path), up to kDepth in flight at once, from all queues together; they complete
// in whatever order the disk finishes them. The disk signals completions on the
// transport's completion eventfd, so the I/O thread never blocks on the disk.
//
// Order where it matters: a request that overlaps one in flight, where either writes,
// waits until that one is done (and everything queued behind it waits too, so requests
// leave the device's backlog in arrival order); FLUSH is a barrier in the disk's queue,
// covering every write before it; DISCARD and WRITE_ZEROES go through the synchronous
// driver once nothing else is in flight.
//
// A request the device can answer is answered: a short header, a missing data area, a
// sector range outside the disk, a length that is not a multiple of 512, more segments
// than SEG_MAX, a segment longer than SIZE_MAX, a write to a read-only disk or an I/O
// failure of the image give VIRTIO_BLK_S_IOERR, an unknown type or flags
// VIRTIO_BLK_S_UNSUPP. Only a chain without a device-writable byte for the status (or a
// malformed queue) leaves no way to answer: that sets DEVICE_NEEDS_RESET.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/virtio_device.h"
#include "disk/async_disk.h"
#include "disk/block_device.h"

namespace berth::devices::virtio {

// Feature bits (virtio 1.x 5.2.3).
constexpr uint64_t kBlkFeatureSizeMax = 1ull << 1;
constexpr uint64_t kBlkFeatureSegMax = 1ull << 2;
constexpr uint64_t kBlkFeatureRo = 1ull << 5;
constexpr uint64_t kBlkFeatureBlkSize = 1ull << 6;
constexpr uint64_t kBlkFeatureFlush = 1ull << 9;
constexpr uint64_t kBlkFeatureMq = 1ull << 12;
constexpr uint64_t kBlkFeatureDiscard = 1ull << 13;
constexpr uint64_t kBlkFeatureWriteZeroes = 1ull << 14;

// Request types and status values (virtio 1.x 5.2.6).
constexpr uint32_t kBlkTypeIn = 0;
constexpr uint32_t kBlkTypeOut = 1;
constexpr uint32_t kBlkTypeFlush = 4;
constexpr uint32_t kBlkTypeGetId = 8;
constexpr uint32_t kBlkTypeDiscard = 11;
constexpr uint32_t kBlkTypeWriteZeroes = 13;
constexpr uint8_t kBlkStatusOk = 0;
constexpr uint8_t kBlkStatusIoErr = 1;
constexpr uint8_t kBlkStatusUnsupp = 2;
constexpr uint32_t kBlkDiscardFlagUnmap = 1;
constexpr size_t kBlkIdBytes = 20;

class VirtioBlk final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Requests on the disk at once, from all queues (the disk layer's bound).
  static constexpr unsigned kDepth = disk::kMaxInFlight;
  // Request queues at most (one per vCPU up to this: more buys nothing on a device whose
  // requests all meet on one I/O thread).
  static constexpr uint16_t kMaxQueues = 8;
  // Data segments per request (descriptors other than the header and the status).
  static constexpr uint32_t kSegMax = kQueueSize - 2;
  // Largest data segment; requests are at most kSegMax * kSizeMax bytes.
  static constexpr uint32_t kSizeMax = 1u << 22;
  static constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per segment
  static constexpr uint32_t kMaxDiscardSeg = 32;
  static constexpr uint32_t kMaxWriteZeroesSectors = 1u << 22;
  static constexpr uint32_t kMaxWriteZeroesSeg = 32;
  static constexpr uint32_t kConfigSize = 60;  // struct virtio_blk_config up to unused1

  // serial: GET_ID's answer (at most 20 bytes; longer is cut). read_only: the disk is
  // offered with VIRTIO_BLK_F_RO (also when the BlockDevice itself is read-only). queues:
  // request queues (1..kMaxQueues; more than one offers VIRTIO_BLK_F_MQ). Opens the disk's
  // asynchronous path; throws its berth::Error if that fails.
  VirtioBlk(std::unique_ptr<disk::BlockDevice> disk, std::string serial, bool read_only = false,
            uint16_t queues = 1);
  ~VirtioBlk() override;  // waits for the requests on the disk

  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t device_features() const override;
  uint16_t queue_count() const override { return static_cast<uint16_t>(queues_.size()); }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  uint32_t config_size() const override { return kConfigSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void complete() override;
  void reset() override;

  // Transport freeze: carries out every request taken from the queues (the backlog too),
  // answering each on its used ring; chains still in the available rings wait for thaw.
  void freeze() override;
  void thaw() override;
  // Record "virtio-blk": capacity, read-only, queue count and the completed-requests
  // counter. load_state refuses a record made for another disk size, read-only setting or
  // queue count. Nothing is in flight while frozen, so no request is part of the record;
  // the negotiated features are the transport's, which activates the device with them.
  void save_state(state::Writer& w) const override;
  void load_state(state::Reader& r) override;

  // Live checkpoints, only while the transport is frozen and the vCPUs paused
  // (VIRTIO_SETUP otherwise). flush_disk makes everything written so far durable in the
  // image, metadata included, so that it can be opened again (as a new overlay's backing
  // file, say). replace_disk moves the device onto another image of the same capacity
  // (DISK_SIZE_MISMATCH otherwise; DISK_READ_ONLY for a read-only image behind a
  // read-write device): the old image's asynchronous path is closed and the image freed,
  // the new one's opened (if that fails, the old image stays in use and its error is
  // thrown); the queues are kept. path() and io_backend() then describe the new image.
  void flush_disk();
  void replace_disk(std::unique_ptr<disk::BlockDevice> disk);

  // The machine stopped for good: closes the image (after reset(), so no request is in
  // flight). Later requests, if any, get IOERR.
  void close_disk();

  // Without a transport thread (tests and fuzzing): carries out everything the queues
  // hold, waiting for the disk, and returns when nothing is left in flight.
  void run_until_idle();

  bool read_only() const { return read_only_; }
  const std::string& path() const { return path_; }
  // The disk's asynchronous path, chosen when the device was made: "io_uring", "threads"
  // or "serial".
  const std::string& io_backend() const { return io_backend_; }
  // Requests completed since creation, and the most that were on the disk at once
  // (diagnostics and tests; any thread).
  uint64_t completed_requests() const { return completed_.load(std::memory_order_relaxed); }
  unsigned peak_in_flight() const { return peak_in_flight_.load(std::memory_order_relaxed); }

 private:
  struct Request {
    uint16_t queue = 0;
    uint16_t head = 0;
    uint32_t type = 0;
    uint64_t sector = 0;
    uint64_t begin = 0, end = 0;                // bytes of the disk an IN or OUT covers
    std::vector<iovec> data;                    // IN: where the data goes; OUT: the data
    std::vector<std::span<const uint8_t>> out;  // DISCARD/WRITE_ZEROES: the segment list
    uint8_t* status = nullptr;
    uint32_t written = 0;  // bytes of the writable part used (data + status)
  };
  struct QueueState {
    Virtqueue* ring = nullptr;  // nullptr while the driver has not enabled it
    uint32_t outstanding = 0;   // popped and not yet pushed to the used ring
    bool throttled = false;     // stopped popping because outstanding reached the size
    bool used = false;          // pushed to the used ring since the last signal
  };

  void run();
  void signal_answered();
  void require_frozen(const char* what) const;
  bool pop_queue(uint16_t queue);
  // Parses the chain into req; returns false with *status set for a request answered at once.
  bool parse(Request& req, uint8_t& status);
  bool start_backlog();
  bool take_completions(unsigned wait_for);
  bool conflicts(const Request& req) const;
  uint8_t do_segments(const Request& req);
  void finish(Request* req, uint8_t status);
  Request* new_request();
  void drop_everything();

  std::unique_ptr<disk::BlockDevice> disk_;
  std::unique_ptr<disk::AsyncDisk> aio_;  // after disk_: destroyed first
  std::string serial_;
  std::string path_;
  std::string io_backend_;
  bool read_only_;
  uint64_t capacity_sectors_;
  uint32_t blk_size_;
  bool completion_fd_set_ = false;
  std::atomic<bool> frozen_{false};  // between the transport's freeze and thaw

  // I/O thread state (under the transport lock).
  std::vector<QueueState> queues_;
  Chain chain_;
  std::deque<Request*> backlog_;   // parsed, waiting for the disk, in arrival order
  std::vector<Request*> on_disk_;  // submitted to aio_, not yet completed
  std::vector<std::unique_ptr<Request>> pool_;
  std::vector<Request*> free_;

  std::atomic<uint64_t> completed_{0};
  std::atomic<unsigned> peak_in_flight_{0};
};

}  // namespace berth::devices::virtio
