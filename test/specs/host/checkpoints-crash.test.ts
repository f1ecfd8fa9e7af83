// Checkpoint trees through the `berth` command line, without starting a VM: deletes that
// keep every other view, the refusals (a passthrough disk, disabled checkpoints), and the
// crash tests: the CLI kills itself (SIGKILL, through the
// crash hook test/support/crash-cli.ts installs) at every step of create, apply, delete and
// the merge inside delete;
// the next command finds the journal, and the VM opens with a consistent tree whose disks
// qemu-img passes and whose data reads back.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { checkpointKit } from '../../support/checkpoints';
import { cliRunner } from '../../support/cli';
import { crashCliPath } from '../../support/berth-home';

describe('checkpoint trees and crashes', () => {
  let home: string;
  let kernel: string;
  before(() => {
    home = makeBerthHome('ckpt');
    kernel = testGuestPath();
  });
  after(() => cleanBerthHome(home));

  const { run: berth, ok, refused } = cliRunner(() => home);
  const { run: crashing } = cliRunner(() => home, crashCliPath);
  const { newVm, topOf, qemuWrite, qemuReads, assertConsistent } = checkpointKit(ok, () => kernel);

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
    const r = await crashing([step, ...args]);
    assert.equal(r.signal, 'SIGKILL', `${step}: the process should have killed itself (${r.stdout} ${r.stderr})`);
  };
  let n = 0;

  it('refuses a passthrough disk without --exclude-passthrough, and disabled checkpoints', async () => {
    // A passthrough disk written straight into the configuration (mapping checks are in
    // services-disks): the checkpoint is refused with the reason, or excludes it.
    const vm = await newVm('pt');
    const configPath = join(vm.folder, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as { disks: unknown[] };
    config.disks.push({ slot: 5, kind: 'passthrough', deviceId: 'wwn-0x5000test', readOnly: false });
    writeFileSync(configPath, JSON.stringify(config));
    assert.match(
      await refused('checkpoint', 'create', 'pt'),
      /'pt' has passthrough disk wwn-0x5000test on slot 5; a checkpoint cannot include a passthrough disk .* exclude it explicitly with --exclude-passthrough/,
    );
    const cp = await ok('checkpoint', 'create', 'pt', '--exclude-passthrough');
    assert.deepEqual(cp['excludedSlots'], [5]);
    await ok('vm', 'set', 'pt', '--checkpoint-type', 'disabled');
    assert.match(await refused('checkpoint', 'create', 'pt'), /checkpoints are disabled for 'pt'/);
  });

  it('the product has no crash switch: the old environment variable does nothing', async () => {
    await newVm('no-switch');
    const r = await berth(['checkpoint', 'create', 'no-switch', '--name', 'x', '--json'], {
      BERTH_TEST_CRASH_AT: 'create:journaled',
    });
    assert.equal(r.signal, null);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((JSON.parse(r.stdout) as { name: string }).name, 'x');
  });

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
