#include "machine/cpu_state_records.h"

#include <cstdio>

namespace berth::machine {

namespace {

void save_segment(state::Writer& w, const hv::Segment& s) {
  w.u64(s.base);
  w.u32(s.limit);
  w.u16(s.selector);
  w.u8(s.type);
  w.u8(s.dpl);
  w.u8(static_cast<uint8_t>(s.present | s.db << 1 | s.s << 2 | s.l << 3 | s.g << 4 | s.unusable << 5));
}

hv::Segment load_segment(state::Reader& r) {
  hv::Segment s;
  s.base = r.u64("segment base");
  s.limit = r.u32("segment limit");
  s.selector = r.u16("segment selector");
  s.type = r.u8("segment type");
  s.dpl = r.u8("segment privilege level");
  uint8_t f = r.u8("segment flags");
  if (s.type > 15 || s.dpl > 3 || f > 63) r.fail("a segment register holds impossible values");
  s.present = f & 1;
  s.db = f & 2;
  s.s = f & 4;
  s.l = f & 8;
  s.g = f & 16;
  s.unusable = f & 32;
  return s;
}

}  // namespace

void save_vcpu_record(state::Writer& w, const hv::VcpuState& v) {
  size_t rec = w.begin("vcpu", 1);
  const auto& g = v.regs;
  for (uint64_t x : {g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rsp, g.rbp, g.r8, g.r9, g.r10, g.r11, g.r12, g.r13,
                     g.r14, g.r15, g.rip, g.rflags}) {
    w.u64(x);
  }
  const auto& s = v.sregs;
  for (const auto* seg : {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt}) save_segment(w, *seg);
  w.u64(s.gdt.base);
  w.u16(s.gdt.limit);
  w.u64(s.idt.base);
  w.u16(s.idt.limit);
  for (uint64_t x : {s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base}) w.u64(x);
  w.blob(v.xsave);
  w.u32(static_cast<uint32_t>(v.xcrs.size()));
  for (const auto& x : v.xcrs) {
    w.u32(x.index);
    w.u64(x.value);
  }
  w.u32(static_cast<uint32_t>(v.msrs.size()));
  for (const auto& m : v.msrs) {
    w.u32(m.index);
    w.u64(m.value);
  }
  w.blob(v.lapic);
  w.u32(static_cast<uint32_t>(v.mp_state));
  const auto& e = v.events;
  w.boolean(e.exception_injected);
  w.boolean(e.exception_pending);
  w.boolean(e.exception_has_error_code);
  w.u8(e.exception_nr);
  w.u32(e.exception_error_code);
  w.boolean(e.interrupt_injected);
  w.boolean(e.interrupt_soft);
  w.u8(e.interrupt_nr);
  w.u8(e.interrupt_shadow);
  w.boolean(e.nmi_injected);
  w.boolean(e.nmi_pending);
  w.boolean(e.nmi_masked);
  w.u32(e.sipi_vector);
  w.boolean(e.smm);
  w.boolean(e.smi_pending);
  w.boolean(e.smm_inside_nmi);
  w.boolean(e.latched_init);
  for (uint64_t x : v.debug.db) w.u64(x);
  w.u64(v.debug.dr6);
  w.u64(v.debug.dr7);
  w.end(rec);
}

hv::VcpuState load_vcpu_record(state::Reader& outer) {
  auto rec = outer.record("vcpu", 1);
  auto& r = rec.body;
  hv::VcpuState v;
  auto& g = v.regs;
  for (uint64_t* x : {&g.rax, &g.rbx, &g.rcx, &g.rdx, &g.rsi, &g.rdi, &g.rsp, &g.rbp, &g.r8, &g.r9, &g.r10, &g.r11,
                      &g.r12, &g.r13, &g.r14, &g.r15, &g.rip, &g.rflags}) {
    *x = r.u64("general register");
  }
  auto& s = v.sregs;
  for (auto* seg : {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt}) *seg = load_segment(r);
  s.gdt.base = r.u64("GDT base");
  s.gdt.limit = r.u16("GDT limit");
  s.idt.base = r.u64("IDT base");
  s.idt.limit = r.u16("IDT limit");
  for (uint64_t* x : {&s.cr0, &s.cr2, &s.cr3, &s.cr4, &s.cr8, &s.efer, &s.apic_base}) *x = r.u64("control register");
  auto xsave = r.blob(hv::kMaxXsaveBytes, "XSAVE area");
  v.xsave.assign(xsave.begin(), xsave.end());
  uint32_t nxcr = r.count(hv::kMaxXcrs, "XCR count");
  for (uint32_t i = 0; i < nxcr; ++i) {
    uint32_t index = r.u32("XCR index");
    v.xcrs.push_back({index, r.u64("XCR value")});
  }
  uint32_t nmsr = r.count(hv::kMaxSavedMsrs, "MSR count");
  for (uint32_t i = 0; i < nmsr; ++i) {
    uint32_t index = r.u32("MSR index");
    v.msrs.push_back({index, r.u64("MSR value")});
  }
  auto lapic = r.blob(hv::kLapicStateBytes, "local APIC state");
  if (lapic.size() != hv::kLapicStateBytes) r.fail("the local APIC state is " + std::to_string(lapic.size()) + " bytes, not 1024");
  v.lapic.assign(lapic.begin(), lapic.end());
  uint32_t mp = r.u32("multiprocessor state");
  if (mp >= hv::kMpStateCount) r.fail("multiprocessor state " + std::to_string(mp) + " does not exist");
  v.mp_state = static_cast<hv::MpState>(mp);
  auto& e = v.events;
  e.exception_injected = r.boolean("exception injected");
  e.exception_pending = r.boolean("exception pending");
  e.exception_has_error_code = r.boolean("exception error code present");
  e.exception_nr = r.u8("exception vector");
  if (e.exception_nr > 31) r.fail("exception vector " + std::to_string(e.exception_nr) + " is not an exception");
  e.exception_error_code = r.u32("exception error code");
  e.interrupt_injected = r.boolean("interrupt injected");
  e.interrupt_soft = r.boolean("software interrupt");
  e.interrupt_nr = r.u8("interrupt vector");
  e.interrupt_shadow = r.u8("interrupt shadow");
  if (e.interrupt_shadow > 3) r.fail("interrupt shadow " + std::to_string(e.interrupt_shadow) + " is invalid");
  e.nmi_injected = r.boolean("NMI injected");
  e.nmi_pending = r.boolean("NMI pending");
  e.nmi_masked = r.boolean("NMI masked");
  e.sipi_vector = r.u32("SIPI vector");
  if (e.sipi_vector > 0xff) r.fail("SIPI vector " + std::to_string(e.sipi_vector) + " is over 0xff");
  e.smm = r.boolean("SMM");
  e.smi_pending = r.boolean("SMI pending");
  e.smm_inside_nmi = r.boolean("SMM inside NMI");
  e.latched_init = r.boolean("latched INIT");
  for (auto& x : v.debug.db) x = r.u64("debug register");
  v.debug.dr6 = r.u64("DR6");
  v.debug.dr7 = r.u64("DR7");
  r.expect_end();
  return v;
}

void save_platform_record(state::Writer& w, const hv::PlatformState& p) {
  size_t rec = w.begin("platform", 1);
  w.str(p.backend);
  w.u32(static_cast<uint32_t>(p.chips.size()));
  for (const auto& c : p.chips) w.blob(c);
  w.u64(p.clock_ns);
  w.end(rec);
}

hv::PlatformState load_platform_record(state::Reader& outer) {
  auto rec = outer.record("platform", 1);
  auto& r = rec.body;
  hv::PlatformState p;
  p.backend = r.str(16, "hypervisor");
  uint32_t n = r.count(hv::kMaxPlatformChips, "platform device count");
  for (uint32_t i = 0; i < n; ++i) {
    auto c = r.blob(hv::kMaxPlatformChipBytes, "platform device state");
    p.chips.emplace_back(c.begin(), c.end());
  }
  p.clock_ns = r.u64("VM clock");
  r.expect_end();
  return p;
}

void save_cpuid_record(state::Writer& w, const std::vector<hv::CpuidEntry>& supported) {
  size_t rec = w.begin("cpuid", 1);
  w.u32(static_cast<uint32_t>(supported.size()));
  for (const auto& e : supported) {
    for (uint32_t x : {e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx}) w.u32(x);
  }
  w.end(rec);
}

std::vector<hv::CpuidEntry> load_cpuid_record(state::Reader& outer) {
  auto rec = outer.record("cpuid", 1);
  auto& r = rec.body;
  uint32_t n = r.count(kMaxCpuidEntries, "CPUID entry count");
  std::vector<hv::CpuidEntry> out;
  for (uint32_t i = 0; i < n; ++i) {
    hv::CpuidEntry e;
    for (uint32_t* x : {&e.function, &e.index, &e.flags, &e.eax, &e.ebx, &e.ecx, &e.edx}) *x = r.u32("CPUID value");
    out.push_back(e);
  }
  r.expect_end();
  return out;
}

namespace {

struct FeatureWord {
  uint32_t function, index;
  int reg;  // 0 eax, 1 ebx, 2 ecx, 3 edx
  const char* reg_name;
  const char* names[32];
};

// The feature words a guest's code commonly depends on; unnamed bits are reported by number.
const FeatureWord kFeatureWords[] = {
    {0x1, 0, 2, "ECX", {"sse3", "pclmulqdq", nullptr, nullptr, nullptr, "vmx", nullptr, nullptr, nullptr, "ssse3", nullptr,
                        nullptr, "fma", "cx16", nullptr, nullptr, nullptr, "pcid", nullptr, "sse4_1", "sse4_2", "x2apic",
                        "movbe", "popcnt", "tsc_deadline", "aes", "xsave", nullptr, "avx", "f16c", "rdrand", nullptr}},
    {0x1, 0, 3, "EDX", {"fpu", nullptr, nullptr, nullptr, "tsc", "msr", "pae", nullptr, "cx8", "apic", nullptr, "sep",
                        "mtrr", "pge", nullptr, "cmov", "pat", "pse36", nullptr, "clflush", nullptr, nullptr, nullptr,
                        "mmx", "fxsr", "sse", "sse2", nullptr, nullptr, nullptr, nullptr, nullptr}},
    {0x7, 0, 1, "EBX", {"fsgsbase", nullptr, nullptr, "bmi1", "hle", "avx2", nullptr, "smep", "bmi2", "erms", "invpcid",
                        "rtm", nullptr, nullptr, "mpx", nullptr, "avx512f", "avx512dq", "rdseed", "adx", "smap",
                        "avx512ifma", nullptr, "clflushopt", "clwb", nullptr, nullptr, nullptr, "avx512cd", "sha_ni",
                        "avx512bw", "avx512vl"}},
    {0x7, 0, 2, "ECX", {nullptr, "avx512vbmi", "umip", "pku", nullptr, "waitpkg", "avx512_vbmi2", nullptr, "gfni", "vaes",
                        "vpclmulqdq", "avx512_vnni", "avx512_bitalg", nullptr, "avx512_vpopcntdq", nullptr, "la57",
                        nullptr, nullptr, nullptr, nullptr, nullptr, "rdpid", nullptr, nullptr, "cldemote", nullptr,
                        "movdiri", "movdir64b", nullptr, nullptr, nullptr}},
    {0x7, 0, 3, "EDX", {nullptr, nullptr, nullptr, nullptr, "fsrm", nullptr, nullptr, nullptr, "avx512_vp2intersect",
                        nullptr, "md_clear", nullptr, nullptr, nullptr, "serialize", nullptr, nullptr, nullptr, nullptr,
                        nullptr, nullptr, nullptr, "amx_bf16", "avx512_fp16", "amx_tile", "amx_int8", nullptr, nullptr,
                        nullptr, nullptr, nullptr, nullptr}},
    {0xd, 1, 0, "EAX", {"xsaveopt", "xsavec", "xgetbv1", "xsaves", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                        nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                        nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr}},
    {0x80000001, 0, 2, "ECX", {"lahf_lm", nullptr, "svm", nullptr, nullptr, "abm", "sse4a", "misalignsse", "3dnowprefetch",
                               nullptr, nullptr, "xop", nullptr, nullptr, nullptr, nullptr, "fma4", nullptr, nullptr,
                               nullptr, nullptr, "tbm", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                               nullptr, nullptr, nullptr}},
    {0x80000001, 0, 3, "EDX", {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                               nullptr, "syscall", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                               "nx", nullptr, "mmxext", nullptr, nullptr, nullptr, "pdpe1gb", "rdtscp", nullptr, "lm",
                               nullptr, nullptr}},
};

uint32_t reg_of(const hv::CpuidEntry& e, int reg) {
  switch (reg) {
    case 0: return e.eax;
    case 1: return e.ebx;
    case 2: return e.ecx;
    default: return e.edx;
  }
}

const hv::CpuidEntry* find(const std::vector<hv::CpuidEntry>& list, uint32_t function, uint32_t index) {
  for (const auto& e : list) {
    if (e.function == function && (e.index == index || !(e.flags & hv::kCpuidFlagSignificantIndex))) return &e;
  }
  return nullptr;
}

}  // namespace

std::vector<std::string> missing_cpu_features(const std::vector<hv::CpuidEntry>& saved,
                                              const std::vector<hv::CpuidEntry>& host) {
  std::vector<std::string> missing;
  for (const auto& fw : kFeatureWords) {
    const auto* s = find(saved, fw.function, fw.index);
    if (!s) continue;
    const auto* h = find(host, fw.function, fw.index);
    uint32_t lacking = reg_of(*s, fw.reg) & ~(h ? reg_of(*h, fw.reg) : 0);
    for (int bit = 0; bit < 32; ++bit) {
      if (!(lacking & (1u << bit))) continue;
      if (fw.names[bit]) {
        missing.push_back(fw.names[bit]);
      } else {
        char b[64];
        std::snprintf(b, sizeof b, "CPUID leaf 0x%x %s bit %d", fw.function, fw.reg_name, bit);
        missing.push_back(b);
      }
    }
  }
  return missing;
}

}  // namespace berth::machine
