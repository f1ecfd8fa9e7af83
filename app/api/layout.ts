// File names inside a VM's folder, shared by the services and the worker:
// <root>/vms/<vm-id>/{config.json, disks/, checkpoints/, state/, firmware/, run/}.
import { z } from 'zod';

export const VM_FILES = {
  config: 'config.json',
  disks: 'disks',
  checkpoints: 'checkpoints',
  state: 'state',
  // Generation 2: the VM's UEFI variable store (FIRMWARE_FILES).
  firmware: 'firmware',
  run: 'run',
} as const;

// In firmware/ (mode 0700): the VM's own UEFI variable store (mode 0600), copied from the
// host's template when the VM becomes Generation 2 and written by the firmware as it runs
// (boot entries, Secure Boot keys). A checkpoint keeps a copy of it in its folder
// (checkpoints/<id>/, the same name); applying the checkpoint puts that copy back.
export const FIRMWARE_FILES = {
  uefiVars: 'uefi-vars.fd',
} as const;

// Inside run/ (mode 0700).
export const RUN_FILES = {
  // The per-VM advisory lock (O_EXCL lock file with the holder's pid).
  lock: 'lock',
  // Written by a manager while it spawns the worker.
  starting: 'starting.json',
  // The machine the worker runs (WorkerSpec), written by the manager that starts it.
  spec: 'machine.json',
  // Written by the worker as it starts; removed when it ends cleanly.
  pid: 'worker.pid',
  // The control socket (mode 0600).
  socket: 'control.sock',
  // The graphical console's VNC socket (mode 0600), served by the worker of a VM with a display.
  display: 'display.sock',
  // The worker's stdout and stderr.
  log: 'worker.log',
  // "<pid> <status>": written by the shell that waits for the worker (status > 128 = signal).
  status: 'worker.status',
  // How the last run ended (LastExit), written by the worker.
  lastExit: 'last-exit.json',
  // Why the worker could not create or start the VM ({code, message}).
  startError: 'start-error.json',
  // A worker that died, as found by the next look (WorkerFailure).
  failed: 'failed.json',
} as const;

// Saved memory and device state, written by the worker (op save / checkpoint), read by a
// worker that starts with WorkerSpec.restoreFrom.
export const STATE_FILES = {
  // In state/: the state of a Saved VM. Its presence (with no worker) is what makes the VM
  // Saved; starting the VM resumes from it and deletes it once the VM runs.
  saved: 'saved.bstate',
  // In state/: what the services learned when saving (SavedStateInfo); optional.
  savedInfo: 'saved.json',
  // In checkpoints/<checkpoint id>/: the memory and device state of a standard checkpoint
  // taken while the VM ran. It belongs to the checkpoint: applying it never deletes it.
  checkpoint: 'memory.bstate',
} as const;

// state/saved.json: timings of the save that wrote state/saved.bstate.
export const SavedStateInfo = z.strictObject({
  savedAt: z.iso.datetime(),
  memoryBytes: z.int().min(0),
  pauseMs: z.number().min(0),
  totalMs: z.number().min(0),
});
export type SavedStateInfo = z.infer<typeof SavedStateInfo>;

export const WorkerPidFile = z.strictObject({
  pid: z.int(),
  // /proc start time on Linux, to tell a reused pid from the worker; null elsewhere.
  procStart: z.string().nullable(),
  startedAt: z.iso.datetime(),
  protocol: z.int(),
});
export type WorkerPidFile = z.infer<typeof WorkerPidFile>;

export const WorkerFailure = z.strictObject({ pid: z.int(), reason: z.string(), at: z.iso.datetime() });
export type WorkerFailure = z.infer<typeof WorkerFailure>;
