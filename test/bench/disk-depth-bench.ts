// Berth's asynchronous disk path (BlockDevice::open_async, native/disk/async_disk.h) next to
// `qemu-img bench` at queue depths 1, 8, 32 and 64 on a 1 GiB raw image and on a 1 GiB
// qcow2 image converted from it: 4 KiB random read and write, 1 MiB sequential read and
// write. Part of `npm run bench:disk` (after disk-bench.js, which compares the synchronous
// drivers at depth 1); prints numbers and asserts nothing about speed, failing only when a
// tool fails. `node dist/test/bench/disk-depth-bench.js raw` (or `qcow2`) runs one format.
//
// Choices:
// - The same workload on both sides: berth-disk-bench takes qemu-img bench's options, so
//   each row runs `qemu-img bench -f FORMAT -t none -i io_uring -d N -c COUNT -s SIZE -S STEP
//   [-w --pattern=165]` and `berth-disk-bench` with the same arguments (Berth's -i io_uring
//   is its own io_uring backend). qemu-img falls back to -i native (Linux AIO) where its
//   io_uring is missing, and the header says so.
// - Berth's thread-pool backend (-i threads, the fallback where io_uring is refused) runs
//   the same rows, for information.
// - O_DIRECT on both (-t none): the page cache neither serves reads nor absorbs writes.
// - "Random" offsets are qemu-img bench's stride (it has no random mode): an odd multiple of
//   4 KiB that visits distinct blocks all over the image, identical for both tools.
// - Timed on both sides: the requests, until the last completes; no flush (qemu-img bench
//   flushes on close, after its clock stops; berth-disk-bench times its closing flush apart).
// - The image is fully written before any run, so writes are overwrites (the steady state).
//   The qcow2 image is `qemu-img convert -O qcow2` of the raw one (64 KiB clusters, no
//   preallocation option, but every cluster holds data, so every cluster is allocated and
//   its writes never allocate); the header says so after checking with `qemu-img map`.
// - REPS alternating runs per row (who goes first alternates), medians.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  directWorks,
  fail,
  finishBench,
  fmt,
  median,
  ratioText,
  qemuSeconds,
  rate,
  run,
  SCRATCH_PARENT,
  succeeds,
  table,
  TOOL,
  type Unit,
  useScratch,
  writeRawImage,
} from './disk-bench-common';

const DEPTHS = [1, 8, 32, 64];
const REPS = 3;
const STRIDE = 4096 * 40503; // odd multiple of 4 KiB: 262144 distinct offsets before repeating
const PATTERN = 165; // 0xa5, both tools' default, given explicitly

interface Case {
  name: string;
  write: boolean;
  size: number;
  step: number;
  count: number;
  unit: Unit;
}

const CASES: Case[] = [
  { name: '4 KiB random read', write: false, size: 4096, step: STRIDE, count: 40000, unit: 'IOPS' },
  { name: '4 KiB random write', write: true, size: 4096, step: STRIDE, count: 40000, unit: 'IOPS' },
  { name: '1 MiB sequential read', write: false, size: 1 << 20, step: 1 << 20, count: 1024, unit: 'MiB/s' },
  { name: '1 MiB sequential write', write: true, size: 1 << 20, step: 1 << 20, count: 1024, unit: 'MiB/s' },
];

type Format = 'raw' | 'qcow2';

function workload(c: Case, depth: number, format: Format): string[] {
  const args = ['-f', format, '-t', 'none', '-d', `${depth}`, '-c', `${c.count}`, '-s', `${c.size}`, '-S', `${c.step}`];
  if (c.write) args.push('-w', `--pattern=${PATTERN}`);
  return args;
}

interface BerthResult {
  ops: number;
  bytes: number;
  seconds: number;
  backend: string;
  depth: number;
  max_in_flight: number;
  direct: boolean | null;
}

function berth(c: Case, depth: number, format: Format, backend: 'io_uring' | 'threads', file: string): number {
  const out = run([TOOL, ...workload(c, depth, format), '-i', backend, file]);
  let r: BerthResult;
  try {
    r = JSON.parse(out) as BerthResult;
  } catch {
    fail(`berth-disk-bench printed something other than JSON: ${out}`);
  }
  if (r.ops !== c.count || r.bytes !== c.count * c.size) fail(`berth-disk-bench did not do the work asked: ${out}`);
  if (r.backend !== backend) fail(`berth-disk-bench used ${r.backend}, not ${backend}: ${out}`);
  if (r.max_in_flight !== depth) fail(`berth-disk-bench kept ${r.max_in_flight} in flight, not ${depth}: ${out}`);
  if (r.direct === false) fail(`berth-disk-bench did not get O_DIRECT: ${out}`);
  return rate(c, r.seconds);
}

