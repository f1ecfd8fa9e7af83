// qcow2 driver tests with qemu-img as the independent judge: images we make pass
// qemu-img check and compare equal to a raw mirror of the same workload; images qemu
// makes (plain, converted, compressed, differencing) read back correctly; damaged
// headers are refused with their codes and the file is never written.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <set>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "disk/block_device.h"
#include "disk/qcow2/testing.h"
#include "tests/check.h"

using namespace berth::disk;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm/berth-qcow2-XXXXXX" : "/tmp/berth-qcow2-XXXXXX";
    std::vector<char> t(base, base + strlen(base) + 1);
    path = mkdtemp(t.data());
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
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

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void patch(const std::string& path, uint64_t off, const std::vector<uint8_t>& bytes) {
  int fd = open(path.c_str(), O_WRONLY);
  CHECK(fd >= 0);
  CHECK_EQ(pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(off)), static_cast<ssize_t>(bytes.size()));
  close(fd);
}
std::vector<uint8_t> be64v(uint64_t v) {
  std::vector<uint8_t> b(8);
  for (int i = 7; i >= 0; --i, v >>= 8) b[i] = uint8_t(v);
  return b;
}
std::vector<uint8_t> be32v(uint32_t v) {
  std::vector<uint8_t> b(4);
  for (int i = 3; i >= 0; --i, v >>= 8) b[i] = uint8_t(v);
  return b;
}

// qemu-img check must pass with no leaks or errors.
void expect_clean(const std::string& img) {
  std::string out;
  int rc = sh("qemu-img check -f qcow2 '" + img + "'", &out);
  if (rc != 0 || out.find("No errors were found") == std::string::npos) {
    berth::test::fail(__FILE__, __LINE__, "qemu-img check " + img + " rc=" + std::to_string(rc) + ": " + out);
  }
}

void expect_same(const std::string& img, const std::string& raw) {
  std::string out;
  int rc = sh("qemu-img compare -f qcow2 -F raw '" + img + "' '" + raw + "'", &out);
  if (rc != 0) berth::test::fail(__FILE__, __LINE__, "qemu-img compare " + img + ": " + out);
}

void write_pattern(const std::string& raw, uint64_t size, uint32_t seed) {
  std::vector<uint8_t> data(size, 0);
  std::mt19937 rng(seed);
  // Patterned with holes: every other 64 KiB has data.
  for (uint64_t off = 0; off < size; off += 65536) {
    if ((off / 65536) % 3 == 1) continue;
    for (uint64_t i = off; i < std::min(size, off + 65536); i += 4) {
      uint32_t v = rng();
      std::memcpy(&data[i], &v, std::min<uint64_t>(4, size - i));
    }
    if ((off / 65536) % 3 == 2) std::memset(&data[off], 0x5a, std::min<uint64_t>(size - off, 30000));  // compressible
  }
  std::ofstream(raw, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(size));
}

void expect_reads_as(BlockDevice& dev, const std::string& raw) {
  std::string want = slurp(raw);
  CHECK_EQ(dev.capacity(), want.size());
  std::vector<uint8_t> got(want.size());
  dev.read(0, got);
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != uint8_t(want[i])) {
      berth::test::fail(__FILE__, __LINE__, dev.info().path + " differs from " + raw + " at " + std::to_string(i));
      return;
    }
  }
  // Unaligned pieces too.
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    uint64_t off = rng() % want.size();
    uint64_t len = std::min<uint64_t>(rng() % 200000, want.size() - off);
    std::vector<uint8_t> b(len);
    dev.read(off, b);
    CHECK(std::memcmp(b.data(), want.data() + off, len) == 0);
  }
}

