// A busybox-static initramfs, written as a cpio "newc" archive by this code (no cpio tool):
// /init mounts proc, sys and devtmpfs, prints a marker on /dev/console and powers off; with
// berth.wait on the command line it waits instead for the ACPI power button (the kernel's
// button and evdev modules, busybox acpid), which powers it off; with berth.count it loads
// the virtio-mmio and virtio-blk modules and counts for ever, each count on the console and
// in the first sector of /dev/vda (the saved-state spec's Linux guest).
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

import { log, run } from './kernel';

export const INITRAMFS_MARKER = 'BERTH-INITRAMFS-OK';
// Printed once acpid listens for the power button (berth.wait), and when the button is pressed.
export const INITRAMFS_WAITING = 'BERTH-INITRAMFS-WAITING';
export const INITRAMFS_POWER_BUTTON = 'BERTH-INITRAMFS-POWER-BUTTON';
// berth.count: `BERTH-NPROC <online CPUs>` once, then `BERTH-COUNT <n>` (n = 1, 2, ...) every
// 0.2 s, each also written to /dev/vda's first sector (padded with spaces to 512 bytes) and
// synced to the disk before the next; `BERTH-COUNT-FAILED <what>` when a module or the disk
// is missing.
export const INITRAMFS_NPROC = 'BERTH-NPROC';
export const INITRAMFS_COUNT = 'BERTH-COUNT';
export const INITRAMFS_COUNT_FAILED = 'BERTH-COUNT-FAILED';

// The kernel modules the power button needs: evdev (so acpid can read the key) and button;
// and what the counting mode's disk needs, in their load order (Debian's cloud kernel has
// virtio, virtio-mmio and virtio-blk as modules).
export interface InitramfsModules {
  evdev: Buffer;
  button: Buffer;
  virtio_ring: Buffer;
  virtio: Buffer;
  virtio_mmio: Buffer;
  virtio_blk: Buffer;
}
export const COUNT_MODULES = ['virtio_ring', 'virtio', 'virtio_mmio', 'virtio_blk'] as const;

export interface CpioEntry {
  name: string;
  mode: number; // file type and permission bits, as in st_mode
  data?: Buffer;
  rdevMajor?: number;
  rdevMinor?: number;
}

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

