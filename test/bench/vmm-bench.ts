// Berth's VMM next to QEMU on the same PVH test guest: start-up time, port-I/O exit cost and
// memory overhead, for the native runner (berth-vmm), Berth as a user starts a VM (the
// management services spawning the real worker, as `berth vm start` does) and QEMU microvm.
// Prints medians and ratios against QEMU run in the same script; asserts nothing about speed.
// Without /dev/kvm on this host the whole benchmark runs inside the KVM lab (bench-lab.ts).
// Run with `npm run bench:vmm` (BERTH_BENCH_REPS=N to change the repetitions).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

import { benchReps, IN_LAB, rerunInLab, whereMeasured } from './bench-lab';
import { fmtMs, median, table } from './report';
import { procMemory, type ProcMemory } from './proc-memory';
import { ServicesBench, type WorkerMemory } from './services-runner';

const ROOT = join(__dirname, '..', '..', '..');
const GUEST = join(ROOT, 'build', 'guest', 'berth-test-guest.elf');
const RUNNER = join(ROOT, 'native', 'build', 'Release', 'berth-vmm');
const HELPER_SRC = join(ROOT, 'test', 'bench', 'rusage-run.c');
const HELPER = join(__dirname, 'rusage-run');
// Inside the lab an exit costs tens of microseconds (far more when other lab VMs share the
// host: 100000 exits once outran the 180 s run limit), so fewer exits and rounds there; the
// per-exit figures are then close to the start-up noise, the (b) ratio less so.
const REPS = benchReps(IN_LAB ? 5 : 7);
const MEMORY_REPS = Math.min(3, REPS);
const IOLOOP = IN_LAB ? 20_000 : 200_000;
const MEMORY_MIB = 64;
const QEMU_BIN = 'qemu-system-x86_64';
const HELLO = 'hello';
const HELLO_LINE = 'Hello from the Berth test guest';
const LOOP = `ioloop ${IOLOOP}`;

type VmmId = 'native' | 'services' | 'qemu';
const VMMS: VmmId[] = ['native', 'services', 'qemu'];
const LABEL: Record<VmmId, string> = {
  native: 'Berth (native runner)',
  services: 'Berth (services + worker)',
  qemu: 'QEMU microvm',
};

// The command line that runs `cmdline` on the test guest under a VMM run as one process.
function command(vmm: 'native' | 'qemu', cmdline: string): [string, ...string[]] {
  if (vmm === 'native') {
    return [RUNNER, '--kernel', GUEST, '--cmdline', cmdline, '--memory', String(MEMORY_MIB), '--test-exit-port'];
  }
  // -nodefaults and x-option-roms=off keep QEMU as small as it goes; isa-debug-exit is the
  // same test-exit port at 0xf4 (exit status (code << 1) | 1).
  return [
    QEMU_BIN,
    ...['-accel', 'kvm', '-cpu', 'qemu64', '-M', 'microvm,x-option-roms=off,rtc=off'],
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio'],
    ...['-device', 'isa-debug-exit,iobase=0xf4,iosize=4', '-m', String(MEMORY_MIB)],
    ...['-kernel', GUEST, '-append', cmdline],
  ];
}

const scratch = mkdtempSync(join(tmpdir(), 'berth-bench-'));

function fail(message: string): never {
  process.stderr.write(`vmm-bench: ${message}\n`);
  rmSync(scratch, { recursive: true, force: true });
  process.exit(1);
}

function findInPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const p = join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

function prepare(): void {
  if (!findInPath(QEMU_BIN)) {
    fail(`${QEMU_BIN} is not installed: this benchmark compares Berth with QEMU (apt install qemu-system-x86)`);
  }
  for (const f of [RUNNER]) if (!existsSync(f)) fail(`${f} is missing: run 'npm run build'`);
  if (!existsSync(GUEST)) {
    process.stdout.write('building the test guest (make -C test/guest)\n');
    const r = spawnSync('make', ['-C', join(ROOT, 'test', 'guest')], { stdio: 'inherit' });
    if (r.status !== 0 || !existsSync(GUEST)) fail('could not build the test guest');
  }
  if (!existsSync(HELPER) || statSync(HELPER).mtimeMs < statSync(HELPER_SRC).mtimeMs) {
    const r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', HELPER, HELPER_SRC], { stdio: 'inherit' });
    if (r.status !== 0) fail('could not compile test/bench/rusage-run.c (needs a C compiler, cc)');
  }
}

