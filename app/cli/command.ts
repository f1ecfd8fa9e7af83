// What every `berth` command is (usage, options, run) and gets (the services, its parsed
// options, print), and the output helpers they share: sizes, durations, tables, progress.
import { type ParseArgsConfig } from 'node:util';

import { CheckpointService, DiskService, ExportService, HardwareService, VmManager } from '../services';
import { type Values } from './parse';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  usage: string;
  summary: string;
  options?: Options;
  positionals: string[]; // names of the required positionals
  run: (ctx: Context) => Promise<unknown>;
  // For commands that act on several things: true when the result reports a failure, so the
  // exit status is 1 although the command ran (and printed every outcome).
  failed?: (result: unknown) => boolean;
}

export interface Context {
  manager: VmManager;
  disks: DiskService;
  hardware: HardwareService;
  checkpoints: CheckpointService;
  exports: ExportService;
  values: Values;
  args: string[];
  json: boolean;
  print: (text: string) => void;
}

export const common: Options = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } };

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

// Progress for long operations: a bar on a terminal (stderr), nothing with --json or when
// stderr is not a terminal; Ctrl-C aborts the operation (which cleans up after itself).
export function progress(
  ctx: Context,
  label: string,
): {
  onProgress: (done: number, total: number) => void;
  signal: AbortSignal;
  end: () => void;
} {
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.on('SIGINT', onSigint);
  const tty = !ctx.json && process.stderr.isTTY === true;
  let drawn = false;
  return {
    signal: controller.signal,
    onProgress: (done, total) => {
      if (!tty) return;
      const width = 30;
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      process.stderr.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}`);
      drawn = true;
    },
    end: () => {
      process.off('SIGINT', onSigint);
      if (drawn) process.stderr.write('\n');
    },
  };
}

export async function withProgress<T>(
  ctx: Context,
  label: string,
  fn: (p: ReturnType<typeof progress>) => Promise<T>,
): Promise<T> {
  const p = progress(ctx, label);
  try {
    return await fn(p);
  } finally {
    p.end();
  }
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
