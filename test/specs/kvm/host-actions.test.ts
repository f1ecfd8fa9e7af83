// `berth host shutdown` and `berth host startup` with running VMs (the echo guest): each stop
// action happens (a shut-down the guest ignores ends in a turn-off, said so), the VMs that ran
// are remembered, and startup starts the ones set to start and the restart-if-running ones
// that ran, after their delay, and leaves the others off.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { VmManager } from '../../../app/services';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner } from '../../support/cli';
import { testGuestPath } from '../../support/guest';

describe('the host shuts down and starts up', () => {
  let home: string;
  let manager: VmManager;
  before(() => {
    home = makeBerthHome('hostkvm');
    manager = new VmManager({ root: home });
  });
  after(() => cleanBerthHome(home));
  const { run } = cliRunner(() => home);

  const newVm = async (
    name: string,
    start: 'nothing' | 'start' | 'restart-if-running',
    stop: 'turn-off' | 'shut-down',
    delay = 0,
  ) => {
    await manager.create({
      name,
      memory: { startupMiB: 32 },
      boot: { kind: 'pvh', kernelPath: testGuestPath(), cmdline: 'echo' },
    });
    await manager.set(name, {
      automaticStartAction: start,
      automaticStopAction: stop,
      automaticStartDelaySeconds: delay,
    });
  };
  const state = async (name: string) => (await manager.show(name)).state;
  const byName = (results: Record<string, unknown>[]) =>
    Object.fromEntries(results.map((r) => [r['name'], [r['outcome'], r['message'] ?? '']]));

  it('applies the stop actions, remembers what ran, and starts what the start actions say', async () => {
    await newVm('always', 'start', 'turn-off', 2);
    await newVm('again', 'restart-if-running', 'shut-down');
    await newVm('manual', 'nothing', 'turn-off');
    await newVm('idle', 'restart-if-running', 'turn-off');
    await manager.start('again');
    await manager.start('manual');

    const down = await run(['host', 'shutdown', '--timeout', '2', '--json']);
    assert.equal(down.code, 0, down.stderr);
    const stopped = byName((JSON.parse(down.stdout) as { results: Record<string, unknown>[] }).results);
    assert.deepEqual(Object.keys(stopped).sort(), ['again', 'manual']);
    assert.deepEqual(stopped['manual'], ['turned-off', '']);
    assert.equal(stopped['again']?.[0], 'turned-off');
    assert.match(String(stopped['again']?.[1]), /^'again' did not shut down within 2 s: .* Turned off\.$/);
    for (const name of ['always', 'again', 'manual', 'idle']) assert.equal(await state(name), 'Off', name);

    const started = Date.now();
    const up = await run(['host', 'startup', '--json']);
    assert.equal(up.code, 0, up.stderr);
    const ups = byName((JSON.parse(up.stdout) as { results: Record<string, unknown>[] }).results);
    assert.deepEqual(ups, { always: ['started', ''], again: ['started', ''] });
    assert.ok(Date.now() - started >= 2000, "startup waited for 'always''s 2 s delay");
    assert.equal(await state('always'), 'Running');
    assert.equal(await state('again'), 'Running');
    assert.equal(await state('manual'), 'Off');
    assert.equal(await state('idle'), 'Off');

    // The record is used up: a second startup starts only what is set to start (already running).
    const again = byName(
      (JSON.parse((await run(['host', 'startup', '--json'])).stdout) as { results: Record<string, unknown>[] }).results,
    );
    assert.deepEqual(again, { always: ['started', 'it was already Running'] });
    await manager.turnOff('always');
    await manager.turnOff('again');
  });
});
