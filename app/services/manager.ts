// The management service (Hyper-V's VMMS), usable from any process: the CLI, the window,
// `berth serve`. It owns no VM: starting one spawns a detached worker (berth-vmm worker,
// native/worker) that serves run/control.sock; every question about a running VM goes to that socket, so any
// number of manager processes see the same VMs, and VMs outlive the manager that started
// them.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, promises as fs, openSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertTransition,
  BerthError,
  isErrorCode,
  LastExit,
  VmSettingsPatch,
  WorkerFailure,
  WorkerPidFile,
  formatIssues,
  ConfigError,
  migrateConfig,
  parseConfig,
  type NewVmRequest,
  type SavedStateSummary,
  type VmConfig,
  type VmDetails,
  type VmState,
  type VmStats,
  type VmSummary,
} from '../api';
import { checkSocketPath, ControlClient } from './control-client';
import {
  atomicWriteJson,
  processStartTime,
  readJsonIfExists,
  readTextIfExists,
  removeIfExists,
  sameProcessAlive,
} from './fsutil';
import { CheckpointService } from './checkpoints';
import type { VmPaths } from './paths';
import { Registry, type VmEntry } from './registry';
import {
  deleteSavedState,
  discardSavedState,
  keptStateHint,
  needsOffMessage,
  readSavedState,
  savedStatePath,
  saveVm,
} from './saved-state';
import { toWorkerSpec } from './worker-spec';
import { checkBootFiles, checkStartFiles } from './start-checks';
import { applyBootPatch, applyVarsChange, createVarsStore } from './firmware';
import { vmmPath } from '../native/vmm';

// A worker that has written its pid but not yet opened its socket is Starting for this long.
const STARTUP_GRACE_MS = 30_000;
const DEFAULT_START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
// How long Shut Down waits for the guest to power off after the power button, by default.
export const SHUT_DOWN_TIMEOUT_MS = 120_000;

// The shell that runs the worker and records how it ended ("<pid> <status>"; a status above
// 128 is 128 + the signal number), which nobody else could learn once the manager is gone.
const WRAPPER = [
  'status_file="$1"; shift',
  '"$@" </dev/null &',
  'pid=$!',
  'wait "$pid"',
  'status=$?',
  'printf \'%s %s\\n\' "$pid" "$status" > "$status_file.tmp" && mv -f "$status_file.tmp" "$status_file"',
].join('\n');

// The worker's command line: the machine spec to run and the run files it keeps, whose
// names are defined once (RUN_FILES).
function workerArgs(p: VmEntry['paths']): string[] {
  return [
    'worker',
    '--spec',
    p.runFile('spec'),
    '--socket',
    p.runFile('socket'),
    '--display-socket',
    p.runFile('display'),
    '--pid-file',
    p.runFile('pid'),
    '--exit-record',
    p.runFile('lastExit'),
    '--start-error',
    p.runFile('startError'),
  ];
}

interface Probe {
  state: VmState;
  reason?: string;
  workerPid?: number;
  stats?: VmStats;
  lastExit?: LastExit;
  savedState?: SavedStateSummary;
}

type Entry = VmEntry & { config: VmConfig };

export interface ConsoleHandlers {
  onData: (bytes: Buffer) => void;
  // The worker ended the connection: the VM stopped (exit set) or the worker died.
  onEnd?: (info: { exit?: LastExit; error?: Error }) => void;
  onState?: (state: VmState) => void;
  replay?: boolean;
}

export interface ConsoleSession {
  write(data: string | Uint8Array): Promise<void>;
  detach(): Promise<void>;
  readonly replayedBytes: number;
}

function signalName(n: number): string {
  for (const [name, value] of Object.entries(constants.signals)) if (value === n) return name;
  return `signal ${n}`;
}

