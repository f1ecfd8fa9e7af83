// Helpers for the saved-state tests: a record's bytes, a reader over them, and the same
// bytes made hostile (cut short, or claiming another record version).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/state_stream.h"

namespace berth::test::state_bytes {

template <typename Device>
std::vector<uint8_t> save(const Device& d) {
  state::Writer w;
  d.save_state(w);
  return w.take();
}

// Loads the record into d and checks that it used every byte.
template <typename Device>
void load(Device& d, const std::vector<uint8_t>& bytes) {
  state::Reader r(bytes, "test");
  d.load_state(r);
  r.expect_end();
}

// The outer record's version field (after the u32 name length and the name) set to v.
inline std::vector<uint8_t> with_version(std::vector<uint8_t> bytes, uint32_t v) {
  uint32_t name_len = 0;
  std::memcpy(&name_len, bytes.data(), 4);
  std::memcpy(bytes.data() + 4 + name_len, &v, 4);
  return bytes;
}

// The outer record's body cut short by n bytes, its length field agreeing: the reader runs
// out inside the body, at a field it can name.
inline std::vector<uint8_t> shorten_body(std::vector<uint8_t> bytes, size_t n) {
  uint32_t name_len = 0;
  std::memcpy(&name_len, bytes.data(), 4);
  uint64_t len = 0;
  std::memcpy(&len, bytes.data() + 8 + name_len, 8);
  len -= n;
  std::memcpy(bytes.data() + 8 + name_len, &len, 8);
  bytes.resize(bytes.size() - n);
  return bytes;
}

inline std::vector<uint8_t> cut(std::vector<uint8_t> bytes, size_t n) {
  bytes.resize(n);
  return bytes;
}

}  // namespace berth::test::state_bytes
