// The saved-state file (machine/state_file), the memory image (vmm/memory_image) and the
// processor records (machine/cpu_state_records), without KVM: round trips, sparse images,
// resuming from a mapped image, and hostile files refused with their reason.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "common/state_stream.h"
#include "machine/cpu_state_records.h"
#include "machine/state_file.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"
#include "vmm/guest_memory.h"

using namespace berth;
using berth::test::rvh::TempDir;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

std::vector<uint8_t> sample_records() {
  state::Writer w;
  size_t r = w.begin("machine", 1);
  w.str("kvm");
  w.end(r);
  std::vector<uint8_t> out = w.take();
  out.resize(out.size() + 10000, 0x5a);
  return out;
}

uint64_t allocated(const std::string& path) {
  struct stat st{};
  stat(path.c_str(), &st);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Header fields: magic(8) version(4) records offset(8) size(8) crc(4) memory offset(8) size(8) crc(4).
constexpr size_t kVersionAt = 8, kRecordsCrcAt = 28, kHeaderCrcAt = 48;

void fix_header_crc(std::vector<uint8_t>& b) {
  put_u32(b, kHeaderCrcAt, static_cast<uint32_t>(crc32(crc32(0, Z_NULL, 0), b.data(), kHeaderCrcAt)));
}

hv::VcpuState sample_vcpu() {
  hv::VcpuState v;
  v.regs.rip = 0x1234;
  v.regs.rflags = 0x202;
  v.regs.r15 = 0xdeadbeefcafef00d;
  v.sregs.cs.selector = 0x10;
  v.sregs.cs.type = 11;
  v.sregs.cs.l = true;
  v.sregs.cs.present = true;
  v.sregs.cr0 = 0x80050033;
  v.sregs.efer = 0xd01;
  v.xsave.assign(4096, 0);
  v.xsave[24] = 0x80;  // MXCSR
  v.xcrs.push_back({0, 7});
  v.msrs.push_back({0x10, 987654321});
  v.msrs.push_back({0x4b564d01, 0x5001});
  v.lapic.assign(1024, 0);
  v.lapic[0x20] = 3;
  v.mp_state = hv::MpState::kHalted;
  v.events.interrupt_injected = true;
  v.events.interrupt_nr = 0x40;
  v.events.nmi_masked = true;
  v.debug.dr7 = 0x400;
  return v;
}

}  // namespace

TEST(state_file_round_trip_keeps_records_and_leaves_unused_memory_as_holes) {
  TempDir dir;
  vmm::GuestMemory memory(64 * kMiB);
  // 1 MiB of data at 8 MiB, one written-then-zeroed page, the rest never touched.
  auto data = memory.slice(8 * kMiB, kMiB);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 1);
  memory.slice(40 * kMiB, 4096)[0] = 0;
  auto records = sample_records();
  auto path = dir.file("vm.bstate");
  auto stats = machine::write_state_file(path, records, memory);
  CHECK_EQ(stats.memory_bytes_written, kMiB);
  CHECK(allocated(path) < 4 * kMiB);  // 64 MiB of RAM, about 1 MiB on disk

  auto sf = machine::open_state_file(path);
  CHECK(sf.records == records);
  CHECK_EQ(sf.memory_bytes, 64 * kMiB);
  CHECK_EQ(sf.memory_offset % machine::kStateMemoryAlign, 0ull);

  vmm::GuestMemory resumed(64 * kMiB, vmm::MemoryImage{sf.fd.get(), sf.memory_offset});
  CHECK(std::memcmp(resumed.slice(8 * kMiB, kMiB).data(), data.data(), kMiB) == 0);
  CHECK_EQ(resumed.read_obj<uint64_t>(0), 0ull);
  CHECK_EQ(resumed.read_obj<uint64_t>(63 * kMiB), 0ull);
  // Writes stay in the process: the file is never changed by the resumed VM.
  resumed.write_obj<uint32_t>(8 * kMiB, 0xffffffff);
  auto again = machine::open_state_file(path);
  vmm::GuestMemory other(64 * kMiB, vmm::MemoryImage{again.fd.get(), again.memory_offset});
  CHECK_EQ(other.read_obj<uint8_t>(8 * kMiB), data[0]);
}

