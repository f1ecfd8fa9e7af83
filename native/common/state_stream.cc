#include "common/state_stream.h"

#include <cstring>

#include "common/error.h"

namespace berth::state {

void Writer::u8(uint8_t v) { data_.push_back(v); }
void Writer::u16(uint16_t v) {
  for (int i = 0; i < 2; ++i) data_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void Writer::u32(uint32_t v) {
  for (int i = 0; i < 4; ++i) data_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void Writer::u64(uint64_t v) {
  for (int i = 0; i < 8; ++i) data_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void Writer::bytes(std::span<const uint8_t> b) { data_.insert(data_.end(), b.begin(), b.end()); }
void Writer::blob(std::span<const uint8_t> b) {
  u32(static_cast<uint32_t>(b.size()));
  bytes(b);
}
void Writer::str(std::string_view s) {
  blob(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

size_t Writer::begin(std::string_view name, uint32_t version) {
  str(name);
  u32(version);
  size_t token = data_.size();
  u64(0);  // body length, patched by end()
  return token;
}

void Writer::end(size_t token) {
  uint64_t len = data_.size() - token - 8;
  for (int i = 0; i < 8; ++i) data_[token + i] = static_cast<uint8_t>(len >> (8 * i));
}

Reader::Reader(std::span<const uint8_t> data, std::string context) : data_(data), context_(std::move(context)) {}

void Reader::fail(const std::string& what) const { throw Error("STATE_INVALID", "saved state, " + context_ + ": " + what); }

std::span<const uint8_t> Reader::take(size_t n, const char* field) {
  if (n > data_.size() - pos_) fail(std::string("truncated at ") + field);
  auto out = data_.subspan(pos_, n);
  pos_ += n;
  return out;
}

uint8_t Reader::u8(const char* field) { return take(1, field)[0]; }
uint16_t Reader::u16(const char* field) {
  auto b = take(2, field);
  return static_cast<uint16_t>(b[0] | (b[1] << 8));
}
uint32_t Reader::u32(const char* field) {
  auto b = take(4, field);
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}
uint64_t Reader::u64(const char* field) {
  auto b = take(8, field);
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}
bool Reader::boolean(const char* field) {
  uint8_t v = u8(field);
  if (v > 1) fail(std::string(field) + " is " + std::to_string(v) + ", not 0 or 1");
  return v == 1;
}
std::span<const uint8_t> Reader::bytes(size_t n, const char* field) { return take(n, field); }
std::span<const uint8_t> Reader::blob(size_t max, const char* field) {
  uint32_t n = u32(field);
  if (n > max) fail(std::string(field) + " is " + std::to_string(n) + " bytes, more than " + std::to_string(max));
  return take(n, field);
}
std::string Reader::str(size_t max, const char* field) {
  auto b = blob(max, field);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
uint32_t Reader::count(uint32_t max, const char* field) {
  uint32_t n = u32(field);
  if (n > max) fail(std::string(field) + " is " + std::to_string(n) + ", more than " + std::to_string(max));
  return n;
}
uint64_t Reader::u64_in(uint64_t lo, uint64_t hi, const char* field) {
  uint64_t v = u64(field);
  if (v < lo || v > hi) {
    fail(std::string(field) + " is " + std::to_string(v) + ", outside " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return v;
}

std::string Reader::peek_record_name() {
  if (at_end()) return "";
  size_t saved = pos_;
  std::string name = str(kMaxRecordName, "record name");
  pos_ = saved;
  return name;
}

Reader::Record Reader::record(std::string_view name, uint32_t max_version) {
  std::string got = str(kMaxRecordName, "record name");
  if (got != name) fail("expected a '" + std::string(name) + "' record, found '" + got + "'");
  uint32_t version = u32("record version");
  if (version == 0 || version > max_version) {
    throw Error("STATE_VERSION", "saved state, " + context_ + ": the '" + got + "' record is version " +
                                     std::to_string(version) + "; this Berth reads versions 1 to " +
                                     std::to_string(max_version) + " (update Berth, or delete the saved state)");
  }
  uint64_t len = u64("record length");
  if (len > data_.size() - pos_) fail("the '" + got + "' record is longer than the data left");
  Reader body(data_.subspan(pos_, static_cast<size_t>(len)), context_ + "/" + got);
  pos_ += static_cast<size_t>(len);
  return {std::move(body), version};
}

void Reader::expect_end() {
  if (!at_end()) fail(std::to_string(data_.size() - pos_) + " unexpected bytes at the end");
}

}  // namespace berth::state
