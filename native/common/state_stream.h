// Saved-state records (a VM's state file, see machine/saved_state.h): each component writes
// its fields as a little-endian byte stream inside a named, versioned record and reads them
// back through a Reader whose every read is bounds-checked. A state file is untrusted input:
// a reader that runs out of bytes, meets a record it did not expect or a value out of range
// throws berth::Error STATE_INVALID naming the record and the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace berth::state {

class Writer {
 public:
  void u8(uint8_t v);
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void boolean(bool v) { u8(v ? 1 : 0); }
  void bytes(std::span<const uint8_t> b);  // raw, the reader knows the length
  void blob(std::span<const uint8_t> b);   // u32 length, then the bytes
  void str(std::string_view s);            // u32 length, then the bytes

  // A component's record: its name, its format version and its body's length. Records
  // nest (a transport's record holds its device's).
  size_t begin(std::string_view name, uint32_t version);
  void end(size_t token);

  const std::vector<uint8_t>& data() const { return data_; }
  std::vector<uint8_t> take() { return std::move(data_); }

 private:
  std::vector<uint8_t> data_;
};

class Reader {
 public:
  // `context` names what is being read in errors ("vcpu 1", "virtio-blk 0").
  Reader(std::span<const uint8_t> data, std::string context);

  uint8_t u8(const char* field);
  uint16_t u16(const char* field);
  uint32_t u32(const char* field);
  uint64_t u64(const char* field);
  bool boolean(const char* field);  // only 0 or 1
  std::span<const uint8_t> bytes(size_t n, const char* field);
  std::span<const uint8_t> blob(size_t max, const char* field);
  std::string str(size_t max, const char* field);
  // u32 that must be <= max (element counts before a loop that reads them).
  uint32_t count(uint32_t max, const char* field);
  // A u64 that must be in [lo, hi].
  uint64_t u64_in(uint64_t lo, uint64_t hi, const char* field);

  struct Record;
  // The next record must be `name` with a version in [1, max_version]; returns a reader
  // over its body (context "<this context>/<name>") and the version it was written with.
  Record record(std::string_view name, uint32_t max_version);
  // The name of the next record, without consuming it ("" at the end).
  std::string peek_record_name();

  bool at_end() const { return pos_ == data_.size(); }
  // Fails unless every byte was read: a longer record than this version writes is corrupt.
  void expect_end();
  [[noreturn]] void fail(const std::string& what) const;
  const std::string& context() const { return context_; }

 private:
  std::span<const uint8_t> take(size_t n, const char* field);

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  std::string context_;
};

struct Reader::Record {
  Reader body;
  uint32_t version;
};

// Limits, defined once.
constexpr size_t kMaxRecordName = 64;

}  // namespace berth::state
