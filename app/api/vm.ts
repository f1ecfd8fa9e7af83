// What the services report about a VM: lifecycle state, summaries, stats, exits.
import { z } from 'zod';

import { AutomaticStartAction, AutomaticStartDelay, AutomaticStopAction, BootOrder, VmConfig } from './config';

// Off -> Starting -> Running <-> Paused; Running/Paused -> Stopping -> Off; a worker that
// dies leaves Failed. Running/Paused -> Saved (the worker wrote the VM's state to
// state/saved.bstate and ended); Saved -> Starting (start resumes from it) or Off (its saved
// state deleted).
export const VM_STATES = ['Off', 'Starting', 'Running', 'Paused', 'Stopping', 'Saved', 'Failed'] as const;
export const VmState = z.enum(VM_STATES);
export type VmState = z.infer<typeof VmState>;

// How the last run ended, written by the worker to run/last-exit.json.
export const LastExit = z.strictObject({
  // guest-exit: the test-exit port; power-off: the guest turned itself off (ACPI \_S5);
  // reset: a guest reset with restart disabled; stopped: turned off from the host;
  // error: the VMM stopped the VM on an error (detail says which); saved: the worker wrote
  // the VM's state (op save) and ended.
  reason: z.enum(['guest-exit', 'reset', 'power-off', 'stopped', 'error', 'saved']),
  code: z.int(),
  detail: z.string(),
  at: z.iso.datetime(),
  pid: z.int(),
});
export type LastExit = z.infer<typeof LastExit>;

// Why the vCPU left guest mode, counted since start: port I/O, MMIO, HLT, a host request
// (pause, signal), the guest's shutdown, anything else.
export const VcpuExits = z.strictObject({
  io: z.int(),
  mmio: z.int(),
  halt: z.int(),
  interrupted: z.int(),
  shutdown: z.int(),
  other: z.int(),
});
export const VcpuStats = z.strictObject({ id: z.int(), cpuTimeMs: z.number(), exits: VcpuExits });

// A virtual hard disk of a running VM: the asynchronous I/O path its requests take
// ('io_uring', 'threads', or 'serial' for a driver without a parallel path), its
// request queues (one per vCPU), the requests completed and the most on the disk at once.
export const VmDiskStats = z.strictObject({
  path: z.string(),
  ioBackend: z.string(),
  queues: z.int(),
  completedRequests: z.int(),
  peakInFlight: z.int(),
});

export const VmStats = z.strictObject({
  // Share of the assigned vCPUs' capacity used since the previous sample (0..100).
  cpuUsagePercent: z.number().min(0),
  assignedMemoryMiB: z.number(),
  // The worker process's resident memory (guest pages it touched + the VMM).
  residentBytes: z.number(),
  uptimeMs: z.number(),
  vcpuCount: z.int(),
  vcpus: z.array(VcpuStats),
  disks: z.array(VmDiskStats),
  resets: z.int(),
});
export type VmStats = z.infer<typeof VmStats>;

// What a running VM's display shows, small (the Details pane's thumbnail): a PNG, base64.
export const Thumbnail = z.strictObject({ png: z.base64() });
export type Thumbnail = z.infer<typeof Thumbnail>;

// What the worker answers to op save and op checkpoint: the state file's allocated bytes,
// the guest memory written, how long the guest was paused and the whole operation took.
export const SaveResult = z.strictObject({
  stateBytes: z.int().min(0),
  memoryBytes: z.int().min(0),
  pauseMs: z.number().min(0),
  totalMs: z.number().min(0),
});
export type SaveResult = z.infer<typeof SaveResult>;

// A Saved VM's state file: its allocated size, when it was written and, when this Berth
// saved it, the timings of that save.
export const SavedStateSummary = z.strictObject({
  path: z.string(),
  stateBytes: z.int().min(0),
  savedAt: z.iso.datetime(),
  memoryBytes: z.int().min(0).optional(),
  pauseMs: z.number().min(0).optional(),
  totalMs: z.number().min(0).optional(),
});
export type SavedStateSummary = z.infer<typeof SavedStateSummary>;

