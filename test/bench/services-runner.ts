// Berth the way a user starts a VM: the management services (app/services, what `berth vm
// start`, `berth serve` and the window call) spawn the real worker (berth-vmm worker, behind
// the /bin/sh wrapper that records its exit status), which runs the VM. bench:vmm times this path from VmManager.start() until the guest has ended (the
// worker exited, its shell recorded that and was reaped), and reads the worker's memory
// while the guest idles.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import { LastExit, RUN_FILES } from '../../app/api';
import { VmManager } from '../../app/services';
import { cleanBerthHome, makeBerthHome } from '../support/berth-home';
import { parentPid, procMemory, residentKiB, type ProcMemory } from './proc-memory';

export interface ServicesRun {
  wallMs: number;
  // CPU time of this process's reaped children (the wrapper shell and the worker), from
  // /proc/self/stat (10 ms ticks).
  userMs: number;
  sysMs: number;
}

export interface WorkerMemory extends ProcMemory {
  wrapperKiB: number; // the /bin/sh that waits for the worker
  firstByteMs: number; // from start() until the first console byte reached this process
}

const TIMEOUT_MS = 180_000;

function childCpuMs(): { user: number; sys: number } {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 (cutime, cstime) in USER_HZ (100 on Linux/x86).
  return { user: Number(f[13]) * 10, sys: Number(f[14]) * 10 };
}

// True when this process has no child left (the wrapper shell was reaped). Where the kernel
// has no /proc/<pid>/task/<tid>/children, the status file alone marks the end.
function noChildren(): boolean {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim() === '';
  } catch {
    return true;
  }
}

export class ServicesBench {
  private readonly folders = new Map<string, string>();

  private constructor(
    private readonly root: string,
    private readonly manager: VmManager,
    private readonly memoryMiB: number,
  ) {}

  // One VM per guest command line, in a private Berth home.
  static async create(kernelPath: string, memoryMiB: number, cmdlines: string[]): Promise<ServicesBench> {
    const root = makeBerthHome('bench');
    const bench = new ServicesBench(root, new VmManager({ root, clientName: 'bench:vmm' }), memoryMiB);
    for (const [i, cmdline] of cmdlines.entries()) {
      const vm = await bench.manager.create({
        name: `bench-${i}`,
        memory: { startupMiB: memoryMiB },
        boot: { kind: 'pvh', kernelPath, cmdline },
        testExitPort: true,
      });
      bench.folders.set(cmdline, vm.folder);
    }
    return bench;
  }

  private vm(cmdline: string): { name: string; run: string } {
    const folder = this.folders.get(cmdline);
    if (folder === undefined) throw new Error(`no bench VM for '${cmdline}'`);
    const name = [...this.folders.keys()].indexOf(cmdline);
    return { name: `bench-${name}`, run: join(folder, 'run') };
  }

  // Waits until the worker has ended: its shell wrote the status and was reaped.
  private async ended(run: string, what: string): Promise<void> {
    const status = join(run, RUN_FILES.status);
    const deadline = Date.now() + TIMEOUT_MS;
    while (!(existsSync(status) && noChildren())) {
      if (Date.now() > deadline) throw new Error(`${what}: the worker did not end within ${TIMEOUT_MS / 1000} s`);
      await sleep(2);
    }
  }

  // Starts the VM through the services and times it until the guest has ended; the guest
  // must end through the test-exit port with code 0.
  async run(cmdline: string): Promise<ServicesRun> {
    const { name, run } = this.vm(cmdline);
    const cpu0 = childCpuMs();
    const t0 = performance.now();
    let startError: unknown;
    try {
      await this.manager.start(name, { timeoutMs: TIMEOUT_MS });
    } catch (err) {
      // A guest that ends before start() saw it Running makes start() report a failure;
      // what counts here is how the guest ended (checked below).
      startError = err;
    }
    await this.ended(run, `'${cmdline}'`);
    const wallMs = performance.now() - t0;
    const cpu1 = childCpuMs();
    const exit = LastExit.safeParse(JSON.parse(readFileSync(join(run, RUN_FILES.lastExit), 'utf8')));
    if (!exit.success || exit.data.reason !== 'guest-exit' || exit.data.code !== 0) {
      const log = readFileSync(join(run, RUN_FILES.log), 'utf8').split('\n').slice(-8).join('\n');
      throw new Error(
        `services run '${cmdline}' did not end with guest exit 0: ${JSON.stringify(exit.data)}` +
          `${startError ? ` (start: ${String(startError)})` : ''}\n${log}`,
      );
    }
    return { wallMs, userMs: cpu1.user - cpu0.user, sysMs: cpu1.sys - cpu0.sys };
  }

  // Starts the VM, waits for `needle` on its console (replayed from the worker's
  // scrollback), reads the worker's memory, and turns the VM off.
  async idleMemory(cmdline: string, needle: string): Promise<WorkerMemory> {
    const { name, run } = this.vm(cmdline);
    const t0 = performance.now();
    let firstByteMs = NaN;
    const started = await this.manager.start(name, { timeoutMs: TIMEOUT_MS });
    const pid = started.workerPid;
    if (pid === undefined) throw new Error(`'${cmdline}': start() named no worker process`);
    let seen = '';
    let resolveSeen: () => void = () => undefined;
    const found = new Promise<void>((resolve) => (resolveSeen = resolve));
    const session = await this.manager.attachConsole(name, {
      onData: (bytes) => {
        if (Number.isNaN(firstByteMs)) firstByteMs = performance.now() - t0;
        seen += bytes.toString('latin1');
        if (seen.includes(needle)) resolveSeen();
      },
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        found,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no '${needle}' on the console within 60 s`)), 60_000);
        }),
      ]);
      return { ...procMemory(pid, this.memoryMiB), wrapperKiB: residentKiB(parentPid(pid)), firstByteMs };
    } finally {
      clearTimeout(timer);
      await session.detach();
      await this.manager.turnOff(name);
      await this.ended(run, `'${cmdline}' (turned off)`);
    }
  }

  async dispose(): Promise<void> {
    await cleanBerthHome(this.root);
  }
}