function describeExit(exit: LastExit): string {
  switch (exit.reason) {
    case 'guest-exit':
      return `the guest exited with code ${exit.code}`;
    case 'power-off':
      return 'the guest powered off';
    case 'reset':
      return 'the guest reset (restart disabled)';
    case 'stopped':
      return 'turned off';
    case 'error':
      return `stopped on an error: ${exit.detail}`;
    case 'saved':
      return 'saved';
  }
}

// The settings applyBootPatch (firmware.ts) changes: kernel files, generation, Secure Boot,
// boot order, display.
const BOOT_KEYS = ['kernelPath', 'initrdPath', 'cmdline', 'bootKind', 'secureBoot', 'bootOrder', 'display'] as const;

const settingNames = {
  memoryMiB: 'the memory',
  processorCount: 'the processor count',
  kernelPath: 'the kernel',
  initrdPath: 'the initrd',
  cmdline: 'the command line',
  bootKind: 'the boot kind',
  secureBoot: 'Secure Boot',
  bootOrder: 'the boot order',
  display: 'the display',
  testExitPort: 'the test-exit port',
  com1: 'COM1',
} as const;

export class VmManager {
  readonly registry: Registry;
  private readonly clientName: string;

  constructor(options: { root?: string; clientName?: string } = {}) {
    this.registry = new Registry(options.root);
    this.clientName = options.clientName ?? `berth ${process.pid}`;
  }

  get root(): string {
    return this.registry.root;
  }

  private connect(entry: VmEntry, timeoutMs = 3000): Promise<ControlClient> {
    return ControlClient.connect(entry.paths.runFile('socket'), { timeoutMs, client: this.clientName });
  }

  // How the worker ended, from the status its shell recorded.
  private async deathReason(entry: VmEntry, pid: number): Promise<string> {
    const deadline = Date.now() + 500;
    for (;;) {
      const text = await readTextIfExists(entry.paths.runFile('status'));
      const m = text ? /^(\d+) (\d+)/.exec(text) : null;
      if (m && Number(m[1]) === pid) {
        const status = Number(m[2]);
        if (status > 128) return `worker process ${pid} died (signal ${signalName(status - 128)})`;
        return `worker process ${pid} exited with code ${status}; see ${entry.paths.runFile('log')}`;
      }
      if (Date.now() >= deadline) return `worker process ${pid} died (no exit status was recorded)`;
      await sleep(50);
    }
  }

