// The KVM lab: runs a command where /dev/kvm works. On a host with a usable /dev/kvm that is
// the host itself; elsewhere it is a small Linux VM under QEMU's software emulator (TCG),
// whose emulated AMD SVM lets Debian's kvm-amd module provide a real /dev/kvm. The VM sees
// the host's root read-only and the project read-write, so the command runs on the same
// files, and its output streams back as it is written.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';

import { repoRoot } from '../support/guest';
import { labCacheDir, LabSetupError, prepareLabImage } from './assets';
import { watchLabConsole } from './watchdog';

export { LabSetupError } from './assets';

export interface LabOptions {
  // The whole run, boot included, is ended after this long (exit status 124).
  timeoutSeconds?: number;
  // Host loopback ports forwarded to the same port on the lab's loopback.
  forwards?: number[];
  cpus?: number;
  memoryMiB?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  // Where the command's output goes; by default this process's stdout.
  onOutput?: (chunk: Buffer) => void;
  // Ends the run early (the lab VM is killed; its files are scratch).
  signal?: AbortSignal;
  // QEMU's TCG threads: 'single' (the default, see below) or 'multi' (a host thread per lab
  // CPU, which guests with several vCPUs that wait on each other need).
  tcgThread?: 'single' | 'multi';
}

export interface LabResult {
  status: number;
  where: 'host' | 'lab';
  // The lab kernel's log of a run that failed or whose kernel complained (lab only).
  consoleLog?: string;
  // Seconds from QEMU's start to the command's start (lab only).
  bootSeconds?: number;
  // The last lines of the lab kernel's log of a run ended through options.signal.
  consoleTail?: string;
  seconds: number;
}

export const LAB_TIMEOUT_STATUS = 124;
// The lab VM itself ended (its kernel panicked) or broke down (see watchdog.ts) while the command ran.
export const LAB_DIED_STATUS = 126;

// BERTH_LAB=always sends commands to the lab even on a host with KVM (to test the lab);
// BERTH_LAB=never refuses to start one. BERTH_LAB_CPU is QEMU's -cpu for the lab VM (default
// max; it needs SVM with nested paging: max, EPYC-Rome and EPYC-Milan have it).
export function labMode(): 'auto' | 'always' | 'never' {
  const v = process.env['BERTH_LAB'];
  return v === 'always' || v === 'never' ? v : 'auto';
}

// True when this process can open /dev/kvm read-write (what the VMM needs) and it is the
// hardware-assisted KVM: the /dev/kvm of kvm-pvm (a paravirtualized guest's own KVM) opens
// and creates VMs, but fails in guest kernels' real-mode and early boot code.
export function hostHasKvm(): boolean {
  if (existsSync('/sys/module/kvm_pvm')) return false;
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

export function kvmHere(): boolean {
  return process.env['BERTH_IN_LAB'] === '1' || (labMode() !== 'always' && hostHasKvm());
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

// The script the lab's init runs in the chroot: the caller's environment, its folder, the command.
function commandScript(command: string[], cwd: string, env: NodeJS.ProcessEnv): string {
  const skip = new Set(['HOME', 'PWD', 'OLDPWD', 'SHLVL', '_', 'TMPDIR']);
  const lines = ['# written by test/lab/lab.ts'];
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || skip.has(key) || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) continue;
    lines.push(`export ${key}=${quote(value)}`);
  }
  lines.push('export HOME=/tmp/lab-home BERTH_IN_LAB=1', 'mkdir -p "$HOME"');
  lines.push(`cd ${quote(cwd)} || exit 126`, `exec ${command.map(quote).join(' ')}`, '');
  return lines.join('\n');
}

function qemuMissing(): string | undefined {
  const r = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  if (r.error) return 'qemu-system-x86_64 is missing: install it with `apt-get install qemu-system-x86`';
  return undefined;
}

// The last lines of the lab's console, without its heartbeats (watchdog.ts).
function tail(path: string, lines: number): string {
  if (!existsSync(path)) return '(no console output)';
  const all = readFileSync(path, 'utf8').replace(/\r/g, '').split('\n');
  return all
    .filter((l) => !l.startsWith('BERTH-LAB-BEAT'))
    .slice(-lines)
    .join('\n');
}