// A seeded workload of writes, discards and write_zeroes through dev, mirrored in raw.
void workload(BlockDevice& dev, const std::string& raw, uint32_t seed, int ops) {
  int fd = open(raw.c_str(), O_RDWR);
  CHECK(fd >= 0);
  std::mt19937_64 rng(seed);
  uint64_t cap = dev.capacity();
  std::vector<uint8_t> buf;
  for (int i = 0; i < ops; ++i) {
    uint64_t kind = rng() % 10;
    uint64_t len = (rng() % 4 == 0) ? rng() % 300000 + 1 : rng() % 9000 + 1;
    if (rng() % 3 == 0) len = (len + 511) & ~511ull;
    uint64_t off = rng() % cap;
    if (rng() % 3 == 0) off &= ~511ull;
    len = std::min(len, cap - off);
    if (kind < 6) {
      buf.resize(len);
      uint8_t b = uint8_t(rng());
      for (uint64_t j = 0; j < len; ++j) buf[j] = uint8_t(b + j * 7 + (j >> 9));
      dev.write(off, buf);
      CHECK_EQ(pwrite(fd, buf.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    } else {
      if (kind < 8) dev.discard(off, len);
      else dev.write_zeroes(off, len, kind == 8);
      buf.assign(len, 0);
      CHECK_EQ(pwrite(fd, buf.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    }
    if (i % 500 == 250) dev.flush();
    if (getenv("QCOW2_VERIFY")) {
      std::vector<uint8_t> a(cap), b(cap);
      dev.read(0, a);
      CHECK_EQ(pread(fd, b.data(), cap, 0), static_cast<ssize_t>(cap));
      if (a != b) {
        size_t k = 0;
        while (a[k] == b[k]) ++k;
        berth::test::fail(__FILE__, __LINE__, "op " + std::to_string(i) + " kind " + std::to_string(kind) + " off " + std::to_string(off) + " len " + std::to_string(len) + " first diff " + std::to_string(k));
        break;
      }
    }
  }
  close(fd);
}

std::string json_field(const std::string& json, const std::string& key) {
  auto k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return "";
  auto c = json.find(':', k);
  auto e = json.find_first_of(",\n}", c);
  std::string v = json.substr(c + 1, e - c - 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '"')) v.erase(v.begin());
  while (!v.empty() && (v.back() == ' ' || v.back() == '"')) v.pop_back();
  return v;
}

CreateOptions qopts(uint64_t size, uint32_t cluster_size = 0, const std::string& backing = "") {
  CreateOptions o;
  o.format = Format::kQcow2;
  o.size = size;
  o.cluster_size = cluster_size;
  o.backing_path = backing;
  return o;
}
OpenOptions ro() {
  OpenOptions o;
  o.read_only = true;
  return o;
}

}  // namespace

TEST(qcow2_create_matches_qemu_info) {
  TempDir d;
  std::string img = d / "a.qcow2";
  create_disk(img, qopts(100 << 20));
  expect_clean(img);
  std::string out;
  CHECK_EQ(sh("qemu-img info --output=json '" + img + "'", &out), 0);
  CHECK(json_field(out, "format") == "qcow2");
  CHECK(json_field(out, "virtual-size") == std::to_string(100 << 20));
  CHECK(json_field(out, "cluster-size") == "65536");
  CHECK_THROWS_CODE(create_disk(img, qopts(1 << 20)), "DISK_EXISTS", "already exists");
  auto dev = open_disk(img);
  ImageInfo i = dev->info();
  CHECK(i.subformat == "dynamic");
  CHECK_EQ(i.cluster_size, 65536u);
  CHECK(!i.dirty && !i.corrupt);
  Extent e = dev->block_status(0, dev->capacity());
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.length, dev->capacity());
}

TEST(qcow2_random_workload_matches_raw) {
  TempDir d;
  // 64 KiB clusters; 512-byte clusters (the refcount table must grow); 4 KiB clusters over
  // 4 GiB (more L2 tables than the cache holds).
  for (uint32_t cs : {65536u, 512u, 4096u}) {
    std::string img = d / ("w" + std::to_string(cs) + ".qcow2"), raw = d / "w.raw";
    uint64_t size = cs == 512 ? (24 << 20) + 1536 : cs == 4096 ? (4ull << 30) : (64 << 20);
    create_disk(img, qopts(size, cs));
    sh("rm -f '" + raw + "'; truncate -s " + std::to_string(size) + " '" + raw + "'");
    {
      auto dev = open_disk(img);
      workload(*dev, raw, 42 + cs, cs == 65536 ? 2500 : 1200);
      // The dirty bit is set while changes are unflushed.
      CHECK(dev->info().dirty);
      dev->flush();
      CHECK(!dev->info().dirty);
      CheckReport r = dev->check(false);
      CHECK_EQ(r.corruptions, 0u);
      CHECK_EQ(r.leaked_clusters, 0u);
      if (size <= (256u << 20)) expect_reads_as(*dev, raw);
    }
    expect_clean(img);
    expect_same(img, raw);
  }
}

TEST(qcow2_differencing_chain_matches_raw) {
  TempDir d;
  std::string raw = d / "m.raw", base = d / "base.qcow2", child = d / "child.qcow2";
  write_pattern(raw, 16 << 20, 3);
  CHECK_EQ(sh("qemu-img convert -f raw -O qcow2 '" + raw + "' '" + base + "'"), 0);
  create_disk(child, qopts(0, 0, "base.qcow2"));
  std::string out;
  CHECK_EQ(sh("qemu-img info --output=json '" + child + "'", &out), 0);
  CHECK(json_field(out, "backing-filename") == "base.qcow2");
  CHECK(json_field(out, "backing-filename-format") == "qcow2");
  CHECK(json_field(out, "virtual-size") == std::to_string(16 << 20));
  std::string base_before = slurp(base);
  {
    auto dev = open_disk(child);
    CHECK(dev->info().subformat == "differencing");
    CHECK(dev->info().backing_path == "base.qcow2");
    CHECK(dev->info().backing_resolved == base);
    CHECK(dev->block_status(0, 65536).kind == ExtentKind::kBacking);
    expect_reads_as(*dev, raw);
    workload(*dev, raw, 9, 2000);
    expect_reads_as(*dev, raw);
    CheckReport r = dev->check(false);
    CHECK_EQ(r.corruptions + r.leaked_clusters, 0u);
  }
  CHECK(slurp(base) == base_before);
  expect_clean(child);
  expect_same(child, raw);
  // Rebase-style header rewrite: record a new (equivalent) name, then remove it.
  {
    auto dev = open_disk(child);
    dev->set_backing("./base.qcow2", open_disk(base, ro()));
  }
  CHECK_EQ(sh("qemu-img info --output=json '" + child + "'", &out), 0);
  CHECK(json_field(out, "backing-filename") == "./base.qcow2");
  expect_clean(child);
  expect_same(child, raw);
  {
    OpenOptions o;
    o.open_backing = false;
    auto dev = open_disk(child, o);
    CHECK(dev->backing() == nullptr);
    CHECK_THROWS_CODE(dev->set_backing(std::string(1100, 'x'), nullptr), "DISK_BACKING_NAME", "1023");
  }
}

TEST(qcow2_reads_qemu_made_images) {
  TempDir d;
  std::string raw = d / "p.raw";
  write_pattern(raw, (8 << 20) + 4096, 11);
  struct Case {
    const char* name;
    std::string cmd;
  } cases[] = {
      {"plain.qcow2", "qemu-img convert -f raw -O qcow2 '" + raw + "' '" + (d / "plain.qcow2") + "'"},
      {"comp.qcow2", "qemu-img convert -c -f raw -O qcow2 '" + raw + "' '" + (d / "comp.qcow2") + "'"},
      {"v2.qcow2", "qemu-img convert -f raw -O qcow2 -o compat=0.10,cluster_size=4096 '" + raw + "' '" + (d / "v2.qcow2") + "'"},
      {"r8.qcow2", "qemu-img convert -c -f raw -O qcow2 -o refcount_bits=8,cluster_size=8192 '" + raw + "' '" + (d / "r8.qcow2") + "'"},
      {"r1.qcow2", "qemu-img convert -f raw -O qcow2 -o refcount_bits=1,cluster_size=2048 '" + raw + "' '" + (d / "r1.qcow2") + "'"},
      {"r64.qcow2", "qemu-img convert -f raw -O qcow2 -o refcount_bits=64,cluster_size=2M '" + raw + "' '" + (d / "r64.qcow2") + "'"},
  };
  for (auto& c : cases) {
    CHECK_EQ(sh(c.cmd), 0);
    auto dev = open_disk(d / c.name, ro());
    expect_reads_as(*dev, raw);
    CheckReport r = dev->check(false);
    if (r.corruptions + r.leaked_clusters != 0) {
      berth::test::fail(__FILE__, __LINE__, std::string(c.name) + ": " + (r.problems.empty() ? "" : r.problems[0]));
    }
  }
  CHECK_THROWS_CODE(open_disk(d / "r8.qcow2"), "DISK_UNSUPPORTED", "16-bit");
  // Writes over compressed clusters decompress and copy; the image stays clean.
  std::string pristine = d / "pristine.raw";
  sh("cp '" + raw + "' '" + pristine + "'");
  {
    auto dev = open_disk(d / "comp.qcow2");
    workload(*dev, raw, 5, 400);
  }
  expect_clean(d / "comp.qcow2");
  expect_same(d / "comp.qcow2", raw);
  // v2 images are writable too (no zero flag: zeroes are written or clusters freed).
  sh("cp '" + pristine + "' '" + raw + "'");
  {
    auto dev = open_disk(d / "v2.qcow2");
    workload(*dev, raw, 6, 400);
  }
  expect_clean(d / "v2.qcow2");
  expect_same(d / "v2.qcow2", raw);
  // An empty qemu image and a qemu-made child.
  CHECK_EQ(sh("qemu-img create -q -f qcow2 '" + (d / "e.qcow2") + "' 3M"), 0);
  {
    auto dev = open_disk(d / "e.qcow2", ro());
    std::vector<uint8_t> b(3 << 20, 1);
    dev->read(0, b);
    CHECK(std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; }));
  }
  CHECK_EQ(sh("cd '" + d.path + "' && qemu-img create -q -f qcow2 -b plain.qcow2 -F qcow2 kid.qcow2"), 0);
  {
    auto dev = open_disk(d / "kid.qcow2", ro());
    expect_reads_as(*dev, pristine);
  }
}

