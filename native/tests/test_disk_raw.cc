// Raw images: sparse/fixed create, I/O (buffered and O_DIRECT with unaligned requests),
// holes via block_status, discard/write_zeroes, resize; qemu-img compare is the judge.
#include <vector>

#include "common/error.h"
#include "disk/block_device.h"
#include "disk/raw.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"

using namespace berth::disk;
using namespace berth::test::rvh;

TEST(disk_raw_create_sparse_and_fixed) {
  TempDir dir;
  CreateOptions opt;
  opt.format = Format::kRaw;
  opt.size = 32 << 20;
  create_disk(dir.file("sparse.img"), opt);
  opt.fixed = true;
  create_disk(dir.file("fixed.img"), opt);
  auto sparse = open_disk(dir.file("sparse.img"));
  auto fixed = open_disk(dir.file("fixed.img"));
  CHECK(sparse->info().format == Format::kRaw);
  CHECK_EQ(sparse->capacity(), uint64_t(32 << 20));
  CHECK(sparse->info().allocated_bytes < (1u << 20));
  CHECK(fixed->info().allocated_bytes >= uint64_t(32 << 20));
  Extent e = sparse->block_status(0, 32 << 20);
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.length, uint64_t(32 << 20));
  CHECK_THROWS_CODE(create_disk(dir.file("sparse.img"), opt), "DISK_EXISTS", "already exists");
  opt.backing_path = "base.img";
  CHECK_THROWS_CODE(create_disk(dir.file("child.img"), opt), "DISK_UNSUPPORTED", "backing");
}

// True when this process holds path open with O_DIRECT (from /proc/self/fdinfo).
static bool fd_is_direct(const std::string& path) {
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec).string() != path) continue;
    std::string info = read_whole("/proc/self/fdinfo/" + e.path().filename().string());
    auto at = info.find("flags:");
    if (at != std::string::npos && (std::strtoul(info.c_str() + at + 6, nullptr, 8) & O_DIRECT)) return true;
  }
  return false;
}

static void raw_workload(bool direct, uint32_t seed) {
  TempDir dir;
  CreateOptions opt;
  opt.format = Format::kRaw;
  opt.size = 48 << 20;
  create_disk(dir.file("disk.img"), opt);
  {
    Mirror mirror(dir.file("mirror.raw"), opt.size);
    OpenOptions oo;
    oo.direct = direct;
    auto disk = open_disk(dir.file("disk.img"), oo);
    if (direct) CHECK(fd_is_direct(dir.file("disk.img")));
    random_workload(*disk, mirror, seed, 400);
    disk->flush();
    CHECK(same_as_mirror(*disk, mirror));
  }
  auto r = run("qemu-img compare -f raw -F raw '" + dir.file("disk.img") + "' '" + dir.file("mirror.raw") + "'");
  CHECK_EQ(r.rc, 0);
  if (r.rc != 0) std::fprintf(stderr, "    %s\n", r.out.c_str());
}

TEST(disk_raw_workload_matches_qemu_compare) { raw_workload(false, 11); }
TEST(disk_raw_direct_workload_unaligned) { raw_workload(true, 12); }

TEST(disk_raw_block_status_and_discard) {
  TempDir dir;
  CreateOptions opt;
  opt.format = Format::kRaw;
  opt.size = 8 << 20;
  create_disk(dir.file("d.img"), opt);
  auto disk = open_disk(dir.file("d.img"));
  std::vector<uint8_t> data(1 << 20, 0xAB);
  disk->write(2 << 20, data);
  Extent e = disk->block_status(0, 8 << 20);
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.length, uint64_t(2 << 20));
  e = disk->block_status(2 << 20, 8 << 20);
  CHECK(e.kind == ExtentKind::kData);
  CHECK_EQ(e.length, uint64_t(1 << 20));
  e = disk->block_status(3 << 20, 1 << 30);
  CHECK(e.kind == ExtentKind::kZero);
  CHECK_EQ(e.offset + e.length, uint64_t(8 << 20));
  uint64_t before = disk->info().allocated_bytes;
  disk->discard(2 << 20, 1 << 20);
  CHECK(disk->info().allocated_bytes < before);
  std::vector<uint8_t> back(1 << 20, 1);
  disk->read(2 << 20, back);
  CHECK(std::all_of(back.begin(), back.end(), [](uint8_t b) { return b == 0; }));
  disk->write(100, std::vector<uint8_t>(5000, 7));
  disk->write_zeroes(1000, 100, false);
  std::vector<uint8_t> mid(5000);
  disk->read(100, mid);
  CHECK_EQ(mid[0], uint8_t(7));
  CHECK_EQ(mid[899], uint8_t(7));
  CHECK_EQ(mid[900], uint8_t(0));
  CHECK_EQ(mid[999], uint8_t(0));
  CHECK_EQ(mid[1000], uint8_t(7));
  CHECK_THROWS_CODE(disk->read((8 << 20) - 10, back), "DISK_RANGE", "outside");
  CHECK_THROWS_CODE(disk->block_status(8 << 20, 1), "DISK_RANGE", "outside");
}

TEST(disk_raw_resize) {
  TempDir dir;
  CreateOptions opt;
  opt.format = Format::kRaw;
  opt.size = 4 << 20;
  create_disk(dir.file("d.img"), opt);
  auto disk = open_disk(dir.file("d.img"));
  disk->resize(16 << 20);
  CHECK_EQ(disk->capacity(), uint64_t(16 << 20));
  disk->write((12 << 20) + 5, std::vector<uint8_t>(10, 1));
  CHECK_THROWS_CODE(disk->resize(8 << 20), "DISK_SHRINK_DATA", "holds data");
  CHECK_EQ(disk->capacity(), uint64_t(16 << 20));
  disk->discard(12 << 20, 1 << 20);
  disk->resize(8 << 20);
  CHECK_EQ(disk->capacity(), uint64_t(8 << 20));
  auto r = run("qemu-img info --output=json '" + dir.file("d.img") + "'");
  CHECK_EQ(json_number(r.out, "virtual-size"), (long long)(8 << 20));
}

TEST(disk_raw_read_only_and_probe) {
  TempDir dir;
  write_whole(dir.file("junk.bin"), std::string(3000, 'x'));
  CHECK(probe_format(dir.file("junk.bin")) == Format::kRaw);
  OpenOptions ro;
  ro.read_only = true;
  auto disk = open_disk(dir.file("junk.bin"), ro);
  CHECK_EQ(disk->capacity(), uint64_t(3000));
  std::vector<uint8_t> b(10);
  disk->read(2990, b);
  CHECK_EQ(b[9], uint8_t('x'));
  CHECK_THROWS_CODE(disk->write(0, b), "DISK_READ_ONLY", "read-only");
  CHECK_THROWS_CODE(open_disk(dir.file("missing.img")), "DISK_NOT_FOUND", "does not exist");
  // An odd-sized file opened with O_DIRECT falls back to buffered I/O and stays its size.
  OpenOptions direct;
  direct.direct = true;
  auto odd = open_raw(File(dir.file("junk.bin"), File::Mode::kReadWrite, true), direct);
  odd->write(2999, std::vector<uint8_t>(1, 'y'));
  odd.reset();
  CHECK_EQ(read_whole(dir.file("junk.bin")).size(), size_t(3000));
  CHECK_EQ(read_whole(dir.file("junk.bin"))[2999], 'y');
}
