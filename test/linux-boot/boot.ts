// One boot of the prepared Debian cloud kernel through Berth's VMM (the addon's Machine),
// with ACPI on, up to the power-off of its busybox initramfs, timed and bounded.
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { Machine, type ExitEvent, type MachineStats } from '../../app/native';
import { INITRAMFS_MARKER } from './initramfs';
import type { PreparedLinuxBoot } from './prepare';

// bzimage: the packaged image through the 64-bit boot protocol (the kernel's own
// decompressor runs first); elf: the vmlinux with its PVH note masked, entered at its 64-bit
// ELF entry with a zero page; pvh: the vmlinux as it is, through its PVH entry note.
export type LinuxBootPath = 'bzimage' | 'elf' | 'pvh';
export const LINUX_BOOT_PATHS: readonly LinuxBootPath[] = ['bzimage', 'elf', 'pvh'];

export const BOOT_PROTOCOL: Record<LinuxBootPath, string> = {
  bzimage: 'linux-bzimage',
  elf: 'linux-elf',
  pvh: 'pvh',
};

export function kernelFor(prepared: PreparedLinuxBoot, path: LinuxBootPath): string {
  return path === 'bzimage' ? prepared.bzImage : path === 'elf' ? prepared.vmlinuxNoPvh : prepared.vmlinux;
}

export interface LinuxBootOptions {
  vcpus: number;
  memoryMiB?: number; // default 256
  timeoutMs: number; // the VM is stopped after this long (timedOut is then true)
  token: string; // echoed by /init after the marker (berth.check=TOKEN)
  append?: string[];
  consoleLog?: string; // the whole console is written here at the end
}

export interface LinuxBootResult {
  console: string;
  exit: ExitEvent;
  timedOut: boolean;
  protocol: string;
  seconds: number; // start() to the exit event
  markerSeconds?: number; // start() to the marker line
  smpCpus?: number; // N from "smp: Brought up 1 node, N CPUs"
  stats?: MachineStats;
}

export function markerLine(token: string): string {
  return `${INITRAMFS_MARKER} ${token} `;
}

const SMP = /smp: Brought up \d+ nodes?, (\d+) CPUs?/;

export async function bootLinux(
  prepared: PreparedLinuxBoot,
  path: LinuxBootPath,
  o: LinuxBootOptions,
): Promise<LinuxBootResult> {
  const cmdline = ['console=ttyS0', 'panic=-1', ...(o.append ?? []), `berth.check=${o.token}`].join(' ');
  const machine = await Machine.create({
    memoryMiB: o.memoryMiB ?? 256,
    vcpus: o.vcpus,
    kernelPath: kernelFor(prepared, path),
    initrdPath: prepared.initramfs,
    cmdline,
    restartOnReset: false,
  });
  const marker = markerLine(o.token);
  let text = '';
  let markerSeconds: number | undefined;
  let t0 = 0;
  machine.on((ev) => {
    if (ev.type !== 'console') return;
    text += Buffer.from(ev.data).toString('latin1');
    if (markerSeconds === undefined && text.includes(marker)) markerSeconds = (performance.now() - t0) / 1000;
  });
  let timedOut = false;
  let stats: MachineStats | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      stats = machine.stats(); // what each vCPU was doing when time ran out
    } catch {
      // a machine that is just exiting has no stats; the exit says enough
    }
    void machine.stop();
  }, o.timeoutMs);
  let exited = false;
  t0 = performance.now();
  try {
    await machine.start();
    const exit = await machine.waitForExit();
    exited = true;
    const seconds = (performance.now() - t0) / 1000;
    if (!stats) {
      try {
        stats = machine.stats();
      } catch {
        // as above
      }
    }
    if (o.consoleLog) writeFileSync(o.consoleLog, text);
    const smp = SMP.exec(text);
    return {
      console: text,
      exit,
      timedOut,
      protocol: stats?.bootProtocol ?? '?',
      seconds,
      ...(markerSeconds === undefined ? {} : { markerSeconds }),
      ...(smp?.[1] ? { smpCpus: Number(smp[1]) } : {}),
      ...(stats ? { stats } : {}),
    };
  } finally {
    clearTimeout(timer);
    if (!exited) await machine.stop().catch(() => undefined);
  }
}

// The end of the console and each vCPU's exit counters: what a failure message needs.
export function describeBoot(r: LinuxBootResult, lines = 20): string {
  const out = [`exit ${r.exit.reason} (code ${r.exit.code}${r.exit.detail ? `, ${r.exit.detail}` : ''})`];
  if (r.timedOut) out.push('the VM was stopped at the time limit');
  for (const v of r.stats?.vcpus ?? []) {
    const e = v.exits;
    out.push(
      `vCPU ${v.id}: cpu ${(v.cpuTimeMs / 1000).toFixed(1)} s, exits io ${e.io} mmio ${e.mmio} halt ${e.halt} other ${e.other}`,
    );
  }
  out.push('console ended with:', ...r.console.replace(/\r/g, '').split('\n').slice(-lines));
  return out.join('\n');
}
