#include "boot/aml.h"

#include <cstring>

#include "boot/acpi.h"
#include "common/error.h"

namespace berth::boot {

void AcpiTable::u16(uint16_t v) { for (int i = 0; i < 2; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
void AcpiTable::u32(uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
void AcpiTable::u64(uint64_t v) { for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }

void AcpiTable::text(const char* s, size_t n) {
  size_t len = std::strlen(s);
  for (size_t i = 0; i < n; ++i) u8(i < len ? static_cast<uint8_t>(s[i]) : ' ');
}

void AcpiTable::put_u32(size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes_[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

void AcpiTable::header(const char* signature, uint8_t revision) {
  text(signature, 4);
  u32(0);  // length
  u8(revision);
  u8(0);  // checksum
  text("BERTH", 6);
  text("BERTHVM", 8);
  u32(1);  // OEM revision
  text("BRTH", 4);
  u32(1);  // creator revision
}

void AcpiTable::finish() {
  put_u32(4, static_cast<uint32_t>(bytes_.size()));
  bytes_[9] = 0;
  bytes_[9] = checksum(0, bytes_.size());
}

uint8_t AcpiTable::checksum(size_t from, size_t to) const {
  uint8_t sum = 0;
  for (size_t i = from; i < to; ++i) sum = static_cast<uint8_t>(sum + bytes_[i]);
  return static_cast<uint8_t>(-sum);
}

void io_port_gas(AcpiTable& t, uint16_t port, uint8_t bits) {
  t.u8(1);  // system I/O space
  t.u8(bits);
  t.u8(0);  // bit offset
  t.u8(bits <= 8 ? 1 : bits <= 16 ? 2 : 3);  // access size: byte, word, dword
  t.u64(port);
}

void append(Aml& to, const Aml& bytes) {
  to.reserve(to.size() + bytes.size());
  for (uint8_t b : bytes) to.push_back(b);
}

// PkgLength: the length of what follows the opcode, itself included, in 1 to 4 bytes.
Aml aml_package(uint8_t op, const Aml& body, bool ext) {
  Aml out;
  if (ext) out.push_back(0x5b);
  out.push_back(op);
  size_t len = body.size() + 1;
  int extra = 0;
  if (len > 0x3f) {
    for (extra = 1; extra < 3 && ((len + extra) >> (4 + 8 * extra)) != 0; ++extra) {}
    len += extra;
  }
  if (extra == 0) {
    out.push_back(static_cast<uint8_t>(len));
  } else {
    out.push_back(static_cast<uint8_t>((extra << 6) | (len & 0x0f)));
    for (int i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(len >> (4 + 8 * i)));
  }
  append(out, body);
  return out;
}

Aml aml_name(const char* name, const Aml& value) {
  Aml out;
  out.reserve(5 + value.size());
  out.push_back(0x08);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(name[i]));
  for (uint8_t b : value) out.push_back(b);
  return out;
}

namespace {
Aml le(uint8_t op, uint64_t v, int bytes) {
  Aml out{op};
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return out;
}
}  // namespace

Aml aml_integer(uint64_t v) {
  if (v == 0) return {0x00};
  if (v == 1) return {0x01};
  if (v <= 0xff) return le(0x0a, v, 1);
  if (v <= 0xffff) return le(0x0b, v, 2);
  if (v <= 0xffffffff) return le(0x0c, v, 4);
  return le(0x0e, v, 8);
}

Aml aml_dword(uint32_t v) { return le(0x0c, v, 4); }

Aml aml_string(const std::string& s) {
  Aml out{0x0d};
  out.insert(out.end(), s.begin(), s.end());
  out.push_back(0x00);
  return out;
}

Aml aml_eisa_id(const char* id) { return aml_dword(acpi_eisa_id(id)); }

Aml aml_buffer(const Aml& bytes) {
  Aml body = aml_integer(bytes.size());
  append(body, bytes);
  return aml_package(0x11, body);
}

Aml aml_path(const std::string& path) {
  Aml out;
  size_t i = 0;
  if (!path.empty() && path[0] == '\\') {
    out.push_back('\\');
    i = 1;
  }
  std::vector<std::string> segments;
  while (i < path.size()) {
    size_t dot = path.find('.', i);
    if (dot == std::string::npos) dot = path.size();
    std::string seg = path.substr(i, dot - i);
    if (seg.empty() || seg.size() > 4) throw Error("BOOT_ACPI", "bad ACPI name segment in " + path);
    seg.resize(4, '_');
    segments.push_back(seg);
    i = dot + 1;
  }
  if (segments.size() == 2) out.push_back(0x2e);  // DualNamePrefix
  if (segments.size() > 2) {
    out.push_back(0x2f);  // MultiNamePrefix
    out.push_back(static_cast<uint8_t>(segments.size()));
  }
  for (const auto& seg : segments) out.insert(out.end(), seg.begin(), seg.end());
  return out;
}

Aml aml_device(const std::string& path, const Aml& body) {
  Aml inner = aml_path(path);
  append(inner, body);
  return aml_package(0x82, inner, true);
}

Aml aml_package_of(const std::vector<Aml>& elements) {
  Aml body{static_cast<uint8_t>(elements.size())};
  for (const auto& e : elements) append(body, e);
  return aml_package(0x12, body);
}

Aml aml_resource_template(const Aml& descriptors) {
  Aml bytes = descriptors;
  append(bytes, {0x79, 0x00});  // end tag (a zero checksum means "not checked")
  return aml_buffer(bytes);
}

Aml res_io(uint16_t port, uint8_t count) {
  return {0x47, 0x01, static_cast<uint8_t>(port), static_cast<uint8_t>(port >> 8),
          static_cast<uint8_t>(port), static_cast<uint8_t>(port >> 8), 0x01, count};
}

Aml res_irq(uint8_t irq) {
  const uint16_t mask = static_cast<uint16_t>(1u << irq);
  return {0x22, static_cast<uint8_t>(mask), static_cast<uint8_t>(mask >> 8)};
}

Aml res_memory32_fixed(uint32_t base, uint32_t size) {
  Aml out{0x86, 0x09, 0x00, 0x01};  // read-write
  for (uint32_t v : {base, size}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  return out;
}

Aml res_interrupt(uint32_t gsi, bool level, bool active_low) {
  // Flags: bit 0 consumer, bit 1 edge, bit 2 active low, bit 3 shared (level lines are).
  const uint8_t flags = static_cast<uint8_t>(0x01 | (level ? 0x08 : 0x02) | (active_low ? 0x04 : 0));
  Aml out{0x89, 0x06, 0x00, flags, 0x01};
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(gsi >> (8 * i)));
  return out;
}

namespace {
// Address space descriptors: producer, min and max fixed, positive decode.
Aml address_space(uint8_t tag, uint8_t type, uint8_t type_flags, uint64_t min, uint64_t max, int width) {
  const uint16_t length = static_cast<uint16_t>(3 + 5 * width);
  Aml out{tag, static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8), type, 0x0c, type_flags};
  for (uint64_t v : {uint64_t{0}, min, max, uint64_t{0}, max - min + 1}) {
    for (int i = 0; i < width; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  return out;
}
}  // namespace

Aml res_word_bus(uint16_t min, uint16_t max) { return address_space(0x88, 2, 0, min, max, 2); }
Aml res_word_io(uint16_t min, uint16_t max) { return address_space(0x88, 1, 0x03, min, max, 2); }
Aml res_dword_memory(uint32_t min, uint32_t max) { return address_space(0x87, 0, 0x01, min, max, 4); }
Aml res_qword_memory(uint64_t min, uint64_t max) { return address_space(0x8a, 0, 0x01, min, max, 8); }

}  // namespace berth::boot
