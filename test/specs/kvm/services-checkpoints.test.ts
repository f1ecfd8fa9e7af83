// Checkpoints end to end through the `berth` command line on the real KVM: the scenario
// (the guest writes A, checkpoint, writes B, apply, reads A back) and the refusals (a running
// VM, a passthrough disk, disabled checkpoints). The crash tests, which start no VM, are in
// test/specs/host/checkpoints-crash.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome, waitUntil } from '../../support/berth-home';
import { checkpointKit } from '../../support/checkpoints';
import { cliRunner } from '../../support/cli';

describe('checkpoints on the real KVM', () => {
  let home: string;
  let kernel: string;
  before(() => {
    home = makeBerthHome('ckpt');
    kernel = testGuestPath();
  });
  after(() => cleanBerthHome(home));

  const { ok, refused } = cliRunner(() => home);
  const { newVm, assertConsistent } = checkpointKit(ok, () => kernel);

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

  it("takes a running VM's checkpoint with its memory; refuses a strict production one, a passthrough disk without --exclude-passthrough, and disabled checkpoints", async () => {
    await newVm('busy', 'echo');
    await ok('vm', 'set', 'busy', '--checkpoint-type', 'production', '--standard-checkpoint-fallback', 'off');
    await ok('vm', 'start', 'busy');
    try {
      assert.match(
        await refused('checkpoint', 'create', 'busy'),
        /^cannot take a checkpoint of 'busy' while it runs: a production checkpoint of a running VM needs the guest's cooperation .* --standard-checkpoint-fallback on\)$/,
      );
      await ok('vm', 'set', 'busy', '--standard-checkpoint-fallback', 'on');
      const live = await ok('checkpoint', 'create', 'busy', '--name', 'live');
      assert.deepEqual([live['type'], live['holdsMemory']], ['standard', true]);
      assert.ok((live['stateBytes'] as number) > 0);
      assert.equal((await ok('vm', 'show', 'busy'))['state'], 'Running');
      assert.match(
        await refused('checkpoint', 'remove', 'busy', 'live'),
        /^cannot delete a checkpoint of 'busy' while it is Running; turn it off first$/,
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
});
