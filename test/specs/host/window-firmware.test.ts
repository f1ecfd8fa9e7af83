// Generation 1 and 2 VMs through the window's bridge over `berth serve` (no VM runs): the
// wizard's vm.create with an image and a new disk, Settings' vm.update of Secure Boot, the
// boot order and the DVD drives, Media's vm.insertDvd and vm.ejectDvd, and the refusals the
// window shows (a missing image, arguments the contract refuses).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BridgeError } from '../../../app/api/bridge';
import { createHttpBerthApi, type HttpBerthApi } from '../../../app/api/bridge-http';
import { startWebServer, type WebServer } from '../../../app/web';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';

describe('Generation 1 and 2 VMs over the window’s bridge', () => {
  let home: string;
  let work: string;
  let server: WebServer;
  let api: HttpBerthApi;
  let iso: string;
  const savedDir = process.env['BERTH_FIRMWARE_DIR'];

  before(async () => {
    home = makeBerthHome('winfw');
    work = mkdtempSync(join(tmpdir(), 'berth-winfw-'));
    const fw = join(work, 'firmware');
    mkdirSync(fw);
    writeFileSync(join(fw, 'OVMF_CODE_4M.fd'), Buffer.alloc(3653632));
    writeFileSync(join(fw, 'OVMF_VARS_4M.ms.fd'), Buffer.alloc(540672, 'M'));
    writeFileSync(join(fw, 'OVMF_VARS_4M.fd'), Buffer.alloc(540672, 'B'));
    iso = join(work, 'installer.iso');
    const image = Buffer.alloc(64 * 1024);
    image.write('CD001', 0x8001, 'latin1');
    writeFileSync(iso, image);
    process.env['BERTH_FIRMWARE_DIR'] = fw;
    server = await startWebServer({ root: home, watchIntervalMs: 200 });
    api = createHttpBerthApi({ token: server.token, baseUrl: server.origin, retryMs: 100 });
    await api.ready();
  });
  after(async () => {
    api.close();
    await server.close();
    if (savedDir === undefined) delete process.env['BERTH_FIRMWARE_DIR'];
    else process.env['BERTH_FIRMWARE_DIR'] = savedDir;
    rmSync(work, { recursive: true, force: true });
    await cleanBerthHome(home);
  });

  const refusedWith = async (p: Promise<unknown>, code: string, message: RegExp): Promise<void> => {
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof BridgeError, String(err));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, message);
      return true;
    });
  };

  it('creates a Generation 2 VM with an image and a new disk, then changes its firmware and drives in Settings', async () => {
    const vm = await api.invoke('vm.create', {
      config: {
        name: 'w2',
        memory: { startupMiB: 1024 },
        boot: { kind: 'uefi', secureBoot: true, bootOrder: ['dvd', 'disk', 'network'] },
        dvdDrives: [{ slot: 0, path: iso }],
      },
      newDisks: [{ name: 'w2.qcow2', format: 'qcow2', sizeBytes: 8 * 1024 * 1024 }],
    });
    const vars = join(vm.folder, 'firmware', 'uefi-vars.fd');
    assert.ok(readFileSync(vars).equals(Buffer.alloc(540672, 'M')));
    assert.equal(vm.config.disks.length, 1);
    const changed = await api.invoke('vm.update', {
      vm: vm.id,
      patch: { secureBoot: false, bootOrder: ['disk', 'dvd'], dvdDrives: [{ slot: 0 }, { slot: 2, path: iso }] },
    });
    assert.deepEqual(changed.config.boot, {
      kind: 'uefi',
      secureBoot: false,
      bootOrder: ['disk', 'dvd'],
      display: true,
    });
    assert.deepEqual(changed.config.dvdDrives, [{ slot: 0 }, { slot: 2, path: iso }]);
    assert.ok(readFileSync(vars).equals(Buffer.alloc(540672, 'B')), 'the store was replaced');
  });

  it('refuses the thumbnail of a VM that is off, or whose display is off, saying why', async () => {
    await refusedWith(
      api.invoke('vm.thumbnail', { vm: 'w2' }),
      'INVALID_STATE',
      /^cannot show the screen of 'w2': it is Off; start it first$/,
    );
    await api.invoke('vm.update', { vm: 'w2', patch: { display: false } });
    await refusedWith(
      api.invoke('vm.thumbnail', { vm: 'w2' }),
      'INVALID_STATE',
      /^'w2' has no display: it is off in its settings/,
    );
    await api.invoke('vm.update', { vm: 'w2', patch: { display: true } });
  });

  it('inserts and ejects media of a VM that is off (Media > DVD Drive)', async () => {
    let vm = await api.invoke('vm.insertDvd', { vm: 'w2', path: iso });
    assert.deepEqual(vm.config.dvdDrives[0], { slot: 0, path: iso });
    vm = await api.invoke('vm.ejectDvd', { vm: 'w2', slot: 2 });
    assert.deepEqual(vm.config.dvdDrives, [{ slot: 0, path: iso }, { slot: 2 }]);
  });

  it('refuses a missing image, a DVD drive on a kernel VM and arguments outside the contract', async () => {
    await refusedWith(
      api.invoke('vm.insertDvd', { vm: 'w2', path: join(work, 'gone.iso') }),
      'DVD_MEDIA_NOT_FOUND',
      /DVD drive 0 of 'w2': the image .*gone\.iso does not exist/,
    );
    await refusedWith(
      api.invoke('vm.create', {
        config: {
          name: 'w3',
          memory: { startupMiB: 64 },
          boot: { kind: 'uefi' },
          dvdDrives: [{ slot: 0, path: join(work, 'gone.iso') }],
        },
      }),
      'DVD_MEDIA_NOT_FOUND',
      /cannot create 'w3': DVD drive 0: the image .*gone\.iso does not exist/,
    );
    await refusedWith(
      api.invoke('vm.create', {
        config: {
          name: 'w4',
          memory: { startupMiB: 64 },
          boot: { kind: 'pvh', kernelPath: '/k' },
          dvdDrives: [{ slot: 0 }],
        },
      }),
      'INVALID_CONFIG',
      /dvdDrives: DVD drives are for Generation 1 \(bios\) and 2 \(uefi\) VMs/,
    );
    await refusedWith(api.invoke('vm.ejectDvd', { vm: 'w2', slot: 99 }), 'INVALID_CONFIG', /slot/);
    await refusedWith(
      api.invoke('vm.update', { vm: 'w2', patch: { bootOrder: ['dvd', 'dvd'] } }),
      'INVALID_CONFIG',
      /bootOrder\[1\]: 'dvd' is listed twice/,
    );
  });
});
