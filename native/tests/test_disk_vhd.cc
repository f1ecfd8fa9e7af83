// VHD (qemu's "vpc"): create fixed/dynamic, qemu-img info agrees on size, seeded random
// workloads compared with qemu-img compare, images made by qemu-img read back, probing
// by magic, damaged images refused without touching the file, check/repair of leaks.
#include <filesystem>
#include <functional>
#include <vector>

#include "common/error.h"
#include "disk/block_device.h"
#include "disk/vhd/vhd.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"

using namespace berth::disk;
using namespace berth::test::rvh;

namespace {

CreateOptions vhd_options(uint64_t size, bool fixed) {
  CreateOptions opt;
  opt.format = Format::kVhd;
  opt.size = size;
  opt.fixed = fixed;
  return opt;
}

CreateOptions raw_options(uint64_t size) {
  CreateOptions opt;
  opt.format = Format::kRaw;
  opt.size = size;
  return opt;
}

OpenOptions open_options(bool read_only, bool open_backing) {
  OpenOptions o;
  o.read_only = read_only;
  o.open_backing = open_backing;
  return o;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

void patch_be32(const std::string& path, uint64_t at, uint32_t v) {
  std::string d = read_whole(path);
  for (int i = 0; i < 4; i++) d[at + i] = char(v >> (24 - 8 * i));
  write_whole(path, d);
}

// Recomputes the footer checksum at `at` (after a deliberate field change).
void fix_footer_checksum(const std::string& path, uint64_t at) {
  std::string d = read_whole(path);
  uint32_t sum = 0;
  for (int i = 0; i < 512; i++)
    if (i < 64 || i >= 68) sum += uint8_t(d[at + i]);
  sum = ~sum;
  for (int i = 0; i < 4; i++) d[at + 64 + i] = char(sum >> (24 - 8 * i));
  write_whole(path, d);
}

void workload_against_qemu(bool fixed, uint64_t size, uint32_t seed) {
  TempDir dir;
  std::string img = dir.file("disk.vhd");
  create_disk(img, vhd_options(size, fixed));
  {
    Mirror mirror(dir.file("mirror.raw"), size);
    auto disk = open_disk(img);
    CHECK(disk->info().format == Format::kVhd);
    CHECK_EQ(disk->capacity(), size);
    random_workload(*disk, mirror, seed, 500);
    CHECK(same_as_mirror(*disk, mirror));
  }
  auto info = run("qemu-img info -f vpc --output=json " + q(img));
  CHECK(json_string(info.out, "format") == "vpc");
  CHECK_EQ(json_number(info.out, "virtual-size"), (long long)size);
  auto cmp = run("qemu-img compare -f vpc -F raw " + q(img) + " " + q(dir.file("mirror.raw")));
  CHECK_EQ(cmp.rc, 0);
  if (cmp.rc != 0) std::fprintf(stderr, "    %s\n", cmp.out.c_str());
  // Reopened, the image still holds the same data, and check finds nothing.
  Mirror mirror2(dir.file("mirror.raw"), size, true);
  auto disk = open_disk(img);
  CHECK(same_as_mirror(*disk, mirror2));
  CheckReport report = disk->check(false);
  CHECK_EQ(report.corruptions, uint64_t(0));
  CHECK_EQ(report.leaked_clusters, uint64_t(0));
}

}  // namespace

TEST(disk_vhd_chs_geometry) {
  auto g = berth::disk::vhd::chs_for((1ull << 30) / 512);
  CHECK_EQ(g.cylinders, 2080);
  CHECK_EQ(g.heads, 16);
  CHECK_EQ(g.sectors_per_track, 63);
  g = berth::disk::vhd::chs_for(20480);  // 10 MiB
  CHECK_EQ(g.sectors_per_track, 17);
  CHECK_EQ(g.heads, 4);
  CHECK_EQ(g.cylinders, 301);
  g = berth::disk::vhd::chs_for(1ull << 40);
  CHECK_EQ(g.cylinders, 65535);
  CHECK_EQ(g.heads, 16);
  CHECK_EQ(g.sectors_per_track, 255);
  // Sizes the spec's CHS covers exactly keep it; others record the maximum geometry.
  CHECK_EQ(berth::disk::vhd::geometry_for_create(2080ull * 16 * 63 * 512).cylinders, 2080);
  CHECK_EQ(berth::disk::vhd::geometry_for_create(1ull << 30).cylinders, 65535);
}

TEST(disk_vhd_create_sizes_agree_with_qemu_info) {
  TempDir dir;
  // One size the CHS geometry covers exactly, two it does not.
  for (uint64_t size : {2080ull * 16 * 63 * 512, 1ull << 30, (100ull << 20) + 3 * 512}) {
    for (bool fixed : {false, true}) {
      if (fixed && size > (200ull << 20)) continue;
      std::string img = dir.file("s" + std::to_string(size) + (fixed ? "f" : "d") + ".vhd");
      create_disk(img, vhd_options(size, fixed));
      auto info = run("qemu-img info -f vpc --output=json " + q(img));
      CHECK_EQ(json_number(info.out, "virtual-size"), (long long)size);
      auto disk = open_disk(img);
      CHECK_EQ(disk->capacity(), size);
      CHECK(disk->info().subformat == (fixed ? "fixed" : "dynamic"));
      if (!fixed) CHECK_EQ(disk->info().cluster_size, uint32_t(2 << 20));
    }
  }
  CHECK_THROWS_CODE(create_disk(dir.file("big.vhd"), vhd_options(3ull << 40, false)), "DISK_UNSUPPORTED",
                    "2040 GiB");
  // A differencing VHD needs a VHD parent.
  create_disk(dir.file("base.raw"), raw_options(1 << 20));
  CreateOptions diff = vhd_options(0, false);
  diff.backing_path = "base.raw";
  CHECK_THROWS_CODE(create_disk(dir.file("diff.vhd"), diff), "DISK_UNSUPPORTED", "must be a VHD");
  diff.backing_path = "missing.vhd";
  CHECK_THROWS_CODE(create_disk(dir.file("diff.vhd"), diff), "DISK_NOT_FOUND", "missing.vhd");
}

TEST(disk_vhd_dynamic_workload_matches_qemu) { workload_against_qemu(false, (40ull << 20) + 512 * 7, 21); }
TEST(disk_vhd_fixed_workload_matches_qemu) { workload_against_qemu(true, 24ull << 20, 22); }

TEST(disk_vhd_reads_qemu_made_images) {
  TempDir dir;
  uint64_t size = 20ull << 20;
  write_pattern_file(dir.file("src.raw"), size, 5);
  std::string src = read_whole(dir.file("src.raw"));
  struct Case {
    const char* name;
    const char* opts;
  } cases[] = {{"dyn.vhd", ""}, {"fixed.vhd", "-o subformat=fixed"}, {"dynfs.vhd", "-o force_size=on"},
               {"fixedfs.vhd", "-o subformat=fixed,force_size=on"}};
  for (const auto& c : cases) {
    std::string img = dir.file(c.name);
    auto r = run(std::string("qemu-img convert -f raw -O vpc ") + c.opts + " " + q(dir.file("src.raw")) + " " + q(img));
    CHECK_EQ(r.rc, 0);
    auto disk = open_disk(img);
    CHECK(disk->info().format == Format::kVhd);
    CHECK(disk->capacity() >= size);
    auto info = run("qemu-img info -f vpc --output=json " + q(img));
    CHECK_EQ(json_number(info.out, "virtual-size"), (long long)disk->capacity());
    std::vector<uint8_t> back(disk->capacity());
    disk->read(0, back);
    CHECK(std::memcmp(back.data(), src.data(), size) == 0);
    CHECK(std::all_of(back.begin() + size, back.end(), [](uint8_t b) { return b == 0; }));
    // Write into the qemu-made image; qemu must read the same.
    Mirror mirror(dir.file(std::string(c.name) + ".raw"), disk->capacity());
    mirror.write(0, back.data(), back.size());
    random_workload(*disk, mirror, 31, 200);
    disk.reset();
    auto cmp = run("qemu-img compare -f vpc -F raw " + q(img) + " " + q(mirror.path));
    CHECK_EQ(cmp.rc, 0);
    if (cmp.rc != 0) std::fprintf(stderr, "    %s: %s\n", c.name, cmp.out.c_str());
  }
  // An empty qemu-made dynamic image reads as zeroes and reports zero extents.
  CHECK_EQ(run("qemu-img create -q -f vpc " + q(dir.file("empty.vhd")) + " 8M").rc, 0);
  auto disk = open_disk(dir.file("empty.vhd"));
  Extent e = disk->block_status(0, disk->capacity());
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.length, disk->capacity());
}

