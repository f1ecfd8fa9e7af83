// Edit Disk operations (native/disk/operations) with qemu-img as the judge: convert round
// trips through every committed format compare equal and stay sparse; expand/shrink keep
// data and refuse to cut it off; compact reclaims zeroed blocks; merge and reconnect keep
// the chain's contents; cancellation and failures leave no partial file and the source
// unchanged. A format listed in kFormats whose driver is missing fails these tests.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "disk/block_device.h"
#include "disk/operations/operations.h"
#include "tests/check.h"

using namespace berth::disk;
namespace ops = berth::disk::ops;

namespace {

// The formats whose drivers are committed; each is exercised (not skipped).
const std::vector<Format> kFormats = {Format::kRaw, Format::kQcow2, Format::kVhdx, Format::kVhd};
// Formats that can be differencing disks, from kFormats.
std::vector<Format> differencing_formats() { return {Format::kQcow2, Format::kVhdx, Format::kVhd}; }
// Formats whose drivers implement resize: grow for these, shrink for the second list.
std::vector<Format> resizable_formats() { return {Format::kRaw, Format::kQcow2, Format::kVhdx, Format::kVhd}; }
bool can_shrink(Format) { return true; }

CreateOptions mk(Format f, uint64_t size, const std::string& backing = "") {
  CreateOptions c;
  c.format = f;
  c.size = size;
  c.backing_path = backing;
  return c;
}

OpenOptions read_only() {
  OpenOptions o;
  o.read_only = true;
  return o;
}

const char* qemu_name(Format f) { return f == Format::kVhd ? "vpc" : format_name(f); }

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/berth-disk-ops-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

int sh(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
  int st = pclose(p);
  if (out) *out = s;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The number after "key": in qemu-img's JSON (first occurrence), or -1.
long long json_number(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::atoll(json.c_str() + at + key.size() + 3);
}

std::string json_string(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return "";
  auto q1 = json.find('"', at + key.size() + 3);
  auto q2 = json.find('"', q1 + 1);
  return json.substr(q1 + 1, q2 - q1 - 1);
}

std::string qemu_info(const std::string& path) {
  std::string out;
  sh("qemu-img info --output=json '" + path + "'", &out);
  return out;
}

bool qemu_same(const std::string& a, const std::string& b) {
  std::string out;
  // Formats are named: qemu probes a fixed VHD (footer only) as raw.
  int rc = sh(std::string("qemu-img compare -f ") + qemu_name(probe_format(a)) + " -F " + qemu_name(probe_format(b)) +
                  " '" + a + "' '" + b + "'",
              &out);
  if (rc != 0) std::fprintf(stderr, "    qemu-img compare %s %s: %s", a.c_str(), b.c_str(), out.c_str());
  return rc == 0;
}

bool qemu_check_clean(const std::string& path, Format f) {
  if (f == Format::kRaw || f == Format::kVhd) return true;  // qemu-img checks neither
  std::string out;
  int rc = sh("qemu-img check '" + path + "'", &out);
  if (rc != 0) std::fprintf(stderr, "    qemu-img check %s: %s", path.c_str(), out.c_str());
  return rc == 0;
}

uint64_t allocated(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

uint64_t file_hash(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return 0;
  uint64_t h = 1469598103934665603ULL;
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
    for (size_t i = 0; i < n; ++i) h = (h ^ buf[i]) * 1099511628211ULL;
  }
  std::fclose(f);
  return h;
}

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng() | 1);  // never zero
  return v;
}

void write_at(const std::string& path, uint64_t off, const std::vector<uint8_t>& data) {
  auto dev = open_disk(path);
  dev->write(off, data);
  dev->flush();
}

std::vector<uint8_t> read_at(const std::string& path, uint64_t off, size_t n) {
  auto dev = open_disk(path, read_only());
  std::vector<uint8_t> v(n);
  dev->read(off, v);
  return v;
}

bool has_partial_files(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find(".partial-") != std::string::npos) return true;
  }
  return false;
}

// A mostly empty 64 MiB raw disk with a few data blocks and a 1 MiB run of written zeroes.
std::string make_sparse_source(const TempDir& dir) {
  std::string src = dir / "source.raw";
  create_disk(src, mk(Format::kRaw, 64 << 20));
  auto dev = open_disk(src);
  dev->write(0, pattern(64 << 10, 1));
  dev->write(10 << 20, pattern(4096, 2));
  dev->write((40 << 20) + 512, pattern(1000, 3));  // unaligned
  dev->write((64 << 20) - 4096, pattern(4096, 4));
  dev->write(20 << 20, std::vector<uint8_t>(1 << 20, 0));  // allocated but zero
  dev->flush();
  return src;
}

