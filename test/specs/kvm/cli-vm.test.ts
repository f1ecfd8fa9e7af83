// The berth command line end to end with a running VM, as a user types it:
// `node dist/app/cli/main.js ...` with and without --json, exit codes, and the console with
// Ctrl-] to detach. What needs no running VM (creating, listing, usage errors) is in
// ../host/cli-vm.test.ts: each command's start-up takes seconds in the KVM lab.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import { newEchoVmArgs } from '../../support/cli';
import { testGuestPath } from '../../support/guest';
import { TextSink, cleanBerthHome, cliPath, makeBerthHome } from '../../support/berth-home';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

describe('berth vm (command line)', () => {
  let home: string;
  let kernel: string;

  before(() => {
    home = makeBerthHome('cli');
    kernel = testGuestPath();
  });
  after(() => cleanBerthHome(home));

  const berth = (...args: string[]): Promise<Ran> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [cliPath, ...args],
        { env: { ...process.env, BERTH_HOME: home } },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  const json = async (...args: string[]): Promise<{ code: number; body: Record<string, unknown> }> => {
    const r = await berth(...args, '--json');
    assert.equal(r.stderr, '', 'nothing on stderr with --json');
    return { code: r.code, body: JSON.parse(r.stdout) as Record<string, unknown> };
  };

  it('creates a VM to run', async () => {
    const created = await berth(...newEchoVmArgs('cli1', kernel));
    assert.equal(created.code, 0, created.stderr);
  });

  it('starts, pauses, resumes and turns off, with --json and without', async () => {
    const started = await json('vm', 'start', 'cli1');
    assert.equal(started.code, 0);
    assert.equal(started.body['state'], 'Running');
    const again = await berth('vm', 'start', 'cli1');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /cannot start 'cli1': it is Running/);
    assert.equal((await berth('vm', 'pause', 'cli1')).stdout, "'cli1' is Paused\n");
    assert.equal((await json('vm', 'resume', 'cli1')).body['state'], 'Running');
    // The echo guest does not handle the ACPI power button: stop says so and leaves it running.
    const stop = await json('vm', 'stop', 'cli1', '--timeout', '2');
    assert.equal(stop.code, 1);
    assert.deepEqual(stop.body['error'], {
      code: 'SHUTDOWN_TIMEOUT',
      message:
        "'cli1' did not shut down within 2 s: its guest did not act on the power button (it may not handle " +
        'ACPI, or be busy or still starting); it is still running. Turn it off instead (berth vm turn-off cli1), ' +
        'or try again later',
    });
    // A running VM has no saved state to delete (saved-state.test.ts saves and resumes).
    const noState = await berth('vm', 'delete-saved-state', 'cli1');
    assert.equal(noState.code, 1);
    assert.equal(
      noState.stderr,
      "berth: cannot delete the saved state of 'cli1': it is Running; it has no saved state (save it first)\n",
    );
    const listed = await berth('vm', 'list');
    assert.match(listed.stdout, /\ncli1\s+Running\s+[\d.]+%\s+32 MiB\s+\d\d:\d\d:\d\d/);
  });

  it('console: guest output to stdout, typing to the guest, Ctrl-] detaches and the VM keeps running', async () => {
    const child = spawn(process.execPath, [cliPath, 'vm', 'console', 'cli1'], {
      env: { ...process.env, BERTH_HOME: home },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out = new TextSink();
    const err = new TextSink();
    child.stdout.on('data', out.push);
    child.stderr.on('data', err.push);
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // The CLI's own start-up: seconds in the lab, more while CI loads the host.
    await err.waitFor("connected to 'cli1'; Ctrl-] detaches", 60_000);
    await out.waitFor('echo: ready\n'); // the scrollback
    child.stdin.write('typed by a user');
    await out.waitFor('typed by a user');
    child.stdin.write('\x1d');
    assert.equal(await exited, 0);
    assert.match(err.text, /detached from 'cli1'; it keeps running/);
    assert.equal((await json('vm', 'show', 'cli1')).body['state'], 'Running');

    // --json: console output as base64 events.
    const j = spawn(process.execPath, [cliPath, 'vm', 'console', 'cli1', '--json'], {
      env: { ...process.env, BERTH_HOME: home },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const jout = new TextSink();
    j.stdout.on('data', jout.push);
    const jexit = new Promise<number | null>((resolve) => j.on('close', (code) => resolve(code)));
    await jout.waitFor('\n', 60_000);
    j.stdin.end('\x1d');
    assert.equal(await jexit, 0);
    const first = JSON.parse(jout.text.split('\n')[0] ?? '') as { event: string; data: string };
    assert.equal(first.event, 'console');
    assert.match(Buffer.from(first.data, 'base64').toString(), /^echo: ready\ntyped by a user/);
  });

  it('renames, refuses to remove a running VM, turns off and removes', async () => {
    assert.equal((await berth('vm', 'rename', 'cli1', 'cli2')).stdout, "renamed to 'cli2'\n");
    const busy = await berth('vm', 'remove', 'cli2');
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /cannot remove 'cli2': it is Running; turn it off first/);
    const set = await berth('vm', 'set', 'cli2', '--cpus', '2');
    assert.equal(set.code, 1);
    assert.match(set.stderr, /cannot change the processor count of 'cli2' while it is Running; turn it off first/);
    const off = await json('vm', 'turn-off', 'cli2');
    assert.equal(off.code, 0);
    assert.equal(off.body['state'], 'Off');
    const removed = await json('vm', 'remove', 'cli2');
    assert.equal(removed.code, 0);
    assert.equal((removed.body['removed'] as { name: string }).name, 'cli2');
  });
});