TEST(qcow2_preallocation_and_resize) {
  TempDir d;
  std::string zero = d / "z.raw";
  sh("truncate -s 40M '" + zero + "'");
  for (bool full : {false, true}) {
    std::string img = d / (full ? "full.qcow2" : "meta.qcow2");
    CreateOptions o = qopts(40 << 20);
    if (full) o.fixed = true;
    else o.preallocate_metadata = true;
    create_disk(img, o);
    expect_clean(img);
    expect_same(img, zero);
    auto dev = open_disk(img, ro());
    CHECK(dev->info().subformat == "preallocated");
    if (full) CHECK(dev->info().allocated_bytes >= (40u << 20));
  }
  // Grow past the L1 table with 4 KiB clusters (one L2 table covers 2 MiB), write at the
  // end, shrink refused over data, allowed once it is discarded.
  std::string img = d / "r.qcow2";
  create_disk(img, qopts(1 << 20, 4096));
  {
    auto dev = open_disk(img);
    std::vector<uint8_t> b(5000, 0xab);
    dev->write(1000, b);
    dev->resize(300 << 20);
    CHECK_EQ(dev->capacity(), uint64_t(300) << 20);
    dev->write((300 << 20) - 5000, b);
    CHECK_THROWS_CODE(dev->resize(2 << 20), "DISK_RANGE", std::to_string((300 << 20) - 8192));
    dev->discard((300 << 20) - 8192, 8192);
    dev->resize(2 << 20);
    std::vector<uint8_t> r(5000);
    dev->read(1000, r);
    CHECK(r == b);
  }
  expect_clean(img);
  std::string out;
  sh("qemu-img info --output=json '" + img + "'", &out);
  CHECK(json_field(out, "virtual-size") == std::to_string(2 << 20));
}

