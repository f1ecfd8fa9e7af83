// The bridge: the one typed API the window (renderer/) sees, the same over Electron IPC and
// over `berth serve` (HTTP). No Node APIs here; the renderer imports it.
//
//   interface BerthApi {
//     invoke(method, args): Promise<result>      // request/response, args and result typed by method
//     subscribe(topic, handler): () => void       // events pushed from the service; returns unsubscribe
//   }
//
// - Every method has a zod schema for its arguments and its result (METHODS below); the
//   host (app/main for IPC, app/web for HTTP) validates the arguments before any service
//   runs, and a refusal names the field ("vm: must be a string").
// - invoke() rejects with a BridgeError {code, message} (codes: app/api/errors.ts). Every
//   method has its service on every backend (app/services/bridge-storage.ts: StorageBackend).
// - On the wire both transports carry the same envelope: Reply = {ok: true, result} |
//   {ok: false, error: {code, message}}; events are {topic, payload}.
//   Electron: ipcRenderer.invoke('berth:invoke', method, args) -> Reply; events arrive on
//   the 'berth:event' channel; the preload exposes window.berth: BerthApi.
//   HTTP: POST /api/<method> with the JSON args -> Reply; GET /api/events is a
//   text/event-stream (`event: <topic>` + `data: <payload JSON>`). createHttpBerthApi()
//   (app/api/bridge-http.ts) implements BerthApi over it.
// - State is pushed, never polled by the renderer: 'vm' when a VM appears or changes (state,
//   name, settings), 'vm-removed', 'stats' once a second with every running VM's stats in one
//   batch, 'console' for attached console sessions, 'operation' for long work (progress,
//   end), 'checkpoints' when a VM's checkpoint tree changed (refetch checkpoint.list).
// - Long work (disk create/edit, checkpoint delete, export, import) answers at once with
//   {operationId}; progress and the end (result or error) arrive as 'operation' events;
//   operation.cancel stops it; operation.list tells a reloaded window what is under way.
// - Console: console.attach -> {sessionId, replayedBytes}; the scrollback then live output
//   arrive as 'console' events {sessionId, data (base64)}, and an 'console' event with
//   `end` when the VM stopped; console.input sends base64 bytes to COM1; console.detach.
//   Sessions belong to the window that opened them and end when it goes away.
import { z } from 'zod';

import {
  DiskAttachment,
  DvdDrive,
  MAX_DISKS,
  MAX_DVD_DRIVES,
  MAX_DVD_SLOTS,
  NetworkAdapter,
  NewVmRequest,
  VmName,
} from './config';
import { ErrorBody, type ErrorCode } from './errors';
import { CheckpointList, CheckpointSummary, HostDisk } from './storage';
import { LastExit, MoveResult, VmDetails, VmRef, VmSettingsPatch, VmState, VmStats, VmSummary, Thumbnail } from './vm';

export { MoveResult };

// ---- shared pieces --------------------------------------------------------------------------

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
const filePath = z
  .string()
  .min(1)
  .refine((s) => !s.includes('\0'), 'must not contain NUL characters');
const id = z.string().min(1).max(200);
const empty = z.strictObject({});

export const DISK_FORMATS = ['raw', 'qcow2', 'vhdx', 'vhd'] as const;
export const DiskFormat = z.enum(DISK_FORMATS);
export type DiskFormat = z.infer<typeof DiskFormat>;

export const OperationStarted = z.strictObject({ operationId: id });
export type OperationStarted = z.infer<typeof OperationStarted>;

export const OPERATION_KINDS = [
  'disk.create',
  'disk.edit',
  'checkpoint.delete',
  'vm.export',
  'vm.import',
  'vm.move',
] as const;
export const OperationKind = z.enum(OPERATION_KINDS);

export const Operation = z.strictObject({
  id,
  kind: OperationKind,
  // What the progress bar says: "Converting disk.qcow2 to VHDX".
  title: z.string(),
  vmId: z.string().optional(),
  state: z.enum(['running', 'done', 'failed', 'cancelled']),
  // Units of work done and in all (bytes for disk work); total 0 while unknown.
  done: z.number().min(0),
  total: z.number().min(0),
  startedAt: z.iso.datetime(),
  endedAt: z.iso.datetime().optional(),
  cancellable: z.boolean(),
  error: ErrorBody.optional(),
  // The operation's result when done (vm.import: the imported VmSummary; disk.create: {path}).
  result: z.unknown().optional(),
});
export type Operation = z.infer<typeof Operation>;

