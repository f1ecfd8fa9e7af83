// The contract between the services and the native worker (berth-vmm worker): every line
// the worker sends is checked against the protocol's schemas in app/api, every operation
// is driven, bad requests are refused the way the schema refuses them, and the worker's
// lifecycle refusals say exactly what app/api's state machine says.
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  BerthError,
  LastExit,
  RUN_FILES,
  WorkerPidFile,
  WorkerSpec,
  assertTransition,
  protocol,
  type Action,
  type VmState,
} from '../../../app/api';
import { VmManager } from '../../../app/services';
import { cleanBerthHome, makeBerthHome, waitUntil } from '../../support/berth-home';
import { testGuestPath } from '../../support/guest';

type Line = { id?: number | null; ok?: boolean; result?: unknown; error?: { code: string; message: string } } & {
  event?: string;
  data?: string;
  state?: string;
  exit?: unknown;
};

// A raw client: writes lines, and validates every line it receives against the schemas
// (Results[op] for each answer, by the id it was sent with).
class RawClient {
  readonly lines: Line[] = [];
  closed = false;
  private buffer = '';
  private readonly ops = new Map<number, protocol.Op>();
  private nextId = 1;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static open(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const text = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      const incoming = protocol.parseIncoming(text); // throws, naming the field, on a bad line
      const line = JSON.parse(text) as Line;
      if (incoming.kind === 'response' && incoming.message.ok) {
        const op = this.ops.get(incoming.message.id);
        assert.ok(op, `an answer to an id that was never sent: ${text}`);
        protocol.Results[op].parse(incoming.message.result);
      }
      this.lines.push(line);
    }
  }

  raw(text: string): void {
    this.socket.write(`${text}\n`);
  }

  // Sends a request and returns its answer.
  async request(op: protocol.Op, fields: Record<string, unknown> = {}): Promise<Line> {
    const id = this.nextId++;
    this.ops.set(id, op);
    this.raw(JSON.stringify({ id, op, ...fields }));
    return this.answer(id);
  }

  async answer(id: number | null): Promise<Line> {
    let found: Line | undefined;
    await waitUntil(`the answer to request ${String(id)}`, () => {
      found = this.lines.find((l) => l.event === undefined && l.id === id);
      return found !== undefined || this.closed;
    });
    assert.ok(found, `no answer to ${String(id)} before the worker closed the connection`);
    this.lines.splice(this.lines.indexOf(found), 1);
    return found;
  }

  console(): string {
    return this.lines
      .filter((l) => l.event === 'console')
      .map((l) => Buffer.from(l.data ?? '', 'base64').toString('latin1'))
      .join('');
  }

  close(): void {
    this.socket.destroy();
  }
}

// What app/api's state machine says for action in state (the worker must say the same).
function expectedRefusal(name: string, state: VmState, action: Action): string {
  try {
    assertTransition(name, state, action);
  } catch (e) {
    return (e as BerthError).message;
  }
  throw new Error(`app/api allows ${action} in ${state}`);
}

