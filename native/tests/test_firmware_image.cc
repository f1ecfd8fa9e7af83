// Firmware files are checked before a VM uses them: Debian's own images pass, and each
// way a user can get them wrong gets its own error.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "machine/firmware_image.h"
#include "tests/check.h"

using namespace berth;

namespace {

const char* kCode4m = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const char* kVars4m = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const char* kVars2m = "/usr/share/OVMF/OVMF_VARS.fd";
const char* kBios = "/usr/share/seabios/bios-256k.bin";

bool have(const char* path) { return access(path, R_OK) == 0; }

std::string temp_file(const std::vector<uint8_t>& bytes) {
  char name[] = "/tmp/berth-fw-XXXXXX";
  int fd = mkstemp(name);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  close(fd);
  return name;
}

}  // namespace

TEST(firmware_debian_ovmf_4m_images_pass_and_lay_out_below_4g) {
  if (!have(kCode4m) || !have(kVars4m)) SKIP("Debian's ovmf package is not installed (./setup.sh installs it)");
  auto l = machine::check_uefi_images(kCode4m, kVars4m);
  CHECK_EQ(l.code_bytes + l.vars_bytes, 4u << 20);
  CHECK_EQ(l.code_base + l.code_bytes, 4ull << 30);
  CHECK_EQ(l.vars_base, 0xffc00000u);
}

TEST(firmware_vars_of_another_build_are_refused) {
  if (!have(kCode4m) || !have(kVars2m)) SKIP("Debian's ovmf package is not installed (./setup.sh installs it)");
  CHECK_THROWS_CODE(machine::check_uefi_images(kCode4m, kVars2m), "FIRMWARE_VARS_MISMATCH", "same firmware build");
}

TEST(firmware_files_that_are_not_firmware_are_refused) {
  CHECK_THROWS_CODE(machine::check_uefi_images("/nonexistent/OVMF_CODE.fd", "/nonexistent/vars"), "FIRMWARE_NOT_FOUND",
                    "does not exist");
  std::string junk = temp_file(std::vector<uint8_t>(64 << 10, 0x5a));
  CHECK_THROWS_CODE(machine::check_uefi_images(junk, junk), "FIRMWARE_INVALID", "not a UEFI firmware volume");
  CHECK_THROWS_CODE(machine::read_bios_image(junk), "FIRMWARE_INVALID", "not a PC BIOS ROM");
  std::string tiny = temp_file(std::vector<uint8_t>(100, 0));
  CHECK_THROWS_CODE(machine::read_bios_image(tiny), "FIRMWARE_INVALID", "bios-256k.bin");
  CHECK_THROWS_CODE(machine::read_bios_image("/tmp"), "FIRMWARE_INVALID", "not a regular file");
  unlink(junk.c_str());
  unlink(tiny.c_str());
}

TEST(firmware_debian_seabios_image_is_read_whole) {
  if (!have(kBios)) SKIP("Debian's seabios package is not installed (./setup.sh installs it)");
  auto bytes = machine::read_bios_image(kBios);
  CHECK_EQ(bytes.size(), 256u << 10);
  CHECK_EQ(bytes[bytes.size() - 16], 0xea);
}