ops::ConvertOptions target(Format f, bool fixed = false) {
  ops::ConvertOptions o;
  o.target.format = f;
  o.target.fixed = fixed;
  return o;
}

}  // namespace

TEST(disk_ops_formats_are_registered) {
  // Fails loudly if a driver listed in kFormats is missing from this build.
  TempDir dir;
  for (Format f : kFormats) {
    std::string p = dir / (std::string("probe.") + format_name(f));
    try {
      create_disk(p, mk(f, 1 << 20));
    } catch (const berth::Error& e) {
      berth::test::fail(__FILE__, __LINE__, std::string("no working ") + format_name(f) + " driver: " + e.what());
    }
  }
}

TEST(disk_ops_backing_reference) {
  TempDir dir;
  std::filesystem::create_directories(dir / "vm/base");
  std::filesystem::create_directories(dir / "other");
  for (const char* f : {"vm/base/p.img", "vm/p.img", "other/p.img"}) create_disk(dir / f, mk(Format::kRaw, 4096));
  CHECK(ops::backing_reference(dir / "vm/child.img", dir / "vm/base/p.img") == "base/p.img");
  CHECK(ops::backing_reference(dir / "vm/child.img", dir / "vm/p.img") == "p.img");
  std::string abs = ops::backing_reference(dir / "vm/child.img", dir / "other/p.img");
  CHECK(abs.size() > 0 && abs[0] == '/' && abs.find("/other/p.img") != std::string::npos);
}

TEST(disk_ops_inspect_matches_qemu_img) {
  TempDir dir;
  for (Format f : kFormats) {
    std::string p = dir / (std::string("disk.") + format_name(f));
    create_disk(p, mk(f, 32 << 20));
    auto r = ops::inspect(p);
    CHECK_EQ(r.images.size(), size_t{1});
    CHECK(r.chain_error_code.empty());
    std::string q = qemu_info(p);
    CHECK_EQ(static_cast<long long>(r.images[0].virtual_size), json_number(q, "virtual-size"));
    CHECK(json_string(q, "format") == qemu_name(f));
    CHECK(r.images[0].format == f);
    CHECK(r.images[0].path == p);
  }
  for (Format f : differencing_formats()) {
    std::string parent = dir / (std::string("parent.") + format_name(f));
    std::string child = dir / (std::string("child.") + format_name(f));
    create_disk(parent, mk(f, 16 << 20));
    create_disk(child, mk(f, 16 << 20, std::string("parent.") + format_name(f)));
    auto r = ops::inspect(child);
    CHECK_EQ(r.images.size(), size_t{2});
    if (r.images.size() == 2) CHECK(r.images[1].path.find("parent.") != std::string::npos);
    std::filesystem::remove(parent);
    r = ops::inspect(child);
    CHECK_EQ(r.images.size(), size_t{1});
    CHECK(r.chain_error_code == "DISK_NOT_FOUND");
  }
  CHECK_THROWS_CODE(ops::inspect(dir / "missing.img"), "DISK_NOT_FOUND", "missing.img");
}

TEST(disk_ops_convert_round_trip_is_identical_and_sparse) {
  TempDir dir;
  std::string src = make_sparse_source(dir);
  uint64_t before = file_hash(src);
  // raw -> each other format in turn -> raw
  std::vector<Format> chain;
  for (Format f : kFormats) {
    if (f != Format::kRaw) chain.push_back(f);
  }
  chain.push_back(Format::kRaw);
  std::string prev = src;
  int i = 0;
  for (Format f : chain) {
    std::string out = dir / ("step" + std::to_string(i++) + "." + format_name(f));
    ops::convert(prev, out, target(f));
    CHECK(qemu_same(src, out));
    CHECK(qemu_check_clean(out, f));
    CHECK(json_string(qemu_info(out), "format") == qemu_name(f));
    // 64 KiB + 4 KiB + 1000 B + 4 KiB of data; the zero MiB is not stored.
    CHECK(allocated(out) < (4u << 20));
    prev = out;
  }
  CHECK(file_hash(src) == before);
  CHECK(!has_partial_files(dir.path));
  // The final raw is byte-identical to the source.
  CHECK(file_hash(prev) == before);
  CHECK_THROWS_CODE(ops::convert(src, prev, target(Format::kRaw)), "DISK_EXISTS", prev);
}

