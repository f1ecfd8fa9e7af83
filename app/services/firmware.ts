// Generation 1 and 2 VMs' firmware on the host side: the host's firmware images (Debian's
// ovmf and seabios packages, used unmodified), each UEFI VM's own variable store
// (<vm>/firmware/uefi-vars.fd, 0600, copied from the template that matches Secure Boot), the
// boot settings a change of generation or Secure Boot implies, and what a start checks
// before the worker spawns (firmware present, the store's size, the DVD drives' images).
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import {
  BerthError,
  ConfigError,
  DEFAULT_BOOT_ORDER,
  FIRMWARE_FILES,
  isFirmwareBoot,
  type VmConfig,
  type VmSettingsPatch,
} from '../api';
import { fsyncDir } from './fsutil';
import type { VmPaths } from './paths';
import { checkpointStateFolder } from './saved-state';

// Where Debian installs them; BERTH_FIRMWARE_DIR (a list like PATH) replaces the search.
export const FIRMWARE_DIRS = ['/usr/share/OVMF', '/usr/share/qemu', '/usr/share/seabios'];

interface FirmwareImage {
  file: string;
  package: 'ovmf' | 'seabios';
  what: string;
}

export const FIRMWARE_IMAGES = {
  uefiCode: { file: 'OVMF_CODE_4M.fd', package: 'ovmf', what: 'the UEFI firmware (OVMF)' },
  // Microsoft's keys enrolled: Secure Boot is enforced (Debian's signed shim and GRUB boot).
  uefiVarsSecureBoot: {
    file: 'OVMF_VARS_4M.ms.fd',
    package: 'ovmf',
    what: "the UEFI variable store template with Microsoft's Secure Boot keys",
  },
  // No keys: Secure Boot is off.
  uefiVarsBlank: { file: 'OVMF_VARS_4M.fd', package: 'ovmf', what: 'the UEFI variable store template' },
  bios: { file: 'bios-256k.bin', package: 'seabios', what: 'the BIOS (SeaBIOS)' },
  // SeaVGABIOS for the VM's display: it draws the BIOS's text into the framebuffer.
  biosDisplayRom: { file: 'vgabios-bochs-display.bin', package: 'seabios', what: "the BIOS's display option ROM" },
} as const satisfies Record<string, FirmwareImage>;

export function firmwareDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env['BERTH_FIRMWARE_DIR'];
  return override ? override.split(':').filter((d) => d !== '') : FIRMWARE_DIRS;
}

// The host's copy of a firmware image, or FIRMWARE_NOT_FOUND naming the package to install.
export async function findFirmware(image: FirmwareImage, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const dirs = firmwareDirs(env);
  for (const dir of dirs) {
    const p = join(dir, image.file);
    const st = await fs.stat(p).catch(() => undefined);
    if (st?.isFile()) {
      if (st.size === 0 || st.size % 4096 !== 0) {
        throw new BerthError(
          'FIRMWARE_INVALID',
          `${p} (${image.what}) is ${st.size} bytes, not a firmware image; reinstall Debian's ${image.package} ` +
            `package (sudo apt-get install --reinstall ${image.package})`,
        );
      }
      return p;
    }
  }
  throw new BerthError(
    'FIRMWARE_NOT_FOUND',
    `${image.what} (${image.file}) is not installed: looked in ${dirs.join(', ')}; install Debian's ` +
      `${image.package} package (sudo apt-get install ${image.package})`,
  );
}

export function varsTemplate(secureBoot: boolean): FirmwareImage {
  return secureBoot ? FIRMWARE_IMAGES.uefiVarsSecureBoot : FIRMWARE_IMAGES.uefiVarsBlank;
}

