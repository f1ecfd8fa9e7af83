// Boots Debian's cloud kernel through the Berth VMM, as a bzImage (64-bit boot protocol) and
// as an uncompressed ELF vmlinux, with a busybox initramfs, and reports how far each got.
// A script to run by hand (npm run check:linux-boot -- --help), not part of CI.
import { createWriteStream, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import { Machine, NativeError, type ExitEvent, type MachineStats } from '../../app/native';
import { extractVmlinux, fetchCloudKernel, log, maskPvhNote } from './kernel';
import { buildInitramfs, INITRAMFS_MARKER } from './initramfs';

// vmlinux: the extracted ELF as it is (Berth boots it through PVH when it carries the PVH note,
// as Debian's does); vmlinux-elf: the same with the PVH note masked, so Berth takes the ELF's
// 64-bit entry with a zero page; bzimage: the packaged image through the 64-bit boot protocol.
type BootKind = 'vmlinux' | 'vmlinux-elf' | 'bzimage';
const ALL_KINDS: BootKind[] = ['vmlinux', 'vmlinux-elf', 'bzimage'];

interface Options {
  kinds: BootKind[];
  timeoutS: Record<BootKind, number>;
  vcpus: number;
  memoryMiB: number;
  cacheDir: string;
  keep: boolean;
  fresh: boolean;
  expectUserspace: boolean;
  noapic: boolean;
  append: string[];
  kernel?: string;
  tailLines: number;
}

const USAGE = `usage: node dist/test/linux-boot/linux-boot-check.js [options]
  --only KIND[,KIND]      boot only these (default: vmlinux,vmlinux-elf,bzimage), where
                          vmlinux = the extracted ELF as is (PVH entry if it has the note),
                          vmlinux-elf = the ELF with its PVH note masked (64-bit entry),
                          bzimage = the packaged bzImage (64-bit boot protocol)
  --timeout S             time limit per boot in seconds (default: vmlinux 120, bzimage 240)
  --timeout-vmlinux S, --timeout-bzimage S
  --vcpus N               vCPUs (default 1)
  --memory MIB            guest memory (default 256)
  --kernel PATH           use this bzImage instead of Debian's cloud kernel
  --append ARGS           extra kernel command-line arguments (may repeat)
  --noapic                add noapic (legacy PIC only) to the command line
  --expect-userspace      succeed only if /init printed its marker and the kernel powered off
                          (for hosts where KVM runs guest code natively)
  --cache DIR             cache folder (default build/linux-boot)
  --fresh                 download and extract again even if cached
  --keep                  keep the unpacked package tree and the initramfs
  --tail N                console lines to show per boot (default 25)`;

function parseArgs(argv: string[]): Options {
  const o: Options = {
    kinds: ALL_KINDS,
    timeoutS: { vmlinux: 120, 'vmlinux-elf': 120, bzimage: 240 },
    vcpus: 1,
    memoryMiB: 256,
    cacheDir: resolve(__dirname, '..', '..', '..', 'build', 'linux-boot'),
    keep: false,
    fresh: false,
    expectUserspace: false,
    noapic: false,
    append: [],
    tailLines: 25,
  };
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    return v;
  };
  const num = (s: string, flag: string): number => {
    const n = Number(s);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number, not ${s}`);
    return n;
  };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i] ?? '';
    switch (a) {
      case '--only': {
        const list = value(i++, a).split(',');
        const bad = list.filter((k) => !ALL_KINDS.includes(k as BootKind));
        if (bad.length) throw new Error(`--only takes ${ALL_KINDS.join(', ')}, not ${bad.join(', ')}`);
        o.kinds = ALL_KINDS.filter((k) => list.includes(k));
        break;
      }
      case '--timeout': {
        const t = num(value(i++, a), a);
        o.timeoutS = { vmlinux: t, 'vmlinux-elf': t, bzimage: t };
        break;
      }
      case '--timeout-vmlinux':
        o.timeoutS.vmlinux = o.timeoutS['vmlinux-elf'] = num(value(i++, a), a);
        break;
      case '--timeout-bzimage':
        o.timeoutS.bzimage = num(value(i++, a), a);
        break;
      case '--vcpus':
        o.vcpus = Math.floor(num(value(i++, a), a));
        break;
      case '--memory':
        o.memoryMiB = Math.floor(num(value(i++, a), a));
        break;
      case '--kernel':
        o.kernel = resolve(value(i++, a));
        break;
      case '--append':
        o.append.push(value(i++, a));
        break;
      case '--noapic':
        o.noapic = true;
        break;
      case '--expect-userspace':
        o.expectUserspace = true;
        break;
      case '--cache':
        o.cacheDir = resolve(value(i++, a));
        break;
      case '--fresh':
        o.fresh = true;
        break;
      case '--keep':
        o.keep = true;
        break;
      case '--tail':
        o.tailLines = Math.floor(num(value(i++, a), a));
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  return o;
}

interface MilestoneDef {
  id: string;
  label: string;
  re: RegExp;
}

function milestoneDefs(token: string, kind: BootKind): MilestoneDef[] {
  const defs: MilestoneDef[] = [
    {
      id: 'decompressor',
      label: 'bzImage decompressor output',
      re: /Decompressing Linux|KASLR disabled|Physical KASLR/,
    },
    { id: 'banner', label: 'Linux version banner', re: /Linux version \d/ },
    { id: 'cmdline', label: 'our command line echoed', re: new RegExp(`Command line: .*berth\\.check=${token}`) },
    { id: 'memory', label: 'Memory: ... available', re: /Memory: \d+K\/\d+K available/ },
    { id: 'tsc', label: 'TSC frequency known', re: /tsc: (Detected|Fast TSC calibration|Marking TSC)/ },
    { id: 'calibrate', label: 'Calibrating delay loop', re: /Calibrating delay loop/ },
    { id: 'smp', label: 'smp: Brought up', re: /smp: Brought up/ },
    { id: 'console', label: 'console [ttyS0] enabled', re: /console \[ttyS0\] enabled/ },
    { id: 'clocksource', label: 'clocksource switched', re: /clocksource: Switched to clocksource/ },
    { id: 'unpack', label: 'initramfs unpacking', re: /Trying to unpack rootfs|Unpacking initramfs/ },
    { id: 'serial', label: 'serial driver found ttyS0', re: /ttyS0 at I\/O 0x3f8/ },
    { id: 'freeing', label: 'Freeing unused kernel memory', re: /Freeing unused kernel/ },
    { id: 'run-init', label: 'Run /init', re: /Run \/init as init process/ },
    { id: 'marker', label: `initramfs marker ${INITRAMFS_MARKER}`, re: new RegExp(`${INITRAMFS_MARKER} ${token}`) },
    { id: 'power-down', label: 'kernel powered down', re: /reboot: Power down|System halted/ },
  ];
  return kind === 'bzimage' ? defs : defs.filter((d) => d.id !== 'decompressor');
}

// Signs of trouble, reported with the line that showed them.
const TROUBLE: { id: string; re: RegExp }[] = [
  { id: 'panic', re: /Kernel panic/ },
  { id: 'oops', re: /\bBUG:|Oops:|general protection fault|invalid opcode:/ },
  { id: 'no-console', re: /unable to open an initial console/ },
  { id: 'init-failed', re: /Failed to execute \/init|No working init found/ },
];

interface Hit {
  id: string;
  label: string;
  hostS: number; // seconds since start()
  guestS?: number; // the kernel's printk timestamp
  line: string;
}

interface BootResult {
  kind: BootKind;
  kernelPath: string;
  cmdline: string;
  logPath: string;
  timeoutS: number;
  hits: Hit[];
  missing: string[];
  trouble: Hit[];
  firstByteS?: number;
  consoleBytes: number;
  tail: string[];
  exit?: ExitEvent;
  exitS?: number;
  endedBy: 'exit' | 'time-limit' | 'power-down' | 'create-failed';
  error?: string;
  stats?: MachineStats;
}

function printkTime(line: string): number | undefined {
  const m = /^\[\s*(\d+\.\d+)\]/.exec(line);
  return m?.[1] ? Number(m[1]) : undefined;
}

let current: Machine | undefined;

async function boot(
  kind: BootKind,
  kernelPath: string,
  initrdPath: string,
  cmdline: string,
  token: string,
  o: Options,
): Promise<BootResult> {
  const logPath = join(o.cacheDir, `console-${kind}.log`);
  const logFile = createWriteStream(logPath);
  const defs = milestoneDefs(token, kind);
  const result: BootResult = {
    kind,
    kernelPath,
    cmdline,
    logPath,
    timeoutS: o.timeoutS[kind],
    hits: [],
    missing: [],
    trouble: [],
    consoleBytes: 0,
    tail: [],
    endedBy: 'time-limit',
  };
  const lines: string[] = [];
  let partial = '';
  let t0 = 0;
  const since = (): number => (performance.now() - t0) / 1000;
  let poweredDown: (() => void) | undefined;
  const powerDown = new Promise<void>((r) => (poweredDown = r));

  const seeLine = (line: string): void => {
    lines.push(line);
    if (lines.length > 500) lines.splice(0, lines.length - 500);
    for (const d of defs) {
      if (result.hits.some((h) => h.id === d.id) || !d.re.test(line)) continue;
      const hit: Hit = { id: d.id, label: d.label, hostS: since(), line };
      const g = printkTime(line);
      if (g !== undefined) hit.guestS = g;
      result.hits.push(hit);
      log(`${kind}: +${hit.hostS.toFixed(2)}s ${d.label}`);
      if (d.id === 'power-down') poweredDown?.();
    }
    for (const t of TROUBLE) {
      if (!t.re.test(line)) continue;
      result.trouble.push({ id: t.id, label: t.id, hostS: since(), line });
      log(`${kind}: +${since().toFixed(2)}s trouble (${t.id}): ${line}`);
    }
  };

  log(`${kind}: creating the VM (${o.memoryMiB} MiB, ${o.vcpus} vCPU) with ${kernelPath}`);
  let machine: Machine;
  try {
    machine = await Machine.create({
      memoryMiB: o.memoryMiB,
      vcpus: o.vcpus,
      kernelPath,
      initrdPath,
      cmdline,
      restartOnReset: false,
    });
  } catch (err) {
    logFile.end();
    result.endedBy = 'create-failed';
    result.error = err instanceof NativeError ? `${err.code}: ${err.message}` : String(err);
    return result;
  }
  current = machine;
  machine.on((ev) => {
    if (ev.type !== 'console') return;
    if (result.firstByteS === undefined) {
      result.firstByteS = since();
      log(`${kind}: +${result.firstByteS.toFixed(2)}s first console byte`);
    }
    result.consoleBytes += ev.data.length;
    logFile.write(ev.data);
    partial += Buffer.from(ev.data).toString('latin1');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) seeLine(p.replace(/\r/g, ''));
  });

  t0 = performance.now();
  await machine.start();
  const heartbeat = setInterval(() => {
    const last = (partial || lines.at(-1) || '').slice(0, 100);
    log(`${kind}: +${since().toFixed(0)}s ${result.consoleBytes} console bytes; last: ${last}`);
  }, 30_000);
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<'time-limit'>((r) => (timer = setTimeout(() => r('time-limit'), result.timeoutS * 1000)));
  const exited = machine.waitForExit().then(() => 'exit' as const);
  // Without ACPI the kernel has no way to switch the machine off: after "reboot: Power down"
  // it halts with interrupts off. Give a power-off exit a moment, then count it as done.
  const halted = powerDown.then(() => new Promise<'power-down'>((r) => setTimeout(() => r('power-down'), 3000)));
  const how = await Promise.race([exited, limit, halted]);
  clearTimeout(timer);
  clearInterval(heartbeat);
  result.endedBy = how;
  try {
    result.stats = machine.stats();
  } catch {
    // stats are a diagnostic extra
  }
  if (how !== 'exit') {
    result.exitS = since();
    await machine.stop().catch(() => undefined);
  }
  const exit = await machine.waitForExit();
  if (how === 'exit') result.exitS = since();
  result.exit = exit;
  current = undefined;
  if (partial) seeLine(partial.replace(/\r/g, ''));
  result.tail = lines.slice(-o.tailLines);
  result.missing = defs.filter((d) => !result.hits.some((h) => h.id === d.id)).map((d) => d.label);
  await new Promise<void>((r) => logFile.end(r));
  return result;
}

function fmtS(s: number | undefined): string {
  return s === undefined ? '-' : `${s.toFixed(2)}s`;
}

function report(r: BootResult): string {
  const out: string[] = [];
  out.push(`== ${r.kind}: ${r.kernelPath}`);
  out.push(`   command line: ${r.cmdline}`);
  out.push(`   console log:  ${r.logPath} (${r.consoleBytes} bytes)`);
  if (r.error) {
    out.push(`   VM creation failed: ${r.error}`);
    return out.join('\n');
  }
  if (r.stats) out.push(`   boot protocol: ${r.stats.bootProtocol}`);
  out.push('   milestones (host time since start / kernel printk time):');
  out.push(`     ${fmtS(r.firstByteS).padStart(9)}  ${''.padStart(12)}  first console byte`);
  for (const h of [...r.hits].sort((a, b) => a.hostS - b.hostS)) {
    const g = h.guestS === undefined ? '' : `[${h.guestS.toFixed(6)}]`;
    out.push(`     ${fmtS(h.hostS).padStart(9)}  ${g.padStart(12)}  ${h.label}`);
  }
  if (r.firstByteS === undefined) out.push('     (no console output at all)');
  if (r.missing.length) out.push(`   not reached: ${r.missing.join('; ')}`);
  for (const t of r.trouble) out.push(`   TROUBLE ${t.id} at ${fmtS(t.hostS)}: ${t.line}`);
  let end: string;
  if (r.endedBy === 'time-limit') end = `stopped at the time limit (${r.timeoutS} s)`;
  else if (r.endedBy === 'power-down')
    end = `kernel printed its power-down line; VM stopped by the harness (no ACPI power-off)`;
  else end = `VM exited by itself: ${r.exit?.reason ?? '?'}`;
  if (r.exit && r.endedBy === 'exit') {
    end += ` (code ${r.exit.code}${r.exit.detail ? `, detail: ${r.exit.detail}` : ''})`;
  }
  out.push(`   end: ${end} at ${fmtS(r.exitS)}`);
  if (r.stats) {
    const s = r.stats;
    out.push(
      `   stats: uptime ${(s.uptimeMs / 1000).toFixed(1)} s, resets ${s.resets}, peak RSS ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
    );
    for (const v of s.vcpus) {
      const e = v.exits;
      out.push(
        `     vCPU ${v.id}: cpu ${(v.cpuTimeMs / 1000).toFixed(1)} s; exits io ${e.io}, mmio ${e.mmio}, halt ${e.halt}, interrupted ${e.interrupted}, shutdown ${e.shutdown}, other ${e.other}`,
      );
    }
  }
  out.push(`   last ${r.tail.length} console lines:`);
  for (const l of r.tail) out.push(`     | ${l}`);
  return out.join('\n');
}

