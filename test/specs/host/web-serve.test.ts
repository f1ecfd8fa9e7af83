// berth serve (app/web): every refusal (no token, wrong token, foreign Origin, a rebinding
// Host, a non-loopback bind without the flag), valid requests and the static window with its
// CSP. None of it starts a VM; the events pushed while one runs are in
// test/specs/kvm/web-serve-events.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BerthError } from '../../../app/api';
import { startWebServer, type WebServer } from '../../../app/web';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { testGuestPath } from '../../support/guest';
import { errorOf, json, raw } from '../../support/web';

describe('berth serve: refusals', () => {
  let home: string;
  let staticRoot: string;
  let server: WebServer;

  before(async () => {
    home = makeBerthHome('web');
    staticRoot = mkdtempSync(join(tmpdir(), 'berth-web-static-'));
    writeFileSync(join(staticRoot, 'index.html'), '<!doctype html><title>Berth</title><script src="/app.js"></script>');
    writeFileSync(join(staticRoot, 'app.js'), 'console.log(1)');
    server = await startWebServer({ root: home, staticRoot });
  });
  after(async () => {
    await server.close();
    rmSync(staticRoot, { recursive: true, force: true });
    await cleanBerthHome(home);
  });

  const api = (method: string, headers: Record<string, string>, body = '{}') =>
    raw(server, { method: 'POST', path: `/api/${method}`, headers: { ...json, ...headers }, body });

  it('listens on 127.0.0.1 and prints a URL with a long random token', () => {
    assert.equal(server.host, '127.0.0.1');
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}$/);
  });

  it('refuses an API request without the token', async () => {
    const a = await api('vm.list', {});
    assert.equal(a.status, 401);
    assert.equal(errorOf(a).code, 'FORBIDDEN');
    assert.match(errorOf(a).message, /x-berth-token/);
  });

  it('refuses a wrong token (and one of another length)', async () => {
    const wrong = server.token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
    for (const token of [wrong, 'short', `${server.token}x`]) {
      const a = await api('vm.list', { 'x-berth-token': token });
      assert.equal(a.status, 401, token);
      assert.equal(errorOf(a).code, 'FORBIDDEN');
    }
  });

  it('refuses the token in the query string or a cookie instead of the header', async () => {
    const q = await raw(server, {
      method: 'POST',
      path: `/api/vm.list?token=${server.token}`,
      headers: { ...json, cookie: `token=${server.token}` },
      body: '{}',
    });
    assert.equal(q.status, 401);
  });

  it('refuses a foreign Origin even with the right token', async () => {
    for (const origin of ['http://evil.example', `http://evil.example:${server.port}`, 'null', 'http://127.0.0.1:1']) {
      const a = await api('vm.list', { 'x-berth-token': server.token, origin });
      assert.equal(a.status, 403, origin);
      assert.equal(errorOf(a).code, 'FORBIDDEN');
      assert.match(errorOf(a).message, /not allowed/);
    }
    const events = await raw(server, {
      path: '/api/events',
      headers: { 'x-berth-token': server.token, origin: 'https://evil.example' },
    });
    assert.equal(events.status, 403);
  });

  it('refuses a rebinding Host (a DNS name pointing at 127.0.0.1), on the API and the page', async () => {
    for (const host of [`evil.example:${server.port}`, 'evil.example', `127.0.0.1:${server.port + 1}`]) {
      const a = await api('vm.list', { 'x-berth-token': server.token, host });
      assert.equal(a.status, 403, host);
      assert.equal(errorOf(a).code, 'FORBIDDEN');
      const page = await raw(server, { path: '/', headers: { host } });
      assert.equal(page.status, 403, host);
      assert.doesNotMatch(page.body, /<script/);
    }
    const none = await raw(server, { path: '/', noHost: true });
    // Node refuses an HTTP/1.1 request without Host (400) before the server sees it.
    assert.ok(none.status === 400 || none.status === 403, `no Host at all: ${none.status}`);
  });

  it('refuses to listen on a non-loopback address without the flag, and warns through the CLI', async () => {
    await assert.rejects(
      startWebServer({ root: home, host: '0.0.0.0' }),
      (err: unknown) => err instanceof BerthError && err.code === 'USAGE' && /not a loopback address/.test(err.message),
    );
    const open = await startWebServer({ root: home, host: '0.0.0.0', allowNonLoopback: true });
    try {
      // Still no rebinding: a name is refused, an address literal is accepted.
      const byName = await raw(open, { path: '/', headers: { host: `evil.example:${open.port}` } });
      assert.equal(byName.status, 403);
      const byAddress = await raw(open, {
        method: 'POST',
        path: '/api/vm.list',
        headers: { ...json, host: `127.0.0.1:${open.port}`, 'x-berth-token': open.token },
        body: '{}',
      });
      assert.equal(byAddress.status, 200);
    } finally {
      await open.close();
    }
  });

  it('answers a valid request; localhost:PORT is this server too', async () => {
    const a = await api('vm.list', { 'x-berth-token': server.token, origin: server.origin });
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { ok: true, result: [] });
    assert.equal(a.headers['cache-control'], 'no-store');
    const b = await api('host.info', { 'x-berth-token': server.token, host: `localhost:${server.port}` });
    assert.equal(b.status, 200);
    const info = (JSON.parse(b.body) as { result: { transport: string; dataRoot: string } }).result;
    assert.equal(info.transport, 'web');
    assert.equal(info.dataRoot, home);
  });

  it('refuses bad arguments with the schema message, unknown methods, non-JSON bodies and GET', async () => {
    const t = { 'x-berth-token': server.token };
    const bad = await api('vm.get', t, '{"vm": 3}');
    assert.equal(bad.status, 400);
    assert.deepEqual(errorOf(bad), { code: 'INVALID_CONFIG', message: 'vm.get: vm: must be a string, not 3' });
    const extra = await api('vm.list', t, '{"sneaky": true}');
    assert.equal(extra.status, 400);
    assert.match(errorOf(extra).message, /sneaky/);
    const unknown = await api('vm.destroyEverything', t);
    assert.equal(unknown.status, 404);
    assert.equal(errorOf(unknown).code, 'UNKNOWN_METHOD');
    assert.match(errorOf(unknown).message, /unknown method "vm.destroyEverything"; the methods are: host.info, /);
    const notJson = await api('vm.list', t, '{');
    assert.equal(notJson.status, 400);
    const form = await raw(server, {
      method: 'POST',
      path: '/api/vm.list',
      headers: { ...t, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'a=1',
    });
    assert.equal(form.status, 415);
    // A method the path does not take: 405 saying which it takes, for every HTTP method.
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      const wrong = await raw(server, { method, path: '/api/vm.list', headers: t });
      assert.equal(wrong.status, 405, method);
      assert.deepEqual(errorOf(wrong), {
        code: 'METHOD_NOT_ALLOWED',
        message: `/api/vm.list does not take ${method}; it takes POST`,
      });
      assert.equal(wrong.headers['allow'], 'POST');
    }
    const postEvents = await raw(server, { method: 'POST', path: '/api/events', headers: { ...json, ...t } });
    assert.equal(postEvents.status, 405);
    assert.equal(errorOf(postEvents).code, 'METHOD_NOT_ALLOWED');
    const putPage = await raw(server, { method: 'PUT', path: '/' });
    assert.equal(putPage.status, 405);
    assert.equal(errorOf(putPage).code, 'METHOD_NOT_ALLOWED');
    const missing = await api('vm.get', t, '{"vm": "nope"}');
    assert.equal(missing.status, 404);
    assert.equal(errorOf(missing).code, 'NOT_FOUND');
    // A disk error keeps the disk layer's own code.
    const noDisk = await api('disk.minShrinkSize', t, JSON.stringify({ path: join(home, 'nope.qcow2') }));
    assert.equal(noDisk.status, 404);
    assert.equal(errorOf(noDisk).code, 'DISK_NOT_FOUND');
    assert.match(errorOf(noDisk).message, /nope\.qcow2/);
  });

  it('answers a request body over 4 MiB with TOO_LARGE, declared or not', async () => {
    const t = { 'x-berth-token': server.token };
    const big = JSON.stringify({ path: 'x'.repeat(6 * 1024 * 1024) });
    const declared = await api('disk.inspect', { ...t, 'content-length': String(Buffer.byteLength(big)) }, big);
    assert.equal(declared.status, 413);
    assert.equal(errorOf(declared).code, 'TOO_LARGE');
    assert.match(errorOf(declared).message, /over 4194304 bytes/);
    const chunked = await api('disk.inspect', { ...t, 'transfer-encoding': 'chunked' }, big);
    assert.equal(chunked.status, 413);
    assert.equal(errorOf(chunked).code, 'TOO_LARGE');
    // The server still answers afterwards.
    assert.equal((await api('vm.list', t)).status, 200);
  });

  it('reaches the storage services: checkpoints, host disks, Inspect Disk', async () => {
    const t = { 'x-berth-token': server.token };
    const call = async (method: string, args: unknown): Promise<unknown> => {
      const a = await api(method, t, JSON.stringify(args));
      assert.equal(a.status, 200, `${method}: ${a.body}`);
      return (JSON.parse(a.body) as { result: unknown }).result;
    };
    await call('vm.create', {
      config: {
        name: 'web-cp',
        memory: { startupMiB: 32 },
        boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: '' },
      },
    });
    const cp = (await call('checkpoint.create', { vm: 'web-cp', name: 'first' })) as { id: string; name: string };
    assert.equal(cp.name, 'first');
    const list = (await call('checkpoint.list', { vm: 'web-cp' })) as { now: string; checkpoints: { id: string }[] };
    assert.deepEqual(
      list.checkpoints.map((c) => c.id),
      [cp.id],
    );
    assert.equal(list.now, cp.id);
    assert.ok(Array.isArray(await call('host.disks', {})));
    const missing = await api('disk.inspect', t, JSON.stringify({ path: join(home, 'none.qcow2') }));
    assert.notEqual(missing.status, 200);
    await call('vm.remove', { vm: 'web-cp' });
  });

  it('serves the window with a strict CSP, app routes to index.html, nothing outside its folder', async () => {
    const page = await raw(server, { path: '/' });
    assert.equal(page.status, 200);
    assert.match(page.body, /<title>Berth<\/title>/);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers['referrer-policy'], 'no-referrer');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    const route = await raw(server, { path: '/vms/some-vm' });
    assert.equal(route.status, 200);
    assert.match(route.body, /<title>Berth/);
    const js = await raw(server, { path: '/app.js' });
    assert.match(String(js.headers['content-type']), /text\/javascript/);
    for (const path of ['/../package.json', '/%2e%2e/%2e%2e/package.json', '/..%2fpackage.json']) {
      const a = await raw(server, { path });
      assert.notEqual(a.status, 200, path);
      assert.doesNotMatch(a.body, /"name"/);
    }
  });
});