TEST(state_file_saved_again_from_a_mapped_image_keeps_pages_never_touched_since) {
  TempDir dir;
  vmm::GuestMemory memory(32 * kMiB);
  for (uint64_t at = 0; at < 32 * kMiB; at += kMiB) memory.write_obj<uint64_t>(at + 4096, at + 1);
  auto first = dir.file("first.bstate");
  machine::write_state_file(first, sample_records(), memory);

  auto sf = machine::open_state_file(first);
  vmm::GuestMemory resumed(32 * kMiB, vmm::MemoryImage{sf.fd.get(), sf.memory_offset});
  resumed.write_obj<uint64_t>(5 * kMiB + 8192, 42);  // one page changed, the rest only in the file
  auto second = dir.file("second.bstate");
  auto stats = machine::write_state_file(second, sample_records(), resumed);
  CHECK_EQ(stats.memory_bytes_written, 33 * 4096ull);

  auto sf2 = machine::open_state_file(second);
  vmm::GuestMemory check(32 * kMiB, vmm::MemoryImage{sf2.fd.get(), sf2.memory_offset});
  for (uint64_t at = 0; at < 32 * kMiB; at += kMiB) CHECK_EQ(check.read_obj<uint64_t>(at + 4096), at + 1);
  CHECK_EQ(check.read_obj<uint64_t>(5 * kMiB + 8192), 42ull);
}

TEST(guest_memory_from_an_image_is_zero_again_after_a_reset) {
  TempDir dir;
  vmm::GuestMemory memory(8 * kMiB);
  memory.write_obj<uint64_t>(kMiB, 0x1122334455667788);
  auto path = dir.file("vm.bstate");
  machine::write_state_file(path, sample_records(), memory);
  auto sf = machine::open_state_file(path);
  vmm::GuestMemory resumed(8 * kMiB, vmm::MemoryImage{sf.fd.get(), sf.memory_offset});
  CHECK_EQ(resumed.read_obj<uint64_t>(kMiB), 0x1122334455667788ull);
  resumed.clear();
  CHECK_EQ(resumed.read_obj<uint64_t>(kMiB), 0ull);
  CHECK_EQ(resumed.image_fd(), -1);
}

TEST(state_file_hostile_files_are_refused_with_the_reason) {
  TempDir dir;
  vmm::GuestMemory memory(4 * kMiB);
  memory.write_obj<uint32_t>(0, 1);
  auto path = dir.file("vm.bstate");
  machine::write_state_file(path, sample_records(), memory);
  const auto good = read_all(path);
  auto bad = dir.file("bad.bstate");

  CHECK_THROWS_CODE(machine::open_state_file(dir.file("missing.bstate")), "STATE_INVALID", "does not exist");

  auto b = good;
  b.resize(b.size() - 4096);
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_INVALID", "truncated");

  b = good;
  b.resize(100);
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_INVALID", "shorter than its header");

  b = good;
  b[0] = 'X';
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_INVALID", "not a Berth saved-state file");

  b = good;
  put_u32(b, kVersionAt, 2);
  fix_header_crc(b);
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_VERSION", "format version 2");

  b = good;
  put_u32(b, kVersionAt, 2);  // without fixing the checksum: still refused, as a version first
  b[kHeaderCrcAt] ^= 1;
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_VERSION", "version 2");

  b = good;
  b[machine::kStateHeaderBytes + 20] ^= 0x40;  // a record byte
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_INVALID", "fail their checksum");

  b = good;
  b[kRecordsCrcAt] ^= 1;
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_INVALID", "header's checksum");

  b = good;
  b.resize(b.size() + 4096, 0);
  write_all(bad, b);
  CHECK_THROWS_CODE(machine::open_state_file(bad), "STATE_INVALID", "not");
}

