// Disks, passthrough devices, checkpoints, export and import: the shapes the services
// return and store. No Node APIs here.
import { z } from 'zod';

import { upgradeConfigDocument, VmConfig } from './config';

export const VIRTUAL_DISK_FORMATS = ['raw', 'qcow2', 'vhdx', 'vhd'] as const;
export const VirtualDiskFormat = z.enum(VIRTUAL_DISK_FORMATS);
export type VirtualDiskFormat = z.infer<typeof VirtualDiskFormat>;

// A host block device as `berth host disks` shows it.
export const HostDisk = z.strictObject({
  name: z.string(), // kernel name: sda, nvme0n1, loop3
  devicePath: z.string(), // /dev/sda
  // Stable across reboots and renumbering: a /dev/disk/by-id name, or for loop devices
  // (which have none) "loop-backing:<backing file path>".
  stableId: z.string().nullable(),
  sizeBytes: z.number(),
  model: z.string(),
  removable: z.boolean(),
  readOnly: z.boolean(),
  partitions: z.array(z.string()),
  // Mount points of the device or its partitions.
  mounts: z.array(z.string()),
  // Holders (device-mapper, md, ...) or another process's exclusive open.
  inUse: z.boolean(),
  inUseBy: z.array(z.string()),
  // Holds / or /boot.
  system: z.boolean(),
});
export type HostDisk = z.infer<typeof HostDisk>;

// A virtual disk file of a checkpoint's view, by slot.
export const CheckpointDisk = z.strictObject({ slot: z.int().min(0), path: z.string().min(1) });

// checkpoints/<id>.json
export const CheckpointRecord = z.strictObject({
  id: z.uuid(),
  name: z.string().min(1).max(100),
  parent: z.uuid().nullable(),
  createdAt: z.iso.datetime(),
  // The configuration when the checkpoint was taken (its disks point at the view files).
  // The configuration of its time, read at the current schema version (a checkpoint taken by
  // an older Berth keeps its older document until the record is written again).
  config: z.preprocess(upgradeConfigDocument, VmConfig),
  // The files that hold this checkpoint's view of each virtual disk (read-only from now on).
  disks: z.array(CheckpointDisk),
  // Passthrough slots the user excluded when taking it.
  excludedSlots: z.array(z.int()).default([]),
  // What was taken: a production checkpoint (a consistent disk state; the VM was off) or
  // a standard one (a production one was not possible and the setting allowed it).
  type: z.enum(['standard', 'production']).default('standard'),
  // Taken while the VM ran: checkpoints/<id>/memory.bstate (STATE_FILES.checkpoint) holds
  // its memory and device state, and applying it resumes the VM at that moment.
  holdsMemory: z.boolean().default(false),
});
export type CheckpointRecord = z.infer<typeof CheckpointRecord>;

// checkpoints/tree.json: where 'Now' sits, and disk files no checkpoint names any more but
// that several children still use as their backing file (kept rather than merged).
export const CheckpointTreeFile = z.strictObject({
  now: z.uuid().nullable(),
  retained: z.array(z.string()).default([]),
});
export type CheckpointTreeFile = z.infer<typeof CheckpointTreeFile>;

export const CheckpointSummary = z.strictObject({
  id: z.uuid(),
  name: z.string(),
  parent: z.uuid().nullable(),
  createdAt: z.string(),
  children: z.array(z.uuid()),
  isNowParent: z.boolean(),
  disks: z.array(CheckpointDisk),
  excludedSlots: z.array(z.int()),
  type: z.enum(['standard', 'production']),
  // Whether it holds the VM's memory (taken while it ran), and its state file's allocated
  // bytes (null without memory).
  holdsMemory: z.boolean(),
  stateBytes: z.int().min(0).nullable(),
});
export type CheckpointSummary = z.infer<typeof CheckpointSummary>;

export const CheckpointList = z.strictObject({
  vm: z.string(),
  now: z.uuid().nullable(),
  checkpoints: z.array(CheckpointSummary),
});
export type CheckpointList = z.infer<typeof CheckpointList>;

// export.json at the top of an export folder.
export const EXPORT_FORMAT_VERSION = 1;
export const ExportManifest = z.strictObject({
  berthExport: z.literal(EXPORT_FORMAT_VERSION),
  vmId: z.uuid(),
  name: z.string(),
  exportedAt: z.iso.datetime(),
  // Relative paths inside the export folder.
  config: z.string(),
  disks: z.array(z.string()),
  checkpoints: z.array(z.string()),
  // A Saved VM's state file (state/saved.bstate): the import is Saved too.
  savedState: z.string().optional(),
  // The memory state files of checkpoints that hold memory (checkpoints/<id>/memory.bstate).
  checkpointStates: z.array(z.string()).default([]),
  // A Generation 2 VM's UEFI variable store (firmware/uefi-vars.fd) and the copies its
  // checkpoints keep (checkpoints/<id>/uefi-vars.fd).
  firmwareVars: z.string().optional(),
  checkpointFirmwareVars: z.array(z.string()).default([]),
});
export type ExportManifest = z.infer<typeof ExportManifest>;

export const IMPORT_MODES = ['register', 'restore', 'copy'] as const;
export const ImportMode = z.enum(IMPORT_MODES);
export type ImportMode = z.infer<typeof ImportMode>;