TEST(disk_vhd_block_status_and_zeroing) {
  TempDir dir;
  std::string img = dir.file("d.vhd");
  create_disk(img, vhd_options(16 << 20, false));
  auto disk = open_disk(img);
  disk->write((4 << 20) + 100, std::vector<uint8_t>(1000, 9));
  disk->write(6 << 20, std::vector<uint8_t>(4096, 0));  // zeroes into a free block: nothing allocated
  Extent e = disk->block_status(0, 16 << 20);
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.length, uint64_t(4 << 20));
  e = disk->block_status(4 << 20, 16 << 20);
  CHECK(e.kind == ExtentKind::kData);
  CHECK_EQ(e.length, uint64_t(2 << 20));
  e = disk->block_status(6 << 20, 16 << 20);
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.offset + e.length, uint64_t(16 << 20));
  disk->discard(4 << 20, 2 << 20);
  std::vector<uint8_t> back(1000, 1);
  disk->read((4 << 20) + 100, back);
  CHECK(std::all_of(back.begin(), back.end(), [](uint8_t b) { return b == 0; }));
  disk.reset();
  write_whole(dir.file("zero.raw"), std::string(16 << 20, '\0'));
  CHECK_EQ(run("qemu-img compare -f vpc -F raw " + q(img) + " " + q(dir.file("zero.raw"))).rc, 0);
}

