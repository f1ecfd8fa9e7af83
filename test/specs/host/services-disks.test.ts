// Virtual disks and passthrough mappings through the `berth` command line: disk
// new/inspect/convert/resize/compact/merge/reconnect, the refusals that name the checkpoint
// using a disk (those of a running VM are in test/specs/kvm/services-disks-running.test.ts), and `host disks` with loop devices (root; always detached). Loop
// devices have no /dev/disk/by-id link: their stable id is loop-backing:<backing file>.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, type Json } from '../../support/cli';

describe('disks and passthrough', () => {
  let home: string;
  let kernel: string;
  let scratch: string;
  const loops: string[] = [];
  const mounts: string[] = [];
  before(() => {
    home = makeBerthHome('disks');
    kernel = testGuestPath();
    scratch = mkdtempSync(join(tmpdir(), 'berth-disks-'));
  });
  after(async () => {
    for (const m of mounts) execFileSync('umount', [m]);
    for (const l of loops) execFileSync('losetup', ['-d', l]);
    rmSync(scratch, { recursive: true, force: true });
    await cleanBerthHome(home);
  });

  const { run, ok, refused } = cliRunner(() => home);
  const images = (j: Json): { path: string; format: string; virtualSize: number }[] =>
    j['images'] as { path: string; format: string; virtualSize: number }[];
  const loop = (size = '16M'): { dev: string; file: string } => {
    const file = join(scratch, `loop${loops.length}.img`);
    execFileSync('truncate', ['-s', size, file]);
    const dev = execFileSync('losetup', ['-f', '--show', file]).toString().trim();
    loops.push(dev);
    return { dev, file };
  };

  it('creates, inspects, converts, resizes, compacts, merges and reconnects', async () => {
    const base = join(scratch, 'base.qcow2');
    assert.equal(images(await ok('disk', 'new', base, '--size', '8M'))[0]?.format, 'qcow2');
    const child = join(scratch, 'child.vhdx');
    await ok('disk', 'new', join(scratch, 'b.vhdx'), '--size', '8M');
    await ok('disk', 'new', child, '--parent', join(scratch, 'b.vhdx'));
    assert.equal(images(await ok('disk', 'inspect', child)).length, 2);
    const raw = join(scratch, 'flat.raw');
    assert.equal(images(await ok('disk', 'convert', child, raw))[0]?.format, 'raw');
    assert.equal(images(await ok('disk', 'resize', base, '--size', '16M'))[0]?.virtualSize, 16 << 20);
    await ok('disk', 'compact', base);
    await ok('disk', 'new', join(scratch, 'b2.vhdx'), '--size', '8M');
    assert.equal(
      images(await ok('disk', 'reconnect', child, join(scratch, 'b2.vhdx')))[1]?.path,
      join(scratch, 'b2.vhdx'),
    );
    await ok('disk', 'merge', child);
    const usage = await run(['disk', 'resize', base, '--json']);
    assert.equal(usage.code, 2);
  });

  it('refuses to edit a checkpoint chain, naming the checkpoint and the VM', async () => {
    await ok(
      'vm',
      'new',
      '--name',
      'd1',
      '--kernel',
      kernel,
      '--memory',
      '32',
      '--cmdline',
      'echo',
      '--disk',
      'new:4M',
    );
    const cp = await ok('checkpoint', 'create', 'd1', '--name', 'first');
    const view = (cp['disks'] as { path: string }[])[0]?.path ?? '';
    const top = ((await ok('vm', 'show', 'd1'))['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
    const chain = /it is part of checkpoint 'first' of VM 'd1' \(a checkpoint chain\)/;
    assert.match(await refused('disk', 'compact', view), chain);
    assert.match(await refused('disk', 'resize', view, '--size', '8M'), chain);
    assert.match(await refused('disk', 'reconnect', view, join(scratch, 'base.qcow2')), chain);
    assert.match(await refused('disk', 'merge', top), /cannot merge .*: VM 'd1' uses it as its disk on slot 0/);
    // Reading a chain member into a new file is safe; inspect always is.
    await ok('disk', 'convert', view, join(scratch, 'copy-of-view.qcow2'));
    await ok('disk', 'inspect', view);
  });

  it('lists host disks and maps an offline loop device by its stable id', async () => {
    const { dev, file } = loop();
    const listed = (await ok('host', 'disks'))['disks'] as {
      devicePath: string;
      stableId: string;
      inUse: boolean;
      mounts: string[];
    }[];
    const mine = listed.find((d) => d.devicePath === dev);
    assert.ok(mine, `${dev} is listed`);
    assert.equal(mine.stableId, `loop-backing:${file}`);
    assert.deepEqual([mine.inUse, mine.mounts], [false, []]);
    await ok(
      'vm',
      'new',
      '--name',
      'p1',
      '--kernel',
      kernel,
      '--memory',
      '32',
      '--cmdline',
      'virtio-blk write 7',
      '--test-exit-port',
      '--disk',
      `passthrough:${mine.stableId}`,
    );
    const disks = ((await ok('vm', 'show', 'p1'))['config'] as { disks: { kind: string; deviceId: string }[] }).disks;
    assert.deepEqual(disks, [{ slot: 0, kind: 'passthrough', deviceId: mine.stableId, readOnly: false }]);
    assert.match(
      await refused('vm', 'new', '--name', 'p2', '--kernel', kernel, '--disk', `passthrough:${dev}`),
      /is already mapped to VM 'p1'; a passthrough disk belongs to one VM/,
    );
    assert.match(
      await refused('checkpoint', 'create', 'p1'),
      /a checkpoint cannot include a passthrough disk .*--exclude-passthrough/,
    );
  });

  it('refuses a mounted, an in-use and the system disk, saying which and why', async () => {
    const m = loop('32M');
    execFileSync('mkfs.ext4', ['-q', m.dev]);
    const point = mkdtempSync(join(tmpdir(), 'berth-mnt-'));
    execFileSync('mount', [m.dev, point]);
    mounts.push(point);
    assert.match(
      await refused('vm', 'new', '--name', 'm1', '--kernel', kernel, '--disk', `passthrough:loop-backing:${m.file}`),
      new RegExp(`\\(${m.dev}\\) is mounted on ${point}; unmount it`),
    );
    const busy = loop();
    const holder: ChildProcess = spawn('python3', [
      '-c',
      `import os,time\nos.open('${busy.dev}', os.O_RDONLY|os.O_EXCL)\nprint('held', flush=True)\ntime.sleep(60)`,
    ]);
    try {
      await new Promise((resolve) => holder.stdout?.once('data', resolve));
      assert.match(
        await refused(
          'vm',
          'new',
          '--name',
          'm2',
          '--kernel',
          kernel,
          '--disk',
          `passthrough:loop-backing:${busy.file}`,
        ),
        /is in use \(another process has it open exclusively\); release it/,
      );
    } finally {
      holder.kill('SIGKILL');
    }
    const listed = (await ok('host', 'disks'))['disks'] as { devicePath: string; system: boolean }[];
    const system = listed.find((d) => d.system);
    assert.ok(system, 'the host has a system disk');
    assert.match(
      await refused('vm', 'new', '--name', 'm3', '--kernel', kernel, '--disk', `passthrough:${system.devicePath}`),
      /is the system disk \(it holds \/.*\); Berth never gives the host system disk to a VM/,
    );
  });
});