// The "newc" format (070701): a 110-byte ASCII header of 13 eight-digit hex fields, the name
// with its NUL, padded to 4 bytes, then the data, padded to 4 bytes.
// Every entry gets the same mtime (0 by default), so the same entries give the same bytes.
export function cpioNewc(entries: CpioEntry[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (e: CpioEntry): void => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    const fields = [
      ino++,
      e.mode,
      0, // uid
      0, // gid
      (e.mode & 0o170000) === S_IFDIR ? 2 : 1,
      mtime,
      data.length,
      0, // devmajor
      0, // devminor
      e.rdevMajor ?? 0,
      e.rdevMinor ?? 0,
      name.length,
      0, // check
    ];
    const header = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
    parts.push(Buffer.from(header, 'ascii'), name, Buffer.alloc(pad4(110 + name.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) push(e);
  push({ name: 'TRAILER!!!', mode: 0 });
  const out = Buffer.concat(parts);
  return Buffer.concat([out, Buffer.alloc((512 - (out.length % 512)) % 512)]); // every entry is 4-aligned
}

// True when the ELF file has no PT_INTERP program header (a static binary).
function isStaticElf(bytes: Buffer): boolean {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46 || bytes[4] !== 2) return false;
  const phoff = Number(bytes.readBigUInt64LE(32));
  const phentsize = bytes.readUInt16LE(54);
  const phnum = bytes.readUInt16LE(56);
  for (let i = 0; i < phnum; ++i) {
    if (bytes.readUInt32LE(phoff + i * phentsize) === 3) return false;
  }
  return true;
}

// Debian's busybox-static installs /bin/busybox; installs the package when it is missing.
export function staticBusybox(): Buffer {
  const path = '/bin/busybox';
  const ok = (): boolean => existsSync(path) && isStaticElf(readFileSync(path));
  if (!ok()) {
    log('installing busybox-static');
    run('apt-get', ['install', '-y', 'busybox-static'], { allowFail: true });
    if (!ok()) {
      run('apt-get', ['update']);
      run('apt-get', ['install', '-y', 'busybox-static']);
    }
  }
  if (!ok()) throw new Error(`${path} is missing or not statically linked (apt-get install busybox-static)`);
  return readFileSync(path);
}

// The marker line is the marker, the token from the kernel command line (berth.check=TOKEN),
// the kernel release and the uptime, so one archive serves every boot.
export function initScript(): string {
  return [
    '#!/bin/busybox sh',
    '/bin/busybox mount -t proc proc /proc',
    '/bin/busybox mount -t sysfs sysfs /sys',
    '/bin/busybox mount -t devtmpfs devtmpfs /dev',
    "token=$(/bin/busybox sed -n 's/.*berth\\.check=\\([^ ]*\\).*/\\1/p' /proc/cmdline)",
    `echo "${INITRAMFS_MARKER} $token kernel=$(/bin/busybox uname -r) uptime=$(/bin/busybox cut -d' ' -f1 /proc/uptime)" > /dev/console`,
    "if /bin/busybox grep -q 'berth\\.wait' /proc/cmdline; then",
    '  /bin/busybox insmod /lib/modules/evdev.ko && /bin/busybox insmod /lib/modules/button.ko &&',
    '    /bin/busybox acpid -f -c /etc/acpi -l /tmp/acpid.log -p /tmp/acpid.pid &',
    // acpid opens the input devices at start: wait until it has them.
    '  while ! /bin/busybox grep -q . /tmp/acpid.pid 2>/dev/null; do /bin/busybox usleep 100000; done',
    `  echo "${INITRAMFS_WAITING}" > /dev/console`,
    '  while :; do /bin/busybox sleep 3600; done',
    'fi',
    "if /bin/busybox grep -q 'berth\\.count' /proc/cmdline; then",
    `  echo "${INITRAMFS_NPROC} $(/bin/busybox nproc)" > /dev/console`,
    `  for m in ${COUNT_MODULES.join(' ')}; do`,
    `    /bin/busybox insmod /lib/modules/$m.ko || echo "${INITRAMFS_COUNT_FAILED} insmod $m" > /dev/console`,
    '  done',
    // The disk's node appears once virtio-blk has probed it: wait up to 5 s.
    '  i=0',
    '  while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do /bin/busybox usleep 100000; i=$((i + 1)); done',
    `  [ -b /dev/vda ] || echo "${INITRAMFS_COUNT_FAILED} no /dev/vda" > /dev/console`,
    '  n=0',
    '  while :; do',
    '    n=$((n + 1))',
    `    echo "${INITRAMFS_COUNT} $n" > /dev/console`,
    `    /bin/busybox printf '%-512s' "${INITRAMFS_COUNT} $n" |`,
    '      /bin/busybox dd of=/dev/vda bs=512 count=1 conv=notrunc,fsync 2>/dev/null ||',
    `      echo "${INITRAMFS_COUNT_FAILED} write $n" > /dev/console`,
    '    /bin/busybox usleep 200000',
    '  done',
    'fi',
    '/bin/busybox poweroff -f',
    // Reached only if the power-off call returns.
    'echo "BERTH-INITRAMFS-POWEROFF-RETURNED" > /dev/console',
    'exec /bin/busybox sh',
    '',
  ].join('\n');
}

// What busybox acpid runs for the power button (its built-in map: PWRF -> PWRF/00000080).
function powerButtonScript(): string {
  return ['#!/bin/sh', `echo "${INITRAMFS_POWER_BUTTON}" > /dev/console`, '/bin/busybox poweroff -f', ''].join('\n');
}

// The archive's bytes (the same for the same busybox and modules).
export function initramfsBytes(modules: InitramfsModules): Buffer {
  const busybox = staticBusybox();
  const entries: CpioEntry[] = [
    { name: '.', mode: S_IFDIR | 0o755 },
    ...['bin', 'sbin', 'dev', 'proc', 'sys', 'etc', 'tmp', 'root'].map((d) => ({
      name: d,
      mode: S_IFDIR | (d === 'tmp' ? 0o1777 : 0o755),
    })),
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'dev/null', mode: S_IFCHR | 0o666, rdevMajor: 1, rdevMinor: 3 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(initScript()) },
    { name: 'lib', mode: S_IFDIR | 0o755 },
    { name: 'lib/modules', mode: S_IFDIR | 0o755 },
    { name: 'lib/modules/evdev.ko', mode: S_IFREG | 0o644, data: modules.evdev },
    { name: 'lib/modules/button.ko', mode: S_IFREG | 0o644, data: modules.button },
    ...COUNT_MODULES.map((m) => ({ name: `lib/modules/${m}.ko`, mode: S_IFREG | 0o644, data: modules[m] })),
    { name: 'etc/acpi', mode: S_IFDIR | 0o755 },
    { name: 'etc/acpi/PWRF', mode: S_IFDIR | 0o755 },
    { name: 'etc/acpi/PWRF/00000080', mode: S_IFREG | 0o755, data: Buffer.from(powerButtonScript()) },
  ];
  return cpioNewc(entries);
}

// Writes the archive unless the file already holds the same bytes; true when it wrote.
export function buildInitramfs(out: string, modules: InitramfsModules): boolean {
  const archive = initramfsBytes(modules);
  if (existsSync(out) && readFileSync(out).equals(archive)) return false;
  writeFileSync(`${out}.tmp`, archive);
  renameSync(`${out}.tmp`, out);
  return true;
}