TEST(disk_vhd_probe_by_magic_not_name) {
  TempDir dir;
  create_disk(dir.file("looks-like.qcow2"), vhd_options(4 << 20, false));
  CHECK(probe_format(dir.file("looks-like.qcow2")) == Format::kVhd);
  create_disk(dir.file("fixed.img"), vhd_options(4 << 20, true));
  CHECK(probe_format(dir.file("fixed.img")) == Format::kVhd);
  CHECK(open_disk(dir.file("fixed.img"))->info().format == Format::kVhd);
}

namespace {

// A dynamic parent with data, and its content as raw (the mirror's starting point).
void make_parent(const TempDir& dir, const std::string& name, uint64_t size, uint32_t seed) {
  write_pattern_file(dir.file(name + ".src.raw"), size, seed);
  auto r = run("qemu-img convert -f raw -O vpc " + q(dir.file(name + ".src.raw")) + " " + q(dir.file(name)));
  CHECK_EQ(r.rc, 0);
}

uint32_t be32_at(const std::string& d, uint64_t at) {
  return uint32_t(uint8_t(d[at])) << 24 | uint32_t(uint8_t(d[at + 1])) << 16 | uint32_t(uint8_t(d[at + 2])) << 8 |
         uint8_t(d[at + 3]);
}

// Recomputes the dynamic header checksum (header at 512, 1024 bytes, checksum at 36).
void fix_header_checksum(const std::string& path) {
  std::string d = read_whole(path);
  uint32_t sum = 0;
  for (int i = 0; i < 1024; i++)
    if (i < 36 || i >= 40) sum += uint8_t(d[512 + i]);
  sum = ~sum;
  for (int i = 0; i < 4; i++) d[512 + 36 + i] = char(sum >> (24 - 8 * i));
  write_whole(path, d);
}

CreateOptions child_of(const std::string& parent) {
  CreateOptions c;
  c.format = Format::kVhd;
  c.backing_path = parent;
  return c;
}

}  // namespace

