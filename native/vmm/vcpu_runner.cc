#include "vmm/vcpu_runner.h"

#include <signal.h>
#include <time.h>

#include <cstring>

#include "common/error.h"

namespace berth::vmm {

namespace {

void on_kick(int) {}  // its only job is to interrupt KVM_RUN with EINTR

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the interrupted ioctl must return
    sigaction(vcpu_kick_signal(), &sa, nullptr);
  });
}

}  // namespace

int vcpu_kick_signal() { return SIGRTMIN + 3; }

VcpuRunner::VcpuRunner(hv::Vcpu& vcpu, ExitHandler handler, VcpuExitCounters& counters)
    : vcpu_(vcpu), handler_(std::move(handler)), counters_(counters) {
  install_kick_handler();
}

VcpuRunner::~VcpuRunner() {
  request_stop();
  join();
}

void VcpuRunner::start(bool paused) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != VcpuState::kCreated) return;
  pause_requested_ = paused;
  state_ = paused ? VcpuState::kPaused : VcpuState::kRunning;
  thread_ = std::thread([this] { loop(); });
  native_ = thread_.native_handle();
}

void VcpuRunner::kick() {
  vcpu_.request_immediate_exit(true);
  if (thread_.joinable()) pthread_kill(native_, vcpu_kick_signal());
}

void VcpuRunner::pause() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == VcpuState::kStopped || state_ == VcpuState::kCreated) return;
  pause_requested_ = true;
  kick();
  cv_.wait(lock, [&] { return state_ == VcpuState::kPaused || state_ == VcpuState::kStopped; });
}

void VcpuRunner::resume() {
  std::lock_guard<std::mutex> lock(mu_);
  pause_requested_ = false;
  cv_.notify_all();
}

void VcpuRunner::request_stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_requested_ = true;
  if (state_ == VcpuState::kCreated) {
    state_ = VcpuState::kStopped;
    return;
  }
  kick();
  cv_.notify_all();
}

void VcpuRunner::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

VcpuState VcpuRunner::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

uint64_t VcpuRunner::cpu_time_ns() const {
  if (finished_.load()) return final_cpu_time_ns_.load();
  clockid_t clock = clock_.load();
  if (clock == 0) return 0;
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void VcpuRunner::loop() {
  {
    clockid_t clock;
    if (pthread_getcpuclockid(pthread_self(), &clock) == 0) clock_.store(clock);
    // Only this thread takes the kick signal on its own; make sure it is not blocked here.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, vcpu_kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  }
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (pause_requested_ && !stop_requested_) {
        if (state_ != VcpuState::kPaused) {
          state_ = VcpuState::kPaused;
          cv_.notify_all();
        }
        cv_.wait(lock);
      }
      if (stop_requested_) break;
      state_ = VcpuState::kRunning;
      // Cleared under the lock: a pause or stop requested after this point sets it again.
      vcpu_.request_immediate_exit(false);
    }
    const hv::VcpuExit* exit;
    try {
      exit = &vcpu_.run();
    } catch (const Error& e) {
      hv::VcpuExit failed;
      failed.kind = hv::ExitKind::kFailEntry;
      failed.detail = e.what();
      handler_(vcpu_, failed);
      break;
    }
    switch (exit->kind) {
      case hv::ExitKind::kIo: counters_.io.fetch_add(1, std::memory_order_relaxed); break;
      case hv::ExitKind::kMmio: counters_.mmio.fetch_add(1, std::memory_order_relaxed); break;
      case hv::ExitKind::kHalt: counters_.halt.fetch_add(1, std::memory_order_relaxed); break;
      case hv::ExitKind::kInterrupted: counters_.interrupted.fetch_add(1, std::memory_order_relaxed); continue;
      case hv::ExitKind::kShutdown: counters_.shutdown.fetch_add(1, std::memory_order_relaxed); break;
      default: counters_.other.fetch_add(1, std::memory_order_relaxed); break;
    }
    if (!handler_(vcpu_, *exit)) break;
  }
  final_cpu_time_ns_.store(cpu_time_ns());
  finished_.store(true);
  std::lock_guard<std::mutex> lock(mu_);
  state_ = VcpuState::kStopped;
  cv_.notify_all();
}

}  // namespace berth::vmm
