// Helpers for the raw, VHD, host-device and open tests: temp folders, shelling out to
// qemu-img (the independent judge), and a seeded random workload mirrored in a raw file.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "disk/block_device.h"
#include "tests/check.h"

namespace berth::test::rvh {

struct TempDir {
  std::string path;
  explicit TempDir(const char* base = "/var/tmp") {
    std::string tmpl = std::string(base) + "/berth-disk-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back(0);
    path = ::mkdtemp(buf.data()) ? buf.data() : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

struct RunResult {
  int rc = -1;
  std::string out;
};

inline RunResult run(const std::string& cmd) {
  RunResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string read_whole(const std::string& path) {
  std::string s;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

inline void write_whole(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

// A number field from `qemu-img info --output=json`, or -1.
inline long long json_number(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::atoll(json.c_str() + at + key.size() + 3);
}
inline std::string json_string(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\": \"");
  if (at == std::string::npos) return "";
  at += key.size() + 5;
  return json.substr(at, json.find('"', at) - at);
}

// A raw file of `size` bytes holding what the disk under test should hold.
struct Mirror {
  std::string path;
  int fd = -1;
  // keep: open an existing mirror as it is (else it starts as size zero bytes).
  Mirror(const std::string& p, uint64_t size, bool keep = false) : path(p) {
    fd = ::open(p.c_str(), O_RDWR | O_CREAT | (keep ? 0 : O_TRUNC), 0644);
    if (fd >= 0 && ::ftruncate(fd, off_t(size)) != 0) CHECK(false);
  }
  ~Mirror() {
    if (fd >= 0) ::close(fd);
  }
  void write(uint64_t off, const uint8_t* p, size_t n) { CHECK_EQ(::pwrite(fd, p, n, off_t(off)), ssize_t(n)); }
  void read(uint64_t off, uint8_t* p, size_t n) { CHECK_EQ(::pread(fd, p, n, off_t(off)), ssize_t(n)); }
};

// Random writes (byte-granular and sector-aligned), zeroing, discards and read-backs,
// applied to the disk and the mirror alike; every read is compared with the mirror.
inline void random_workload(disk::BlockDevice& disk, Mirror& mirror, uint32_t seed, int ops,
                            size_t max_len = 300 * 1024) {
  std::mt19937_64 rng(seed);
  uint64_t cap = disk.capacity();
  std::vector<uint8_t> buf, want;
  for (int i = 0; i < ops; i++) {
    int kind = int(rng() % 10);
    size_t len = size_t(1 + rng() % max_len);
    if (len > cap) len = size_t(cap);
    uint64_t off = rng() % (cap - len + 1);
    if (rng() % 2) {  // sector-aligned
      off &= ~uint64_t(511);
      len = std::max<size_t>(512, len & ~size_t(511));
      if (off + len > cap) off = cap - len;
    }
    if (kind < 5) {
      buf.resize(len);
      uint8_t fill = uint8_t(rng());
      for (size_t k = 0; k < len; k++) buf[k] = uint8_t(fill + k * 7 + (k >> 9));
      if (rng() % 8 == 0) std::fill(buf.begin(), buf.end(), 0);
      disk.write(off, buf);
      mirror.write(off, buf.data(), len);
    } else if (kind < 7) {
      bool unmap = rng() % 2;
      if (kind == 5) disk.write_zeroes(off, len, unmap);
      else disk.discard(off, len);
      buf.assign(len, 0);
      mirror.write(off, buf.data(), len);
    } else if (kind == 7) {
      disk.flush();
    } else {
      buf.resize(len);
      want.resize(len);
      disk.read(off, buf);
      mirror.read(off, want.data(), len);
      if (buf != want) {
        CHECK(buf == want);
        std::fprintf(stderr, "    mismatch: op %d offset %llu length %zu\n", i, (unsigned long long)off, len);
        return;
      }
    }
  }
}

// Compares the whole disk with the mirror.
inline bool same_as_mirror(disk::BlockDevice& disk, Mirror& mirror) {
  std::vector<uint8_t> a(1 << 20), b(1 << 20);
  for (uint64_t off = 0; off < disk.capacity(); off += a.size()) {
    size_t n = size_t(std::min<uint64_t>(a.size(), disk.capacity() - off));
    disk.read(off, std::span<uint8_t>(a.data(), n));
    mirror.read(off, b.data(), n);
    if (std::memcmp(a.data(), b.data(), n) != 0) return false;
  }
  return true;
}

// A file of size bytes with a recognisable pattern (some ranges left as zeroes).
inline void write_pattern_file(const std::string& path, uint64_t size, uint32_t seed) {
  std::string data(size, '\0');
  std::mt19937 rng(seed);
  for (uint64_t off = 0; off < size; off += 65536) {
    if (rng() % 3 == 0) continue;
    for (uint64_t k = off; k < std::min<uint64_t>(size, off + 65536); k++) data[k] = char((k * 131 + seed) >> 3);
  }
  write_whole(path, data);
}

// A loop device over a file, detached when it goes out of scope.
struct Loop {
  std::string dev;
  explicit Loop(const std::string& file) {
    if (::geteuid() != 0) return;
    auto r = run("losetup -f --show '" + file + "'");
    if (r.rc == 0 && r.out.rfind("/dev/loop", 0) == 0) dev = r.out.substr(0, r.out.find('\n'));
  }
  ~Loop() {
    if (!dev.empty()) run("losetup -d " + dev);
  }
  bool ok() const { return !dev.empty(); }
};

inline std::string sha_of(const std::string& path) { return run("sha256sum '" + path + "' | cut -c1-64").out; }

}  // namespace berth::test::rvh