TEST(disk_vhd_differencing_chain_matches_mirror) {
  TempDir dir;
  make_parent(dir, "parent.vhd", 24ull << 20, 5);
  // qemu rounds the size to the CHS geometry: the chain has the parent's size.
  const uint64_t size = open_disk(dir.file("parent.vhd"), open_options(true, true))->capacity();
  std::string parent_sha = sha_of(dir.file("parent.vhd"));
  std::string child = dir.file("child.vhd");
  create_disk(child, child_of("parent.vhd"));
  // qemu's vpc driver reads a differencing VHD as a dynamic one (no parent): it agrees on
  // the size, not on the content.
  auto info = run("qemu-img info -f vpc --output=json " + q(child));
  CHECK_EQ(json_number(info.out, "virtual-size"), (long long)size);
  {
    auto disk = open_disk(child);
    ImageInfo i = disk->info();
    CHECK(i.subformat == "differencing");
    CHECK(i.backing_path == "parent.vhd");
    CHECK(i.backing_resolved == dir.file("parent.vhd"));
    CHECK(disk->backing() != nullptr);
    CHECK_EQ(disk->capacity(), size);
    CHECK(disk->block_status(0, size).kind == ExtentKind::kBacking);
    run("cp " + q(dir.file("parent.vhd.src.raw")) + " " + q(dir.file("mirror.raw")));
    Mirror mirror(dir.file("mirror.raw"), size, true);
    CHECK(same_as_mirror(*disk, mirror));
    random_workload(*disk, mirror, 77, 400);
    CHECK(same_as_mirror(*disk, mirror));
  }
  CHECK(sha_of(dir.file("parent.vhd")) == parent_sha);  // the parent is never written
  Mirror mirror(dir.file("mirror.raw"), size, true);
  {
    auto disk = open_disk(child);
    CHECK(same_as_mirror(*disk, mirror));
    CheckReport r = disk->check(false);
    CHECK_EQ(r.corruptions, uint64_t(0));
    CHECK_EQ(r.leaked_clusters, uint64_t(0));
  }
  // Blocks written by Berth are complete copies: qemu (which ignores the parent) sees the
  // chain's data in every allocated block.
  auto map = run("qemu-img map -f vpc --output=json " + q(child));
  CHECK_EQ(map.rc, 0);

  // A block another writer left partly present: clear the bits of sectors 0..7 of the
  // first allocated block; those sectors then read from the parent.
  std::string d = read_whole(child);
  uint64_t bat = 1536;
  uint64_t block = 0, entry = 0xFFFFFFFFu;
  for (; block < size / (2 << 20); block++) {
    entry = be32_at(d, bat + block * 4);
    if (entry != 0xFFFFFFFFu) break;
  }
  CHECK(entry != 0xFFFFFFFFu);
  d[entry * 512] = 0;
  write_whole(child, d);
  {
    auto disk = open_disk(child);
    auto parent = open_disk(dir.file("parent.vhd"), open_options(true, true));
    uint64_t base = block * (2 << 20);
    std::vector<uint8_t> got(8192), want(8192);
    disk->read(base, got);
    parent->read(base, std::span<uint8_t>(want.data(), 4096));
    mirror.read(base + 4096, want.data() + 4096, 4096);
    CHECK(got == want);
    CHECK(disk->block_status(base, 1 << 20).kind == ExtentKind::kBacking);
    CHECK_EQ(disk->block_status(base, 1 << 20).length, uint64_t(4096));
    // Writing into the block completes it from the parent first.
    std::vector<uint8_t> mine(512, 0x5A);
    disk->write(base + 100 * 512, mine);
    mirror.write(base + 100 * 512, mine.data(), 512);
    mirror.write(base, want.data(), 4096);
    CHECK(disk->block_status(base, 1 << 20).kind == ExtentKind::kData);
    CHECK(same_as_mirror(*disk, mirror));
  }
  auto disk = open_disk(child);
  CHECK(same_as_mirror(*disk, mirror));
}

