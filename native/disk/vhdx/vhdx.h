// VHDX ([MS-VHDX]) driver internals that tests and tools may need: the checksum the
// format uses and, in test builds, a fault-injection hook for the metadata log.
#pragma once

#include <cstdint>
#include <span>

namespace berth::disk::vhdx {

// CRC-32C (Castagnoli), as used by VHDX headers, region tables and log entries.
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

#ifdef BERTH_TEST_HOOKS
// Test builds only (native/tests/Makefile). When set, the next metadata update writes and
// flushes its log entry, then throws DISK_IO ("test fault injection") instead of applying
// the entry to its final locations, and the device stops writing (its destructor leaves
// the file alone), so the next open must replay the log. Reset by the driver when it fires.
namespace testing {
extern bool fault_stop_after_log_write;
}
#endif

}  // namespace berth::disk::vhdx
