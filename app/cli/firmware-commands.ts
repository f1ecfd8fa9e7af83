// Generation 1 and 2 VMs on the command line: the options `vm new` and `vm set` take for
// firmware (--generation, --secure-boot, --boot-order, --iso), what `vm show` prints about
// it, and `berth vm dvd list|add|remove|insert|eject`.
import { resolve } from 'node:path';

import {
  BOOT_DEVICES,
  DEFAULT_BOOT_ORDER,
  generationOf,
  MAX_DVD_SLOTS,
  type BootDevice,
  type BootSettings,
  type DvdDrive,
  type VmConfig,
  type VmDetails,
} from '../api';
import { DvdService } from '../services';
import { parseCount, parseOnOff, str, UsageError, type Values } from './parse';
import type { Command, Options } from './command';

const deviceWords: Record<BootDevice, string> = { dvd: 'DVD drive', disk: 'hard disk', network: 'network adapter' };

// "dvd,disk,network" (each at most once).
export function parseBootOrder(flag: string, text: string | undefined): BootDevice[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((t) => t.trim().toLowerCase());
  const order: BootDevice[] = [];
  for (const item of items) {
    if (!(BOOT_DEVICES as readonly string[]).includes(item)) {
      throw new UsageError(
        `--${flag} takes a list of ${BOOT_DEVICES.join(', ')} (e.g. dvd,disk,network), not '${text}'`,
      );
    }
    if (order.includes(item as BootDevice)) throw new UsageError(`--${flag}: '${item}' is listed twice in '${text}'`);
    order.push(item as BootDevice);
  }
  return order;
}

export function parseGeneration(text: string | undefined): 1 | 2 | undefined {
  if (text === undefined) return undefined;
  if (text === '1' || text === '2') return Number(text) as 1 | 2;
  throw new UsageError(`--generation takes 1 (BIOS) or 2 (UEFI), not '${text}'`);
}

export const firmwareNewOptions: Options = {
  generation: { type: 'string' },
  'secure-boot': { type: 'string' },
  'boot-order': { type: 'string' },
  display: { type: 'string' },
  iso: { type: 'string' },
  'disk-size': { type: 'string' },
};

export const FIRMWARE_NEW_USAGE =
  '              [--generation 1|2 [--secure-boot on|off] [--iso PATH] [--boot-order dvd,disk,network]\n' +
  '              [--display on|off]] [--disk-size SIZE]';

// What `vm new` boots: firmware when --generation is given (Secure Boot on for Generation 2
// unless told, as Hyper-V does; --iso puts a DVD drive with the image first in the boot
// order, unless --boot-order says otherwise), else undefined (the kernel flags decide)
// after refusing firmware-only flags.
export function firmwareBootFromFlags(values: Values): { boot: BootSettings; dvdDrives: DvdDrive[] } | undefined {
  const generation = parseGeneration(str(values, 'generation'));
  const secureBoot = parseOnOff('secure-boot', str(values, 'secure-boot'));
  const order = parseBootOrder('boot-order', str(values, 'boot-order'));
  const iso = str(values, 'iso');
  const display = parseOnOff('display', str(values, 'display')) ?? true;
  if (generation === undefined) {
    const extra = ['secure-boot', 'boot-order', 'iso', 'display'].find((k) => values[k] !== undefined);
    if (extra) {
      throw new UsageError(
        `--${extra} is for Generation 1 and 2 VMs (--generation 1|2); a VM booting a kernel directly has no firmware` +
          (extra === 'iso' ? ' and no DVD drive' : ''),
      );
    }
    return undefined;
  }
  for (const k of ['kernel', 'initrd', 'cmdline', 'boot']) {
    if (values[k] !== undefined) {
      throw new UsageError(
        `--${k} is for VMs that boot a kernel directly; a Generation ${generation} VM boots firmware`,
      );
    }
  }
  if (generation === 1 && secureBoot !== undefined) {
    throw new UsageError('--secure-boot: Secure Boot is a UEFI setting; only Generation 2 VMs have it');
  }
  // Generation 1 has a DVD drive as in Hyper-V (empty without --iso); Generation 2 one for --iso.
  const dvdDrives: DvdDrive[] =
    iso !== undefined ? [{ slot: 0, path: resolve(iso) }] : generation === 1 ? [{ slot: 0 }] : [];
  let bootOrder = order ?? [...DEFAULT_BOOT_ORDER];
  if (iso !== undefined && order === undefined) bootOrder = ['dvd', ...bootOrder.filter((d) => d !== 'dvd')];
  const boot: BootSettings =
    generation === 1
      ? { kind: 'bios', bootOrder, display }
      : { kind: 'uefi', secureBoot: secureBoot ?? true, bootOrder, display };
  return { boot, dvdDrives };
}

