// The worker's half of the lifecycle state machine of app/api/lifecycle.ts: which of the
// states a worker can be in allow each request, and the same refusal messages. The
// contract spec (test/specs/kvm/native-worker-contract) checks both agree.
#pragma once

#include <optional>
#include <string>

namespace berth::worker {

enum class VmState { kStarting, kRunning, kPaused, kStopping, kOff };
const char* state_name(VmState);

enum class Action { kPause, kResume, kTurnOff, kShutDown, kReset, kConsole, kSave };

// The INVALID_STATE message ("cannot pause 'web1': it is Paused; it is already paused"),
// or nullopt when the state allows the action.
std::optional<std::string> refusal(const std::string& vm_name, VmState state, Action action);

}  // namespace berth::worker
