// Builds an installed Debian 12 system on a disk image, the way a user's own disk would
// look, for the Generation 1 disk boot spec and bench:boot: debootstrap (minbase, systemd,
// Debian's cloud kernel with its virtio drivers) onto an ext4 partition of an MBR-labelled
// raw image, a small initramfs (the modules listed below), GRUB for BIOS (the host's
// grub-pc-bin) in the MBR gap with its menu and Linux both on the serial console, a root
// password and hostname; then qemu-img converts it to qcow2 and VHDX and checks both.
// Runs on the host as root (debootstrap, loop devices, mount) with the network; the KVM lab
// has none. Skipped when both images exist and their stamp matches this recipe; the
// downloaded packages stay in build/firmware/debootstrap-cache for the next build.
//
//   node dist/test/firmware/debian-disk.js
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  symlinkSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

import { firmwareDir } from './prepare';

export const debianQcow2 = join(firmwareDir, 'debian-12.qcow2');
export const debianVhdx = join(firmwareDir, 'debian-12.vhdx');
export const DEBIAN_DISK_COMMAND = 'node dist/test/firmware/debian-disk.js';
export const DEBIAN_HOSTNAME = 'berth-guest';
export const DEBIAN_ROOT_PASSWORD = 'berth';
// What the serial getty prints, and root's shell prompt after logging in.
export const LOGIN_PROMPT = `${DEBIAN_HOSTNAME} login:`;
export const ROOT_PROMPT = `root@${DEBIAN_HOSTNAME}:~#`;
export const GRUB_MENU_ENTRY = 'Debian GNU/Linux 12 (serial console)';

const stampPath = join(firmwareDir, 'debian-12.stamp');
const cacheDir = join(firmwareDir, 'debootstrap-cache');
const MIRROR = 'http://deb.debian.org/debian';
const SUITE = 'bookworm';
// systemd as init; udev for the serial console's device unit and /dev/disk/by-uuid.
const PACKAGES = ['systemd-sysv', 'udev', 'linux-image-cloud-amd64', 'initramfs-tools'];
const DISK_MIB = 2048;
const PARTITION_START_SECTOR = 2048; // 1 MiB: the gap before it holds GRUB's core image
const SECTOR = 512;

const UNSAFE_IO = join('etc', 'dpkg', 'dpkg.cfg.d', 'berth-unsafe-io');
// Housekeeping that only slows a test VM's boot (e2scrub_reap took 3 minutes nested in the
// KVM lab) or starts work later on.
const MASKED_UNITS = [
  'e2scrub_reap.service',
  'e2scrub_all.timer',
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'fstrim.timer',
];

// The initramfs holds only what mounts the root file system from a virtio disk on PCI.
const INITRAMFS_CONF = 'MODULES=list\n';
const INITRAMFS_HOOK = `#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk ext4
`;

// Each character on the serial console is a VM exit: the kernel keeps to warnings
// (loglevel=4), systemd still shows its progress.
const grubCfg = (kernel: string, initrd: string, uuid: string): string => `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
menuentry '${GRUB_MENU_ENTRY}' {
  search --no-floppy --fs-uuid --set=root ${uuid}
  linux /boot/${kernel} root=UUID=${uuid} ro console=ttyS0,115200 loglevel=4
  initrd /boot/${initrd}
}
`;

// Everything that shapes the image: a change rebuilds it.
const recipe = JSON.stringify({
  v: 3,
  MASKED_UNITS,
  MIRROR,
  SUITE,
  PACKAGES,
  DISK_MIB,
  PARTITION_START_SECTOR,
  INITRAMFS_CONF,
  INITRAMFS_HOOK,
  grub: grubCfg('K', 'I', 'U'),
  DEBIAN_HOSTNAME,
  DEBIAN_ROOT_PASSWORD,
});
const stamp = createHash('sha256').update(recipe).digest('hex');

function sh(command: string, args: string[], input?: string): string {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(input === undefined ? {} : { input }),
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    const tail = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new Error(`${command} ${args.join(' ')} failed:\n${tail || e.message}`);
  }
}