interface Run {
  wallMs: number;
  userMs: number;
  sysMs: number;
}

// Runs the guest under a one-process VMM through rusage-run: wall time from fork to reaping,
// and the child's own CPU time from wait4(). Checks the guest's output and exit status.
function runProcess(vmm: 'native' | 'qemu', cmdline: string, expectLine: string): Run {
  const out = join(scratch, 'rusage');
  const [cmd, ...args] = command(vmm, cmdline);
  const r = spawnSync(HELPER, [out, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
  const stdout = r.stdout?.toString() ?? '';
  const fields = existsSync(out) ? readFileSync(out, 'utf8').trim().split(' ').map(Number) : [];
  rmSync(out, { force: true });
  const [wallNs = NaN, userUs = NaN, sysUs = NaN, , status] = fields;
  const expected = vmm === 'qemu' ? 1 : 0;
  if (r.status !== 0 || status !== expected || !stdout.includes(expectLine)) {
    fail(
      `${LABEL[vmm]} '${cmdline}': unexpected result (status ${status}, expected ${expected})\n` +
        `stdout: ${stdout}\nstderr: ${r.stderr?.toString() ?? ''}`,
    );
  }
  return { wallMs: wallNs / 1e6, userMs: userUs / 1e3, sysMs: sysUs / 1e3 };
}

async function runOnce(vmm: VmmId, services: ServicesBench, cmdline: string, expectLine: string): Promise<Run> {
  return vmm === 'services' ? services.run(cmdline) : runProcess(vmm, cmdline, expectLine);
}

// Starts the `echo` scenario (the same boot path as hello, then it waits for input) and,
// once the guest printed `echo: ready`, reads the VMM's memory; then kills it.
function idleProcessMemory(vmm: 'native' | 'qemu'): Promise<ProcMemory & { firstByteMs: number }> {
  const [cmd, ...args] = command(vmm, 'echo');
  const t0 = performance.now();
  let firstByteMs = NaN;
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    let seen = '';
    let done = false;
    let closed = false;
    child.once('close', () => (closed = true));
    const timer = setTimeout(() => finish(new Error(`${LABEL[vmm]}: no "echo: ready" within 60 s`)), 60_000);
    // Settles once the child is gone: at once if it already ended (a VMM that failed before
    // its banner), and never waiting without limit for one the kernel cannot kill.
    const finish = (err: Error | undefined, value?: ProcMemory & { firstByteMs: number }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const settle = (): void => (err || !value ? reject(err) : resolve(value));
      if (closed) return settle();
      child.kill('SIGKILL');
      const stuck = setTimeout(() => {
        err = new Error(`${LABEL[vmm]} (pid ${child.pid}) did not end within 10 s of SIGKILL`);
        settle();
      }, 10_000);
      child.once('close', () => {
        clearTimeout(stuck);
        settle();
      });
    };
    child.on('error', (err) => finish(err));
    child.once('close', (code) =>
      finish(new Error(`${LABEL[vmm]} ended (status ${code}) before "echo: ready": ${seen}`)),
    );
    child.stdout.on('data', (chunk: Buffer) => {
      if (Number.isNaN(firstByteMs)) firstByteMs = performance.now() - t0;
      seen += chunk.toString();
      if (done || !seen.includes('echo: ready') || child.pid === undefined) return;
      try {
        finish(undefined, { ...procMemory(child.pid, MEMORY_MIB), firstByteMs });
      } catch (err) {
        finish(err as Error);
      }
    });
  });
}

async function idleMemory(
  vmm: VmmId,
  services: ServicesBench,
): Promise<ProcMemory & { wrapperKiB?: number; firstByteMs: number }> {
  return vmm === 'services' ? services.idleMemory('echo', 'echo: ready') : idleProcessMemory(vmm);
}

const fmtMiB = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

interface Summary {
  start: number; // hello: wall ms
  loop: number; // ioloop: wall ms
  loopUser: number;
  loopSys: number;
  helloUser: number;
  helloSys: number;
  rss: number; // KiB, idle
  hwm: number; // KiB, peak so far
  guest: number; // KiB
  huge: number; // KiB
  overhead: number; // KiB: idle RSS - guest RAM touched
  peakOverhead: number; // KiB: peak RSS - guest RAM touched
  firstByte: number; // ms: start until the first console byte (echo)
}

