// virtio-blk (virtio 1.x 5.2, device id 2) over one disk::BlockDevice, with one request
// queue. Requests are parsed and checked on the transport's I/O thread; the disk I/O runs
// on the device's own worker thread (a BlockDevice is not thread-safe: this worker is its
// only user while the device exists), strictly in arrival order, so writes reach the image
// in the order the driver queued them and FLUSH covers everything queued before it. The
// worker hands finished requests back through DeviceContext::post_completion().
//
// A request the device can answer is answered: a short header, a missing data area, a
// sector range outside the disk, a length that is not a multiple of 512, more segments
// than SEG_MAX, a segment longer than SIZE_MAX, a write to a read-only disk or an I/O
// failure of the image give VIRTIO_BLK_S_IOERR, an unknown type or flags
// VIRTIO_BLK_S_UNSUPP. Only a chain without a device-writable byte for the status (or a
// malformed queue) leaves no way to answer: that sets DEVICE_NEEDS_RESET.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/virtio_device.h"
#include "disk/block_device.h"

namespace berth::devices::virtio {

// Feature bits (virtio 1.x 5.2.3).
constexpr uint64_t kBlkFeatureSizeMax = 1ull << 1;
constexpr uint64_t kBlkFeatureSegMax = 1ull << 2;
constexpr uint64_t kBlkFeatureRo = 1ull << 5;
constexpr uint64_t kBlkFeatureBlkSize = 1ull << 6;
constexpr uint64_t kBlkFeatureFlush = 1ull << 9;
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
  // offered with VIRTIO_BLK_F_RO (also when the BlockDevice itself is read-only).
  VirtioBlk(std::unique_ptr<disk::BlockDevice> disk, std::string serial, bool read_only = false);
  ~VirtioBlk() override;  // stops and joins the worker

  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t device_features() const override;
  uint16_t queue_count() const override { return 1; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  uint32_t config_size() const override { return kConfigSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void complete() override;
  void reset() override;

  // The machine stopped for good: closes the image (after reset(), so no request is in
  // flight). Later requests, if any, get IOERR.
  void close_disk();

  // Blocks until the worker has nothing queued or running (tests and fuzzing).
  void wait_idle();

  bool read_only() const { return read_only_; }
  // Requests completed since creation (diagnostics and tests).
  uint64_t completed_requests() const;

 private:
  struct Request {
    uint16_t head = 0;
    uint32_t type = 0;
    uint64_t sector = 0;
    std::vector<std::span<uint8_t>> in;         // IN: where the data goes
    std::vector<std::span<const uint8_t>> out;  // OUT: the data; DISCARD/WRITE_ZEROES: segments
    uint8_t* status = nullptr;
    uint32_t written = 0;  // bytes of the writable part used (data + status)
  };

  void process_queue();
  // Parses the chain into req; returns false with *status set for a request answered at once.
  bool parse(Request& req, uint8_t& status);
  void execute(Request& req);  // worker thread
  uint8_t do_segments(const Request& req);
  void finish_now(Request& req, uint8_t status);
  void worker_loop();

  std::unique_ptr<disk::BlockDevice> disk_;
  std::string serial_;
  bool read_only_;
  uint64_t capacity_sectors_;
  uint32_t blk_size_;

  // I/O thread state (under the transport lock).
  Virtqueue* queue_ = nullptr;
  Chain chain_;
  uint32_t inflight_ = 0;   // handed to the worker, not yet pushed to the used ring
  bool throttled_ = false;  // stopped popping because inflight_ reached the queue size
  std::vector<std::unique_ptr<Request>> free_;

  // Shared with the worker.
  mutable std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  std::deque<std::unique_ptr<Request>> pending_;
  std::vector<std::unique_ptr<Request>> done_;
  bool busy_ = false;
  bool stop_ = false;
  uint64_t completed_ = 0;
  std::thread worker_;
};

}  // namespace berth::devices::virtio
