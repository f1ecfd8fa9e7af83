// berth-disk-bench: times I/O through Berth's disk drivers, with options that mirror
// `qemu-img bench` so the two can run the same workload on the same file:
//
//   berth-disk-bench [-c count] [-d depth] [-f fmt] [-i sync|io_uring|threads]
//                    [-t none|writeback] [-o offset] [-s size] [-S step] [-w]
//                    [--pattern=byte] [--flush-interval=n] [--random [--seed=n]]
//                    [--drop-cache] [-q] filename
//
// -i picks the path, as it picks qemu-img's AIO backend: sync (the default) is the
// synchronous BlockDevice interface, exactly what virtio-blk uses today, at depth 1 only;
// io_uring and threads are the asynchronous path (BlockDevice::open_async, disk/async_disk.h)
// on that backend, keeping -d requests in flight (raw and qcow2 images, host devices).
// -t none (or --direct) asks the driver for O_DIRECT (OpenOptions::direct), as -t none does
// for qemu-img; -n is accepted and ignored.
// Offsets follow qemu-img bench (qemu 7.2): the first request is at -o, each next one at
// (previous + step) % capacity, where the step defaults to the request size. --random
// instead draws request-size-aligned offsets from a seeded PRNG (qemu-img bench has no
// random mode). --drop-cache evicts the image from the host page cache before the timed
// run, so a buffered open starts as cold as an O_DIRECT one.
//
// Prints one JSON object on stdout: ops, bytes, seconds (the requests only, until the last
// has completed), flush_seconds (the closing flush, writes only, timed apart as qemu-img
// bench leaves its own out), the path and depth, and whether O_DIRECT was asked for and
// actually used by the driver on the image file. Exits 1 with a message on stderr if
// anything fails.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"
#include "disk/async_disk.h"
#include "disk/block_device.h"
#include "tools/disk_bench_async.h"

namespace {

using berth::disk::BlockDevice;

struct Options {
  uint64_t count = 75000;  // qemu-img bench's default
  unsigned depth = 1;
  std::string path_kind = "sync";  // -i: sync, io_uring or threads
  uint64_t size = 4096;
  uint64_t step = 0;  // 0: the request size
  uint64_t offset = 0;
  bool write = false;
  bool direct = false;
  bool random = false;
  uint64_t seed = 1;
  uint64_t flush_interval = 0;
  int pattern = 0xa5;  // qemu-img bench's default
  bool drop_cache = false;
  std::string format;  // empty: accept whatever the image is
  std::string path;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "berth-disk-bench: %s\n"
               "usage: berth-disk-bench [-c count] [-d depth] [-f fmt] [-i sync|io_uring|threads]\n"
               "                        [-t none|writeback] [-o offset] [-s size] [-S step] [-w]\n"
               "                        [--pattern=byte] [--flush-interval=n] [--random [--seed=n]]\n"
               "                        [--drop-cache] [-q] filename\n",
               problem.c_str());
  std::exit(2);
}

// "4096", "4k", "1M", "2G" (binary units, like qemu-img).
uint64_t parse_size(const std::string& name, const std::string& text) {
  if (text.empty()) usage(name + " needs a value");
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 0);
  if (errno != 0 || end == text.c_str() || text[0] == '-') usage("bad value for " + name + ": " + text);
  std::string suffix(end);
  int shift = 0;
  if (suffix == "" || suffix == "b" || suffix == "B") shift = 0;
  else if (suffix == "k" || suffix == "K") shift = 10;
  else if (suffix == "m" || suffix == "M") shift = 20;
  else if (suffix == "g" || suffix == "G") shift = 30;
  else if (suffix == "t" || suffix == "T") shift = 40;
  else usage("bad suffix for " + name + ": " + text);
  if (shift && v > (ULLONG_MAX >> shift)) usage(name + " is too large: " + text);
  return static_cast<uint64_t>(v) << shift;
}

