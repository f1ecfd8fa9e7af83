// Saved state: how fast a running VM is saved and resumed, through the services (the path
// `berth vm save` and `berth vm start` take). A 1024 MiB VM runs the test guest's `touch N`
// (N MiB of non-zero data from guest-physical 16 MiB up, then the counter), is saved, and
// resumed. Two references are measured in the same run on the same filesystem:
// - writing: the same number of bytes of non-zero data written to a new file with write()
//   and one fsync at the end (a 1 MiB random buffer, repeated); the save's bandwidth is its
//   memory bytes over the worker's own totalMs, which covers pausing the vCPUs through the
//   state file's fsync and rename; the reference's time covers open, the writes, fsync and
//   close: both include the fsync;
// - reading: reading the whole state file (cat > /dev/null), what a resume that read the
//   memory image instead of mapping it would at least have to do.
// Prints medians; asserts nothing about speed. Without /dev/kvm on this host the whole
// benchmark runs inside the KVM lab (bench-lab.ts), where the Berth data root is on the
// lab's /tmp, a tmpfs: the "disk" there is RAM.
// Run with `npm run bench:state` (BERTH_BENCH_REPS=N to change the repetitions).
import { randomFillSync } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statfsSync,
  statSync,
  writeSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { RUN_FILES } from '../../app/api';
import { CheckpointService, VmManager, type ConsoleSession } from '../../app/services';
import { cleanBerthHome, makeBerthHome, TextSink } from '../support/berth-home';
import { testGuestPath } from '../support/guest';
import { benchReps, IN_LAB, rerunInLab, whereMeasured } from './bench-lab';
import { fmtMs, median, table } from './report';

const MEMORY_MIB = 1024;
// The guest image and its stack sit below 16 MiB, where `touch` starts: 1000 MiB is the
// most of a 1024 MiB VM it can fill.
const TOUCH_MIB = [64, 512, 1000];
const REPS = benchReps(3);
const TARGET = 0.8;
const TIMEOUT_MS = 600_000;
const MiB = 1 << 20;
const PROBE = 'Z'; // a byte the counter's output never contains

const fmtMiB = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
const fmtRate = (bytesPerMs: number): string => `${((bytesPerMs * 1000) / MiB).toFixed(0)} MiB/s`;

// The mount a path lives on (longest mount point that prefixes it) and its filesystem type.
function mountOf(path: string): { point: string; type: string } {
  let best = { point: '/', type: 'unknown' };
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, point, type] = line.split(' ');
    if (point === undefined || type === undefined) continue;
    const inside = point === '/' || path === point || path.startsWith(point + '/');
    if (inside && point.length >= best.point.length) best = { point, type };
  }
  return best;
}

// The named write reference: `bytes` of non-zero data to a new file, write() by 1 MiB, then
// fsync; timed from open to close.
function rawWrite(path: string, bytes: number, chunk: Buffer): number {
  const t0 = performance.now();
  const fd = openSync(path, 'wx', 0o600);
  try {
    for (let left = bytes; left > 0;) left -= writeSync(fd, chunk, 0, Math.min(left, chunk.length));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return performance.now() - t0;
}

// The read reference: the whole file, 1 MiB at a time (holes read as zeros), as cat does.
function readWhole(path: string, buf: Buffer): { ms: number; bytes: number } {
  const t0 = performance.now();
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) bytes += n;
  } finally {
    closeSync(fd);
  }
  return { ms: performance.now() - t0, bytes };
}

interface Sample {
  bootRunningMs: number; // start() of the VM when Off until it returns (a fresh boot)
  bootToTouchedMs: number; // start() until `touch: N MiB written` (the guest filling memory)
  residentBeforeSave: number;
  saveCallerMs: number;
  saveTotalMs: number;
  savePauseMs: number;
  memoryBytes: number;
  allocatedBytes: number;
  fileBytes: number;
  rawBeforeRate: number; // bytes/ms of the raw write just before the save
  rawAfterRate: number; // and just after it
  readWholeMs: number;
  readWholeBytes: number;
  resumeRunningMs: number;
  resumeAnswerMs: number;
  residentAfterResume: number;
  checkpointCallerMs: number; // CheckpointService.create() of the running VM until it returns
  checkpointPauseMs: number; // the guest's pause in it, from the worker's log
  checkpointStateBytes: number;
}

// The worker logs "checkpoint written to <path>; guest paused N ms" for each live checkpoint.
function lastCheckpointPause(log: string): number {
  const all = [...readFileSync(log, 'utf8').matchAll(/checkpoint written to .*; guest paused (\d+) ms/g)];
  const last = all.at(-1)?.[1];
  if (last === undefined) throw new Error(`no checkpoint pause in ${log}`);
  return Number(last);
}