function qemu(c: Case, depth: number, format: Format, aio: string, file: string): number {
  return rate(c, qemuSeconds(run(['qemu-img', 'bench', ...workload(c, depth, format), '-i', aio, file])));
}

// A qcow2 image of the raw one, every cluster allocated (checked: qemu-img map reports one
// data extent per mapping and no zero or unallocated range).
function qcow2Image(raw: string, file: string): string {
  run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, file]);
  const map = JSON.parse(run(['qemu-img', 'map', '--output=json', '-f', 'qcow2', file])) as {
    start: number;
    length: number;
    data: boolean;
    zero: boolean;
  }[];
  const allocated = map.filter((m) => m.data && !m.zero).reduce((sum, m) => sum + m.length, 0);
  if (allocated !== 1 << 30) fail(`the qcow2 image has ${allocated} of ${1 << 30} bytes allocated`);
  return 'fully allocated (qemu-img convert of the fully written raw image; no preallocation option needed)';
}

// qemu-img's io_uring where this build and kernel have it, else Linux AIO.
function qemuAio(dir: string): string {
  const probe = join(dir, 'probe.raw');
  writeFileSync(probe, Buffer.alloc(1 << 20));
  const ok = succeeds(['qemu-img', 'bench', '-f', 'raw', '-t', 'none', '-i', 'io_uring', '-c', '16', probe]);
  rmSync(probe);
  return ok ? 'io_uring' : 'native';
}

function main(): void {
  if (process.platform !== 'linux') fail('this benchmark runs on Linux (O_DIRECT, io_uring)');
  if (!existsSync(TOOL)) fail(`${TOOL} is missing: run 'npm run build'`);
  const version = run(['qemu-img', '--version']).split('\n')[0] ?? '';
  const started = Date.now();
  const scratch = mkdtempSync(join(SCRATCH_PARENT, 'berth-disk-depth-bench-'));
  useScratch(scratch);
  const file = join(scratch, 'disk.raw');
  const only = process.argv[2];
  if (only !== undefined && only !== 'raw' && only !== 'qcow2') fail(`usage: disk-depth-bench.js [raw|qcow2]`);
  const formats: Format[] = only ? [only] : ['raw', 'qcow2'];
  process.stdout.write(`\npreparing a 1 GiB raw image (non-zero data, fully written) in ${scratch}\n`);
  writeRawImage(file);
  if (!directWorks(file)) fail(`${SCRATCH_PARENT} refuses O_DIRECT: the rows would measure the page cache`);
  const files: Record<Format, string> = { raw: file, qcow2: join(scratch, 'disk.qcow2') };
  if (formats.includes('qcow2')) {
    process.stdout.write(`qcow2 image: ${qcow2Image(file, files.qcow2)}, 64 KiB clusters\n`);
  }
  const aio = qemuAio(scratch);
  process.stdout.write(
    `reference: ${version}, qemu-img bench -f FORMAT -t none -i ${aio} -d N -c COUNT -s SIZE -S STEP [-w --pattern=${PATTERN}]` +
      (aio === 'io_uring' ? '\n' : ' (its io_uring is unavailable here: Linux AIO instead)\n') +
      `Berth: berth-disk-bench with the same arguments and -i io_uring (and -i threads); ${REPS} alternating runs, medians\n`,
  );

  const rows = [
    [
      'format',
      'case',
      'depth',
      'Berth io_uring',
      'qemu-img',
      'unit',
      'Berth/qemu-img',
      'target >= 1.0',
      'Berth threads',
      'threads/qemu-img',
    ],
  ];
  for (const format of formats) {
    for (const c of CASES) {
      for (const depth of DEPTHS) {
        const ours: number[] = [];
        const pool: number[] = [];
        const theirs: number[] = [];
        for (let rep = 0; rep < REPS; rep++) {
          const order = rep % 2 ? ['berth', 'qemu'] : ['qemu', 'berth'];
          for (const who of order) {
            if (who === 'qemu') theirs.push(qemu(c, depth, format, aio, files[format]));
            else ours.push(berth(c, depth, format, 'io_uring', files[format]));
          }
          pool.push(berth(c, depth, format, 'threads', files[format]));
        }
        const b = median(ours);
        const q = median(theirs);
        const t = median(pool);
        rows.push([
          format,
          c.name,
          `${depth}`,
          fmt(b),
          fmt(q),
          c.unit,
          ratioText(b / q),
          b / q >= 1 ? 'met' : 'not met',
          fmt(t),
          ratioText(t / q),
        ]);
        process.stdout.write(`  ${format} ${c.name}, depth ${depth}: done\n`);
      }
    }
  }
  process.stdout.write('\n' + table(rows));
  process.stdout.write(
    '\nTimed on both sides: the requests until the last one completes, no flush; O_DIRECT on both.\n' +
      '"Berth threads" is the thread-pool backend Berth falls back to where io_uring is refused.\n',
  );
  finishBench(started, scratch);
}

main();