TEST(disk_vhd_differencing_bad_input_refused_file_untouched) {
  TempDir dir;
  make_parent(dir, "parent.vhd", 8 << 20, 6);
  std::string child = dir.file("child.vhd");
  create_disk(child, child_of(dir.file("parent.vhd")));  // absolute: the relative locator is computed
  write_whole(dir.file("pristine.vhd"), read_whole(child));
  {
    auto disk = open_disk(child);
    CHECK(disk->info().backing_path == "parent.vhd");
  }
  auto fresh = [&] { write_whole(child, read_whole(dir.file("pristine.vhd"))); };
  auto refused = [&](const char* code, const std::string& text, const OpenOptions& o = {}) {
    std::string before = sha_of(child);
    CHECK_THROWS_CODE(open_disk(child, o), code, text);
    CHECK(sha_of(child) == before);
  };
  // Parent locator 0 pointing past the end of the file.
  fresh();
  {
    std::string d = read_whole(child);
    for (int i = 0; i < 8; i++) d[512 + 576 + 16 + i] = char(i < 4 ? 0 : 0x7f);
    write_whole(child, d);
    fix_header_checksum(child);
  }
  refused("DISK_CORRUPT", "past the end of the file");
  refused("DISK_CORRUPT", "parent locator 0", open_options(true, false));
  // A locator length far beyond any path (an over-long parent path).
  fresh();
  patch_be32(child, 512 + 576 + 8, 0x00100000);
  fix_header_checksum(child);
  refused("DISK_CORRUPT", "impossible length");
  // The parent replaced by another image at the same path: its unique id differs.
  fresh();
  {
    auto disk = open_disk(child);  // sound before
  }
  std::filesystem::rename(dir.file("parent.vhd"), dir.file("parent.orig.vhd"));
  make_parent(dir, "parent.vhd", 8 << 20, 6);
  refused("DISK_BACKING_MISMATCH", "unique id");
  refused("DISK_BACKING_MISMATCH", "parent.vhd");
  // The parent gone: not found (both locators tried), the child untouched.
  std::filesystem::remove(dir.file("parent.vhd"));
  refused("DISK_NOT_FOUND", "parent cannot be found");
  // Opened alone (inspection): fine, but it cannot be written without its parent.
  {
    OpenOptions alone;
    alone.open_backing = false;
    auto disk = open_disk(child, alone);
    CHECK(disk->info().subformat == "differencing");
    std::vector<uint8_t> data(512, 1);
    CHECK_THROWS_CODE(disk->write(0, data), "DISK_UNSUPPORTED", "without its parent");
  }
  // Reconnected to the original parent (moved), it opens again.
  {
    std::filesystem::rename(dir.file("parent.orig.vhd"), dir.file("moved.vhd"));
    OpenOptions alone;
    alone.open_backing = false;
    auto disk = open_disk(child, alone);
    disk->set_backing("moved.vhd", open_disk(dir.file("moved.vhd"), open_options(true, true)));
  }
  auto disk = open_disk(child);
  CHECK(disk->info().backing_path == "moved.vhd");
  CHECK(sha_of(dir.file("pristine.vhd")) != sha_of(child));
  // A parent of another format is refused by set_backing.
  create_disk(dir.file("other.raw"), raw_options(8 << 20));
  OpenOptions alone;
  alone.open_backing = false;
  auto again = open_disk(child, alone);
  CHECK_THROWS_CODE(again->set_backing("other.raw", open_disk(dir.file("other.raw"))), "DISK_UNSUPPORTED",
                    "must be a VHD");
}