export const HostInfo = z.strictObject({
  hostname: z.string(),
  platform: z.string(), // 'linux' | 'darwin'
  arch: z.string(),
  berthVersion: z.string(),
  dataRoot: z.string(),
  // Which front end serves this window.
  transport: z.enum(['electron', 'web']),
});
export type HostInfo = z.infer<typeof HostInfo>;

// Host disks (Host Disks, VM Settings) and checkpoints travel in the services' own shapes
// (app/api/storage.ts), re-exported here so the contract has one definition of each.
export { CheckpointList, CheckpointSummary, HostDisk };

export const DiskImageInfo = z.strictObject({
  format: z.union([DiskFormat, z.literal('host-device')]),
  path: z.string(),
  virtualSize: z.number(),
  fileSize: z.number(),
  allocatedBytes: z.number(),
  subformat: z.string(),
  backingPath: z.string(),
  backingResolved: z.string(),
  dirty: z.boolean(),
  corrupt: z.boolean(),
  clusterSize: z.number(),
});
export type DiskImageInfo = z.infer<typeof DiskImageInfo>;

export const DiskInspection = z.strictObject({
  // The image first, then each image of its backing chain.
  images: z.array(DiskImageInfo),
  chainError: z.strictObject({ code: z.string(), message: z.string() }).optional(),
});
export type DiskInspection = z.infer<typeof DiskInspection>;

const diskTarget = {
  format: DiskFormat,
  fixed: z.boolean().optional(),
  clusterSize: z.int().positive().optional(),
};

export const DiskCreateRequest = z.strictObject({
  path: filePath,
  ...diskTarget,
  // Virtual size in bytes (a multiple of 512); optional for a differencing disk.
  sizeBytes: z.int().positive().optional(),
  // Makes a differencing disk over this parent.
  parentPath: filePath.optional(),
});
export type DiskCreateRequest = z.infer<typeof DiskCreateRequest>;

// The Edit Disk wizard's actions.
export const DiskEditRequest = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('compact'), path: filePath }),
  z.strictObject({
    action: z.literal('convert'),
    path: filePath,
    destination: filePath,
    ...diskTarget,
    keepBacking: z.boolean().optional(),
  }),
  z.strictObject({ action: z.literal('expand'), path: filePath, sizeBytes: z.int().positive() }),
  z.strictObject({ action: z.literal('shrink'), path: filePath, sizeBytes: z.int().positive() }),
  z.strictObject({
    action: z.literal('merge'),
    path: filePath,
    // Into the parent, or into a new standalone disk.
    into: z.discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('parent') }),
      z.strictObject({ kind: z.literal('new'), destination: filePath, ...diskTarget }),
    ]),
  }),
]);
export type DiskEditRequest = z.infer<typeof DiskEditRequest>;

// VM Settings: the fields of `vm set` plus the disk and network lists (replaced as a whole).
// dvdDrives: a running VM's drives may only change their media (Insert Disk, Eject).
export const VmUpdatePatch = VmSettingsPatch.extend({
  name: VmName.optional(),
  disks: z.array(DiskAttachment).optional(),
  network: z.array(NetworkAdapter).optional(),
  dvdDrives: z.array(DvdDrive).max(MAX_DVD_DRIVES).optional(),
});
export type VmUpdatePatch = z.infer<typeof VmUpdatePatch>;

// A disk the New VM wizard creates with the VM, in its disks/ folder.
export const NewDiskRequest = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(200)
    .refine(
      (s) => !s.includes('/') && s !== '.' && s !== '..' && !s.includes('\0'),
      'must be a file name, without folders',
    ),
  format: DiskFormat,
  sizeBytes: z
    .int()
    .positive()
    .refine((n) => n % 512 === 0, 'must be a multiple of 512 bytes'),
});
export type NewDiskRequest = z.infer<typeof NewDiskRequest>;

export const ImportRequest = z.strictObject({
  // The exported folder (holding config.json) or the VM folder to register.
  path: filePath,
  // register: use the files where they are (same id); restore: copy into Berth's data root,
  // same id; copy: copy with a new id (and a new name if `name` is given).
  mode: z.enum(['register', 'restore', 'copy']),
  name: VmName.optional(),
});
export type ImportRequest = z.infer<typeof ImportRequest>;

// ---- the methods -----------------------------------------------------------------------------

const vmArgs = z.strictObject({ vm: VmRef });
const def = <A extends z.ZodType, R extends z.ZodType>(args: A, result: R) => ({ args, result });