async function runOnHost(command: string[], options: LabOptions): Promise<LabResult> {
  const started = Date.now();
  const [cmd, ...args] = command;
  const child = spawn(cmd ?? '', args, {
    cwd: options.cwd ?? process.cwd(),
    env: options.env ?? process.env,
    stdio: ['ignore', options.onOutput ? 'pipe' : 'inherit', options.onOutput ? 'pipe' : 'inherit'],
  });
  if (options.onOutput) {
    child.stdout?.on('data', options.onOutput);
    child.stderr?.on('data', options.onOutput);
  }
  const status = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(127));
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)));
  });
  return { status, where: 'host', seconds: (Date.now() - started) / 1000 };
}

export async function runInLab(command: string[], options: LabOptions = {}): Promise<LabResult> {
  if (command.length === 0) throw new LabSetupError('no command to run');
  if (kvmHere()) return runOnHost(command, options);
  if (labMode() === 'never') throw new LabSetupError('/dev/kvm is not usable here and BERTH_LAB=never');
  const missing = qemuMissing();
  if (missing) throw new LabSetupError(missing);
  const image = prepareLabImage();

  const started = Date.now();
  mkdirSync(join(labCacheDir, 'runs'), { recursive: true });
  const runDir = mkdtempSync(join(labCacheDir, 'runs', 'run-'));
  const consoleLog = join(runDir, 'console.log');
  const forwards = options.forwards ?? [];
  writeFileSync(join(runDir, 'settings'), `PROJECT=${quote(repoRoot)}\nFORWARDS=${quote(forwards.join(' '))}\n`);
  writeFileSync(
    join(runDir, 'command'),
    commandScript(command, options.cwd ?? process.cwd(), options.env ?? process.env),
  );

  const cpus = options.cpus ?? Number(process.env['BERTH_LAB_CPUS'] ?? 2);
  const memory = options.memoryMiB ?? Number(process.env['BERTH_LAB_MEMORY_MIB'] ?? 6144);
  const share = (path: string, tag: string, extra = ''): string[] => [
    '-virtfs',
    `local,path=${path},mount_tag=${tag},security_model=none,multidevs=remap${extra}`,
  ];
  const args = [
    // One host thread runs both lab CPUs in turn. With a thread per CPU (multi-threaded TCG)
    // the lab froze in 3 of 7 runs of the virtio-blk and machine-control specs on a host
    // loaded by two busy loops, its CPUs spinning in interrupt delivery; with one thread in
    // none of 8, taking 53-107 s a run against 50-132 s. But there, a guest's vCPUs that
    // wait on each other (a Linux boot with 2 vCPUs) wait for the emulator's 100 ms time
    // slices: such runs ask for 'multi' (options.tcgThread, or BERTH_LAB_TCG_THREAD).
    ...['-accel', `tcg,thread=${options.tcgThread ?? process.env['BERTH_LAB_TCG_THREAD'] ?? 'single'},tb-size=512`],
    ...['-machine', 'q35', '-cpu', process.env['BERTH_LAB_CPU'] ?? 'max'],
    ...['-smp', String(cpus), '-m', String(memory)],
    ...['-kernel', image.vmlinux, '-initrd', image.initramfs],
    ...['-append', `console=ttyS0 quiet loglevel=5 panic=-1 mitigations=off ${process.env['BERTH_LAB_APPEND'] ?? ''}`],
    ...share('/', 'hostroot', ',readonly=on'),
    ...share(repoRoot, 'project'),
    ...share(runDir, 'labrun'),
    ...['-display', 'none', '-nodefaults', '-no-reboot', '-monitor', 'none'],
    ...['-chardev', `file,id=log,path=${consoleLog}`, '-serial', 'chardev:log'],
    ...['-chardev', 'stdio,id=out,signal=off', '-serial', 'chardev:out'],
  ];
  // A gdb stub on this port, to look at a lab that froze (gdb: target remote :PORT); the
  // watchdog then leaves a frozen lab running for the debugger.
  const gdbPort = process.env['BERTH_LAB_GDB_PORT'];
  if (gdbPort) args.push('-gdb', `tcp:127.0.0.1:${gdbPort}`);
  if (forwards.length > 0) {
    const fwd = forwards.map((p, i) => `,hostfwd=tcp:127.0.0.1:${p}-10.0.2.15:${61000 + i}`).join('');
    args.push('-netdev', `user,id=net0${fwd}`, '-device', 'virtio-net-pci,netdev=net0');
  }

  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = options.onOutput ?? ((chunk: Buffer) => process.stdout.write(chunk));
  qemu.stdout.on('data', output);
  qemu.stderr.on('data', (chunk: Buffer) => process.stderr.write(`[lab qemu] ${chunk.toString()}`));
  const stopQemu = (): void => {
    qemu.kill('SIGKILL');
  };
  // QEMU must not outlive this process, however it ends.
  const onSignal = (signal: NodeJS.Signals): void => {
    stopQemu();
    process.kill(process.pid, signal);
  };
  process.once('exit', stopQemu);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, onSignal);
  options.signal?.addEventListener('abort', stopQemu, { once: true });
  let brokeDown: string | undefined;
  const watchdog = watchLabConsole(consoleLog, (reason) => {
    if (gdbPort) return;
    brokeDown = reason;
    stopQemu();
  });
  let timedOut = false;
  const timeout = (options.timeoutSeconds ?? Number(process.env['BERTH_LAB_TIMEOUT'] ?? 3600)) * 1000;
  const timer = setTimeout(() => {
    timedOut = true;
    stopQemu();
  }, timeout);
  const exit = await new Promise<number | null>((resolve) => {
    qemu.on('error', () => resolve(null));
    qemu.on('close', (code) => resolve(code));
  });
  clearTimeout(timer);
  watchdog.stop();
  process.removeListener('exit', stopQemu);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeListener(sig, onSignal);
  options.signal?.removeEventListener('abort', stopQemu);

  const log = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';
  const seconds = (Date.now() - started) / 1000;
  const ready = /BERTH-LAB-READY ([\d.]+)/.exec(log);
  const bootSeconds = ready ? Number(ready[1]) : undefined;
  const status = /BERTH-LAB-STATUS (\d+)/.exec(log);
  if (options.signal?.aborted) {
    const consoleTail = tail(consoleLog, 15);
    rmSync(runDir, { recursive: true, force: true });
    return { status: 128 + osConstants.signals.SIGKILL, where: 'lab', seconds, consoleTail };
  }
  if (brokeDown !== undefined) {
    throw new LabSetupError(
      `the lab VM broke down and was stopped: ${brokeDown}; its console (${consoleLog}) ended with:\n${tail(consoleLog, 15)}`,
      LAB_DIED_STATUS,
    );
  }
  if (timedOut) {
    throw new LabSetupError(
      `the lab run passed its time limit of ${timeout / 1000} s and was stopped (BERTH_LAB_TIMEOUT or --timeout to change it); its console (${consoleLog}) ended with:\n${tail(consoleLog, 15)}`,
      LAB_TIMEOUT_STATUS,
    );
  }
  if (log.includes('BERTH-LAB-NO-KVM')) {
    throw new LabSetupError(
      `the lab VM has no /dev/kvm: kvm-amd found no usable SVM in QEMU's emulated CPU (-cpu max). Its kernel said:\n${tail(consoleLog, 8)}`,
    );
  }
  const failed = /BERTH-LAB-FAILED (.*)/.exec(log);
  if (failed) throw new LabSetupError(`the lab VM could not set up: ${failed[1] ?? ''}\n${tail(consoleLog, 15)}`);
  if (!status) {
    throw new LabSetupError(
      `the lab VM ended (QEMU exit ${String(exit)}) before the command finished; its console (${consoleLog}) ended with:\n${tail(consoleLog, 15)}`,
      LAB_DIED_STATUS,
    );
  }
  // A lab kernel in trouble (a soft lockup, an oops) is worth knowing even when the command passed.
  const trouble = /^.*(soft lockup|hung_task|BUG:|Oops|Call Trace).*$/m.exec(log);
  if (trouble) process.stderr.write(`[lab] the lab kernel reported: ${trouble[0]} (see ${consoleLog})\n`);
  const code = Number(status[1]);
  const keep = code !== 0 || trouble !== null;
  if (!keep) rmSync(runDir, { recursive: true, force: true });
  return {
    status: code,
    where: 'lab',
    seconds,
    ...(bootSeconds === undefined ? {} : { bootSeconds }),
    ...(keep ? { consoleLog } : {}),
  };
}
