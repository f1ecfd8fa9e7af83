// A virtual machine run by the native VMM, with every argument checked before the addon
// sees it and failures delivered as NativeError with a stable code.
import { availableParallelism, totalmem } from 'node:os';
import { statSync } from 'node:fs';

import { MAX_VIRTIO_DEVICES } from '../api/config';
import { loadAddon, type RawCapabilities, type RawEvent, type RawMachine, type RawStats } from './addon';
import { NativeError, toNativeError } from './errors';
import { checkNics, type NicConfig } from './nics';

export type MachineState = 'created' | 'running' | 'paused' | 'stopped';
export type ExitReason = 'guest-exit' | 'reset' | 'power-off' | 'stopped' | 'error';
export type MachineEvent = RawEvent;
export type MachineStats = RawStats;
export type Capabilities = RawCapabilities;
export interface ExitEvent {
  type: 'exit';
  reason: ExitReason;
  code: number;
  detail: string;
}

export interface MachineConfig {
  memoryMiB: number;
  vcpus: number;
  kernelPath: string;
  initrdPath?: string;
  cmdline?: string;
  // Lets a test guest end the VM with a code by writing to I/O port 0xf4.
  testExitPort?: boolean;
  // A guest reset reboots the VM (true, the default) or stops it (false).
  restartOnReset?: boolean;
  // A virtio-rng device fed by the host's random number generator.
  rng?: boolean;
  // A virtio console: a second byte stream ('console2' events, writeConsole2).
  virtioConsole?: boolean;
  // virtio-net cards, in this order (after the other virtio devices); see ./nics.
  nics?: NicConfig[];
  // Disk images attached as virtio-blk devices, in this order (after rng and console).
  // Opened when the VM is created: DISK_NOT_FOUND, DISK_IN_USE, DISK_UNKNOWN_FORMAT, ...
  disks?: DiskConfig[];
}

export interface DiskConfig {
  path: string;
  // Offered to the guest as read-only (VIRTIO_BLK_F_RO); the image is opened read-only.
  readOnly?: boolean;
  // The format the caller expects; the image's magic bytes decide, a mismatch is
  // DISK_FORMAT_MISMATCH.
  format?: 'raw' | 'qcow2' | 'vhdx' | 'vhd' | 'host-device';
  // What the guest reads with VIRTIO_BLK_T_GET_ID: up to 20 printable ASCII characters.
  serial?: string;
}

// virtio-mmio devices a VM can have: defined with the other device limits in app/api.
export { MAX_VIRTIO_DEVICES };
const DISK_FORMAT_HINTS = ['raw', 'qcow2', 'vhdx', 'vhd', 'host-device'];

function checkDisks(disks: unknown, otherDevices: number): DiskConfig[] {
  if (disks === undefined) return [];
  if (!Array.isArray(disks)) throw invalid('disks must be an array');
  if (disks.length + otherDevices > MAX_VIRTIO_DEVICES) {
    throw invalid(`a VM can have at most ${MAX_VIRTIO_DEVICES} virtio devices (rng, console and disks together)`);
  }
  return disks.map((disk: unknown, i): DiskConfig => {
    const where = `disks[${i}]`;
    if (typeof disk !== 'object' || disk === null) throw invalid(`${where} must be an object`);
    const { path, readOnly, format, serial } = disk as Record<string, unknown>;
    if (typeof path !== 'string' || path.length === 0) throw invalid(`${where}.path must be a file path`);
    if (path.includes('\0')) throw invalid(`${where}.path must not contain NUL characters`);
    if (readOnly !== undefined && typeof readOnly !== 'boolean') throw invalid(`${where}.readOnly must be true or false`);
    const out: DiskConfig = { path, readOnly: readOnly ?? false };
    if (format !== undefined) {
      if (typeof format !== 'string' || !DISK_FORMAT_HINTS.includes(format)) {
        throw invalid(`${where}.format must be one of ${DISK_FORMAT_HINTS.join(', ')}`);
      }
      out.format = format as NonNullable<DiskConfig['format']>;
    }
    if (serial !== undefined) {
      if (typeof serial !== 'string' || serial.length > 20 || !/^[\x20-\x7e]*$/.test(serial)) {
        throw invalid(`${where}.serial must be at most 20 printable ASCII characters`);
      }
      out.serial = serial;
    }
    return out;
  });
}

// The hypervisor's capabilities; throws NativeError (HV_NOT_FOUND, HV_PERMISSION_DENIED,
// ...) with a message that says how to fix the host.
export function probe(): Capabilities {
  try {
    return loadAddon().probe();
  } catch (err) {
    throw toNativeError(err);
  }
}

function invalid(message: string): NativeError {
  return new NativeError('INVALID_ARGUMENT', message);
}