TEST(disk_vhd_resize_dynamic_and_fixed) {
  TempDir dir;
  for (bool fixed : {false, true}) {
    std::string img = dir.file(fixed ? "f.vhd" : "d.vhd");
    create_disk(img, vhd_options(8 << 20, fixed));
    Mirror mirror(dir.file("m.raw"), 8 << 20);
    std::vector<uint8_t> data(70000, 0xC3);
    {
      auto disk = open_disk(img);
      disk->write(3 << 20, data);
      mirror.write(3 << 20, data.data(), data.size());
      // Grow inside the BAT's sector padding (dynamic), then past it (the BAT moves).
      for (uint64_t size : {64ull << 20, 600ull << 20}) {
        if (fixed && size > (64ull << 20)) continue;
        disk->resize(size);
        CHECK_EQ(disk->capacity(), size);
        CHECK(::ftruncate(mirror.fd, off_t(size)) == 0);
        disk->write(size - 70000, data);
        mirror.write(size - 70000, data.data(), data.size());
      }
      CHECK(same_as_mirror(*disk, mirror));
    }
    uint64_t size = fixed ? 64ull << 20 : 600ull << 20;
    auto info = run("qemu-img info -f vpc --output=json " + q(img));
    CHECK_EQ(json_number(info.out, "virtual-size"), (long long)size);
    auto cmp = run("qemu-img compare -f vpc -F raw " + q(img) + " " + q(mirror.path));
    CHECK_EQ(cmp.rc, 0);
    // Shrinking: refused while a block past the new end is allocated (dynamic), allowed
    // once only free space is cut.
    {
      auto disk = open_disk(img);
      if (!fixed) {
        std::string before = sha_of(img);
        CHECK_THROWS_CODE(disk->resize(16 << 20), "DISK_SHRINK_TOO_SMALL", "block 31 ");
        CHECK_THROWS_CODE(disk->resize(16 << 20), "DISK_SHRINK_TOO_SMALL", "smallest size");
        CHECK(sha_of(img) == before);
      }
    }
    // Cut the tail data out of the mirror's picture by shrinking a copy made before it.
    std::string small = dir.file(fixed ? "fs.vhd" : "ds.vhd");
    create_disk(small, vhd_options(32 << 20, fixed));
    Mirror m2(dir.file("m2.raw"), 32 << 20);
    {
      auto disk = open_disk(small);
      disk->write(5 << 20, data);
      m2.write(5 << 20, data.data(), data.size());
      disk->resize((6 << 20) + 512 * 3);
      CHECK(::ftruncate(m2.fd, off_t((6 << 20) + 512 * 3)) == 0);
      CHECK(same_as_mirror(*disk, m2));
      CHECK_THROWS_CODE(disk->resize(100), "DISK_RANGE", "multiple of 512");
    }
    info = run("qemu-img info -f vpc --output=json " + q(small));
    CHECK_EQ(json_number(info.out, "virtual-size"), (long long)((6 << 20) + 512 * 3));
    cmp = run("qemu-img compare -f vpc -F raw " + q(small) + " " + q(m2.path));
    CHECK_EQ(cmp.rc, 0);
    auto disk = open_disk(small);
    CheckReport r = disk->check(false);
    CHECK_EQ(r.corruptions, uint64_t(0));
    CHECK_EQ(r.leaked_clusters, uint64_t(0));
  }
}

TEST(disk_vhd_bad_input_refused_file_untouched) {
  TempDir dir;
  std::string good = dir.file("good.vhd");
  create_disk(good, vhd_options(8 << 20, false));
  {
    auto disk = open_disk(good);
    disk->write(0, std::vector<uint8_t>(4096, 0x55));
    disk->write(5 << 20, std::vector<uint8_t>(4096, 0x66));
  }
  std::string base = read_whole(good);
  uint64_t footer_at = base.size() - 512;
  // Layout of our dynamic images: footer copy 0, header 512, BAT 1536 (4 entries), blocks.
  struct Case {
    std::string name;
    std::function<void(const std::string&)> damage;
    std::string code, text;
  };
  std::vector<Case> cases = {
      {"truncated", [&](const std::string& p) { write_whole(p, base.substr(0, 1024)); }, "DISK_CORRUPT",
       "past the end of the file"},
      {"truncated-block", [&](const std::string& p) { write_whole(p, base.substr(0, base.size() - 512 - 4096)); },
       "DISK_CORRUPT", "past the end of the file"},
      {"footer-checksum",
       [&](const std::string& p) {
         std::string d = base;
         d[footer_at + 48] ^= 1;
         d[48] ^= 1;
         write_whole(p, d);
       },
       "DISK_BAD_HEADER", "checksum"},
      {"header-checksum",
       [&](const std::string& p) {
         std::string d = base;
         d[512 + 32] ^= 1;
         write_whole(p, d);
       },
       "DISK_BAD_HEADER", "checksum"},
      {"bat-past-eof",
       [&](const std::string& p) {
         write_whole(p, base);
         patch_be32(p, 1536 + 8, 0x00F00000);
       },
       "DISK_CORRUPT", "past the end of the file"},
      {"bat-overlaps-metadata",
       [&](const std::string& p) {
         write_whole(p, base);
         patch_be32(p, 1536 + 4, 2);
       },
       "DISK_CORRUPT", "overlaps"},
      {"size-not-sector-multiple",
       [&](const std::string& p) {
         write_whole(p, base);
         patch_be32(p, footer_at + 52, (8 << 20) + 1);
         fix_footer_checksum(p, footer_at);
       },
       "DISK_CORRUPT", "impossible size"},
      {"size-beyond-bat",
       [&](const std::string& p) {
         write_whole(p, base);
         patch_be32(p, footer_at + 48, 1);  // 4 GiB + 8 MiB with a 4-entry BAT
         fix_footer_checksum(p, footer_at);
       },
       "DISK_CORRUPT", "too few"},
      {"unknown-type",
       [&](const std::string& p) {
         write_whole(p, base);
         patch_be32(p, footer_at + 60, 9);
         fix_footer_checksum(p, footer_at);
       },
       "DISK_BAD_HEADER", "disk type"},
  };
  for (const auto& c : cases) {
    std::string p = dir.file(c.name + ".vhd");
    c.damage(p);
    std::string before = sha_of(p);
    bool threw = false;
    try {
      auto disk = open_disk(p);
    } catch (const berth::Error& e) {
      threw = true;
      if (e.code() != c.code || std::string(e.what()).find(c.text) == std::string::npos ||
          std::string(e.what()).find(p) == std::string::npos) {
        CHECK(false);
        std::fprintf(stderr, "    %s: %s %s\n", c.name.c_str(), e.code().c_str(), e.what());
      }
    }
    if (!threw) {
      CHECK(threw);
      std::fprintf(stderr, "    %s: opened\n", c.name.c_str());
    }
    CHECK(sha_of(p) == before);
  }
  // Read-only, a BAT entry past EOF can be inspected: check reports it, reads of that
  // block fail, the rest reads.
  OpenOptions ro;
  ro.read_only = true;
  auto disk = open_disk(dir.file("bat-past-eof.vhd"), ro);
  CHECK(disk->info().corrupt);
  CheckReport report = disk->check(false);
  CHECK_EQ(report.corruptions, uint64_t(1));
  std::vector<uint8_t> b(4096);
  disk->read(0, b);
  CHECK_EQ(b[0], uint8_t(0x55));
  CHECK_THROWS_CODE(disk->read(5 << 20, b), "DISK_CORRUPT", "block 2");
}