async function measure(services: ServicesBench): Promise<Record<VmmId, Summary>> {
  const hello: Record<VmmId, Run[]> = { native: [], services: [], qemu: [] };
  const ioloop: Record<VmmId, Run[]> = { native: [], services: [], qemu: [] };
  const mem: Record<VmmId, (ProcMemory & { firstByteMs: number })[]> = { native: [], services: [], qemu: [] };
  for (const vmm of VMMS) await runOnce(vmm, services, HELLO, HELLO_LINE); // warm-up: caches, first-run costs
  for (let rep = 0; rep < REPS; rep++) {
    const order = VMMS.map((_, i) => VMMS[(i + rep) % VMMS.length] ?? 'native');
    for (const vmm of order) hello[vmm].push(await runOnce(vmm, services, HELLO, HELLO_LINE));
    for (const vmm of order) ioloop[vmm].push(await runOnce(vmm, services, LOOP, `ioloop: ${IOLOOP}`));
    if (rep < MEMORY_REPS) for (const vmm of order) mem[vmm].push(await idleMemory(vmm, services));
    process.stdout.write(`  round ${rep + 1}/${REPS} done\n`);
  }
  const med = (runs: Run[], key: keyof Run): number => median(runs.map((r) => r[key]));
  const summary = (v: VmmId): Summary => {
    const m = (key: keyof ProcMemory): number => median(mem[v].map((x) => x[key]));
    return {
      start: med(hello[v], 'wallMs'),
      loop: med(ioloop[v], 'wallMs'),
      loopUser: med(ioloop[v], 'userMs'),
      loopSys: med(ioloop[v], 'sysMs'),
      helloUser: med(hello[v], 'userMs'),
      helloSys: med(hello[v], 'sysMs'),
      rss: m('rssKiB'),
      hwm: m('hwmKiB'),
      guest: m('guestKiB'),
      huge: m('hugeKiB'),
      overhead: median(mem[v].map((x) => x.rssKiB - x.guestKiB)),
      firstByte: median(mem[v].map((x) => x.firstByteMs)),
      peakOverhead: median(mem[v].map((x) => x.hwmKiB - x.guestKiB)),
    };
  };
  const wrapper = median(mem.services.map((x) => (x as WorkerMemory).wrapperKiB));
  process.stdout.write(`  (the worker's /bin/sh wrapper: ${fmtMiB(wrapper)} RSS, not counted below)\n`);
  return { native: summary('native'), services: summary('services'), qemu: summary('qemu') };
}

