// The worker: one detached process per running VM (Hyper-V's VMWP). Started by a manager
// as `node main.js <vm folder>` behind a small shell that records its exit status. It
// creates the VM through the addon, serves run/control.sock (mode 0600, the protocol in
// app/api/protocol.ts), keeps a console scrollback, and outlives the manager that started
// it. When the guest ends it writes run/last-exit.json, removes its pid file and socket,
// and exits 0.
import { randomBytes } from 'node:crypto';
import { chmodSync, promises as fs, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';

import {
  BerthError,
  assertTransition,
  migrateConfig,
  protocol,
  RUN_FILES,
  toErrorBody,
  VM_FILES,
  type ErrorBody,
  type LastExit,
  type VmConfig,
  type VmState,
  type VmStats,
  type WorkerPidFile,
} from '../api';
import { Machine, type MachineConfig, type MachineStats } from '../native';
import { resolveStableId } from '../native/host-disks';
import { Scrollback } from './scrollback';

const { PROTOCOL_VERSION, MAX_LINE_BYTES, SCROLLBACK_BYTES, parseRequest } = protocol;
// A console client that falls this far behind is dropped rather than grow the worker.
const MAX_CLIENT_BACKLOG = 8 * 1024 * 1024;

function log(message: string): void {
  process.stdout.write(`${new Date().toISOString()} [worker ${process.pid}] ${message}\n`);
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await fs.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, path);
  const dir = await fs.open(join(path, '..'), 'r');
  await dir.sync().finally(() => dir.close());
}

