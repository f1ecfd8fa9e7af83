// The firmware files a Generation 1 or 2 VM boots, checked before any device uses them:
// OVMF's code and variable-store images (UEFI, Generation 2) and SeaBIOS's ROM image
// (BIOS, Generation 1), all from the distribution, unmodified. The checks catch what a user
// can get wrong: a path that is not there, a file that is not that firmware at all, a
// variable store made for another build of the code (it would sit where the code does not
// look for it, and the firmware would hang or wipe it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace berth::machine {

constexpr uint64_t kFirmwareMaxBytes = 16ull << 20;  // flash and ROM live in the top 16 MiB below 4 GiB
constexpr uint64_t kFirmwareTop = 4ull << 30;

struct UefiLayout {
  uint64_t code_bytes = 0, vars_bytes = 0;
  uint64_t code_base = 0;  // kFirmwareTop - code_bytes: the reset vector ends the code image
  uint64_t vars_base = 0;  // just below the code, where OVMF's build looks for it
};

// Checks OVMF's code and variable store (each a UEFI firmware volume, "_FVH") and that
// they are of one build (their sizes fill a power-of-two flash, as the 2 MiB and 4 MiB
// builds do). Throws berth::Error FIRMWARE_NOT_FOUND, FIRMWARE_INVALID or
// FIRMWARE_VARS_MISMATCH, naming the file and what to use instead.
UefiLayout check_uefi_images(const std::string& code_path, const std::string& vars_path);

// Reads SeaBIOS's ROM (64 KiB to 16 MiB, a multiple of 64 KiB, ending in the x86 reset
// vector's far jump). Throws FIRMWARE_NOT_FOUND or FIRMWARE_INVALID.
std::vector<uint8_t> read_bios_image(const std::string& path);

}  // namespace berth::machine
