// The flash's command state machine is driven by guest writes: any sequence of writes and
// reads at any offset and width must keep it in a state it can report (the mode the
// machine was last told matches array_mode(), reads in array mode return the file's bytes),
// never write outside the mapping, never change read-only flash, and round-trip its saved
// state.
//
// Input: a script of operations, each an opcode byte and its operands.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/platform/pflash.h"

using berth::devices::platform::Pflash;

namespace {

constexpr uint64_t kSize = 16 * Pflash::kBlockSize;

std::string make_file(const char* name, uint8_t fill) {
  const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  std::string path = std::string(dir) + "/berth-fuzz-pflash-" + name + "-" + std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0600);
  if (fd < 0) std::abort();
  std::vector<uint8_t> bytes(kSize, fill);
  if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(kSize)) std::abort();
  ::close(fd);
  return path;
}

struct Rig {
  std::string rw_path = make_file("rw", 0x5a);
  std::string ro_path = make_file("ro", 0xa5);
  Pflash rw{rw_path, Pflash::Access::kWritable};
  Pflash ro{ro_path, Pflash::Access::kReadOnly};
  bool rw_mode = true, ro_mode = true;
  Rig() {
    rw.set_mode_callback([this](bool array) {
      if (array == rw_mode) __builtin_trap();  // only real changes are reported
      rw_mode = array;
    });
    ro.set_mode_callback([](bool) { __builtin_trap(); });  // read-only never leaves array mode
    ::unlink(rw_path.c_str());
    ::unlink(ro_path.c_str());
  }
};

struct Script {
  const uint8_t* p;
  size_t left;
  uint8_t u8() {
    if (!left) return 0;
    --left;
    return *p++;
  }
  uint32_t offset() {
    const uint32_t v = u8() | u8() << 8 | u8() << 16;
    return v % (kSize + 16);  // sometimes just past the end
  }
};

std::vector<uint8_t> save(const Pflash& f) {
  berth::state::Writer w;
  f.save_state(w);
  return w.take();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Rig rig;
  rig.rw.reset();
  if (rig.rw_mode != true) __builtin_trap();

  Script s{data, size};
  for (int ops = 0; s.left && ops < 512; ++ops) {
    const uint8_t op = s.u8();
    Pflash& f = op & 0x80 ? rig.ro : rig.rw;
    switch (op % 6) {
      case 0:
      case 1: {  // a write, mostly one byte of a command OVMF uses
        static constexpr uint8_t kCommands[] = {0x10, 0x40, 0x20, 0xd0, 0x50, 0x70, 0x90,
                                                0x98, 0xff, 0x00, 0x60, 0x01, 0xe8};
        const uint32_t at = s.offset();
        uint8_t b[8];
        const uint8_t pick = s.u8();
        b[0] = pick < 0xc0 ? kCommands[pick % sizeof kCommands] : s.u8();
        for (int i = 1; i < 8; ++i) b[i] = s.u8();
        const size_t width = op & 0x40 ? size_t{1} << (s.u8() % 4) : 1;
        f.write(at, std::span<const uint8_t>(b, width));
        break;
      }
      case 2: {  // a read: in array mode it returns the mapped bytes
        const uint32_t at = s.offset();
        uint8_t b[8];
        const size_t width = size_t{1} << (s.u8() % 4);
        const bool array = f.array_mode();
        f.read(at, std::span<uint8_t>(b, width));
        if (array) {
          for (size_t i = 0; i < width; ++i) {
            const uint8_t want = at + i < kSize ? f.memory()[at + i] : 0xff;
            if (b[i] != want) __builtin_trap();
          }
        }
        break;
      }
      case 3:
        f.reset();
        break;
      case 4: {  // saved state round trip
        auto bytes = save(f);
        berth::state::Reader r(bytes, "fuzz");
        f.load_state(r);
        if (save(f) != bytes) __builtin_trap();
        break;
      }
      case 5: {  // a hostile record: refused or taken, never a crash
        auto bytes = save(f);
        bytes[s.u8() % bytes.size()] ^= s.u8();
        try {
          berth::state::Reader r(bytes, "fuzz");
          f.load_state(r);
        } catch (const berth::Error&) {
        }
        break;
      }
    }
    if (rig.rw.array_mode() != rig.rw_mode || !rig.ro.array_mode()) __builtin_trap();
  }
  for (uint64_t i = 0; i < kSize; i += 97) {
    if (rig.ro.memory()[i] != 0xa5) __builtin_trap();
  }
  return 0;
}
