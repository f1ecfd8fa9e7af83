// The Electron glue without Electron: the main process's IPC dispatcher (every request
// validated against app/api/bridge before a service runs; only the app's own pages may
// call), the sandboxed preload requiring nothing but 'electron', `npm start`'s Electron
// probe, and electron-builder.yml checked against electron-builder's own schema.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { BerthEvent } from '../../../app/api/bridge';
import { APP_ORIGIN, IpcDispatcher } from '../../../app/main/ipc';
import { displayProblem, findElectron } from '../../../app/cli/start';
import { BridgeHost, VmManager } from '../../../app/services';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { repoRoot } from '../../support/guest';

describe('Electron main: IPC validation', () => {
  let home: string;
  let bridge: BridgeHost;
  let ipc: IpcDispatcher;
  const events: BerthEvent[] = [];
  const app = { id: 1, url: `${APP_ORIGIN}/index.html` };

  before(() => {
    home = makeBerthHome('ipc');
    bridge = new BridgeHost({ manager: new VmManager({ root: home }), transport: 'electron', watchIntervalMs: 100 });
    ipc = new IpcDispatcher(bridge);
    ipc.attach(app.id, (e) => events.push(e));
  });
  after(async () => {
    ipc.detach(app.id);
    await bridge.close();
    await cleanBerthHome(home);
  });

  it('answers a valid request from the app page', async () => {
    assert.deepEqual(await ipc.handle(app, 'vm.list', {}), { ok: true, result: [] });
    const info = await ipc.handle(app, 'host.info', {});
    assert.ok(info.ok);
    assert.equal((info.result as { transport: string }).transport, 'electron');
  });

  it('rejects bad arguments with the schema message before any service runs', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['vm.get', { vm: 3 }, /^vm\.get: vm: must be a string, not 3$/],
      ['vm.get', {}, /^vm\.get: vm: /],
      ['vm.list', { extra: 1 }, /extra/],
      ['vm.start', 'web1', /^vm\.start: /],
      ['vm.rename', { vm: 'a', name: ' padded ' }, /name: must not start or end with spaces/],
      ['vm.create', { config: { name: 'x', memory: { startupMiB: 'lots' } } }, /config\.memory\.startupMiB/],
      ['console.input', { sessionId: 's', data: 'not base64!' }, /data: must be base64/],
      ['disk.edit', { action: 'explode', path: '/x' }, /action/],
    ];
    for (const [method, args, message] of cases) {
      const reply = await ipc.handle(app, method, args);
      assert.equal(reply.ok, false, method);
      if (!reply.ok) {
        assert.equal(reply.error.code, 'INVALID_CONFIG', `${method}: ${reply.error.message}`);
        assert.match(reply.error.message, message);
      }
    }
    assert.deepEqual(await new VmManager({ root: home }).list(), [], 'nothing was created');
  });

  it('rejects unknown methods, including prototype names', async () => {
    for (const method of ['vm.destroy', '__proto__', 'constructor', 42, undefined]) {
      const reply = await ipc.handle(app, method, {});
      assert.equal(reply.ok, false);
      if (!reply.ok) assert.match(reply.error.message, /unknown method/);
    }
  });

  it('refuses requests from any frame but the app page', async () => {
    for (const url of [
      'https://evil.example/',
      'file:///etc/passwd',
      'berth://apps.evil/x',
      'berth://app.evil/',
      undefined,
    ]) {
      const reply = await ipc.handle({ id: 1, url }, 'vm.list', {});
      assert.equal(reply.ok, false, String(url));
      if (!reply.ok) assert.equal(reply.error.code, 'FORBIDDEN');
    }
  });

  it('pushes events to the attached window and needs a window for a console', async () => {
    await bridge.watcher.refresh();
    const refused = await ipc.handle({ id: 99, url: app.url }, 'console.attach', { vm: 'none' });
    assert.equal(refused.ok, false);
    if (!refused.ok) assert.match(refused.error.message, /connected window/);
    const created = await ipc.handle(app, 'vm.create', {
      config: {
        name: 'ipc1',
        memory: { startupMiB: 32 },
        boot: { kind: 'pvh', kernelPath: process.execPath, cmdline: '' },
      },
    });
    assert.ok(created.ok, JSON.stringify(created));
    const deadline = Date.now() + 5000;
    while (!events.some((e) => e.topic === 'vm' && e.payload.vm.name === 'ipc1') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(events.some((e) => e.topic === 'vm' && e.payload.vm.name === 'ipc1'));
  });
});

