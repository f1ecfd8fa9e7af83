// berth serve (app/web): events pushed over the stream while a real VM (the test guest on
// KVM) starts, prints, echoes typed input and is turned off; vm-removed; long operations'
// progress and cancel.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { decodeBase64, encodeBase64 } from '../../../app/api/bridge';
import { createHttpBerthApi, type HttpBerthApi } from '../../../app/api/bridge-http';
import { BerthError } from '../../../app/api';
import { storageBackend, VmManager } from '../../../app/services';
import { startWebServer, type WebServer } from '../../../app/web';
import { cleanBerthHome, makeBerthHome, waitUntil } from '../../support/berth-home';
import { testGuestPath } from '../../support/guest';
import { Events, json, raw } from '../../support/web';

describe('berth serve: events pushed from the service', () => {
  let home: string;
  let server: WebServer;
  let client: HttpBerthApi;

  before(async () => {
    home = makeBerthHome('webev');
    const ops = new Map<string, number>();
    const manager = new VmManager({ root: home });
    server = await startWebServer({
      manager,
      watchIntervalMs: 200,
      // The real storage services, except disk creation: a stand-in that counts to 10 in
      // steps, or until cancelled, so progress and cancellation can be seen.
      storage: {
        ...storageBackend(manager),
        createDisk: async (req, ctx) => {
          for (let i = 1; i <= 10; i++) {
            if (ctx.signal.aborted) throw new BerthError('CANCELLED', 'creating the disk was cancelled');
            ctx.progress(i, 10);
            ops.set(req.path, i);
            await new Promise((r) => setTimeout(r, req.path.includes('slow') ? 200 : 10));
          }
          return { path: req.path };
        },
      },
    });
    client = createHttpBerthApi({ token: server.token, baseUrl: server.origin, retryMs: 100 });
    await client.ready();
  });
  after(async () => {
    client.close();
    await server.close();
    await cleanBerthHome(home);
  });

  it('pushes vm, stats and console events while a VM starts, runs and stops', async () => {
    const vms = new Events(client, 'vm');
    const stats = new Events(client, 'stats');
    const consoleEvents = new Events(client, 'console');
    const created = await client.invoke('vm.create', {
      config: {
        name: 'web-guest',
        memory: { startupMiB: 32 },
        boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: 'echo' },
        testExitPort: true,
      },
    });
    await vms.waitFor('the new VM', (p) => p.vm.id === created.id && p.vm.state === 'Off');
    const started = await client.invoke('vm.start', { vm: 'web-guest' });
    assert.equal(started.state, 'Running');
    await vms.waitFor('Running pushed', (p) => p.vm.id === created.id && p.vm.state === 'Running');
    const batch = await stats.waitFor('a stats batch', (p) => p.items.some((i) => i.id === created.id));
    const item = batch.items.find((i) => i.id === created.id);
    assert.equal(item?.stats.assignedMemoryMiB, 32);

    const session = await client.invoke('console.attach', { vm: 'web-guest' });
    assert.equal(session.vmId, created.id);
    const text = (): string =>
      consoleEvents.seen
        .filter((e) => e.sessionId === session.sessionId && e.data !== undefined)
        .map((e) => Buffer.from(decodeBase64(e.data ?? '')).toString('latin1'))
        .join('');
    await waitUntil('echo: ready', () => text().includes('echo: ready'));
    await client.invoke('console.input', { sessionId: session.sessionId, data: encodeBase64('typed in the browser') });
    await waitUntil('the echo', () => text().includes('typed in the browser'));

    // Another window cannot type into this one's session.
    const other = await raw(server, {
      method: 'POST',
      path: '/api/console.input',
      headers: { ...json, 'x-berth-token': server.token },
      body: JSON.stringify({ sessionId: session.sessionId, data: encodeBase64('x') }),
    });
    assert.equal(other.status, 404);

    await client.invoke('vm.turnOff', { vm: 'web-guest' });
    // 30 s: in CI this lab shares two cores with a second lab booting Linux and the host's
    // specs, and one run took over 15 s from the turn-off to the watcher's next 'Off'.
    await vms.waitFor(
      'Off pushed',
      (p) => p.vm.id === created.id && p.vm.state === 'Off' && p.vm.lastExit !== undefined,
      30_000,
    );
    await consoleEvents.waitFor('the console end', (e) => e.sessionId === session.sessionId && e.end !== undefined);
  });

  it('pushes vm-removed', async () => {
    const removed = new Events(client, 'vm-removed');
    const vm = await client.invoke('vm.create', {
      config: {
        name: 'web-gone',
        memory: { startupMiB: 32 },
        boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: '' },
      },
    });
    await client.invoke('vm.remove', { vm: 'web-gone' });
    await removed.waitFor('the removal', (p) => p.id === vm.id);
  });

  it('reports a long operation’s progress and end, and cancels one', async () => {
    const ops = new Events(client, 'operation');
    const dir = mkdtempSync(join(tmpdir(), 'berth-webop-'));
    mkdirSync(dir, { recursive: true });
    const { operationId } = await client.invoke('disk.create', {
      path: join(dir, 'a.qcow2'),
      format: 'qcow2',
      sizeBytes: 1 << 20,
    });
    const done = await ops.waitFor('done', (p) => p.operation.id === operationId && p.operation.state === 'done');
    assert.equal(done.operation.done, 10);
    assert.equal(done.operation.total, 10);
    assert.deepEqual(done.operation.result, { path: join(dir, 'a.qcow2') });
    assert.equal(done.operation.kind, 'disk.create');

    const slow = await client.invoke('disk.create', {
      path: join(dir, 'slow.qcow2'),
      format: 'qcow2',
      sizeBytes: 1 << 20,
    });
    await ops.waitFor('progress', (p) => p.operation.id === slow.operationId && p.operation.done > 0);
    const listed = await client.invoke('operation.list', {});
    assert.ok(listed.some((o) => o.id === slow.operationId && o.state === 'running'));
    await client.invoke('operation.cancel', { operationId: slow.operationId });
    const cancelled = await ops.waitFor(
      'cancelled',
      (p) => p.operation.id === slow.operationId && p.operation.state === 'cancelled',
    );
    assert.equal(cancelled.operation.error?.code, 'CANCELLED');
    await assert.rejects(client.invoke('operation.cancel', { operationId: slow.operationId }), /already cancelled/);
    rmSync(dir, { recursive: true, force: true });
  });
});