Options parse(int argc, char** argv) {
  Options o;
  bool step_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const std::string& name) -> std::string {
      if (i + 1 >= argc) usage(name + " needs a value");
      return argv[++i];
    };
    auto long_value = [&](const std::string& name, std::string* out) {
      if (a == name) {
        *out = value(name);
        return true;
      }
      if (a.rfind(name + "=", 0) == 0) {
        *out = a.substr(name.size() + 1);
        return true;
      }
      return false;
    };
    std::string v;
    if (a == "-c") o.count = parse_size("-c", value("-c"));
    else if (a == "-s") o.size = parse_size("-s", value("-s"));
    else if (a == "-S") o.step = parse_size("-S", value("-S")), step_set = true;
    else if (a == "-o") o.offset = parse_size("-o", value("-o"));
    else if (a == "-w") o.write = true;
    else if (a == "--direct") o.direct = true;
    else if (a == "-n") continue;
    else if (a == "-i") {
      o.path_kind = value("-i");
      if (o.path_kind != "sync" && o.path_kind != "io_uring" && o.path_kind != "threads") {
        usage("-i takes sync, io_uring or threads, not " + o.path_kind);
      }
    }
    else if (a == "-q") continue;
    else if (a == "-f") o.format = value("-f");
    else if (a == "-d") {
      uint64_t d = parse_size("-d", value("-d"));
      if (d == 0 || d > berth::disk::kMaxInFlight) usage("-d must be between 1 and " + std::to_string(berth::disk::kMaxInFlight));
      o.depth = static_cast<unsigned>(d);
    } else if (a == "-t") {
      std::string cache = value("-t");
      if (cache == "none" || cache == "directsync") o.direct = true;
      else if (cache == "writeback" || cache == "writethrough") o.direct = false;
      else usage("unsupported cache mode " + cache + " (none, directsync, writeback, writethrough)");
    } else if (a == "--random") o.random = true;
    else if (a == "--drop-cache") o.drop_cache = true;
    else if (long_value("--seed", &v)) o.seed = parse_size("--seed", v);
    else if (long_value("--flush-interval", &v)) o.flush_interval = parse_size("--flush-interval", v);
    else if (long_value("--pattern", &v)) {
      uint64_t p = parse_size("--pattern", v);
      if (p > 0xff) usage("--pattern is one byte (0-255)");
      o.pattern = static_cast<int>(p);
    } else if (!a.empty() && a[0] == '-') usage("unknown option " + a);
    else if (o.path.empty()) o.path = a;
    else usage("more than one filename");
  }
  if (o.path.empty()) usage("no filename");
  if (o.size == 0 || o.size > (1u << 30)) usage("-s must be between 1 byte and 1 GiB");
  if (o.count == 0) usage("-c must be at least 1");
  if (!step_set) o.step = o.size;
  if (o.random && step_set) usage("--random and -S exclude each other");
  if (o.depth > 1 && o.path_kind == "sync") usage("the synchronous path has queue depth 1: use -i io_uring or -i threads");
  if (o.flush_interval && !o.write) usage("--flush-interval applies to writes (-w) only, as in qemu-img bench");
  return o;
}

double now() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// splitmix64: small, seedable, and the same sequence on every host.
struct Prng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

// Whether this process holds the image file open with O_DIRECT (after open_disk: the
// driver may have fallen back to buffered I/O). -1 when the host cannot tell.
int image_opened_direct(const std::string& path) {
#if defined(__linux__) && defined(O_DIRECT)
  std::error_code ec;
  auto target = std::filesystem::canonical(path, ec);
  if (ec) return -1;
  int found = -1;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    std::error_code lec;
    auto link = std::filesystem::read_symlink(entry.path(), lec);
    if (lec || link != target) continue;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    std::string key;
    while (info >> key) {
      if (key == "flags:") {
        std::string octal;
        info >> octal;
        unsigned long flags = std::strtoul(octal.c_str(), nullptr, 8);
        if (flags & O_DIRECT) return 1;
        found = 0;
        break;
      }
    }
  }
  return found;
#else
  (void)path;
  return -1;
#endif
}

void drop_page_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw berth::SystemError("BENCH_IO", "cannot open " + path + " to evict it from the page cache", errno);
  ::fdatasync(fd);  // dirty pages are not evicted
#ifdef POSIX_FADV_DONTNEED
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
  ::close(fd);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else out += c;
  }
  return out + "\"";
}

