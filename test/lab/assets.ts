// What the lab VM boots: Debian's generic kernel (it carries kvm-amd as a module), the
// modules the lab needs with their dependencies resolved from each module's own .modinfo,
// and an initramfs of busybox-static, those modules and test/lab/init.sh. Everything comes
// from Debian's archive, is cached under build/lab/ and is rebuilt only when its inputs change.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { extractVmlinux, run } from '../linux-boot/kernel';
import { cpioNewc, staticBusybox, type CpioEntry, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from '../linux-boot/initramfs';
import { repoRoot } from '../support/guest';

export const labCacheDir = join(repoRoot, 'build', 'lab');

// What the lab loads at boot, in the order given; dependencies are added in front of each.
// kvm-amd for /dev/kvm; virtio-pci + 9p for the host's files; virtio-net for forwarded ports;
// tun and bridge for the TAP specs; loop and ext4 for host-disk and filesystem specs.
export const LAB_MODULES = [
  'kvm-amd',
  'virtio_pci',
  '9pnet_virtio',
  '9p',
  'virtio_net',
  'tun',
  'bridge',
  'loop',
  'crc32c_generic',
  'ext4',
];

// A lab that cannot run the command; status is the exit status the lab command reports.
export class LabSetupError extends Error {
  constructor(
    message: string,
    readonly status = 125,
  ) {
    super(message);
  }
}

export interface LabImage {
  kernelPackage: string;
  vmlinux: string;
  initramfs: string;
}

const norm = (name: string): string => name.replace(/-/g, '_');

// "linux-image-6.1.0-57-amd64": the generic kernel the meta package points at today.
function kernelPackageName(): string | undefined {
  const deps = run('apt-cache', ['depends', 'linux-image-amd64'], { allowFail: true });
  return /Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b/.exec(deps)?.[1];
}

function aptTools(): void {
  for (const tool of ['apt-get', 'apt-cache', 'dpkg-deb']) {
    const r = run('sh', ['-c', `command -v ${tool}`], { allowFail: true });
    if (!r.trim()) {
      throw new LabSetupError(
        `${tool} is missing: the lab fetches its kernel from Debian's archive and needs a Debian or Ubuntu host`,
      );
    }
  }
}

// Downloads the kernel package unless a .deb of it is already cached, and returns its path.
function kernelDeb(): { pkg: string; deb: string } {
  mkdirSync(labCacheDir, { recursive: true });
  const cached = (pkg?: string): string | undefined =>
    readdirSync(labCacheDir)
      .filter((f) => /^linux-image-[0-9].*-amd64_.*\.deb$/.test(f) && (!pkg || f.startsWith(`${pkg}_`)))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
      .at(-1);
  aptTools();
  let pkg = kernelPackageName();
  if (!pkg) {
    const offline = cached();
    if (offline) return { pkg: offline.split('_')[0] ?? offline, deb: join(labCacheDir, offline) };
    run('apt-get', ['update', '-qq']);
    pkg = kernelPackageName();
  }
  if (!pkg) throw new LabSetupError('apt knows no linux-image-amd64 package; check /etc/apt/sources.list');
  let deb = cached(pkg);
  if (!deb) {
    process.stderr.write(`[lab] downloading ${pkg} from Debian's archive\n`);
    try {
      run('apt-get', ['download', '-qq', pkg], { cwd: labCacheDir });
    } catch (e) {
      throw new LabSetupError(`apt-get download ${pkg} failed: ${(e as Error).message}`);
    }
    deb = cached(pkg);
    if (!deb) throw new LabSetupError(`apt-get download ${pkg} left no .deb in ${labCacheDir}`);
  }
  return { pkg, deb: join(labCacheDir, deb) };
}

// The module names a .ko depends on, from "depends=" in its .modinfo section.
function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('\0depends=');
  if (at < 0) return [];
  const start = at + '\0depends='.length;
  const value = ko.toString('latin1', start, ko.indexOf(0, start));
  return value ? value.split(',').map(norm) : [];
}

