// A CFI parallel flash (Intel command set, 8 bits wide) backed by a file: the firmware's
// code (read-only) and its variable store (writable), mapped just below 4 GiB. It does
// what OVMF's QemuFlashFvbServicesRuntimeDxe (QemuFlash.c) asks and QEMU's
// hw/block/pflash_cfi01.c answers:
//   0xff / 0x00 / 0xf0  read array (also any unknown command, as on QEMU)
//   0x10 / 0x40, data   program the bytes written (QEMU overwrites rather than ANDs)
//   0x20, 0xd0          erase the 4 KiB block holding the confirm's address to 0xff
//   0x50                clear status, back to read array
//   0x70                read status (0x80 ready; 0x10 program error, 0x20 erase error)
//   0x90                read ID (offset 0 manufacturer kManufacturerId, 1 kDeviceId, else 0)
//   0x98                CFI query ("QRY" at 0x10, geometry from 0x27)
//   0x60, 0xd0 / 0x01   block (un)lock: accepted, nothing is ever locked
// After a program or erase, reads return the status until a read-array command, as on
// real parts and QEMU. OVMF 2022.11 detects flash by 0x50, read (the byte), 0x70, read
// (must be 0x00: status cleared), 0xff; later OVMF also programs the byte back and checks
// the status for 0x10. Read-only flash answers the byte itself ("behaves as ROM").
//
// The file is mapped once: read-only flash MAP_PRIVATE with PROT_READ, writable flash
// MAP_SHARED so programmed bytes reach the file; when the guest returns to read-array mode
// (or reads the status) after changing the flash, the changed pages are msync'ed, so a
// crash loses nothing the guest was told was written.
//
// The machine maps memory() as a read-only KVM memory slot while array_mode() is true
// (reads then never exit; writes exit as MMIO and reach write()), and unmaps it when the
// mode callback says array mode is off (reads must then reach read() for the status, ID
// or CFI answers). read() is correct in both modes. Writes to read-only flash are ignored
// and counted; it never leaves array mode.
//
// Thread-safe: one mutex guards the command state; the mode callback runs with it held
// (so mode changes reach the machine in order) and must not call back into this device.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "common/state_stream.h"
#include "vmm/bus_device.h"

namespace berth::devices::platform {

class Pflash : public vmm::BusDevice {
 public:
  // OVMF's FDF: BLOCK_SIZE 0x1000 for the 1, 2 and 4 MiB builds (QEMU's sector length).
  static constexpr uint64_t kBlockSize = 0x1000;
  // Code and variable store together must stay above the local APIC (0xfee00000).
  static constexpr uint64_t kMaxSize = 16ull << 20;
  static constexpr uint8_t kManufacturerId = 0x89;  // Intel
  static constexpr uint8_t kDeviceId = 0x18;
  static constexpr uint8_t kStatusReady = 0x80, kStatusEraseError = 0x20,
                           kStatusProgramError = 0x10;

  enum class Access { kReadOnly, kWritable };
  using ModeCallback = std::function<void(bool array_mode)>;

  // Maps `path`. Throws FLASH_FILE when it cannot be opened (missing, or not writable for
  // kWritable), FLASH_SIZE when its size is 0, not a multiple of kBlockSize or above
  // kMaxSize, FLASH_LAYOUT when a variable store's firmware-volume header gives another
  // length than the file's.
  Pflash(const std::string& path, Access access);
  ~Pflash() override;
  Pflash(const Pflash&) = delete;
  Pflash& operator=(const Pflash&) = delete;

  // The variable-store size OVMF's build expects beside a code image of code_size bytes
  // (0x84000 for the 4 MiB build's 0x37c000, 0x20000 for the 1 and 2 MiB builds), if known.
  static std::optional<uint64_t> expected_vars_size(uint64_t code_size);
  // Throws FLASH_LAYOUT when vars does not fit code's layout, FLASH_SIZE when both together
  // exceed kMaxSize.
  static void check_pair(const Pflash& code, const Pflash& vars);

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  bool read_only() const { return access_ == Access::kReadOnly; }
  // The mapping, for the machine's read-only memory slot.
  std::span<uint8_t> memory() const { return {base_, static_cast<size_t>(size_)}; }

  void set_mode_callback(ModeCallback callback);
  bool array_mode() const;
  uint8_t status() const;
  uint64_t ignored_writes() const;  // writes to read-only flash

  // offset < size(); accesses of 1, 2, 4 or 8 bytes (little-endian), clipped at the end.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Read-array mode, status ready (what QEMU's reset gives); flushes pending changes.
  void reset();

  // Saved state: record "pflash" with the command, its write cycle and the status. The
  // contents are the file itself. A state read-only flash cannot be in, or a command and
  // cycle the device never enters, throw STATE_INVALID and change nothing.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  void set_command(uint8_t cmd, uint8_t cycle);
  void to_array_mode();
  void command(uint64_t offset, uint8_t value, std::span<const uint8_t> data);
  uint8_t query_byte(uint64_t offset) const;
  void mark_dirty(uint64_t offset, uint64_t length);
  void flush();

  std::string path_;
  Access access_;
  uint64_t size_ = 0;
  uint8_t* base_ = nullptr;

  mutable std::mutex mu_;
  ModeCallback on_mode_;
  uint8_t cmd_ = 0;    // 0: read array
  uint8_t cycle_ = 0;  // 1: the command waits for its data or confirm
  uint8_t status_ = kStatusReady;
  uint64_t ignored_writes_ = 0;
  uint64_t dirty_begin_ = 0, dirty_end_ = 0;  // bytes changed since the last msync
};

}  // namespace berth::devices::platform
