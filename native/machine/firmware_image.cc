#include "machine/firmware_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/unique_fd.h"

namespace berth::machine {

namespace {

constexpr uint64_t kFvSignatureOffset = 40;  // EFI_FIRMWARE_VOLUME_HEADER.Signature
constexpr char kFvSignature[] = "_FVH";

UniqueFd open_file(const std::string& path, const char* what, uint64_t& size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      throw Error("FIRMWARE_NOT_FOUND", std::string("the ") + what + " " + path +
                                            " does not exist; install the firmware package (ovmf, seabios) or choose another file");
    }
    throw SystemError("FIRMWARE_NOT_FOUND", std::string("cannot open the ") + what + " " + path, errno);
  }
  UniqueFd f(fd);
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    throw Error("FIRMWARE_INVALID", std::string("the ") + what + " " + path + " is not a regular file");
  }
  size = static_cast<uint64_t>(st.st_size);
  return f;
}

bool read_at(int fd, void* buf, size_t len, uint64_t off) {
  return pread(fd, buf, len, static_cast<off_t>(off)) == static_cast<ssize_t>(len);
}

uint64_t check_volume(const std::string& path, const char* what) {
  uint64_t size = 0;
  UniqueFd fd = open_file(path, what, size);
  char sig[4] = {};
  if (size < 4096 || size % 4096 != 0 || size > kFirmwareMaxBytes || !read_at(fd.get(), sig, 4, kFvSignatureOffset) ||
      std::memcmp(sig, kFvSignature, 4) != 0) {
    throw Error("FIRMWARE_INVALID", std::string("the ") + what + " " + path +
                                        " is not a UEFI firmware volume (no _FVH header, or a size that is not a "
                                        "multiple of 4 KiB up to 16 MiB); use OVMF's files, e.g. "
                                        "/usr/share/OVMF/OVMF_CODE_4M.fd and OVMF_VARS_4M.fd");
  }
  return size;
}

}  // namespace

UefiLayout check_uefi_images(const std::string& code_path, const std::string& vars_path) {
  UefiLayout l;
  l.code_bytes = check_volume(code_path, "UEFI code image");
  l.vars_bytes = check_volume(vars_path, "UEFI variable store");
  const uint64_t total = l.code_bytes + l.vars_bytes;
  if (total > kFirmwareMaxBytes || (total & (total - 1)) != 0) {
    throw Error("FIRMWARE_VARS_MISMATCH",
                "the UEFI variable store " + vars_path + " (" + std::to_string(l.vars_bytes >> 10) +
                    " KiB) is not from the same firmware build as " + code_path + " (" +
                    std::to_string(l.code_bytes >> 10) +
                    " KiB): the two must fill one flash of 2 or 4 MiB; use the VARS file that came with that CODE file");
  }
  l.code_base = kFirmwareTop - l.code_bytes;
  l.vars_base = l.code_base - l.vars_bytes;
  return l;
}

std::vector<uint8_t> read_bios_image(const std::string& path) {
  uint64_t size = 0;
  UniqueFd fd = open_file(path, "BIOS image", size);
  std::vector<uint8_t> bytes;
  if (size >= (64u << 10) && size <= kFirmwareMaxBytes && size % (64u << 10) == 0) {
    bytes.resize(size);
    if (!read_at(fd.get(), bytes.data(), bytes.size(), 0)) bytes.clear();
  }
  // The reset vector (16 bytes below the top) of a PC BIOS is a far jump (0xEA).
  if (bytes.empty() || bytes[bytes.size() - 16] != 0xea) {
    throw Error("FIRMWARE_INVALID", "the BIOS image " + path +
                                        " is not a PC BIOS ROM (64 KiB to 16 MiB, ending in a reset vector); use "
                                        "SeaBIOS's /usr/share/seabios/bios-256k.bin");
  }
  return bytes;
}

}  // namespace berth::machine