// Copies src to dst (mode 0600) through a temporary file, so dst is the old or the new
// file, never half of one.
export async function copyPrivate(src: string, dst: string): Promise<void> {
  await fs.mkdir(dirname(dst), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(dst), `.${basename(dst)}.${randomBytes(4).toString('hex')}`);
  try {
    await fs.copyFile(src, tmp, constants.COPYFILE_EXCL);
    await fs.chmod(tmp, 0o600);
    const fh = await fs.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, dst);
    await fsyncDir(dirname(dst));
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

// Makes the VM's variable store (in `paths`, which may be a VM still being built) from the
// template that matches Secure Boot, replacing any store there: its UEFI settings (boot
// entries, enrolled keys) start afresh.
export async function createVarsStore(paths: VmPaths, secureBoot: boolean): Promise<string> {
  const template = await findFirmware(varsTemplate(secureBoot));
  await copyPrivate(template, paths.uefiVars);
  return paths.uefiVars;
}

// The copy of the VM's variable store a checkpoint keeps, in the checkpoint's folder.
export function checkpointVarsPath(paths: VmPaths, checkpointId: string): string {
  return join(checkpointStateFolder(paths, checkpointId), FIRMWARE_FILES.uefiVars);
}

export async function removeVarsStore(paths: VmPaths): Promise<void> {
  await fs.rm(paths.firmware, { recursive: true, force: true });
}

// The boot part of a settings change (VmSettingsPatch), applied to configuration c: kernel
// files, a change of kind (generation), Secure Boot, boot order. Returns what must happen to
// the VM's variable store once the configuration is written ('create' a new one from the
// matching template, 'remove' it, or nothing). Refusals say what would work.
export function applyBootPatch(c: VmConfig, patch: VmSettingsPatch): 'create' | 'remove' | undefined {
  const kernelKeys = (['kernelPath', 'initrdPath', 'cmdline'] as const).filter((k) => patch[k] !== undefined);
  const was = c.boot;
  const kind = patch.bootKind ?? was.kind;
  if (kind === 'pvh' || kind === 'linux') {
    const firmwareKey = (['secureBoot', 'bootOrder', 'display'] as const).find((k) => patch[k] !== undefined);
    if (firmwareKey !== undefined) {
      const what = {
        secureBoot: 'Secure Boot is a firmware setting',
        bootOrder: 'the boot order is a firmware setting',
        display: 'a display is for Generation 1 and 2 VMs',
      }[firmwareKey];
      throw new ConfigError([
        `${firmwareKey}: ${what}; '${c.name}' ` +
          'boots a kernel file directly (make it Generation 1 or 2 with --boot bios or --boot uefi)',
      ]);
    }
    if (was.kind === 'pvh' || was.kind === 'linux') {
      c.boot = { ...was, kind };
    } else {
      if (patch.kernelPath === undefined) {
        throw new ConfigError([
          `kernelPath: '${c.name}' boots firmware; booting a kernel directly needs the kernel (--kernel PATH)`,
        ]);
      }
      if (c.dvdDrives.length > 0) {
        throw new ConfigError([
          `dvdDrives: '${c.name}' has ${c.dvdDrives.length} DVD drive(s), which a VM booting a kernel directly ` +
            `cannot have; remove them first (berth vm dvd remove ${c.name})`,
        ]);
      }
      c.boot = { kind, kernelPath: patch.kernelPath, cmdline: '' };
    }
    if (c.boot.kind !== 'pvh' && c.boot.kind !== 'linux') throw new BerthError('INTERNAL', 'boot kind');
    if (patch.kernelPath !== undefined) c.boot.kernelPath = patch.kernelPath;
    if (patch.cmdline !== undefined) c.boot.cmdline = patch.cmdline;
    if (patch.initrdPath === null) delete c.boot.initrdPath;
    else if (patch.initrdPath !== undefined) c.boot.initrdPath = patch.initrdPath;
    return was.kind === 'uefi' ? 'remove' : undefined;
  }
  if (kernelKeys.length > 0) {
    throw new ConfigError([
      `${kernelKeys[0]}: '${c.name}' is a Generation ${kind === 'bios' ? 1 : 2} VM and boots firmware, not a ` +
        'kernel file (--boot pvh or --boot linux with --kernel PATH makes it boot a kernel directly)',
    ]);
  }
  const bootOrder = patch.bootOrder ?? (isFirmwareBoot(was) && 'bootOrder' in was ? was.bootOrder : undefined);
  const order = bootOrder ?? [...DEFAULT_BOOT_ORDER];
  const display = patch.display ?? (was.kind === 'bios' || was.kind === 'uefi' ? was.display : true);
  if (kind === 'bios') {
    if (patch.secureBoot !== undefined) {
      throw new ConfigError([`secureBoot: Secure Boot is a UEFI setting; '${c.name}' is a Generation 1 (BIOS) VM`]);
    }
    c.boot = { kind: 'bios', bootOrder: order, display };
    return was.kind === 'uefi' ? 'remove' : undefined;
  }
  const wasSecure = was.kind === 'uefi' ? was.secureBoot : undefined;
  const secureBoot = patch.secureBoot ?? wasSecure ?? true;
  c.boot = { kind: 'uefi', secureBoot, bootOrder: order, display };
  return wasSecure === undefined || wasSecure !== secureBoot ? 'create' : undefined;
}

// Carries out applyBootPatch's answer for the VM in `paths`.
export async function applyVarsChange(
  paths: VmPaths,
  config: VmConfig,
  change: 'create' | 'remove' | undefined,
): Promise<void> {
  if (change === 'create' && config.boot.kind === 'uefi') await createVarsStore(paths, config.boot.secureBoot);
  else if (change === 'remove') await removeVarsStore(paths);
}

// The firmware files a start of a Generation 1 or 2 VM uses; the host's images must be
// there, and the VM's store must fit the host's OVMF (a store from another build or of
// another size would be refused by the worker, less clearly).
export interface StartFirmware {
  codePath: string;
  varsPath?: string;
  // BIOS VMs: the display's option ROM (OVMF drives the display itself).
  displayRomPath?: string;
}

export async function prepareFirmware(config: VmConfig, paths: VmPaths): Promise<StartFirmware | undefined> {
  const boot = config.boot;
  if (boot.kind === 'bios') {
    const codePath = await findFirmware(FIRMWARE_IMAGES.bios);
    return boot.display
      ? { codePath, displayRomPath: await findFirmware(FIRMWARE_IMAGES.biosDisplayRom) }
      : { codePath };
  }
  if (boot.kind !== 'uefi') return undefined;
  const codePath = await findFirmware(FIRMWARE_IMAGES.uefiCode);
  const template = await findFirmware(varsTemplate(boot.secureBoot));
  const vars = await fs.stat(paths.uefiVars).catch(() => undefined);
  // A VM imported without its store (or whose store was lost) starts with a new one.
  if (!vars) await createVarsStore(paths, boot.secureBoot);
  else {
    const expected = (await fs.stat(template)).size;
    if (vars.size !== expected) {
      throw new BerthError(
        'FIRMWARE_VARS_MISMATCH',
        `cannot start '${config.name}': its UEFI variable store ${paths.uefiVars} is ${vars.size} bytes, but this ` +
          `host's OVMF (${codePath}) uses ${expected}-byte stores; turning Secure Boot off and on again ` +
          `(berth vm set ${config.name} --secure-boot ...) makes a new store, which resets its UEFI settings`,
      );
    }
  }
  return { codePath, varsPath: resolve(paths.uefiVars) };
}
