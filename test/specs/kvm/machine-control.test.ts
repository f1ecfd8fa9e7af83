// Pause, resume, stop and reset from the host, on the real KVM.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';

import { Machine, NativeError, type MachineEvent } from '../../../app/native';
import { testGuestPath } from '../../support/guest';
import { ConsoleWatcher } from '../../support/run-guest';

async function busyMachine(vcpus = 1): Promise<{ machine: Machine; events: MachineEvent[]; console: ConsoleWatcher }> {
  // ioloop with a huge count keeps the vCPU exiting until the host stops it.
  const machine = await Machine.create({
    memoryMiB: 32,
    vcpus,
    kernelPath: testGuestPath(),
    cmdline: 'ioloop 4000000000',
    testExitPort: true,
  });
  const events: MachineEvent[] = [];
  const console = new ConsoleWatcher();
  machine.on((e) => {
    events.push(e);
    if (e.type === 'console') console.push(e.data);
  });
  return { machine, events, console };
}

function ioExits(machine: Machine): number {
  return machine.stats().vcpus.reduce((sum, v) => sum + v.exits.io, 0);
}

describe('machine control on the real KVM', () => {
  it('pause really stops the vCPU and resume continues it', async () => {
    const { machine, events } = await busyMachine();
    await machine.start();
    await sleep(200);
    assert.ok(ioExits(machine) > 0, 'the guest should be running its I/O loop');
    await machine.pause();
    assert.equal(machine.state, 'paused');
    const atPause = ioExits(machine);
    await sleep(300);
    assert.equal(ioExits(machine), atPause, 'no vCPU may run while paused');
    await machine.resume();
    assert.equal(machine.state, 'running');
    await sleep(200);
    assert.ok(ioExits(machine) > atPause, 'the guest should run again after resume');
    await machine.stop();
    const exit = await machine.waitForExit();
    assert.equal(exit.reason, 'stopped');
    const states = events.filter((e) => e.type === 'state').map((e) => (e.type === 'state' ? e.state : ''));
    assert.deepEqual(states, ['running', 'paused', 'running', 'stopped']);
  });

  it('pause stops a vCPU halted in the kernel (echo waits in hlt) and the guest still works after', async () => {
    const machine = await Machine.create({
      memoryMiB: 32,
      vcpus: 1,
      kernelPath: testGuestPath(),
      cmdline: 'echo',
      testExitPort: true,
    });
    const console = new ConsoleWatcher();
    machine.on((e) => {
      if (e.type === 'console') console.push(e.data);
    });
    await machine.start();
    await console.waitFor('echo: ready\n');
    await machine.pause();
    machine.writeConsole('ab');
    await sleep(200);
    assert.equal(console.text, 'echo: ready\n', 'a paused guest must not echo');
    await machine.resume();
    await console.waitFor('ab');
    machine.writeConsole('\x04');
    const exit = await machine.waitForExit();
    assert.equal(exit.code, 0);
    assert.equal(console.text, 'echo: ready\nab\necho: done 2 bytes\n');
  });

  it('pausing and stopping work with several vCPUs', async () => {
    const { machine } = await busyMachine(2);
    await machine.start();
    await sleep(100);
    await machine.pause();
    const stats = machine.stats();
    assert.equal(stats.vcpus.length, 2);
    await machine.stop();
    assert.equal((await machine.waitForExit()).reason, 'stopped');
    assert.equal(machine.state, 'stopped');
  });

  it('a host reset reboots the guest in place', async () => {
    const machine = await Machine.create({
      memoryMiB: 32,
      vcpus: 1,
      kernelPath: testGuestPath(),
      cmdline: 'echo',
      testExitPort: true,
    });
    const console = new ConsoleWatcher();
    const resets: string[] = [];
    machine.on((e) => {
      if (e.type === 'console') console.push(e.data);
      if (e.type === 'reset') resets.push(e.reason);
    });
    await machine.start();
    await console.waitFor('echo: ready\n');
    await machine.reset();
    await console.waitFor('echo: ready\necho: ready\n');
    assert.deepEqual(resets, ['host']);
    assert.equal(machine.stats().resets, 1);
    machine.writeConsole('\x04');
    assert.equal((await machine.waitForExit()).code, 0);
  });

  it('refuses operations the state does not allow, with VM_STATE', async () => {
    const { machine } = await busyMachine();
    await assert.rejects(machine.pause(), (err: unknown) => {
      assert.ok(err instanceof NativeError);
      assert.equal(err.code, 'VM_STATE');
      assert.match(err.message, /cannot pause: it is created/);
      return true;
    });
    await machine.start();
    await assert.rejects(machine.start(), /cannot start: it is running/);
    await machine.stop();
    await assert.rejects(machine.resume(), /cannot resume: it is stopped/);
    await assert.rejects(machine.reset(), /cannot reset: it is stopped/);
  });
});
