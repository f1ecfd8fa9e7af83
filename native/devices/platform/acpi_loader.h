// A builder for the BIOS linker/loader script, the fw_cfg file "etc/table-loader" that
// tells OVMF (AcpiPlatformDxe/QemuFwCfgAcpi.c) and SeaBIOS (src/fw/romfile_loader.c) how to
// place the ACPI tables it ships as fw_cfg files: allocate each file in guest memory, patch
// the pointers between them with the addresses chosen, fix up the checksums, and write
// addresses back into writable fw_cfg files.
//
// Each command is 128 bytes, little-endian: u32 command, then
//   ALLOCATE (1)       file[56], u32 align, u8 zone (1 high memory, 2 the F segment)
//   ADD_POINTER (2)    dest_file[56], src_file[56], u32 offset, u8 size
//   ADD_CHECKSUM (3)   file[56], u32 result_offset, u32 start, u32 length
//   WRITE_POINTER (4)  dest_file[56], src_file[56], u32 dst_offset, u32 src_offset, u8 size
// padded with zeros; names are NUL-padded. ADD_POINTER adds the address of src_file to the
// size-byte little-endian value at dest_file[offset] (which holds the offset into
// src_file). ADD_CHECKSUM subtracts the byte sum of [start, start+length) from the byte at
// result_offset (QEMU leaves that byte 0, so the range then sums to 0).
//
// The builder refuses what the firmware would reject (throws ACPI_LOADER): names empty or
// over 55 characters, a file allocated twice or empty, commands on files not allocated,
// alignments that are not powers of two up to 4096, pointer sizes other than 1/2/4/8, and ranges outside a file.
// What it cannot check: the value an ADD_POINTER's field holds must be an offset inside
// src_file (OVMF refuses the script otherwise). OVMF installs every table an ADD_POINTER
// points at (a pointer into the RSDP's file is how
// it finds the RSDT/XSDT); SeaBIOS needs the RSDP's file in the F segment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace berth::devices::platform {

enum class LoaderZone : uint8_t { kHigh = 1, kFseg = 2 };

class AcpiLoader {
 public:
  static constexpr size_t kEntrySize = 128;
  static constexpr size_t kNameSize = 56;  // as fw_cfg's directory: 55 characters and a NUL
  static constexpr uint32_t kMaxAlignment = 4096;  // OVMF refuses more than a page
  static constexpr uint32_t kAllocate = 1, kAddPointer = 2, kAddChecksum = 3, kWritePointer = 4;

  // `size` is the file's size in bytes (what the machine hands fw_cfg), used to check the
  // offsets of later commands.
  void allocate(std::string_view file, uint32_t size, uint32_t alignment, LoaderZone zone);
  void add_pointer(std::string_view dest_file, std::string_view src_file, uint32_t offset,
                   uint8_t size);
  void add_checksum(std::string_view file, uint32_t result_offset, uint32_t start,
                    uint32_t length);
  // dest_file is a writable fw_cfg file (not allocated) of dest_file_size bytes; the
  // firmware writes the address of src_file + src_offset into it at dst_offset.
  void write_pointer(std::string_view dest_file, uint32_t dest_file_size,
                     std::string_view src_file, uint32_t dst_offset, uint32_t src_offset,
                     uint8_t size);

  const std::vector<uint8_t>& script() const { return script_; }
  size_t command_count() const { return script_.size() / kEntrySize; }

 private:
  uint8_t* append(uint32_t command);
  uint32_t allocated_size(std::string_view file, const char* role) const;

  std::map<std::string, uint32_t, std::less<>> allocated_;  // name -> size
  std::vector<uint8_t> script_;
};

}  // namespace berth::devices::platform
