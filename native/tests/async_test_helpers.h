// Helpers for the asynchronous disk I/O tests: one test body per backend, a backend that
// the host refuses counted as skipped (never as passed), and scratch files with known bytes.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "disk/async_queue.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"

namespace berth::test::async {

using disk::AsyncBackend;

inline const char* backend_name(AsyncBackend b) { return b == AsyncBackend::kIoUring ? "io_uring" : "threads"; }

// The queue of the backend asked for; SKIP when this host refuses io_uring.
inline std::unique_ptr<disk::AsyncQueue> open_queue(unsigned depth, AsyncBackend b) {
  try {
    return disk::open_async_queue(depth, b);
  } catch (const Error& e) {
    if (b == AsyncBackend::kIoUring && e.code() == "DISK_UNSUPPORTED") SKIP(std::string("io_uring: ") + e.what());
    throw;
  }
}

// A byte of a pattern that differs by block and position.
inline uint8_t pattern(uint64_t block, uint64_t i) { return static_cast<uint8_t>((block * 131 + i * 7 + 1) & 0xff); }

// An open scratch file of `size` zero bytes in its own temporary folder.
struct Scratch {
  rvh::TempDir dir;
  std::string path;
  int fd = -1;
  explicit Scratch(uint64_t size, const char* name = "scratch.img") : path(dir.file(name)) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  }
  ~Scratch() {
    if (fd >= 0) ::close(fd);
  }
  std::vector<uint8_t> contents() const {
    std::vector<uint8_t> all(static_cast<size_t>(::lseek(fd, 0, SEEK_END)));
    CHECK_EQ(::pread(fd, all.data(), all.size(), 0), static_cast<ssize_t>(all.size()));
    return all;
  }
};

}  // namespace berth::test::async

// name_io_uring and name_threads, each running body(backend).
#define TEST_BOTH_BACKENDS(name, body)                                      \
  TEST(name##_io_uring) { body(::berth::disk::AsyncBackend::kIoUring); } \
  TEST(name##_threads) { body(::berth::disk::AsyncBackend::kThreads); }
