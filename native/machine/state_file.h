// A VM's saved state as one file: a header (magic, format version, checksums, sizes), the
// component records (common/state_stream.h) and the memory image (vmm/memory_image.h) at
// a 2 MiB-aligned offset, so a resumed VM maps its RAM from the file. The file is
// untrusted on reading: the header and the records are checksummed and size-capped, and
// anything wrong is STATE_INVALID (STATE_VERSION for another format version) with the
// reason. Guest memory is not checksummed: it is the guest's own data, read lazily.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "vmm/guest_memory.h"

namespace berth::machine {

constexpr char kStateFileMagic[8] = {'B', 'E', 'R', 'T', 'H', 'V', 'M', 'S'};
constexpr uint32_t kStateFileVersion = 1;
constexpr uint64_t kStateHeaderBytes = 4096;
constexpr uint64_t kMaxStateRecordsBytes = 64ull << 20;
constexpr uint64_t kStateMemoryAlign = 2ull << 20;
constexpr uint64_t kMaxStateMemoryBytes = 1ull << 40;  // VM memory sizes Berth accepts are far below

struct StateFileWriteStats {
  uint64_t memory_bytes_written = 0;
  uint64_t file_bytes = 0;  // allocated on disk
};

// Writes path atomically (a temporary file beside it, fsync, rename, fsync of the folder).
// Throws STATE_IO on a file-system failure; nothing is left at path or beside it then.
StateFileWriteStats write_state_file(const std::string& path, std::span<const uint8_t> records,
                                     const vmm::GuestMemory& memory);

// The same, with the VM running again during the write: after the records, a child process
// is forked whose copy-on-write view of guest memory is the snapshot, `run_on` is called
// (the caller resumes the VM there), and the child writes the memory image and the header.
// Returns once the file is complete. If run_on throws, the child is stopped, nothing is left
// at path, and the exception is rethrown.
StateFileWriteStats write_state_file_while_running(const std::string& path, std::span<const uint8_t> records,
                                                   const vmm::GuestMemory& memory, const std::function<void()>& run_on);

struct StateFile {
  UniqueFd fd;
  std::vector<uint8_t> records;
  uint64_t memory_offset = 0;
  uint64_t memory_bytes = 0;
};

// Opens and checks a state file (header, size, checksum of the records); the memory image
// is left in the file for GuestMemory to map.
StateFile open_state_file(const std::string& path);

// Checks a state file given as bytes (the fuzzing harness's entry; no memory image needed
// past the header's claims). Returns the records.
std::vector<uint8_t> parse_state_header_and_records(std::span<const uint8_t> file, uint64_t file_size,
                                                    uint64_t* memory_offset, uint64_t* memory_bytes);

}  // namespace berth::machine
