// An i8042 on recording interrupt lines, driven through its ports as a guest would.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <initializer_list>
#include <span>
#include <vector>

#include "devices/input/i8042.h"

namespace berth::test {

// Every level a device handed to the line, in order.
class LevelLog : public vmm::IrqLine {
 public:
  void set_level(bool high) override { levels.push_back(high); }
  bool high() const { return !levels.empty() && levels.back(); }
  // Rising edges seen so far.
  int edges() const {
    int n = 0;
    bool last = false;
    for (bool l : levels) {
      if (l && !last) ++n;
      last = l;
    }
    return n;
  }
  std::vector<bool> levels;
};

struct I8042Rig {
  int resets = 0;
  LevelLog kbd_irq, aux_irq;
  devices::input::I8042 kbc{kbd_irq, aux_irq, [this] { ++resets; }};

  uint8_t status() { return in(4); }
  uint8_t data() { return in(0); }
  uint8_t in(uint64_t offset) {
    uint8_t v = 0;
    kbc.read(offset, std::span<uint8_t>(&v, 1));
    return v;
  }
  void command(uint8_t v) { kbc.write(4, std::span<const uint8_t>(&v, 1)); }
  void write_data(uint8_t v) { kbc.write(0, std::span<const uint8_t>(&v, 1)); }
  void command_byte(uint8_t v) {
    command(0x60);
    write_data(v);
  }
  // Sends bytes to the keyboard / the mouse.
  void to_keyboard(std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) write_data(b);
  }
  void to_mouse(std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) {
      command(0xd4);
      write_data(b);
    }
  }
  // Reads while the status says a byte waits; `aux` collects whether each came from the
  // mouse.
  std::vector<uint8_t> drain(std::vector<bool>* aux = nullptr) {
    std::vector<uint8_t> out;
    for (int guard = 0; guard < 256; ++guard) {
      const uint8_t s = status();
      if (!(s & 0x01)) break;
      if (aux) aux->push_back((s & 0x20) != 0);
      out.push_back(data());
    }
    return out;
  }
};

using Bytes = std::vector<uint8_t>;

inline std::string hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (uint8_t v : b) {
    std::snprintf(buf, sizeof buf, "%02x ", v);
    s += buf;
  }
  return s;
}

}  // namespace berth::test

// Byte sequences compared and printed in hex.
#define CHECK_BYTES(a, b) CHECK_STR(::berth::test::hex(a), ::berth::test::hex(b))
