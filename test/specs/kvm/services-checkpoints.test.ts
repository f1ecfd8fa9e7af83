// Checkpoints end to end through the `berth` command line on the real KVM: the scenario
// (the guest writes A, checkpoint, writes B, apply, reads A back) and a running VM's
// checkpoints. The checkpoint commands run as a user types them; the guest runs between them
// are started and watched through the services in this process, since each command's
// start-up takes seconds in the KVM lab. What starts no VM (the crash tests, a passthrough
// disk, disabled checkpoints) is in test/specs/host/checkpoints-crash.test.ts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { VmManager } from '../../../app/services';
import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome, waitUntil } from '../../support/berth-home';
import { checkpointKit } from '../../support/checkpoints';
import { cliRunner } from '../../support/cli';

describe('checkpoints on the real KVM', () => {
  let home: string;
  let kernel: string;
  let manager: VmManager;
  before(() => {
    home = makeBerthHome('ckpt');
    kernel = testGuestPath();
    manager = new VmManager({ root: home });
  });
  after(() => cleanBerthHome(home));

  const { ok, refused } = cliRunner(() => home);
  const { newVm, assertConsistent } = checkpointKit(ok, () => kernel);

  it('the scenario: the guest writes A, checkpoint, writes B, apply, reads A back', async () => {
    const vm = await newVm('scenario', 'virtio-blk write 1');
    const runGuest = async (cmdline: string): Promise<number> => {
      await manager.set('scenario', { cmdline });
      await manager.start('scenario');
      await waitUntil(`'${cmdline}' to finish`, async () => (await manager.state('scenario')).state === 'Off', 30_000);
      const exit = (await manager.show('scenario')).lastExit;
      assert.equal(
        exit?.reason,
        'guest-exit',
        `${cmdline}: ${readFileSync(join(vm.folder, 'run', 'worker.log'), 'utf8').slice(-500)}`,
      );
      return exit.code;
    };
    assert.equal(await runGuest('virtio-blk write 1'), 0); // A
    const cp = await ok('checkpoint', 'create', 'scenario', '--name', 'after A');
    assert.equal(await runGuest('virtio-blk write 2'), 0); // B
    assert.equal(await runGuest('virtio-blk read 2'), 0);
    await ok('checkpoint', 'apply', 'scenario', cp['id'] as string);
    assert.equal(await runGuest('virtio-blk read 1'), 0); // A is back
    // Reading B now fails in the guest: the checkpoint's view is A.
    assert.notEqual(await runGuest('virtio-blk read 2'), 0);
    await assertConsistent('scenario', vm.folder);
  });

  it("takes a running VM's checkpoint with its memory, and refuses a strict production one", async () => {
    await newVm('busy', 'echo');
    await manager.set('busy', { checkpointType: 'production', standardCheckpointFallback: false });
    await manager.start('busy');
    try {
      assert.match(
        await refused('checkpoint', 'create', 'busy'),
        /^cannot take a checkpoint of 'busy' while it runs: a production checkpoint of a running VM needs the guest's cooperation .* --standard-checkpoint-fallback on\)$/,
      );
      await manager.set('busy', { standardCheckpointFallback: true });
      const live = await ok('checkpoint', 'create', 'busy', '--name', 'live');
      assert.deepEqual([live['type'], live['holdsMemory']], ['standard', true]);
      assert.ok((live['stateBytes'] as number) > 0);
      assert.equal((await manager.state('busy')).state, 'Running');
      assert.match(
        await refused('checkpoint', 'remove', 'busy', 'live'),
        /^cannot delete a checkpoint of 'busy' while it is Running; turn it off first$/,
      );
    } finally {
      await manager.turnOff('busy');
    }
  });
});