// An MBR with one bootable Linux partition from PARTITION_START_SECTOR to the end (LBA only;
// the CHS fields say "beyond CHS").
function writeMbr(image: string): void {
  const mbr = Buffer.alloc(SECTOR);
  mbr.writeUInt32LE(0x42455254, 440); // disk signature
  const entry = 446;
  mbr[entry] = 0x80;
  mbr.set([0xfe, 0xff, 0xff], entry + 1);
  mbr[entry + 4] = 0x83;
  mbr.set([0xfe, 0xff, 0xff], entry + 5);
  mbr.writeUInt32LE(PARTITION_START_SECTOR, entry + 8);
  mbr.writeUInt32LE((DISK_MIB * 1024 * 1024) / SECTOR - PARTITION_START_SECTOR, entry + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  const fd = openSync(image, 'r+');
  try {
    writeSync(fd, mbr, 0, SECTOR, 0);
  } finally {
    closeSync(fd);
  }
}

function checkTools(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      `building the Debian disk needs root (debootstrap, loop devices, mount): sudo ${DEBIAN_DISK_COMMAND}`,
    );
  }
  const tools: [string, string][] = [
    ['/usr/sbin/debootstrap', 'debootstrap'],
    ['/usr/sbin/grub-install', 'grub2-common'],
    ['/usr/lib/grub/i386-pc', 'grub-pc-bin'],
    ['/usr/bin/qemu-img', 'qemu-utils'],
    ['/usr/sbin/mkfs.ext4', 'e2fsprogs'],
  ];
  for (const [path, pkg] of tools) {
    if (!existsSync(path)) throw new Error(`${path} is missing: install ${pkg} (./setup.sh --with-tests does)`);
  }
}