TEST(qcow2_check_finds_and_repairs_leaks) {
  TempDir d;
  std::string img = d / "l.qcow2";
  create_disk(img, qopts(4 << 20));
  {
    auto dev = open_disk(img);
    std::vector<uint8_t> b(65536, 1);
    dev->write(0, b);
    dev->write(65536, b);
  }
  // Clear the L2 entry of the second cluster by hand: its cluster leaks.
  // Layout of our images: header, refcount table, refcount block, L1, then allocations
  // (the first is the L2 table at 4 * 64 KiB).
  patch(img, 4 * 65536 + 8, be64v(0));
  {
    auto dev = open_disk(img, ro());
    CheckReport r = dev->check(false);
    CHECK_EQ(r.leaked_clusters, 1u);
    CHECK_EQ(r.corruptions, 0u);
    CHECK_THROWS_CODE(dev->check(true), "DISK_READ_ONLY", "read-only");
  }
  {
    auto dev = open_disk(img);
    CheckReport r = dev->check(true);
    CHECK_EQ(r.repaired, 1u);
    CHECK_EQ(dev->check(false).leaked_clusters, 0u);
  }
  expect_clean(img);
  // A reference with refcount 0 is a corruption, reported and not "repaired".
  patch(img, 2 * 65536 + 2 * 5, {0, 0});  // refcount of cluster 5 (the first data cluster)
  {
    auto dev = open_disk(img);
    CheckReport r = dev->check(true);
    CHECK(r.corruptions >= 1);
    CHECK_EQ(r.repaired, 0u);
  }
}

