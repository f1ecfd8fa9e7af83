// DVD drives of Generation 1 and 2 VMs (on their SCSI controller), the same for the CLI
// (`berth vm dvd ...`) and the window (Settings, Media). Adding and removing drives needs
// the VM off; changing the media works off (the configuration changes) and while the VM
// runs or is paused (the worker's 'media' request, then the configuration follows, so the
// media stays in the drive after a restart, as in Hyper-V).
import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';

import {
  BerthError,
  ConfigError,
  deviceCountProblem,
  diskController,
  generationOf,
  isFirmwareBoot,
  MAX_DVD_DRIVES,
  MAX_DVD_SLOTS,
  WorkerSpec,
  type DvdDrive,
  type VmConfig,
  type VmDetails,
} from '../api';
import { readJsonIfExists } from './fsutil';
import type { VmManager } from './manager';
import { needsOffMessage } from './saved-state';

// An ISO 9660 image has "CD001" at byte 0x8001 (hybrid images too); a UDF one starts its
// volume recognition sequence there with "BEA01".
const ISO_MAGIC_OFFSET = 0x8001;
const ISO_MAGICS = ['CD001', 'BEA01'];

// Checks that path is an ISO image: DVD_MEDIA_NOT_FOUND or DVD_MEDIA_INVALID, naming `drive`.
export async function checkIso(path: string, drive: string): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new BerthError('DVD_MEDIA_NOT_FOUND', `${drive}: the image ${path} does not exist`);
  if (!st.isFile()) throw new BerthError('DVD_MEDIA_INVALID', `${drive}: ${path} is not a file`);
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new BerthError('DVD_MEDIA_INVALID', `${drive}: cannot read ${path} (${err.code ?? err.message})`);
  });
  try {
    const buf = Buffer.alloc(5);
    const { bytesRead } = await fh.read(buf, 0, 5, ISO_MAGIC_OFFSET);
    if (bytesRead !== 5 || !ISO_MAGICS.includes(buf.toString('latin1'))) {
      throw new BerthError(
        'DVD_MEDIA_INVALID',
        `${drive}: ${path} is not a bootable image file (.iso): it has no ISO 9660 or UDF volume descriptor`,
      );
    }
  } finally {
    await fh.close();
  }
}

export function driveLabel(vmName: string, slot: number): string {
  return `DVD drive ${slot} of '${vmName}'`;
}

// Every drive's image must be there when the VM starts (the worker would fail less clearly)
// or is created.
export async function checkDvdMedia(config: VmConfig, folder: string, verb = 'start'): Promise<void> {
  for (const d of config.dvdDrives) {
    if (d.path !== undefined) {
      await checkIso(resolve(folder, d.path), `cannot ${verb} '${config.name}': DVD drive ${d.slot}`);
    }
  }
}

export interface DvdList {
  vm: string;
  generation: 1 | 2 | null;
  drives: DvdDrive[];
}

function requireFirmware(c: VmConfig): void {
  if (!isFirmwareBoot(c.boot)) {
    throw new BerthError(
      'INVALID_CONFIG',
      `'${c.name}' boots a kernel file directly and has no SCSI controller for DVD drives; DVD drives are for ` +
        'Generation 1 and 2 VMs',
    );
  }
}

function findDrive(c: VmConfig, slot: number | undefined): DvdDrive {
  const sorted = [...c.dvdDrives].sort((a, b) => a.slot - b.slot);
  const drive = slot === undefined ? sorted[0] : sorted.find((d) => d.slot === slot);
  if (drive) return drive;
  if (c.dvdDrives.length === 0) {
    throw new BerthError('NOT_FOUND', `'${c.name}' has no DVD drive; add one with 'berth vm dvd add ${c.name}'`);
  }
  throw new BerthError(
    'NOT_FOUND',
    `'${c.name}' has no DVD drive ${slot ?? ''}; its drives are ${sorted.map((d) => d.slot).join(', ')}`,
  );
}

export class DvdService {
  constructor(private readonly manager: VmManager) {}

  async list(ref: string): Promise<DvdList> {
    const { config } = await this.manager.registry.resolve(ref);
    return {
      vm: config.name,
      generation: generationOf(config.boot) ?? null,
      drives: [...config.dvdDrives].sort((a, b) => a.slot - b.slot),
    };
  }

  // Adds a drive (the first free slot unless given), empty or with an image.
  async add(ref: string, drive: { slot?: number; path?: string } = {}): Promise<VmDetails> {
    return this.offline(ref, 'add a DVD drive to', async (c) => {
      requireFirmware(c);
      if (c.dvdDrives.length >= MAX_DVD_DRIVES) {
        throw new ConfigError([`dvdDrives: a VM can have at most ${MAX_DVD_DRIVES} DVD drives`]);
      }
      let slot = drive.slot;
      if (slot === undefined) for (slot = 0; c.dvdDrives.some((d) => d.slot === slot); slot++);
      if (slot >= MAX_DVD_SLOTS)
        throw new ConfigError([`dvdDrives: slot ${slot} is out of range (0 to ${MAX_DVD_SLOTS - 1})`]);
      if (c.dvdDrives.some((d) => d.slot === slot)) {
        throw new BerthError('INVALID_STATE', `'${c.name}' already has DVD drive ${slot}; choose another slot`);
      }
      const scsiDisks = c.disks.filter((d) => diskController(d) === 'scsi').length;
      const tooMany = deviceCountProblem(
        c.disks.length - scsiDisks,
        c.network.length,
        c.dvdDrives.length + 1 + scsiDisks,
      );
      if (tooMany) throw new ConfigError([`dvdDrives: ${tooMany}`]);
      const added: DvdDrive = { slot };
      if (drive.path !== undefined) {
        added.path = resolve(drive.path);
        await checkIso(added.path, driveLabel(c.name, slot));
      }
      c.dvdDrives = [...c.dvdDrives, added].sort((a, b) => a.slot - b.slot);
    });
  }

