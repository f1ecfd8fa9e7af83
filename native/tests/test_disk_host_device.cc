// Host block devices through real loop devices (root only; skipped, and counted so, otherwise):
// I/O round trip visible in the backing file, size, exclusive open, mounted refusal.
#include <sys/mount.h>
#include <unistd.h>

#include <vector>

#include "common/error.h"
#include "disk/block_device.h"
#include "disk/host_device.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"

using namespace berth::disk;
using namespace berth::test::rvh;

namespace {

void need(const Loop& loop) {
  if (!loop.ok()) SKIP("no loop device (needs root and losetup)");
}

}  // namespace

TEST(disk_host_device_round_trip) {
  TempDir dir;
  std::string backing = dir.file("backing.raw");
  write_pattern_file(backing, 16 << 20, 3);
  std::string mirror_data = read_whole(backing);
  {
    Loop loop(backing);
    need(loop);
    CHECK(probe_format(loop.dev) == Format::kHostDevice);
    auto disk = open_disk(loop.dev);
    CHECK(disk->info().format == Format::kHostDevice);
    CHECK(disk->info().subformat == "passthrough");
    CHECK_EQ(disk->capacity(), uint64_t(16 << 20));
    CHECK(disk->logical_block_size() >= 512);
    std::vector<uint8_t> buf(3 << 20);
    disk->read(0, buf);
    CHECK(std::memcmp(buf.data(), mirror_data.data(), buf.size()) == 0);
    // Unaligned and aligned writes, zeroing, discard; then flush.
    std::mt19937 rng(7);
    for (int i = 0; i < 60; i++) {
      size_t len = 1 + rng() % 70000;
      uint64_t off = rng() % ((16 << 20) - len);
      std::vector<uint8_t> data(len);
      for (auto& b : data) b = uint8_t(rng());
      int kind = int(rng() % 4);
      if (kind < 2) {
        disk->write(off, data);
        std::memcpy(&mirror_data[off], data.data(), len);
      } else {
        if (kind == 2) disk->write_zeroes(off, len, rng() % 2);
        else disk->discard(off, len);
        std::memset(&mirror_data[off], 0, len);
      }
      std::vector<uint8_t> back(len);
      disk->read(off, back);
      CHECK(std::memcmp(back.data(), &mirror_data[off], len) == 0);
    }
    disk->flush();
    CHECK_THROWS_CODE(disk->read((16 << 20) - 1, std::span<uint8_t>(buf.data(), 2)), "DISK_RANGE", "outside");
  }
  CHECK(read_whole(backing) == mirror_data);
}

TEST(disk_host_device_exclusive_open) {
  TempDir dir;
  std::string backing = dir.file("backing.raw");
  write_whole(backing, std::string(4 << 20, '\0'));
  Loop loop(backing);
  need(loop);
  auto first = open_disk(loop.dev);
  CHECK_THROWS_CODE(open_disk(loop.dev), "DISK_IN_USE", "in use");
  first.reset();
  auto again = open_disk(loop.dev);  // released on close
  CHECK(again != nullptr);
}

TEST(disk_host_device_mounted_refused) {
  TempDir dir;
  std::string backing = dir.file("backing.raw");
  write_whole(backing, std::string(16 << 20, '\0'));
  Loop loop(backing);
  need(loop);
  if (run("mkfs.ext4 -q " + loop.dev).rc != 0) SKIP("mkfs.ext4 is missing (apt-get install e2fsprogs)");
  std::string mnt = dir.file("mnt");
  ::mkdir(mnt.c_str(), 0755);
  if (::mount(loop.dev.c_str(), mnt.c_str(), "ext4", 0, nullptr) != 0) {
    SKIP(std::string("cannot mount ext4 here: ") + std::strerror(errno));
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mnt};
  CHECK(host_device_mount_point(loop.dev) == mnt);
  CHECK_THROWS_CODE(open_disk(loop.dev), "DISK_IN_USE", "mounted on " + mnt);
  OpenOptions ro;
  ro.read_only = true;
  CHECK_THROWS_CODE(open_disk(loop.dev, ro), "DISK_IN_USE", "unmount");
}
