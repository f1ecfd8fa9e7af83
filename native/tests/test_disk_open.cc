// open_disk / probe_format: probing by magic, never by name; backing-chain rules
// (relative to the child's folder, depth limit, loop detection, parents read-only,
// open_backing=false). The chain rules are exercised through a test-only format
// ("BTESTCHN" magic, a backing name, no data of its own) registered under a Format value
// no real driver uses, so it cannot shadow a real driver for create or dispatch.
#include <cstring>
#include <vector>

#include "common/error.h"
#include "disk/block_device.h"
#include "disk/driver.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"

using namespace berth::disk;
using namespace berth::test::rvh;

namespace {

constexpr Format kChainTestFormat = static_cast<Format>(77);
constexpr uint64_t kChainCapacity = 1 << 20;

// Reads everything from its backing image (or zeroes without one).
class ChainDisk final : public BlockDevice {
 public:
  ChainDisk(std::string path, std::string recorded, std::unique_ptr<BlockDevice> backing, bool had_opener)
      : path_(std::move(path)), recorded_(std::move(recorded)), backing_(std::move(backing)), had_opener_(had_opener) {}
  uint64_t capacity() const override { return kChainCapacity; }
  bool read_only() const override { return true; }
  void read(uint64_t offset, std::span<uint8_t> buf) override {
    if (backing_) backing_->read(offset, buf);
    else std::memset(buf.data(), 0, buf.size());
  }
  void write(uint64_t, std::span<const uint8_t>) override { throw berth::Error("DISK_READ_ONLY", path_); }
  void flush() override {}
  void discard(uint64_t, uint64_t) override {}
  void write_zeroes(uint64_t, uint64_t, bool) override {}
  Extent block_status(uint64_t offset, uint64_t length) override { return {offset, length, ExtentKind::kBacking}; }
  ImageInfo info() const override {
    ImageInfo i;
    i.format = kChainTestFormat;
    i.path = path_;
    i.backing_path = recorded_;
    i.backing_resolved = backing_ ? backing_->info().path : "";
    return i;
  }
  BlockDevice* backing() const override { return backing_.get(); }
  bool had_opener() const { return had_opener_; }

 private:
  std::string path_, recorded_;
  std::unique_ptr<BlockDevice> backing_;
  bool had_opener_;
};

bool probe_chain(const File& file) {
  if (file.size() < 512) return false;
  uint8_t m[512];
  file.read_exact(0, m);
  return std::memcmp(m, "BTESTCHN", 8) == 0;
}

std::unique_ptr<BlockDevice> open_chain(File file, const OpenOptions&, const BackingOpener& opener) {
  char head[512];
  file.read_exact(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(head), sizeof head));
  head[511] = 0;
  std::string recorded = head + 16;
  std::unique_ptr<BlockDevice> parent;
  if (opener && !recorded.empty()) parent = opener(recorded, "");
  return std::make_unique<ChainDisk>(file.path(), recorded, std::move(parent), bool(opener));
}

[[maybe_unused]] const bool registered = register_driver({kChainTestFormat, 5, probe_chain, open_chain, nullptr});

void make_chain_file(const std::string& path, const std::string& backing) {
  std::string d(512, '\0');
  std::memcpy(&d[0], "BTESTCHN", 8);
  std::memcpy(&d[16], backing.data(), backing.size());
  write_whole(path, d);
}

std::string read_start(BlockDevice& disk, size_t n) {
  std::vector<uint8_t> b(n);
  disk.read(0, b);
  return std::string(b.begin(), b.end());
}

}  // namespace

