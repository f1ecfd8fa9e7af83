// Writing ACPI tables and the AML in them: a little-endian table builder with the common
// 36-byte header, and the few AML encodings Berth's DSDTs use (ACPI 6.4 chapters 5 and 20).
// Shared by the tables a directly booted kernel gets (boot/acpi.cc) and those firmware
// loads through fw_cfg (machine/firmware_tables.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace berth::boot {

using Aml = std::vector<uint8_t>;

class AcpiTable {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void text(const char* s, size_t n);  // padded with spaces
  void zeros(size_t n) { bytes_.insert(bytes_.end(), n, 0); }
  void put_u32(size_t at, uint32_t v);
  void append(const Aml& aml) { bytes_.insert(bytes_.end(), aml.begin(), aml.end()); }
  size_t size() const { return bytes_.size(); }
  std::vector<uint8_t>& bytes() { return bytes_; }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

  // The System Description Table header; length and checksum are filled by finish().
  void header(const char* signature, uint8_t revision);
  void finish();
  uint8_t checksum(size_t from, size_t to) const;

 private:
  std::vector<uint8_t> bytes_;
};

// A Generic Address Structure for an I/O port register of `bits` bits.
void io_port_gas(AcpiTable& t, uint16_t port, uint8_t bits = 8);

void append(Aml& to, const Aml& bytes);
// An opcode with a PkgLength-prefixed body (ext: the 0x5b extended-opcode prefix).
Aml aml_package(uint8_t op, const Aml& body, bool ext = false);
// Name (NAME, value) for a four-character name segment and an encoded value.
Aml aml_name(const char* name, const Aml& value);
Aml aml_integer(uint64_t v);       // the shortest of Zero, One, ByteConst .. QWordConst
Aml aml_dword(uint32_t v);         // always DWordConst
Aml aml_string(const std::string& s);
Aml aml_eisa_id(const char* id);   // DWordConst of acpi_eisa_id
Aml aml_buffer(const Aml& bytes);  // Buffer (size) { bytes }
// A name string: "\\_SB_.PCI0" style, dot-separated four-character segments.
Aml aml_path(const std::string& path);
// Device (path) { body }
Aml aml_device(const std::string& path, const Aml& body);
// Package (n) { elements already encoded }
Aml aml_package_of(const std::vector<Aml>& elements);
// A resource template (Buffer) from resource descriptors, with the end tag added.
Aml aml_resource_template(const Aml& descriptors);
// Resource descriptors.
Aml res_io(uint16_t port, uint8_t count);                      // IO (Decode16, port, port, 1, count)
Aml res_irq(uint8_t irq);                                       // IRQNoFlags () { irq }
Aml res_memory32_fixed(uint32_t base, uint32_t size);           // Memory32Fixed (ReadWrite)
Aml res_interrupt(uint32_t gsi, bool level, bool active_low);   // Interrupt (ResourceConsumer, ...)
Aml res_word_bus(uint16_t min, uint16_t max);                   // WordBusNumber
Aml res_word_io(uint16_t min, uint16_t max);                    // WordIO (range)
Aml res_dword_memory(uint32_t min, uint32_t max);               // DWordMemory (non-cacheable)
Aml res_qword_memory(uint64_t min, uint64_t max);               // QWordMemory (non-cacheable)

}  // namespace berth::boot
