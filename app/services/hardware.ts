// A VM's hardware lists (disks on slots, network adapters) and creating a VM with its new
// disks, the same for the CLI (`vm new --disk`, `vm set --add-disk/--remove-disk/--add-nic/
// --remove-nic`) and the window (the New VM wizard, Settings). Changes are refused while the
// VM runs (no hot-plug), and every disk is checked before the configuration changes: a new
// file must open, a file another VM or a checkpoint uses is refused, a passthrough device
// must be free. New disk files go into the VM's disks/ folder and are removed again when the
// change fails.
import { promises as fs } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import {
  BerthError,
  ConfigError,
  deviceCountProblem,
  diskController,
  type DiskAttachment,
  type DiskController,
  type NetworkAdapter,
  type NewVmRequest,
  type VirtualDiskFormat,
  type VmConfig,
  type VmDetails,
} from '../api';
import { createDisk, inspectDisk } from '../native/disk';
import { diskCall, DiskService, type Use } from './disks';
import type { VmManager } from './manager';
import type { VmEntry } from './registry';
import { needsOffMessage } from './saved-state';

// controller: 'scsi' puts the disk on a Generation 1 or 2 VM's SCSI controller (default virtio).
export type DiskSpec =
  // name: the new file's name in the VM's disks/ folder (default disk<slot>.<format>).
  (
    | { kind: 'new'; sizeBytes: number; format?: VirtualDiskFormat; name?: string; slot?: number; readOnly?: boolean }
    | { kind: 'file'; path: string; slot?: number; readOnly?: boolean }
    | { kind: 'passthrough'; deviceId: string; slot?: number; readOnly?: boolean }
  ) & { controller?: DiskController };

// What a change may replace as a whole (the window's Settings sends whole lists).
export interface HardwarePatch {
  disks?: DiskAttachment[];
  network?: NetworkAdapter[];
}

interface Checking {
  uses: Map<string, Use[]>;
  others: VmEntry[];
  // Where new disk files are written, and where they will be when the VM is in place
  // (different only while a new VM is still being built).
  writeDir: string;
  finalDir: string;
  created: string[];
}

export class HardwareService {
  private readonly disks: DiskService;

  constructor(private readonly manager: VmManager) {
    this.disks = new DiskService(manager);
  }

  // Creates a VM with new, existing or passthrough disks in one step: when any disk fails,
  // the VM does not appear and no file of it is left.
  async createVm(request: NewVmRequest, specs: DiskSpec[]): Promise<VmDetails> {
    if (specs.length === 0) return this.manager.create(request);
    // Refused before any file is made.
    const all = [...(request.disks ?? []), ...specs];
    const scsi = all.filter((d) => diskController(d) === 'scsi').length;
    const tooMany = deviceCountProblem(
      all.length - scsi,
      request.network?.length ?? 0,
      (request.dvdDrives?.length ?? 0) + scsi,
    );
    if (tooMany) throw new ConfigError([`disks: ${tooMany}`]);
    const uses = await this.disks.uses();
    const others = (await this.manager.registry.list()).filter((e) => e.config);
    return this.manager.create(request, async (staging, final, config) => {
      const ctx: Checking = { uses, others, writeDir: staging.disks, finalDir: final.disks, created: [] };
      for (const spec of specs) config.disks.push(await this.resolveSpec(config, spec, ctx));
      config.disks.sort((a, b) => a.slot - b.slot);
      return config;
    });
  }

  // Adds disks to a VM that is off.
  async attach(ref: string, specs: DiskSpec[]): Promise<VmDetails> {
    return this.change(ref, 'add disks to', async (c, ctx) => {
      for (const spec of specs) c.disks.push(await this.resolveSpec(c, spec, ctx));
      c.disks.sort((a, b) => a.slot - b.slot);
    });
  }

  // Takes disks off their slots (the files stay where they are).
  async detach(ref: string, slots: number[]): Promise<VmDetails> {
    return this.change(ref, 'remove disks from', async (c) => {
      for (const slot of slots) {
        if (!c.disks.some((d) => d.slot === slot)) {
          throw new BerthError(
            'NOT_FOUND',
            `'${c.name}' has no disk on slot ${slot}; 'berth vm show ${c.name}' lists them`,
          );
        }
      }
      c.disks = c.disks.filter((d) => !slots.includes(d.slot));
    });
  }

  // Adds network adapters (a MAC is generated for each that has none).
  async addAdapters(ref: string, adapters: NetworkAdapter[]): Promise<VmDetails> {
    return this.change(ref, 'add network adapters to', async (c) => {
      c.network.push(...adapters);
    });
  }

  // Removes network adapters by MAC address or by position (0 = the first).
  async removeAdapters(ref: string, which: string[]): Promise<VmDetails> {
    return this.change(ref, 'remove network adapters from', async (c) => {
      const gone = which.map((w) => {
        const i = /^\d+$/.test(w) ? Number(w) : c.network.findIndex((n) => n.mac === w.toLowerCase());
        if (i < 0 || i >= c.network.length) {
          throw new BerthError(
            'NOT_FOUND',
            `'${c.name}' has no network adapter ${w}; give its MAC or its number (0 to ${c.network.length - 1}) ` +
              `as 'berth vm show ${c.name}' lists them`,
          );
        }
        return i;
      });
      c.network = c.network.filter((_, i) => !gone.includes(i));
    });
  }