TEST(state_file_is_written_whole_or_not_at_all) {
  TempDir dir;
  vmm::GuestMemory memory(4 * kMiB);
  std::vector<uint8_t> huge(machine::kMaxStateRecordsBytes + 1);
  auto path = dir.file("vm.bstate");
  CHECK_THROWS_CODE(machine::write_state_file(path, huge, memory), "STATE_IO", "limit");
  CHECK_THROWS_CODE(machine::write_state_file(dir.file("no/such/folder/vm.bstate"), sample_records(), memory),
                    "STATE_IO", "cannot create");
  CHECK(access(path.c_str(), F_OK) != 0);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path)) ++entries;
  CHECK_EQ(entries, size_t{0});
}

TEST(vcpu_records_round_trip_and_refuse_impossible_values) {
  state::Writer w;
  machine::save_vcpu_record(w, sample_vcpu());
  auto bytes = w.take();
  state::Reader r(bytes, "VM");
  auto v = machine::load_vcpu_record(r);
  r.expect_end();
  CHECK_EQ(v.regs.rip, 0x1234ull);
  CHECK_EQ(v.regs.r15, 0xdeadbeefcafef00dull);
  CHECK(v.sregs.cs.l && v.sregs.cs.present && !v.sregs.cs.g);
  CHECK_EQ(v.sregs.cs.type, 11);
  CHECK_EQ(v.xsave[24], 0x80);
  CHECK_EQ(v.msrs.size(), size_t{2});
  CHECK_EQ(v.msrs[1].value, 0x5001ull);
  CHECK(v.mp_state == hv::MpState::kHalted);
  CHECK(v.events.interrupt_injected && v.events.nmi_masked);
  CHECK_EQ(v.events.interrupt_nr, 0x40);
  CHECK_EQ(v.debug.dr7, 0x400ull);

  auto with = [&](auto edit) {
    auto s = sample_vcpu();
    edit(s);
    state::Writer bw;
    machine::save_vcpu_record(bw, s);
    return bw.take();
  };
  auto load = [](std::vector<uint8_t> b) {
    state::Reader br(b, "VM");
    return machine::load_vcpu_record(br);
  };
  CHECK_THROWS_CODE(load(with([](hv::VcpuState& s) { s.mp_state = static_cast<hv::MpState>(9); })), "STATE_INVALID",
                    "multiprocessor state 9");
  CHECK_THROWS_CODE(load(with([](hv::VcpuState& s) { s.lapic.resize(100); })), "STATE_INVALID", "local APIC state is 100");
  CHECK_THROWS_CODE(load(with([](hv::VcpuState& s) { s.events.exception_nr = 40; })), "STATE_INVALID", "exception vector 40");
  CHECK_THROWS_CODE(load(with([](hv::VcpuState& s) { s.sregs.ss.type = 16; })), "STATE_INVALID", "segment");
  CHECK_THROWS_CODE(load(with([](hv::VcpuState& s) { s.msrs.resize(hv::kMaxSavedMsrs + 1); })), "STATE_INVALID",
                    "MSR count");
  auto cut = bytes;
  cut.resize(cut.size() - 3);
  CHECK_THROWS_CODE(load(cut), "STATE_INVALID", "longer than the data left");
}

TEST(cpuid_record_round_trips_and_missing_features_are_named) {
  std::vector<hv::CpuidEntry> saved = {
      {1, 0, 0, 0x806f0, 0x800, (1u << 20) | (1u << 28), 1u << 26},
      {7, 0, hv::kCpuidFlagSignificantIndex, 0, (1u << 5) | (1u << 16) | (1u << 12), 0, 0},
      {7, 1, hv::kCpuidFlagSignificantIndex, 1u << 4, 0, 0, 0},
  };
  state::Writer w;
  machine::save_cpuid_record(w, saved);
  auto bytes = w.take();
  state::Reader r(bytes, "VM");
  auto back = machine::load_cpuid_record(r);
  CHECK_EQ(back.size(), saved.size());
  CHECK_EQ(back[1].ebx, saved[1].ebx);

  CHECK(machine::missing_cpu_features(saved, saved).empty());
  auto host = saved;
  host[1].ebx &= ~(1u << 16);  // no AVX-512
  host[1].ebx &= ~(1u << 12);  // and an unnamed bit
  host[0].ecx &= ~(1u << 28);  // no AVX
  auto missing = machine::missing_cpu_features(saved, host);
  CHECK_EQ(missing.size(), size_t{3});
  CHECK_STR(missing[0], "avx");
  CHECK_STR(missing[1], "CPUID leaf 0x7 EBX bit 12");
  CHECK_STR(missing[2], "avx512f");
}