export const VmSummary = z.strictObject({
  id: z.uuid(),
  name: z.string(),
  state: VmState,
  // Why the VM is in this state, when it is not obvious (Failed, Off after an exit).
  stateReason: z.string().optional(),
  memoryMiB: z.int(),
  processorCount: z.int(),
  workerPid: z.int().optional(),
  stats: VmStats.optional(),
  lastExit: LastExit.optional(),
  // Set while the VM is Saved.
  savedState: SavedStateSummary.optional(),
  // Set by a start that resumed the VM from saved state (or a checkpoint's memory).
  resumedFrom: z.enum(['saved-state', 'checkpoint']).optional(),
});
export type VmSummary = z.infer<typeof VmSummary>;

// What a move did: where the VM went, the state it is in there, and the time it was not
// running (from the start of the save to running on the target; null when it was not running).
export const MoveResult = z.strictObject({
  id: z.uuid(),
  name: z.string(),
  destination: z.string(),
  remote: z.boolean(),
  stateThere: VmState,
  bytesCopied: z.number().min(0),
  downtimeMs: z.number().min(0).nullable(),
  // Disk files outside the VM's folder: copied there, the originals left in place here.
  leftBehind: z.array(z.string()),
});
export type MoveResult = z.infer<typeof MoveResult>;

export const VmDetails = VmSummary.extend({ config: VmConfig, folder: z.string() });
export type VmDetails = z.infer<typeof VmDetails>;

// ---- requests the services take (the CLI and, later, the window validate against these) --

export const VmRef = z.string().min(1); // a name, an id, or an id prefix of at least 8 characters
export const LifecycleAction = z.enum([
  'start',
  'shut-down',
  'turn-off',
  'save',
  'delete-saved-state',
  'move',
  'pause',
  'resume',
  'reset',
  'remove',
  'rename',
  'set',
]);
export type LifecycleAction = z.infer<typeof LifecycleAction>;

// `vm set`: the settings that can be changed; memory and processors only while Off.
export const VmSettingsPatch = z.strictObject({
  notes: z.string().max(10_000).optional(),
  memoryMiB: z.int().optional(), // ranges are checked on the resulting config
  processorCount: z.int().optional(),
  kernelPath: z.string().min(1).optional(),
  initrdPath: z.string().min(1).nullable().optional(),
  cmdline: z.string().optional(),
  // pvh or linux: a kernel booted directly (a Generation 1 or 2 VM converted back needs
  // kernelPath too); bios (Generation 1) or uefi (Generation 2): the VM boots firmware, a
  // UEFI VM gets a new variable store.
  bootKind: z.enum(['pvh', 'linux', 'bios', 'uefi']).optional(),
  // Generation 2 only. Changing it replaces the VM's UEFI variable store with the other
  // template, which resets its UEFI settings (boot entries).
  secureBoot: z.boolean().optional(),
  // Generation 1 and 2: the kinds of device the firmware tries, first to last.
  bootOrder: BootOrder.optional(),
  // Generation 1 and 2: the display (graphical console); off leaves the serial console only.
  display: z.boolean().optional(),
  testExitPort: z.boolean().optional(),
  com1: z.boolean().optional(),
  checkpointType: z.enum(['standard', 'production', 'disabled']).optional(),
  // For production checkpoints: take a standard one when a production one is not possible.
  standardCheckpointFallback: z.boolean().optional(),
  automaticStartAction: AutomaticStartAction.optional(),
  automaticStartDelaySeconds: AutomaticStartDelay.optional(),
  // 'save': the host's shutdown saves the VM (Saved), its startup resumes it.
  automaticStopAction: AutomaticStopAction.optional(),
});
export type VmSettingsPatch = z.infer<typeof VmSettingsPatch>;
