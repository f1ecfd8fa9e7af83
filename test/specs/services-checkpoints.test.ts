// Checkpoints end to end through the `berth` command line: the scenario on the real KVM
// (the guest writes A, checkpoint, writes B, apply, reads A back), the refusals, and the
// crash tests: the CLI kills itself (SIGKILL, via BERTH_TEST_CRASH_AT) at every step of
// create, apply, delete and the merge inside delete; the next command finds the journal,
// and the VM opens with a consistent tree whose disks qemu-img passes and whose data reads
// back.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { testGuestPath } from '../support/guest';
import { cleanBerthHome, makeBerthHome, waitUntil } from '../support/berth-home';
import { cliRunner, type Json } from '../support/cli';

describe('checkpoints', () => {
  let home: string;
  let kernel: string;
  before(() => {
    home = makeBerthHome('ckpt');
    kernel = testGuestPath();
  });
  after(() => cleanBerthHome(home));

  const { run: berth, ok, refused } = cliRunner(() => home);
  const newVm = async (name: string, cmdline = 'hello'): Promise<{ id: string; folder: string; disk: string }> => {
    const vm = await ok(
      'vm',
      'new',
      '--name',
      name,
      '--kernel',
      kernel,
      '--memory',
      '32',
      '--cmdline',
      cmdline,
      '--test-exit-port',
      '--disk',
      'new:4M:qcow2',
    );
    const config = vm['config'] as { disks: { path: string }[] };
    return { id: vm['id'] as string, folder: vm['folder'] as string, disk: config.disks[0]?.path ?? '' };
  };
  const topOf = async (name: string): Promise<string> => {
    const vm = await ok('vm', 'show', name);
    return (vm['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
  };
  const qemuWrite = (file: string, pattern: number, offset: number): void => {
    execFileSync('qemu-io', ['-c', `write -P ${pattern} ${offset} 64k`, file], { stdio: 'pipe' });
  };
  const qemuReads = (file: string, pattern: number, offset: number): boolean => {
    try {
      const out = execFileSync('qemu-io', ['-r', '-c', `read -P ${pattern} ${offset} 64k`, file], {
        stdio: 'pipe',
      }).toString();
      return !/failed|error/i.test(out);
    } catch {
      return false;
    }
  };
  // The tree is whole: parents exist, Now exists, no journal left, every disk file of the
  // folder passes qemu-img check, and the files the tree names exist.
  const assertConsistent = async (name: string, folder: string): Promise<Json> => {
    const list = await ok('checkpoint', 'list', name);
    assert.ok(!existsSync(join(folder, 'checkpoints', 'journal.json')), 'the journal was finished');
    const cps = list['checkpoints'] as { id: string; parent: string | null; disks: { path: string }[] }[];
    const ids = new Set(cps.map((c) => c.id));
    for (const c of cps) {
      if (c.parent !== null) assert.ok(ids.has(c.parent), `parent of ${c.id} exists`);
      for (const d of c.disks) assert.ok(existsSync(d.path), `checkpoint file ${d.path} exists`);
    }
    if (list['now'] !== null) assert.ok(ids.has(list['now'] as string), 'Now is a checkpoint');
    assert.ok(existsSync(await topOf(name)), 'the current disk exists');
    for (const f of readdirSync(join(folder, 'disks'))) {
      execFileSync('qemu-img', ['check', join(folder, 'disks', f)], { stdio: 'pipe' });
    }
    return list;
  };

  it('the scenario: the guest writes A, checkpoint, writes B, apply, reads A back', async () => {
    const vm = await newVm('scenario', 'virtio-blk write 1');
    const runGuest = async (cmdline: string): Promise<void> => {
      await ok('vm', 'set', 'scenario', '--cmdline', cmdline);
      await ok('vm', 'start', 'scenario');
      await waitUntil(
        `'${cmdline}' to finish`,
        async () => (await ok('vm', 'show', 'scenario'))['state'] === 'Off',
        30_000,
      );
      const shown = await ok('vm', 'show', 'scenario');
      const exit = shown['lastExit'] as { reason: string; code: number };
      assert.deepEqual(
        [exit.reason, exit.code],
        ['guest-exit', 0],
        `${cmdline}: ${readFileSync(join(vm.folder, 'run', 'worker.log'), 'utf8').slice(-500)}`,
      );
    };
    await runGuest('virtio-blk write 1'); // A
    const cp = await ok('checkpoint', 'create', 'scenario', '--name', 'after A');
    await runGuest('virtio-blk write 2'); // B
    await runGuest('virtio-blk read 2');
    await ok('checkpoint', 'apply', 'scenario', cp['id'] as string);
    await runGuest('virtio-blk read 1'); // A is back
    // Reading B now fails in the guest: the checkpoint's view is A.
    await ok('vm', 'set', 'scenario', '--cmdline', 'virtio-blk read 2');
    await ok('vm', 'start', 'scenario');
    await waitUntil('the guest', async () => (await ok('vm', 'show', 'scenario'))['state'] === 'Off', 30_000);
    assert.notEqual(((await ok('vm', 'show', 'scenario'))['lastExit'] as { code: number }).code, 0);
    await assertConsistent('scenario', vm.folder);
  });

  it('refuses a running VM, a passthrough disk without --exclude-passthrough, and disabled checkpoints', async () => {
    await newVm('busy', 'echo');
    await ok('vm', 'start', 'busy');
    try {
      assert.match(
        await refused('checkpoint', 'create', 'busy'),
        /cannot take a checkpoint of 'busy': it is Running; stop the VM first \(checkpoints of running VMs need saved state, which comes later\)/,
      );
    } finally {
      await ok('vm', 'turn-off', 'busy');
    }
    // A passthrough disk written straight into the configuration (mapping checks are in
    // services-disks): the checkpoint is refused with the reason, or excludes it.
    const vm = await newVm('pt');
    const configPath = join(vm.folder, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as { disks: unknown[] };
    config.disks.push({ slot: 5, kind: 'passthrough', deviceId: 'wwn-0x5000test', readOnly: false });
    execFileSync('sh', ['-c', `cat > '${configPath}'`], { input: JSON.stringify(config) });
    assert.match(
      await refused('checkpoint', 'create', 'pt'),
      /'pt' has passthrough disk wwn-0x5000test on slot 5; a checkpoint cannot include a passthrough disk .* exclude it explicitly with --exclude-passthrough/,
    );
    const cp = await ok('checkpoint', 'create', 'pt', '--exclude-passthrough');
    assert.deepEqual(cp['excludedSlots'], [5]);
    await ok('vm', 'set', 'pt', '--checkpoint-type', 'disabled');
    assert.match(await refused('checkpoint', 'create', 'pt'), /checkpoints are disabled for 'pt'/);
  });

  it('deletes keep every other view: a file with two children is kept, a single child is merged, a subtree goes', async () => {
    const vm = await newVm('tree');
    qemuWrite(vm.disk, 0x11, 0);
    const c1 = await ok('checkpoint', 'create', 'tree', '--name', 'c1');
    qemuWrite(await topOf('tree'), 0x22, 65536);
    const c2 = await ok('checkpoint', 'create', 'tree', '--name', 'c2');
    await ok('checkpoint', 'apply', 'tree', 'c1');
    qemuWrite(await topOf('tree'), 0x33, 65536);
    const c3 = await ok('checkpoint', 'create', 'tree', '--name', 'c3');
    // c1's file now has two children (c2's and c3's views): deleting c1 keeps it.
    await ok('checkpoint', 'remove', 'tree', c1['id'] as string);
    const list = await assertConsistent('tree', vm.folder);
    const cps = list['checkpoints'] as { id: string; name: string; parent: string | null; disks: { path: string }[] }[];
    assert.deepEqual(
      cps.map((c) => [c.name, c.parent]),
      [
        ['c2', null],
        ['c3', null],
      ],
    );
    const view = (id: unknown): string => cps.find((c) => c.id === id)?.disks[0]?.path ?? '';
    assert.ok(qemuReads(view(c2['id']), 0x11, 0) && qemuReads(view(c2['id']), 0x22, 65536), "c2's view unchanged");
    assert.ok(qemuReads(view(c3['id']), 0x11, 0) && qemuReads(view(c3['id']), 0x33, 65536), "c3's view unchanged");
    await ok('checkpoint', 'rename', 'tree', 'c3', 'third');
    await ok('checkpoint', 'remove', 'tree', 'third', '--subtree');
    const left = await assertConsistent('tree', vm.folder);
    assert.deepEqual(
      (left['checkpoints'] as { name: string }[]).map((c) => c.name),
      ['c2'],
    );
    assert.ok(qemuReads(await topOf('tree'), 0x33, 65536), 'Now keeps its data when its checkpoint goes');
    assert.match(await refused('checkpoint', 'apply', 'tree', 'nope'), /'tree' has no checkpoint 'nope'/);
  });

  // ---- SIGKILL at every step -----------------------------------------------------------
  const crashAt = async (step: string, args: string[]): Promise<void> => {
    const r = await berth(args, { BERTH_TEST_CRASH_AT: step });
    assert.equal(r.signal, 'SIGKILL', `${step}: the process should have killed itself (${r.stdout} ${r.stderr})`);
  };
  let n = 0;

  for (const step of [
    'create:journaled',
    'create:overlay',
    'create:committing',
    'create:write-0',
    'create:write-1',
    'create:write-2',
    'create:removed',
  ]) {
    it(`survives SIGKILL at ${step}`, async () => {
      const name = `cc${n++}`;
      const vm = await newVm(name);
      qemuWrite(vm.disk, 0xaa, 0);
      await crashAt(step, ['checkpoint', 'create', name, '--name', 'x']);
      const list = await assertConsistent(name, vm.folder);
      assert.ok((list['checkpoints'] as unknown[]).length <= 1);
      assert.ok(qemuReads(await topOf(name), 0xaa, 0), 'the data reads back');
      await ok('checkpoint', 'create', name, '--name', 'again');
    });
  }

  for (const step of [
    'apply:journaled',
    'apply:overlay',
    'apply:committing',
    'apply:write-0',
    'apply:write-1',
    'apply:removed',
  ]) {
    it(`survives SIGKILL at ${step}`, async () => {
      const name = `ca${n++}`;
      const vm = await newVm(name);
      qemuWrite(vm.disk, 0xaa, 0);
      await ok('checkpoint', 'create', name, '--name', 'x');
      qemuWrite(await topOf(name), 0xbb, 0);
      await crashAt(step, ['checkpoint', 'apply', name, 'x']);
      await assertConsistent(name, vm.folder);
      const top = await topOf(name);
      assert.ok(qemuReads(top, 0xaa, 0) || qemuReads(top, 0xbb, 0), 'the disk holds the old or the applied data');
      await ok('checkpoint', 'apply', name, 'x');
      assert.ok(qemuReads(await topOf(name), 0xaa, 0), 'applying again gives the checkpoint');
      assert.equal(readdirSync(join(vm.folder, 'disks')).length, 2, 'no stray overlays');
    });
  }

  for (const step of [
    'delete:journaled',
    'merge:in-progress',
    'merge:done',
    'merge:reconnected',
    'delete:write-0',
    'delete:write-1',
    'delete:write-2',
    'delete:removed',
  ]) {
    it(`survives SIGKILL at ${step}`, async () => {
      const name = `cd${n++}`;
      const vm = await newVm(name);
      qemuWrite(vm.disk, 0xaa, 0);
      await ok('checkpoint', 'create', name, '--name', 'c1');
      qemuWrite(await topOf(name), 0xbb, 65536);
      await ok('checkpoint', 'create', name, '--name', 'c2');
      qemuWrite(await topOf(name), 0xcc, 131072);
      await crashAt(step, ['checkpoint', 'remove', name, 'c1']);
      const list = await assertConsistent(name, vm.folder);
      const cps = list['checkpoints'] as { name: string; parent: string | null; disks: { path: string }[] }[];
      assert.deepEqual(
        cps.map((c) => [c.name, c.parent]),
        [['c2', null]],
        'the delete was finished',
      );
      const c2 = cps[0]?.disks[0]?.path ?? '';
      assert.ok(qemuReads(c2, 0xaa, 0) && qemuReads(c2, 0xbb, 65536), "c2's view is intact");
      const top = await topOf(name);
      assert.ok(
        qemuReads(top, 0xaa, 0) && qemuReads(top, 0xbb, 65536) && qemuReads(top, 0xcc, 131072),
        'Now is intact',
      );
    });
  }
});