TEST(disk_open_probes_by_magic_not_name) {
  TempDir dir;
  write_whole(dir.file("garbage.qcow2"), std::string(5000, 'g'));
  CHECK(probe_format(dir.file("garbage.qcow2")) == Format::kRaw);
  write_whole(dir.file("empty.vhd"), "");
  CHECK(probe_format(dir.file("empty.vhd")) == Format::kRaw);
  CHECK_EQ(open_disk(dir.file("empty.vhd"))->capacity(), uint64_t(0));
  CreateOptions vhd;
  vhd.format = Format::kVhd;
  vhd.size = 1 << 20;
  create_disk(dir.file("disk.qcow2"), vhd);
  CHECK(probe_format(dir.file("disk.qcow2")) == Format::kVhd);
  // A qcow2 named .img is qcow2 (when the qcow2 driver is linked in).
  if (run("qemu-img create -q -f qcow2 '" + dir.file("q.img") + "' 1M").rc == 0) {
    try {
      CHECK(probe_format(dir.file("q.img")) == Format::kQcow2);
    } catch (const berth::Error& e) {
      std::fprintf(stderr, "    note: qcow2 probe: %s\n", e.what());
    }
  }
  CHECK_THROWS_CODE(probe_format(dir.file("nope")), "DISK_NOT_FOUND", "does not exist");
}

TEST(disk_open_backing_relative_to_child_folder) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("a/b"));
  std::filesystem::create_directories(dir.file("other"));
  write_whole(dir.file("a/b/base.raw"), "near" + std::string(kChainCapacity - 4, '\0'));
  write_whole(dir.file("other/base.raw"), "far!" + std::string(kChainCapacity - 4, '\0'));
  make_chain_file(dir.file("a/b/child1"), "base.raw");
  make_chain_file(dir.file("a/b/child2"), "../../other/base.raw");
  make_chain_file(dir.file("a/child3"), dir.file("other/base.raw"));  // absolute
  auto c1 = open_disk(dir.file("a/b/child1"));
  CHECK(read_start(*c1, 4) == "near");
  CHECK(c1->info().backing_resolved == dir.file("a/b/base.raw"));
  CHECK(c1->backing() != nullptr && c1->backing()->read_only());  // parents never written
  auto c2 = open_disk(dir.file("a/b/child2"));
  CHECK(read_start(*c2, 4) == "far!");
  auto c3 = open_disk(dir.file("a/child3"));
  CHECK(read_start(*c3, 4) == "far!");
  // open_backing=false: the driver gets no opener and reads nothing through.
  OpenOptions alone;
  alone.open_backing = false;
  auto solo = open_disk(dir.file("a/b/child1"), alone);
  CHECK(solo->backing() == nullptr);
  CHECK(!static_cast<ChainDisk*>(solo.get())->had_opener());
  CHECK(solo->info().backing_path == "base.raw");
  make_chain_file(dir.file("a/orphan"), "missing.raw");
  CHECK_THROWS_CODE(open_disk(dir.file("a/orphan")), "DISK_NOT_FOUND", dir.file("a/missing.raw"));
}

TEST(disk_open_chain_depth_limit_and_loops) {
  TempDir dir;
  write_whole(dir.file("base.raw"), "deep" + std::string(kChainCapacity - 4, '\0'));
  make_chain_file(dir.file("c0"), "base.raw");
  for (int i = 1; i < 6; i++) make_chain_file(dir.file("c" + std::to_string(i)), "c" + std::to_string(i - 1));
  auto top = open_disk(dir.file("c5"));  // 6 differencing levels + base: within the default limit
  CHECK(read_start(*top, 4) == "deep");
  OpenOptions shallow;
  shallow.max_chain_depth = 3;
  CHECK_THROWS_CODE(open_disk(dir.file("c5"), shallow), "DISK_CHAIN_TOO_DEEP", "more than 3");
  CHECK(read_start(*open_disk(dir.file("c2"), shallow), 4) == "deep");  // c2 c1 c0 base: depth 3
  make_chain_file(dir.file("self"), "self");
  CHECK_THROWS_CODE(open_disk(dir.file("self")), "DISK_BACKING_LOOP", "loop");
  std::filesystem::create_directories(dir.file("sub"));
  make_chain_file(dir.file("x"), "y");
  make_chain_file(dir.file("y"), "sub/../x");
  CHECK_THROWS_CODE(open_disk(dir.file("x")), "DISK_BACKING_LOOP", "loop");
  // A hard link is the same file under another name: still a loop.
  make_chain_file(dir.file("p"), "q");
  CHECK_EQ(::link(dir.file("p").c_str(), dir.file("q").c_str()), 0);
  CHECK_THROWS_CODE(open_disk(dir.file("p")), "DISK_BACKING_LOOP", "loop");
}
