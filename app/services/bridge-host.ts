// The service side of the bridge (app/api/bridge.ts): one table of handlers, one per
// method, behind invoke(method, args, clientId) which validates the arguments against the
// method's schema before any service runs and always answers with a Reply, never a throw.
// app/main (Electron IPC) and app/web (`berth serve`) are thin transports over it, so the
// validation is the same in both and testable under plain Node.
//
// Clients: each window (an Electron webContents, a browser's event stream) connects with a
// sink for its events; VM, stats, operation and checkpoint events go to every client,
// console output only to the client that attached. Disconnecting detaches its consoles.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

import { BerthError, formatIssues, toErrorBody } from '../api';
import {
  isMethod,
  METHODS,
  type BerthEvent,
  type Method,
  type MethodResult,
  type Operation,
  type ParsedArgs,
  type Reply,
} from '../api/bridge';
import { storageBackend, type OperationContext, type StorageBackend } from './bridge-storage';
import type { ConsoleSession, VmManager } from './manager';
import { VmWatcher } from './events';
import { DisplayService } from './display';
import { DvdService } from './dvd';

export interface BridgeHostOptions {
  manager: VmManager;
  transport: 'electron' | 'web';
  // The storage services; default: storageBackend(manager), the ones the CLI uses.
  storage?: StorageBackend;
  // How often the service polls the workers for state and stats (default 1 s).
  watchIntervalMs?: number;
  version?: string;
}

export interface BridgeClient {
  readonly id: string;
}

interface ClientRecord {
  id: string;
  send: (event: BerthEvent) => void;
  sessions: Set<string>;
}

interface ConsoleRecord {
  clientId: string;
  vmId: string;
  session?: ConsoleSession;
  closed: boolean;
}

interface OperationRecord {
  op: Operation;
  abort: AbortController;
  lastSent: number;
}

type Ctx = { clientId: string | undefined };
type Handler<M extends Method> = (args: ParsedArgs<M>, ctx: Ctx) => Promise<MethodResult<M>>;
type HandlerTable = { [M in Method]: Handler<M> };

const KEEP_FINISHED_OPERATIONS = 50;

function httpSafe(err: unknown): Reply {
  return { ok: false, error: toErrorBody(err) };
}

export class BridgeHost {
  readonly watcher: VmWatcher;
  private readonly manager: VmManager;
  private readonly storage: StorageBackend;
  private readonly clients = new Map<string, ClientRecord>();
  private readonly consoles = new Map<string, ConsoleRecord>();
  private readonly operations = new Map<string, OperationRecord>();
  private readonly handlers: HandlerTable;
  private closed = false;

  constructor(private readonly options: BridgeHostOptions) {
    this.manager = options.manager;
    this.storage = options.storage ?? storageBackend(this.manager);
    this.watcher = new VmWatcher(this.manager, { intervalMs: options.watchIntervalMs ?? 1000 });
    this.watcher.on('vm', (vm) => this.broadcast({ topic: 'vm', payload: { vm } }));
    this.watcher.on('removed', (id) => this.broadcast({ topic: 'vm-removed', payload: { id } }));
    this.watcher.on('stats', (batch) => this.broadcast({ topic: 'stats', payload: batch }));
    this.watcher.on('error', () => undefined);
    this.handlers = this.makeHandlers();
  }

  // ---- clients ----

  connect(send: (event: BerthEvent) => void): BridgeClient {
    const id = randomUUID();
    this.clients.set(id, { id, send, sessions: new Set() });
    this.watcher.start();
    return { id };
  }

  disconnect(clientId: string): void {
    const client = this.clients.get(clientId);
    if (!client) return;
    this.clients.delete(clientId);
    for (const sessionId of client.sessions) void this.detachConsole(sessionId);
    if (this.clients.size === 0) this.watcher.stop();
  }

  hasClient(clientId: string): boolean {
    return this.clients.has(clientId);
  }

  // Ends everything: consoles detached, operations cancelled, polling stopped.
  async close(): Promise<void> {
    this.closed = true;
    this.watcher.stop();
    for (const rec of this.operations.values()) rec.abort.abort();
    await Promise.all([...this.consoles.keys()].map((id) => this.detachConsole(id)));
    this.clients.clear();
  }

  private broadcast(event: BerthEvent): void {
    for (const client of this.clients.values()) {
      try {
        client.send(event);
      } catch {
        // a sink that fails is the transport's to clean up
      }
    }
  }

