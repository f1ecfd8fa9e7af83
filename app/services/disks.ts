// Virtual disks (New Virtual Hard Disk, Inspect, Edit Disk) and who uses each disk file.
// Edits are refused when they would pull a file out from under someone: a disk a running
// VM has open, or a file of a checkpoint chain, unless the operation only reads it
// (inspect; convert to a new file; merge into a new file). Every refusal names the VM and
// the checkpoint. Disks on VM slots are in hardware.ts.
import { resolve } from 'node:path';

import { BerthError, isErrorCode, type HostDisk, type VirtualDiskFormat } from '../api';
import {
  compactDisk,
  convertDisk,
  createDisk,
  expandDisk,
  inspectDisk,
  mergeDisk,
  minShrinkSize,
  reconnectDisk,
  shrinkDisk,
  type DiskInspection,
  type OperationOptions,
} from '../native/disk';
import { NativeError } from '../native/errors';
import { listHostBlockDevices } from '../native/host-disks';
import { checkpointFilesOf } from './checkpoints';
import type { VmManager } from './manager';

export interface Use {
  vm: string;
  // open: a running VM has it open; checkpoint: a checkpoint's file (or its chain);
  // attached: a VM that is off uses it as a disk; backing: the parent of a VM's disk.
  how: 'open' | 'checkpoint' | 'attached' | 'backing';
  detail: string;
  // open by a VM that is Saved: its saved state expects the disk unchanged.
  saved?: true;
}

// Native disk errors become service errors with the same code (DISK_CORRUPT stays
// DISK_CORRUPT); a cancel is the services' CANCELLED, which ends an operation as cancelled.
export async function diskCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof NativeError) {
      throw new BerthError(err.code === 'DISK_CANCELLED' ? 'CANCELLED' : err.code, err.message);
    }
    throw err;
  }
}

// A backing chain that could not be followed, with the native code inspect reported.
export function chainFailure(file: string, chainError: { code: string; message: string }): BerthError {
  return new BerthError(isErrorCode(chainError.code) ? chainError.code : 'DISK_OPEN', `${file}: ${chainError.message}`);
}

export class DiskService {
  constructor(private readonly manager: VmManager) {}

  // Who uses each disk file: every VM's disks (and their backing chains), and the files of
  // every checkpoint.
  async uses(): Promise<Map<string, Use[]>> {
    const out = new Map<string, Use[]>();
    const add = (file: string, use: Use): void => {
      const f = resolve(file);
      out.set(f, [...(out.get(f) ?? []), use]);
    };
    for (const entry of await this.manager.registry.list()) {
      const config = entry.config;
      if (!config) continue;
      const { state } = await this.manager.state(entry.id).catch(() => ({ state: 'Off' as const }));
      const running = state !== 'Off' && state !== 'Failed';
      for (const d of config.disks) {
        if (d.kind !== 'virtual') continue;
        const top = resolve(entry.paths.folder, d.path);
        const chain = await inspectDisk(top)
          .then((i) => i.images.map((x) => x.path))
          .catch(() => [top]);
        chain.forEach((file, i) => {
          if (running) {
            add(file, {
              vm: config.name,
              how: 'open',
              detail: `slot ${d.slot}`,
              ...(state === 'Saved' ? { saved: true } : {}),
            });
          } else if (i === 0) add(file, { vm: config.name, how: 'attached', detail: `slot ${d.slot}` });
          else add(file, { vm: config.name, how: 'backing', detail: `the parent of its disk on slot ${d.slot}` });
        });
      }
      const named = await checkpointFilesOf(entry.paths.folder).catch(() => new Map<string, string>());
      for (const [file, what] of named) {
        const chain = await inspectDisk(file)
          .then((i) => i.images.map((x) => x.path))
          .catch(() => [file]);
        for (const f of chain) add(f, { vm: config.name, how: 'checkpoint', detail: what });
      }
    }
    return out;
  }

