// The VM registry on disk: atomic config writes, the per-VM lock between processes,
// names, renames, removal.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { BerthError, CONFIG_SCHEMA_VERSION, RUN_FILES } from '../../../app/api';
import { FileLock, Registry, VmManager, atomicWriteFile, defaultDataRoot } from '../../../app/services';
import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome, supportDir } from '../../support/berth-home';

const run = promisify(execFile);

describe('VM registry', () => {
  let root: string;
  let manager: VmManager;
  let kernelPath: string;

  before(() => {
    root = makeBerthHome('reg');
    manager = new VmManager({ root });
    kernelPath = testGuestPath();
  });
  after(() => cleanBerthHome(root));

  const newVm = (name: string) =>
    manager.create({ name, memory: { startupMiB: 32 }, boot: { kind: 'pvh', kernelPath, cmdline: 'echo' } });

  it('puts the data root where the platform expects, BERTH_HOME first', () => {
    assert.equal(defaultDataRoot({ BERTH_HOME: '/srv/berth' }), '/srv/berth');
    if (process.platform === 'linux') {
      assert.equal(defaultDataRoot({ XDG_DATA_HOME: '/x/data' }), '/x/data/berth');
      assert.match(defaultDataRoot({}), /\/\.local\/share\/berth$/);
    }
  });

  it('creates the folder layout with a versioned config', async () => {
    const vm = await newVm('layout');
    for (const sub of ['config.json', 'disks', 'checkpoints', 'state', 'run']) {
      assert.ok(existsSync(join(root, 'vms', vm.id, sub)), `${sub} should exist`);
    }
    const stored = JSON.parse(readFileSync(join(root, 'vms', vm.id, 'config.json'), 'utf8')) as {
      schemaVersion: number;
    };
    assert.equal(stored.schemaVersion, CONFIG_SCHEMA_VERSION);
    assert.equal(statSync(join(root, 'vms', vm.id)).mode & 0o777, 0o700);
    assert.equal(vm.state, 'Off');
  });

  it('keeps names unique (case-insensitively) and resolves names, ids and id prefixes', async () => {
    const vm = await newVm('Unique');
    await assert.rejects(
      newVm('unique'),
      (err: BerthError) => err.code === 'NAME_IN_USE' && /'Unique' already exists/.test(err.message),
    );
    assert.equal((await manager.show('Unique')).id, vm.id);
    assert.equal((await manager.show(vm.id)).id, vm.id);
    assert.equal((await manager.show(vm.id.slice(0, 8))).id, vm.id);
    await assert.rejects(
      manager.show('nobody'),
      (err: BerthError) => err.code === 'NOT_FOUND' && /no VM named 'nobody'/.test(err.message),
    );
  });

  it('refuses bad settings naming the field and leaves the file as it was', async () => {
    const vm = await newVm('strict');
    const before = readFileSync(join(root, 'vms', vm.id, 'config.json'), 'utf8');
    await assert.rejects(manager.set('strict', { memoryMiB: 1 }), /memory\.startupMiB: must be at least 2/);
    await assert.rejects(manager.set('strict', { processorCount: 'two' }), /processorCount: must be a number/);
    await assert.rejects(
      manager.set('strict', { kernelPath: '/no/such/kernel' }),
      /boot\.kernelPath: \/no\/such\/kernel does not exist/,
    );
    assert.equal(readFileSync(join(root, 'vms', vm.id, 'config.json'), 'utf8'), before);
    const changed = await manager.set('strict', { memoryMiB: 48, notes: 'hi', automaticStartAction: 'start' });
    assert.equal(changed.config.memory.startupMiB, 48);
    assert.equal(changed.config.automaticStartAction, 'start');
  });

  it('upgrades an old config on first read and saves the upgrade', async () => {
    const vm = await newVm('legacy');
    const file = join(root, 'vms', vm.id, 'config.json');
    writeFileSync(file, JSON.stringify({ id: vm.id, name: 'legacy', memoryMiB: 40, vcpus: 1, kernelPath }));
    const shown = await manager.show('legacy');
    assert.equal(shown.config.memory.startupMiB, 40);
    assert.equal(
      (JSON.parse(readFileSync(file, 'utf8')) as { schemaVersion: number }).schemaVersion,
      CONFIG_SCHEMA_VERSION,
    );
    writeFileSync(file, JSON.stringify({ ...shown.config, schemaVersion: 9 }));
    const listed = (await manager.list()).find((v) => v.id === vm.id);
    assert.equal(listed?.state, 'Failed');
    assert.match(listed?.stateReason ?? '', /schemaVersion: 9 is newer than this Berth understands/);
    await fs.rm(join(root, 'vms', vm.id), { recursive: true });
  });

  it('renames and removes', async () => {
    await newVm('before');
    await newVm('taken');
    await assert.rejects(manager.rename('before', 'TAKEN'), (err: BerthError) => err.code === 'NAME_IN_USE');
    await assert.rejects(manager.rename('before', ''), /name: must not be empty/);
    const renamed = await manager.rename('before', 'after');
    assert.equal(renamed.name, 'after');
    await manager.remove('after');
    await assert.rejects(manager.show('after'), (err: BerthError) => err.code === 'NOT_FOUND');
    assert.ok(!existsSync(renamed.folder));
    const withDisk = await newVm('with-disk');
    writeFileSync(join(withDisk.folder, 'disks', 'boot.qcow2'), 'x');
    await assert.rejects(manager.remove('with-disk'), /has 1 disk file\(s\).*--delete-disks/);
    await manager.remove('with-disk', { deleteDisks: true });
  });

  it('atomic writes replace the file whole and leave no temp files', async () => {
    const dir = join(root, 'atomic');
    await fs.mkdir(dir);
    const file = join(dir, 'f.json');
    await atomicWriteFile(file, 'one');
    await atomicWriteFile(file, 'two');
    assert.equal(readFileSync(file, 'utf8'), 'two');
    assert.deepEqual(await fs.readdir(dir), ['f.json']);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('two processes updating the same VM at once lose no update, and readers never see half a file', async () => {
    const vm = await newVm('raced');
    const racer = join(supportDir, 'registry-racer.js');
    const perProcess = 40;
    const file = join(root, 'vms', vm.id, 'config.json');
    let reading = true;
    let reads = 0;
    const reader = (async () => {
      while (reading) {
        JSON.parse(await fs.readFile(file, 'utf8')); // throws on a torn write
        reads++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      await Promise.all([
        run(process.execPath, [racer, root, vm.id, String(perProcess)]),
        run(process.execPath, [racer, root, vm.id, String(perProcess)]),
      ]);
    } finally {
      reading = false;
      await reader;
    }
    const final = await new Registry(root).read(vm.id);
    assert.equal(final.notes, String(2 * perProcess), 'every locked read-modify-write must count');
    assert.ok(reads > 0);
    assert.ok(!existsSync(join(root, 'vms', vm.id, 'run', RUN_FILES.lock)), 'the lock is released');
    const leftovers = (await fs.readdir(join(root, 'vms', vm.id))).filter((n) => n.endsWith('.tmp'));
    assert.deepEqual(leftovers, []);
  });

  it('a held lock makes others wait and then report who holds it; a dead holder is broken', async () => {
    const path = join(root, 'test.lock');
    const held = await FileLock.acquire(path, 'holder', { what: 'the test lock' });
    await assert.rejects(
      FileLock.acquire(path, 'waiter', { what: 'the test lock', timeoutMs: 200 }),
      (err: BerthError) =>
        err.code === 'BUSY' && err.message.includes(`the test lock is busy: process ${process.pid} (holder`),
    );
    await held.release();
    // A lock left by a process that has exited.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(
      path,
      JSON.stringify({ pid: Number(dead.stdout), procStart: null, token: 'gone', owner: 'crashed', at: '' }),
    );
    const t0 = Date.now();
    const mine = await FileLock.acquire(path, 'after crash', { what: 'the test lock', timeoutMs: 2000 });
    assert.ok(Date.now() - t0 < 1000);
    await mine.release();
    assert.ok(!existsSync(path));
  });
});
