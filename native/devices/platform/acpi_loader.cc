#include "devices/platform/acpi_loader.h"

#include <cstring>

#include "common/error.h"

namespace berth::devices::platform {

namespace {

// Field offsets inside a 128-byte command.
constexpr size_t kFirstName = 4;
constexpr size_t kSecondName = kFirstName + AcpiLoader::kNameSize;  // 60
constexpr size_t kAfterOneName = kSecondName;
constexpr size_t kAfterTwoNames = kSecondName + AcpiLoader::kNameSize;  // 116

void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string quoted(std::string_view name) { return "'" + std::string(name.substr(0, 80)) + "'"; }

void check_name(std::string_view name) {
  if (name.empty() || name.size() >= AcpiLoader::kNameSize || name.find('\0') != name.npos) {
    throw Error("ACPI_LOADER", "table-loader file name " + quoted(name) + " must have 1 to " +
                                   std::to_string(AcpiLoader::kNameSize - 1) +
                                   " characters and no NUL");
  }
}

void put_name(uint8_t* field, std::string_view name) {
  std::memcpy(field, name.data(), name.size());
}

void check_pointer_size(uint8_t size) {
  if (size != 1 && size != 2 && size != 4 && size != 8) {
    throw Error("ACPI_LOADER",
                "table-loader pointer size " + std::to_string(size) + " must be 1, 2, 4 or 8");
  }
}

void check_range(std::string_view file, uint32_t file_size, uint64_t start, uint64_t length,
                 const char* what) {
  if (start > file_size || length > file_size - start) {
    throw Error("ACPI_LOADER", std::string("table-loader ") + what + " [" +
                                   std::to_string(start) + ", +" + std::to_string(length) +
                                   ") is outside " + quoted(file) + " (" +
                                   std::to_string(file_size) + " bytes)");
  }
}

}  // namespace

uint8_t* AcpiLoader::append(uint32_t command) {
  const size_t at = script_.size();
  script_.resize(at + kEntrySize, 0);
  put_le32(script_.data() + at, command);
  return script_.data() + at;
}

uint32_t AcpiLoader::allocated_size(std::string_view file, const char* role) const {
  check_name(file);
  auto it = allocated_.find(file);
  if (it == allocated_.end()) {
    throw Error("ACPI_LOADER", std::string("table-loader ") + role + " " + quoted(file) +
                                   " was not allocated first");
  }
  return it->second;
}

void AcpiLoader::allocate(std::string_view file, uint32_t size, uint32_t alignment,
                          LoaderZone zone) {
  check_name(file);
  if (allocated_.count(file)) {
    throw Error("ACPI_LOADER", "table-loader file " + quoted(file) + " is allocated twice");
  }
  if (size == 0) {
    throw Error("ACPI_LOADER", "table-loader file " + quoted(file) +
                                   " is empty: the firmware would skip it");
  }
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > kMaxAlignment) {
    throw Error("ACPI_LOADER", "table-loader alignment " + std::to_string(alignment) + " for " +
                                   quoted(file) + " must be a power of two up to " +
                                   std::to_string(kMaxAlignment));
  }
  if (zone != LoaderZone::kHigh && zone != LoaderZone::kFseg) {
    throw Error("ACPI_LOADER", "table-loader zone for " + quoted(file) + " must be high or FSEG");
  }
  uint8_t* e = append(kAllocate);
  put_name(e + kFirstName, file);
  put_le32(e + kAfterOneName, alignment);
  e[kAfterOneName + 4] = static_cast<uint8_t>(zone);
  allocated_.emplace(std::string(file), size);
}

void AcpiLoader::add_pointer(std::string_view dest_file, std::string_view src_file,
                             uint32_t offset, uint8_t size) {
  const uint32_t dest_size = allocated_size(dest_file, "pointer destination");
  allocated_size(src_file, "pointer source");
  check_pointer_size(size);
  check_range(dest_file, dest_size, offset, size, "pointer");
  uint8_t* e = append(kAddPointer);
  put_name(e + kFirstName, dest_file);
  put_name(e + kSecondName, src_file);
  put_le32(e + kAfterTwoNames, offset);
  e[kAfterTwoNames + 4] = size;
}

void AcpiLoader::add_checksum(std::string_view file, uint32_t result_offset, uint32_t start,
                              uint32_t length) {
  const uint32_t file_size = allocated_size(file, "checksum file");
  check_range(file, file_size, result_offset, 1, "checksum byte");
  check_range(file, file_size, start, length, "checksum range");
  uint8_t* e = append(kAddChecksum);
  put_name(e + kFirstName, file);
  put_le32(e + kAfterOneName, result_offset);
  put_le32(e + kAfterOneName + 4, start);
  put_le32(e + kAfterOneName + 8, length);
}

void AcpiLoader::write_pointer(std::string_view dest_file, uint32_t dest_file_size,
                               std::string_view src_file, uint32_t dst_offset,
                               uint32_t src_offset, uint8_t size) {
  check_name(dest_file);
  const uint32_t src_size = allocated_size(src_file, "write-pointer source");
  check_pointer_size(size);
  check_range(dest_file, dest_file_size, dst_offset, size, "write-pointer destination");
  check_range(src_file, src_size, src_offset, 1, "write-pointer source offset");
  uint8_t* e = append(kWritePointer);
  put_name(e + kFirstName, dest_file);
  put_name(e + kSecondName, src_file);
  put_le32(e + kAfterTwoNames, dst_offset);
  put_le32(e + kAfterTwoNames + 4, src_offset);
  e[kAfterTwoNames + 8] = size;
}

}  // namespace berth::devices::platform
