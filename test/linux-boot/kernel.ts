// Fetches Debian's cloud kernel into a cache folder and cuts an uncompressed vmlinux out of
// its bzImage, using only the setup header (Documentation/arch/x86/boot.rst) and the
// system's decompressors.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

export function log(message: string): void {
  process.stderr.write(`[linux-boot] ${message}\n`);
}

// Runs a command and returns its standard output; throws with its standard error on failure.
export function run(cmd: string, args: string[], opts: { cwd?: string; allowFail?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${String(r.status)}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

// "linux-image-6.1.0-56-cloud-amd64", from the meta package's dependencies (or a search).
function cloudKernelPackage(): string | undefined {
  const deps = run('apt-cache', ['depends', 'linux-image-cloud-amd64'], { allowFail: true });
  const dep = /Depends:\s*(linux-image-[0-9][^\s]*-cloud-amd64)\b/.exec(deps);
  if (dep?.[1]) return dep[1];
  const found = run('apt-cache', ['search', '--names-only', '^linux-image-[0-9].*-cloud-amd64$'], { allowFail: true })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => /^linux-image-[0-9][^\s]*-cloud-amd64$/.test(name) && !name.includes('-dbg'));
  // Highest version last, by natural order of the version numbers.
  found.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return found.at(-1);
}

export interface KernelFiles {
  packageName: string;
  bzImage: string;
}

// Returns the cached bzImage, downloading and unpacking the package if it is not there yet.
export function fetchCloudKernel(cacheDir: string, keep: boolean, fresh: boolean): KernelFiles {
  mkdirSync(cacheDir, { recursive: true });
  const cached = readdirSync(cacheDir).filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f));
  if (!fresh && cached.length > 0) {
    cached.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const name = cached.at(-1) ?? '';
    log(`using cached kernel ${join(cacheDir, name)}`);
    return { packageName: `linux-image-${name.slice('vmlinuz-'.length)}`, bzImage: join(cacheDir, name) };
  }
  let pkg = cloudKernelPackage();
  if (!pkg) {
    log('apt-cache knows no cloud kernel: running apt-get update');
    run('apt-get', ['update']);
    pkg = cloudKernelPackage();
  }
  if (!pkg) throw new Error('no linux-image-*-cloud-amd64 package found (apt-cache depends/search)');
  let deb = readdirSync(cacheDir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb || fresh) {
    log(`downloading ${pkg}`);
    run('apt-get', ['download', pkg], { cwd: cacheDir });
    deb = readdirSync(cacheDir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${cacheDir}`);
  }
  const tree = join(cacheDir, 'pkg');
  rmSync(tree, { recursive: true, force: true });
  run('dpkg-deb', ['-x', join(cacheDir, deb), tree]);
  const boot = join(tree, 'boot');
  const vmlinuz = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
  if (!vmlinuz) throw new Error(`${deb} has no boot/vmlinuz-*`);
  const out = join(cacheDir, vmlinuz);
  copyFileSync(join(boot, vmlinuz), `${out}.tmp`);
  renameSync(`${out}.tmp`, out);
  if (!keep) rmSync(tree, { recursive: true, force: true });
  log(`kernel ${out} from ${deb}`);
  return { packageName: pkg, bzImage: out };
}

// Kernel modules (paths under lib/modules/RELEASE/kernel/) read out of the kernel's .deb in
// cacheDir, downloaded again when it is gone.
export function cloudKernelModules<K extends string>(
  cacheDir: string,
  release: string,
  paths: Record<K, string>,
): Record<K, Buffer> {
  const pkg = `linux-image-${release}`;
  const find = (): string | undefined =>
    readdirSync(cacheDir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  let deb = find();
  if (!deb) {
    log(`downloading ${pkg} for its modules`);
    run('apt-get', ['download', pkg], { cwd: cacheDir });
    deb = find();
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${cacheDir}`);
  }
  const tree = join(cacheDir, 'modules-pkg');
  rmSync(tree, { recursive: true, force: true });
  run('dpkg-deb', ['-x', join(cacheDir, deb), tree]);
  try {
    const out = {} as Record<K, Buffer>;
    for (const [key, p] of Object.entries(paths) as [K, string][]) {
      const file = join(tree, 'lib', 'modules', release, 'kernel', p);
      if (!existsSync(file)) throw new Error(`${deb} has no lib/modules/${release}/kernel/${p}`);
      out[key] = readFileSync(file);
    }
    return out;
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

export interface SetupHeader {
  setupSects: number;
  protocol: number; // e.g. 0x20f
  payloadOffset: number; // from the start of the protected-mode code
  payloadLength: number;
  initSize: number;
  prefAddress: bigint;
  xloadflags: number;
  kernelVersion: string; // the string kernel_version points at, if any
}

export function parseSetupHeader(image: Buffer): SetupHeader {
  if (image.length < 0x268) throw new Error('too short for a Linux setup header');
  if (image.readUInt32LE(0x202) !== 0x53726448) throw new Error('no "HdrS" magic at 0x202: not a bzImage');
  const protocol = image.readUInt16LE(0x206);
  if (protocol < 0x208)
    throw new Error(
      `boot protocol ${(protocol >> 8).toString()}.${(protocol & 0xff).toString()} has no payload fields`,
    );
  let setupSects = image[0x1f1] ?? 0;
  if (setupSects === 0) setupSects = 4;
  let kernelVersion = '';
  const kv = image.readUInt16LE(0x20e);
  if (kv !== 0 && kv + 0x200 < image.length) {
    const start = kv + 0x200;
    const end = image.indexOf(0, start);
    kernelVersion = image.toString('latin1', start, end < 0 ? Math.min(start + 128, image.length) : end);
  }
  return {
    setupSects,
    protocol,
    payloadOffset: image.readUInt32LE(0x248),
    payloadLength: image.readUInt32LE(0x24c),
    initSize: image.readUInt32LE(0x260),
    prefAddress: image.readBigUInt64LE(0x258),
    xloadflags: image.readUInt16LE(0x236),
    kernelVersion,
  };
}

interface Codec {
  name: string;
  magic: number[];
  cmd: string;
  args: string[];
}

// Magic numbers as the kernel's own decompressors expect them (lib/decompress.c).
const CODECS: Codec[] = [
  { name: 'gzip', magic: [0x1f, 0x8b], cmd: 'gzip', args: ['-dc'] },
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], cmd: 'xz', args: ['-dc', '--single-stream'] },
  { name: 'lzma', magic: [0x5d, 0x00, 0x00], cmd: 'xz', args: ['-dc', '--format=lzma'] },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68], cmd: 'bzip2', args: ['-dc'] },
  { name: 'lz4', magic: [0x02, 0x21, 0x4c, 0x18], cmd: 'lz4', args: ['-dc'] },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd], cmd: 'zstd', args: ['-dc'] },
  { name: 'lzo', magic: [0x89, 0x4c, 0x5a, 0x4f], cmd: 'lzop', args: ['-dc'] },
];