  // What state a VM is in, found from its run/ folder and its worker's socket. A dead
  // worker's pid file and socket are cleaned up and the failure recorded in failed.json.
  private async probe(entry: VmEntry, withStats = false): Promise<Probe> {
    const p = entry.paths;
    const lastExitParsed = LastExit.safeParse(await readJsonIfExists(p.runFile('lastExit')).catch(() => undefined));
    const lastExit = lastExitParsed.success ? lastExitParsed.data : undefined;
    const withExit = (probe: Probe): Probe => (lastExit ? { ...probe, lastExit } : probe);
    const pidParsed = WorkerPidFile.safeParse(await readJsonIfExists(p.runFile('pid')).catch(() => undefined));
    if (!pidParsed.success) {
      const starting = (await readJsonIfExists(p.runFile('starting')).catch(() => undefined)) as
        { pid?: number; procStart?: string | null } | undefined;
      if (starting?.pid !== undefined && sameProcessAlive(starting.pid, starting.procStart ?? null)) {
        return { state: 'Starting', reason: `being started by process ${starting.pid}` };
      }
      // The state file is what makes a VM without a worker Saved (a failed resume keeps it).
      const savedState = await readSavedState(p);
      if (savedState) return withExit({ state: 'Saved', savedState });
      const failed = WorkerFailure.safeParse(await readJsonIfExists(p.runFile('failed')).catch(() => undefined));
      if (failed.success && (!lastExit || failed.data.at > lastExit.at)) {
        return withExit({ state: 'Failed', reason: failed.data.reason });
      }
      return withExit(lastExit ? { state: 'Off', reason: `last run: ${describeExit(lastExit)}` } : { state: 'Off' });
    }
    const worker = pidParsed.data;
    if (sameProcessAlive(worker.pid, worker.procStart)) {
      let client: ControlClient | undefined;
      try {
        client = await this.connect(entry);
        const { state, bootProblem } = await client.request({ op: 'state' });
        const probe: Probe = { state, workerPid: worker.pid };
        if (bootProblem !== undefined) probe.reason = bootProblem;
        if (withStats && (state === 'Running' || state === 'Paused')) {
          probe.stats = await client.request({ op: 'stats' });
        }
        return probe;
      } catch (err) {
        if (Date.now() - Date.parse(worker.startedAt) < STARTUP_GRACE_MS) {
          return { state: 'Starting', workerPid: worker.pid };
        }
        return {
          state: 'Failed',
          workerPid: worker.pid,
          reason: `worker process ${worker.pid} does not answer on ${p.runFile('socket')} (${(err as Error).message})`,
        };
      } finally {
        client?.close();
      }
    }
    // The worker is gone. A clean end left last-exit.json; anything else is a crash.
    if (lastExit && lastExit.pid === worker.pid) {
      await removeIfExists(p.runFile('socket'));
      await removeIfExists(p.runFile('pid'));
      const savedState = await readSavedState(p);
      if (savedState) return withExit({ state: 'Saved', savedState });
      return withExit({ state: 'Off', reason: `last run: ${describeExit(lastExit)}` });
    }
    const failure: WorkerFailure = {
      pid: worker.pid,
      reason: await this.deathReason(entry, worker.pid),
      at: new Date().toISOString(),
    };
    await atomicWriteJson(p.runFile('failed'), failure);
    await removeIfExists(p.runFile('socket'));
    await removeIfExists(p.runFile('pid'));
    return withExit({ state: 'Failed', reason: failure.reason });
  }

  private summary(entry: Entry, probe: Probe): VmSummary {
    const s: VmSummary = {
      id: entry.id,
      name: entry.config.name,
      state: probe.state,
      memoryMiB: entry.config.memory.startupMiB,
      processorCount: entry.config.processors.count,
    };
    if (probe.reason !== undefined) s.stateReason = probe.reason;
    if (probe.workerPid !== undefined) s.workerPid = probe.workerPid;
    if (probe.stats !== undefined) s.stats = probe.stats;
    if (probe.lastExit !== undefined) s.lastExit = probe.lastExit;
    if (probe.savedState !== undefined) s.savedState = probe.savedState;
    return s;
  }

  private async details(entry: Entry, probe?: Probe): Promise<VmDetails> {
    return {
      ...this.summary(entry, probe ?? (await this.probe(entry, true))),
      config: entry.config,
      folder: entry.paths.folder,
    };
  }

  async list(): Promise<VmSummary[]> {
    const entries = await this.registry.list();
    return Promise.all(
      entries.map(async (entry): Promise<VmSummary> => {
        if (!entry.config) {
          return {
            id: entry.id,
            name: entry.id,
            state: 'Failed',
            stateReason: entry.problem ?? 'unreadable',
            memoryMiB: 0,
            processorCount: 0,
          };
        }
        return this.summary(entry as Entry, await this.probe(entry, true));
      }),
    );
  }

  async show(ref: string): Promise<VmDetails> {
    return this.details(await this.registry.resolve(ref));
  }

  async state(ref: string): Promise<VmSummary> {
    const entry = await this.registry.resolve(ref);
    return this.summary(entry, await this.probe(entry));
  }