export const firmwareSetOptions: Options = {
  generation: { type: 'string' },
  'secure-boot': { type: 'string' },
  'boot-order': { type: 'string' },
  display: { type: 'string' },
};

export const FIRMWARE_SET_USAGE =
  '              [--generation 1|2] [--secure-boot on|off] [--boot-order dvd,disk,network] [--display on|off]\n' +
  '              (--secure-boot replaces the UEFI variable store: it resets the UEFI settings, boot entries)';

// The firmware part of `vm set`'s patch.
export function firmwarePatchFromFlags(values: Values): Record<string, unknown> {
  const generation = parseGeneration(str(values, 'generation'));
  if (generation !== undefined && values['boot'] !== undefined) {
    throw new UsageError('give --generation or --boot, not both');
  }
  const patch: Record<string, unknown> = {
    secureBoot: parseOnOff('secure-boot', str(values, 'secure-boot')),
    bootOrder: parseBootOrder('boot-order', str(values, 'boot-order')),
    display: parseOnOff('display', str(values, 'display')),
  };
  if (generation !== undefined) patch['bootKind'] = generation === 1 ? 'bios' : 'uefi';
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
}

// What `vm set` says after a change of Secure Boot or generation.
export function firmwareNotes(before: VmConfig, after: VmConfig): string[] {
  const notes: string[] = [];
  const b = before.boot;
  const a = after.boot;
  if (a.kind === 'uefi' && (b.kind !== 'uefi' || b.secureBoot !== a.secureBoot)) {
    notes.push(
      b.kind === 'uefi'
        ? `Secure Boot is now ${a.secureBoot ? 'on' : 'off'}; the VM's UEFI variable store was replaced, which ` +
            'reset its UEFI settings (boot entries)'
        : `'${after.name}' is now Generation 2 (UEFI, Secure Boot ${a.secureBoot ? 'on' : 'off'}) with a new UEFI variable store`,
    );
  } else if (a.kind === 'bios' && b.kind !== 'bios') notes.push(`'${after.name}' is now Generation 1 (BIOS)`);
  return notes;
}

function dvdText(d: DvdDrive): string {
  return `${d.slot}: ${d.path ?? 'empty'}`;
}

// The lines `vm show` prints about how the VM boots.
export function bootLines(c: VmConfig): [string, string][] {
  const b = c.boot;
  if (b.kind === 'pvh' || b.kind === 'linux') {
    const lines: [string, string][] = [
      ['Generation', 'none (boots a kernel file directly)'],
      ['Boot', `${b.kind} ${b.kernelPath}`],
    ];
    if (b.initrdPath) lines.push(['Initrd', b.initrdPath]);
    lines.push(['Command line', b.cmdline]);
    return lines;
  }
  const lines: [string, string][] = [
    ['Generation', String(generationOf(b))],
    ['Firmware', b.kind === 'uefi' ? 'UEFI (OVMF)' : 'BIOS (SeaBIOS)'],
  ];
  if (b.kind === 'uefi') lines.push(['Secure Boot', b.secureBoot ? "on (Microsoft's keys)" : 'off']);
  lines.push(['Boot order', b.bootOrder.map((d) => deviceWords[d]).join(', ')]);
  lines.push(['Display', b.display ? 'on (graphical console)' : 'off (serial console only)']);
  const drives = [...c.dvdDrives].sort((x, y) => x.slot - y.slot);
  lines.push(['DVD drives', drives.length === 0 ? 'none' : drives.map(dvdText).join(', ')]);
  return lines;
}

