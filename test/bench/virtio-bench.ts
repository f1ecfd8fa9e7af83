// virtio-blk throughput as the test guest sees it (its virtio-blk-bench scenario: 1 MiB
// sequential writes and reads, 4 KiB random writes and reads, one request in flight, then
// 4 KiB random writes and reads with 32 in flight, timed with the guest's TSC), Berth through the addon next to QEMU microvm on the same
// preallocated raw image, both with O_DIRECT (Berth opens disks with direct I/O; QEMU gets
// cache=none). The guest's (emulated) kernel time per request is the same under both, so
// the ratio compares the VMMs' request paths. Also Berth's VM exits per request, from its
// stats. Prints medians over REPS alternating runs and the Berth/QEMU ratio (higher is
// better for Berth); asserts nothing. Without /dev/kvm on this host the whole benchmark runs
// inside the KVM lab (bench-lab.ts), where the scratch folder is a tmpfs that refuses O_DIRECT:
// then both sides use the page cache (Berth falls back by itself, QEMU gets cache=writeback),
// and the output says so. Run with `npm run bench:virtio` (BERTH_BENCH_REPS=N for N rounds).
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Machine } from '../../app/native';
import { benchReps, IN_LAB, rerunInLab, whereMeasured } from './bench-lab';
import { median } from './report';

const ROOT = join(__dirname, '..', '..', '..');
const GUEST = join(ROOT, 'build', 'guest', 'berth-test-guest.elf');
const REPS = benchReps(5);
const MIB = 32; // sequential requests (1 MiB each) per direction
const OPS = 1024; // random 4 KiB requests per direction
const MEMORY_MIB = 64;
// Every request is an emulated exchange inside the lab: allow it more time there.
const RUN_TIMEOUT_MS = IN_LAB ? 900_000 : 120_000;
// QEMU microvm plugs the first virtio-mmio device into the last of its 24 transports.
const QEMU_VIRTIO = 'virtio_mmio.device=512@0xfeb02e00:39';

const DEPTH = 32; // requests the guest keeps in flight in the last two tests
const TESTS = [
  'seq-write',
  'seq-read',
  'rand-write',
  'rand-read',
  `rand-write-q${DEPTH}`,
  `rand-read-q${DEPTH}`,
] as const;
type TestName = (typeof TESTS)[number];
interface Result {
  perSecond: Record<TestName, number>; // MiB/s for seq, IOPS for rand
  exits?: number;
}

function parse(output: string): Record<TestName, number> {
  const out = {} as Record<TestName, number>;
  for (const name of TESTS) {
    const m = new RegExp(`^bench: ${name} (\\d+) x (\\d+) in (\\d+) us$`, 'm').exec(output);
    if (!m) throw new Error(`no ${name} line in the guest's output:\n${output}`);
    const [size, count, us] = [Number(m[1]), Number(m[2]), Number(m[3])];
    out[name] = name.startsWith('seq') ? (size * count) / (1024 * 1024) / (us / 1e6) : count / (us / 1e6);
  }
  return out;
}

async function runBerth(image: string, args: string): Promise<{ output: string; exits: number }> {
  const machine = await Machine.create({
    memoryMiB: MEMORY_MIB,
    vcpus: 1,
    kernelPath: GUEST,
    testExitPort: true,
    cmdline: `virtio-blk-bench ${args}`,
    disks: [{ path: image }],
  });
  let output = '';
  machine.on((event) => {
    if (event.type === 'console') output += Buffer.from(event.data).toString('latin1');
  });
  const timer = setTimeout(() => void machine.stop(), RUN_TIMEOUT_MS);
  await machine.start();
  const exit = await machine.waitForExit();
  clearTimeout(timer);
  if (exit.reason !== 'guest-exit' || exit.code !== 0) throw new Error(`Berth run failed: ${output}`);
  const exits = machine.stats().vcpus.reduce((n, v) => n + v.exits.io + v.exits.mmio + v.exits.halt + v.exits.other, 0);
  return { output, exits };
}

