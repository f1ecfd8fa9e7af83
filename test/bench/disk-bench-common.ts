// What the disk benchmarks (disk-bench.ts, disk-depth-bench.ts) share: the tool's path,
// running a command or failing with its output, medians, the table printer, and 1 GiB
// raw images of non-zero data in a scratch folder that failure removes too.
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

export { median, table } from './report';

export const ROOT = join(__dirname, '..', '..', '..');
export const TOOL = join(ROOT, 'native', 'build', 'Release', 'berth-disk-bench');
export const SCRATCH_PARENT = '/var/tmp'; // a real disk filesystem, not tmpfs
export const SIZE = 1 << 30;

export type Unit = 'IOPS' | 'MiB/s';

// A run of `count` requests of `size` bytes that took `seconds`, in its unit.
export function rate(c: { unit: Unit; count: number; size: number }, seconds: number): number {
  return c.unit === 'IOPS' ? c.count / seconds : (c.count * c.size) / (1 << 20) / seconds;
}

let scratch = '';

// The folder fail() removes before exiting.
export function useScratch(dir: string): void {
  scratch = dir;
}

export function fail(message: string): never {
  process.stderr.write(`disk-bench: ${message}\n`);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  process.exit(1);
}

export function run(argv: string[]): string {
  const [cmd, ...args] = argv;
  if (!cmd) fail('empty command');
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.error) fail(`${cmd} could not be started: ${r.error.message}`);
  if (r.status !== 0) {
    fail(`${argv.join(' ')} failed (exit ${r.status ?? r.signal}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// Whether a command exits 0 (for probing what a tool supports).
export function succeeds(argv: string[]): boolean {
  const [cmd, ...args] = argv;
  if (!cmd) return false;
  return spawnSync(cmd, args, { encoding: 'utf8' }).status === 0;
}

export function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

// A ratio to two decimals, rounded down, so that a row short of a 1.0 target never reads 1.00.
export function ratioText(r: number): string {
  return (Math.floor(r * 100) / 100).toFixed(2);
}

// SIZE bytes of non-zero data (so that qemu-img convert allocates every qcow2 cluster), synced.
export function writeRawImage(path: string): void {
  const chunk = Buffer.alloc(1 << 20);
  randomFillSync(chunk);
  const fd = openSync(path, 'wx');
  for (let i = 0; i < SIZE / chunk.length; i++) {
    chunk.writeUInt32LE(i, 0);
    writeSync(fd, chunk);
  }
  fsyncSync(fd);
  closeSync(fd);
}

export function directWorks(file: string): boolean {
  try {
    closeSync(openSync(file, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

// The seconds of a `qemu-img bench` run, from its output.
export function qemuSeconds(out: string): number {
  const m = /Run completed in ([\d.]+) seconds/.exec(out);
  if (!m?.[1]) fail(`unexpected qemu-img bench output: ${out}`);
  return Number(m[1]);
}

// The last lines of a bench: its total time and the host's load (noise in the numbers), then
// its scratch folder removed.
export function finishBench(started: number, scratch: string): void {
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  process.stdout.write(
    `\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s; load average now ${load} (other work on the host makes the numbers noisier)\n`,
  );
  rmSync(scratch, { recursive: true, force: true });
}
