// Prepares everything the Linux boot spec and check need, on the host (the KVM lab has no
// network): Debian's cloud kernel (apt-get download), the vmlinux cut out of its bzImage,
// a copy of that vmlinux with its PVH note masked, and the busybox initramfs. All of it goes
// into build/linux-boot/, with a manifest (prepared.json) naming the files. Idempotent: what
// is already there and current is used as it is.
//
//   node dist/test/linux-boot/prepare.js
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { repoRoot } from '../support/guest';
import { buildInitramfs } from './initramfs';
import { cloudKernelModules, extractVmlinux, fetchCloudKernel, log, maskPvhNote } from './kernel';

export const linuxBootDir = join(repoRoot, 'build', 'linux-boot');
export const manifestPath = join(linuxBootDir, 'prepared.json');
export const PREPARE_COMMAND = 'node dist/test/linux-boot/prepare.js';

export interface PreparedLinuxBoot {
  packageName: string;
  kernelRelease: string; // e.g. "6.1.0-57-cloud-amd64"
  bzImage: string; // the packaged image: 64-bit boot protocol
  vmlinux: string; // the ELF cut out of it, PVH note intact: Berth boots it through PVH
  vmlinuxNoPvh: string; // the same ELF with the PVH note masked: the 64-bit ELF entry
  initramfs: string; // busybox-static, prints the marker and powers off (or waits, or counts)
  compression: string;
}

// True when `out` exists and is at least as new as every input.
function current(out: string, ...inputs: string[]): boolean {
  if (!existsSync(out)) return false;
  const t = statSync(out).mtimeMs;
  return inputs.every((i) => statSync(i).mtimeMs <= t);
}

export function prepareLinuxBoot(options: { fresh?: boolean } = {}): PreparedLinuxBoot {
  const fresh = options.fresh ?? false;
  const kernel = fetchCloudKernel(linuxBootDir, false, fresh);
  const vmlinuxPath = join(linuxBootDir, basename(kernel.bzImage).replace(/^vmlinuz/, 'vmlinux'));
  const x = extractVmlinux(kernel.bzImage, vmlinuxPath, fresh);

  const vmlinuxNoPvh = `${vmlinuxPath}-nopvh`;
  if (fresh || !current(vmlinuxNoPvh, vmlinuxPath)) {
    if (!maskPvhNote(vmlinuxPath, `${vmlinuxNoPvh}.tmp`)) {
      throw new Error(`${vmlinuxPath} has no PVH note (XEN_ELFNOTE_PHYS32_ENTRY): it cannot test the PVH path`);
    }
    renameSync(`${vmlinuxNoPvh}.tmp`, vmlinuxNoPvh);
    log(`masked the PVH note: ${vmlinuxNoPvh}`);
  } else {
    log(`using cached ${vmlinuxNoPvh}`);
  }

  const release = basename(kernel.bzImage).slice('vmlinuz-'.length);
  const modules = cloudKernelModules(linuxBootDir, release, {
    evdev: 'drivers/input/evdev.ko',
    button: 'drivers/acpi/button.ko',
    virtio_ring: 'drivers/virtio/virtio_ring.ko',
    virtio: 'drivers/virtio/virtio.ko',
    virtio_mmio: 'drivers/virtio/virtio_mmio.ko',
    virtio_blk: 'drivers/block/virtio_blk.ko',
  });
  const initramfs = join(linuxBootDir, 'initramfs.cpio');
  log(buildInitramfs(initramfs, modules) ? `wrote ${initramfs}` : `using cached ${initramfs}`);

  const prepared: PreparedLinuxBoot = {
    packageName: kernel.packageName,
    kernelRelease: release,
    bzImage: kernel.bzImage,
    vmlinux: vmlinuxPath,
    vmlinuxNoPvh,
    initramfs,
    compression: x.compression,
  };
  const text = `${JSON.stringify(prepared, null, 2)}\n`;
  if (!existsSync(manifestPath) || readFileSync(manifestPath, 'utf8') !== text) writeFileSync(manifestPath, text);
  return prepared;
}

// The prepared files, or an error naming what is missing and the command that prepares it.
export function loadPreparedLinuxBoot(): PreparedLinuxBoot {
  const hint = `run \`${PREPARE_COMMAND}\` on the host first (it needs Debian's archive; the KVM lab has no network)`;
  if (!existsSync(manifestPath)) throw new Error(`${manifestPath} is missing: ${hint}`);
  const p = JSON.parse(readFileSync(manifestPath, 'utf8')) as PreparedLinuxBoot;
  for (const file of [p.bzImage, p.vmlinux, p.vmlinuxNoPvh, p.initramfs]) {
    if (typeof file !== 'string' || !existsSync(file)) throw new Error(`${String(file)} is missing: ${hint}`);
  }
  return p;
}

if (require.main === module) {
  try {
    const p = prepareLinuxBoot({ fresh: process.argv.includes('--fresh') });
    const size = (f: string): string => `${(statSync(f).size / 2 ** 20).toFixed(1)} MiB`;
    process.stdout.write(
      [
        `prepared ${p.packageName} in ${linuxBootDir}:`,
        `  bzImage        ${p.bzImage} (${size(p.bzImage)}, ${p.compression} payload)`,
        `  vmlinux (PVH)  ${p.vmlinux} (${size(p.vmlinux)})`,
        `  vmlinux (ELF)  ${p.vmlinuxNoPvh} (PVH note masked)`,
        `  initramfs      ${p.initramfs} (${size(p.initramfs)})`,
        `  manifest       ${manifestPath}`,
        '',
      ].join('\n'),
    );
  } catch (err) {
    process.stderr.write(`prepare: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