function checkFile(label: string, path: unknown): string {
  if (typeof path !== 'string' || path.length === 0) throw invalid(`${label} must be a file path`);
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw invalid(`${label} ${path} does not exist`);
  }
  if (!isFile) throw invalid(`${label} ${path} is not a regular file`);
  return path;
}

// Validates a configuration; returns a copy with defaults filled in.
export function validateConfig(config: MachineConfig): Required<Omit<MachineConfig, 'initrdPath'>> & {
  initrdPath?: string;
} {
  const hostCpus = availableParallelism();
  const hostMiB = Math.floor(totalmem() / (1024 * 1024));
  const { memoryMiB, vcpus } = config;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 2 || memoryMiB > hostMiB) {
    throw invalid(`memoryMiB must be a whole number from 2 to ${hostMiB} (this host's memory), not ${String(memoryMiB)}`);
  }
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > hostCpus) {
    throw invalid(`vcpus must be a whole number from 1 to ${hostCpus} (this host's CPUs), not ${String(vcpus)}`);
  }
  const cmdline = config.cmdline ?? '';
  if (typeof cmdline !== 'string') throw invalid('cmdline must be a string');
  if (cmdline.includes('\0')) throw invalid('cmdline must not contain NUL characters');
  const out: Required<Omit<MachineConfig, 'initrdPath'>> & { initrdPath?: string } = {
    memoryMiB,
    vcpus,
    kernelPath: checkFile('kernel', config.kernelPath),
    cmdline,
    testExitPort: config.testExitPort ?? false,
    restartOnReset: config.restartOnReset ?? true,
    rng: config.rng ?? false,
    virtioConsole: config.virtioConsole ?? false,
    nics: checkNics(config.nics),
    disks: checkDisks(config.disks, (config.rng ? 1 : 0) + (config.virtioConsole ? 1 : 0)),
  };
  if (config.initrdPath !== undefined) out.initrdPath = checkFile('initrd', config.initrdPath);
  for (const key of ['testExitPort', 'restartOnReset', 'rng', 'virtioConsole'] as const) {
    if (typeof out[key] !== 'boolean') throw invalid(`${key} must be true or false`);
  }
  return out;
}

export class Machine {
  private readonly listeners = new Set<(event: MachineEvent) => void>();
  private exitEvent: ExitEvent | undefined;
  private readonly exitWaiters: ((event: ExitEvent) => void)[] = [];

  private readonly raw: RawMachine;

  private constructor() {
    this.raw = new (loadAddon().NativeMachine)((event) => this.dispatch(event));
  }

  // Checks the configuration, reserves memory and loads the kernel.
  static async create(config: MachineConfig): Promise<Machine> {
    const checked = validateConfig(config);
    const machine = new Machine();
    try {
      await machine.raw.create(checked);
    } catch (err) {
      throw toNativeError(err);
    }
    return machine;
  }

  on(listener: (event: MachineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private dispatch(event: MachineEvent): void {
    if (event.type === 'exit') {
      this.exitEvent = event;
      for (const resolve of this.exitWaiters.splice(0)) resolve(event);
    }
    for (const listener of this.listeners) listener(event);
  }

  private async call(op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (err) {
      throw toNativeError(err);
    }
  }

  start(options: { paused?: boolean } = {}): Promise<void> {
    return this.call(() => this.raw.start(options.paused ?? false));
  }
  pause(): Promise<void> {
    return this.call(() => this.raw.pause());
  }
  resume(): Promise<void> {
    return this.call(() => this.raw.resume());
  }
  // Turns the VM off at once, like pulling the power cord.
  stop(): Promise<void> {
    return this.call(() => this.raw.stop());
  }
  reset(): Promise<void> {
    return this.call(() => this.raw.reset());
  }

  // Types into COM1: the guest receives the bytes through the UART's receive interrupt.
  writeConsole(data: string | Uint8Array): void {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw invalid('writeConsole takes a string or a Uint8Array');
    }
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    try {
      this.raw.writeConsole(bytes);
    } catch (err) {
      throw toNativeError(err);
    }
  }

  // Types into the virtio console (config virtioConsole); its output arrives as 'console2'
  // events. Bytes written to a VM without one are dropped.
  writeConsole2(data: string | Uint8Array): void {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw invalid('writeConsole2 takes a string or a Uint8Array');
    }
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    try {
      this.raw.writeConsole2(bytes);
    } catch (err) {
      throw toNativeError(err);
    }
  }

  get state(): MachineState {
    return this.raw.state();
  }

  stats(): MachineStats {
    return this.raw.stats();
  }

  // Resolves when the VM stops, with the reason (and the guest's exit code, if any).
  waitForExit(): Promise<ExitEvent> {
    if (this.exitEvent) return Promise.resolve(this.exitEvent);
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }
}