class StateBench {
  private readonly chunk = randomFillSync(Buffer.alloc(MiB));
  private readonly readBuf = Buffer.alloc(MiB);
  private readonly written = new Map<number, number>(); // memory bytes the last save of `touch N` wrote
  private checkpoints = 0;

  // One raw write not counted: the first write to a fresh tmpfs ran far slower than the rest.
  warmUp(): void {
    this.rawRate(64 * MiB);
  }

  // The raw write reference in the data root, as bytes/ms.
  private rawRate(bytes: number): number {
    const raw = join(this.root, 'raw-write.bin');
    const ms = rawWrite(raw, bytes, this.chunk);
    rmSync(raw);
    return bytes / ms;
  }

  constructor(
    private readonly root: string,
    private readonly manager: VmManager,
  ) {}

  private async console(name: string, replay: boolean): Promise<{ sink: TextSink; session: ConsoleSession }> {
    const sink = new TextSink();
    const session = await this.manager.attachConsole(name, { onData: sink.push, replay });
    return { sink, session };
  }

  async once(name: string, mib: number): Promise<Sample> {
    const m = this.manager;
    // Boot afresh and let the guest fill its memory.
    const t0 = performance.now();
    await m.start(name, { timeoutMs: TIMEOUT_MS });
    const bootRunningMs = performance.now() - t0;
    const boot = await this.console(name, true);
    await boot.sink.waitFor(`touch: ${mib} MiB written`, TIMEOUT_MS);
    const bootToTouchedMs = performance.now() - t0;
    await boot.sink.waitFor('counter: ready', TIMEOUT_MS);
    await boot.session.detach();
    // A standard checkpoint of the running VM: its memory is written while the guest runs on.
    const c0 = performance.now();
    const cp = await new CheckpointService(m).create(name, { name: `bench ${this.checkpoints++}` });
    const checkpointCallerMs = performance.now() - c0;
    const checkpointPauseMs = lastCheckpointPause(join((await m.show(name)).folder, 'run', RUN_FILES.log));
    const checkpointStateBytes = cp.stateBytes ?? NaN;
    const residentBeforeSave = (await m.stats(name)).residentBytes;
    // The raw write brackets the save (once just before, once just after), so that a change
    // in the host's load during a run weighs on both sides alike. Before, the VM is paused:
    // a running guest's timer exits (costly in the lab) would slow the reference down.
    await m.pause(name);
    const rawBeforeRate = this.rawRate(this.written.get(mib) ?? mib * MiB);
    await m.resume(name);

    // Save, as `berth vm save` does.
    const s0 = performance.now();
    const saved = await m.save(name);
    const saveCallerMs = performance.now() - s0;
    const info = saved.savedState;
    if (saved.state !== 'Saved' || info?.totalMs === undefined || info.memoryBytes === undefined) {
      throw new Error(`'${name}' did not save as expected: ${JSON.stringify(saved)}`);
    }
    const st = statSync(info.path);

    this.written.set(mib, info.memoryBytes);
    const rawAfterRate = this.rawRate(info.memoryBytes);
    const read = readWhole(info.path, this.readBuf);

    // Resume, as `berth vm start` does for a Saved VM, until it runs and until it answers.
    const r0 = performance.now();
    const resumed = await m.start(name, { timeoutMs: TIMEOUT_MS });
    const resumeRunningMs = performance.now() - r0;
    if (resumed.resumedFrom !== 'saved-state') throw new Error(`'${name}' did not resume: ${JSON.stringify(resumed)}`);
    const live = await this.console(name, false);
    await live.session.write(PROBE);
    await live.sink.waitFor(PROBE, TIMEOUT_MS);
    const resumeAnswerMs = performance.now() - r0;
    await live.session.detach();
    const residentAfterResume = (await m.stats(name)).residentBytes;
    await m.turnOff(name);
    // The checkpoint's memory would fill the lab's tmpfs over the runs.
    await new CheckpointService(m).remove(name, cp.id);

    return {
      bootRunningMs,
      bootToTouchedMs,
      residentBeforeSave,
      saveCallerMs,
      saveTotalMs: info.totalMs,
      savePauseMs: info.pauseMs ?? NaN,
      memoryBytes: info.memoryBytes,
      allocatedBytes: st.blocks * 512,
      fileBytes: st.size,
      rawBeforeRate,
      rawAfterRate,
      readWholeMs: read.ms,
      readWholeBytes: read.bytes,
      resumeRunningMs,
      resumeAnswerMs,
      residentAfterResume,
      checkpointCallerMs,
      checkpointPauseMs,
      checkpointStateBytes,
    };
  }
}

