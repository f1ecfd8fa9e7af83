// What must hold before a VM is created or its worker spawns, checked here so the refusal
// names the file (the worker would only say it could not read it): boot files, virtual disk
// files, DVD images (DVD_MEDIA_NOT_FOUND naming drive and path), then, for Generation 1 and
// 2, the host's firmware and the VM's variable store (firmware.ts).
import { promises as fs } from 'node:fs';
import { resolve as resolvePath } from 'node:path';

import { BerthError, ConfigError, type VmConfig } from '../api';
import { checkDvdMedia } from './dvd';
import { prepareFirmware, type StartFirmware } from './firmware';
import type { VmPaths } from './paths';

// Boot files must exist when they are set (the worker checks again at start).
export async function checkBootFiles(config: VmConfig): Promise<void> {
  await checkDvdMedia(config, '.', 'create');
  if (config.boot.kind !== 'pvh' && config.boot.kind !== 'linux') return;
  const files: [string, string | undefined][] = [
    ['boot.kernelPath', config.boot.kernelPath],
    ['boot.initrdPath', config.boot.initrdPath],
  ];
  for (const [field, path] of files) {
    if (path === undefined) continue;
    const stat = await fs.stat(path).catch(() => undefined);
    if (!stat) throw new ConfigError([`${field}: ${path} does not exist`]);
    if (!stat.isFile()) throw new ConfigError([`${field}: ${path} is not a file`]);
  }
}

// The boot files must still exist when the VM starts; the worker would say only that it
// could not read them.
async function checkKernelFiles(config: VmConfig, folder: string): Promise<void> {
  if (config.boot.kind !== 'pvh' && config.boot.kind !== 'linux') return;
  for (const [label, path] of [
    ['kernel', config.boot.kernelPath],
    ['initrd', config.boot.initrdPath],
  ] as const) {
    if (path === undefined) continue;
    const stat = await fs.stat(resolvePath(folder, path)).catch(() => undefined);
    if (!stat || !stat.isFile()) {
      throw new BerthError(
        'START_FAILED',
        `cannot start '${config.name}': ${label} ${path} ${stat ? 'is not a regular file' : 'does not exist'}`,
      );
    }
  }
}

// Virtual disk files must exist when the VM starts (the worker would fail less clearly).
async function checkDiskFiles(config: VmConfig, folder: string): Promise<void> {
  for (const [i, d] of config.disks.entries()) {
    if (d.kind !== 'virtual') continue;
    const stat = await fs.stat(resolvePath(folder, d.path)).catch(() => undefined);
    if (!stat) throw new ConfigError([`disks[${i}].path: ${d.path} (slot ${d.slot}) does not exist`]);
  }
}

// Everything a start needs, in the order the refusals make sense; returns the firmware files
// a Generation 1 or 2 VM's worker spec names.
export async function checkStartFiles(config: VmConfig, paths: VmPaths): Promise<StartFirmware | undefined> {
  await checkKernelFiles(config, paths.folder);
  await checkDiskFiles(config, paths.folder);
  await checkDvdMedia(config, paths.folder);
  return prepareFirmware(config, paths);
}