  // ---- the one entry point ----

  // Validates and runs one request. Never throws: failures come back as {ok: false, error}.
  async invoke(method: unknown, args: unknown, clientId?: string): Promise<Reply> {
    if (this.closed) return httpSafe(new BerthError('INTERNAL', 'the Berth service is shutting down'));
    if (!isMethod(method)) {
      return httpSafe(
        new BerthError(
          'UNKNOWN_METHOD',
          `unknown method ${JSON.stringify(method)}; the methods are: ${Object.keys(METHODS).join(', ')}`,
        ),
      );
    }
    const schema = METHODS[method].args;
    const parsed = schema.safeParse(args ?? {});
    if (!parsed.success) {
      return httpSafe(
        new BerthError('INVALID_CONFIG', `${method}: ${formatIssues(parsed.error.issues, args, '(args)').join('; ')}`),
      );
    }
    try {
      const handler = this.handlers[method] as (a: unknown, ctx: Ctx) => Promise<unknown>;
      const result = await handler(parsed.data, { clientId });
      const checked = METHODS[method].result.safeParse(result);
      if (!checked.success) {
        return httpSafe(
          new BerthError(
            'INTERNAL',
            `${method} produced a result outside the contract: ${formatIssues(checked.error.issues, result, '(result)').join('; ')}`,
          ),
        );
      }
      return { ok: true, result: checked.data };
    } catch (err) {
      return httpSafe(err);
    }
  }

  // ---- operations ----

  // Runs long work in the background; the caller gets the id at once.
  startOperation(
    kind: Operation['kind'],
    title: string,
    vmId: string | undefined,
    run: (ctx: OperationContext) => Promise<unknown>,
  ): { operationId: string } {
    const abort = new AbortController();
    const op: Operation = {
      id: randomUUID(),
      kind,
      title,
      state: 'running',
      done: 0,
      total: 0,
      startedAt: new Date().toISOString(),
      cancellable: true,
    };
    if (vmId !== undefined) op.vmId = vmId;
    const rec: OperationRecord = { op, abort, lastSent: 0 };
    this.operations.set(op.id, rec);
    const send = (): void => this.broadcast({ topic: 'operation', payload: { operation: { ...rec.op } } });
    send();
    const ctx: OperationContext = {
      signal: abort.signal,
      progress: (done, total) => {
        rec.op.done = done;
        rec.op.total = total;
        const now = Date.now();
        if (now - rec.lastSent >= 100) {
          rec.lastSent = now;
          send();
        }
      },
    };
    void (async () => {
      try {
        const result = await run(ctx);
        if (abort.signal.aborted) throw new BerthError('CANCELLED', `${title}: cancelled`);
        rec.op.state = 'done';
        if (result !== undefined) rec.op.result = result;
      } catch (err) {
        const body = toErrorBody(err);
        rec.op.state = abort.signal.aborted || body.code === 'CANCELLED' ? 'cancelled' : 'failed';
        rec.op.error = body;
      }
      rec.op.endedAt = new Date().toISOString();
      rec.op.cancellable = false;
      send();
      if (vmId !== undefined && kind === 'checkpoint.delete') {
        this.broadcast({ topic: 'checkpoints', payload: { vmId } });
      }
      void this.watcher.refresh();
      this.pruneOperations();
    })();
    return { operationId: op.id };
  }