// Modules in load order: each module after everything it depends on.
export function resolveModules(wanted: string[], paths: Map<string, string>): string[] {
  const order: string[] = [];
  const visit = (name: string, chain: string[]): void => {
    if (order.includes(name)) return;
    if (chain.includes(name)) throw new LabSetupError(`module dependency loop: ${[...chain, name].join(' -> ')}`);
    const path = paths.get(name);
    if (!path) throw new LabSetupError(`the lab kernel has no module ${name}`);
    for (const dep of moduleDepends(readFileSync(path))) visit(dep, [...chain, name]);
    order.push(name);
  };
  for (const name of wanted) visit(norm(name), []);
  return order;
}

function indexModules(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) indexModules(path, into);
    else if (entry.name.endsWith('.ko')) into.set(norm(entry.name.slice(0, -3)), path);
  }
  return into;
}

// Unpacks the package once into build/lab/<package>/: the vmlinuz, the uncompressed vmlinux
// QEMU boots through PVH, and the modules the lab loads.
function unpackKernel(pkg: string, deb: string): { vmlinux: string; modules: { name: string; path: string }[] } {
  const dir = join(labCacheDir, pkg);
  const done = join(dir, 'modules.order');
  if (!existsSync(done) || statSync(done).mtimeMs < statSync(deb).mtimeMs) {
    const tree = join(labCacheDir, 'unpack');
    rmSync(tree, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    run('dpkg-deb', ['-x', deb, tree]);
    const boot = join(tree, 'boot');
    const vmlinuz = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new LabSetupError(`${deb} has no boot/vmlinuz-*`);
    mkdirSync(join(dir, 'modules'), { recursive: true });
    renameSync(join(boot, vmlinuz), join(dir, 'vmlinuz'));
    const paths = indexModules(join(tree, 'lib', 'modules'));
    const order = resolveModules(LAB_MODULES, paths);
    for (const name of order) renameSync(paths.get(name) ?? '', join(dir, 'modules', `${name}.ko`));
    writeFileSync(done, order.join('\n') + '\n');
    rmSync(tree, { recursive: true, force: true });
  }
  const vmlinux = extractVmlinux(join(dir, 'vmlinuz'), join(dir, 'vmlinux'), false).vmlinux;
  const names = readFileSync(done, 'utf8').split('\n').filter(Boolean);
  return { vmlinux, modules: names.map((name) => ({ name, path: join(dir, 'modules', `${name}.ko`) })) };
}

const INIT_SCRIPT = join(repoRoot, 'test', 'lab', 'init.sh');

// The initramfs, named by a hash of everything in it so an edit of init.sh rebuilds it.
function buildInitramfs(pkg: string, modules: { name: string; path: string }[]): string {
  const busybox = staticBusybox();
  const init = readFileSync(INIT_SCRIPT);
  const hash = createHash('sha256');
  hash.update(busybox).update(init).update(pkg);
  for (const m of modules) hash.update(m.name).update(String(statSync(m.path).size));
  const out = join(labCacheDir, `initramfs-${hash.digest('hex').slice(0, 16)}.cpio`);
  if (existsSync(out)) return out;
  const entries: CpioEntry[] = [
    { name: '.', mode: S_IFDIR | 0o755 },
    ...['bin', 'dev', 'proc', 'sys', 'root', 'lab', 'lab/run', 'lab/modules'].map((d) => ({
      name: d,
      mode: S_IFDIR | 0o755,
    })),
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { name: 'init', mode: S_IFREG | 0o755, data: init },
    { name: 'lab/modules/order', mode: S_IFREG | 0o644, data: Buffer.from(modules.map((m) => m.name).join('\n')) },
    ...modules.map((m) => ({ name: `lab/modules/${m.name}.ko`, mode: S_IFREG | 0o644, data: readFileSync(m.path) })),
  ];
  for (const stale of readdirSync(labCacheDir).filter((f) => /^initramfs-.*\.cpio$/.test(f))) {
    rmSync(join(labCacheDir, stale), { force: true });
  }
  writeFileSync(`${out}.tmp`, cpioNewc(entries));
  renameSync(`${out}.tmp`, out);
  return out;
}

export function prepareLabImage(): LabImage {
  const { pkg, deb } = kernelDeb();
  const { vmlinux, modules } = unpackKernel(pkg, deb);
  return { kernelPackage: pkg, vmlinux, initramfs: buildInitramfs(pkg, modules) };
}
