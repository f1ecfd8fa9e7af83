// Saved state on the real KVM: Save and Start resume the guest where it was, a standard
// checkpoint of a running VM resumes at its moment when applied, a quick migration to a
// second data root keeps the guest running through it, the host's 'save' stop action, and a
// damaged state file refused with its code while the state is kept.
//
// The guest is the test guest's `echo` scenario: it echoes each byte and, on 0x04, prints
// `echo: done N bytes` with N the bytes it received before, a count kept in guest memory,
// so a count that spans a save, a checkpoint or a move shows that the guest's memory and
// devices came back as they were.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BerthError, STATE_FILES } from '../../../app/api';
import { CheckpointService, HostActions, MoveService, VmManager, type ConsoleSession } from '../../../app/services';
import { cliRunner } from '../../support/cli';
import { testGuestPath } from '../../support/guest';
import { TextSink, cleanBerthHome, makeBerthHome } from '../../support/berth-home';

describe('saved state (KVM)', () => {
  let root: string;
  let second: string;
  let manager: VmManager;
  let checkpoints: CheckpointService;
  let kernelPath: string;

  before(() => {
    root = makeBerthHome('sst');
    second = makeBerthHome('sst2');
    mkdirSync(join(second, 'vms'));
    manager = new VmManager({ root });
    checkpoints = new CheckpointService(manager);
    kernelPath = testGuestPath();
  });
  after(async () => {
    await cleanBerthHome(root);
    await cleanBerthHome(second);
  });
  const { run } = cliRunner(() => root);

  const newEchoVm = (name: string) =>
    manager.create({
      name,
      memory: { startupMiB: 32 },
      boot: { kind: 'pvh', kernelPath, cmdline: 'echo' },
      testExitPort: true,
    });

  async function attach(m: VmManager, name: string): Promise<{ sink: TextSink; session: ConsoleSession }> {
    const sink = new TextSink();
    const session = await m.attachConsole(name, { onData: sink.push, replay: false });
    return { sink, session };
  }

  // Starts the VM and waits until the echo scenario reads the console.
  async function startReady(name: string): Promise<void> {
    await manager.start(name);
    const sink = new TextSink();
    const session = await manager.attachConsole(name, { onData: sink.push, replay: true });
    await sink.waitFor('echo: ready');
    await session.detach();
  }

  // Types text and waits for the guest to echo it.
  async function type(m: VmManager, name: string, text: string): Promise<void> {
    const { sink, session } = await attach(m, name);
    await session.write(text);
    await sink.waitFor(text);
    await session.detach();
  }

  // Ends the echo scenario and returns the count the guest reports.
  async function finish(m: VmManager, name: string): Promise<number> {
    const { sink, session } = await attach(m, name);
    await session.write('\x04');
    await sink.waitFor(' bytes');
    await session.detach().catch(() => undefined);
    const match = /echo: done (\d+) bytes/.exec(sink.text);
    assert.ok(match, sink.text);
    return Number(match[1]);
  }

  it('saves a running VM and resumes it where it was', async () => {
    const vm = await newEchoVm('sv1');
    await startReady('sv1');
    await type(manager, 'sv1', 'abc');
    const saved = await manager.save('sv1');
    assert.equal(saved.state, 'Saved');
    assert.equal(saved.lastExit?.reason, 'saved');
    const state = saved.savedState;
    assert.ok(state && state.stateBytes > 0, JSON.stringify(saved));
    assert.ok(state.pauseMs !== undefined && state.totalMs !== undefined && state.pauseMs <= state.totalMs);
    assert.ok(state.memoryBytes !== undefined && state.memoryBytes > 0);
    const file = join(root, 'vms', vm.id, 'state', STATE_FILES.saved);
    assert.ok(existsSync(file));
    assert.equal((await manager.state('sv1')).workerPid, undefined, 'nothing runs while Saved');

    const started = await run(['vm', 'start', 'sv1']);
    assert.equal(started.code, 0, started.stderr);
    assert.equal(started.stdout, "'sv1' resumed from its saved state\n'sv1' is Running\n");
    assert.ok(!existsSync(file), 'the saved state is deleted once the VM runs');
    await type(manager, 'sv1', 'de');
    assert.equal(await finish(manager, 'sv1'), 5, 'the guest counted across the save');
  });

  it('takes a standard checkpoint of a running VM and resumes there when it is applied', async () => {
    await newEchoVm('sv2');
    await startReady('sv2');
    await type(manager, 'sv2', 'ab');
    const cp = await checkpoints.create('sv2', { name: 'live' });
    assert.equal(cp.holdsMemory, true);
    assert.ok(cp.stateBytes !== null && cp.stateBytes > 0);
    assert.equal(cp.type, 'standard');
    assert.equal((await manager.state('sv2')).state, 'Running', 'it runs on after the checkpoint');
    await type(manager, 'sv2', 'cdef');
    await checkpoints.apply('sv2', 'live');
    assert.equal((await manager.state('sv2')).state, 'Running', 'applied: resumed at the checkpoint');
    await type(manager, 'sv2', 'x');
    assert.equal(await finish(manager, 'sv2'), 3, "the checkpoint's 'ab' plus 'x'");
    const list = await checkpoints.list('sv2');
    assert.equal(list.checkpoints[0]?.holdsMemory, true, 'applying keeps the checkpoint and its memory');
  });

  it('moves a running VM to another data root, which resumes it', async () => {
    await newEchoVm('sv3');
    await startReady('sv3');
    await type(manager, 'sv3', 'mov');
    const r = await new MoveService(manager).move('sv3', second);
    assert.equal(r.stateThere, 'Running');
    assert.ok(r.downtimeMs !== null && r.downtimeMs > 0);
    await assert.rejects(manager.state('sv3'), /no VM named 'sv3'/);
    const there = new VmManager({ root: second });
    await type(there, 'sv3', 'e');
    assert.equal(await finish(there, 'sv3'), 4);
  });

  it("the host's 'save' stop action saves, and startup resumes the VM", async () => {
    await newEchoVm('sv4');
    await manager.set('sv4', { automaticStopAction: 'save', automaticStartAction: 'restart-if-running' });
    await startReady('sv4');
    await type(manager, 'sv4', 'hs');
    const down = await new HostActions(manager).shutdown();
    assert.deepEqual(
      down.filter((d) => d.name === 'sv4').map((d) => d.outcome),
      ['saved'],
    );
    assert.equal((await manager.state('sv4')).state, 'Saved');
    const up = await new HostActions(manager).startup();
    assert.deepEqual(
      up.filter((d) => d.name === 'sv4').map((d) => d.outcome),
      ['started'],
    );
    assert.equal(await finish(manager, 'sv4'), 2);
  });

  it('refuses a damaged state file with its code and keeps it', async () => {
    const vm = await newEchoVm('sv5');
    await startReady('sv5');
    await manager.save('sv5');
    const file = join(root, 'vms', vm.id, 'state', STATE_FILES.saved);
    truncateSync(file, Math.floor(readFileSync(file).length / 2));
    await assert.rejects(manager.start('sv5'), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.code, 'STATE_INVALID');
      assert.match(err.message, /its saved state was kept/);
      return true;
    });
    assert.equal((await manager.state('sv5')).state, 'Saved');
    await manager.deleteSavedState('sv5');
    assert.equal((await manager.state('sv5')).state, 'Off');
  });
});