export const METHODS = {
  'host.info': def(empty, HostInfo),
  'host.disks': def(empty, z.array(HostDisk)),

  'vm.list': def(empty, z.array(VmSummary)),
  'vm.get': def(vmArgs, VmDetails),
  // newDisks: created with the VM (on the first free slots); if any fails, no VM is made.
  'vm.create': def(
    z.strictObject({ config: NewVmRequest, newDisks: z.array(NewDiskRequest).max(MAX_DISKS).optional() }),
    VmDetails,
  ),
  'vm.update': def(z.strictObject({ vm: VmRef, patch: VmUpdatePatch }), VmDetails),
  'vm.rename': def(z.strictObject({ vm: VmRef, name: VmName }), VmDetails),
  // deleteDisks: also delete the disk files inside the VM's folder (never disks elsewhere).
  'vm.remove': def(z.strictObject({ vm: VmRef, deleteDisks: z.boolean().optional() }), empty),
  'vm.start': def(vmArgs, VmSummary),
  'vm.turnOff': def(vmArgs, VmSummary),
  // Presses the power button and waits up to timeoutSeconds (default 120) for the power-off.
  'vm.shutDown': def(z.strictObject({ vm: VmRef, timeoutSeconds: z.int().min(1).max(3600).optional() }), VmSummary),
  // Saves the VM's memory and device state and ends its worker (Saved); the summary's
  // savedState has the file's size and how long the guest was paused.
  'vm.save': def(vmArgs, VmSummary),
  // Discards a Saved VM's state (Off): the next start boots afresh.
  'vm.deleteSavedState': def(vmArgs, VmSummary),
  // Quick migration to another Berth data root (a folder, or ssh://[user@]host[:port]/path
  // or user@host:/path): saved if running, files copied, registered and resumed there,
  // removed here. The operation's result is a MoveResult.
  'vm.move': def(z.strictObject({ vm: VmRef, destination: filePath }), OperationStarted),
  'vm.pause': def(vmArgs, VmSummary),
  'vm.resume': def(vmArgs, VmSummary),
  'vm.reset': def(vmArgs, VmSummary),
  'vm.stats': def(vmArgs, VmStats),
  // A running or paused Generation 1 or 2 VM's screen, THUMBNAIL_WIDTH pixels wide at most.
  'vm.thumbnail': def(vmArgs, Thumbnail),
  // Media > DVD Drive: put an image file (.iso) into a drive (slot; the first when absent) or
  // eject it, the VM off or running (then the worker's media request; the configuration
  // keeps the media for the next start).
  'vm.insertDvd': def(
    z.strictObject({
      vm: VmRef,
      slot: z
        .int()
        .min(0)
        .max(MAX_DVD_SLOTS - 1)
        .optional(),
      path: filePath,
    }),
    VmDetails,
  ),
  'vm.ejectDvd': def(
    z.strictObject({
      vm: VmRef,
      slot: z
        .int()
        .min(0)
        .max(MAX_DVD_SLOTS - 1)
        .optional(),
    }),
    VmDetails,
  ),
  // folder: where the export is written (a new folder <folder>/<vm name>).
  'vm.export': def(z.strictObject({ vm: VmRef, folder: filePath, checkpointId: id.optional() }), OperationStarted),
  'vm.import': def(ImportRequest, OperationStarted),

  'console.attach': def(
    z.strictObject({ vm: VmRef, replay: z.boolean().optional() }),
    z.strictObject({ sessionId: id, vmId: z.string(), replayedBytes: z.int() }),
  ),
  'console.input': def(z.strictObject({ sessionId: id, data: base64.max(1024 * 1024) }), empty),
  'console.detach': def(z.strictObject({ sessionId: id }), empty),

  'disk.create': def(DiskCreateRequest, OperationStarted),
  'disk.inspect': def(z.strictObject({ path: filePath }), DiskInspection),
  // The smallest size a shrink can reach (reads the whole image: may take a while).
  'disk.minShrinkSize': def(z.strictObject({ path: filePath }), z.strictObject({ sizeBytes: z.number() })),
  'disk.edit': def(DiskEditRequest, OperationStarted),

  'checkpoint.list': def(vmArgs, CheckpointList),
  'checkpoint.create': def(z.strictObject({ vm: VmRef, name: VmName.optional() }), CheckpointSummary),
  'checkpoint.apply': def(z.strictObject({ vm: VmRef, checkpointId: id }), empty),
  'checkpoint.rename': def(z.strictObject({ vm: VmRef, checkpointId: id, name: VmName }), CheckpointSummary),
  // subtree: Delete Checkpoint Subtree (the checkpoint and all below it).
  'checkpoint.delete': def(
    z.strictObject({ vm: VmRef, checkpointId: id, subtree: z.boolean().optional() }),
    OperationStarted,
  ),

  'operation.list': def(empty, z.array(Operation)),
  'operation.cancel': def(z.strictObject({ operationId: id }), empty),
} as const;