function procStart(): string | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = readFileSync(`/proc/${process.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

// Disks in slot order, one virtio-blk device each; the guest reads the slot as the serial
// ("berth-slot-N"). A passthrough disk's stable id is resolved to its /dev path now.
export function toMachineDisks(config: VmConfig): NonNullable<MachineConfig['disks']> {
  return [...config.disks]
    .sort((a, b) => a.slot - b.slot)
    .map((d) => {
      const serial = `berth-slot-${d.slot}`;
      if (d.kind === 'virtual') return { path: d.path, readOnly: d.readOnly, serial };
      const devicePath = resolveStableId(d.deviceId);
      if (devicePath === null) {
        throw new BerthError(
          'START_FAILED',
          `passthrough disk ${d.deviceId} (slot ${d.slot}) is not attached to this host; ` +
            "attach it or remove it from the VM ('berth host disks' lists the devices)",
        );
      }
      return { path: devicePath, readOnly: d.readOnly, serial, format: 'host-device' as const };
    });
}

// The VMM does not attach network adapters yet: refuse rather than boot a VM without the
// hardware its configuration promises.
export function toMachineConfig(config: VmConfig): MachineConfig {
  const missing: string[] = [];
  if (config.network.length > 0) missing.push(`${config.network.length} network adapter(s)`);
  if (missing.length > 0) {
    throw new BerthError(
      'UNSUPPORTED',
      `'${config.name}' has ${missing.join(' and ')}, which this VMM cannot attach yet; remove them to start it`,
    );
  }
  const out: MachineConfig = {
    memoryMiB: config.memory.startupMiB,
    vcpus: config.processors.count,
    kernelPath: config.boot.kind === 'firmware' ? '' : config.boot.kernelPath,
    cmdline: config.boot.kind === 'firmware' ? '' : config.boot.cmdline,
    testExitPort: config.testExitPort,
  };
  if (config.boot.kind !== 'firmware' && config.boot.initrdPath !== undefined) out.initrdPath = config.boot.initrdPath;
  if (config.disks.length > 0) out.disks = toMachineDisks(config);
  return out;
}

class Client {
  greeted = false;
  attached = false;
  private buffer = '';
  constructor(
    readonly socket: Socket,
    private readonly onLine: (client: Client, line: string) => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE_BYTES && !this.buffer.includes('\n')) {
      this.send({
        id: null,
        ok: false,
        error: { code: 'PROTOCOL', message: `line longer than ${MAX_LINE_BYTES} bytes` },
      });
      this.socket.end();
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.trim() !== '') this.onLine(this, line);
    }
  }

  send(message: unknown): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    if (this.socket.writableLength > MAX_CLIENT_BACKLOG) {
      log('dropping a client that does not read its socket');
      this.socket.destroy();
      return;
    }
    this.socket.write(`${JSON.stringify(message)}\n`);
  }
}

class Worker {
  private state: VmState = 'Starting';
  private machine: Machine | undefined;
  private readonly clients = new Set<Client>();
  private readonly scrollback = new Scrollback(SCROLLBACK_BYTES);
  private readonly startedAt = new Date();
  private lastSample: { at: number; cpuMs: number } | undefined;
  private cpuPercent = 0;
  private stopRequested = false;
  private finishing = false;
  private readonly server = createServer((socket) => this.connect(socket));
  private readonly run: string;

  constructor(
    private readonly folder: string,
    private readonly config: VmConfig,
  ) {
    this.run = join(folder, VM_FILES.run);
  }

  private file(name: keyof typeof RUN_FILES): string {
    return join(this.run, RUN_FILES[name]);
  }

  async main(): Promise<void> {
    const pidFile: WorkerPidFile = {
      pid: process.pid,
      procStart: procStart(),
      startedAt: this.startedAt.toISOString(),
      protocol: PROTOCOL_VERSION,
    };
    await writeJsonAtomic(this.file('pid'), pidFile);
    await fs.rm(this.file('socket'), { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.file('socket'), () => resolve());
    });
    // The umask already made it 0600; make sure even under an unusual umask.
    chmodSync(this.file('socket'), 0o600);
    log(`serving ${this.file('socket')} for VM '${this.config.name}' (${this.config.id})`);

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.on(signal, () => {
        log(`${signal}: turning the VM off`);
        void this.turnOff();
      });
    }
    process.on('SIGHUP', () => undefined);

    try {
      const machine = await Machine.create(toMachineConfig(this.config));
      this.machine = machine;
      machine.on((event) => {
        if (event.type === 'console' && this.config.com1.enabled) this.console(event.data);
        else if (event.type === 'state') {
          if (event.state === 'running' && this.state !== 'Stopping') this.setState('Running');
          else if (event.state === 'paused' && this.state !== 'Stopping') this.setState('Paused');
        } else if (event.type === 'reset') log(`guest reset (${event.reason})`);
      });
      void machine.waitForExit().then((exit) => this.exited(exit.reason, exit.code, exit.detail));
      if (this.stopRequested) {
        await this.exited('stopped', 0, 'turned off before it started');
        return;
      }
      await machine.start();
      this.setState('Running');
      log('VM running');
    } catch (err) {
      const body = toErrorBody(err);
      // NativeError codes are not service codes: keep the native code in the message.
      const native = (err as { name?: string; code?: string }).name === 'NativeError';
      const error: ErrorBody = native
        ? { code: 'START_FAILED', message: `${(err as Error).message} (${String((err as { code?: string }).code)})` }
        : body;
      log(`start failed: ${error.message}`);
      await writeJsonAtomic(this.file('startError'), error);
      await this.finish(1);
      return;
    }
    const timer = setInterval(() => this.sample(), 1000);
    timer.unref();
  }

  private setState(state: VmState): void {
    if (this.state === state) return;
    this.state = state;
    this.broadcast({ event: 'state', state });
  }

  private broadcast(message: unknown, onlyAttached = false): void {
    for (const client of this.clients) if (client.greeted && (!onlyAttached || client.attached)) client.send(message);
  }

  private console(data: Uint8Array): void {
    this.scrollback.push(data);
    this.broadcast({ event: 'console', data: Buffer.from(data).toString('base64') }, true);
  }

  private connect(socket: Socket): void {
    // One request at a time per client, answered in order.
    let queue = Promise.resolve();
    const client = new Client(socket, (c, line) => {
      queue = queue.then(() => this.handle(c, line));
    });
    this.clients.add(client);
    socket.on('close', () => this.clients.delete(client));
  }

  private uptimeMs(): number {
    return this.machine && this.state !== 'Starting' ? this.machine.stats().uptimeMs : 0;
  }

  private stateResult(): protocol.StateResult {
    return { state: this.state, uptimeMs: this.uptimeMs() };
  }

  private cpuMs(stats: MachineStats): number {
    return stats.vcpus.reduce((sum, v) => sum + v.cpuTimeMs, 0);
  }

  // CPU usage: vCPU time used over wall time, as a share of the assigned vCPUs.
  private sample(): void {
    if (!this.machine || this.finishing) return;
    const now = Date.now();
    const cpuMs = this.cpuMs(this.machine.stats());
    const prev = this.lastSample ?? { at: this.startedAt.getTime(), cpuMs: 0 };
    const wall = now - prev.at;
    if (wall > 0) {
      this.cpuPercent = Math.min(
        100,
        Math.max(0, ((cpuMs - prev.cpuMs) / (wall * this.config.processors.count)) * 100),
      );
    }
    this.lastSample = { at: now, cpuMs };
  }

  private stats(): VmStats {
    const machine = this.machine;
    if (!machine) {
      throw new BerthError('INVALID_STATE', `'${this.config.name}' is ${this.state}; it has no statistics yet`);
    }
    const s = machine.stats();
    if (!this.lastSample) this.sample();
    return {
      cpuUsagePercent: Math.round(this.cpuPercent * 10) / 10,
      assignedMemoryMiB: s.memoryBytes / (1024 * 1024),
      residentBytes: s.rssBytes,
      uptimeMs: s.uptimeMs,
      vcpuCount: s.vcpus.length,
      vcpus: s.vcpus.map((v) => ({ id: v.id, cpuTimeMs: v.cpuTimeMs })),
      resets: s.resets,
    };
  }

  private async handle(client: Client, line: string): Promise<void> {
    const parsed = parseRequest(line);
    if (!parsed.ok) {
      client.send({ id: parsed.id, ok: false, error: { code: 'PROTOCOL', message: parsed.error } });
      return;
    }
    const request = parsed.request;
    try {
      const result = await this.dispatch(client, request);
      client.send({ id: request.id, ok: true, result });
      if (request.op === 'console-attach' && request.replay) this.replay(client);
    } catch (err) {
      client.send({ id: request.id, ok: false, error: toErrorBody(err) });
      if (request.op === 'hello') client.socket.end();
    }
  }

  private replay(client: Client): void {
    const buffered = this.scrollback.contents();
    for (let off = 0; off < buffered.length; off += 64 * 1024) {
      client.send({ event: 'console', data: buffered.subarray(off, off + 64 * 1024).toString('base64') });
    }
  }

  private async dispatch(client: Client, request: protocol.Request): Promise<unknown> {
    const name = this.config.name;
    if (request.op === 'hello') {
      if (request.protocol !== PROTOCOL_VERSION) {
        throw new BerthError(
          'UNSUPPORTED_VERSION',
          `this worker speaks protocol ${PROTOCOL_VERSION}, the client ${request.protocol}; use the Berth that started the VM`,
        );
      }
      client.greeted = true;
      const info: protocol.WorkerInfo = {
        protocol: PROTOCOL_VERSION,
        pid: process.pid,
        vmId: this.config.id,
        startedAt: this.startedAt.toISOString(),
      };
      return info;
    }
    if (!client.greeted) throw new BerthError('PROTOCOL', "the first request must be 'hello'");
    switch (request.op) {
      case 'state':
        return this.stateResult();
      case 'stats':
        return this.stats();
      case 'console-attach': {
        assertTransition(name, this.state, 'console');
        client.attached = true;
        return { replayedBytes: request.replay ? this.scrollback.length : 0 };
      }
      case 'console-detach':
        client.attached = false;
        return {};
      case 'console-input':
        if (!this.machine) throw new BerthError('INVALID_STATE', `'${name}' is ${this.state}; wait until it runs`);
        this.machine.writeConsole(Buffer.from(request.data, 'base64'));
        return {};
      case 'pause':
        assertTransition(name, this.state, 'pause');
        await this.machine?.pause();
        this.setState('Paused');
        return this.stateResult();
      case 'resume':
        assertTransition(name, this.state, 'resume');
        await this.machine?.resume();
        this.setState('Running');
        return this.stateResult();
      case 'reset':
        assertTransition(name, this.state, 'reset');
        await this.machine?.reset();
        return this.stateResult();
      case 'shutdown':
        assertTransition(name, this.state, 'shut-down');
        throw new BerthError(
          'UNSUPPORTED',
          `cannot ask '${name}' to shut down: the VMM has no ACPI power button yet; turn it off instead`,
        );
      case 'stop':
        assertTransition(name, this.state, 'turn-off');
        await this.turnOff();
        return this.stateResult();
    }
  }

  private async turnOff(): Promise<void> {
    if (this.state === 'Stopping' || this.finishing) return;
    this.setState('Stopping');
    if (!this.machine) {
      this.stopRequested = true;
      return;
    }
    await this.machine.stop();
  }

  private async exited(reason: LastExit['reason'], code: number, detail: string): Promise<void> {
    if (this.finishing) return;
    const exit: LastExit = { reason, code, detail, at: new Date().toISOString(), pid: process.pid };
    log(`VM ended: ${reason} code ${code}${detail ? ` (${detail})` : ''}`);
    await writeJsonAtomic(this.file('lastExit'), exit);
    this.setState('Off');
    this.broadcast({ event: 'exit', exit });
    await this.finish(0);
  }

  private async finish(code: number): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    this.server.close();
    await fs.rm(this.file('socket'), { force: true });
    await fs.rm(this.file('pid'), { force: true });
    await Promise.all(
      [...this.clients].map(
        (c) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 500);
            c.socket.end(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    process.exit(code);
  }
}

async function main(): Promise<void> {
  process.umask(0o077);
  const folder = process.argv[2];
  if (!folder) {
    process.stderr.write('usage: worker <vm folder>\n');
    process.exit(2);
  }
  let config: VmConfig;
  try {
    config = migrateConfig(JSON.parse(await fs.readFile(join(folder, VM_FILES.config), 'utf8')));
  } catch (err) {
    log(`cannot read the configuration: ${(err as Error).message}`);
    await writeJsonAtomic(join(folder, VM_FILES.run, RUN_FILES.startError), toErrorBody(err));
    process.exit(1);
  }
  await new Worker(folder, config).main();
}

process.on('uncaughtException', (err) => {
  log(`uncaught exception: ${err.stack ?? String(err)}`);
  process.exit(70);
});

if (require.main === module) void main();