function passed(r: BootResult, o: Options): boolean {
  const has = (id: string): boolean => r.hits.some((h) => h.id === id);
  if (o.expectUserspace) {
    const cleanOff = r.endedBy === 'power-down' || (r.endedBy === 'exit' && r.exit?.reason === 'power-off');
    return has('marker') && has('power-down') && cleanOff;
  }
  return has('banner') && has('cmdline');
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const token = randomBytes(6).toString('hex');
  const kinds = o.kinds;

  const kernel = o.kernel
    ? { packageName: '(given)', bzImage: o.kernel }
    : fetchCloudKernel(o.cacheDir, o.keep, o.fresh);
  let vmlinux = '';
  let vmlinuxElf = '';
  if (kinds.includes('vmlinux') || kinds.includes('vmlinux-elf')) {
    const base = kernel.bzImage.split('/').at(-1) ?? 'kernel';
    const x = extractVmlinux(kernel.bzImage, join(o.cacheDir, base.replace(/^vmlinuz/, 'vmlinux')), o.fresh);
    vmlinux = x.vmlinux;
    log(
      `${kernel.bzImage}: boot protocol ${(x.header.protocol >> 8).toString()}.${(x.header.protocol & 0xff).toString().padStart(2, '0')}, ` +
        `${x.compression} payload of ${x.payloadBytes} bytes -> ${x.vmlinuxBytes}-byte vmlinux, entry 0x${x.entry.toString(16)}` +
        (x.header.kernelVersion ? `; ${x.header.kernelVersion}` : ''),
    );
    if (kinds.includes('vmlinux-elf')) {
      vmlinuxElf = `${vmlinux}-nopvh`;
      if (!maskPvhNote(vmlinux, vmlinuxElf)) {
        log(`${vmlinux} has no PVH note: vmlinux-elf boots the same file`);
        vmlinuxElf = vmlinux;
      }
    }
  }
  const initrd = join(o.cacheDir, 'initramfs-berth-check.cpio');
  const size = buildInitramfs(initrd, token);
  log(`initramfs ${initrd}: ${size} bytes`);

  const cmdline = [
    'console=ttyS0',
    'earlyprintk=serial,ttyS0,115200',
    'pci=off',
    'acpi=off',
    ...(o.noapic ? ['noapic'] : []),
    'nokaslr',
    'clearcpuid=cx16,smap,popcnt,ssse3',
    'noxsave',
    ...o.append,
    `berth.check=${token}`,
    'panic=-1',
  ].join(' ');

  let stopping = false;
  process.on('SIGINT', () => {
    if (stopping) process.exit(130);
    stopping = true;
    log('interrupted: stopping the VM');
    void current?.stop().finally(() => process.exit(130));
    if (!current) process.exit(130);
  });

  const results: BootResult[] = [];
  for (const kind of kinds) {
    const path = kind === 'vmlinux' ? vmlinux : kind === 'vmlinux-elf' ? vmlinuxElf : kernel.bzImage;
    results.push(await boot(kind, path, initrd, cmdline, token, o));
  }
  if (!o.keep) rmSync(initrd, { force: true });

  const ok = results.map((r) => passed(r, o));
  const lines: string[] = [''];
  lines.push(`Berth Linux boot check: ${kernel.packageName}, ${o.memoryMiB} MiB, ${o.vcpus} vCPU`);
  for (const r of results) lines.push('', report(r));
  lines.push('');
  const need = o.expectUserspace
    ? 'the initramfs marker and a clean power-off'
    : 'the Linux version banner and our command line echoed';
  results.forEach((r, i) => lines.push(`${ok[i] ? 'PASS' : 'FAIL'} ${r.kind}: needs ${need}`));
  process.stdout.write(`${lines.join('\n')}\n`);
  writeFileSync(
    join(o.cacheDir, 'report.json'),
    JSON.stringify({ token, cmdline, kernel, results: results.map((r, i) => ({ ...r, passed: ok[i] })) }, null, 2),
  );
  return ok.every(Boolean) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`linux-boot-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