  // Replaces the disk and network lists (VM Settings). Lists equal to the current ones are
  // no change, so saving other settings of a running VM is not refused because of them.
  async replace(ref: string, patch: HardwarePatch): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
    const disks = patch.disks !== undefined && !same(patch.disks, entry.config.disks) ? patch.disks : undefined;
    const network =
      patch.network !== undefined && !same(patch.network, entry.config.network) ? patch.network : undefined;
    if (disks === undefined && network === undefined) return this.manager.show(entry.id);
    const verb =
      disks && network
        ? 'change the disks and network adapters of'
        : disks
          ? 'change the disks of'
          : 'change the network adapters of';
    return this.change(entry.id, verb, async (c, ctx) => {
      if (network !== undefined) c.network = network;
      if (disks === undefined) return;
      const kept = (d: DiskAttachment): boolean => c.disks.some((o) => same(o, d));
      const next: DiskAttachment[] = [];
      for (const d of disks) {
        if (kept(d)) next.push(d);
        else if (d.kind === 'virtual') {
          next.push(
            await this.resolveSpec(
              { ...c, disks: next },
              { kind: 'file', path: d.path, slot: d.slot, readOnly: d.readOnly },
              ctx,
            ),
          );
        } else {
          next.push(
            await this.resolveSpec(
              { ...c, disks: next },
              { kind: 'passthrough', deviceId: d.deviceId, slot: d.slot, readOnly: d.readOnly },
              ctx,
            ),
          );
        }
      }
      c.disks = next.sort((a, b) => a.slot - b.slot);
    });
  }

  // Runs a change of a VM that must be off; files it created are removed when it fails.
  private async change(
    ref: string,
    verb: string,
    edit: (c: VmConfig, ctx: Checking) => Promise<void>,
  ): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    const ctx: Checking = {
      uses: await this.disks.uses(),
      others: (await this.manager.registry.list()).filter((e) => e.id !== entry.id && e.config),
      writeDir: entry.paths.disks,
      finalDir: entry.paths.disks,
      created: [],
    };
    try {
      await this.manager.registry.update(entry.id, verb, async (c) => {
        const { state } = await this.manager.state(entry.id);
        if (state !== 'Off' && state !== 'Failed') {
          throw new BerthError('INVALID_STATE', needsOffMessage(`${verb} '${c.name}'`, c.name, state));
        }
        await edit(c, ctx);
        return c;
      });
    } catch (err) {
      for (const f of ctx.created) await fs.rm(f, { force: true });
      throw err;
    }
    return this.manager.show(entry.id);
  }

  // One disk for slot `spec.slot` (or the first free one) of VM c, checked.
  private async resolveSpec(c: VmConfig, spec: DiskSpec, ctx: Checking): Promise<DiskAttachment> {
    const slot = spec.slot ?? HardwareService.freeSlot(c);
    const clash = c.disks.find((d) => d.slot === slot);
    if (clash) {
      throw new BerthError(
        'INVALID_STATE',
        `slot ${slot} of '${c.name}' already holds ${clash.kind === 'virtual' ? clash.path : clash.deviceId}; ` +
          `remove it first (--remove-disk ${slot}) or choose another slot`,
      );
    }
    const readOnly = spec.readOnly ?? false;
    const on = spec.controller === 'scsi' ? { controller: 'scsi' as const } : {};
    if (spec.kind === 'new') {
      const format = spec.format ?? 'qcow2';
      const name = spec.name ?? (await HardwareService.freeName(ctx.finalDir, `disk${slot}`, format));
      if (name !== basename(name) || name === '.' || name === '..' || name === '') {
        throw new BerthError('INVALID_CONFIG', `disk name '${name}' must be a file name without folders`);
      }
      const written = join(ctx.writeDir, name);
      const final = join(ctx.finalDir, name);
      if (await fs.stat(final).catch(() => undefined)) {
        throw new BerthError('CONFLICT', `${final} already exists; choose another name for the new disk`);
      }
      await fs.mkdir(ctx.writeDir, { recursive: true, mode: 0o700 });
      await diskCall(() => createDisk(written, { format, size: spec.sizeBytes }));
      ctx.created.push(written);
      return { slot, kind: 'virtual', path: final, readOnly, ...on };
    }
    if (spec.kind === 'file') {
      const path = resolve(spec.path);
      await diskCall(() => inspectDisk(path));
      const use = (ctx.uses.get(path) ?? []).find((u) => u.vm !== c.name || u.how === 'checkpoint');
      if (use) throw DiskService.refusal(path, 'attach', use);
      return { slot, kind: 'virtual', path, readOnly, ...on };
    }
    const deviceId = this.disks.checkPassthrough(spec.deviceId).stableId ?? spec.deviceId;
    const taken = ctx.others.find((e) =>
      e.config?.disks.some((d) => d.kind === 'passthrough' && d.deviceId === deviceId),
    );
    if (taken) {
      throw new BerthError(
        'IN_USE',
        `${deviceId} is already mapped to VM '${taken.config?.name ?? taken.id}'; a passthrough disk belongs to one VM`,
      );
    }
    return { slot, kind: 'passthrough', deviceId, readOnly, ...on };
  }

  private static freeSlot(c: VmConfig): number {
    for (let s = 0; ; s++) if (!c.disks.some((d) => d.slot === s)) return s;
  }

  private static async freeName(dir: string, stem: string, ext: string): Promise<string> {
    for (let i = 0; ; i++) {
      const name = `${stem}${i === 0 ? '' : `-${i}`}.${ext}`;
      if (!(await fs.stat(join(dir, name)).catch(() => undefined))) return name;
    }
  }
}
