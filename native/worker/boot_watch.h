// What a firmware-booted VM's firmware says about booting, read from its console output so
// that the VM's status can say "nothing to boot" (Hyper-V shows this in the VM's window;
// a user of the list or the CLI would otherwise see only "Running"). The firmware has no
// other channel for it: SeaBIOS and OVMF print the failure on the console and wait.
//
// A problem is set by the firmware's failure line and cleared when the firmware starts a
// boot again (its banner, or OVMF loading a boot option), or by clear() (the VM is reset).
// Lines may arrive split across console chunks.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace berth::worker {

class BootWatch {
 public:
  void feed(std::span<const uint8_t> bytes);
  void clear();
  // "the firmware found nothing to boot ...", or nothing while no failure stands.
  const std::optional<std::string>& problem() const { return problem_; }

 private:
  void on_line(const std::string& line);

  std::string line_;  // the line being received, bounded (a guest controls its length)
  std::optional<std::string> problem_;
};

}  // namespace berth::worker