export type Method = keyof typeof METHODS;
export const METHOD_NAMES = Object.keys(METHODS) as Method[];
// What the caller passes (defaults may be left out) and what it gets back.
export type MethodArgs<M extends Method> = z.input<(typeof METHODS)[M]['args']>;
export type ParsedArgs<M extends Method> = z.output<(typeof METHODS)[M]['args']>;
export type MethodResult<M extends Method> = z.output<(typeof METHODS)[M]['result']>;

export function isMethod(name: unknown): name is Method {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(METHODS, name);
}

// ---- the events --------------------------------------------------------------------------------

export const TOPICS = {
  // A VM appeared or changed (state, name, settings); the full summary, stats included.
  vm: z.strictObject({ vm: VmSummary }),
  'vm-removed': z.strictObject({ id: z.string() }),
  // Once a second, every running VM's stats in one batch (apply to the list in one go).
  stats: z.strictObject({
    at: z.iso.datetime(),
    items: z.array(z.strictObject({ id: z.string(), state: VmState, stats: VmStats })),
  }),
  // Console output of a session this window attached, or its end (VM stopped, worker gone).
  console: z.strictObject({
    sessionId: id,
    vmId: z.string(),
    data: base64.optional(),
    end: z.strictObject({ exit: LastExit.optional(), error: z.string().optional() }).optional(),
  }),
  // A long operation's progress or end (the whole record each time).
  operation: z.strictObject({ operation: Operation }),
  // A VM's checkpoint tree changed: refetch checkpoint.list.
  checkpoints: z.strictObject({ vmId: z.string() }),
} as const;

export type Topic = keyof typeof TOPICS;
export const TOPIC_NAMES = Object.keys(TOPICS) as Topic[];
export type EventPayload<T extends Topic> = z.output<(typeof TOPICS)[T]>;
export type BerthEvent = { [T in Topic]: { topic: T; payload: EventPayload<T> } }[Topic];

export function isTopic(name: unknown): name is Topic {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(TOPICS, name);
}

// ---- the object the renderer uses ---------------------------------------------------------------

export interface BerthApi {
  invoke<M extends Method>(method: M, args: MethodArgs<M>): Promise<MethodResult<M>>;
  subscribe<T extends Topic>(topic: T, handler: (payload: EventPayload<T>) => void): () => void;
}

// The wire envelope of one answer (IPC and HTTP alike).
export const Reply = z.union([
  z.strictObject({ ok: z.literal(true), result: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: ErrorBody }),
]);
export type Reply = z.infer<typeof Reply>;

// What invoke() rejects with.
export class BridgeError extends Error {
  override readonly name = 'BridgeError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

// True for what invoke() rejects with over either transport: a BridgeError (HTTP) or the
// plain {name: 'BridgeError', code, message} object the Electron preload passes through
// contextBridge (which drops an Error's own fields). Use this, not instanceof.
export function isBridgeError(err: unknown): err is { name: 'BridgeError'; code: ErrorCode; message: string } {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'BridgeError' &&
    typeof (err as { code?: unknown }).code === 'string' &&
    typeof (err as { message?: unknown }).message === 'string'
  );
}

// Turns a reply into the result or a thrown BridgeError (used by the preload and the HTTP client).
export function unwrapReply<M extends Method>(reply: unknown): MethodResult<M> {
  const r = Reply.safeParse(reply);
  if (!r.success) throw new BridgeError('PROTOCOL', 'the Berth service sent a malformed reply');
  if (!r.data.ok) throw new BridgeError(r.data.error.code, r.data.error.message);
  return r.data.result as MethodResult<M>;
}

// Console bytes travel as base64 (browser and Node alike).
export function encodeBase64(bytes: Uint8Array | string): string {
  const b = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export function decodeBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// Names of the HTTP transport, shared by app/web and the browser client.
export const HTTP = {
  // The token header every /api request must carry (the page reads ?token= once).
  tokenHeader: 'x-berth-token',
  // The window's client id (from the events stream's 'hello'): ties console sessions to it.
  clientHeader: 'x-berth-client',
  apiPrefix: '/api/',
  eventsPath: '/api/events',
} as const;
