// The disk commands refuse to touch a disk a running VM has open, naming the VM and slot
// (on the real KVM; the other disk refusals are in test/specs/host/services-disks.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

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
    const vm = await ok(
      'vm',
      'new',
      '--name',
      'd1',
      '--kernel',
      testGuestPath(),
      '--memory',
      '32',
      '--cmdline',
      'echo',
      '--disk',
      'new:4M',
    );
    const top = (vm['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
    await ok('vm', 'start', 'd1');
    try {
      const open = /VM 'd1' is running and has it open \(slot 0\); stop the VM first/;
      assert.match(await refused('disk', 'compact', top), open);
      assert.match(await refused('disk', 'convert', top, join(scratch, 'torn.qcow2')), open);
      assert.match(await refused('disk', 'resize', top, '--size', '8M'), open);
      await ok('disk', 'inspect', top);
    } finally {
      await ok('vm', 'turn-off', 'd1');
    }
  });
});
