// The disk commands refuse to touch a disk a running VM has open, naming the VM and slot
// (on the real KVM; the other disk refusals are in test/specs/host/services-disks.test.ts).
// The VM is made, started and turned off through the services in this process: each command's
// start-up takes seconds in the KVM lab, and the disk commands are what is tested here.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { VmManager } from '../../../app/services';
import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner } from '../../support/cli';

describe('disks of a running VM', () => {
  let home: string;
  let scratch: string;
  before(() => {
    home = makeBerthHome('disksrun');
    scratch = mkdtempSync(join(tmpdir(), 'berth-disksrun-'));
  });
  after(async () => {
    rmSync(scratch, { recursive: true, force: true });
    await cleanBerthHome(home);
  });
  const { ok, refused } = cliRunner(() => home);

  it('refuses to edit a disk a running VM has open, naming the VM and the slot', async () => {
    const manager = new VmManager({ root: home });
    const top = join(scratch, 'd1.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', top, '4M']);
    await manager.create({
      name: 'd1',
      memory: { startupMiB: 32 },
      boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: 'echo' },
      disks: [{ slot: 0, kind: 'virtual', path: top }],
    });
    await manager.start('d1');
    try {
      const open = /VM 'd1' is running and has it open \(slot 0\); stop the VM first/;
      assert.match(await refused('disk', 'compact', top), open);
      assert.match(await refused('disk', 'convert', top, join(scratch, 'torn.qcow2')), open);
      assert.match(await refused('disk', 'resize', top, '--size', '8M'), open);
      await ok('disk', 'inspect', top);
    } finally {
      await manager.turnOff('d1');
    }
  });
});
