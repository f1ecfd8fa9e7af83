// The per-VM worker (Hyper-V's VMWP): started detached by the services as
// `berth-vmm worker ...`, it builds the machine the spec describes, serves the control
// protocol on its socket, keeps the console scrollback, and outlives the manager that
// started it. When the VM ends it writes the exit record, removes its pid file and
// socket, and exits 0; when the VM cannot start it writes the start error and exits 1.
#pragma once

#include "worker/run_files.h"

namespace berth::worker {

// Runs the worker to the end; returns the process exit status.
int run_worker(const RunFiles& files);

}  // namespace berth::worker
