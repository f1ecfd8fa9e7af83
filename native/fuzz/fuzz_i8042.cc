// The i8042 with its keyboard and mouse is driven by guest port accesses and by host input
// at once: any interleaving must keep the controller consistent: an interrupt line only
// ever changes level (set_level is called on changes only), a high line always matches a
// readable byte of that device in the status register, and the saved state of any reached
// state loads into a fresh controller and saves back to the same bytes.
//
// Input: a script of operations, each an opcode byte and its operands.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/input/i8042.h"

using berth::devices::input::I8042;

namespace {

class CheckedLine final : public berth::vmm::IrqLine {
 public:
  void set_level(bool high) override {
    if (high == level && !restoring) __builtin_trap();  // only changes are handed on
    level = high;
  }
  bool level = false;
  bool restoring = false;  // load_state drives the line whatever its level
};

struct Rig {
  CheckedLine kbd, aux;
  I8042 kbc{kbd, aux, [this] { kbc.reset(); }};
};

struct Script {
  const uint8_t* p;
  size_t left;
  uint8_t u8() {
    if (left == 0) return 0;
    --left;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | u8() << 8); }
  int32_t i32() { return static_cast<int32_t>(static_cast<uint32_t>(u16()) | static_cast<uint32_t>(u16()) << 16); }
};

uint8_t status(I8042& kbc) {
  uint8_t s = 0;
  kbc.read(4, std::span<uint8_t>(&s, 1));
  return s;
}

std::vector<uint8_t> save(const I8042& kbc) {
  berth::state::Writer w;
  kbc.save_state(w);
  return w.take();
}

void check_lines(Rig& rig) {
  const uint8_t s = status(rig.kbc);
  if (rig.kbd.level && (s & 0x21) != 0x01) __builtin_trap();
  if (rig.aux.level && (s & 0x21) != 0x21) __builtin_trap();
}

void check_state(Rig& rig) {
  const auto bytes = save(rig.kbc);
  Rig copy;
  copy.kbd.restoring = copy.aux.restoring = true;
  berth::state::Reader r(bytes, "fuzz");
  try {
    copy.kbc.load_state(r);
  } catch (const berth::Error&) {
    __builtin_trap();  // what the controller saved must load
  }
  copy.kbd.restoring = copy.aux.restoring = false;
  if (save(copy.kbc) != bytes) __builtin_trap();
  if (copy.kbd.level != rig.kbd.level || copy.aux.level != rig.aux.level) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Rig rig;
  Script s{data, size};
  int ops = 0;
  while (s.left > 0 && ops++ < 4096) {
    const uint8_t op = s.u8();
    switch (op % 8) {
      case 0:
      case 1: {  // read a port (offsets past the 5 ports included), 1 to 4 bytes wide
        const uint8_t where = s.u8();
        uint8_t buf[4];
        rig.kbc.read(where & 7, std::span<uint8_t>(buf, 1 + (where >> 3) % 4));
        break;
      }
      case 2:
      case 3: {  // write a port
        const uint8_t where = s.u8();
        uint8_t buf[4] = {s.u8(), s.u8(), s.u8(), s.u8()};
        rig.kbc.write(where & 7, std::span<const uint8_t>(buf, 1 + (where >> 3) % 4));
        break;
      }
      case 4: {  // a controller command with its data byte, the usual guest pattern
        const uint8_t cmd = s.u8(), value = s.u8();
        rig.kbc.write(4, std::span<const uint8_t>(&cmd, 1));
        rig.kbc.write(0, std::span<const uint8_t>(&value, 1));
        break;
      }
      case 5: {
        const uint16_t code = s.u16();
        rig.kbc.key(code, (op & 0x80) != 0);
        break;
      }
      case 6: {
        const int32_t dx = s.i32(), dy = s.i32(), dz = s.i32();
        rig.kbc.pointer_motion(dx, dy, dz, s.u8());
        break;
      }
      case 7:
        if (op & 0x80) rig.kbc.reset();
        else check_state(rig);
        break;
    }
    check_lines(rig);
  }
  check_state(rig);
  return 0;
}
