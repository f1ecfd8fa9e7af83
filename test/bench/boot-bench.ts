// Firmware boot: how long a Generation 1 VM takes from power-on to GRUB's menu, SeaBIOS
// booting Debian's installer ISO (test/firmware/prepare.ts) from a DVD drive, under Berth's
// VMM (berth-vmm --bios --dvd: the same machine the services start) and under QEMU
// (-machine q35 -accel kvm, the same bios-256k.bin, the same ISO on an emulated CD drive),
// alternating, in one run on the same KVM. The clock runs from spawning the VMM to GRUB's
// menu entry on the serial console; a run that passes LIMIT_S counts as LIMIT_S (the
// ratio is then a bound, and the output says so). Prints medians and the Berth/QEMU ratio;
// asserts nothing about speed. Without /dev/kvm here, everything runs inside the KVM lab.
// Run with `npm run bench:boot` (BERTH_BENCH_REPS=N to change the repetitions).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { installerIso, prepareInstallerIso } from '../firmware/prepare';
import { repoRoot } from '../support/guest';
import { benchReps, IN_LAB, rerunInLab, whereMeasured } from './bench-lab';
import { fmtMs, median, table } from './report';

const BIOS = '/usr/share/seabios/bios-256k.bin';
const MENU_ENTRY = 'Install Debian (serial console)';
const LIMIT_S = 240;
const MEMORY_MIB = 1024;

interface Run {
  ms: number;
  reached: boolean;
}

// Spawns a VMM with its serial console on stdout and stops it once GRUB's menu shows.
function timeToMenu(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    let done = false;
    const finish = (reached: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ ms: reached ? performance.now() - started : LIMIT_S * 1000, reached });
    };
    const timer = setTimeout(() => finish(false), LIMIT_S * 1000);
    child.stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes(MENU_ENTRY)) finish(true);
    });
    child.on('exit', () => finish(false));
  });
}

const berth = (): Promise<Run> =>
  timeToMenu(join(repoRoot, 'native', 'build', 'Release', 'berth-vmm'), [
    '--bios',
    BIOS,
    '--memory',
    String(MEMORY_MIB),
    '--dvd',
    installerIso,
  ]);

const qemu = (): Promise<Run> =>
  timeToMenu('qemu-system-x86_64', [
    '-machine',
    'q35,accel=kvm',
    '-cpu',
    'host',
    '-m',
    String(MEMORY_MIB),
    '-bios',
    BIOS,
    '-nographic',
    '-nodefaults',
    '-no-reboot',
    '-serial',
    'stdio',
    '-monitor',
    'none',
    '-drive',
    `file=${installerIso},media=cdrom,readonly=on`,
  ]);

async function main(): Promise<void> {
  if (!IN_LAB) prepareInstallerIso(); // the lab has no network and starts processes slowly
  if (await rerunInLab('bench:boot')) return;
  if (!existsSync(installerIso)) throw new Error(`${installerIso} is missing: run node dist/test/firmware/prepare.js`);
  const reps = benchReps(3);
  const runs: Record<'berth' | 'qemu', Run[]> = { berth: [], qemu: [] };
  for (let i = 0; i < reps; i++) {
    const b = await berth();
    const q = await qemu();
    runs.berth.push(b);
    runs.qemu.push(q);
    process.stdout.write(`run ${i + 1}/${reps}: Berth ${fmtMs(b.ms)}, QEMU ${fmtMs(q.ms)}\n`);
  }
  const show = (r: Run[]) =>
    `${fmtMs(median(r.map((x) => x.ms)))}${r.every((x) => x.reached) ? '' : ` (${r.filter((x) => !x.reached).length} of ${r.length} did not reach it in ${LIMIT_S} s)`}`;
  const b = median(runs.berth.map((x) => x.ms));
  const q = median(runs.qemu.map((x) => x.ms));
  const bound = !runs.qemu.every((x) => x.reached) ? ' (QEMU capped at the limit: the ratio is an upper bound)' : '';
  process.stdout.write(
    `\nSeaBIOS to GRUB's menu from Debian's installer ISO in a DVD drive, ${MEMORY_MIB} MiB, medians of ${reps}:\n` +
      table([
        ['VMM', 'power-on to GRUB menu'],
        ['Berth (berth-vmm)', show(runs.berth)],
        ['QEMU (-accel kvm, q35)', show(runs.qemu)],
      ]) +
      `\nBerth/QEMU: ${(b / q).toFixed(2)}${bound}\n${whereMeasured()}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:boot: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
