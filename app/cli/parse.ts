// Parsing the command line's option values: sizes, counts, on/off, disk and network
// adapter specifications. Every refusal is a UsageError that names the option and shows
// what it takes.
import { resolve } from 'node:path';

import {
  MAX_DISK_SLOTS,
  NetworkAdapter,
  VIRTUAL_DISK_FORMATS,
  formatIssues,
  type DiskController,
  type VirtualDiskFormat,
} from '../api';
import type { DiskSpec } from '../services';

// A command-line mistake: exit code 2 and the command's usage.
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

export function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}

// File options are stored absolute: the worker does not run in the user's folder.
export function filePath(values: Values, key: string): string | undefined {
  const v = str(values, key);
  return v === undefined ? undefined : resolve(v);
}

// "64", "64M", "64MiB", "2G", "2GiB" -> MiB.
export function parseMiB(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)\s*(m|mib|mb|g|gib|gb)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--${flag} takes a size in MiB (e.g. 64, 512M, 2G), not '${text}'`);
  const n = Number(m[1]);
  return m[2] && m[2].toLowerCase().startsWith('g') ? n * 1024 : n;
}

export function list(values: Values, key: string): string[] {
  const v = values[key];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

// "1048576", "512K", "64M", "64MiB", "2G", "1T" -> bytes (binary units).
export function parseBytes(flag: string, text: string): number {
  const m = /^(\d+)\s*(k|kib|m|mib|g|gib|t|tib)?b?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${flag} takes a size such as 64M, 10G or a number of bytes, not '${text}'`);
  const unit = (m[2] ?? '').toLowerCase().charAt(0);
  const shift = { '': 0, k: 10, m: 20, g: 30, t: 40 }[unit] ?? 0;
  return Number(m[1]) * 2 ** shift;
}

export function diskFormat(flag: string, text: string | undefined): VirtualDiskFormat | undefined {
  return oneOf(flag, text, VIRTUAL_DISK_FORMATS);
}

// [SLOT=]new:SIZE[:FORMAT][,ro][,scsi] | [SLOT=]passthrough:STABLE-ID[,ro][,scsi] |
// [SLOT=]PATH[,ro][,scsi]; ',scsi' (or ',virtio', the default) names the disk's controller,
// or `controller` (--controller) does for every disk of the command.
export function parseDiskSpec(flag: string, text: string, controller?: DiskController): DiskSpec {
  let rest = text;
  let slot: number | undefined;
  const slotMatch = /^(\d+)=(.*)$/.exec(rest);
  if (slotMatch) {
    slot = Number(slotMatch[1]);
    rest = slotMatch[2] ?? '';
    if (slot >= MAX_DISK_SLOTS)
      throw new UsageError(`${flag}: slot ${slot} is out of range (0 to ${MAX_DISK_SLOTS - 1})`);
  }
  let readOnly = false;
  let on = controller;
  for (;;) {
    const option = /,(ro|scsi|virtio)$/.exec(rest);
    if (!option) break;
    if (option[1] === 'ro') readOnly = true;
    else on = option[1] as DiskController;
    rest = rest.slice(0, option.index);
  }
  const extra = {
    ...(slot === undefined ? {} : { slot }),
    ...(readOnly ? { readOnly } : {}),
    ...(on === 'scsi' ? { controller: on } : {}),
  };
  if (rest.startsWith('new:')) {
    const [size, format, more] = rest.slice(4).split(':');
    if (size === undefined || size === '' || more !== undefined) {
      throw new UsageError(`${flag} new:SIZE[:FORMAT], e.g. new:1G or new:64M:vhdx, not '${text}'`);
    }
    const spec: DiskSpec = { kind: 'new', sizeBytes: parseBytes(flag, size), ...extra };
    const f = diskFormat(flag, format);
    if (f !== undefined) spec.format = f;
    return spec;
  }
  if (rest.startsWith('passthrough:')) return { kind: 'passthrough', deviceId: rest.slice(12), ...extra };
  if (rest === '') throw new UsageError(`${flag} needs a disk: new:SIZE[:FORMAT], passthrough:ID or a file path`);
  return { kind: 'file', path: resolve(rest), ...extra };
}

export function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`--${flag} takes a whole number, not '${text}'`);
  return Number(text);
}

export function parseOnOff(flag: string, text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined;
  if (/^(on|true|yes|1)$/i.test(text)) return true;
  if (/^(off|false|no|0)$/i.test(text)) return false;
  throw new UsageError(`--${flag} takes on or off, not '${text}'`);
}

export function oneOf<T extends string>(flag: string, text: string | undefined, allowed: readonly T[]): T | undefined {
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) {
    throw new UsageError(`--${flag} takes one of ${allowed.join(', ')}, not '${text}'`);
  }
  return text as T;
}

// nat[,mac=MAC] | bridge:NAME[,mac=MAC]
export function parseNicSpec(flag: string, text: string): NetworkAdapter {
  const [kindPart = '', ...opts] = text.split(',');
  const raw: Record<string, unknown> = {};
  if (kindPart === 'nat') raw['kind'] = 'nat';
  else if (kindPart.startsWith('bridge:') && kindPart.length > 7) {
    raw['kind'] = 'bridge';
    raw['bridge'] = kindPart.slice(7);
  } else {
    throw new UsageError(`${flag} takes nat or bridge:NAME (optionally ,mac=02:00:00:12:34:56), not '${text}'`);
  }
  const forwards: Record<string, unknown>[] = [];
  for (const o of opts) {
    const mac = /^mac=(.+)$/.exec(o);
    // forward=[tcp|udp:][ADDRESS:]HOSTPORT:GUESTPORT
    const fwd = /^forward=(?:(tcp|udp):)?(?:(\d+\.\d+\.\d+\.\d+):)?(\d+):(\d+)$/.exec(o);
    if (mac) raw['mac'] = mac[1];
    else if (fwd) {
      const f: Record<string, unknown> = { hostPort: Number(fwd[3]), guestPort: Number(fwd[4]) };
      if (fwd[1]) f['protocol'] = fwd[1];
      if (fwd[2]) f['hostAddress'] = fwd[2];
      forwards.push(f);
    } else if (o === 'restricted') raw['restricted'] = true;
    else {
      throw new UsageError(
        `${flag}: unknown option '${o}' in '${text}' (mac=MAC, restricted, forward=[tcp|udp:][ADDRESS:]HOSTPORT:GUESTPORT)`,
      );
    }
  }
  if (forwards.length > 0) raw['portForwards'] = forwards;
  const parsed = NetworkAdapter.safeParse(raw);
  if (!parsed.success)
    throw new UsageError(`${flag} ${text}: ${formatIssues(parsed.error.issues, raw, 'adapter').join('; ')}`);
  return parsed.data;
}