TEST(disk_ops_convert_fixed_allocates_everything) {
  TempDir dir;
  std::string src = make_sparse_source(dir);
  for (Format f : kFormats) {
    std::string out = dir / (std::string("fixed.") + format_name(f));
    ops::convert(src, out, target(f, true));
    CHECK(qemu_same(src, out));
    CHECK(allocated(out) >= (64u << 20));
  }
}

TEST(disk_ops_progress_reaches_total_and_cancel_leaves_nothing) {
  TempDir dir;
  std::string src = dir / "big.raw";
  create_disk(src, mk(Format::kRaw, 128 << 20));
  {
    auto dev = open_disk(src);
    auto data = pattern(1 << 20, 7);
    for (uint64_t off = 0; off < (128u << 20); off += 2u << 20) dev->write(off, data);  // every other MiB
    dev->flush();
  }
  uint64_t before = file_hash(src);
  for (Format f : kFormats) {
    std::vector<std::pair<uint64_t, uint64_t>> events;
    ops::OperationControl control;
    control.progress = [&](uint64_t done, uint64_t total) { events.push_back({done, total}); };
    std::string out = dir / (std::string("copy.") + format_name(f));
    ops::convert(src, out, target(f), &control);
    CHECK(!events.empty());
    CHECK(events.size() <= 250);
    bool monotonic = true;
    for (size_t i = 1; i < events.size(); ++i) monotonic = monotonic && events[i].first >= events[i - 1].first;
    CHECK(monotonic);
    if (!events.empty()) {
      CHECK_EQ(events.back().first, uint64_t{128} << 20);
      CHECK_EQ(events.back().second, uint64_t{128} << 20);
    }
    CHECK(qemu_same(src, out));

    ops::OperationControl cancel;
    int calls = 0;
    cancel.progress = [&](uint64_t done, uint64_t) {
      if (++calls == 2 || done > 0) cancel.cancel();
    };
    std::string out2 = dir / (std::string("cancelled.") + format_name(f));
    CHECK_THROWS_CODE(ops::convert(src, out2, target(f), &cancel), "DISK_CANCELLED", "cancelled");
    CHECK(!std::filesystem::exists(out2));
    CHECK(!has_partial_files(dir.path));
    CHECK(file_hash(src) == before);
  }
}

TEST(disk_ops_failed_convert_removes_partial_output) {
  TempDir dir;
  std::string src = make_sparse_source(dir);
  ops::ConvertOptions bad = target(Format::kRaw);
  bad.target.cluster_size = 0;
  // A target folder that does not exist: create fails, nothing is left behind.
  CHECK_THROWS_CODE(ops::convert(src, dir / "nofolder/out.raw", bad), "DISK_NOT_FOUND", "nofolder");
  CHECK(!has_partial_files(dir.path));
  CHECK_THROWS_CODE(ops::convert(dir / "missing.raw", dir / "out.raw", bad), "DISK_NOT_FOUND", "missing.raw");
  CHECK(!std::filesystem::exists(dir / "out.raw"));
}

TEST(disk_ops_expand_then_shrink_refuses_to_cut_data) {
  TempDir dir;
  for (Format f : resizable_formats()) {
    std::string p = dir / (std::string("resize.") + format_name(f));
    CreateOptions c = mk(f, 8 << 20);
    if (f == Format::kVhdx) c.cluster_size = 1 << 20;  // the default 32 MiB block would cover the whole disk
    create_disk(p, c);
    auto data = pattern(4096, 9);
    write_at(p, 5 << 20, data);
    ops::expand(p, 16 << 20);
    CHECK_EQ(json_number(qemu_info(p), "virtual-size"), 16ll << 20);
    CHECK(qemu_check_clean(p, f));
    CHECK_THROWS_CODE(ops::expand(p, 8 << 20), "DISK_SIZE", "already");
    CHECK_THROWS_CODE(ops::expand(p, (16 << 20) + 100), "DISK_SIZE", "multiple of 512");
    uint64_t min = ops::min_shrink_size(p);
    // The end of the last used block: the data's end rounded up to the format's block.
    uint64_t block = std::max<uint64_t>(ops::inspect(p).images[0].cluster_size, 4096);
    CHECK_EQ(min, std::min<uint64_t>(((5u << 20) + 4096 + block - 1) / block * block, 16u << 20));
    CHECK_THROWS_CODE(ops::shrink(p, 4 << 20), "DISK_SHRINK_TOO_SMALL", std::to_string(min));
    CHECK_EQ(json_number(qemu_info(p), "virtual-size"), 16ll << 20);  // unchanged
    if (can_shrink(f)) {
      ops::shrink(p, min);
      CHECK_EQ(json_number(qemu_info(p), "virtual-size"), static_cast<long long>(min));
      CHECK(read_at(p, 5 << 20, 4096) == data);
      CHECK(qemu_check_clean(p, f));
      // And it grows again, the new space reading as zeroes.
      ops::expand(p, 12 << 20);
      CHECK_EQ(json_number(qemu_info(p), "virtual-size"), 12ll << 20);
      CHECK(read_at(p, 5 << 20, 4096) == data);
      CHECK(read_at(p, 8 << 20, 4096) == std::vector<uint8_t>(4096, 0));
      CHECK(qemu_check_clean(p, f));
    }
  }
}

