// Fuzzes the saved-state file reader and the processor-side records (machine/state_file,
// machine/cpu_state_records): a state file is untrusted input. The first byte picks the
// entry: 0 treats the rest as the front of a state file (its claimed total size in the
// next 8 bytes), anything else as bare records past the checksum, so the fuzzer reaches
// the record parsers too.
#include <cstdint>
#include <cstring>
#include <span>

#include "common/error.h"
#include "common/state_stream.h"
#include "machine/cpu_state_records.h"
#include "machine/state_file.h"

using namespace berth;

namespace {

void parse_records(std::span<const uint8_t> records) {
  state::Reader top(records, "VM");
  auto m = top.record("machine", 1);
  m.body.str(16, "hypervisor");
  m.body.str(4096, "configuration");
  auto cpuid = machine::load_cpuid_record(top);
  auto host = cpuid;
  for (auto& e : host) e.ebx &= 0x0000ffff;  // a host lacking some features
  (void)machine::missing_cpu_features(cpuid, host);
  while (top.peek_record_name() == "vcpu") (void)machine::load_vcpu_record(top);
  (void)machine::load_platform_record(top);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  try {
    if (data[0] == 0) {
      if (size < 9) return 0;
      uint64_t claimed = 0;
      std::memcpy(&claimed, data + 1, 8);
      uint64_t offset = 0, bytes = 0;
      auto records = machine::parse_state_header_and_records(std::span<const uint8_t>(data + 9, size - 9), claimed,
                                                             &offset, &bytes);
      parse_records(records);
    } else {
      parse_records(std::span<const uint8_t>(data + 1, size - 1));
    }
  } catch (const berth::Error&) {
    // Refused with a reason: what the reader must do with bad input.
  }
  return 0;
}