  async remove(ref: string, slot: number | undefined): Promise<VmDetails> {
    return this.offline(ref, 'remove a DVD drive from', async (c) => {
      const gone = findDrive(c, slot);
      c.dvdDrives = c.dvdDrives.filter((d) => d.slot !== gone.slot);
    });
  }

  // Puts an image into a drive (the first drive unless slot is given), replacing its media.
  insert(ref: string, iso: string, slot?: number): Promise<VmDetails> {
    return this.media(ref, slot, resolve(iso));
  }

  eject(ref: string, slot?: number): Promise<VmDetails> {
    return this.media(ref, slot, undefined);
  }

  // The window's Settings: the whole list. While the VM runs only the media may differ.
  async replace(ref: string, drives: DvdDrive[]): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    const c = entry.config;
    const same = (a: DvdDrive[], b: DvdDrive[]): boolean =>
      JSON.stringify(a.map((d) => [d.slot, d.path ?? null])) === JSON.stringify(b.map((d) => [d.slot, d.path ?? null]));
    const next = [...drives].sort((a, b) => a.slot - b.slot);
    const current = [...c.dvdDrives].sort((a, b) => a.slot - b.slot);
    if (same(next, current)) return this.manager.show(entry.id);
    const { state } = await this.manager.state(entry.id);
    const sameSlots = next.map((d) => d.slot).join() === current.map((d) => d.slot).join();
    if ((state === 'Running' || state === 'Paused') && sameSlots) {
      let vm: VmDetails | undefined;
      for (const d of next) {
        const before = current.find((x) => x.slot === d.slot);
        if ((before?.path ?? null) !== (d.path ?? null)) vm = await this.media(entry.id, d.slot, d.path);
      }
      return vm ?? this.manager.show(entry.id);
    }
    return this.offline(entry.id, 'change the DVD drives of', async (cfg) => {
      if (next.length > 0) requireFirmware(cfg);
      for (const d of next) {
        const old = current.find((x) => x.slot === d.slot);
        if (d.path !== undefined && d.path !== old?.path) await checkIso(resolve(d.path), driveLabel(cfg.name, d.slot));
      }
      cfg.dvdDrives = next.map((d) =>
        d.path === undefined ? { slot: d.slot } : { slot: d.slot, path: resolve(d.path) },
      );
    });
  }

  private async media(ref: string, slot: number | undefined, path: string | undefined): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    const c = entry.config;
    requireFirmware(c);
    const drive = findDrive(c, slot);
    const label = driveLabel(c.name, drive.slot);
    if (path !== undefined) await checkIso(path, label);
    const { state } = await this.manager.state(entry.id);
    const setMedia = (cfg: VmConfig): VmConfig => {
      cfg.dvdDrives = cfg.dvdDrives.map((d) =>
        d.slot === drive.slot ? (path === undefined ? { slot: d.slot } : { slot: d.slot, path }) : d,
      );
      return cfg;
    };
    if (state === 'Off' || state === 'Failed') {
      await this.manager.registry.update(entry.id, path === undefined ? 'eject a DVD' : 'insert a DVD', setMedia);
      return this.manager.show(entry.id);
    }
    if (state !== 'Running' && state !== 'Paused') {
      const verb = path === undefined ? `eject the DVD of '${c.name}'` : `insert a DVD into '${c.name}'`;
      throw new BerthError(
        'INVALID_STATE',
        needsOffMessage(verb, c.name, state).replace('turn it off first', 'wait until it runs or is off'),
      );
    }
    // The drive's index in the worker's spec (drives in slot order, as toWorkerSpec wrote them).
    const spec = WorkerSpec.safeParse(await readJsonIfExists(entry.paths.runFile('spec')).catch(() => undefined));
    const sorted = [...c.dvdDrives].sort((a, b) => a.slot - b.slot);
    const index = sorted.findIndex((d) => d.slot === drive.slot);
    if (!spec.success || (spec.data.dvds ?? []).length !== sorted.length) {
      throw new BerthError(
        'INVALID_STATE',
        `cannot change the media of ${label}: its worker's machine (${entry.paths.runFile('spec')}) does not match ` +
          'its configuration; turn it off and change it then',
      );
    }
    const { client } = await this.manager.running(entry.id, 'save');
    try {
      await client.request({ op: 'media', drive: index, path: path ?? '' });
    } catch (err) {
      const body = err instanceof BerthError ? err : new BerthError('INTERNAL', String(err));
      throw new BerthError(body.code, `cannot change the media of ${label}: ${body.message}`);
    } finally {
      client.close();
    }
    await this.manager.registry.update(entry.id, 'change DVD media', setMedia);
    return this.manager.show(entry.id);
  }

  private async offline(ref: string, verb: string, edit: (c: VmConfig) => Promise<void>): Promise<VmDetails> {
    const entry = await this.manager.registry.resolve(ref);
    await this.manager.registry.update(entry.id, verb, async (c) => {
      const { state } = await this.manager.state(entry.id);
      if (state !== 'Off' && state !== 'Failed') {
        throw new BerthError('INVALID_STATE', needsOffMessage(`${verb} '${c.name}'`, c.name, state));
      }
      await edit(c);
      return c;
    });
    return this.manager.show(entry.id);
  }
}
