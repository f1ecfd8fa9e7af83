// virtio-scsi (virtio 1.2 section 5.6, device id 8): a SCSI controller whose targets are
// scsi::Target logical units (hard disks and DVD drives), one per target number, each
// with LUN 0.
// Queue 0 is the control queue (task management and asynchronous notification queries,
// answered at once), queue 1 the event queue (buffers are left there: no event is ever
// sent, as no feature that needs one is offered; guests learn of DVD media changes by
// polling, see devices/scsi/cdrom.h), queue 2 the one request queue.
//
// Requests are checked on the transport's I/O thread and answered there, except a medium's
// reads, writes and cache flushes: those go to the medium's asynchronous disk path
// (disk/async_disk.h) straight between the disk and the guest's data buffers, and are
// answered from complete() when the disk is done, so the I/O thread never waits for the
// disk. Requests that overlap where either writes run one after the other, in arrival
// order (the backlog waits behind the first that must wait).
//
// Addressing (5.6.6.1): lun[0] = 1, lun[1] = target, lun[2..3] the LUN in flat (01b) or
// peripheral (00b) form, lun[4..7] zero. Anything else, or a target number without a
// target, is answered VIRTIO_SCSI_S_BAD_TARGET; a well-formed LUN other than 0 of an
// existing target is the SCSI layer's business (INQUIRY "no device", LOGICAL UNIT NOT
// SUPPORTED). A request too short for its header is answered VIRTIO_SCSI_S_FAILURE, a
// read larger than its data-in buffers (a write larger than its data-out buffers)
// VIRTIO_SCSI_S_OVERRUN; only a chain without room
// for the response's status fields sets DEVICE_NEEDS_RESET.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "devices/scsi/target.h"
#include "devices/virtio/virtio_device.h"

namespace berth::devices::virtio {

constexpr uint32_t kDeviceIdScsi = 8;

// virtio_scsi_cmd_resp.response and the task management responses (5.6.6.1, 5.6.6.2).
constexpr uint8_t kScsiSOk = 0;  // also FUNCTION_COMPLETE
constexpr uint8_t kScsiSOverrun = 1;
constexpr uint8_t kScsiSBadTarget = 3;
constexpr uint8_t kScsiSFailure = 9;
constexpr uint8_t kScsiSFunctionRejected = 11;
// Control queue request types and task management functions.
constexpr uint32_t kScsiTTmf = 0;
constexpr uint32_t kScsiTAnQuery = 1;
constexpr uint32_t kScsiTAnSubscribe = 2;
constexpr uint32_t kScsiTmfAbortTask = 0;
constexpr uint32_t kScsiTmfClearAca = 2;
constexpr uint32_t kScsiTmfItNexusReset = 4;
constexpr uint32_t kScsiTmfLogicalUnitReset = 5;
constexpr uint32_t kScsiTmfQueryTaskSet = 7;

class VirtioScsi final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kControlQueue = 0;
  static constexpr uint16_t kEventQueue = 1;
  static constexpr uint16_t kRequestQueue = 2;
  static constexpr size_t kMaxTargets = 64;      // as Hyper-V's SCSI controller
  static constexpr uint32_t kDefaultCdbSize = 32;
  static constexpr uint32_t kDefaultSenseSize = 96;
  static constexpr uint32_t kMaxCdbSize = 256;   // driver writes above these are ignored
  static constexpr uint32_t kMaxSenseSize = 256;
  static constexpr uint32_t kSegMax = kQueueSize - 2;
  static constexpr uint32_t kMaxSectors = 0xffff;  // 512-byte units per request
  static constexpr uint32_t kConfigSize = 36;      // struct virtio_scsi_config
  static constexpr size_t kCmdHeaderBytes = 19;    // lun, id, task_attr, prio, crn (before the CDB)
  static constexpr size_t kRespHeaderBytes = 12;   // sense_len, residual, status_qualifier, status, response

  // targets[i] answers target number i (at most kMaxTargets of them, none null;
  // VIRTIO_SETUP otherwise). No targets is a controller with nothing behind it (every
  // request BAD_TARGET). The machine keeps its own references to work the drives.
  explicit VirtioScsi(std::vector<std::shared_ptr<scsi::Target>> targets);
  ~VirtioScsi() override;  // waits for the reads on the disk

  uint32_t device_id() const override { return kDeviceIdScsi; }
  uint64_t device_features() const override { return 0; }
  uint16_t queue_count() const override { return 3; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  uint32_t config_size() const override { return kConfigSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;
  void write_config(uint32_t offset, std::span<const uint8_t> data) override;

  void activate(std::span<Virtqueue> queues, uint64_t features) override;
  void queue_notify(uint16_t queue) override;
  void complete() override;
  // Drops the reads in flight (waiting for the disk), restores cdb_size and sense_size,
  // and resets every target's bus state (a guest's tray lock goes with it).
  void reset() override;
  void freeze() override;
  void thaw() override;

  // Record "virtio-scsi": target count, cdb_size, sense_size, then each target's record.
  // load_state refuses a record for another number of targets and changes nothing then.
  const char* name() const override { return "virtio-scsi"; }
  void save_state(state::Writer& w) const override;
  void load_state(state::Reader& r) override;

  // Without a transport thread (tests and fuzzing): carries out what the queues hold,
  // waiting for the disk, until nothing is in flight.
  void run_until_idle();
  uint64_t completed_requests() const { return completed_.load(std::memory_order_relaxed); }

 private:
  struct Request {
    uint16_t head = 0;
    uint16_t target = 0;
    std::vector<std::span<uint8_t>> writable;  // the chain's device-writable buffers
    uint64_t response_bytes = 0;               // of writable, before the data-in buffers
    uint64_t data_in_bytes = 0;
    uint64_t data_out_bytes = 0;               // of the readable part, after the CDB
    bool writes = false;                       // plan is a write: data holds data-out buffers
    scsi::IoPlan plan;
    std::vector<iovec> data;  // the buffers the read fills or the write takes
  };

  void run();
  void control();
  void requests();
  void answer_tmf(uint8_t& response, uint32_t subtype, uint16_t target);
  // Whether lun addresses an existing target; sets target and lun.
  bool address(const uint8_t* lun8, uint16_t& target, uint16_t& lun) const;
  void respond(Request& req, uint8_t response, const scsi::Reply* reply, uint64_t transferred);
  bool conflicts(const Request& req) const;
  bool start_backlog();
  bool take_completions(bool wait);
  void finish_io(Request* req, int64_t result, const std::string& error);
  void drain();           // answers everything taken from the queue
  void drop_everything(); // answers nothing; waits for the disk
  Request* new_request();
  void release(Request* req);

  std::vector<std::shared_ptr<scsi::Target>> targets_;
  uint32_t cdb_size_ = kDefaultCdbSize;
  uint32_t sense_size_ = kDefaultSenseSize;
  std::atomic<bool> frozen_{false};

  // I/O thread state (under the transport lock).
  Virtqueue* control_ = nullptr;
  Virtqueue* request_ = nullptr;
  bool request_used_ = false;
  uint32_t outstanding_ = 0;  // taken from the request queue, not yet answered
  Chain chain_;
  std::deque<Request*> backlog_;   // reads waiting for room on their medium's path
  std::vector<Request*> on_disk_;  // reads submitted
  std::vector<std::unique_ptr<Request>> pool_;
  std::vector<Request*> free_;
  std::atomic<uint64_t> completed_{0};
};

}  // namespace berth::devices::virtio