// Installs the system into the mounted partition of the attached image.
function install(root: string, loop: string, uuid: string): void {
  // Written before debootstrap so that the kernel's own initramfs is already the small one.
  mkdirSync(join(root, 'etc', 'initramfs-tools', 'conf.d'), { recursive: true });
  mkdirSync(join(root, 'etc', 'initramfs-tools', 'hooks'), { recursive: true });
  writeFileSync(join(root, 'etc', 'initramfs-tools', 'conf.d', 'berth.conf'), INITRAMFS_CONF);
  writeFileSync(join(root, 'etc', 'initramfs-tools', 'hooks', 'berth-virtio'), INITRAMFS_HOOK, { mode: 0o755 });
  // dpkg without an fsync per file: the image is written out once, at the end.
  mkdirSync(join(root, 'etc', 'dpkg', 'dpkg.cfg.d'), { recursive: true });
  writeFileSync(join(root, UNSAFE_IO), 'force-unsafe-io\n');
  mkdirSync(cacheDir, { recursive: true });
  try {
    sh('debootstrap', [
      '--variant=minbase',
      `--include=${PACKAGES.join(',')}`,
      `--cache-dir=${cacheDir}`,
      SUITE,
      root,
      MIRROR,
    ]);
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\ndebootstrap could not install Debian ${SUITE} from ${MIRROR}: this needs the network ` +
        `and debootstrap (./setup.sh --with-tests installs it); then run ${DEBIAN_DISK_COMMAND}`,
    );
  }
  rmSync(join(root, UNSAFE_IO));
  for (const unit of MASKED_UNITS) symlinkSync('/dev/null', join(root, 'etc', 'systemd', 'system', unit));
  writeFileSync(join(root, 'etc', 'hostname'), `${DEBIAN_HOSTNAME}\n`);
  writeFileSync(join(root, 'etc', 'hosts'), `127.0.0.1 localhost\n127.0.1.1 ${DEBIAN_HOSTNAME}\n`);
  writeFileSync(join(root, 'etc', 'fstab'), `UUID=${uuid} / ext4 errors=remount-ro 0 1\n`);
  sh('chroot', [root, 'chpasswd'], `root:${DEBIAN_ROOT_PASSWORD}\n`);
  // Downloaded packages and package lists (~90 MB) are what `apt update` fetches again.
  sh('chroot', [root, 'apt-get', 'clean']);
  rmSync(join(root, 'var', 'lib', 'apt', 'lists'), { recursive: true, force: true });
  mkdirSync(join(root, 'var', 'lib', 'apt', 'lists', 'partial'), { recursive: true });
  const boot = readdirSync(join(root, 'boot'));
  const kernel = boot.find((f) => f.startsWith('vmlinuz-'));
  const initrd = boot.find((f) => f.startsWith('initrd.img-'));
  if (!kernel || !initrd) throw new Error(`no kernel or initramfs in the image's /boot (${boot.join(', ')})`);
  sh('grub-install', [
    '--target=i386-pc',
    `--boot-directory=${join(root, 'boot')}`,
    '--modules=part_msdos ext2 search_fs_uuid',
    loop,
  ]);
  writeFileSync(join(root, 'boot', 'grub', 'grub.cfg'), grubCfg(kernel, initrd, uuid));
}

export function prepareDebianDisk(): { qcow2: string; vhdx: string; built: boolean; seconds: number } {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  const current = existsSync(stampPath) && readFileSync(stampPath, 'utf8').trim() === stamp;
  if (current && existsSync(debianQcow2) && existsSync(debianVhdx)) {
    return { qcow2: debianQcow2, vhdx: debianVhdx, built: false, seconds: seconds() };
  }
  checkTools();
  mkdirSync(firmwareDir, { recursive: true });
  rmSync(stampPath, { force: true });
  const raw = join(firmwareDir, 'debian-12.raw');
  const mnt = join(firmwareDir, 'debian-12.mnt');
  rmSync(raw, { force: true });
  writeFileSync(raw, '');
  execFileSync('truncate', ['-s', `${DISK_MIB}M`, raw]);
  writeMbr(raw);
  // Undone in reverse order whatever fails.
  const undo: (() => void)[] = [];
  try {
    const loop = sh('losetup', ['--find', '--show', '--partscan', raw]).trim();
    undo.push(() => sh('losetup', ['--detach', loop]));
    const partition = `${loop}p1`;
    for (let i = 0; i < 20 && !existsSync(partition); i++) execFileSync('sleep', ['0.1']);
    // Some kernels (Firecracker's) find no partitions on a loop device: tell it where it is.
    if (!existsSync(partition)) {
      sh('partx', ['--add', loop]);
      undo.push(() => sh('partx', ['--delete', loop]));
    }
    if (!existsSync(partition)) throw new Error(`${partition} did not appear after losetup --partscan and partx --add`);
    sh('mkfs.ext4', ['-q', '-L', 'debian-root', partition]);
    const uuid = sh('blkid', ['-s', 'UUID', '-o', 'value', partition]).trim();
    rmSync(mnt, { recursive: true, force: true });
    mkdirSync(mnt);
    sh('mount', [partition, mnt]);
    undo.push(() => sh('umount', ['--recursive', mnt]));
    install(mnt, loop, uuid);
    sh('fstrim', [mnt]); // freed blocks become holes: the converted images stay small
  } finally {
    for (const step of undo.reverse()) {
      try {
        step();
      } catch (err) {
        console.error(`[debian-disk] cleanup: ${(err as Error).message}`);
      }
    }
    rmSync(mnt, { recursive: true, force: true });
  }
  for (const [out, format] of [
    [debianQcow2, 'qcow2'],
    [debianVhdx, 'vhdx'],
  ] as const) {
    sh('qemu-img', ['convert', '-f', 'raw', '-O', format, raw, `${out}.tmp`]);
    sh('qemu-img', ['check', '-f', format, `${out}.tmp`]);
    renameSync(`${out}.tmp`, out);
  }
  rmSync(raw, { force: true });
  writeFileSync(stampPath, `${stamp}\n`);
  return { qcow2: debianQcow2, vhdx: debianVhdx, built: true, seconds: seconds() };
}

if (require.main === module) {
  const r = prepareDebianDisk();
  console.log(`[debian-disk] ${r.qcow2}, ${r.vhdx} (${r.built ? `built in ${r.seconds.toFixed(0)} s` : 'current'})`);
}