TEST(disk_ops_compact_reclaims_zeroed_blocks) {
  TempDir dir;
  for (Format f : kFormats) {
    std::string p = dir / (std::string("compact.") + format_name(f));
    create_disk(p, mk(f, 128 << 20));
    {
      auto dev = open_disk(p);
      auto data = pattern(1 << 20, 11);
      for (uint64_t off = 0; off < (96u << 20); off += 1u << 20) dev->write(off, data);
      // The guest zeroes most of it by writing zeroes (not a discard): still allocated.
      // 32..96 MiB covers whole blocks in every format (VHDX's default block is 32 MiB).
      dev->write(32 << 20, std::vector<uint8_t>(64 << 20, 0));
      dev->flush();
    }
    std::string expect = dir / (std::string("expect.") + format_name(f) + ".raw");
    CHECK_EQ(sh(std::string("qemu-img convert -f ") + qemu_name(f) + " -O raw '" + p + "' '" + expect + "'"), 0);
    uint64_t before = allocated(p);
    CHECK(before >= (96u << 20));
    ops::compact(p);
    uint64_t after = allocated(p);
    if (after > (40u << 20)) {
      berth::test::fail(__FILE__, __LINE__, std::string(format_name(f)) + ": " + std::to_string(before) + " -> " +
                                                std::to_string(after) + " bytes allocated");
    }
    CHECK(qemu_same(expect, p));
    CHECK(qemu_check_clean(p, f));
    CHECK(json_string(qemu_info(p), "format") == qemu_name(f));
    CHECK(!has_partial_files(dir.path));
  }
  // Fixed images cannot give space back: refused, and the image is untouched.
  std::string fixed = dir / "fixed.vhd";
  ops::convert(dir / "compact.raw", fixed, target(Format::kVhd, true));
  uint64_t h = file_hash(fixed);
  CHECK_THROWS_CODE(ops::compact(fixed), "DISK_UNSUPPORTED", "fixed");
  CHECK(file_hash(fixed) == h);
}

// qemu-img reads qcow2 chains but not VHDX or VHD differencing disks (qemu's vpc driver
// opens a differencing VHD as a dynamic one without its parent), so chains are judged by a
// raw mirror that receives the same writes, compared with qemu-img against standalone
// images (the merged parent, or the chain converted by Berth).
static void same_as_mirror(const std::string& chain, Format f, const std::string& mirror, const std::string& scratch) {
  if (f == Format::kQcow2) CHECK(qemu_same(mirror, chain));
  std::filesystem::remove(scratch);
  ops::convert(chain, scratch, target(Format::kRaw));
  CHECK(qemu_same(mirror, scratch));
}