int run(const Options& o) {
  berth::disk::OpenOptions open_options;
  open_options.read_only = !o.write;
  open_options.direct = o.direct;
  if (o.drop_cache) drop_page_cache(o.path);
  std::unique_ptr<BlockDevice> disk = berth::disk::open_disk(o.path, open_options);
  const berth::disk::ImageInfo info = disk->info();
  const std::string format = berth::disk::format_name(info.format);
  if (!o.format.empty() && o.format != format) {
    throw berth::Error("BENCH_FORMAT", o.path + " is " + format + ", not " + o.format);
  }
  const uint64_t capacity = disk->capacity();
  if (o.size > capacity) throw berth::Error("BENCH_RANGE", "the request size is larger than the disk");
  if (o.offset > capacity - o.size) throw berth::Error("BENCH_RANGE", "-o is past the end of the disk");
  const int direct = image_opened_direct(o.path);

  // 4 KiB-aligned like qemu's buffers, so direct I/O needs no bounce buffer.
  void* mem = nullptr;
  if (::posix_memalign(&mem, 4096, o.size) != 0) throw berth::Error("BENCH_MEMORY", "out of memory");
  std::unique_ptr<uint8_t, decltype(&std::free)> buffer(static_cast<uint8_t*>(mem), &std::free);
  std::memset(buffer.get(), o.write ? o.pattern : 0, o.size);
  std::span<uint8_t> buf(buffer.get(), o.size);

  Prng prng{o.seed};
  const uint64_t slots = (capacity - o.size) / o.size + 1;  // request-size-aligned offsets that fit
  uint64_t offset = o.offset;
  uint64_t flushes = 0;
  auto next_offset = [&]() -> uint64_t {
    if (o.random) return (prng.next() % slots) * o.size;
    uint64_t at = offset;
    // qemu-img bench (7.2): offset += step; offset %= image_size. A wrapped offset whose
    // request would run past the end starts over at 0 instead of failing.
    offset = (offset + o.step) % capacity;
    if (offset > capacity - o.size) offset = 0;
    return at;
  };

  // The asynchronous path, set up (like qemu-img's image) before the clock starts.
  std::unique_ptr<berth::disk::AsyncDisk> aio;
  if (o.path_kind != "sync") {
    aio = disk->open_async(o.depth, o.path_kind == "io_uring" ? berth::disk::AsyncBackend::kIoUring
                                                              : berth::disk::AsyncBackend::kThreads);
    if (!aio) throw berth::Error("BENCH_FORMAT", format + " images have no asynchronous path yet: use -i sync");
  }
  unsigned max_in_flight = 1;

  const double start = now();
  double async_seconds = 0;
  if (aio) {
    berth::tools::AsyncBenchSpec spec{o.count, o.size, o.write, o.pattern, o.flush_interval};
    berth::tools::AsyncBenchResult r = berth::tools::run_async_bench(*aio, spec, next_offset);
    flushes = r.flushes;
    max_in_flight = r.max_in_flight;
    async_seconds = r.seconds;  // the requests alone, without setting up the buffers
  } else {
    for (uint64_t i = 0; i < o.count; ++i) {
      uint64_t at = next_offset();
      if (o.write) {
        disk->write(at, buf);
        if (o.flush_interval && (i + 1) % o.flush_interval == 0) disk->flush(), ++flushes;
      } else {
        disk->read(at, buf);
      }
    }
  }
  const double ops_end = now();
  const std::string backend = aio ? aio->backend() : "sync";
  const bool aio_used = aio != nullptr;
  aio.reset();
  if (o.write) disk->flush();
  const double end = now();
  disk.reset();

  const double seconds = aio_used ? async_seconds : ops_end - start;
  const uint64_t bytes = o.count * o.size;
  std::printf(
      "{\"tool\":\"berth-disk-bench\",\"file\":%s,\"format\":%s,\"capacity\":%llu,\"op\":\"%s\","
      "\"offsets\":\"%s\",\"request_size\":%llu,\"step\":%llu,\"seed\":%llu,\"depth\":%u,"
      "\"max_in_flight\":%u,\"backend\":\"%s\","
      "\"direct_requested\":%s,\"direct\":%s,\"flush_interval\":%llu,\"flushes\":%llu,"
      "\"ops\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"flush_seconds\":%.6f,\"iops\":%.1f,\"mib_per_s\":%.2f}\n",
      json_string(o.path).c_str(), json_string(format).c_str(), static_cast<unsigned long long>(capacity),
      o.write ? "write" : "read", o.random ? "random" : "step", static_cast<unsigned long long>(o.size),
      static_cast<unsigned long long>(o.random ? 0 : o.step), static_cast<unsigned long long>(o.random ? o.seed : 0),
      o.depth, max_in_flight, backend.c_str(), o.direct ? "true" : "false", direct < 0 ? "null" : (direct ? "true" : "false"),
      static_cast<unsigned long long>(o.flush_interval), static_cast<unsigned long long>(flushes),
      static_cast<unsigned long long>(o.count), static_cast<unsigned long long>(bytes), seconds,
      o.write ? end - ops_end : 0.0, seconds > 0 ? static_cast<double>(o.count) / seconds : 0.0,
      seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const berth::Error& e) {
    std::fprintf(stderr, "berth-disk-bench: %s (%s)\n", e.what(), e.code().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "berth-disk-bench: %s\n", e.what());
  }
  return 1;
}
