// The worker's control protocol: newline-delimited JSON over run/control.sock (mode 0600).
// The client's first request must be `hello` with the protocol version it speaks; every
// request carries an id that its response echoes. Events (console bytes, state changes,
// the exit) arrive unsolicited, without an id. Console bytes travel as base64.
import { z } from 'zod';

import { ErrorBody } from './errors';
import { formatIssues } from './issues';
import { LastExit, SaveResult, VmState, VmStats } from './vm';

// 2: 'stop' became 'turn-off' and 'shutdown' 'shut-down', the words the window and CLI use.
// 3: 'save' and 'checkpoint' (saved memory and device state), LastExit reason 'saved'.
// 4: 'media' (insert an ISO into a running VM's DVD drive, or eject it).
// 5: state results of firmware-booted VMs carry bootProblem while the firmware found nothing
//    to boot; 'screenshot' (the display's picture as PNG, shrunk to maxWidth for a thumbnail).
export const PROTOCOL_VERSION = 5;
// A line longer than this closes the connection (a console chunk is far smaller).
export const MAX_LINE_BYTES = 1024 * 1024;
export const SCROLLBACK_BYTES = 256 * 1024;
// A screenshot's maxWidth, in pixels (native/worker/protocol.h kMin/kMaxScreenshotWidth).
export const SCREENSHOT_WIDTH_RANGE = { min: 16, max: 4096 } as const;

const id = z.int().min(0);
const absolutePath = z
  .string()
  .min(2)
  .refine((p) => p.startsWith('/') && !p.includes('\0'), 'must be an absolute path');
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

export const Request = z.discriminatedUnion('op', [
  z.strictObject({ id, op: z.literal('hello'), protocol: z.int(), client: z.string().max(200) }),
  z.strictObject({ id, op: z.literal('state') }),
  z.strictObject({ id, op: z.literal('stats') }),
  // Subscribe to console output; the scrollback (up to SCROLLBACK_BYTES) is replayed first.
  z.strictObject({ id, op: z.literal('console-attach'), replay: z.boolean().default(true) }),
  z.strictObject({ id, op: z.literal('console-detach') }),
  z.strictObject({ id, op: z.literal('console-input'), data: base64.max(1024 * 1024) }),
  z.strictObject({ id, op: z.literal('pause') }),
  z.strictObject({ id, op: z.literal('resume') }),
  // Turn off at once (the power cord). The worker records the exit and ends.
  z.strictObject({ id, op: z.literal('turn-off') }),
  z.strictObject({ id, op: z.literal('reset') }),
  // Ask the guest to shut down: presses the ACPI power button and answers at once; the
  // guest's power-off then ends the worker like any exit.
  z.strictObject({ id, op: z.literal('shut-down') }),
  // Pause, write the whole VM state to path (temp + rename + fsync), flush the disks, answer
  // SaveResult, then end: exit event with reason 'saved', and the worker process ends.
  z.strictObject({ id, op: z.literal('save'), path: absolutePath }),
  // A standard checkpoint of the running (or paused) VM: pause, write the state to path,
  // flush, reopen each virtio-blk disk on its new top file (disks: one per disk, in the
  // spec's order; each an overlay over the disk's current file), resume if it was running.
  // On an error the VM continues on its old files.
  z.strictObject({ id, op: z.literal('checkpoint'), path: absolutePath, disks: z.array(absolutePath) }),
  // Change the media of DVD drive `drive` (its index in the spec's dvds, which are in slot
  // order) of a running or paused firmware VM: path = an ISO image (absolute) to insert,
  // replacing what is in the drive, or '' to eject (the guest sees the medium change). The
  // answer is {} once the drive holds the new media; errors: DVD_MEDIA_NOT_FOUND (no such
  // file), DVD_MEDIA_INVALID (not an ISO image), INVALID_ARGUMENT (no such drive),
  // INVALID_STATE (the VM has no DVD drives, or is not running or paused).
  z.strictObject({
    id,
    op: z.literal('media'),
    drive: z.int().min(0),
    path: z.union([z.literal(''), absolutePath]),
  }),
  // Write what a running or paused VM's display shows to path, as PNG; a picture wider than
  // maxWidth is shrunk to it (same aspect ratio). Errors: INVALID_STATE (the VM has no
  // display, its guest has set no mode yet, or it is not running or paused), IO (the file
  // cannot be written).
  z.strictObject({
    id,
    op: z.literal('screenshot'),
    path: absolutePath,
    maxWidth: z.int().min(SCREENSHOT_WIDTH_RANGE.min).max(SCREENSHOT_WIDTH_RANGE.max).optional(),
  }),
]);
export type Request = z.infer<typeof Request>;
export type RequestInput = z.input<typeof Request>;
export type Op = Request['op'];