TEST(disk_ops_merge_into_parent_reads_as_the_chain_did) {
  for (Format f : differencing_formats()) {
    TempDir dir;
    std::string ext = format_name(f);
    std::string parent = dir / ("parent." + ext);
    std::string child = dir / ("child." + ext);
    std::string mirror = dir / "mirror.raw";
    create_disk(parent, mk(f, 16 << 20));
    create_disk(mirror, mk(Format::kRaw, 16 << 20));
    auto base = pattern(4 << 20, 21);
    write_at(parent, 0, base);
    write_at(mirror, 0, base);
    create_disk(child, mk(f, 16 << 20, "parent." + ext));
    {
      auto dev = open_disk(child);
      auto mir = open_disk(mirror);
      auto over = pattern(2 << 20, 22);
      dev->write(3 << 20, over);  // over parent data and past it
      mir->write(3 << 20, over);
      dev->write_zeroes(0, 1 << 20, true);  // zeroes that hide parent data
      mir->write(0, std::vector<uint8_t>(1 << 20, 0));
      auto tail = pattern(4096, 23);
      dev->write(10 << 20, tail);
      mir->write(10 << 20, tail);
      dev->flush();
      mir->flush();
    }
    same_as_mirror(child, f, mirror, dir / "chain.raw");
    // Into a new standalone disk first (the child stays).
    std::string merged = dir / ("merged." + ext);
    ops::merge_into_new(child, merged, mk(f, 0));
    CHECK(qemu_same(mirror, merged));
    CHECK(ops::inspect(merged).images.size() == 1);
    CHECK(ops::inspect(merged).images[0].backing_path.empty());
    // Then into the parent: the child goes away and the parent reads as the chain did.
    ops::OperationControl control;
    uint64_t last = 0;
    control.progress = [&](uint64_t done, uint64_t) { last = done; };
    ops::merge_into_parent(child, &control);
    CHECK_EQ(last, uint64_t{16} << 20);
    CHECK(!std::filesystem::exists(child));
    CHECK(qemu_same(mirror, parent));
    CHECK(qemu_check_clean(parent, f));
    CHECK_THROWS_CODE(ops::merge_into_parent(parent), "DISK_NO_BACKING", "parent." + ext);
  }
}

TEST(disk_ops_reconnect_after_moving_the_parent) {
  for (Format f : differencing_formats()) {
    TempDir dir;
    TempDir elsewhere;
    std::string ext = format_name(f);
    std::filesystem::create_directories(dir / "a");
    std::filesystem::create_directories(dir / "b");
    std::string parent = dir / ("a/base." + ext);
    std::string child = dir / ("child." + ext);
    std::string mirror = dir / "mirror.raw";
    create_disk(parent, mk(f, 8 << 20));
    create_disk(mirror, mk(Format::kRaw, 8 << 20));
    auto base = pattern(1 << 20, 31);
    write_at(parent, 0, base);
    write_at(mirror, 0, base);
    create_disk(child, mk(f, 8 << 20, "a/base." + ext));
    auto mine = pattern(4096, 32);
    write_at(child, 512 << 10, mine);
    write_at(mirror, 512 << 10, mine);
    same_as_mirror(child, f, mirror, dir / "chain.raw");

    std::filesystem::rename(parent, dir / ("b/base." + ext));
    CHECK_THROWS_CODE(open_disk(child, read_only()), "DISK_NOT_FOUND", "base." + ext);
    CHECK(ops::reconnect(child, dir / ("b/base." + ext)) == "b/base." + ext);
    auto info = ops::inspect(child);
    CHECK(info.chain_error_code.empty());
    CHECK_EQ(info.images.size(), size_t{2});
    if (f == Format::kQcow2) CHECK(json_string(qemu_info(child), "backing-filename") == "b/base.qcow2");
    same_as_mirror(child, f, mirror, dir / "chain.raw");

    // Outside the child's folder the path is recorded absolute.
    std::filesystem::rename(dir / ("b/base." + ext), elsewhere / ("base." + ext));
    std::string recorded = ops::reconnect(child, elsewhere / ("base." + ext));
    CHECK(!recorded.empty() && recorded[0] == '/');
    same_as_mirror(child, f, mirror, dir / "chain.raw");

    // A parent of another size is refused, naming both sizes; the child is not touched.
    std::string wrong = dir / ("wrong." + ext);
    create_disk(wrong, mk(f, 4 << 20));
    uint64_t before = file_hash(child);
    CHECK_THROWS_CODE(ops::reconnect(child, wrong), "DISK_SIZE_MISMATCH", "8388608 bytes");
    CHECK_THROWS_CODE(ops::reconnect(child, wrong), "DISK_SIZE_MISMATCH", "4194304 bytes");
    CHECK(file_hash(child) == before);
    // A parent based on the child itself would make a loop.
    std::string grandchild = dir / ("grandchild." + ext);
    create_disk(grandchild, mk(f, 8 << 20, "child." + ext));
    CHECK_THROWS_CODE(ops::reconnect(child, grandchild), "DISK_BACKING_LOOP", "loop");
    same_as_mirror(child, f, mirror, dir / "chain.raw");
  }
}

TEST(disk_ops_check_reports_clean_images) {
  TempDir dir;
  for (Format f : kFormats) {
    std::string p = dir / (std::string("check.") + format_name(f));
    create_disk(p, mk(f, 8 << 20));
    write_at(p, 0, pattern(65536, 41));
    auto r = ops::check(p, false);
    CHECK_EQ(r.corruptions, uint64_t{0});
    CHECK_EQ(r.leaked_clusters, uint64_t{0});
  }
}
