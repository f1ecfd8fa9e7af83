// An image file on the host: positioned reads and writes that either complete or throw
// berth::Error naming the file, plus the few OS calls disk formats need.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include "common/unique_fd.h"

namespace berth::disk {

class File {
 public:
  enum class Mode { kReadOnly, kReadWrite, kCreateExclusive };

  File(const std::string& path, Mode mode, bool direct = false);
  File(File&&) = default;
  File& operator=(File&&) = default;

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  bool direct() const { return direct_; }

  // Reads exactly buf.size() bytes; past the end of the file throws DISK_TRUNCATED.
  void read_exact(uint64_t offset, std::span<uint8_t> buf) const;
  // Reads what exists; bytes past the end of the file come back as zeroes.
  void read_or_zero(uint64_t offset, std::span<uint8_t> buf) const;
  void write_all(uint64_t offset, std::span<const uint8_t> buf);
  uint64_t size() const;
  uint64_t allocated_bytes() const;  // st_blocks * 512
  void truncate(uint64_t size);
  void sync();
  // Releases the storage of a range (it then reads as zeroes); false if the filesystem
  // cannot punch holes.
  bool punch_hole(uint64_t offset, uint64_t length);
  // Allocates storage for a range without writing it (falls back to writing zeroes).
  void allocate(uint64_t offset, uint64_t length);
  // Next data / hole offset at or after offset (SEEK_DATA/SEEK_HOLE); returns false when
  // the filesystem cannot tell, in which case everything counts as data.
  bool next_data(uint64_t offset, uint64_t* data_offset) const;
  bool next_hole(uint64_t offset, uint64_t* hole_offset) const;
  bool is_block_device() const;

 private:
  std::string path_;
  UniqueFd fd_;
  bool direct_ = false;
};

}  // namespace berth::disk
