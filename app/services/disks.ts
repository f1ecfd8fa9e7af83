// Virtual disks (New Virtual Hard Disk, Inspect, Edit Disk) and the disks attached to VMs.
// Edits are refused when they would pull a file out from under someone: a disk a running
// VM has open, or a file of a checkpoint chain, unless the operation only reads it
// (inspect; convert to a new file; merge into a new file). Every refusal names the VM and
// the checkpoint.
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';

import {
  BerthError,
  type DiskAttachment,
  type HostDisk,
  type VirtualDiskFormat,
  type VmConfig,
  type VmDetails,
} from '../api';
import {
  compactDisk,
  convertDisk,
  createDisk,
  expandDisk,
  inspectDisk,
  mergeDisk,
  reconnectDisk,
  shrinkDisk,
  type DiskInspection,
  type OperationOptions,
} from '../native/disk';
import { listHostBlockDevices } from '../native/host-disks';
import { checkpointFilesOf } from './checkpoints';
import type { VmManager } from './manager';

export type DiskSpec =
  | { kind: 'new'; sizeBytes: number; format?: VirtualDiskFormat; slot?: number; readOnly?: boolean }
  | { kind: 'file'; path: string; slot?: number; readOnly?: boolean }
  | { kind: 'passthrough'; deviceId: string; slot?: number; readOnly?: boolean };

interface Use {
  vm: string;
  // open: a running VM has it open; checkpoint: a checkpoint's file (or its chain);
  // attached: a VM that is off uses it as a disk; backing: the parent of a VM's disk.
  how: 'open' | 'checkpoint' | 'attached' | 'backing';
  detail: string;
}

// Native disk errors become service errors that keep the native code in the message.
export async function diskCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err as { name?: string; code?: string; message?: string };
    if (e.name === 'NativeError') {
      if (e.code === 'DISK_CANCELLED') throw new BerthError('CANCELLED', e.message ?? 'cancelled');
      throw new BerthError('DISK', `${e.message ?? ''} (${e.code ?? ''})`);
    }
    throw err;
  }
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
          if (running) add(file, { vm: config.name, how: 'open', detail: `slot ${d.slot}` });
          else if (i === 0) add(file, { vm: config.name, how: 'attached', detail: `slot ${d.slot}` });
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

  private static refusal(file: string, verb: string, use: Use): BerthError {
    switch (use.how) {
      case 'open':
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
        throw new BerthError('DISK', `${child} is not a differencing disk: it has no parent to merge into`);
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

  // ---- disks on VM slots ---------------------------------------------------------------

  // Adds disks to a VM that is off. New disks are created in the VM's disks/ folder.
  async attach(ref: string, specs: DiskSpec[]): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    const uses = await this.uses();
    const others = (await this.manager.registry.list()).filter((e) => e.id !== entry.id && e.config);
    const created: string[] = [];
    try {
      await this.manager.registry.update(entry.id, 'attach disks', async (c) => {
        await this.assertOff(entry.id, c, 'add disks to');
        for (const spec of specs) {
          const slot = spec.slot ?? DiskService.freeSlot(c);
          const clash = c.disks.find((d) => d.slot === slot);
          if (clash) {
            throw new BerthError(
              'INVALID_STATE',
              `slot ${slot} of '${c.name}' already holds ${clash.kind === 'virtual' ? clash.path : clash.deviceId}; ` +
                `remove it first (--remove-disk ${slot}) or choose another slot`,
            );
          }
          let disk: DiskAttachment;
          if (spec.kind === 'new') {
            const format = spec.format ?? 'qcow2';
            const path = await DiskService.freeName(entry.paths.disks, `disk${slot}`, format);
            await fs.mkdir(entry.paths.disks, { recursive: true, mode: 0o700 });
            await diskCall(() => createDisk(path, { format, size: spec.sizeBytes }));
            created.push(path);
            disk = { slot, kind: 'virtual', path, readOnly: spec.readOnly ?? false };
          } else if (spec.kind === 'file') {
            const path = resolve(spec.path);
            await diskCall(() => inspectDisk(path));
            const use = (uses.get(path) ?? []).find((u) => u.vm !== c.name || u.how === 'checkpoint');
            if (use) throw DiskService.refusal(path, 'attach', use);
            disk = { slot, kind: 'virtual', path, readOnly: spec.readOnly ?? false };
          } else {
            const deviceId = this.checkPassthrough(spec.deviceId).stableId ?? spec.deviceId;
            const taken = others.find((e) =>
              e.config?.disks.some((d) => d.kind === 'passthrough' && d.deviceId === deviceId),
            );
            if (taken) {
              throw new BerthError(
                'IN_USE',
                `${deviceId} is already mapped to VM '${taken.config?.name ?? taken.id}'; a passthrough disk belongs to one VM`,
              );
            }
            disk = { slot, kind: 'passthrough', deviceId, readOnly: spec.readOnly ?? false };
          }
          c.disks.push(disk);
        }
        c.disks.sort((a, b) => a.slot - b.slot);
        return c;
      });
    } catch (err) {
      for (const f of created) await fs.rm(f, { force: true });
      throw err;
    }
    return this.manager.show(entry.id);
  }

  // Takes disks off their slots (the files stay where they are).
  async detach(ref: string, slots: number[]): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    await this.manager.registry.update(entry.id, 'detach disks', async (c) => {
      await this.assertOff(entry.id, c, 'remove disks from');
      for (const slot of slots) {
        if (!c.disks.some((d) => d.slot === slot)) {
          throw new BerthError('NOT_FOUND', `'${c.name}' has no disk on slot ${slot}`);
        }
      }
      c.disks = c.disks.filter((d) => !slots.includes(d.slot));
      return c;
    });
    return this.manager.show(entry.id);
  }

  private async assertOff(id: string, c: VmConfig, verb: string): Promise<void> {
    const { state } = await this.manager.state(id);
    if (state !== 'Off' && state !== 'Failed') {
      throw new BerthError('INVALID_STATE', `cannot ${verb} '${c.name}' while it is ${state}; turn it off first`);
    }
  }

  private static freeSlot(c: VmConfig): number {
    for (let s = 0; ; s++) if (!c.disks.some((d) => d.slot === s)) return s;
  }

  private static async freeName(dir: string, stem: string, ext: string): Promise<string> {
    for (let i = 0; ; i++) {
      const p = join(dir, `${stem}${i === 0 ? '' : `-${i}`}.${ext}`);
      if (!(await fs.stat(p).catch(() => undefined))) return p;
    }
  }
}