function report(m: Record<VmmId, Summary>, started: number): void {
  const ratio = (v: VmmId, key: keyof Summary): number => m[v][key] / m.qemu[key];
  const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  const rows: string[][] = [
    ['metric (median)', ...VMMS.map((v) => LABEL[v]), 'native/QEMU', 'services/QEMU', 'target', 'native', 'services'],
  ];
  const ratioRow = (name: string, key: keyof Summary, fmt: (x: number) => string, target: number): void => {
    rows.push([
      name,
      ...VMMS.map((v) => fmt(m[v][key])),
      ratio('native', key).toFixed(2),
      ratio('services', key).toFixed(2),
      `ratio <= ${target}`,
      verdict(ratio('native', key) <= target),
      verdict(ratio('services', key) <= target),
    ]);
  };
  ratioRow('(a) start -> guest exit (hello)', 'start', fmtMs, 0.5);
  ratioRow('(a2) start -> first console byte (echo)', 'firstByte', fmtMs, 0.5);
  ratioRow(`(b) wall time, ioloop ${IOLOOP}`, 'loop', fmtMs, 0.9);
  rows.push([
    '(c) RSS - guest RAM touched, idle (echo)',
    ...VMMS.map((v) => fmtMiB(m[v].overhead)),
    ratio('native', 'overhead').toFixed(2),
    ratio('services', 'overhead').toFixed(2),
    'overhead <= 5 MiB',
    verdict(m.native.overhead <= 5 * 1024),
    verdict(m.services.overhead <= 5 * 1024),
  ]);
  process.stdout.write('\n' + table(rows));

  // Where the ioloop time goes: the boot (hello) is subtracted so that only the exits remain.
  const detail: string[][] = [['ioloop detail (median)', ...VMMS.map((v) => LABEL[v])]];
  const perExit = (x: number): string => `${((x * 1000) / IOLOOP).toFixed(2)} us`;
  const add = (name: string, f: (v: VmmId) => string): void => void detail.push([name, ...VMMS.map(f)]);
  add('user CPU', (v) => fmtMs(m[v].loopUser));
  add('system CPU', (v) => fmtMs(m[v].loopSys));
  add('system share of CPU', (v) => `${((100 * m[v].loopSys) / (m[v].loopUser + m[v].loopSys)).toFixed(0)} %`);
  add('per exit, wall (minus hello)', (v) => perExit(m[v].loop - m[v].start));
  add('per exit, user (minus hello)', (v) => perExit(m[v].loopUser - m[v].helloUser));
  add('per exit, system (minus hello)', (v) => perExit(m[v].loopSys - m[v].helloSys));
  process.stdout.write('\n' + table(detail));

  const mem: string[][] = [['memory, idle in echo (median)', ...VMMS.map((v) => LABEL[v])]];
  mem.push(['RSS (VmRSS)', ...VMMS.map((v) => fmtMiB(m[v].rss))]);
  mem.push(['peak RSS so far (VmHWM)', ...VMMS.map((v) => fmtMiB(m[v].hwm))]);
  mem.push(['guest RAM touched (Rss of guest RAM)', ...VMMS.map((v) => fmtMiB(m[v].guest))]);
  mem.push(['  of which transparent huge pages', ...VMMS.map((v) => fmtMiB(m[v].huge))]);
  mem.push(['peak RSS - guest RAM touched', ...VMMS.map((v) => fmtMiB(m[v].peakOverhead))]);
  process.stdout.write('\n' + table(mem));

  process.stdout.write(
    [
      '',
      whereMeasured(),
      '',
      'Method:',
      `- guest ${GUEST}, ${MEMORY_MIB} MiB, 1 vCPU; ${REPS} rounds after one warm-up run each, VMMs`,
      '  interleaved (order rotated each round); memory in the first ' + `${MEMORY_REPS} rounds.`,
      '- Native runner and QEMU: each run goes through test/bench/rusage-run (fork, exec, wait4): wall',
      "  time is fork to reaping (process start-up and teardown included), CPU time the child's own.",
      '- Services + worker: the path `berth vm start` takes. VmManager.start() (app/services) writes',
      '  the machine spec and spawns /bin/sh -> berth-vmm worker, which runs the VM; wall time is from the',
      "  start() call until the guest has ended (the worker exited and its shell, this process's child,",
      "  was reaped). CPU time is the shell's and the worker's (this process's reaped children, 10 ms",
      "  ticks). The manager's own work runs in this (already started) process, as in `berth serve`.",
      `- (b) runs '${LOOP}': ${IOLOOP} outb to port 0x80, each a VM exit to the VMM; per-exit figures`,
      '  subtract the hello run. System CPU is the host kernel (KVM exits, ioctl entry/return); user',
      '  CPU is the VMM itself.',
      '- (a2): native runner and QEMU from spawn to the first byte on their stdout; services from the',
      '  start() call until the first console byte reached this process (start() returns once the VM',
      '  runs, then the console is attached and the scrollback replayed), in the echo runs.',
      "- Memory is read the same way for every VMM while the 'echo' scenario (same boot path as hello)",
      `  waits for input: VmRSS and VmHWM from /proc/<pid>/status, and the Rss of the anonymous mapping`,
      `  backing the ${MEMORY_MIB} MiB guest RAM from /proc/<pid>/smaps (what the guest costs in host RAM;`,
      '  QEMU marks guest RAM MADV_HUGEPAGE, so a touched 2 MiB region counts whole). If the kernel',
      '  merged the guest mapping with a neighbour, the extra size is subtracted from its Rss (a lower',
      '  bound for the guest, so the overhead shown is an upper bound). For the services path this is',
      "  the worker process (the VM's process); its small /bin/sh wrapper is printed apart above.",
      `- Bench wall time: ${((Date.now() - started) / 1000).toFixed(0)} s.`,
      '',
    ].join('\n'),
  );
}

async function main(): Promise<void> {
  if (await rerunInLab('vmm-bench')) return;
  prepare();
  const started = Date.now();
  process.stdout.write(
    `${IN_LAB ? 'inside the KVM lab: ' : ''}${REPS} rounds of hello, ${LOOP} and (${MEMORY_REPS}) echo ` +
      `under ${VMMS.map((v) => LABEL[v]).join(', ')}\n`,
  );
  const services = await ServicesBench.create(GUEST, MEMORY_MIB, [HELLO, LOOP, 'echo']);
  try {
    report(await measure(services), started);
  } finally {
    await services.dispose();
  }
}

main()
  .catch((err: unknown) => fail(String(err instanceof Error ? err.stack : err)))
  .finally(() => rmSync(scratch, { recursive: true, force: true }));