TEST(platform_records_round_trip) {
  hv::PlatformState p;
  p.backend = "kvm";
  p.chips = {std::vector<uint8_t>(512, 1), std::vector<uint8_t>(512, 2), std::vector<uint8_t>(512, 3),
             std::vector<uint8_t>(112, 4)};
  p.clock_ns = 123456789;
  state::Writer w;
  machine::save_platform_record(w, p);
  auto bytes = w.take();
  state::Reader r(bytes, "VM");
  auto back = machine::load_platform_record(r);
  CHECK_STR(back.backend, "kvm");
  CHECK_EQ(back.chips.size(), size_t{4});
  CHECK(back.chips[3] == p.chips[3]);
  CHECK_EQ(back.clock_ns, 123456789ull);
  p.chips.resize(hv::kMaxPlatformChips + 1);
  state::Writer w2;
  machine::save_platform_record(w2, p);
  auto b2 = w2.take();
  state::Reader r2(b2, "VM");
  CHECK_THROWS_CODE(machine::load_platform_record(r2), "STATE_INVALID", "platform device count");
}

TEST(state_stream_refuses_unknown_record_versions_and_names) {
  state::Writer w;
  size_t t = w.begin("uart", 2);
  w.u8(1);
  w.end(t);
  auto bytes = w.take();
  state::Reader r(bytes, "VM");
  CHECK_THROWS_CODE(r.record("uart", 1), "STATE_VERSION", "version 2");
  state::Reader r2(bytes, "VM");
  CHECK_THROWS_CODE(r2.record("rtc", 1), "STATE_INVALID", "expected a 'rtc' record, found 'uart'");
}

TEST(state_file_written_while_running_holds_memory_as_it_was_when_run_on_began) {
  TempDir dir;
  vmm::GuestMemory memory(32 * kMiB);
  for (uint64_t at = 0; at < 16 * kMiB; at += 4096) memory.write_obj<uint64_t>(at, at ^ 0x5555);
  auto path = dir.file("live.bstate");
  bool ran = false;
  auto stats = machine::write_state_file_while_running(path, sample_records(), memory, [&] {
    ran = true;
    // The VM runs on and changes its memory while the snapshot is written.
    for (uint64_t at = 0; at < 32 * kMiB; at += 4096) memory.write_obj<uint64_t>(at, 0xffffffffffffffff);
  });
  CHECK(ran);
  CHECK_EQ(stats.memory_bytes_written, 16 * kMiB);
  auto sf = machine::open_state_file(path);
  vmm::GuestMemory snapshot(32 * kMiB, vmm::MemoryImage{sf.fd.get(), sf.memory_offset});
  for (uint64_t at = 0; at < 16 * kMiB; at += 4096) CHECK_EQ(snapshot.read_obj<uint64_t>(at), at ^ 0x5555);
  CHECK_EQ(snapshot.read_obj<uint64_t>(20 * kMiB), 0ull);
}

TEST(state_file_written_while_running_leaves_nothing_when_run_on_fails) {
  TempDir dir;
  vmm::GuestMemory memory(8 * kMiB);
  memory.write_obj<uint64_t>(0, 1);
  auto path = dir.file("live.bstate");
  CHECK_THROWS_CODE(machine::write_state_file_while_running(path, sample_records(), memory,
                                                            [] { throw Error("DISK_NOT_FOUND", "no overlay"); }),
                    "DISK_NOT_FOUND", "no overlay");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path)) ++entries;
  CHECK_EQ(entries, size_t{0});
}
