// Machine events on their way from vCPU, supervisor and creator threads to the worker's
// poll loop: a queue plus an eventfd the loop polls. Console bytes are gathered into one
// buffer, so a chatty guest costs one wake-up per burst, not per byte.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/unique_fd.h"
#include "machine/machine.h"

namespace berth::worker {

struct Created {
  std::unique_ptr<machine::Machine> machine;
};
struct CreateFailed {
  std::string code, message;
};
struct StateChanged {
  machine::MachineState state;
};
struct Exited {
  machine::ExitInfo info;
};
using Event = std::variant<Created, CreateFailed, StateChanged, Exited>;

class EventQueue final : public machine::MachineEvents {
 public:
  EventQueue();
  int fd() const { return fd_.get(); }

  void post(Event e);
  // Drains the eventfd and returns what was posted, console bytes apart.
  std::deque<Event> take(std::vector<uint8_t>& console);

  void on_state(machine::MachineState s) override { post(StateChanged{s}); }
  void on_console_output(std::span<const uint8_t> bytes) override;
  void on_reset(const std::string& reason) override;
  void on_exit(const machine::ExitInfo& info) override { post(Exited{info}); }

 private:
  void wake();
  std::mutex mu_;
  std::deque<Event> events_;
  std::vector<uint8_t> console_;
  UniqueFd fd_;
};

}  // namespace berth::worker