describe('Electron preload and npm start', () => {
  it('the sandboxed preload requires nothing but electron', () => {
    const js = readFileSync(join(repoRoot, 'dist', 'app', 'preload', 'preload.js'), 'utf8');
    const required = [...js.matchAll(/require\(["']([^"']+)["']\)/g)].map((m) => m[1]);
    assert.deepEqual(required, ['electron']);
    assert.match(js, /exposeInMainWorld\(['"]berth['"]/);
  });

  it("npm start's probe: require('electron') gives the binary's path, or names the missing binary", () => {
    // What electron's own install left decides the answer: path.txt names the binary it
    // downloaded (these machines cannot download it, so there it is missing).
    const pkg = dirname(require.resolve('electron/package.json'));
    const pathTxt = join(pkg, 'path.txt');
    const found = findElectron();
    if (existsSync(pathTxt)) {
      assert.deepEqual(found, { path: join(pkg, 'dist', readFileSync(pathTxt, 'utf8')) });
    } else {
      assert.ok('reason' in found, 'no binary, so no path');
      assert.match(found.reason, /^Electron's binary is missing: Electron failed to install correctly/);
    }
    assert.equal(displayProblem({}, 'linux'), 'there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set)');
    assert.equal(displayProblem({ WAYLAND_DISPLAY: 'wayland-0' }, 'linux'), undefined);
    assert.equal(displayProblem({}, 'darwin'), undefined);
  });
});

describe('electron-builder.yml', () => {
  const load = createRequire(require.resolve('app-builder-lib/package.json'));
  const { validateConfiguration } = load('./out/util/config/config') as {
    validateConfiguration: (config: unknown, log: { isEnabled: boolean; add: () => void }) => Promise<void>;
  };
  const yaml = load('js-yaml') as { load: (text: string) => unknown };
  const config = yaml.load(readFileSync(join(repoRoot, 'electron-builder.yml'), 'utf8')) as Record<string, unknown>;
  const log = { isEnabled: false, add: () => undefined };

  it("validates against electron-builder's own schema (scheme.json)", async () => {
    await validateConfiguration(config, log);
    // The validator is real: a wrong field is refused.
    await assert.rejects(validateConfiguration({ ...config, asarUnpak: [] }, log), /unknown property 'asarUnpak'/);
  });

  it('builds AppImage and deb, a dmg with the hypervisor entitlement, addon and runner outside the asar', () => {
    const linux = config['linux'] as { target: string[] };
    assert.deepEqual(linux.target, ['AppImage', 'deb']);
    const mac = config['mac'] as { target: string[]; entitlements: string; entitlementsInherit: string };
    assert.deepEqual(mac.target, ['dmg']);
    const plist = readFileSync(join(repoRoot, mac.entitlements), 'utf8');
    assert.match(plist, /<key>com\.apple\.security\.hypervisor<\/key>\s*<true\/>/);
    assert.equal(mac.entitlementsInherit, mac.entitlements);
    const unpack = config['asarUnpack'] as string[];
    assert.ok(unpack.includes('native/build/Release/berth.node'));
    assert.ok(unpack.includes('native/build/Release/berth-vmm'));
    const files = config['files'] as string[];
    for (const f of ['dist/app/**', 'dist/renderer/**', 'native/build/Release/berth.node'])
      assert.ok(files.includes(f), f);
  });
});