TEST(qcow2_dirty_image_is_checked_on_open) {
  TempDir d;
  std::string img = d / "dirty.qcow2";
  create_disk(img, qopts(4 << 20));
  {
    auto dev = open_disk(img);
    std::vector<uint8_t> b(4096, 3);
    dev->write(0, b);
  }
  patch(img, 72, be64v(1));  // dirty
  {
    auto dev = open_disk(img, ro());
    CHECK(dev->info().dirty);
  }
  std::string before = slurp(img);
  {
    auto dev = open_disk(img);
    CHECK(!dev->info().dirty);
  }
  CHECK(slurp(img) != before);
  expect_clean(img);
  // Dirty and inconsistent: refused, untouched.
  patch(img, 72, be64v(1));
  patch(img, 2 * 65536 + 2 * 5, {0, 0});
  before = slurp(img);
  CHECK_THROWS_CODE(open_disk(img), "DISK_CORRUPT", "qemu-img check -r all");
  CHECK(slurp(img) == before);
  // The corrupt bit allows read-only opens only.
  patch(img, 72, be64v(2));
  before = slurp(img);
  CHECK_THROWS_CODE(open_disk(img), "DISK_CORRUPT", "read-only");
  CHECK(open_disk(img, ro())->info().corrupt);
  CHECK(slurp(img) == before);
}

TEST(qcow2_bad_input_refused_untouched) {
  TempDir d;
  std::string good = d / "good.qcow2";
  create_disk(good, qopts(4 << 20));
  {
    auto dev = open_disk(good);
    std::vector<uint8_t> b(65536, 9);
    dev->write(0, b);
  }
  struct Case {
    const char* name;
    uint64_t off;
    std::vector<uint8_t> bytes;
    const char* code;
    const char* text;
  };
  std::vector<Case> cases = {
      {"cluster_bits", 20, be32v(30), "DISK_BAD_HEADER", "cluster_bits is 30"},
      {"size", 24, be64v(1ull << 60), "DISK_BAD_HEADER", "virtual size"},
      {"l1_past_eof", 40, be64v(1ull << 30), "DISK_CORRUPT", "L1 table"},
      {"l1_over_header", 40, be64v(0), "DISK_CORRUPT", "overlaps the header"},
      {"reftable_past_eof", 48, be64v(1ull << 30), "DISK_CORRUPT", "refcount table"},
      {"backing_name", 8, [] { auto a = be64v(200); auto b = be32v(2000); a.insert(a.end(), b.begin(), b.end()); return a; }(),
       "DISK_BACKING_NAME", "1023"},
      {"incompatible", 72, be64v(1ull << 5), "DISK_UNSUPPORTED", "bit 5"},
      {"version", 4, be32v(4), "DISK_UNSUPPORTED", "version 4"},
  };
  for (auto& c : cases) {
    std::string img = d / (std::string(c.name) + ".qcow2");
    sh("cp '" + good + "' '" + img + "'");
    patch(img, c.off, c.bytes);
    std::string before = slurp(img);
    CHECK_THROWS_CODE(open_disk(img), c.code, c.text);
    CHECK_THROWS_CODE(open_disk(img), c.code, img);
    CHECK(slurp(img) == before);
  }
  // Truncated.
  std::string t = d / "trunc.qcow2";
  sh("head -c 50 '" + good + "' > '" + t + "'");
  std::string before = slurp(t);
  CHECK_THROWS_CODE(open_disk(t), "DISK_TRUNCATED", "truncated");
  CHECK(slurp(t) == before);
  // An L2 entry pointing past the end of the file: the open works, the read fails.
  std::string l2 = d / "l2.qcow2";
  sh("cp '" + good + "' '" + l2 + "'");
  patch(l2, 4 * 65536, be64v((1ull << 40) | (1ull << 63)));
  before = slurp(l2);
  {
    auto dev = open_disk(l2);
    std::vector<uint8_t> b(512);
    CHECK_THROWS_CODE(dev->read(0, b), "DISK_CORRUPT", l2);
    CHECK_THROWS_CODE(dev->read(0, b), "DISK_CORRUPT", "past the end of the file");
    CHECK(dev->block_status(65536, 65536).kind == ExtentKind::kZero);
  }
  CHECK(slurp(l2) == before);
  // A backing loop: the child names itself.
  std::string a = d / "a.qcow2", c = d / "c.qcow2";
  create_disk(a, qopts(1 << 20));
  create_disk(c, qopts(0, 0, "a.qcow2"));
  std::string hdr = slurp(c);
  auto at = hdr.find("a.qcow2");
  CHECK(at != std::string::npos);
  patch(c, at, {'c'});
  before = slurp(c);
  CHECK_THROWS_CODE(open_disk(c), "DISK_BACKING_LOOP", "loop");
  CHECK(slurp(c) == before);
  // Over-long backing name at create.
  CHECK_THROWS_CODE(create_disk(d / "long.qcow2", qopts(0, 0, std::string(1024, 'b'))),
                    "DISK_BACKING_NAME", "1023");
}

