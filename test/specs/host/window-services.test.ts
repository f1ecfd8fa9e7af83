// What the window asks of the service, over `berth serve` as the browser window does: the
// New VM wizard's new disk (and that a failed one leaves no VM behind), Settings' disk and
// network lists, Shrink's minimum size, production checkpoints and their refusals, and
// Export Checkpoint (a new VM with the chain flattened), imported back. No VM runs here.
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BridgeError, type MethodArgs } from '../../../app/api/bridge';
import { createHttpBerthApi, type HttpBerthApi } from '../../../app/api/bridge-http';
import { MAX_VIRTIO_DEVICES } from '../../../app/api';
import { convertDisk, inspectDisk } from '../../../app/native/disk';
import { toNativeError } from '../../../app/native/errors';
import { processStartTime } from '../../../app/services/fsutil';
import { startWebServer, type WebServer } from '../../../app/web';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { testGuestPath } from '../../support/guest';
import { Events } from '../../support/web';

const MiB = 1024 * 1024;

describe('the window’s services over berth serve', () => {
  let home: string;
  let server: WebServer;
  let api: HttpBerthApi;

  before(async () => {
    home = makeBerthHome('window');
    server = await startWebServer({ root: home, watchIntervalMs: 200 });
    api = createHttpBerthApi({ token: server.token, baseUrl: server.origin, retryMs: 100 });
    await api.ready();
  });
  after(async () => {
    api.close();
    await server.close();
    await cleanBerthHome(home);
  });

  const config = (name: string): MethodArgs<'vm.create'>['config'] => ({
    name,
    memory: { startupMiB: 32 },
    boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: '' },
  });
  // What the window shows for a refusal: its code and message.
  const refusal = async (p: Promise<unknown>): Promise<{ code: string; message: string }> => {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof BridgeError, String(err));
      return { code: err.code, message: err.message };
    }
    assert.fail('expected a refusal');
  };
  const leftovers = async (): Promise<string[]> =>
    (await fs.readdir(join(home, 'vms')).catch(() => [] as string[])).filter((n) => n.startsWith('.new-'));

  it('offers every action: host.info lists nothing as unavailable', async () => {
    const info = await api.invoke('host.info', {});
    assert.equal('unavailable' in info, false);
  });

  it('creates a VM with a new virtual hard disk in its folder, in one step', async () => {
    const vm = await api.invoke('vm.create', {
      config: config('with-disk'),
      newDisks: [{ name: 'with-disk.vhdx', format: 'vhdx', sizeBytes: 16 * MiB }],
    });
    assert.deepEqual(vm.config.disks, [
      { slot: 0, kind: 'virtual', path: join(vm.folder, 'disks', 'with-disk.vhdx'), readOnly: false },
    ]);
    const image = (await inspectDisk(join(vm.folder, 'disks', 'with-disk.vhdx'))).images[0];
    assert.equal(image?.format, 'vhdx');
    assert.equal(image?.virtualSize, 16 * MiB);
  });

  it('leaves nothing behind when the new disk cannot be made, and says why', async () => {
    // VHD tops out at 2040 GiB.
    const tooBig = await refusal(
      api.invoke('vm.create', {
        config: config('half-made'),
        newDisks: [{ name: 'big.vhd', format: 'vhd', sizeBytes: 4096 * 1024 * MiB }],
      }),
    );
    assert.match(tooBig.code, /^DISK_/);
    assert.notEqual(tooBig.code, 'DISK');
    const bad = await refusal(
      api.invoke('vm.create', {
        config: config('half-made'),
        newDisks: [{ name: '../escape.qcow2', format: 'qcow2', sizeBytes: 16 * MiB }],
      }),
    );
    assert.equal(bad.code, 'INVALID_CONFIG');
    assert.match(bad.message, /newDisks\[0\]\.name: must be a file name, without folders/);
    assert.equal((await api.invoke('vm.list', {})).filter((v) => v.name === 'half-made').length, 0);
    assert.deepEqual(await leftovers(), []);
  });

  it('refuses more disks and adapters than a VM can have before making any file', async () => {
    const many = Array.from({ length: MAX_VIRTIO_DEVICES }, (_, i) => ({
      name: `d${i}.qcow2`,
      format: 'qcow2' as const,
      sizeBytes: MiB,
    }));
    const r = await refusal(
      api.invoke('vm.create', { config: { ...config('crowded'), network: [{ kind: 'nat' }] }, newDisks: many }),
    );
    assert.equal(r.code, 'INVALID_CONFIG');
    assert.match(r.message, new RegExp(`at most ${MAX_VIRTIO_DEVICES} disks and network adapters together`));
    assert.deepEqual(await leftovers(), []);
  });

  it('changes the disk and network lists from Settings, checking each new disk', async () => {
    const vm = await api.invoke('vm.create', { config: config('settings') });
    const file = join(home, 'settings-extra.qcow2');
    await fs.rm(file, { force: true });
    await api.invoke('vm.create', {
      config: config('donor'),
      newDisks: [{ name: 'donor.qcow2', format: 'qcow2', sizeBytes: 8 * MiB }],
    });
    const donorDisk = join(home, 'vms', (await api.invoke('vm.get', { vm: 'donor' })).id, 'disks', 'donor.qcow2');
    await convertDisk(donorDisk, file, { format: 'qcow2' });
    const updated = await api.invoke('vm.update', {
      vm: vm.id,
      patch: {
        notes: 'two changes at once',
        disks: [{ slot: 1, kind: 'virtual', path: file, readOnly: true }],
        network: [{ kind: 'nat' }],
      },
    });
    assert.deepEqual(updated.config.disks, [{ slot: 1, kind: 'virtual', path: file, readOnly: true }]);
    assert.equal(updated.config.network.length, 1);
    assert.match(updated.config.network[0]?.mac ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(updated.config.notes, 'two changes at once');

    const missing = await refusal(
      api.invoke('vm.update', {
        vm: vm.id,
        patch: { disks: [{ slot: 0, kind: 'virtual', path: join(home, 'nope.qcow2'), readOnly: false }] },
      }),
    );
    assert.equal(missing.code, 'DISK_NOT_FOUND');
    assert.match(missing.message, /nope\.qcow2/);
    const taken = await refusal(
      api.invoke('vm.update', {
        vm: vm.id,
        patch: { disks: [{ slot: 0, kind: 'virtual', path: donorDisk, readOnly: false }] },
      }),
    );
    assert.equal(taken.code, 'IN_USE');
    assert.match(taken.message, /VM 'donor' uses it as its disk on slot 0; detach it first/);
    const crowded = await refusal(
      api.invoke('vm.update', {
        vm: vm.id,
        patch: { network: Array.from({ length: MAX_VIRTIO_DEVICES }, () => ({ kind: 'nat' as const })) },
      }),
    );
    assert.equal(crowded.code, 'INVALID_CONFIG');
    // Nothing of a refused change was stored.
    assert.deepEqual((await api.invoke('vm.get', { vm: vm.id })).config.disks, updated.config.disks);

    const cleared = await api.invoke('vm.update', { vm: vm.id, patch: { disks: [], network: [] } });
    assert.deepEqual(cleared.config.disks, []);
    assert.deepEqual(cleared.config.network, []);
    assert.ok(readFileSync(file).length > 0, 'a disk taken off its slot stays where it is');
  });

  it('finds the smallest size a disk can shrink to', async () => {
    const vm = await api.invoke('vm.get', { vm: 'with-disk' });
    const path = join(vm.folder, 'disks', 'with-disk.vhdx');
    const { sizeBytes } = await api.invoke('disk.minShrinkSize', { path });
    assert.ok(sizeBytes >= 0 && sizeBytes <= 16 * MiB, String(sizeBytes));
  });

  it('takes production checkpoints of a VM that is off, and refuses one while it is starting, saying why', async () => {
    const vm = await api.invoke('vm.create', {
      config: config('prod'),
      newDisks: [{ name: 'prod.qcow2', format: 'qcow2', sizeBytes: 8 * MiB }],
    });
    const set = await api.invoke('vm.update', { vm: vm.id, patch: { checkpointType: 'production' } });
    assert.equal(set.config.checkpoints.standardFallback, true);
    const cp = await api.invoke('checkpoint.create', { vm: vm.id, name: 'consistent' });
    assert.equal(cp.type, 'production');

    // The state another manager's `berth vm start` is in while it spawns the worker.
    const starting = join(vm.folder, 'run', 'starting.json');
    writeFileSync(starting, JSON.stringify({ pid: process.pid, procStart: processStartTime(process.pid) }));
    try {
      // Neither off nor running: no checkpoint (a running VM's production fallback is in the
      // KVM spec services-checkpoints).
      const starting = await refusal(api.invoke('checkpoint.create', { vm: vm.id }));
      assert.equal(starting.code, 'INVALID_STATE');
      assert.equal(starting.message, "cannot take a checkpoint of 'prod' while it is Starting; turn it off first");
    } finally {
      await fs.rm(starting, { force: true });
    }
    const list = await api.invoke('checkpoint.list', { vm: vm.id });
    assert.deepEqual(
      list.checkpoints.map((c) => [c.name, c.type]),
      [['consistent', 'production']],
    );
  });

  it('exports a checkpoint as a new VM whose disk is the chain flattened at that point', async () => {
    // A raw disk with known bytes, then two checkpoints: the second one's view is an
    // (empty) overlay over the raw file, so only flattening carries the bytes over.
    const vm = await api.invoke('vm.create', { config: config('cp-export') });
    const base = join(home, 'cp-export-base.raw');
    const bytes = Buffer.alloc(4 * MiB);
    bytes.write('written before the checkpoints', MiB);
    writeFileSync(base, bytes);
    await api.invoke('vm.update', {
      vm: vm.id,
      patch: { disks: [{ slot: 0, kind: 'virtual', path: base, readOnly: false }] },
    });
    await api.invoke('checkpoint.create', { vm: vm.id, name: 'first' });
    const second = await api.invoke('checkpoint.create', { vm: vm.id, name: 'second' });
    const dest = join(home, 'exports');
    await fs.mkdir(dest, { recursive: true });
    const ops = new Events(api, 'operation');
    const { operationId } = await api.invoke('vm.export', { vm: vm.id, folder: dest, checkpointId: second.id });
    const end = await ops.waitFor(
      'the export',
      (p) => p.operation.id === operationId && p.operation.state !== 'running',
    );
    assert.equal(end.operation.state, 'done', JSON.stringify(end.operation.error));
    const folder = join(dest, 'cp-export-second');
    assert.deepEqual(end.operation.result, { folder });

    const manifest = JSON.parse(readFileSync(join(folder, 'export.json'), 'utf8')) as {
      checkpoints: string[];
      disks: string[];
    };
    assert.deepEqual(manifest.checkpoints, []);
    assert.deepEqual(manifest.disks, ['disks/cp-export-base.qcow2']);
    const exported = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as {
      disks: { path: string }[];
    };
    assert.equal(exported.disks[0]?.path, 'disks/cp-export-base.qcow2');
    const info = await inspectDisk(join(folder, 'disks', 'cp-export-base.qcow2'));
    assert.equal(info.images.length, 1, 'standalone: no backing file');
    const flat = join(home, 'flat.raw');
    await convertDisk(join(folder, 'disks', 'cp-export-base.qcow2'), flat, { format: 'raw' });
    assert.ok(readFileSync(flat).equals(bytes), 'the exported disk holds what the checkpoint saw');

    const imported = await api.invoke('vm.import', { path: folder, mode: 'copy', name: 'from-checkpoint' });
    const done = await ops.waitFor(
      'the import',
      (p) => p.operation.id === imported.operationId && p.operation.state !== 'running',
    );
    assert.equal(done.operation.state, 'done', JSON.stringify(done.operation.error));
    const copy = await api.invoke('vm.get', { vm: 'from-checkpoint' });
    assert.equal(copy.config.disks.length, 1);
    assert.deepEqual((await api.invoke('checkpoint.list', { vm: copy.id })).checkpoints, []);

    const again = await api.invoke('vm.export', { vm: vm.id, folder: dest, checkpointId: second.id });
    const conflict = await ops.waitFor(
      'the second export',
      (p) => p.operation.id === again.operationId && p.operation.state !== 'running',
    );
    assert.equal(conflict.operation.error?.code, 'CONFLICT');
    const unknown = await api.invoke('vm.export', { vm: vm.id, folder: dest, checkpointId: 'no-such' });
    const nf = await ops.waitFor(
      'an unknown checkpoint',
      (p) => p.operation.id === unknown.operationId && p.operation.state !== 'running',
    );
    assert.equal(nf.operation.error?.code, 'NOT_FOUND');
    assert.match(nf.operation.error?.message ?? '', /has no checkpoint 'no-such'/);
  });

  it('keeps a native failure’s own code (none becomes INTERNAL)', () => {
    for (const code of ['BOOT_ACPI', 'BOOT_VCPU_COUNT', 'HV_IOEVENTFD', 'HV_IRQFD', 'VIRTIO_SETUP']) {
      assert.equal(toNativeError(Object.assign(new Error('x'), { code })).code, code);
    }
  });
});