TEST(disk_vhd_check_repairs_tail) {
  TempDir dir;
  std::string img = dir.file("d.vhd");
  create_disk(img, vhd_options(8 << 20, false));
  {
    auto disk = open_disk(img);
    disk->write(3 << 20, std::vector<uint8_t>(512, 0x77));
  }
  std::string base = read_whole(img);
  // A crash after a block was appended but before its BAT entry: an unreferenced block
  // followed by the footer.
  std::string leaked = base.substr(0, base.size() - 512) + std::string((2 << 20) + 512, 'z') +
                       base.substr(base.size() - 512);
  write_whole(img, leaked);
  {
    auto disk = open_disk(img);
    CheckReport r = disk->check(false);
    CHECK_EQ(r.leaked_clusters, uint64_t(2));
    CHECK_EQ(r.corruptions, uint64_t(0));
    r = disk->check(true);
    CHECK_EQ(r.repaired, uint64_t(1));
    CHECK_EQ(disk->check(false).leaked_clusters, uint64_t(0));
  }
  CHECK(read_whole(img) == base);
  // The footer at the end lost (torn write): the copy at the start opens it; new writes
  // and repair restore the end.
  write_whole(img, base.substr(0, base.size() - 512));
  {
    auto disk = open_disk(img);
    CheckReport r = disk->check(true);
    CHECK_EQ(r.corruptions, uint64_t(1));
    CHECK_EQ(r.repaired, uint64_t(1));
    std::vector<uint8_t> b(512);
    disk->read(3 << 20, b);
    CHECK_EQ(b[0], uint8_t(0x77));
  }
  CHECK(read_whole(img) == base);
  // The garbage tail is reused by the next allocation and reads as zeroes.
  write_whole(img, leaked);
  {
    auto disk = open_disk(img);
    disk->write(6 << 20, std::vector<uint8_t>(512, 0x11));
    std::vector<uint8_t> b(4096);
    disk->read((6 << 20) + 512, b);
    CHECK(std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; }));
    CHECK_EQ(disk->check(false).leaked_clusters, uint64_t(0));
  }
  CHECK_EQ(run("qemu-img info " + q(img)).rc, 0);
}