// ---- O_DIRECT data path ------------------------------------------------------------------

namespace {

// A folder on a disk filesystem (O_DIRECT needs one; /dev/shm refuses it).
struct DiskTempDir {
  std::string path;
  DiskTempDir() {
    std::string base = "/var/tmp/berth-qcow2-direct-XXXXXX";
    std::vector<char> t(base.begin(), base.end());
    t.push_back(0);
    path = mkdtemp(t.data()) ? t.data() : "";
  }
  ~DiskTempDir() {
    if (!path.empty()) std::system(("rm -rf '" + path + "'").c_str());
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// Whether this process holds `path` open with O_DIRECT.
bool opened_direct(const std::string& path) {
  char real[PATH_MAX];
  if (!realpath(path.c_str(), real)) return false;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[PATH_MAX];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1);
    if (n <= 0) continue;
    link[n] = 0;
    if (strcmp(link, real) != 0) continue;
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_DIRECT)) return true;
  }
  return false;
}

bool direct_supported(const std::string& dir) {
  std::string f = dir + "/probe";
  int fd = open(f.c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
  if (fd >= 0) close(fd);
  unlink(f.c_str());
  return fd >= 0;
}

OpenOptions direct_opts() {
  OpenOptions o;
  o.direct = true;
  return o;
}

}  // namespace

// Guest data through the O_DIRECT descriptor, metadata through the buffered one: a fresh
// image, a qemu-made compressed image (copy-on-write out of compressed clusters read
// through the direct descriptor) and a differencing child, each under a seeded workload
// with unaligned requests, compared with a raw mirror by us and by qemu-img, and reread
// through a buffered open (coherence between the two descriptors).
TEST(qcow2_direct_io_matches_raw) {
  DiskTempDir d;
  CHECK(!d.path.empty());
  if (d.path.empty()) return;  // the CHECK above failed the test
  if (!direct_supported(d.path)) SKIP(d.path + " refuses O_DIRECT");
  std::string raw = d / "m.raw", base = d / "base.qcow2";
  write_pattern(raw, 16 << 20, 21);
  CHECK_EQ(sh("qemu-img convert -f raw -O qcow2 '" + raw + "' '" + base + "'"), 0);
  struct Case {
    std::string img;
    std::string make;
    bool from_pattern;
  } cases[] = {
      {d / "fresh.qcow2", "", false},
      {d / "comp.qcow2", "qemu-img convert -c -f raw -O qcow2 '" + raw + "' '" + (d / "comp.qcow2") + "'", true},
      {d / "child.qcow2", "", true},
      {d / "c4k.qcow2", "qemu-img create -f qcow2 -o cluster_size=4096 '" + (d / "c4k.qcow2") + "' 16M", false},
  };
  uint32_t seed = 100;
  for (auto& c : cases) {
    std::string mirror = d / "mirror.raw";
    if (c.from_pattern) {
      CHECK_EQ(sh("cp '" + raw + "' '" + mirror + "'"), 0);
    } else {
      CHECK_EQ(sh("rm -f '" + mirror + "'; truncate -s 16M '" + mirror + "'"), 0);
    }
    if (!c.make.empty()) {
      CHECK_EQ(sh(c.make), 0);
    } else if (c.img == d / "child.qcow2") {
      create_disk(c.img, qopts(0, 0, "base.qcow2"));
    } else {
      create_disk(c.img, qopts(16 << 20));
    }
    {
      auto dev = open_disk(c.img, direct_opts());
      CHECK(opened_direct(c.img));
      expect_reads_as(*dev, mirror);
      workload(*dev, mirror, seed++, 1500);
      expect_reads_as(*dev, mirror);
      // Allocating 4 KiB-aligned writes into fresh clusters (the partial-cluster path).
      for (uint64_t off = 5 * 65536 + 4096; off < (16u << 20); off += 3 * 65536 + 8192) {
        std::vector<uint8_t> b(4096, uint8_t(off >> 16));
        dev->write(off, b);
        int fd = open(mirror.c_str(), O_RDWR);
        CHECK_EQ(pwrite(fd, b.data(), b.size(), static_cast<off_t>(off)), 4096);
        close(fd);
      }
      expect_reads_as(*dev, mirror);
      dev->flush();
      CheckReport r = dev->check(false);
      CHECK_EQ(r.corruptions + r.leaked_clusters, 0u);
    }
    expect_clean(c.img);
    expect_same(c.img, mirror);
    {
      auto dev = open_disk(c.img);  // buffered
      expect_reads_as(*dev, mirror);
    }
  }
  // 512-byte clusters are smaller than the O_DIRECT unit: data stays buffered.
  std::string small = d / "small.qcow2";
  create_disk(small, qopts(4 << 20, 512));
  {
    auto dev = open_disk(small, direct_opts());
    CHECK(!opened_direct(small));
    std::vector<uint8_t> b(10000, 7);
    dev->write(1000, b);
  }
  expect_clean(small);
}

