#include "disk/async_queue.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "disk/thread_queue.h"
#include "disk/uring_queue.h"

namespace berth::disk {

AsyncQueue::AsyncQueue(unsigned depth) : depth_(depth) {}

Error queue_full_error(unsigned depth) {
  return Error("DISK_QUEUE_FULL", "the disk queue already has " + std::to_string(depth) +
                                      " requests in flight; harvest a completion before submitting more");
}

void AsyncQueue::submit(const AsyncRequest& request) {
  if (in_flight_ >= depth_) throw queue_full_error(depth_);
  enqueue(request);
  ++in_flight_;
}

size_t AsyncQueue::harvest(std::span<AsyncCompletion> out, unsigned wait_for) {
  if (out.empty() || in_flight_ == 0) return 0;
  unsigned need = std::min<unsigned>({wait_for, in_flight_, static_cast<unsigned>(std::min<size_t>(out.size(), depth_))});
  size_t n = collect(out.first(std::min<size_t>(out.size(), in_flight_)), need);
  in_flight_ -= static_cast<unsigned>(n);
  return n;
}

namespace {

bool forced_threads() {
  const char* v = std::getenv(kBackendEnvVar);
  if (!v || !*v || std::strcmp(v, "io_uring") == 0) return false;
  if (std::strcmp(v, "threads") == 0) return true;
  throw Error("DISK_UNSUPPORTED",
              std::string(kBackendEnvVar) + "=" + v + " is not a disk I/O backend; use 'threads' or 'io_uring'");
}

// io_uring_queue_init's answers that mean "not here": no such system call (an old kernel, or
// a seccomp filter answering ENOSYS), refused by policy (kernel.io_uring_disabled, seccomp,
// a container runtime) or by the locked-memory limit of kernels before 5.12.
bool means_unavailable(int err) { return err == ENOSYS || err == EPERM || err == ENOMEM; }

}  // namespace

std::unique_ptr<AsyncQueue> open_async_queue(unsigned depth, AsyncBackend backend) {
  if (depth == 0 || depth > kMaxInFlight) {
    throw Error("DISK_UNSUPPORTED", "a disk queue depth of " + std::to_string(depth) + " is not supported (1 to " +
                                        std::to_string(kMaxInFlight) + ")");
  }
  std::string reason;
  if (backend == AsyncBackend::kThreads) {
    reason = "asked for";
  } else if (backend == AsyncBackend::kAuto && forced_threads()) {
    reason = std::string("forced by ") + kBackendEnvVar + "=threads";
  } else {
    int err = 0;
    if (auto ring = UringQueue::open(depth, &err)) return ring;
    if (backend == AsyncBackend::kIoUring || !means_unavailable(err)) {
      throw SystemError(backend == AsyncBackend::kIoUring ? "DISK_UNSUPPORTED" : "DISK_IO",
                        "cannot set up an io_uring of " + std::to_string(depth) + " entries", err);
    }
    reason = std::string("io_uring refused: ") + std::strerror(err);
  }
  auto pool = std::make_unique<ThreadQueue>(depth);
  pool->set_fallback_reason(reason);
  return pool;
}

}  // namespace berth::disk
