// The machine a worker runs, as the services describe it in run/machine.json (schema:
// WorkerSpec in app/api/worker-spec.ts): the VM's identity plus a fully resolved machine
// (paths absolute or relative to the VM's folder, passthrough disks already resolved to
// their /dev path). The file is checked field by field; any problem is INVALID_CONFIG
// naming the field.
#pragma once

#include <string>
#include <string_view>

#include "machine/machine.h"

namespace berth::worker {

constexpr int kWorkerSpecVersion = 2;

struct WorkerSpec {
  std::string vm_id;
  std::string name;
  bool console = true;  // COM1 output goes to console clients (false: dropped)
  machine::MachineConfig machine;
};

WorkerSpec parse_machine_spec(std::string_view json_text);

}  // namespace berth::worker
