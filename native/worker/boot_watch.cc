#include "worker/boot_watch.h"

#include <array>
#include <string_view>

namespace berth::worker {
namespace {

// Longer lines are cut: every phrase below sits near the start of its line.
constexpr size_t kMaxLine = 240;

struct Phrase {
  std::string_view text;
  bool failure;  // false: the firmware begins a boot (again), which ends a standing failure
};

// SeaBIOS 1.16 (src/boot.c: "No bootable device." then, with a retry time, "Retrying in N
// seconds." and a reboot that prints its banner again); OVMF's boot manager
// (MdeModulePkg BdsDxe: "No bootable option or device was found.", "BdsDxe: loading Boot0001").
constexpr std::array kPhrases{
    Phrase{"No bootable device.", true},
    Phrase{"No bootable option or device was found", true},
    Phrase{"SeaBIOS (version ", false},
    Phrase{"BdsDxe: loading Boot", false},
};

// The console line as printable text (the firmware may draw with escape sequences).
std::string printable(const std::string& line) {
  std::string out;
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  while (!out.empty() && out.front() == ' ') out.erase(out.begin());
  return out;
}

}  // namespace

void BootWatch::feed(std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) {
    if (b == '\n' || b == '\r') {
      if (!line_.empty()) on_line(line_);
      line_.clear();
    } else if (line_.size() < kMaxLine) {
      line_ += static_cast<char>(b);
    }
  }
}

void BootWatch::clear() {
  problem_.reset();
  line_.clear();
}

void BootWatch::on_line(const std::string& line) {
  for (const Phrase& p : kPhrases) {
    if (line.find(p.text) == std::string::npos) continue;
    if (p.failure) {
      problem_ = "the firmware found nothing to boot (\"" + printable(line) +
                 "\"): insert a bootable disc or attach a disk with an operating system, or change the "
                 "boot order in the VM's firmware settings";
    } else {
      problem_.reset();
    }
    return;
  }
}

}  // namespace berth::worker
