// MSI-X (PCI Local Bus 3.0, 6.8.2): a table of message address/data pairs with a per-vector
// mask, and the pending-bit array (PBA) for messages held back by a mask. The function's
// MSI-X capability (enable, function mask) lives in its configuration space; its owner
// passes those bits in.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/state_stream.h"

namespace berth::devices::virtio {

// Where MSI messages go: the machine writes them to the interrupt controllers
// (KVM_SIGNAL_MSI). Thread-safe; never calls back into the device.
class MsiSink {
 public:
  virtual ~MsiSink() = default;
  virtual void send_msi(uint64_t address, uint32_t data) = 0;
};

// The MSI-X capability's message control bits.
constexpr uint16_t kMsixControlTableSizeMask = 0x07ff;  // vectors - 1
constexpr uint16_t kMsixControlFunctionMask = 1 << 14;
constexpr uint16_t kMsixControlEnable = 1 << 15;
constexpr uint8_t kCapabilityIdMsix = 0x11;
constexpr uint32_t kMsixEntrySize = 16;
constexpr uint32_t kMsixVectorMasked = 1;  // vector control bit 0

// Not thread-safe: the owner serializes every call.
class MsixTable {
 public:
  // vectors: 1..2048.
  explicit MsixTable(uint16_t vectors);

  uint16_t vectors() const { return vectors_; }
  uint32_t table_bytes() const { return uint32_t{vectors_} * kMsixEntrySize; }
  uint32_t pba_bytes() const { return static_cast<uint32_t>(pending_.size()) * 8; }

  // Guest accesses inside the table or the PBA: aligned 4- or 8-byte accesses (PCI 6.8.2);
  // others read 0 and are dropped, as are offsets beyond the table or PBA and writes to the
  // PBA. A table write that unmasks a vector delivers its pending message.
  void read_table(uint64_t offset, std::span<uint8_t> data) const;
  void write_table(uint64_t offset, std::span<const uint8_t> data, bool function_masked, MsiSink& sink);
  void read_pba(uint64_t offset, std::span<uint8_t> data) const;

  // Sends vector `vector`'s message, or sets its pending bit while it or the function is
  // masked. A vector out of range is ignored.
  void fire(uint16_t vector, bool function_masked, MsiSink& sink);
  // Sends (and clears) every pending message whose vector is no longer masked: after the
  // function mask was cleared or MSI-X enabled.
  void deliver_pending(bool function_masked, MsiSink& sink);
  bool pending(uint16_t vector) const;
  bool masked(uint16_t vector) const;
  void clear_pending();
  // Power-on: every entry zero and masked, nothing pending.
  void reset();

  // Saved state (inside the owner's record): the entries and the pending bits. load_state
  // reads into this table; use it on a scratch copy to check a record before applying it.
  // Vector control bits other than the mask, and pending bits beyond the vectors, are
  // STATE_INVALID.
  void save_state(state::Writer& w) const;
  void load_state(state::Reader& r);

 private:
  struct Entry {
    uint32_t address_low = 0, address_high = 0, data = 0, control = kMsixVectorMasked;
  };
  static uint32_t& field(Entry& e, uint64_t dword);
  static uint32_t field(const Entry& e, uint64_t dword);
  void send(uint16_t vector, MsiSink& sink) const;

  uint16_t vectors_;
  std::vector<Entry> entries_;
  std::vector<uint64_t> pending_;
};

}  // namespace berth::devices::virtio