function report(samples: Map<number, Sample[]>, fsLine: string, started: number): void {
  const med = (mib: number, f: (s: Sample) => number): number => median((samples.get(mib) ?? []).map(f));
  const save: string[][] = [
    [
      'touched',
      'save (caller)',
      'save (worker)',
      'guest paused',
      'memory written',
      'file allocated',
      'save rate',
      'raw write rate',
      'save/raw',
      `target >= ${TARGET}`,
    ],
  ];
  const restore: string[][] = [
    [
      'touched',
      'resume -> Running',
      'resume -> echo',
      'fresh boot -> Running',
      'read whole file',
      'resident before save',
      'resident after resume',
      'boot + touch',
    ],
  ];
  const live: string[][] = [
    ['touched', 'checkpoint (caller)', 'guest paused', 'state allocated', 'paused/save paused'],
  ];
  for (const mib of TOUCH_MIB) {
    live.push([
      `${mib} MiB`,
      fmtMs(med(mib, (s) => s.checkpointCallerMs)),
      fmtMs(med(mib, (s) => s.checkpointPauseMs)),
      fmtMiB(med(mib, (s) => s.checkpointStateBytes)),
      (med(mib, (s) => s.checkpointPauseMs) / med(mib, (s) => s.savePauseMs)).toFixed(3),
    ]);
  }
  for (const mib of TOUCH_MIB) {
    const written = med(mib, (s) => s.memoryBytes);
    const workerMs = med(mib, (s) => s.saveTotalMs);
    const runs = samples.get(mib) ?? [];
    const raw = median(runs.flatMap((s) => [s.rawBeforeRate, s.rawAfterRate]));
    // Each run's save against the mean of the raw writes that bracketed it.
    const ratio = median(runs.map((s) => s.memoryBytes / s.saveTotalMs / ((s.rawBeforeRate + s.rawAfterRate) / 2)));
    save.push([
      `${mib} MiB`,
      fmtMs(med(mib, (s) => s.saveCallerMs)),
      fmtMs(workerMs),
      fmtMs(med(mib, (s) => s.savePauseMs)),
      fmtMiB(written),
      fmtMiB(med(mib, (s) => s.allocatedBytes)),
      fmtRate(median(runs.map((s) => s.memoryBytes / s.saveTotalMs))),
      fmtRate(raw),
      (Math.floor(ratio * 100) / 100).toFixed(2),
      ratio >= TARGET ? 'met' : 'NOT met',
    ]);
    restore.push([
      `${mib} MiB`,
      fmtMs(med(mib, (s) => s.resumeRunningMs)),
      fmtMs(med(mib, (s) => s.resumeAnswerMs)),
      fmtMs(med(mib, (s) => s.bootRunningMs)),
      `${fmtMs(med(mib, (s) => s.readWholeMs))} (${fmtMiB(med(mib, (s) => s.readWholeBytes))})`,
      fmtMiB(med(mib, (s) => s.residentBeforeSave)),
      fmtMiB(med(mib, (s) => s.residentAfterResume)),
      fmtMs(med(mib, (s) => s.bootToTouchedMs)),
    ]);
  }
  const fileBytes = med(TOUCH_MIB[0] ?? 0, (s) => s.fileBytes);
  process.stdout.write(
    [
      '',
      `Saved state of a ${MEMORY_MIB} MiB VM whose guest wrote N MiB (touch N), saved and resumed through the`,
      `services (VmManager.save / VmManager.start, as \`berth vm save\` / \`berth vm start\`); medians of ${REPS} runs.`,
      'touch writes from guest-physical 16 MiB up (the guest image sits below), so 1000 MiB is about all of the 1 GiB.',
      whereMeasured(),
      ...(IN_LAB
        ? ['Here the ratios that count are the save rate over the raw write rate, and resume over reading the file.']
        : []),
      fsLine,
      '',
      'Save, against the raw write of the same bytes (both timed from open through fsync):',
      table(save),
      'Resume (the memory image is mapped MAP_PRIVATE, pages load on first touch), against reading the',
      `state file whole (${fmtMiB(fileBytes)} apparent size, holes included):`,
      table(restore),
      'Standard checkpoint of the running VM (CheckpointService.create, as `berth checkpoint create`): the',
      'guest pauses only while its state is captured; a forked child writes the memory as it runs on.',
      "Reference: the save's pause above (the memory written with the guest paused).",
      table(live),
      'Columns:',
      '- save (caller): VmManager.save() call to return (worker answered, ended, state recorded).',
      "- save (worker), guest paused: the worker's totalMs and pauseMs (pausing the vCPUs through the",
      "  state file's fsync and rename; the guest stays paused throughout, so they are equal).",
      "- memory written: the worker's memoryBytes; file allocated: the state file's st_blocks * 512.",
      `  Untouched and zero pages are holes: allocated is N MiB plus the guest image and the device`,
      `  records, not ${MEMORY_MIB} MiB.`,
      '- save rate: memory written / worker totalMs; raw write rate: the same number of bytes of non-zero',
      '  data (a 1 MiB random buffer repeated) written with write() to a new file in the data root and',
      '  fsync()ed, timed open to close, once just before each save (the VM paused meanwhile; the bytes',
      "  of the previous save of that size, N MiB the first time) and once just after it (that save's bytes);",
      '  the median of all. save/raw: the median over runs of the save rate over the mean of the two raw',
      '  writes around it (the host is shared: its load drifts during a run).',
      '- resume -> Running: VmManager.start() of the Saved VM to return; resume -> echo: from the same call',
      `  until the guest echoed a byte typed on its console ('${PROBE}'); fresh boot -> Running: start() of`,
      '  the same VM when Off to return, for comparison (the worker start-up both share).',
      '- read whole file: read() of the state file by 1 MiB to its end (cat > /dev/null), what a resume',
      '  reading the image instead of mapping it would at least do.',
      "- resident: the worker's resident memory from VmManager.stats() (residentBytes), before the save",
      '  and just after the echo: after a resume only what the guest touched since is loaded.',
      '- boot + touch: start() until the guest printed `touch: N MiB written` (for context).',
      '',
      `total ${((Date.now() - started) / 1000).toFixed(0)} s; load average now ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
      '',
    ].join('\n'),
  );
}

async function main(): Promise<void> {
  // The lab's /tmp (a tmpfs of half its memory) holds a 1 GiB checkpoint, a raw write and a
  // save at once.
  if (await rerunInLab('state-bench', { memoryMiB: 10240 })) return;
  const started = Date.now();
  const kernelPath = testGuestPath();
  const root = makeBerthHome('state');
  const mount = mountOf(root);
  const free = statfsSync(root);
  const fsLine =
    `Berth data root ${root} on ${mount.point} (${mount.type}, ${fmtMiB(free.bavail * free.bsize)} free)` +
    (mount.type === 'tmpfs' ? ': a tmpfs, so the "disk" is RAM, and so is the raw write reference.' : '.');
  process.stdout.write(
    `${IN_LAB ? 'inside the KVM lab: ' : ''}${REPS} runs each of touch ${TOUCH_MIB.join(', ')} MiB in a ` +
      `${MEMORY_MIB} MiB VM\n${fsLine}\n`,
  );
  const manager = new VmManager({ root, clientName: 'bench:state' });
  const bench = new StateBench(root, manager);
  bench.warmUp();
  const samples = new Map<number, Sample[]>();
  try {
    for (const mib of TOUCH_MIB) {
      await manager.create({
        name: `touch-${mib}`,
        memory: { startupMiB: MEMORY_MIB },
        boot: { kind: 'pvh', kernelPath, cmdline: `touch ${mib}` },
        testExitPort: true,
      });
      samples.set(mib, []);
    }
    for (let rep = 0; rep < REPS; rep++) {
      for (const mib of TOUCH_MIB) {
        const s = await bench.once(`touch-${mib}`, mib);
        samples.get(mib)?.push(s);
        process.stdout.write(
          `  run ${rep + 1}/${REPS}, touch ${mib}: save ${fmtRate(s.memoryBytes / s.saveTotalMs)} in ${fmtMs(s.saveTotalMs)} ` +
            `(raw write before ${fmtRate(s.rawBeforeRate)}, after ${fmtRate(s.rawAfterRate)}), ` +
            `resume ${fmtMs(s.resumeRunningMs)} / echo ${fmtMs(s.resumeAnswerMs)}, read ${fmtMs(s.readWholeMs)}\n`,
        );
      }
    }
    report(samples, fsLine, started);
    for (const mib of TOUCH_MIB) await manager.remove(`touch-${mib}`);
  } finally {
    await cleanBerthHome(root);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`state-bench: ${String(err instanceof Error ? err.stack : err)}\n`);
  process.exitCode = 1;
});
