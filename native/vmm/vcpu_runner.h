// One vCPU thread as a small state machine: Created -> Running <-> Paused -> Stopped.
// Pausing kicks the thread out of the hypervisor (immediate exit + a signal) so a vCPU in
// a long guest loop or halted in the kernel stops at once, not at its next natural exit.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "hv/hv.h"

namespace berth::vmm {

enum class VcpuState { kCreated, kRunning, kPaused, kStopped };

// Counts of exits by kind, written by the vCPU thread, read by anyone.
struct VcpuExitCounters {
  std::atomic<uint64_t> io{0}, mmio{0}, halt{0}, interrupted{0}, shutdown{0}, other{0};
};

class VcpuRunner {
 public:
  // Handles an exit on the vCPU thread; returns false to stop this vCPU.
  using ExitHandler = std::function<bool(hv::Vcpu&, const hv::VcpuExit&)>;

  // counters belong to the caller so they survive the runner (a machine reset makes new runners).
  VcpuRunner(hv::Vcpu& vcpu, ExitHandler handler, VcpuExitCounters& counters);
  ~VcpuRunner();  // stops and joins
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  void start(bool paused);
  // Asks the thread to pause and waits until it has left the hypervisor.
  void pause();
  void resume();
  // Asks the thread to stop (does not wait).
  void request_stop();
  void join();

  VcpuState state() const;
  // CPU time this vCPU's thread has used, in nanoseconds.
  uint64_t cpu_time_ns() const;

 private:
  void kick();
  void loop();

  hv::Vcpu& vcpu_;
  ExitHandler handler_;
  std::thread thread_;
  pthread_t native_ = {};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  VcpuState state_ = VcpuState::kCreated;
  bool pause_requested_ = false;
  bool stop_requested_ = false;
  VcpuExitCounters& counters_;
  std::atomic<clockid_t> clock_{0};
  // The thread's CPU time, saved as it ends (its clock is gone once it has exited).
  std::atomic<uint64_t> final_cpu_time_ns_{0};
  std::atomic<bool> finished_{false};
};

// The signal used to kick vCPU threads out of the hypervisor.
int vcpu_kick_signal();

}  // namespace berth::vmm
