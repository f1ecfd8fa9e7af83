// Firmware boot: how long a Generation 1 VM takes from power-on to the login prompt of an
// installed Debian (test/firmware/debian-disk.ts: SeaBIOS, GRUB, Debian's cloud kernel,
// systemd, a getty on the serial console) booted from a qcow2 virtio-blk disk, under Berth's
// VMM (berth-vmm --bios --disk: the same machine the services start) and under QEMU
// (-machine q35 -accel kvm, the same bios-256k.bin, the same disk as virtio-blk-pci),
// alternating, in one run on the same KVM. Each boot gets a fresh copy of the disk (the guest
// writes to it). The clock runs from spawning the VMM to the login prompt on the serial
// console; a run that passes LIMIT_S counts as LIMIT_S (the ratio is then a bound, and the
// output says so). Prints medians and the Berth/QEMU ratio; asserts nothing about speed.
// Without /dev/kvm here, everything runs inside the KVM lab.
// Run with `npm run bench:boot` (BERTH_BENCH_REPS=N to change the repetitions).
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { DEBIAN_DISK_COMMAND, LOGIN_PROMPT, debianQcow2, prepareDebianDisk } from '../firmware/debian-disk';
import { repoRoot } from '../support/guest';
import { benchReps, IN_LAB, rerunInLab, whereMeasured } from './bench-lab';
import { fmtMs, median, table } from './report';

const BIOS = '/usr/share/seabios/bios-256k.bin';
const LIMIT_S = 600;
const MEMORY_MIB = 512;

interface Run {
  ms: number;
  reached: boolean;
}

// Spawns a VMM with its serial console on stdout and stops it once the login prompt shows.
function timeToLogin(command: string, args: string[]): Promise<Run> {
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
      if (text.includes(LOGIN_PROMPT)) finish(true);
    });
    child.on('exit', () => finish(false));
  });
}

const berth = (disk: string): Promise<Run> =>
  timeToLogin(join(repoRoot, 'native', 'build', 'Release', 'berth-vmm'), [
    '--bios',
    BIOS,
    '--memory',
    String(MEMORY_MIB),
    '--disk',
    disk,
  ]);

const qemu = (disk: string): Promise<Run> =>
  timeToLogin('qemu-system-x86_64', [
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
    `file=${disk},format=qcow2,if=none,id=disk0`,
    '-device',
    'virtio-blk-pci,drive=disk0',
  ]);

// Boots a fresh copy of the disk (the last boot's journal and logs stay out of the next).
async function onFreshCopy(scratch: string, boot: (disk: string) => Promise<Run>): Promise<Run> {
  const disk = join(scratch, 'debian-12.qcow2');
  copyFileSync(debianQcow2, disk);
  try {
    return await boot(disk);
  } finally {
    rmSync(disk, { force: true });
  }
}

const fmtRun = (r: Run): string => (r.reached ? fmtMs(r.ms) : `did not reach it within ${LIMIT_S} s`);

// The ratio of the medians; a side's runs that missed the limit count as the limit, which
// makes the ratio a bound, and a side that never got there leaves no ratio at all.
function ratio(berth: Run[], qemu: Run[]): string {
  const none = (r: Run[]) => r.every((x) => !x.reached);
  if (none(berth) || none(qemu)) return 'Berth/QEMU: no ratio (a side never reached the login prompt)';
  const value = (median(berth.map((x) => x.ms)) / median(qemu.map((x) => x.ms))).toFixed(2);
  const capped = (r: Run[]) => !r.every((x) => x.reached);
  const bound = capped(qemu)
    ? ' (QEMU capped at the limit: an upper bound)'
    : capped(berth)
      ? ' (Berth capped at the limit: a lower bound)'
      : '';
  return `Berth/QEMU: ${value}${bound}`;
}

async function main(): Promise<void> {
  if (!IN_LAB) prepareDebianDisk(); // the lab has no network and starts processes slowly
  if (await rerunInLab('bench:boot')) return;
  if (!existsSync(debianQcow2)) throw new Error(`${debianQcow2} is missing: run ${DEBIAN_DISK_COMMAND}`);
  // In the lab, tmpdir is its own memory: copies there cost no shared-folder I/O.
  const scratch = mkdtempSync(join(tmpdir(), 'berth-boot-bench-'));
  const reps = benchReps(3);
  const runs: Record<'berth' | 'qemu', Run[]> = { berth: [], qemu: [] };
  for (let i = 0; i < reps; i++) {
    const b = await onFreshCopy(scratch, berth);
    const q = await onFreshCopy(scratch, qemu);
    runs.berth.push(b);
    runs.qemu.push(q);
    process.stdout.write(`run ${i + 1}/${reps}: Berth ${fmtRun(b)}, QEMU ${fmtRun(q)}\n`);
  }
  rmSync(scratch, { recursive: true, force: true });
  const show = (r: Run[]) => {
    const missed = r.filter((x) => !x.reached).length;
    if (missed === r.length) return `did not reach it within ${LIMIT_S} s`;
    return `${fmtMs(median(r.map((x) => x.ms)))}${missed ? ` (${missed} of ${r.length} did not reach it in ${LIMIT_S} s)` : ''}`;
  };
  process.stdout.write(
    `\nPower-on to the login prompt of Debian 12 on a qcow2 virtio-blk disk (SeaBIOS, GRUB), ${MEMORY_MIB} MiB, medians of ${reps}:\n` +
      table([
        ['VMM', 'power-on to login prompt'],
        ['Berth (berth-vmm)', show(runs.berth)],
        ['QEMU (-accel kvm, q35)', show(runs.qemu)],
      ]) +
      `\n${ratio(runs.berth, runs.qemu)}\n${whereMeasured()}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:boot: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