describe('the native worker speaks the control protocol of app/api', () => {
  let root: string;
  let manager: VmManager;
  let socketPath: string;
  let runFolder: string;
  let workerPid: number;

  before(async () => {
    root = makeBerthHome('contract');
    manager = new VmManager({ root });
    const vm = await manager.create({
      name: 'contract',
      memory: { startupMiB: 32 },
      processors: { count: 2 },
      boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: 'echo' },
      testExitPort: true,
    });
    runFolder = join(vm.folder, 'run');
    socketPath = join(runFolder, RUN_FILES.socket);
    const started = await manager.start('contract');
    workerPid = started.workerPid ?? 0;
  });
  after(() => cleanBerthHome(root));

  it('is berth-vmm, not a JavaScript runtime, with the files the services read', () => {
    assert.equal(basename(readlinkSync(`/proc/${workerPid}/exe`)), 'berth-vmm');
    const pidFile = WorkerPidFile.parse(JSON.parse(readFileSync(join(runFolder, RUN_FILES.pid), 'utf8')));
    assert.equal(pidFile.pid, workerPid);
    assert.equal(pidFile.protocol, protocol.PROTOCOL_VERSION);
    const spec = WorkerSpec.parse(JSON.parse(readFileSync(join(runFolder, RUN_FILES.spec), 'utf8')));
    assert.equal(spec.vcpus, 2);
  });

  it('answers every operation with a result its schema accepts', async () => {
    const c = await RawClient.open(socketPath);
    const hello = await c.request('hello', { protocol: protocol.PROTOCOL_VERSION, client: 'contract test' });
    assert.equal((hello.result as protocol.WorkerInfo).pid, workerPid);
    assert.equal(((await c.request('state')).result as protocol.StateResult).state, 'Running');

    assert.equal((await c.request('console-attach', { replay: true })).ok, true);
    await waitUntil('the replayed banner', () => c.console().includes('echo: ready'));
    await c.request('console-input', { data: Buffer.from('contract!').toString('base64') });
    await waitUntil('the echo', () => c.console().includes('contract!'));

    const stats = (await c.request('stats')).result as { vcpus: { exits: { io: number } }[] };
    assert.equal(stats.vcpus.length, 2);
    assert.ok(
      stats.vcpus.some((v) => v.exits.io > 0),
      'the echo guest did port I/O',
    );

    assert.equal(((await c.request('pause')).result as protocol.StateResult).state, 'Paused');
    assert.equal(((await c.request('resume')).result as protocol.StateResult).state, 'Running');
    assert.equal((await c.request('reset')).ok, true);
    await waitUntil('the banner after the reset', () => c.console().split('echo: ready').length >= 3);
    assert.equal((await c.request('console-detach')).ok, true);
    const states = c.lines.filter((l) => l.event === 'state').map((l) => l.state);
    assert.deepEqual(states.slice(0, 2), ['Paused', 'Running'], 'state events follow pause and resume');
    c.close();
  });

  it('refuses what the lifecycle does not allow with the words of app/api', async () => {
    const c = await RawClient.open(socketPath);
    await c.request('hello', { protocol: protocol.PROTOCOL_VERSION, client: 'contract test' });
    const refused = async (op: protocol.Op, state: VmState, action: Action) => {
      const answer = await c.request(op);
      assert.equal(answer.ok, false, `${op} in ${state}`);
      assert.deepEqual(answer.error, { code: 'INVALID_STATE', message: expectedRefusal('contract', state, action) });
    };
    await refused('resume', 'Running', 'resume');
    await c.request('pause');
    await refused('pause', 'Paused', 'pause');
    await refused('reset', 'Paused', 'reset');
    await refused('shut-down', 'Paused', 'shut-down');
    await c.request('resume');
    // The echo guest ignores the power button: the press is answered, and the VM runs on.
    const shutdown = await c.request('shut-down');
    assert.equal(shutdown.ok, true, JSON.stringify(shutdown.error));
    assert.equal((shutdown.result as protocol.StateResult).state, 'Running');
    assert.equal(((await c.request('state')).result as protocol.StateResult).state, 'Running');
    c.close();
  });

  it('refuses malformed requests naming the field, and keeps serving', async () => {
    const c = await RawClient.open(socketPath);
    c.raw('{"id":1,"op":"state"}');
    assert.match((await c.answer(1)).error?.message ?? '', /the first request must be 'hello'/);
    await c.request('hello', { protocol: protocol.PROTOCOL_VERSION, client: 'contract test' });
    const cases: [string, number | null, RegExp][] = [
      ['not json', null, /^not JSON$/],
      ['[1,2]', null, /must be an object/],
      ['{"op":"state"}', null, /^id: /],
      ['{"id":-1,"op":"state"}', null, /^id: /],
      ['{"id":1.5,"op":"state"}', null, /^id: /],
      ['{"id":7,"op":"fly"}', 7, /^op: /],
      ['{"id":8,"op":"state","extra":1}', 8, /unknown field 'extra'/],
      ['{"id":9,"op":"console-input","data":"@@@@"}', 9, /^data: must be base64/],
      ['{"id":10,"op":"console-input"}', 10, /^data: /],
      ['{"id":11,"op":"console-attach","replay":"yes"}', 11, /^replay: /],
      [`{"id":12,"op":"hello","protocol":${protocol.PROTOCOL_VERSION},"client":"${'x'.repeat(201)}"}`, 12, /^client: /],
    ];
    for (const [text, id, message] of cases) {
      c.raw(text);
      const answer = await c.answer(id);
      assert.equal(answer.error?.code, 'PROTOCOL', text);
      assert.match(answer.error?.message ?? '', message, text);
    }
    assert.equal(((await c.request('state')).result as protocol.StateResult).state, 'Running');

    // A line longer than the limit ends the connection after the error.
    c.raw('x'.repeat(protocol.MAX_LINE_BYTES + 10));
    const tooLong = await c.answer(null);
    assert.match(tooLong.error?.message ?? '', /line longer than/);
    await waitUntil('the worker to close the connection', () => c.closed);
  });

  it('a wrong protocol version is refused and the connection closed', async () => {
    const c = await RawClient.open(socketPath);
    const answer = await c.request('hello', { protocol: 99, client: 'old' });
    assert.equal(answer.error?.code, 'UNSUPPORTED_VERSION');
    await waitUntil('the worker to close the connection', () => c.closed);
  });

  it('stop sends the exit event and leaves an exit record the services accept', async () => {
    const c = await RawClient.open(socketPath);
    await c.request('hello', { protocol: protocol.PROTOCOL_VERSION, client: 'contract test' });
    const stop = await c.request('turn-off');
    assert.equal((stop.result as protocol.StateResult).state, 'Stopping');
    await waitUntil('the exit event', () => c.lines.some((l) => l.event === 'exit'));
    const exit = LastExit.parse(c.lines.find((l) => l.event === 'exit')?.exit);
    assert.equal(exit.reason, 'stopped');
    assert.equal(exit.pid, workerPid);
    assert.deepEqual(LastExit.parse(JSON.parse(readFileSync(join(runFolder, RUN_FILES.lastExit), 'utf8'))), exit);
    await waitUntil('the worker to close the connection', () => c.closed);
    assert.equal((await manager.state('contract')).state, 'Off');
  });
});
