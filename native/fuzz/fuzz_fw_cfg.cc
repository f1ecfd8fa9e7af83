// fw_cfg is driven entirely by the guest: any sequence of selector writes, data reads, DMA
// address writes and DMA descriptors in guest memory must end in answers (bytes, zeros,
// the error bit), never a crash, an access outside guest memory or a hang. The saved state
// must round-trip at any point.
//
// Input: a script of operations, each an opcode byte and its operands; DMA descriptors
// and buffers are written into a 64 KiB guest RAM by the script itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/error.h"
#include "common/state_stream.h"
#include "devices/platform/fw_cfg.h"
#include "vmm/guest_memory.h"

using berth::devices::platform::FwCfg;
namespace key = berth::devices::platform::fw_cfg_key;

namespace {

constexpr uint64_t kRam = 64 * 1024;

struct Script {
  const uint8_t* p;
  size_t left;
  uint8_t u8() {
    if (!left) return 0;
    --left;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | u8() << 8); }
  uint32_t u32() { return u16() | uint32_t{u16()} << 16; }
};

void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// Mostly inside RAM, sometimes straddling its end or far outside it.
uint64_t address(Script& s) {
  const uint16_t v = s.u16();
  switch (v >> 14) {
    case 0:
    case 1: return v & 0x7fff;
    case 2: return kRam - (v & 0xff);
    default: return 0xfffffffffffff000ull + (v & 0xfff);
  }
}

std::vector<uint8_t> save(const FwCfg& fw) {
  berth::state::Writer w;
  fw.save_state(w);
  return w.take();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static berth::vmm::GuestMemory memory(kRam);
  std::memset(memory.regions()[0].host, 0, kRam);

  FwCfg fw(memory);
  fw.add_u16(key::kNbCpus, 2);
  fw.add_u64(key::kRamSize, kRam);
  fw.add_file("etc/e820", std::vector<uint8_t>(40, 0x11));
  fw.add_file("bootorder", {'/', 'p', 'c', 'i', 0});
  FwCfg::FileOptions writable;
  writable.on_write = [](uint32_t off, std::span<const uint8_t> b) {
    if (off > 8 || b.size() > 8 - off) __builtin_trap();  // never beyond the file
  };
  fw.add_file("etc/vmgenid_addr", std::vector<uint8_t>(8, 0), writable);
  FwCfg::FileOptions growing;
  growing.on_select = [](std::vector<uint8_t>& d) { d.resize((d.size() + 3) % 300); };
  fw.add_file("etc/acpi/tables", std::vector<uint8_t>(100, 0x22), growing);

  Script s{data, size};
  for (int ops = 0; s.left && ops < 256; ++ops) {
    const uint8_t op = s.u8();
    switch (op % 9) {
      case 0: {  // select
        const uint16_t k = s.u16();
        uint8_t b[2] = {static_cast<uint8_t>(k), static_cast<uint8_t>(k >> 8)};
        fw.write(FwCfg::kSelectorOffset, b);
        break;
      }
      case 1: {  // read the data port, any width at any offset
        uint8_t buf[8];
        const size_t width = size_t{1} << (s.u8() % 4);
        fw.read(s.u8() % FwCfg::kPortCount, std::span<uint8_t>(buf, width));
        break;
      }
      case 2: {  // a DMA descriptor written into RAM
        const uint64_t at = s.u16() % (kRam - 16);
        uint8_t access[16];
        put_be32(access, s.u32());
        const uint32_t len = s.u8() & 0x80 ? s.u32() : s.u8();
        put_be32(access + 4, len);
        const uint64_t addr = address(s);
        put_be32(access + 8, static_cast<uint32_t>(addr >> 32));
        put_be32(access + 12, static_cast<uint32_t>(addr));
        memory.write(at, access);
        break;
      }
      case 3: {  // DMA address: high half, low half (starts), or both
        uint8_t b[8];
        const uint64_t addr = address(s);
        put_be32(b, static_cast<uint32_t>(addr >> 32));
        put_be32(b + 4, static_cast<uint32_t>(addr));
        const uint8_t how = s.u8() % 3;
        if (how == 0) fw.write(FwCfg::kDmaOffset, std::span<const uint8_t>(b, 4));
        if (how == 1) fw.write(FwCfg::kDmaOffset + 4, std::span<const uint8_t>(b + 4, 4));
        if (how == 2) fw.write(FwCfg::kDmaOffset, std::span<const uint8_t>(b, 8));
        break;
      }
      case 4: {  // any write anywhere
        uint8_t b[8];
        for (auto& x : b) x = s.u8();
        const size_t width = size_t{1} << (s.u8() % 4);
        fw.write(s.u8() % 16, std::span<const uint8_t>(b, width));
        break;
      }
      case 5:
        fw.reset();
        break;
      case 6: {  // saved state round trip
        auto bytes = save(fw);
        berth::state::Reader r(bytes, "fuzz");
        fw.load_state(r);
        if (save(fw) != bytes) __builtin_trap();
        break;
      }
      case 7: {  // guest bytes for a DMA write to come from
        const uint64_t at = s.u16() % (kRam - 8);
        uint8_t b[8];
        for (auto& x : b) x = s.u8();
        memory.write(at, b);
        break;
      }
      case 8: {  // a hostile state record: refused or taken, never a crash
        auto bytes = save(fw);
        if (!bytes.empty()) bytes[s.u8() % bytes.size()] ^= s.u8();
        try {
          berth::state::Reader r(bytes, "fuzz");
          fw.load_state(r);
        } catch (const berth::Error&) {
        }
        break;
      }
    }
  }
  return 0;
}