  // fill: see Registry.create (the disk service makes a new VM's new disks there).
  async create(
    request: NewVmRequest,
    fill?: (staging: VmPaths, final: VmPaths, config: VmConfig) => Promise<VmConfig>,
  ): Promise<VmDetails> {
    // A Generation 2 VM gets its own UEFI variable store in its folder.
    const withFirmware = async (staging: VmPaths, final: VmPaths, config: VmConfig): Promise<VmConfig> => {
      const c = fill ? await fill(staging, final, config) : config;
      if (c.boot.kind === 'uefi') await createVarsStore(staging, c.boot.secureBoot);
      return c;
    };
    const config = await this.registry.create(request, { check: checkBootFiles, fill: withFirmware });
    return this.show(config.id);
  }

  // Changes settings. Hardware (memory, processors, boot, ports) only while the VM is Off.
  async set(ref: string, patchInput: unknown): Promise<VmDetails> {
    const parsed = VmSettingsPatch.safeParse(patchInput);
    if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, patchInput, '(settings)'));
    const patch = parsed.data;
    const entry = await this.registry.resolve(ref);
    const hardware = (['memoryMiB', 'processorCount', ...BOOT_KEYS, 'testExitPort', 'com1'] as const).filter(
      (k) => patch[k] !== undefined,
    );
    const config = await this.registry.update(entry.id, 'change settings', async (c) => {
      if (hardware.length > 0) {
        const { state } = await this.probe(entry);
        if (state !== 'Off' && state !== 'Failed') {
          const what = `change ${hardware.map((k) => settingNames[k]).join(', ')}`;
          throw new BerthError('INVALID_STATE', needsOffMessage(`${what} of '${c.name}'`, c.name, state));
        }
      }
      if (patch.notes !== undefined) c.notes = patch.notes;
      if (patch.memoryMiB !== undefined) c.memory.startupMiB = patch.memoryMiB;
      if (patch.processorCount !== undefined) c.processors.count = patch.processorCount;
      const vars = BOOT_KEYS.some((k) => patch[k] !== undefined) ? applyBootPatch(c, patch) : undefined;
      if (patch.testExitPort !== undefined) c.testExitPort = patch.testExitPort;
      if (patch.com1 !== undefined) c.com1.enabled = patch.com1;
      if (patch.checkpointType !== undefined) c.checkpoints.type = patch.checkpointType;
      if (patch.standardCheckpointFallback !== undefined) {
        c.checkpoints.standardFallback = patch.standardCheckpointFallback;
      }
      if (patch.automaticStartAction !== undefined) c.automaticStartAction = patch.automaticStartAction;
      if (patch.automaticStartDelaySeconds !== undefined) {
        c.automaticStartDelaySeconds = patch.automaticStartDelaySeconds;
      }
      if (patch.automaticStopAction !== undefined) c.automaticStopAction = patch.automaticStopAction;
      if (patch.kernelPath !== undefined || patch.initrdPath) await checkBootFiles(c);
      // Last, once the new configuration is known to be valid: a new or no variable store.
      await applyVarsChange(entry.paths, parseConfig(c), vars);
      return c;
    });
    return this.details({ ...entry, config });
  }

  async rename(ref: string, newName: string): Promise<VmDetails> {
    const entry = await this.registry.resolve(ref);
    const config = await this.registry.rename(entry.id, newName);
    return this.details({ ...entry, config });
  }

  // Removes the VM's folder. Refused while it runs, and while disks/ holds disks unless
  // deleteDisks (the folder's disks go with it; disks elsewhere are never touched).
  async remove(ref: string, options: { deleteDisks?: boolean } = {}): Promise<void> {
    const entry = await this.registry.resolve(ref);
    await this.registry.remove(entry.id, async () => {
      const { state } = await this.probe(entry);
      assertTransition(entry.config.name, state, 'remove');
      const disks = await fs.readdir(entry.paths.disks).catch(() => [] as string[]);
      if (disks.length > 0 && !options.deleteDisks) {
        throw new BerthError(
          'INVALID_STATE',
          `'${entry.config.name}' has ${disks.length} disk file(s) in ${entry.paths.disks}; ` +
            'move them elsewhere, or delete them with the VM ("Also delete the virtual hard disks" in the ' +
            'window, --delete-disks on the command line)',
        );
      }
    });
  }

  // Spawns the worker and waits until the VM runs (or the worker reports why it cannot). A
  // Saved VM resumes from its saved state, which is deleted once it runs (kept if the start
  // fails); restoreFrom (a checkpoint's memory, applied) resumes from that file, never deleted.
  async start(ref: string, options: { timeoutMs?: number; restoreFrom?: string } = {}): Promise<VmSummary> {
    const entry = await this.registry.resolve(ref);
    const name = entry.config.name;
    const p = entry.paths;
    return this.registry.withVmLock(entry, 'start VM', async () => {
      const current = await this.probe(entry);
      assertTransition(name, current.state, 'start');
      const resume =
        current.state === 'Saved'
          ? { from: 'saved-state' as const, path: savedStatePath(p) }
          : options.restoreFrom !== undefined
            ? { from: 'checkpoint' as const, path: resolvePath(options.restoreFrom) }
            : undefined;
      try {
        const summary = await this.spawnWorker(entry, options, resume?.path);
        if (resume?.from === 'saved-state') await discardSavedState(p);
        return resume ? { ...summary, resumedFrom: resume.from } : summary;
      } catch (err) {
        if (resume?.from !== 'saved-state' || !(err instanceof BerthError)) throw err;
        throw new BerthError(err.code, `${err.message}; ${keptStateHint(name, p)}`);
      }
    });
  }

  private async spawnWorker(entry: Entry, options: { timeoutMs?: number }, restoreFrom?: string): Promise<VmSummary> {
    const name = entry.config.name;
    const p = entry.paths;
    // A checkpoint operation a crash interrupted is finished (or undone) first.
    await CheckpointService.recover(p);
    const config = migrateConfig(JSON.parse(await fs.readFile(p.config, 'utf8')));
    // Boot and disk files; a Generation 1 or 2 VM's DVD images (DVD_MEDIA_NOT_FOUND names the
    // drive and path), the host's firmware (FIRMWARE_NOT_FOUND names the package) and its store.
    const firmware = await checkStartFiles(config, p);
    const vmm = vmmPath();
    if (!existsSync(vmm)) {
      throw new BerthError(
        'START_FAILED',
        `cannot start '${name}': berth-vmm is missing at ${vmm}; run 'npm run build'`,
      );
    }
    checkSocketPath(p.runFile('socket'));
    await fs.mkdir(p.run, { recursive: true, mode: 0o700 });
    for (const f of ['pid', 'socket', 'display', 'status', 'lastExit', 'startError', 'failed'] as const) {
      await removeIfExists(p.runFile(f));
    }
    const spec = toWorkerSpec(config, firmware, p.folder);
    if (restoreFrom !== undefined) spec.restoreFrom = restoreFrom;
    await atomicWriteJson(p.runFile('spec'), spec);
    await atomicWriteJson(p.runFile('starting'), { pid: process.pid, procStart: processStartTime(process.pid) });
    try {
      const log = openSync(p.runFile('log'), 'a', 0o600);
      writeSync(log, `\n${new Date().toISOString()} starting '${name}' for process ${process.pid}\n`);
      let wrapperExited = false;
      try {
        const child = spawn('/bin/sh', ['-c', WRAPPER, 'berth-worker', p.runFile('status'), vmm, ...workerArgs(p)], {
          detached: true,
          stdio: ['ignore', log, log],
          // Relative paths in the configuration are relative to the VM's folder.
          cwd: p.folder,
        });
        child.on('exit', () => (wrapperExited = true));
        child.on('error', () => (wrapperExited = true));
        child.unref();
      } finally {
        closeSync(log);
      }
      const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      while (Date.now() < deadline) {
        const pidFile = WorkerPidFile.safeParse(await readJsonIfExists(p.runFile('pid')).catch(() => undefined));
        if (pidFile.success) {
          try {
            const client = await this.connect(entry, 1000);
            try {
              const { state } = await client.request({ op: 'state' });
              if (state === 'Running' || state === 'Paused') {
                return this.summary(entry, { state, workerPid: pidFile.data.pid });
              }
            } finally {
              client.close();
            }
          } catch {
            // not listening yet, or it just ended: look again
          }
        }
        const failure = await readJsonIfExists(p.runFile('startError')).catch(() => undefined);
        if (failure && typeof failure === 'object') {
          const f = failure as { code?: string; message?: string };
          const kept =
            f.code === 'UNSUPPORTED' ||
            f.code === 'INVALID_CONFIG' ||
            f.code?.startsWith('STATE_') ||
            f.code?.startsWith('FIRMWARE_') ||
            f.code?.startsWith('FLASH_') ||
            f.code?.startsWith('DVD_MEDIA_');
          throw new BerthError(
            kept && isErrorCode(f.code) ? f.code : 'START_FAILED',
            `cannot start '${name}': ${f.message ?? 'unknown error'}`,
          );
        }
        // A guest that ends at once (a test guest, a kernel that powers off) can finish
        // before the VM was seen running: it did start, and its exit record says how it ended.
        const ended = LastExit.safeParse(await readJsonIfExists(p.runFile('lastExit')).catch(() => undefined));
        if (ended.success) {
          return this.summary(entry, {
            state: 'Off',
            reason: `last run: ${describeExit(ended.data)}`,
            lastExit: ended.data,
          });
        }
        if (wrapperExited) {
          // Not "being started by" this very process: the start is over.
          await removeIfExists(p.runFile('starting'));
          const probe = await this.probe(entry);
          throw new BerthError(
            'START_FAILED',
            `cannot start '${name}': ${probe.reason ?? `the worker ended at once; see ${p.runFile('log')}`}`,
          );
        }
        await sleep(25);
      }
      throw new BerthError('START_FAILED', `'${name}' did not start within the time allowed; see ${p.runFile('log')}`);
    } finally {
      await removeIfExists(p.runFile('starting'));
    }
  }

  // The VM's worker, connected, once the lifecycle allows the action in its current state.
  async running(
    ref: string,
    action: Parameters<typeof assertTransition>[2],
  ): Promise<{ entry: Entry; client: ControlClient }> {
    const entry = await this.registry.resolve(ref);
    const probe = await this.probe(entry);
    assertTransition(entry.config.name, probe.state, action);
    try {
      return { entry, client: await this.connect(entry) };
    } catch (err) {
      throw new BerthError(
        'WORKER_UNREACHABLE',
        `cannot reach the worker of '${entry.config.name}' (${(err as Error).message}); try again in a moment`,
      );
    }
  }

  private async simple(ref: string, action: 'pause' | 'resume' | 'reset'): Promise<VmSummary> {
    const { entry, client } = await this.running(ref, action);
    try {
      const { state } = await client.request({ op: action });
      return this.summary(entry, { state, workerPid: client.info.pid });
    } finally {
      client.close();
    }
  }

  pause(ref: string): Promise<VmSummary> {
    return this.simple(ref, 'pause');
  }
  resume(ref: string): Promise<VmSummary> {
    return this.simple(ref, 'resume');
  }
  reset(ref: string): Promise<VmSummary> {
    return this.simple(ref, 'reset');
  }
  // Presses the VM's ACPI power button and waits until the guest has powered off; a guest
  // that does not within timeoutMs is left running and the caller is told to turn it off.
  async shutDown(ref: string, timeoutMs = SHUT_DOWN_TIMEOUT_MS): Promise<VmSummary> {
    const { entry, client } = await this.running(ref, 'shut-down');
    const pid = client.info.pid;
    const closed = new Promise<void>((resolve) => client.onClose(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    try {
      await client.request({ op: 'shut-down' });
      const ended = await Promise.race([
        closed.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
      if (!ended) {
        const name = entry.config.name;
        throw new BerthError(
          'SHUTDOWN_TIMEOUT',
          `'${name}' did not shut down within ${Math.round(timeoutMs / 1000)} s: its guest did not act on the ` +
            `power button (it may not handle ACPI, or be busy or still starting); it is still running. ` +
            `Turn it off instead (berth vm turn-off ${name}), or try again later`,
        );
      }
    } finally {
      clearTimeout(timer);
      client.close();
    }
    // The socket closes as the worker ends; its exit record follows a moment later.
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (sameProcessAlive(pid, null) && Date.now() < deadline) await sleep(20);
    return this.summary(entry, await this.probe(entry));
  }

  // Hyper-V's Save (saved-state.ts): the VM's state to state/saved.bstate; the worker ends.
  save(ref: string): Promise<VmSummary> {
    return saveVm(this, ref);
  }

  deleteSavedState(ref: string): Promise<VmSummary> {
    return deleteSavedState(this, ref);
  }

  // Turns the VM off at once and waits until its worker has gone. A Failed VM is cleared to Off.
  async turnOff(ref: string): Promise<VmSummary> {
    const entry = await this.registry.resolve(ref);
    const probe = await this.probe(entry);
    assertTransition(entry.config.name, probe.state, 'turn-off');
    if (probe.state === 'Failed') {
      await removeIfExists(entry.paths.runFile('failed'));
      return this.summary(entry, await this.probe(entry));
    }
    const { client } = await this.running(ref, 'turn-off');
    const pid = client.info.pid;
    const closed = new Promise<void>((resolve) => client.onClose(() => resolve()));
    try {
      await client.request({ op: 'turn-off' });
    } catch (err) {
      // The worker may close the socket as it ends, before answering.
      if (!(err instanceof BerthError && err.code === 'WORKER_UNREACHABLE')) throw err;
    }
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]);
    clearTimeout(timer);
    client.close();
    while (sameProcessAlive(pid, null) && Date.now() < deadline) await sleep(20);
    return this.summary(entry, await this.probe(entry));
  }

  async stats(ref: string): Promise<VmStats> {
    const entry = await this.registry.resolve(ref);
    const probe = await this.probe(entry, true);
    if (!probe.stats) {
      throw new BerthError(
        'INVALID_STATE',
        `'${entry.config.name}' is ${probe.state}; statistics exist only while it runs`,
      );
    }
    return probe.stats;
  }

  // Attaches to the VM's console: the scrollback first (unless replay is false), then live
  // output. Input goes to COM1.
  async attachConsole(ref: string, handlers: ConsoleHandlers): Promise<ConsoleSession> {
    const { client } = await this.running(ref, 'console');
    let exit: LastExit | undefined;
    client.onEvent((event) => {
      if (event.event === 'console') handlers.onData(Buffer.from(event.data, 'base64'));
      else if (event.event === 'exit') exit = event.exit;
      else handlers.onState?.(event.state);
    });
    let detached = false;
    client.onClose((error) => {
      if (detached) return;
      const info: { exit?: LastExit; error?: Error } = {};
      if (exit) info.exit = exit;
      else if (error) info.error = error;
      handlers.onEnd?.(info);
    });
    let replayedBytes: number;
    try {
      ({ replayedBytes } = await client.request({ op: 'console-attach', replay: handlers.replay ?? true }));
    } catch (err) {
      client.close();
      throw err;
    }
    return {
      replayedBytes,
      write: async (data) => {
        const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
        await client.request({ op: 'console-input', data: bytes.toString('base64') });
      },
      detach: async () => {
        detached = true;
        if (!client.isClosed) await client.request({ op: 'console-detach' }).catch(() => undefined);
        client.close();
      },
    };
  }
}
