// A hard disk on the SCSI controller (SBC-3 direct-access block device over SPC-4), as on
// Hyper-V's Generation 2 VMs: one logical unit over a disk::BlockDevice (raw, qcow2,
// VHDX, ...) with the image's logical block size (512 bytes for every format today).
//
// Reads, writes and SYNCHRONIZE CACHE go to the disk's asynchronous path through the
// transport (target.h); everything else is answered at once. The write cache is reported
// enabled (caching page WCE=1; the host's page cache stands behind writes), so guests send
// SYNCHRONIZE CACHE to make data durable; FUA is not offered (DPOFUA=0). A read-only disk
// reports write protect (MODE SENSE's WP bit) and refuses writes with DATA PROTECT / WRITE
// PROTECTED. No thin provisioning is offered: UNMAP and WRITE SAME are unknown commands,
// READ CAPACITY(16) says LBPME=0 (the disk layer's discard runs synchronously only, and
// virtio-blk remains the path for guests that want discard). VERIFY checks the range only
// (BYTCHK=0; byte comparison is refused). There are no unit attentions: the medium never
// changes under the guest.
//
// I/O failures end in MEDIUM ERROR (UNRECOVERED READ ERROR for a read, WRITE ERROR for a
// write or a flush), a full host disk in DATA PROTECT / SPACE ALLOCATION FAILED WRITE
// PROTECT, and set last_error() for the host.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "devices/scsi/target.h"

namespace berth::devices::scsi {

class ScsiDisk final : public Target {
 public:
  // Largest transfer one command may ask for (Block Limits' MAXIMUM TRANSFER LENGTH): the
  // virtio-scsi controller's max_sectors of 512 bytes.
  static constexpr uint64_t kMaxTransferBytes = 0xffffull * 512;
  static constexpr size_t kMaxSerial = 20;

  // serial: the unit serial number page's text (at most 20 bytes; longer is cut).
  // read_only: write protected (also when the BlockDevice itself is read-only). Opens the
  // disk's asynchronous path; throws its berth::Error if that fails, and DISK_SIZE for a
  // disk smaller than one logical block.
  ScsiDisk(std::unique_ptr<disk::BlockDevice> disk, std::string serial, bool read_only = false);

  Command execute(std::span<const uint8_t> cdb) override;
  Reply finish_io(const IoPlan& plan, int64_t result, const std::string& error) override;
  void bus_reset() override {}  // nothing a reset drops: no reservations, no unit attention

  // Record "scsi-disk": block size, block count and write protect. A record made for
  // another disk (other size, block size or read-only setting) is refused (STATE_INVALID).
  void save_state(state::Writer& w) const override;
  std::function<void()> prepare_load(state::Reader& r) override;

  bool read_only() const { return read_only_; }
  uint32_t block_size() const { return block_size_; }
  uint64_t blocks() const { return blocks_; }
  // Any thread. path and io_backend describe the image in use ("" once closed).
  std::string path() const;
  std::string io_backend() const;
  // The last failure the host should hear about (an I/O error); "" when none.
  std::string last_error() const;
  // Reads, writes and flushes completed on the disk (diagnostics).
  uint64_t completed_io() const { return completed_io_.load(std::memory_order_relaxed); }

  // Live checkpoints, as VirtioBlk's (only while the controller is frozen, nothing in
  // flight). flush_disk makes everything written durable in the image, metadata included.
  // replace_disk moves the target onto another image of the same size and block size
  // (DISK_SIZE_MISMATCH otherwise; DISK_READ_ONLY for a read-only image behind a
  // read-write disk); if opening its asynchronous path fails, the old image stays.
  void flush_disk();
  void replace_disk(std::unique_ptr<disk::BlockDevice> disk);
  // The machine stopped for good: closes the image (after the controller's reset, so
  // nothing is in flight). Later commands end in NOT READY.
  void close_disk();

 private:
  ScsiDisk(std::shared_ptr<Medium> medium, std::string serial, bool read_only);
  // Commands, with mu_ held (pages and capacity in disk_pages.cc).
  Command dispatch(std::span<const uint8_t> cdb) const;
  Command transfer(std::span<const uint8_t> cdb) const;
  Command synchronize_cache(std::span<const uint8_t> cdb) const;
  Reply verify(std::span<const uint8_t> cdb) const;
  Reply inquiry(std::span<const uint8_t> cdb) const;
  Reply vpd_page(uint8_t page, uint16_t allocation) const;
  Reply read_capacity10(std::span<const uint8_t> cdb) const;
  Reply read_capacity16(std::span<const uint8_t> cdb) const;
  Reply mode_sense(std::span<const uint8_t> cdb) const;
  // Whether [lba, lba + count) lies on the disk.
  bool in_range(uint64_t lba, uint64_t count) const { return lba <= blocks_ && count <= blocks_ - lba; }

  const std::string serial_;
  const bool read_only_;
  const uint32_t block_size_;
  const uint64_t blocks_;
  mutable std::mutex mu_;
  std::shared_ptr<Medium> medium_;  // the disk and its asynchronous path; null once closed
  std::string last_error_;
  std::atomic<uint64_t> completed_io_{0};
};

}  // namespace berth::devices::scsi
