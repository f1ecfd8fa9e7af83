// The files a worker keeps in the VM's run/ folder: its pid file, the exit record and the
// start error, each written whole (temp file, fsync, rename, fsync of the folder) so a
// reader never sees half of one. Their paths come from the services' command line (the
// names are defined once, RUN_FILES in app/api/layout.ts).
#pragma once

#include <string>

namespace berth::worker {

struct RunFiles {
  std::string spec;         // the machine to run (WorkerSpec), read at start
  std::string socket;       // the control socket
  std::string display;      // the graphical console's VNC socket (VMs with a display)
  std::string pid;          // WorkerPidFile, removed when the worker ends cleanly
  std::string last_exit;    // LastExit, written when the VM ends
  std::string start_error;  // {code, message}, written when the VM cannot start
};

// One line of the worker's log (its stdout, run/worker.log): time, pid, message.
void log(const std::string& message);
// Throws berth::Error (code IO) naming the file when it cannot be written.
void write_file_atomic(const std::string& path, const std::string& contents);
// The current time as ISO 8601 UTC with milliseconds ("2026-12-05T19:00:50.123Z").
std::string iso_now();
// This process's start time in clock ticks since boot (/proc/self/stat field 22), which
// with the pid identifies the process; empty where there is no /proc.
std::string process_start_ticks();

}  // namespace berth::worker
