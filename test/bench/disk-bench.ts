// Berth's disk drivers next to QEMU's on the same image files: `qemu-img bench` and our
// berth-disk-bench (native/tools/disk_bench.cc, which drives open_disk/BlockDevice exactly
// as virtio-blk does) run alternately on one raw and one qcow2 image, and the table shows
// medians. Prints numbers; asserts nothing about speed, and fails only when a tool fails.
// Run with `npm run bench:disk`.
//
// Choices:
// - The images live on a real disk filesystem (/var/tmp, not tmpfs) and are 1 GiB of
//   non-zero data, fully written before any test: reads read real data, and writes are
//   overwrites of allocated clusters, the steady state of a used guest disk and the same
//   data path for both tools (an image that fills up during the run would make each
//   repetition measure something different). The cost of allocating writes (first touch of
//   a qcow2 cluster) is one extra row, each run on a fresh image made by qemu-img create.
// - Both tools are asked for O_DIRECT (qemu-img -t none; ours -t none, i.e.
//   OpenOptions::direct). Whether our driver really used it is read back from the tool
//   (/proc/self/fdinfo) and printed.
// - Queue depth 1 for qemu-img (-d 1), because our drivers are synchronous; qemu-img uses
//   aio=native (-i native), QEMU's usual pairing with cache=none. One run at qemu-img's
//   default depth is shown for context only.
// - "Random" offsets are qemu-img bench's stride (-S): it has no random mode, so both tools
//   step by an odd multiple of 4 KiB that visits distinct 4 KiB blocks all over the disk,
//   and hit exactly the same offsets.
// - Both sides time the same work: the requests, and no flush. qemu-img bench stops its
//   clock when the last request completes and flushes only afterwards, on close (even with
//   --flush-interval its final flush falls outside the timed run), so Berth's figures are its
//   requests alone too (berth-disk-bench reports the closing flush apart, in flush_seconds;
//   its median is printed as a column of its own, for information). With O_DIRECT both have
//   put the data on the device by then; metadata caches (qcow2 L2/refcounts) are written
//   back at that flush on both sides. Berth runs evict the image from the page cache first
//   (--drop-cache), so a buffered open starts as cold as O_DIRECT.
import { closeSync, existsSync, fsyncSync, mkdtempSync, openSync, rmSync } from 'node:fs';
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
  SIZE,
  table,
  TOOL,
  type Unit,
  useScratch,
  writeRawImage,
} from './disk-bench-common';

const REPS = 5;
const STRIDE = 4096 * 40503; // odd multiple of 4 KiB: 262144 distinct offsets before repeating

type Format = 'raw' | 'qcow2';

interface Case {
  name: string;
  format: Format;
  write: boolean;
  size: number; // request bytes
  step: number;
  count: number;
  unit: Unit;
  fresh?: boolean; // each run on a newly created empty image
}

const CASES: Case[] = [];
for (const format of ['qcow2', 'raw'] as const) {
  CASES.push(
    { name: `${format} 4 KiB random read`, format, write: false, size: 4096, step: STRIDE, count: 20000, unit: 'IOPS' },
    { name: `${format} 4 KiB random write`, format, write: true, size: 4096, step: STRIDE, count: 20000, unit: 'IOPS' },
    {
      name: `${format} 1 MiB sequential read`,
      format,
      write: false,
      size: 1 << 20,
      step: 1 << 20,
      count: 1024,
      unit: 'MiB/s',
    },
    {
      name: `${format} 1 MiB sequential write`,
      format,
      write: true,
      size: 1 << 20,
      step: 1 << 20,
      count: 1024,
      unit: 'MiB/s',
    },
  );
}
CASES.push({
  name: 'qcow2 4 KiB random write, allocating (fresh image)',
  format: 'qcow2',
  write: true,
  size: 4096,
  step: STRIDE,
  count: 1000,
  unit: 'IOPS',
  fresh: true,
});

interface BerthResult {
  ops: number;
  bytes: number;
  seconds: number;
  flush_seconds: number;
  direct: boolean | null;
}

function berth(c: Case, file: string): { seconds: number; flushSeconds: number; direct: boolean | null } {
  const args = [TOOL, '-t', 'none', '-d', '1', '-f', c.format, '-c', `${c.count}`, '-s', `${c.size}`];
  args.push('-S', `${c.step}`, '--drop-cache');
  if (c.write) args.push('-w');
  const out = run([...args, file]);
  let r: BerthResult;
  try {
    r = JSON.parse(out) as BerthResult;
  } catch {
    fail(`berth-disk-bench printed something other than JSON: ${out}`);
  }
  if (r.ops !== c.count || r.bytes !== c.count * c.size) fail(`berth-disk-bench did not do the work asked: ${out}`);
  return { seconds: r.seconds, flushSeconds: r.flush_seconds, direct: r.direct };
}

