// The Edit Disk operations (create, inspect, check, convert, expand, shrink, compact,
// merge, reconnect) on disk images of every format Berth supports. Every argument is
// checked before the addon sees it; failures are NativeError with a stable code. Long
// operations report progress and stop when their AbortSignal fires (DISK_CANCELLED),
// leaving the source untouched and no partial file behind.
import { loadAddon, type Addon } from './addon';
import { NativeError, toNativeError } from './errors';

export const DISK_FORMATS = ['raw', 'qcow2', 'vhdx', 'vhd'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];

export interface DiskImageInfo {
  format: DiskFormat | 'host-device';
  path: string;
  virtualSize: number;
  fileSize: number;
  allocatedBytes: number;
  subformat: string;
  backingPath: string;
  backingResolved: string;
  dirty: boolean;
  corrupt: boolean;
  clusterSize: number;
}

export interface DiskInspection {
  // The image first, then each image of its backing chain.
  images: DiskImageInfo[];
  // How a VM's disk reaches the data: 'io_uring' or 'threads' (requests in parallel), or
  // 'serial' (a driver without a parallel path, one request at a time; no built-in format
  // takes it), and why it is not io_uring.
  // Missing when the backing chain could not be opened.
  ioPath?: { backend: string; reason: string };
  // Why the backing chain could not be opened (images then holds the image alone).
  chainError?: { code: string; message: string };
}

export interface DiskCheckReport {
  leakedClusters: number;
  corruptions: number;
  repaired: number;
  problems: string[];
}

export interface CreateDiskOptions {
  format: DiskFormat;
  // Virtual size in bytes (a multiple of 512); optional with backingPath (inherited).
  size?: number;
  fixed?: boolean;
  clusterSize?: number;
  preallocateMetadata?: boolean;
  // Makes a differencing disk over this parent (recorded as given).
  backingPath?: string;
}

export interface DiskTargetOptions {
  format: DiskFormat;
  fixed?: boolean;
  clusterSize?: number;
  preallocateMetadata?: boolean;
}

export interface ConvertDiskOptions extends DiskTargetOptions {
  // Keep the source's backing file (copy only its own blocks) instead of a standalone disk.
  keepBacking?: boolean;
}

export type MergeTarget = { into: 'parent' } | ({ into: 'new'; path: string } & DiskTargetOptions);

export interface OperationOptions {
  // Called with bytes done and the total, at most every ~1% or 100 ms, ending at total.
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

type ProgressCallback = ((done: number, total: number) => void) | undefined;

interface RawOperation {
  cancel(): void;
  readonly cancelled: boolean;
  readonly running: boolean;
}

interface RawDiskApi {
  create(path: string, options: CreateDiskOptions): Promise<void>;
  inspect(path: string): Promise<DiskInspection>;
  check(path: string, repair: boolean): Promise<DiskCheckReport>;
  convert(src: string, dst: string, options: ConvertDiskOptions, onProgress: ProgressCallback, op: RawOperation): Promise<void>;
  expand(path: string, newSize: number): Promise<void>;
  shrink(path: string, newSize: number, onProgress: ProgressCallback, op: RawOperation): Promise<void>;
  minShrinkSize(path: string, onProgress: ProgressCallback, op: RawOperation): Promise<number>;
  compact(path: string, onProgress: ProgressCallback, op: RawOperation): Promise<void>;
  merge(
    child: string,
    newPath: string | null,
    options: DiskTargetOptions | null,
    onProgress: ProgressCallback,
    op: RawOperation,
  ): Promise<void>;
  reconnect(child: string, newParent: string): Promise<string>;
  Operation: new () => RawOperation;
}

function raw(): RawDiskApi {
  return (loadAddon() as Addon & { disk: RawDiskApi }).disk;
}

function invalid(message: string): NativeError {
  return new NativeError('INVALID_ARGUMENT', message);
}

const MAX_CLUSTER = 256 * 1024 * 1024;

function checkPath(label: string, path: unknown): string {
  if (typeof path !== 'string' || path.length === 0) throw invalid(`${label} must be a non-empty file path`);
  if (path.includes('\0')) throw invalid(`${label} must not contain NUL characters`);
  return path;
}

function checkSize(label: string, size: unknown): number {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
    throw invalid(`${label} must be a positive whole number of bytes, a multiple of 512, not ${String(size)}`);
  }
  return size;
}

function checkFormat(format: unknown): DiskFormat {
  if (typeof format !== 'string' || !(DISK_FORMATS as readonly string[]).includes(format)) {
    throw invalid(`format must be one of ${DISK_FORMATS.join(', ')}, not ${String(format)}`);
  }
  return format as DiskFormat;
}

function checkBool(label: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalid(`${label} must be true or false`);
  return value;
}

function checkTarget(options: unknown): DiskTargetOptions {
  if (typeof options !== 'object' || options === null) throw invalid('the target options must be an object');
  const o = options as Record<string, unknown>;
  const out: DiskTargetOptions = { format: checkFormat(o['format']) };
  const fixed = checkBool('fixed', o['fixed']);
  if (fixed !== undefined) out.fixed = fixed;
  const meta = checkBool('preallocateMetadata', o['preallocateMetadata']);
  if (meta !== undefined) out.preallocateMetadata = meta;
  const cluster = o['clusterSize'];
  if (cluster !== undefined) {
    if (
      typeof cluster !== 'number' ||
      !Number.isInteger(cluster) ||
      cluster < 512 ||
      cluster > MAX_CLUSTER ||
      (cluster & (cluster - 1)) !== 0
    ) {
      throw invalid(`clusterSize must be a power of two from 512 bytes to 256 MiB, not ${String(cluster)}`);
    }
    out.clusterSize = cluster;
  }
  return out;
}

