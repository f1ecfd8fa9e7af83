// Prepares what the firmware boot specs need, on the host (the KVM lab has no network and
// starts processes slowly): a bootable ISO of Debian's installer, made the way a user's
// would be, with grub-mkrescue from GRUB's EFI and BIOS images (grub-efi-amd64-bin,
// grub-pc-bin, xorriso, mtools) around the kernel and initrd of Debian's netboot installer
// (debian-installer-12-netboot-amd64). GRUB and the installer talk on the serial console.
// The result is a hybrid image: it boots from a DVD drive (El Torito) and from a disk (MBR
// for BIOS, an EFI system partition for UEFI). Idempotent; nothing is committed.
//
//   node dist/test/firmware/prepare.js
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { repoRoot } from '../support/guest';

export const firmwareDir = join(repoRoot, 'build', 'firmware');
export const installerIso = join(firmwareDir, 'installer.iso');
export const PREPARE_COMMAND = 'node dist/test/firmware/prepare.js';

const INSTALLER = '/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64';
// What GRUB prints before it hands over to the kernel, and what the installer's first
// screen shows (priority=low starts at the main menu, whose first item chooses a language).
export const GRUB_MENU_MARKER = 'GNU GRUB';
export const KERNEL_MARKER = 'BERTH-GRUB-STARTING-KERNEL';
export const INSTALLER_MARKER = 'Choose language';

const GRUB_CFG = `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
menuentry 'Install Debian (serial console)' {
  linux /install/vmlinuz console=ttyS0,115200 priority=low
  initrd /install/initrd.gz
  echo '${KERNEL_MARKER}'
}
`;

function need(path: string, pkg: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: install ${pkg} (./setup.sh --with-tests does)`);
}

export function prepareInstallerIso(): string {
  need(join(INSTALLER, 'linux'), 'debian-installer-12-netboot-amd64');
  need('/usr/bin/grub-mkrescue', 'grub-common (with grub-efi-amd64-bin and grub-pc-bin)');
  need('/usr/lib/grub/x86_64-efi', 'grub-efi-amd64-bin');
  need('/usr/lib/grub/i386-pc', 'grub-pc-bin');
  need('/usr/bin/xorriso', 'xorriso');
  need('/usr/bin/mformat', 'mtools');
  const kernel = join(INSTALLER, 'linux');
  const initrd = join(INSTALLER, 'initrd.gz');
  const inputs = [kernel, initrd];
  if (existsSync(installerIso) && inputs.every((i) => statSync(i).mtimeMs <= statSync(installerIso).mtimeMs)) {
    return installerIso;
  }
  const tree = join(firmwareDir, 'iso-tree');
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(tree, 'boot', 'grub'), { recursive: true });
  mkdirSync(join(tree, 'install'), { recursive: true });
  copyFileSync(kernel, join(tree, 'install', 'vmlinuz'));
  copyFileSync(initrd, join(tree, 'install', 'initrd.gz'));
  writeFileSync(join(tree, 'boot', 'grub', 'grub.cfg'), GRUB_CFG);
  execFileSync('grub-mkrescue', ['-o', `${installerIso}.tmp`, tree], { stdio: ['ignore', 'ignore', 'pipe'] });
  renameSync(`${installerIso}.tmp`, installerIso);
  rmSync(tree, { recursive: true, force: true });
  return installerIso;
}

if (require.main === module) {
  mkdirSync(firmwareDir, { recursive: true });
  console.log(`[firmware] ${prepareInstallerIso()}`);
}