  private pruneOperations(): void {
    const finished = [...this.operations.values()].filter((r) => r.op.state !== 'running');
    for (const r of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED_OPERATIONS))) {
      this.operations.delete(r.op.id);
    }
  }

  // ---- consoles ----

  private async detachConsole(sessionId: string): Promise<void> {
    const rec = this.consoles.get(sessionId);
    if (!rec) return;
    this.consoles.delete(sessionId);
    this.clients.get(rec.clientId)?.sessions.delete(sessionId);
    rec.closed = true;
    await rec.session?.detach().catch(() => undefined);
  }

  private sendTo(clientId: string, event: BerthEvent): void {
    try {
      this.clients.get(clientId)?.send(event);
    } catch {
      // as broadcast
    }
  }

  // ---- the handlers ----

  private async vmId(ref: string): Promise<string> {
    return (await this.manager.registry.resolve(ref)).id;
  }

  private makeHandlers(): HandlerTable {
    const m = this.manager;
    const st = this.storage;
    // After an action, the windows see its effect at once (not at the next tick).
    const acted = async <T>(p: Promise<T>): Promise<T> => {
      try {
        return await p;
      } finally {
        void this.watcher.refresh();
      }
    };
    return {
      'host.info': async () => ({
        hostname: hostname(),
        platform: process.platform,
        arch: process.arch,
        berthVersion: this.options.version ?? '0.1.0',
        dataRoot: m.root,
        transport: this.options.transport,
      }),
      'host.disks': () => st.hostDisks(),

      'vm.list': () => m.list(),
      'vm.get': ({ vm }) => m.show(vm),
      'vm.create': ({ config, newDisks }) => acted(st.createVm(config, newDisks ?? [])),
      'vm.update': async ({ vm, patch }) => {
        const { name, disks, network, dvdDrives, ...settings } = patch;
        return acted(
          (async () => {
            const hw: Parameters<StorageBackend['updateHardware']>[1] = {};
            if (disks !== undefined) hw.disks = disks;
            if (network !== undefined) hw.network = network;
            if (disks !== undefined || network !== undefined) await st.updateHardware(vm, hw);
            // Drives go before a change to booting a kernel (which has none), after one to firmware.
            const dvd = new DvdService(m);
            if (dvdDrives !== undefined && dvdDrives.length === 0) await dvd.replace(vm, dvdDrives);
            let details = await m.set(vm, settings);
            if (dvdDrives !== undefined && dvdDrives.length > 0) details = await dvd.replace(vm, dvdDrives);
            if (name !== undefined && name !== details.name) details = await m.rename(details.id, name);
            return details;
          })(),
        );
      },
      'vm.rename': ({ vm, name }) => acted(m.rename(vm, name)),
      'vm.remove': async ({ vm, deleteDisks }) => {
        await acted(m.remove(vm, deleteDisks === undefined ? {} : { deleteDisks }));
        return {};
      },
      'vm.start': ({ vm }) => acted(m.start(vm)),
      'vm.turnOff': ({ vm }) => acted(m.turnOff(vm)),
      'vm.shutDown': ({ vm, timeoutSeconds }) =>
        acted(m.shutDown(vm, timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000)),
      'vm.save': ({ vm }) => acted(m.save(vm)),
      'vm.deleteSavedState': ({ vm }) => acted(m.deleteSavedState(vm)),
      'vm.move': async ({ vm, destination }) => {
        const id = await this.vmId(vm);
        return this.startOperation('vm.move', `Moving ${vm} to ${destination}`, id, (ctx) =>
          st.moveVm(id, destination, ctx),
        );
      },
      'vm.pause': ({ vm }) => acted(m.pause(vm)),
      'vm.resume': ({ vm }) => acted(m.resume(vm)),
      'vm.reset': ({ vm }) => acted(m.reset(vm)),
      'vm.stats': ({ vm }) => m.stats(vm),
      'vm.thumbnail': ({ vm }) => new DisplayService(m).thumbnail(vm),
      'vm.insertDvd': ({ vm, slot, path }) => acted(new DvdService(m).insert(vm, path, slot)),
      'vm.ejectDvd': ({ vm, slot }) => acted(new DvdService(m).eject(vm, slot)),
      'vm.export': async ({ vm, folder, checkpointId }) => {
        const id = await this.vmId(vm);
        const title = checkpointId === undefined ? `Exporting ${vm}` : `Exporting a checkpoint of ${vm}`;
        return this.startOperation('vm.export', title, id, (ctx) => st.exportVm(id, folder, checkpointId, ctx));
      },
      'vm.import': async (request) => {
        return this.startOperation('vm.import', `Importing ${request.path}`, undefined, (ctx) =>
          st.importVm(request, ctx),
        );
      },

      'console.attach': async ({ vm, replay }, { clientId }) => {
        const client = clientId === undefined ? undefined : this.clients.get(clientId);
        if (!client) {
          throw new BerthError(
            'INVALID_STATE',
            'console.attach needs a connected window: open the event stream first (its hello names the client)',
          );
        }
        const vmId = await this.vmId(vm);
        const sessionId = randomUUID();
        const rec: ConsoleRecord = { clientId: client.id, vmId, closed: false };
        this.consoles.set(sessionId, rec);
        client.sessions.add(sessionId);
        try {
          const session = await m.attachConsole(vmId, {
            replay: replay ?? true,
            onData: (bytes) => {
              if (rec.closed) return;
              this.sendTo(rec.clientId, {
                topic: 'console',
                payload: { sessionId, vmId, data: Buffer.from(bytes).toString('base64') },
              });
            },
            onEnd: (info) => {
              if (rec.closed) return;
              const end: { exit?: NonNullable<typeof info.exit>; error?: string } = {};
              if (info.exit) end.exit = info.exit;
              if (info.error) end.error = info.error.message;
              this.sendTo(rec.clientId, { topic: 'console', payload: { sessionId, vmId, end } });
              this.consoles.delete(sessionId);
              client.sessions.delete(sessionId);
              rec.closed = true;
              void this.watcher.refresh();
            },
          });
          rec.session = session;
          if (rec.closed) await session.detach();
          return { sessionId, vmId, replayedBytes: session.replayedBytes };
        } catch (err) {
          this.consoles.delete(sessionId);
          client.sessions.delete(sessionId);
          throw err;
        }
      },
      'console.input': async ({ sessionId, data }, { clientId }) => {
        const rec = this.consoles.get(sessionId);
        if (!rec || rec.clientId !== clientId || !rec.session) {
          throw new BerthError('NOT_FOUND', `no console session ${sessionId} in this window`);
        }
        await rec.session.write(Buffer.from(data, 'base64'));
        return {};
      },
      'console.detach': async ({ sessionId }, { clientId }) => {
        const rec = this.consoles.get(sessionId);
        if (!rec || rec.clientId !== clientId) {
          throw new BerthError('NOT_FOUND', `no console session ${sessionId} in this window`);
        }
        await this.detachConsole(sessionId);
        return {};
      },

      'disk.create': async (request) => {
        return this.startOperation('disk.create', `Creating ${request.path}`, undefined, (ctx) =>
          st.createDisk(request, ctx),
        );
      },
      'disk.inspect': ({ path }) => st.inspectDisk(path),
      'disk.minShrinkSize': async ({ path }) => ({ sizeBytes: await st.minShrinkSize(path) }),
      'disk.edit': async (request) => {
        const verb = {
          compact: 'Compacting',
          convert: 'Converting',
          expand: 'Expanding',
          shrink: 'Shrinking',
          merge: 'Merging',
        };
        return this.startOperation('disk.edit', `${verb[request.action]} ${request.path}`, undefined, (ctx) =>
          st.editDisk(request, ctx),
        );
      },

      'checkpoint.list': ({ vm }) => st.listCheckpoints(vm),
      'checkpoint.create': async ({ vm, name }) => {
        const result = await acted(st.createCheckpoint(vm, name));
        this.broadcast({ topic: 'checkpoints', payload: { vmId: await this.vmId(vm) } });
        return result;
      },
      'checkpoint.apply': async ({ vm, checkpointId }) => {
        await acted(st.applyCheckpoint(vm, checkpointId));
        this.broadcast({ topic: 'checkpoints', payload: { vmId: await this.vmId(vm) } });
        return {};
      },
      'checkpoint.rename': async ({ vm, checkpointId, name }) => {
        const result = await st.renameCheckpoint(vm, checkpointId, name);
        this.broadcast({ topic: 'checkpoints', payload: { vmId: await this.vmId(vm) } });
        return result;
      },
      'checkpoint.delete': async ({ vm, checkpointId, subtree }) => {
        const id = await this.vmId(vm);
        return this.startOperation(
          'checkpoint.delete',
          subtree ? `Deleting checkpoint subtree of ${vm}` : `Deleting a checkpoint of ${vm}`,
          id,
          (ctx) => st.deleteCheckpoint(id, checkpointId, subtree ?? false, ctx),
        );
      },

      'operation.list': async () => [...this.operations.values()].map((r) => ({ ...r.op })),
      'operation.cancel': async ({ operationId }) => {
        const rec = this.operations.get(operationId);
        if (!rec) throw new BerthError('NOT_FOUND', `no operation ${operationId}`);
        if (rec.op.state !== 'running') {
          throw new BerthError('INVALID_STATE', `cannot cancel '${rec.op.title}': it is already ${rec.op.state}`);
        }
        rec.abort.abort();
        return {};
      },
    };
  }
}