function slotOption(values: Values, key: string): number | undefined {
  const n = parseCount(key, str(values, key));
  if (n !== undefined && n >= MAX_DVD_SLOTS) throw new UsageError(`--${key} takes 0 to ${MAX_DVD_SLOTS - 1}, not ${n}`);
  return n;
}

function printDrives(print: (t: string) => void, vm: VmDetails): void {
  const drives = [...vm.config.dvdDrives].sort((a, b) => a.slot - b.slot);
  if (drives.length === 0) print(`'${vm.name}' has no DVD drive`);
  for (const d of drives) print(`  DVD drive ${dvdText(d)}`);
}

// Two-word commands: `berth vm dvd insert NAME ISO`.
export const dvdCommands: Record<string, Command> = {
  'dvd list': {
    usage: 'berth vm dvd list NAME [--json]',
    summary: "list a Generation 1 or 2 VM's DVD drives and their media",
    positionals: ['NAME'],
    run: async ({ manager, args, print }) => {
      const r = await new DvdService(manager).list(args[0] ?? '');
      if (r.drives.length === 0) print(`'${r.vm}' has no DVD drive`);
      for (const d of r.drives) print(`DVD drive ${dvdText(d)}`);
      return r;
    },
  },
  'dvd add': {
    usage: 'berth vm dvd add NAME [--iso PATH] [--slot N] [--json]',
    summary: 'add a DVD drive (on the SCSI controller of a VM that is off), empty or with an image',
    positionals: ['NAME'],
    options: { iso: { type: 'string' }, slot: { type: 'string' } },
    run: async ({ manager, args, values, print }) => {
      const drive: { slot?: number; path?: string } = {};
      const slot = slotOption(values, 'slot');
      if (slot !== undefined) drive.slot = slot;
      const iso = str(values, 'iso');
      if (iso !== undefined) drive.path = resolve(iso);
      const vm = await new DvdService(manager).add(args[0] ?? '', drive);
      print(`added a DVD drive to '${vm.name}'`);
      printDrives(print, vm);
      return vm;
    },
  },
  'dvd remove': {
    usage: 'berth vm dvd remove NAME [--drive N] [--json]',
    summary: 'remove a DVD drive (the first unless --drive) from a VM that is off',
    positionals: ['NAME'],
    options: { drive: { type: 'string' } },
    run: async ({ manager, args, values, print }) => {
      const vm = await new DvdService(manager).remove(args[0] ?? '', slotOption(values, 'drive'));
      print(`removed the DVD drive from '${vm.name}'`);
      printDrives(print, vm);
      return vm;
    },
  },
  'dvd insert': {
    usage: 'berth vm dvd insert NAME ISO [--drive N] [--json]',
    summary: 'put an image file (.iso) into a DVD drive (the first unless --drive), also while the VM runs',
    positionals: ['NAME', 'ISO'],
    options: { drive: { type: 'string' } },
    run: async ({ manager, args, values, print }) => {
      const vm = await new DvdService(manager).insert(
        args[0] ?? '',
        resolve(args[1] ?? ''),
        slotOption(values, 'drive'),
      );
      print(`inserted ${resolve(args[1] ?? '')} into '${vm.name}'`);
      printDrives(print, vm);
      return vm;
    },
  },
  'dvd eject': {
    usage: 'berth vm dvd eject NAME [--drive N] [--json]',
    summary: 'eject the media of a DVD drive (the first unless --drive), also while the VM runs',
    positionals: ['NAME'],
    options: { drive: { type: 'string' } },
    run: async ({ manager, args, values, print }) => {
      const vm = await new DvdService(manager).eject(args[0] ?? '', slotOption(values, 'drive'));
      print(`ejected the DVD of '${vm.name}'`);
      printDrives(print, vm);
      return vm;
    },
  },
};