// ---- crash consistency -------------------------------------------------------------------

namespace {

namespace crash = berth::disk::qcow2::testing;

constexpr uint64_t kSector = 512;

// What the guest expects to read: a base (the backing image's contents, or zeroes) with
// sectors overridden by writes; and which sectors changed since the last completed flush.
struct Expect {
  std::vector<uint8_t> base;
  std::map<uint64_t, std::vector<uint8_t>> cur, flushed;  // sector -> 512 bytes
  std::set<uint64_t> touched;                             // changed since the last flush
  std::set<uint64_t> ever;                                // every sector ever changed

  std::vector<uint8_t> sector(const std::map<uint64_t, std::vector<uint8_t>>& m, uint64_t s) const {
    auto it = m.find(s);
    if (it != m.end()) return it->second;
    std::vector<uint8_t> v(kSector, 0);
    if (s * kSector < base.size()) std::memcpy(v.data(), base.data() + s * kSector, std::min<uint64_t>(kSector, base.size() - s * kSector));
    return v;
  }
  void apply(uint64_t off, const uint8_t* data, uint64_t len) {  // data null: zeroes
    for (uint64_t s = off / kSector; s * kSector < off + len; ++s) {
      std::vector<uint8_t> v = sector(cur, s);
      uint64_t a = std::max(off, s * kSector), z = std::min(off + len, (s + 1) * kSector);
      if (data) std::memcpy(v.data() + (a - s * kSector), data + (a - off), z - a);
      else std::memset(v.data() + (a - s * kSector), 0, z - a);
      cur[s] = std::move(v);
      touched.insert(s);
      ever.insert(s);
    }
  }
  void flushed_now() {
    flushed = cur;
    touched.clear();
  }
};

struct CrashCase {
  const char* name;
  uint64_t size;
  uint32_t cluster;
  bool backing;
  size_t cache_tables;  // 0: default
  int ops;
};

// The seeded workload; returns normally or at the simulated power loss.
void crash_workload(BlockDevice& dev, Expect& ex, uint32_t seed, int ops) {
  std::mt19937_64 rng(seed);
  uint64_t cap = dev.capacity();
  std::vector<uint8_t> buf;
  try {
    for (int i = 0; i < ops; ++i) {
      uint64_t kind = rng() % 20;
      uint64_t len = (rng() % 5 == 0) ? rng() % 200000 + 1 : rng() % 9000 + 1;
      if (rng() % 2 == 0) len = (len + 4095) & ~4095ull;
      uint64_t off = rng() % cap;
      if (rng() % 2 == 0) off &= ~4095ull;
      len = std::min(len, cap - off);
      if (kind == 0) {
        dev.flush();
        ex.flushed_now();
      } else if (kind < 14) {
        buf.resize(len);
        uint8_t b = uint8_t(rng());
        for (uint64_t j = 0; j < len; ++j) buf[j] = uint8_t(b + j * 13 + (j >> 9));
        // Marked before the call: a write interrupted half-way may have landed in part.
        ex.apply(off, buf.data(), len);
        dev.write(off, buf);
      } else {
        ex.apply(off, nullptr, len);
        if (kind < 17) dev.discard(off, len);
        else dev.write_zeroes(off, len, kind == 17);
      }
    }
  } catch (const berth::Error& e) {
    if (!crash::crashed()) throw;
  }
}

// qemu-img check's verdict: 0 clean, 3 leaks only, 2 corruptions.
int qemu_check(const std::string& img, std::string* out) { return sh("qemu-img check -f qcow2 '" + img + "'", out); }

void run_crash_case(const CrashCase& c) {
  TempDir d;
  std::string img = d / "c.qcow2", base = d / "base.qcow2", raw = d / "base.raw";
  Expect proto;
  if (c.backing) {
    write_pattern(raw, c.size, 5);
    CHECK_EQ(sh("qemu-img convert -f raw -O qcow2 '" + raw + "' '" + base + "'"), 0);
    std::string b = slurp(raw);
    proto.base.assign(b.begin(), b.end());
  }
  auto fresh = [&] {
    sh("rm -f '" + img + "'");
    create_disk(img, qopts(c.size, c.cluster, c.backing ? "base.qcow2" : ""));
  };
  crash::limit_metadata_cache(c.cache_tables);
  // How many writes the whole workload issues.
  fresh();
  uint64_t total;
  {
    auto dev = open_disk(img);
    Expect ex = proto;
    crash::crash_after_writes(INT64_MAX);
    crash_workload(*dev, ex, 77, c.ops);
    dev->flush();
    total = crash::writes_issued();
    crash::crash_after_writes(-1);
  }
  expect_clean(img);
  std::vector<uint64_t> points = {0, 1, 2, 3, 5, 8};
  for (int i = 1; i <= 14; ++i) points.push_back(total * i / 15);
  points.push_back(total - 1);
  int checked = 0, leaky = 0;
  for (bool lose_unsynced : {false, true}) {
    for (uint64_t k : points) {
      fresh();
      Expect ex = proto;
      {
        auto dev = open_disk(img);
        crash::crash_after_writes(static_cast<int64_t>(k), lose_unsynced);
        crash_workload(*dev, ex, 77, c.ops);
        if (!crash::crashed()) {
          try {
            dev->flush();
            ex.flushed_now();
          } catch (const berth::Error&) {
            CHECK(crash::crashed());
          }
        }
        // The device is dropped as in a power loss: its close-time flush fails too.
      }
      crash::crash_after_writes(-1);
      std::string where = std::string(c.name) + (lose_unsynced ? " (page cache lost)" : "") + " crash after " +
                          std::to_string(k) + " of " + std::to_string(total) + " writes";
      std::string out;
      int rc = qemu_check(img, &out);
      if (rc != 0 && rc != 3) {
        berth::test::fail(__FILE__, __LINE__, where + ": qemu-img check rc=" + std::to_string(rc) + ": " + out);
        return;
      }
      leaky += rc == 3;
      {
        auto dev = open_disk(img);  // read-write: a dirty image is checked, leaks repaired
        CHECK(!dev->info().dirty);
        std::set<uint64_t> sectors = ex.ever;
        std::mt19937_64 rng(k);
        for (int i = 0; i < 64; ++i) sectors.insert(rng() % (c.size / kSector));
        std::vector<uint8_t> got(kSector);
        for (uint64_t s : sectors) {
          if (ex.touched.count(s)) continue;  // written after the last flush: either is fine
          dev->read(s * kSector, got);
          if (got != ex.sector(ex.flushed, s)) {
            berth::test::fail(__FILE__, __LINE__, where + ": flushed sector " + std::to_string(s) + " reads back wrong");
            return;
          }
        }
        ++checked;
      }
      rc = qemu_check(img, &out);
      if (rc != 0) {
        berth::test::fail(__FILE__, __LINE__, where + ": after our repair, qemu-img check rc=" + std::to_string(rc) + ": " + out);
        return;
      }
    }
  }
  crash::limit_metadata_cache(0);
  std::fprintf(stderr, "  %s: %d crash points verified (%llu writes in the run), %d left leaks\n", c.name, checked,
               static_cast<unsigned long long>(total), leaky);
}

}  // namespace

// Power loss at many points of a seeded workload (writes, discards, zeroing, flushes):
// with the device's writes kept in order up to the crash (a lost volatile write cache),
// and with every write since the last sync rolled back too (a lost page cache). qemu-img
// check must find no corruption (leaks allowed), our open must repair the leaks, and every
// sector the workload had flushed (and not touched since) must read back as flushed.
TEST(qcow2_crash_consistency) {
  const CrashCase cases[] = {
      {"64 KiB clusters", 16 << 20, 65536, false, 0, 300},
      {"differencing", 16 << 20, 65536, true, 0, 300},
      {"4 KiB clusters, 4-table caches (eviction write-back)", 64 << 20, 4096, false, 4, 300},
  };
  for (const auto& c : cases) run_crash_case(c);
  crash::crash_after_writes(-1);
  crash::limit_metadata_cache(0);
}
