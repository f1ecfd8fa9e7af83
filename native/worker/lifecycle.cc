#include "worker/lifecycle.h"

#include <initializer_list>

namespace berth::worker {

const char* state_name(VmState s) {
  switch (s) {
    case VmState::kStarting: return "Starting";
    case VmState::kRunning: return "Running";
    case VmState::kPaused: return "Paused";
    case VmState::kStopping: return "Stopping";
    case VmState::kOff: return "Off";
  }
  return "Off";
}

namespace {

bool allowed(VmState s, Action a) {
  auto in = [s](std::initializer_list<VmState> states) {
    for (VmState x : states) {
      if (x == s) return true;
    }
    return false;
  };
  using enum VmState;
  switch (a) {
    case Action::kPause: return in({kRunning});
    case Action::kResume: return in({kPaused});
    case Action::kTurnOff: return in({kStarting, kRunning, kPaused, kStopping});
    case Action::kShutDown: return in({kRunning});
    case Action::kReset: return in({kRunning});
    case Action::kConsole: return in({kStarting, kRunning, kPaused, kStopping});
    case Action::kSave: return in({kRunning, kPaused});
  }
  return false;
}

const char* verb(Action a) {
  switch (a) {
    case Action::kPause: return "pause";
    case Action::kResume: return "resume";
    case Action::kTurnOff: return "turn off";
    case Action::kShutDown: return "shut down";
    case Action::kReset: return "reset";
    case Action::kConsole: return "attach to the console of";
    case Action::kSave: return "save";
  }
  return "";
}

const char* hint(VmState s, Action a) {
  using enum VmState;
  switch (a) {
    case Action::kPause:
      if (s == kOff) return "start it first";
      if (s == kPaused) return "it is already paused";
      break;
    case Action::kResume:
      if (s == kRunning) return "it is not paused";
      if (s == kOff) return "start it first";
      break;
    case Action::kReset:
      if (s == kPaused) return "resume it first";
      if (s == kOff) return "start it instead";
      break;
    case Action::kConsole:
      if (s == kOff) return "start it first";
      break;
    case Action::kTurnOff:
      if (s == kOff) return "it is already off";
      break;
    case Action::kShutDown:
    case Action::kSave:
      break;
  }
  return nullptr;
}

}  // namespace

std::optional<std::string> refusal(const std::string& vm_name, VmState state, Action action) {
  if (allowed(state, action)) return std::nullopt;
  std::string message = std::string("cannot ") + verb(action) + " '" + vm_name + "': it is " + state_name(state);
  if (const char* h = hint(state, action)) message += std::string("; ") + h;
  return message;
}

}  // namespace berth::worker