  static refusal(file: string, verb: string, use: Use): BerthError {
    switch (use.how) {
      case 'open':
        if (use.saved) {
          return new BerthError(
            'IN_USE',
            `cannot ${verb} ${file}: VM '${use.vm}' is Saved and its saved state expects this disk unchanged ` +
              `(${use.detail}); delete the saved state first ('berth vm delete-saved-state ${use.vm}'), ` +
              'or start the VM and shut it down',
          );
        }
        return new BerthError(
          'IN_USE',
          `cannot ${verb} ${file}: VM '${use.vm}' is running and has it open (${use.detail}); stop the VM first`,
        );
      case 'checkpoint':
        return new BerthError(
          'IN_USE',
          `cannot ${verb} ${file}: it is part of ${use.detail} of VM '${use.vm}' (a checkpoint chain); ` +
            'editing it would change what the checkpoint holds; delete the checkpoint first, or convert it to a new file',
        );
      case 'backing':
        return new BerthError(
          'IN_USE',
          `cannot ${verb} ${file}: it is ${use.detail} of VM '${use.vm}'; editing it would corrupt that disk`,
        );
      case 'attached':
        return new BerthError(
          'IN_USE',
          `cannot ${verb} ${file}: VM '${use.vm}' uses it as its disk on ${use.detail}; detach it first`,
        );
    }
  }

  // Refuses when any use of the file is in `refused`.
  private async guard(file: string, verb: string, refused: Use['how'][]): Promise<void> {
    const uses = (await this.uses()).get(resolve(file)) ?? [];
    // The most telling reason first: a running VM, then a checkpoint, then the rest.
    const order: Use['how'][] = ['open', 'checkpoint', 'backing', 'attached'];
    const bad = order.flatMap((how) => uses.filter((u) => u.how === how && refused.includes(how)))[0];
    if (bad) throw DiskService.refusal(file, verb, bad);
  }

  async create(
    path: string,
    options: { sizeBytes?: number; format?: VirtualDiskFormat; fixed?: boolean; parent?: string },
  ): Promise<DiskInspection> {
    const format = options.format ?? 'qcow2';
    const o: Parameters<typeof createDisk>[1] = { format };
    if (options.sizeBytes !== undefined) o.size = options.sizeBytes;
    if (options.fixed) o.fixed = true;
    if (options.parent !== undefined) o.backingPath = options.parent;
    await diskCall(() => createDisk(resolve(path), o));
    return this.inspect(path);
  }

  inspect(path: string): Promise<DiskInspection> {
    return diskCall(() => inspectDisk(resolve(path)));
  }

  // Reading a chain member into a new file is safe; reading a running VM's writable disk
  // is not (the copy would be torn).
  async convert(
    src: string,
    dst: string,
    target: { format: VirtualDiskFormat; fixed?: boolean },
    options: OperationOptions = {},
  ): Promise<DiskInspection> {
    const uses = (await this.uses()).get(resolve(src)) ?? [];
    const running = uses.find((u) => u.how === 'open');
    if (running) {
      const top = await this.topOfRunning(src);
      if (top) throw DiskService.refusal(src, 'convert', running);
    }
    await diskCall(() => convertDisk(resolve(src), resolve(dst), target, options));
    return this.inspect(dst);
  }

  // True when a running VM writes to this file (its top file, not a parent in the chain).
  private async topOfRunning(file: string): Promise<boolean> {
    for (const entry of await this.manager.registry.list()) {
      if (!entry.config) continue;
      const { state } = await this.manager.state(entry.id);
      if (state === 'Off' || state === 'Failed') continue;
      if (
        entry.config.disks.some((d) => d.kind === 'virtual' && resolve(entry.paths.folder, d.path) === resolve(file))
      ) {
        return true;
      }
    }
    return false;
  }

