// The host's block devices (Hyper-V's passthrough disks), read from the kernel's own
// tables: /sys/block (size, model, removable, read-only, partitions, holders),
// /proc/self/mountinfo (mounted), /dev/disk/by-id (stable ids), and an O_EXCL open probe
// (in use by another process). Loop devices have no by-id link: their stable id is
// "loop-backing:<backing file>", valid while that file is attached.
import { constants, closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface HostBlockDevice {
  name: string;
  devicePath: string;
  stableId: string | null;
  sizeBytes: number;
  model: string;
  removable: boolean;
  readOnly: boolean;
  partitions: string[];
  mounts: string[];
  inUse: boolean;
  inUseBy: string[];
  system: boolean;
}

const SYS_BLOCK = '/sys/block';
const BY_ID = '/dev/disk/by-id';
export const LOOP_ID_PREFIX = 'loop-backing:';

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// "major:minor" -> mount points, from /proc/self/mountinfo (field 3 is the device number).
function mountsByDevice(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of readText('/proc/self/mountinfo').split('\n')) {
    const f = line.split(' ');
    const dev = f[2];
    const mountPoint = f[4];
    if (!dev || !mountPoint) continue;
    const point = mountPoint.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.set(dev, [...(out.get(dev) ?? []), point]);
  }
  return out;
}

// Kernel names of /dev/disk/by-id links, preferring wwn- and the longest descriptive name.
function byIdNames(): Map<string, string> {
  const out = new Map<string, string>();
  for (const link of list(BY_ID).sort()) {
    if (/-part\d+$/.test(link)) continue;
    let target: string;
    try {
      target = basename(readlinkSync(join(BY_ID, link)));
    } catch {
      continue;
    }
    const have = out.get(target);
    if (have === undefined || (!have.startsWith('wwn-') && link.startsWith('wwn-'))) out.set(target, link);
  }
  return out;
}

function loopBacking(name: string): string | null {
  const file = readText(join(SYS_BLOCK, name, 'loop', 'backing_file'));
  return file === '' ? null : file;
}

// Another process holds the device exclusively (a mount, a VM, mdadm, ...): O_EXCL on a
// block device fails with EBUSY.
function busy(devicePath: string): boolean {
  try {
    const fd = openSync(devicePath, constants.O_RDONLY | constants.O_EXCL | constants.O_NONBLOCK);
    closeSync(fd);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EBUSY';
  }
}

export function listHostBlockDevices(): HostBlockDevice[] {
  if (process.platform !== 'linux') return [];
  const mounts = mountsByDevice();
  const ids = byIdNames();
  const devices: HostBlockDevice[] = [];
  for (const name of list(SYS_BLOCK).sort()) {
    const sys = join(SYS_BLOCK, name);
    if (name.startsWith('ram') || name.startsWith('zram')) continue;
    // An unattached loop device has size 0 and no backing file.
    const backing = name.startsWith('loop') ? loopBacking(name) : null;
    if (name.startsWith('loop') && backing === null) continue;
    const partitions = list(sys).filter((p) => p.startsWith(name) && existsSync(join(sys, p, 'partition')));
    const devMounts: string[] = [];
    let system = false;
    for (const part of [name, ...partitions]) {
      const dev = readText(join(sys, part === name ? '' : part, 'dev'));
      for (const m of mounts.get(dev) ?? []) {
        devMounts.push(m);
        if (m === '/' || m === '/boot' || m === '/boot/efi') system = true;
      }
    }
    const holders = [name, ...partitions].flatMap((p) =>
      list(join(sys, p === name ? '' : p, 'holders')).map((h) => `${h} (holds ${p})`),
    );
    const devicePath = `/dev/${name}`;
    const inUseBy = [...holders];
    if (devMounts.length === 0 && holders.length === 0 && existsSync(devicePath) && busy(devicePath)) {
      inUseBy.push('another process has it open exclusively');
    }
    // The system disk also counts when / sits on a device-mapper volume over it.
    if (!system && holders.length > 0) {
      for (const h of [name, ...partitions].flatMap((p) => list(join(sys, p === name ? '' : p, 'holders')))) {
        const dev = readText(join(SYS_BLOCK, h, 'dev'));
        if ((mounts.get(dev) ?? []).some((m) => m === '/' || m === '/boot')) system = true;
      }
    }
    const stableId = ids.get(name) ?? (backing !== null ? `${LOOP_ID_PREFIX}${backing}` : null);
    devices.push({
      name,
      devicePath,
      stableId,
      sizeBytes: Number(readText(join(sys, 'size')) || '0') * 512,
      model: readText(join(sys, 'device', 'model')) || (backing !== null ? `loop: ${backing}` : ''),
      removable: readText(join(sys, 'removable')) === '1',
      readOnly: readText(join(sys, 'ro')) === '1',
      partitions,
      mounts: devMounts,
      inUse: inUseBy.length > 0,
      inUseBy,
      system,
    });
  }
  return devices;
}

// The /dev path of a stable id, or null if no such device is attached now.
export function resolveStableId(stableId: string): string | null {
  if (stableId.startsWith(LOOP_ID_PREFIX)) {
    const file = stableId.slice(LOOP_ID_PREFIX.length);
    for (const name of list(SYS_BLOCK).filter((n) => n.startsWith('loop'))) {
      if (loopBacking(name) === file) return `/dev/${name}`;
    }
    return null;
  }
  if (stableId.includes('/') || stableId === '.' || stableId === '..') return null;
  try {
    return realpathSync(join(BY_ID, stableId));
  } catch {
    return null;
  }
}
