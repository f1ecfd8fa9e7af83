// The manager's end of a worker's control socket: connect, `hello`, then typed requests
// whose results are validated against the protocol's schemas.
import { connect, type Socket } from 'node:net';

import { BerthError, protocol } from '../api';

const { PROTOCOL_VERSION, MAX_LINE_BYTES, Results, parseIncoming } = protocol;

// sun_path holds 108 bytes on Linux (104 on macOS), including the terminating NUL.
const MAX_SOCKET_PATH = process.platform === 'darwin' ? 103 : 107;

export function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new BerthError(
      'IO',
      `the control socket path ${path} is longer than a Unix socket allows (${MAX_SOCKET_PATH} bytes); ` +
        'set BERTH_HOME to a shorter folder',
    );
  }
}

// A request without its id (the client numbers them).
export type RequestBody = protocol.RequestInput extends infer T ? (T extends unknown ? Omit<T, 'id'> : never) : never;

type Pending = { op: protocol.Op; resolve: (value: unknown) => void; reject: (err: Error) => void };

export class ControlClient {
  private nextId = 1;
  private buffer = '';
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(event: protocol.Event) => void>();
  private readonly closeListeners = new Set<(err?: Error) => void>();
  private closedError: Error | undefined;
  private closed = false;
  info!: protocol.WorkerInfo;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () =>
      this.fail(this.closedError ?? new BerthError('WORKER_UNREACHABLE', 'the worker closed the connection')),
    );
  }

  static async connect(path: string, options: { timeoutMs?: number; client?: string } = {}): Promise<ControlClient> {
    checkSocketPath(path);
    const timeoutMs = options.timeoutMs ?? 3000;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new BerthError('WORKER_UNREACHABLE', `no answer on ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const client = new ControlClient(socket);
    const timer = setTimeout(
      () => socket.destroy(new BerthError('WORKER_UNREACHABLE', 'no answer to hello')),
      timeoutMs,
    );
    try {
      client.info = await client.request({
        op: 'hello',
        protocol: PROTOCOL_VERSION,
        client: options.client ?? 'berth',
      });
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE_BYTES * 2 && !this.buffer.includes('\n')) {
      this.socket.destroy(new BerthError('PROTOCOL', 'the worker sent an over-long line'));
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.trim() === '') continue;
      let incoming: protocol.Incoming;
      try {
        incoming = parseIncoming(line);
      } catch (err) {
        this.socket.destroy(new BerthError('PROTOCOL', (err as Error).message));
        return;
      }
      if (incoming.kind === 'event') {
        for (const listener of this.listeners) listener(incoming.message);
        continue;
      }
      const message = incoming.message;
      const pending = message.id === null ? undefined : this.pending.get(message.id);
      if (!pending) continue;
      this.pending.delete(message.id ?? -1);
      if (!message.ok) {
        pending.reject(new BerthError(message.error.code, message.error.message));
        continue;
      }
      const checked = Results[pending.op].safeParse(message.result);
      if (checked.success) pending.resolve(checked.data);
      else pending.reject(new BerthError('PROTOCOL', `bad '${pending.op}' result from the worker`));
    }
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closedError = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const listener of this.closeListeners) listener(err);
  }

  request<R extends RequestBody>(request: R): Promise<protocol.Result<R['op']>> {
    if (this.closed)
      return Promise.reject(this.closedError ?? new BerthError('WORKER_UNREACHABLE', 'connection closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { op: request.op, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(`${JSON.stringify({ ...request, id })}\n`);
    });
  }

  onEvent(listener: (event: protocol.Event) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // Called once when the connection ends (the worker exited, or close()).
  onClose(listener: (err?: Error) => void): void {
    if (this.closed) listener(this.closedError);
    else this.closeListeners.add(listener);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}