  async resize(path: string, sizeBytes: number, options: OperationOptions = {}): Promise<DiskInspection> {
    await this.guard(path, 'resize', ['open', 'checkpoint', 'backing']);
    const current = (await this.inspect(path)).images[0]?.virtualSize ?? 0;
    if (sizeBytes > current) await diskCall(() => expandDisk(resolve(path), sizeBytes));
    else if (sizeBytes < current) await diskCall(() => shrinkDisk(resolve(path), sizeBytes, options));
    return this.inspect(path);
  }

  // The smallest size a shrink can reach (reads the whole image).
  minShrinkSize(path: string, options: OperationOptions = {}): Promise<number> {
    return diskCall(() => minShrinkSize(resolve(path), options));
  }

  async compact(path: string, options: OperationOptions = {}): Promise<DiskInspection> {
    await this.guard(path, 'compact', ['open', 'checkpoint', 'backing']);
    await diskCall(() => compactDisk(resolve(path), options));
    return this.inspect(path);
  }

  // Into its parent (the parent changes and the child goes away) or into a new file (only
  // reads the chain).
  async merge(
    child: string,
    target: { into: 'parent' } | { into: 'new'; path: string; format: VirtualDiskFormat },
    options: OperationOptions = {},
  ): Promise<DiskInspection> {
    if (target.into === 'parent') {
      const parent = (await this.inspect(child)).images[1]?.path;
      if (parent === undefined) {
        throw new BerthError('DISK_NO_BACKING', `${child} is not a differencing disk: it has no parent to merge into`);
      }
      await this.guard(child, 'merge', ['open', 'checkpoint', 'backing', 'attached']);
      await this.guard(parent, 'merge into', ['open', 'checkpoint', 'backing', 'attached']);
      await diskCall(() => mergeDisk(resolve(child), { into: 'parent' }, options));
      return this.inspect(parent);
    }
    if (await this.topOfRunning(child)) await this.guard(child, 'merge', ['open']);
    await diskCall(() =>
      mergeDisk(resolve(child), { into: 'new', path: resolve(target.path), format: target.format }, options),
    );
    return this.inspect(target.path);
  }

  async reconnect(child: string, parent: string): Promise<DiskInspection> {
    await this.guard(child, 'reconnect', ['open', 'checkpoint', 'backing']);
    await diskCall(() => reconnectDisk(resolve(child), resolve(parent)));
    return this.inspect(child);
  }

  // ---- passthrough -------------------------------------------------------------------

  hostDisks(): HostDisk[] {
    return listHostBlockDevices();
  }

  // The device with this stable id, if it may be given to a VM; otherwise why not.
  checkPassthrough(deviceId: string): HostDisk {
    const all = this.hostDisks();
    // By stable id, or by /dev path (checked the same way; the stable id is what is stored).
    const d = all.find((x) => x.stableId === deviceId || x.devicePath === deviceId);
    if (!d) {
      throw new BerthError(
        'NOT_FOUND',
        `no block device with id '${deviceId}' is attached to this host; 'berth host disks' lists them`,
      );
    }
    const label = `${deviceId} (${d.devicePath})`;
    if (d.system) {
      throw new BerthError(
        'IN_USE',
        `${label} is the system disk (it holds ${d.mounts.filter((m) => m === '/' || m.startsWith('/boot')).join(', ') || '/'}); ` +
          'Berth never gives the host system disk to a VM',
      );
    }
    if (d.mounts.length > 0) {
      throw new BerthError(
        'IN_USE',
        `${label} is mounted on ${d.mounts.join(', ')}; unmount it (and its partitions) before mapping it to a VM`,
      );
    }
    if (d.stableId === null) {
      throw new BerthError(
        'INVALID_STATE',
        `${label} has no stable id (no /dev/disk/by-id link), so Berth could not find it again after a reboot`,
      );
    }
    if (d.inUse) {
      throw new BerthError(
        'IN_USE',
        `${label} is in use (${d.inUseBy.join('; ')}); release it before mapping it to a VM`,
      );
    }
    return d;
  }
}