export function detectCompression(payload: Buffer): Codec | undefined {
  return CODECS.find((c) => c.magic.every((b, i) => payload[i] === b));
}

export interface Extracted {
  vmlinux: string;
  compression: string;
  header: SetupHeader;
  payloadBytes: number;
  vmlinuxBytes: number;
  entry: bigint;
}

// Cuts the compressed payload out of the bzImage, decompresses it with the system tool and
// checks that the result is an x86-64 ELF of the size the image records. Cached by name.
export function extractVmlinux(bzImage: string, out: string, fresh: boolean): Extracted {
  const image = readFileSync(bzImage);
  const header = parseSetupHeader(image);
  const pmStart = (header.setupSects + 1) * 512;
  const start = pmStart + header.payloadOffset;
  const end = start + header.payloadLength;
  if (header.payloadLength < 8 || end > image.length) {
    throw new Error(`payload [${start}, ${end}) lies outside the ${image.length}-byte image`);
  }
  const payload = image.subarray(start, end);
  const codec = detectCompression(payload);
  if (!codec) throw new Error(`unknown payload compression (first bytes ${payload.subarray(0, 8).toString('hex')})`);
  // The build appends the uncompressed size (little-endian u32) to the compressed stream.
  const expected = payload.readUInt32LE(payload.length - 4);
  const stream = payload.subarray(0, payload.length - 4);

  if (fresh || !existsSync(out) || readFileSync(out).length !== expected) {
    log(`decompressing the ${codec.name} payload (${stream.length} bytes) with ${codec.cmd} ${codec.args.join(' ')}`);
    const fd = openSync(`${out}.tmp`, 'w');
    try {
      const r = spawnSync(codec.cmd, codec.args, { input: stream, stdio: ['pipe', fd, 'pipe'], maxBuffer: 64 << 20 });
      if (r.error) throw new Error(`${codec.cmd}: ${r.error.message} (install it: apt-get install ${codec.cmd})`);
      if (r.status !== 0) throw new Error(`${codec.cmd} ${codec.args.join(' ')} failed: ${r.stderr.toString().trim()}`);
    } finally {
      closeSync(fd);
    }
    renameSync(`${out}.tmp`, out);
  } else {
    log(`using cached ${out}`);
  }
  const elf = readFileSync(out);
  if (elf.length !== expected) throw new Error(`decompressed ${elf.length} bytes, the image says ${expected}`);
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf.readUInt16LE(18) !== 0x3e) {
    throw new Error(`${out} is not an x86-64 ELF file`);
  }
  return {
    vmlinux: out,
    compression: codec.name,
    header,
    payloadBytes: stream.length,
    vmlinuxBytes: elf.length,
    entry: elf.readBigUInt64LE(24),
  };
}

// Writes a copy of the vmlinux whose XEN_ELFNOTE_PHYS32_ENTRY note (name "Xen", type 18) is
// renamed to an unknown type, so that a loader that prefers PVH takes the kernel's 64-bit
// entry point (startup_64 with a zero page) instead. Returns false if there was no such note.
export function maskPvhNote(vmlinux: string, out: string): boolean {
  const elf = readFileSync(vmlinux);
  const phoff = Number(elf.readBigUInt64LE(32));
  const phentsize = elf.readUInt16LE(54);
  const phnum = elf.readUInt16LE(56);
  let found = false;
  for (let i = 0; i < phnum; ++i) {
    const ph = phoff + i * phentsize;
    if (elf.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    const start = Number(elf.readBigUInt64LE(ph + 8));
    const end = start + Number(elf.readBigUInt64LE(ph + 32));
    for (let p = start; p + 12 <= end;) {
      const namesz = elf.readUInt32LE(p);
      const descsz = elf.readUInt32LE(p + 4);
      const type = elf.readUInt32LE(p + 8);
      const name = elf.toString('latin1', p + 12, p + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === 18) {
        elf.writeUInt32LE(0x4245_5254, p + 8); // "BERT": no note anyone knows
        found = true;
      }
      p += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3);
    }
  }
  if (found) writeFileSync(out, elf);
  return found;
}