function checkOperation(options: unknown): OperationOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) throw invalid('the operation options must be an object');
  const o = options as Record<string, unknown>;
  const out: OperationOptions = {};
  if (o['onProgress'] !== undefined) {
    if (typeof o['onProgress'] !== 'function') throw invalid('onProgress must be a function');
    out.onProgress = o['onProgress'] as (done: number, total: number) => void;
  }
  if (o['signal'] !== undefined) {
    if (!(o['signal'] instanceof AbortSignal)) throw invalid('signal must be an AbortSignal');
    out.signal = o['signal'];
  }
  return out;
}

async function call<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw toNativeError(err);
  }
}

// Runs a long operation with a native handle that the signal cancels.
async function longCall<T>(
  what: string,
  options: OperationOptions,
  run: (onProgress: ProgressCallback, op: RawOperation) => Promise<T>,
): Promise<T> {
  const api = raw();
  if (options.signal?.aborted) throw new NativeError('DISK_CANCELLED', `${what} was cancelled before it started`);
  const handle = new api.Operation();
  const onAbort = (): void => handle.cancel();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await call(() => run(options.onProgress, handle));
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

// Creates a new image; refuses to overwrite an existing file (DISK_EXISTS).
export async function createDisk(path: string, options: CreateDiskOptions): Promise<void> {
  checkPath('path', path);
  const target = checkTarget(options);
  const out: CreateDiskOptions = { ...target };
  if (options.backingPath !== undefined) out.backingPath = checkPath('backingPath', options.backingPath);
  if (options.size !== undefined || options.backingPath === undefined) out.size = checkSize('size', options.size);
  return call(() => raw().create(path, out));
}

// The image's facts and those of each image in its backing chain.
export async function inspectDisk(path: string): Promise<DiskInspection> {
  checkPath('path', path);
  return call(() => raw().inspect(path));
}

// Checks the image's metadata; with repair, fixes what can be fixed safely (leaks).
export async function checkDisk(path: string, options: { repair?: boolean } = {}): Promise<DiskCheckReport> {
  checkPath('path', path);
  const repair = checkBool('repair', options.repair) ?? false;
  return call(() => raw().check(path, repair));
}

// Copies the virtual disk at src (its whole chain) into a new image at dst, sparse.
export async function convertDisk(
  src: string,
  dst: string,
  target: ConvertDiskOptions,
  options?: OperationOptions,
): Promise<void> {
  checkPath('source', src);
  checkPath('target', dst);
  const t: ConvertDiskOptions = checkTarget(target);
  const keep = checkBool('keepBacking', (target as { keepBacking?: unknown }).keepBacking);
  if (keep !== undefined) t.keepBacking = keep;
  const o = checkOperation(options);
  return longCall(`converting ${src}`, o, (p, op) => raw().convert(src, dst, t, p, op));
}

// Grows the virtual disk to newSize bytes.
export async function expandDisk(path: string, newSize: number): Promise<void> {
  checkPath('path', path);
  checkSize('newSize', newSize);
  return call(() => raw().expand(path, newSize));
}

// The smallest size shrinkDisk accepts for this disk (the end of its last used block).
export async function minShrinkSize(path: string, options?: OperationOptions): Promise<number> {
  checkPath('path', path);
  const o = checkOperation(options);
  return longCall(`measuring ${path}`, o, (p, op) => raw().minShrinkSize(path, p, op));
}

// Shrinks the virtual disk; refuses (DISK_SHRINK_TOO_SMALL) to cut off used blocks.
export async function shrinkDisk(path: string, newSize: number, options?: OperationOptions): Promise<void> {
  checkPath('path', path);
  checkSize('newSize', newSize);
  const o = checkOperation(options);
  return longCall(`shrinking ${path}`, o, (p, op) => raw().shrink(path, newSize, p, op));
}

// Reclaims zeroed and discarded blocks by rewriting the image and replacing it atomically.
export async function compactDisk(path: string, options?: OperationOptions): Promise<void> {
  checkPath('path', path);
  const o = checkOperation(options);
  return longCall(`compacting ${path}`, o, (p, op) => raw().compact(path, p, op));
}

// Merges a differencing disk into its parent (then removes it), or its whole chain into a
// new standalone disk.
export async function mergeDisk(child: string, target: MergeTarget, options?: OperationOptions): Promise<void> {
  checkPath('child', child);
  if (typeof target !== 'object' || target === null) throw invalid('the merge target must be an object');
  const o = checkOperation(options);
  if (target.into === 'parent') {
    return longCall(`merging ${child}`, o, (p, op) => raw().merge(child, null, null, p, op));
  }
  if (target.into !== 'new') throw invalid(`merge target.into must be 'parent' or 'new'`);
  const newPath = checkPath('target.path', target.path);
  const t = checkTarget(target);
  return longCall(`merging ${child}`, o, (p, op) => raw().merge(child, newPath, t, p, op));
}

// Points a differencing disk at a new parent of the same size; returns the path recorded.
export async function reconnectDisk(child: string, newParent: string): Promise<string> {
  checkPath('child', child);
  checkPath('newParent', newParent);
  return call(() => raw().reconnect(child, newParent));
}