function qemu(c: Case, file: string, depth = 1): number {
  const args = ['qemu-img', 'bench', '-f', c.format, '-t', 'none', '-i', 'native', '-d', `${depth}`];
  args.push('-c', `${c.count}`, '-s', `${c.size}`, '-S', `${c.step}`);
  if (c.write) args.push('-w');
  return qemuSeconds(run([...args, file]));
}

// 1 GiB of non-zero data in both formats, fully allocated.
function makeImages(raw: string, qcow2: string): void {
  writeRawImage(raw);
  run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  const q = openSync(qcow2, 'r+');
  fsyncSync(q);
  closeSync(q);
}

function main(): void {
  if (process.platform !== 'linux') fail('this benchmark runs on Linux (O_DIRECT, qemu-img aio=native)');
  if (!existsSync(TOOL)) fail(`${TOOL} is missing: run 'npm run build'`);
  run(['qemu-img', '--version']);
  const started = Date.now();
  const scratch = mkdtempSync(join(SCRATCH_PARENT, 'berth-disk-bench-'));
  useScratch(scratch);
  const files: Record<Format, string> = { raw: join(scratch, 'disk.raw'), qcow2: join(scratch, 'disk.qcow2') };
  process.stdout.write(`preparing 1 GiB raw and qcow2 images (non-zero data, fully allocated) in ${scratch}\n`);
  makeImages(files.raw, files.qcow2);
  if (!directWorks(files.raw)) {
    process.stdout.write(`warning: ${SCRATCH_PARENT} refuses O_DIRECT; both tools fall back to the page cache\n`);
  }
  process.stdout.write(
    `qemu-img: -t none -i native -d 1 (queue depth 1, like Berth's synchronous drivers); ` +
      `Berth: -t none (OpenOptions::direct); ${REPS} alternating runs each, medians\n`,
  );

  const rows = [
    ['case', 'Berth', 'qemu-img', 'unit', 'Berth/qemu-img', 'target >= 1.0', 'Berth O_DIRECT', 'Berth closing flush'],
  ];
  const context = [['case', 'qemu-img -d 1', 'qemu-img -d 64 (default)', 'unit']];
  let fresh = 0;
  const fileFor = (c: Case): string => {
    if (!c.fresh) return files[c.format];
    const f = join(scratch, `fresh-${fresh++}.${c.format}`);
    run(['qemu-img', 'create', '-q', '-f', c.format, f, `${SIZE}`]);
    return f;
  };
  for (const c of CASES) {
    const ours: number[] = [];
    const theirs: number[] = [];
    const flushes: number[] = [];
    let direct: boolean | null = null;
    for (let rep = 0; rep < REPS; rep++) {
      // Alternate who goes first, so neither always runs on a warmer system.
      const order = rep % 2 ? ['berth', 'qemu'] : ['qemu', 'berth'];
      for (const who of order) {
        const file = fileFor(c);
        if (who === 'qemu') {
          theirs.push(rate(c, qemu(c, file)));
        } else {
          const r = berth(c, file);
          direct = r.direct;
          ours.push(rate(c, r.seconds));
          flushes.push(r.flushSeconds);
        }
        if (c.fresh) rmSync(file);
      }
    }
    const b = median(ours);
    const q = median(theirs);
    const ratio = b / q;
    rows.push([
      c.name,
      fmt(b),
      fmt(q),
      c.unit,
      ratioText(ratio),
      ratio >= 1 ? 'met' : 'not met',
      direct === null ? 'unknown' : direct ? 'yes' : 'no (buffered)',
      c.write ? `${(median(flushes) * 1000).toFixed(1)} ms` : '-',
    ]);
    if (!c.fresh) context.push([c.name, fmt(q), fmt(rate(c, qemu(c, files[c.format], 64))), c.unit]);
    process.stdout.write(`  ${c.name}: done\n`);
  }

  process.stdout.write('\n' + table(rows));
  process.stdout.write(
    '\nTimed on both sides: the requests only, no flush (qemu-img bench flushes on close, after its\n' +
      "clock stops; Berth's closing flush is timed apart and shown in its own column, not in the rates).\n" +
      '"Berth O_DIRECT: no" means the driver reopened the image buffered (the page cache serves and absorbs I/O).\n',
  );
  process.stdout.write('\nqemu-img at its default queue depth, for context (one run):\n' + table(context));
  finishBench(started, scratch);
}

main();
