#include <string_view>

#include "check.h"
#include "worker/boot_watch.h"

using berth::worker::BootWatch;

namespace {

void feed(BootWatch& w, std::string_view text) {
  w.feed({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

}  // namespace

TEST(boot_watch_seabios_failure_names_the_firmware_line_and_what_to_do) {
  BootWatch w;
  feed(w, "SeaBIOS (version 1.16.2-debian-1.16.2-1)\r\nBooting from DVD/CD...\r\nBoot failed: Could not read from CDROM (code 0004)\r\n");
  CHECK(!w.problem());
  feed(w, "No bootable device.  Retrying in 60 seconds.\r\n");
  CHECK(w.problem());
  CHECK_EQ(w.problem()->find("the firmware found nothing to boot (\"No bootable device.  Retrying in 60 seconds.\")"), 0u);
  CHECK(w.problem()->find("boot order") != std::string::npos);
}

TEST(boot_watch_line_split_across_chunks_is_seen_and_a_new_boot_clears_it) {
  BootWatch w;
  feed(w, "No boota");
  CHECK(!w.problem());  // not a whole line yet
  feed(w, "ble device.\n");
  CHECK(w.problem());
  feed(w, "Rebooting.\r\nSeaBIOS (vers");
  CHECK(w.problem());
  feed(w, "ion 1.16.2)\r\n");
  CHECK(!w.problem());
}

TEST(boot_watch_ovmf_failure_and_boot_option_load) {
  BootWatch w;
  feed(w, "BdsDxe: failed to load Boot0001 \"UEFI QEMU DVD-ROM\" from PciRoot(0x0): Not Found\r\n");
  CHECK(!w.problem());
  feed(w, "BdsDxe: No bootable option or device was found.\r\n");
  CHECK(w.problem());
  feed(w, "BdsDxe: loading Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0)\r\n");
  CHECK(!w.problem());
}

TEST(boot_watch_clear_and_hostile_output) {
  BootWatch w;
  feed(w, "\x1b[2J\x1b[01;01HNo bootable device.\x07\n");
  CHECK(w.problem());
  // Escape sequences and control bytes stay out of the sentence shown to the user.
  CHECK(w.problem()->find('\x1b') == std::string::npos);
  CHECK(w.problem()->find('\x07') == std::string::npos);
  w.clear();
  CHECK(!w.problem());
  // A line without an end, megabytes long, is bounded and matches nothing.
  std::string flood(4 * 1024 * 1024, 'x');
  feed(w, flood);
  feed(w, "No bootable device.\n");  // still the same (cut) line: no match
  CHECK(!w.problem());
  feed(w, "\nNo bootable device.\n");
  CHECK(w.problem());
}