function directWorks(file: string): boolean {
  try {
    closeSync(openSync(file, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

function runQemu(image: string, args: string, cache: 'none' | 'writeback'): string {
  const r = spawnSync(
    'qemu-system-x86_64',
    [
      '-accel',
      'kvm',
      '-cpu',
      'qemu64',
      '-m',
      String(MEMORY_MIB),
      '-M',
      'microvm,x-option-roms=off,rtc=on',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-device',
      'isa-debug-exit,iobase=0xf4,iosize=4',
      '-global',
      'virtio-mmio.force-legacy=false',
      '-drive',
      `id=d0,file=${image},format=raw,if=none,cache=${cache}`,
      '-device',
      'virtio-blk-device,drive=d0',
      '-kernel',
      GUEST,
      '-append',
      `virtio-blk-bench ${args} ${QEMU_VIRTIO}`,
    ],
    { encoding: 'latin1', timeout: RUN_TIMEOUT_MS },
  );
  // isa-debug-exit: the process exits with (code << 1) | 1.
  if (r.status !== 1) throw new Error(`QEMU run failed (status ${r.status}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function main(): Promise<void> {
  if (await rerunInLab('virtio-bench')) return;
  const dir = mkdtempSync(join(tmpdir(), 'berth-virtio-bench-'));
  try {
    const image = join(dir, 'bench.raw');
    const made = spawnSync('qemu-img', ['create', '-f', 'raw', '-o', 'preallocation=full', image, `${MIB * 2}M`]);
    if (made.status !== 0) throw new Error(`qemu-img create failed: ${String(made.stderr)}`);
    const direct = directWorks(image);
    const cache = direct ? 'none' : 'writeback';
    const args = `${MIB} ${OPS} ${DEPTH}`;
    // Exits the requests cost: a full run minus a minimal one (boot and calibration).
    const small = await runBerth(image, '1 1');
    const requests = MIB + 1 + OPS + 1 + MIB + OPS + (OPS + 1 + OPS) - (1 + 1 + 1 + 1 + 1 + 1);
    const berth: Result[] = [];
    const qemu: Result[] = [];
    // One warm-up run each, then alternate so drift in the host hits both alike.
    await runBerth(image, args);
    runQemu(image, args, cache);
    for (let i = 0; i < REPS; i++) {
      const b = await runBerth(image, args);
      berth.push({ perSecond: parse(b.output), exits: (b.exits - small.exits) / requests });
      qemu.push({ perSecond: parse(runQemu(image, args, cache)) });
    }
    const rows = TESTS.map((name) => {
      const b = median(berth.map((r) => r.perSecond[name]));
      const q = median(qemu.map((r) => r.perSecond[name]));
      const unit = name.startsWith('seq') ? 'MiB/s' : 'IOPS';
      return { name, unit, b, q, ratio: b / q };
    });
    console.log(
      `virtio-blk, test guest, ${MIB} x 1 MiB sequential / ${OPS} x 4 KiB random per direction at queue depth 1, ` +
        `then ${OPS} x 4 KiB random per direction at depth ${DEPTH} (QEMU's default aio), ` +
        `median of ${REPS} (raw image in ${dir}, ${
          direct
            ? 'O_DIRECT both: QEMU cache=none'
            : 'its filesystem refuses O_DIRECT: page cache both, Berth buffered, QEMU cache=writeback'
        })${IN_LAB ? ', inside the KVM lab' : ''}\n`,
    );
    console.log('test             unit      Berth       QEMU   Berth/QEMU');
    for (const r of rows) {
      console.log(
        `${r.name.padEnd(16)} ${r.unit.padEnd(6)} ${r.b.toFixed(1).padStart(9)} ${r.q.toFixed(1).padStart(10)} ${r.ratio
          .toFixed(2)
          .padStart(12)}`,
      );
    }
    const exits = median(berth.map((r) => r.exits ?? 0));
    console.log(`\nBerth VM exits per request (stats, full run minus a minimal run): ${exits.toFixed(3)}`);
    console.log(`lowest Berth/QEMU ratio: ${Math.min(...rows.map((r) => r.ratio)).toFixed(2)} (target >= 1.0)`);
    console.log(`\n${whereMeasured()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
