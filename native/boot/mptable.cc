#include "boot/mptable.h"

#include <cstring>
#include <vector>

#include "boot/layout.h"
#include "common/error.h"

namespace berth::boot {

namespace {

constexpr uint64_t kFloatingPointerSize = 16;
constexpr uint64_t kHeaderSize = 44;
constexpr uint64_t kProcessorEntrySize = 20;
constexpr uint64_t kSmallEntrySize = 8;  // bus, IOAPIC, I/O and local interrupt entries
constexpr uint32_t kIsaIrqs = 16;
constexpr uint32_t kLocalInts = 2;

enum : uint8_t { kEntryProcessor = 0, kEntryBus = 1, kEntryIoApic = 2, kEntryIoInt = 3, kEntryLocalInt = 4 };
enum : uint8_t { kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3 };

class Writer {
 public:
  void u8(uint8_t v) { bytes.push_back(v); }
  void u16(uint16_t v) { for (int i = 0; i < 2; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void u32(uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void str(const char* s, size_t n) {  // fixed-width, space padded
    size_t len = std::strlen(s);
    for (size_t i = 0; i < n; ++i) u8(i < len ? static_cast<uint8_t>(s[i]) : ' ');
  }
  void zeros(size_t n) { bytes.insert(bytes.end(), n, 0); }
  std::vector<uint8_t> bytes;
};

uint8_t checksum(const std::vector<uint8_t>& b) {
  uint8_t sum = 0;
  for (uint8_t x : b) sum = static_cast<uint8_t>(sum + x);
  return static_cast<uint8_t>(-sum);
}

}  // namespace

uint64_t mp_config_table_size(uint32_t vcpu_count) {
  return kHeaderSize + uint64_t{vcpu_count} * kProcessorEntrySize +
         kSmallEntrySize * (1 /*bus*/ + 1 /*ioapic*/ + kIsaIrqs + kLocalInts);
}

uint64_t mp_config_table_addr(uint32_t vcpu_count) {
  const uint64_t ebda_room = kEbdaEnd - kEbdaAddr - kFloatingPointerSize;
  return mp_config_table_size(vcpu_count) <= ebda_room ? kEbdaAddr + kFloatingPointerSize
                                                       : kMpConfigAddrLarge;
}

void write_mptable(vmm::GuestMemory& mem, uint32_t vcpu_count) {
  if (vcpu_count == 0 || vcpu_count > kMaxMpVcpus) {
    throw Error("BOOT_VCPU_COUNT", "a VM with " + std::to_string(vcpu_count) +
                                       " vCPUs cannot be described: use 1 to " +
                                       std::to_string(kMaxMpVcpus) + " vCPUs");
  }
  const uint64_t config_addr = mp_config_table_addr(vcpu_count);
  const uint8_t ioapic_id = static_cast<uint8_t>(vcpu_count);

  Writer t;
  // Header; length, checksum and entry count are patched below.
  t.str("PCMP", 4);
  t.u16(0);                   // base table length
  t.u8(4);                    // spec revision 1.4
  t.u8(0);                    // checksum
  t.str("BERTH", 8);          // OEM ID
  t.str("BERTHVM", 12);       // product ID
  t.u32(0);                   // OEM table pointer
  t.u16(0);                   // OEM table size
  t.u16(0);                   // entry count
  t.u32(static_cast<uint32_t>(kLocalApicAddr));
  t.u16(0);                   // extended table length
  t.u8(0);                    // extended table checksum
  t.u8(0);                    // reserved
  uint16_t entries = 0;

  for (uint32_t i = 0; i < vcpu_count; ++i) {
    t.u8(kEntryProcessor);
    t.u8(static_cast<uint8_t>(i));                    // local APIC ID
    t.u8(kMpLocalApicVersion);
    t.u8(static_cast<uint8_t>(0x1 | (i == 0 ? 0x2 : 0)));  // enabled, BSP
    t.u32(0x600);                                     // CPU signature: family 6
    t.u32(0x201);                                     // features: FPU, APIC
    t.zeros(8);
    ++entries;
  }
  t.u8(kEntryBus);
  t.u8(0);  // bus ID
  t.str("ISA", 6);
  ++entries;
  t.u8(kEntryIoApic);
  t.u8(ioapic_id);
  t.u8(kMpIoApicVersion);
  t.u8(1);  // enabled
  t.u32(static_cast<uint32_t>(kIoApicAddr));
  ++entries;
  for (uint32_t irq = 0; irq < kIsaIrqs; ++irq) {
    t.u8(kEntryIoInt);
    t.u8(kIntTypeInt);
    t.u16(0);  // polarity and trigger conform to the bus
    t.u8(0);   // source bus: ISA
    t.u8(static_cast<uint8_t>(irq));
    t.u8(ioapic_id);
    t.u8(static_cast<uint8_t>(irq));  // identity: KVM routes ISA IRQ n to IOAPIC pin n
    ++entries;
  }
  t.u8(kEntryLocalInt);
  t.u8(kIntTypeExtInt);
  t.u16(0);
  t.u8(0);
  t.u8(0);
  t.u8(0);  // BSP
  t.u8(0);  // LINT0
  ++entries;
  t.u8(kEntryLocalInt);
  t.u8(kIntTypeNmi);
  t.u16(0);
  t.u8(0);
  t.u8(0);
  t.u8(0xff);  // all local APICs
  t.u8(1);     // LINT1
  ++entries;

  const uint16_t len = static_cast<uint16_t>(t.bytes.size());
  t.bytes[4] = static_cast<uint8_t>(len);
  t.bytes[5] = static_cast<uint8_t>(len >> 8);
  t.bytes[34] = static_cast<uint8_t>(entries);
  t.bytes[35] = static_cast<uint8_t>(entries >> 8);
  t.bytes[7] = checksum(t.bytes);

  Writer fp;
  fp.str("_MP_", 4);
  fp.u32(static_cast<uint32_t>(config_addr));
  fp.u8(1);  // length in 16-byte units
  fp.u8(4);  // spec revision 1.4
  fp.u8(0);  // checksum
  fp.u8(0);  // feature 1: a configuration table is present
  fp.u8(0);  // feature 2: no IMCR, virtual wire mode
  fp.zeros(3);
  fp.bytes[10] = checksum(fp.bytes);

  // Clear the EBDA (and the BIOS area when used) so no stale table survives a reboot.
  auto ebda = mem.slice(kEbdaAddr, kEbdaEnd - kEbdaAddr);
  std::memset(ebda.data(), 0, ebda.size());
  if (config_addr == kMpConfigAddrLarge) {
    auto area = mem.slice(kMpConfigAddrLarge, t.bytes.size());
    std::memset(area.data(), 0, area.size());
  }
  mem.write(kMpFloatingPointerAddr, fp.bytes);
  mem.write(config_addr, t.bytes);
}

}  // namespace berth::boot