export const WorkerInfo = z.strictObject({
  protocol: z.int(),
  pid: z.int(),
  vmId: z.uuid(),
  startedAt: z.iso.datetime(),
});
export type WorkerInfo = z.infer<typeof WorkerInfo>;

export const StateResult = z.strictObject({
  state: VmState,
  uptimeMs: z.number(),
  // What the firmware said when it found nothing to boot, as a sentence for the user.
  bootProblem: z.string().max(1000).optional(),
});
export type StateResult = z.infer<typeof StateResult>;

export const ConsoleAttachResult = z.strictObject({ replayedBytes: z.int() });

// The result type of each operation.
export const Results = {
  hello: WorkerInfo,
  state: StateResult,
  stats: VmStats,
  'console-attach': ConsoleAttachResult,
  'console-detach': z.strictObject({}),
  'console-input': z.strictObject({}),
  pause: StateResult,
  resume: StateResult,
  'turn-off': StateResult,
  reset: StateResult,
  'shut-down': StateResult,
  save: SaveResult,
  checkpoint: SaveResult,
  media: z.strictObject({}),
  screenshot: z.strictObject({}),
} as const satisfies Record<Op, z.ZodType>;
export type Result<O extends Op> = z.infer<(typeof Results)[O]>;

export const Response = z.union([
  z.strictObject({ id, ok: z.literal(true), result: z.unknown() }),
  z.strictObject({ id: id.nullable(), ok: z.literal(false), error: ErrorBody }),
]);
export type Response = z.infer<typeof Response>;

export const Event = z.discriminatedUnion('event', [
  z.strictObject({ event: z.literal('console'), data: base64 }),
  z.strictObject({ event: z.literal('state'), state: VmState }),
  z.strictObject({ event: z.literal('exit'), exit: LastExit }),
]);
export type Event = z.infer<typeof Event>;

export type Incoming = { kind: 'response'; message: Response } | { kind: 'event'; message: Event };

// Parses one line from the worker; throws with the failing field named.
export function parseIncoming(line: string): Incoming {
  const value: unknown = JSON.parse(line);
  if (value && typeof value === 'object' && 'event' in value) {
    const r = Event.safeParse(value);
    if (!r.success) throw new Error(`bad event: ${formatIssues(r.error.issues, value, '(event)').join('; ')}`);
    return { kind: 'event', message: r.data };
  }
  const r = Response.safeParse(value);
  if (!r.success) throw new Error(`bad response: ${formatIssues(r.error.issues, value, '(response)').join('; ')}`);
  return { kind: 'response', message: r.data };
}

// Parses one line from a client; returns the request or an error naming the field.
export function parseRequest(
  line: string,
): { ok: true; request: Request } | { ok: false; id: number | null; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, id: null, error: 'not JSON' };
  }
  const r = Request.safeParse(value);
  if (r.success) return { ok: true, request: r.data };
  const rawId = value && typeof value === 'object' ? (value as { id?: unknown }).id : undefined;
  return {
    ok: false,
    id: typeof rawId === 'number' && Number.isInteger(rawId) && rawId >= 0 ? rawId : null,
    error: formatIssues(r.error.issues, value, '(request)').join('; '),
  };
}
