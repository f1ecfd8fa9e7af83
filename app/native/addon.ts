// Loads the compiled VMM addon. This module is the only place that touches the .node file;
// everything else goes through the typed wrappers in this folder.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { NativeError } from './errors';
import type { NicConfig } from './nics';

export type RawEvent =
  | { type: 'state'; state: 'created' | 'running' | 'paused' | 'stopped' }
  | { type: 'console'; data: Uint8Array }
  // Output of the virtio console (config virtioConsole).
  | { type: 'console2'; data: Uint8Array }
  | { type: 'reset'; reason: string }
  | { type: 'exit'; reason: 'guest-exit' | 'reset' | 'power-off' | 'stopped' | 'error'; code: number; detail: string };

export interface RawMachineConfig {
  memoryMiB: number;
  vcpus: number;
  kernelPath: string;
  initrdPath?: string;
  cmdline: string;
  testExitPort: boolean;
  restartOnReset: boolean;
  rng: boolean;
  virtioConsole: boolean;
  nics: NicConfig[];
  disks: RawDiskConfig[];
}

export interface RawDiskConfig {
  path: string;
  readOnly?: boolean;
  format?: string;
  serial?: string;
}

export interface RawVcpuStats {
  id: number;
  exits: { io: number; mmio: number; halt: number; interrupted: number; shutdown: number; other: number };
  cpuTimeMs: number;
}

// One virtio-blk disk: the asynchronous path its requests take ('io_uring', 'threads', or
// 'serial' for a driver without a parallel path), its request queues, the
// requests it completed and the most it had on the disk at once.
export interface RawDiskStats {
  path: string;
  ioBackend: string;
  queues: number;
  completedRequests: number;
  peakInFlight: number;
}

export interface RawStats {
  uptimeMs: number;
  rssBytes: number;
  peakRssBytes: number;
  memoryBytes: number;
  resets: number;
  bootProtocol: string;
  vcpus: RawVcpuStats[];
  disks: RawDiskStats[];
}

export interface RawMachine {
  create(config: RawMachineConfig): Promise<void>;
  start(paused: boolean): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
  reset(): Promise<void>;
  writeConsole(data: Uint8Array): void;
  writeConsole2(data: Uint8Array): void;
  stats(): RawStats;
  state(): 'created' | 'running' | 'paused' | 'stopped';
}

export interface RawCapabilities {
  backend: string;
  apiVersion: number;
  maxVcpus: number;
  irqchip: boolean;
  ioeventfd: boolean;
  irqfd: boolean;
  immediateExit: boolean;
}

export interface Addon {
  probe(): RawCapabilities;
  NativeMachine: new (onEvent: (event: RawEvent) => void) => RawMachine;
}

let loaded: Addon | undefined;

// The addon lives in native/build/Release during development and next to the app
// (outside the asar archive) when packaged; BERTH_ADDON overrides both.
export function addonPath(): string {
  if (process.env['BERTH_ADDON']) return process.env['BERTH_ADDON'];
  return join(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'berth.node');
}

export function loadAddon(): Addon {
  if (loaded) return loaded;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new NativeError(
      'ADDON_NOT_BUILT',
      `the Berth VMM addon is missing at ${path}: run 'npm run build:native' (or 'npm run build')`,
    );
  }
  // The compiled addon's shape is declared by Addon above; the binding checks arguments again.
  loaded = require(path) as Addon;
  return loaded;
}
