// AsyncQueue (disk/async_queue.h) on both backends, io_uring and the thread pool, against
// regular files: many requests in flight matched to their tags, reads after writes, flush
// as a barrier, short reads at the end of a file, an error confined to its own request, the
// in-flight bound, destruction with requests in flight, and how the backend is chosen
// (kBackendEnvVar, and io_uring refused by a seccomp filter in a child process).
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "disk/aligned_io.h"
#include "tests/async_test_helpers.h"

using namespace berth::disk;
using namespace berth::test::async;

namespace {

constexpr uint64_t kBlock = 4096;

// Harvests until every request in flight has completed; results by tag, in completion order.
std::vector<AsyncCompletion> harvest_all(AsyncQueue& q, size_t batch = kMaxInFlight) {
  std::vector<AsyncCompletion> all;
  std::vector<AsyncCompletion> buf(batch);
  while (q.in_flight() > 0) {
    size_t n = q.harvest(buf, 1);
    CHECK(n >= 1);
    all.insert(all.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return all;
}

void many_in_flight(AsyncBackend b) {
  constexpr unsigned kDepth = 64;
  Scratch file(kDepth * kBlock);
  auto q = open_queue(kDepth, b);
  CHECK_STR(q->backend(), backend_name(b));
  CHECK_EQ(q->depth(), kDepth);
  // Writes in reverse block order, tagged 1000 + block.
  std::vector<uint8_t> out(kDepth * kBlock);
  std::vector<iovec> wiov(kDepth);
  for (unsigned i = 0; i < kDepth; ++i) {
    unsigned block = kDepth - 1 - i;
    for (uint64_t k = 0; k < kBlock; ++k) out[block * kBlock + k] = pattern(block, k);
    wiov[i] = {out.data() + block * kBlock, kBlock};
    q->submit({AsyncOp::kWrite, file.fd, block * kBlock, &wiov[i], 1, 1000 + block});
  }
  CHECK_EQ(q->in_flight(), kDepth);
  std::set<uint64_t> tags;
  for (const auto& c : harvest_all(*q, 7)) {  // small batches: partial harvests
    CHECK_EQ(c.result, int64_t(kBlock));
    CHECK(tags.insert(c.tag).second);
  }
  CHECK_EQ(tags.size(), size_t(kDepth));
  CHECK_EQ(*tags.begin(), uint64_t(1000));
  CHECK(file.contents() == out);
  // Reads of every block back, each into two buffers (vectored), tagged 5000 + block.
  std::vector<uint8_t> in(kDepth * kBlock, 0);
  std::vector<iovec> riov(2 * kDepth);
  for (unsigned block = 0; block < kDepth; ++block) {
    riov[2 * block] = {in.data() + block * kBlock + kBlock / 2, kBlock / 2};  // second half first in memory
    riov[2 * block + 1] = {in.data() + block * kBlock, kBlock / 2};
    q->submit({AsyncOp::kRead, file.fd, block * kBlock, &riov[2 * block], 2, 5000 + block});
  }
  unsigned seen = 0;
  for (const auto& c : harvest_all(*q)) {
    CHECK(c.tag >= 5000 && c.tag < 5000 + kDepth);
    CHECK_EQ(c.result, int64_t(kBlock));
    uint64_t block = c.tag - 5000;
    const uint8_t* got = in.data() + block * kBlock;
    bool same = std::memcmp(got, out.data() + block * kBlock + kBlock / 2, kBlock / 2) == 0 &&
                std::memcmp(got + kBlock / 2, out.data() + block * kBlock, kBlock / 2) == 0;
    CHECK(same);
    ++seen;
  }
  CHECK_EQ(seen, kDepth);
}
TEST_BOTH_BACKENDS(disk_async_queue_many_in_flight, many_in_flight)

// A flush submitted behind writes completes after all of them, and with success.
void flush_is_a_barrier(AsyncBackend b) {
  constexpr unsigned kWrites = 31;
  Scratch file(kWrites * kBlock);
  auto q = open_queue(kWrites + 2, b);
  std::vector<uint8_t> data(kWrites * kBlock, 0x5a);
  std::vector<iovec> iov(kWrites);
  for (unsigned i = 0; i < kWrites; ++i) {
    iov[i] = {data.data() + i * kBlock, kBlock};
    q->submit({AsyncOp::kWrite, file.fd, i * kBlock, &iov[i], 1, i});
  }
  q->submit({AsyncOp::kFlush, file.fd, 0, nullptr, 0, 777});
  std::vector<uint8_t> back(kBlock);
  iovec riov{back.data(), kBlock};
  q->submit({AsyncOp::kRead, file.fd, 3 * kBlock, &riov, 1, 888});  // after the flush
  auto all = harvest_all(*q);
  CHECK_EQ(all.size(), size_t(kWrites + 2));
  auto at = [&](uint64_t tag) {
    return std::find_if(all.begin(), all.end(), [&](const AsyncCompletion& c) { return c.tag == tag; }) - all.begin();
  };
  CHECK_EQ(at(777), std::ptrdiff_t(kWrites));  // every write completed before it
  CHECK_EQ(at(888), std::ptrdiff_t(kWrites + 1));  // and what came after waited for it
  CHECK_EQ(all[size_t(at(777))].result, int64_t(0));
  CHECK(std::all_of(back.begin(), back.end(), [](uint8_t v) { return v == 0x5a; }));
}
TEST_BOTH_BACKENDS(disk_async_queue_flush_is_a_barrier, flush_is_a_barrier)

void short_read_at_end_of_file(AsyncBackend b) {
  Scratch file(10000);
  auto q = open_queue(4, b);
  std::vector<uint8_t> buf(2 * kBlock);
  iovec iov{buf.data(), buf.size()};
  q->submit({AsyncOp::kRead, file.fd, kBlock, &iov, 1, 1});       // 5904 bytes are left there
  q->submit({AsyncOp::kRead, file.fd, 20000, &iov, 1, 2});        // past the end
  std::map<uint64_t, int64_t> result;
  for (const auto& c : harvest_all(*q)) result[c.tag] = c.result;
  CHECK_EQ(result[1], int64_t(10000 - kBlock));
  CHECK_EQ(result[2], int64_t(0));
}
TEST_BOTH_BACKENDS(disk_async_queue_short_read_at_end_of_file, short_read_at_end_of_file)

// A read on a closed descriptor and a write to a read-only one fail alone.
void error_stays_with_its_request(AsyncBackend b) {
  Scratch file(4 * kBlock);
  int read_only = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
  CHECK(read_only >= 0);
  int closed = ::fcntl(read_only, F_DUPFD_CLOEXEC, 900);  // a high number nothing reuses soon
  CHECK(closed >= 900);
  ::close(closed);
  auto q = open_queue(8, b);
  std::vector<uint8_t> data(kBlock, 0x33), r1(kBlock), r2(kBlock), r3(kBlock);
  iovec w{data.data(), kBlock}, i1{r1.data(), kBlock}, i2{r2.data(), kBlock}, i3{r3.data(), kBlock};
  q->submit({AsyncOp::kWrite, file.fd, 0, &w, 1, 1});
  q->submit({AsyncOp::kRead, closed, 0, &i1, 1, 2});
  q->submit({AsyncOp::kWrite, read_only, kBlock, &w, 1, 3});
  q->submit({AsyncOp::kRead, read_only, 2 * kBlock, &i2, 1, 4});
  q->submit({AsyncOp::kFlush, closed, 0, nullptr, 0, 5});
  q->submit({AsyncOp::kRead, file.fd, 3 * kBlock, &i3, 1, 6});
  std::map<uint64_t, int64_t> result;
  for (const auto& c : harvest_all(*q)) result[c.tag] = c.result;
  CHECK_EQ(result.size(), size_t(6));
  CHECK_EQ(result[1], int64_t(kBlock));
  CHECK_EQ(result[2], int64_t(-EBADF));
  CHECK_EQ(result[3], int64_t(-EBADF));
  CHECK_EQ(result[4], int64_t(kBlock));
  CHECK_EQ(result[5], int64_t(-EBADF));
  CHECK_EQ(result[6], int64_t(kBlock));
  std::vector<uint8_t> all = file.contents();
  CHECK(std::all_of(all.begin(), all.begin() + kBlock, [](uint8_t v) { return v == 0x33; }));
  CHECK(std::all_of(all.begin() + kBlock, all.end(), [](uint8_t v) { return v == 0; }));
  ::close(read_only);
}
TEST_BOTH_BACKENDS(disk_async_queue_error_stays_with_its_request, error_stays_with_its_request)

void bound_is_enforced(AsyncBackend b) {
  Scratch file(8 * kBlock);
  auto q = open_queue(4, b);
  std::vector<uint8_t> buf(8 * kBlock);
  std::vector<iovec> iov(8);
  for (unsigned i = 0; i < 8; ++i) iov[i] = {buf.data() + i * kBlock, kBlock};
  for (unsigned i = 0; i < 4; ++i) q->submit({AsyncOp::kRead, file.fd, i * kBlock, &iov[i], 1, i});
  CHECK_THROWS_CODE(q->submit({AsyncOp::kRead, file.fd, 0, &iov[4], 1, 4}), "DISK_QUEUE_FULL", "4 requests in flight");
  CHECK_EQ(q->in_flight(), 4u);
  AsyncCompletion one[1];
  CHECK_EQ(q->harvest(one, 1), size_t(1));
  q->submit({AsyncOp::kRead, file.fd, 4 * kBlock, &iov[4], 1, 4});  // room again
  CHECK_EQ(harvest_all(*q).size(), size_t(4));
  CHECK_THROWS_CODE(open_async_queue(0, b), "DISK_UNSUPPORTED", "queue depth of 0");
  CHECK_THROWS_CODE(open_async_queue(kMaxInFlight + 1, b), "DISK_UNSUPPORTED", "not supported");
  CHECK_EQ(q->harvest(one, 1), size_t(0));  // nothing in flight: nothing to wait for
}
TEST_BOTH_BACKENDS(disk_async_queue_bound_is_enforced, bound_is_enforced)

// Destroyed with requests queued, running and completed-but-unharvested: the destructor
// waits for them, and nothing leaks or touches freed memory (ASan watches).
void destroyed_with_requests_in_flight(AsyncBackend b) {
  constexpr unsigned kDepth = 64;
  constexpr size_t kSize = 256 * 1024;
  Scratch file(kDepth * kSize);
  std::vector<AlignedBytes> bufs;
  std::vector<iovec> iov(kDepth);
  for (int round = 0; round < 3; ++round) {
    auto q = open_queue(kDepth, b);
    for (unsigned i = 0; i < kDepth; ++i) {
      bufs.push_back(aligned_alloc_bytes(kSize));
      iov[i] = {bufs.back().get(), kSize};
      q->submit({i % 2 ? AsyncOp::kWrite : AsyncOp::kRead, file.fd, i * kSize, &iov[i], 1, i});
      if (i == kDepth / 2) q->submit({AsyncOp::kFlush, file.fd, 0, nullptr, 0, 999}), ++i;
    }
    if (round == 1) q->commit();
    if (round == 2) {
      AsyncCompletion some[4];
      q->harvest(some, 2);
    }
  }  // each queue is gone before the buffers
  CHECK(file.contents().size() == kDepth * kSize);
}
TEST_BOTH_BACKENDS(disk_async_queue_destroyed_with_requests_in_flight, destroyed_with_requests_in_flight)

// Destroyed before any completion is harvested: every write submitted is on the file, on
// both backends (the thread pool used to drop the ones no thread had started).
void destroyed_queue_finishes_its_writes(AsyncBackend b) {
  constexpr unsigned kDepth = 64;
  constexpr size_t kSize = 64 * 1024;
  Scratch file(kDepth * kSize);
  std::vector<AlignedBytes> bufs;
  std::vector<iovec> iov(kDepth);
  {
    auto q = open_queue(kDepth, b);
    for (unsigned i = 0; i < kDepth; ++i) {
      bufs.push_back(aligned_alloc_bytes(kSize));
      std::memset(bufs.back().get(), static_cast<int>(i + 1), kSize);
      iov[i] = {bufs.back().get(), kSize};
      q->submit({AsyncOp::kWrite, file.fd, i * kSize, &iov[i], 1, i});
    }
    q->commit();
  }
  std::vector<uint8_t> data = file.contents();
  CHECK(data.size() == kDepth * kSize);
  for (unsigned i = 0; i < kDepth; ++i) {
    CHECK_EQ(int(data[i * kSize]), int(i + 1));
    CHECK_EQ(int(data[(i + 1) * kSize - 1]), int(i + 1));
  }
}
TEST_BOTH_BACKENDS(disk_async_queue_destroyed_queue_finishes_its_writes, destroyed_queue_finishes_its_writes)

// Restores an environment variable when it goes out of scope.
struct EnvGuard {
  std::string name;
  std::string saved;
  bool had;
  explicit EnvGuard(const char* n) : name(n), had(std::getenv(n) != nullptr) {
    if (had) saved = std::getenv(n);
  }
  ~EnvGuard() {
    if (had) ::setenv(name.c_str(), saved.c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

}  // namespace

namespace {

// An event loop waits on the completion eventfd instead of in harvest: it stays quiet while
// nothing completed, becomes readable when requests finish (the count may coalesce), and the
// queue keeps its own copy of the descriptor, so closing the caller's does not matter.
void completion_fd_wakes_an_event_loop(AsyncBackend b) {
  Scratch file(16 * kBlock);
  auto q = open_queue(16, b);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  CHECK(efd >= 0);
  q->set_completion_fd(efd);
  pollfd p{efd, POLLIN, 0};
  CHECK_EQ(::poll(&p, 1, 0), 0);
  std::vector<uint8_t> data(16 * kBlock, 0x5a);
  std::vector<iovec> iov(16);
  for (unsigned i = 0; i < 16; ++i) {
    iov[i] = {data.data() + i * kBlock, kBlock};
    q->submit({AsyncOp::kWrite, file.fd, i * kBlock, &iov[i], 1, i});
  }
  q->commit();
  // What completed inside commit() (io_uring may answer at once) is harvested now, as an
  // event loop does after committing; its signal may still be counted (drained below).
  std::vector<AsyncCompletion> got(16);
  unsigned seen = static_cast<unsigned>(q->harvest(got, 0));
  while (seen < 16) {
    CHECK_EQ(::poll(&p, 1, 10000), 1);
    uint64_t count = 0;
    CHECK_EQ(::read(efd, &count, sizeof count), ssize_t(sizeof count));
    CHECK(count >= 1);
    seen += static_cast<unsigned>(q->harvest(got, 0));
  }
  CHECK_EQ(q->in_flight(), 0u);
  // The eventfd may still count completions harvested before their signal was read (an
  // event loop then finds nothing to harvest): drained, so the flush below must signal anew.
  uint64_t stale = 0;
  if (::poll(&p, 1, 0) == 1) CHECK_EQ(::read(efd, &stale, sizeof stale), ssize_t(sizeof stale));
  // A flush never completes inside commit() (fdatasync blocks): the eventfd must say so,
  // through the queue's own copy, after the caller closed its descriptor.
  int watch = ::dup(efd);
  CHECK(watch >= 0);
  ::close(efd);
  q->submit({AsyncOp::kFlush, file.fd, 0, nullptr, 0, 99});
  q->commit();
  pollfd w{watch, POLLIN, 0};
  CHECK_EQ(::poll(&w, 1, 10000), 1);
  CHECK_EQ(q->harvest(got, 1), size_t{1});
  CHECK_EQ(got[0].result, int64_t{0});
  ::close(watch);
}

}  // namespace

TEST_BOTH_BACKENDS(disk_async_queue_completion_fd_wakes_an_event_loop, completion_fd_wakes_an_event_loop)

namespace {

// O_DIRECT requests complete outside io_uring's worker threads (the device's completion
// path): their completions must signal the eventfd too, or an event loop never wakes for
// a VM's disk opened like cache=none.
void completion_fd_signals_direct_io(AsyncBackend b) {
  Scratch file(64 * kBlock);
  int direct = ::open(file.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (direct < 0) SKIP("the scratch file system does not take O_DIRECT");
  auto q = open_queue(8, b);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  CHECK(efd >= 0);
  q->set_completion_fd(efd);
  void* mem = nullptr;
  CHECK_EQ(::posix_memalign(&mem, 4096, 8 * kBlock), 0);
  std::memset(mem, 0x3c, 8 * kBlock);
  std::vector<iovec> iov(8);
  for (unsigned i = 0; i < 8; ++i) {
    iov[i] = {static_cast<uint8_t*>(mem) + i * kBlock, kBlock};
    q->submit({AsyncOp::kWrite, direct, i * kBlock, &iov[i], 1, i});
  }
  q->commit();
  std::vector<AsyncCompletion> got(8);
  unsigned seen = static_cast<unsigned>(q->harvest(got, 0));
  pollfd p{efd, POLLIN, 0};
  while (seen < 8) {
    CHECK_EQ(::poll(&p, 1, 10000), 1);  // times out when the completions do not signal
    uint64_t count = 0;
    CHECK_EQ(::read(efd, &count, sizeof count), ssize_t(sizeof count));
    seen += static_cast<unsigned>(q->harvest(got, 0));
  }
  CHECK_EQ(q->in_flight(), 0u);
  ::close(efd);
  ::close(direct);
  std::free(mem);
}

}  // namespace

TEST_BOTH_BACKENDS(disk_async_queue_completion_fd_signals_direct_io, completion_fd_signals_direct_io)

TEST(disk_async_queue_backend_env_var_forces_threads) {
  EnvGuard guard(kBackendEnvVar);
  ::setenv(kBackendEnvVar, "threads", 1);
  auto q = open_async_queue(8);
  CHECK_STR(q->backend(), "threads");
  CHECK(q->fallback_reason().find(kBackendEnvVar) != std::string::npos);
  ::setenv(kBackendEnvVar, "aio", 1);
  CHECK_THROWS_CODE(open_async_queue(8), "DISK_UNSUPPORTED", "not a disk I/O backend");
  ::unsetenv(kBackendEnvVar);
  int uring_works = 1;
  try {
    open_async_queue(8, AsyncBackend::kIoUring);
  } catch (const berth::Error&) {
    uring_works = 0;
  }
  auto chosen = open_async_queue(8);
  CHECK_STR(chosen->backend(), uring_works ? "io_uring" : "threads");
  if (uring_works) CHECK(chosen->fallback_reason().empty());
}

namespace {

// In a child process: a seccomp filter makes io_uring_setup fail with err, then the queue
// opened with kAuto must be the thread pool (and work), and kIoUring must be refused.
int child_with_io_uring_refused(int err, const std::string& path) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    return 10;
  }
  try {
    open_async_queue(4, AsyncBackend::kIoUring);
    return 11;  // should have been refused
  } catch (const berth::Error& e) {
    if (e.code() != "DISK_UNSUPPORTED") return 12;
  }
  auto q = open_async_queue(4);
  if (std::string(q->backend()) != "threads") return 13;
  if (q->fallback_reason().find(std::strerror(err)) == std::string::npos) return 14;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  char data[512] = {7};
  iovec iov{data, sizeof data};
  q->submit({AsyncOp::kWrite, fd, 0, &iov, 1, 42});
  AsyncCompletion c;
  if (q->harvest(std::span<AsyncCompletion>(&c, 1), 1) != 1 || c.tag != 42 || c.result != 512) return 15;
  ::close(fd);
  return 0;
}

void falls_back_when_refused(int err) {
  Scratch file(4096);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  CHECK(pid >= 0);
  if (pid == 0) ::_exit(child_with_io_uring_refused(err, file.path));
  int status = 0;
  CHECK_EQ(::waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
}

}  // namespace

TEST(disk_async_queue_falls_back_when_io_uring_is_refused_eperm) { falls_back_when_refused(EPERM); }
TEST(disk_async_queue_falls_back_when_io_uring_is_missing_enosys) { falls_back_when_refused(ENOSYS); }
