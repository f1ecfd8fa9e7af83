// VMs run by detached workers through the services, on the real KVM: the console and its
// scrollback, the control socket, a worker outliving its manager, a killed worker, stop.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { BerthError, protocol, RUN_FILES, type VmSummary } from '../../../app/api';
import { VmManager, type ConsoleSession } from '../../../app/services';
import { cliRunner } from '../../support/cli';
import { testGuestPath } from '../../support/guest';
import { freePort } from '../../support/ports';
import { talk } from '../../support/tcp';
import { TextSink, cleanBerthHome, makeBerthHome, supportDir, waitUntil } from '../../support/berth-home';

const run = promisify(execFile);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Sends raw lines to a control socket and collects the answers.
async function rawExchange(socketPath: string, lines: string[], expected: number): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buffer = '';
    const out: unknown[] = [];
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(lines.map((l) => `${l}\n`).join('')));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buffer.slice(0, nl)));
        buffer = buffer.slice(nl + 1);
      }
      if (out.length >= expected) {
        socket.destroy();
        resolve(out);
      }
    });
    socket.on('error', reject);
    setTimeout(() => reject(new Error(`only ${out.length} answers: ${JSON.stringify(out)}`)), 5000).unref();
  });
}

describe('VMs in detached workers', () => {
  let root: string;
  let manager: VmManager;
  let kernelPath: string;

  before(() => {
    root = makeBerthHome('wrk');
    manager = new VmManager({ root });
    kernelPath = testGuestPath();
  });
  after(() => cleanBerthHome(root));

  const newVm = (name: string, cmdline = 'echo', kernel = kernelPath) =>
    manager.create({
      name,
      memory: { startupMiB: 32 },
      boot: { kind: 'pvh', kernelPath: kernel, cmdline },
      testExitPort: true,
    });

  async function attach(name: string, replay = true): Promise<{ sink: TextSink; session: ConsoleSession }> {
    const sink = new TextSink();
    const session = await manager.attachConsole(name, { onData: sink.push, replay });
    return { sink, session };
  }

  it('runs the echo guest in a worker: console, typing, scrollback replayed to a second attach', async () => {
    const vm = await newVm('echo1');
    const started = await manager.start('echo1');
    assert.equal(started.state, 'Running');
    assert.ok(started.workerPid && started.workerPid !== process.pid && pidAlive(started.workerPid));
    const pidFile = JSON.parse(readFileSync(join(vm.folder, 'run', RUN_FILES.pid), 'utf8')) as { pid: number };
    assert.equal(pidFile.pid, started.workerPid);

    const first = await attach('echo1');
    await first.sink.waitFor('echo: ready\n');
    await first.session.write('hello, guest');
    await first.sink.waitFor('hello, guest');
    await first.session.detach();

    const second = await attach('echo1');
    assert.ok(second.session.replayedBytes >= 'echo: ready\nhello, guest'.length);
    await second.sink.waitFor('echo: ready\nhello, guest');
    await second.session.write('!');
    await second.sink.waitFor('hello, guest!');
    await second.session.detach();

    const quiet = await attach('echo1', false);
    await quiet.session.write('?');
    await quiet.sink.waitFor('?');
    assert.equal(quiet.sink.text, '?', 'without replay only new output arrives');
    await quiet.session.detach();
  });

  it('serves the control socket with mode 0600 in a 0700 run folder, and speaks only after hello', async () => {
    const vm = await manager.show('echo1');
    const socketPath = join(vm.folder, 'run', RUN_FILES.socket);
    const st = statSync(socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(statSync(join(vm.folder, 'run')).mode & 0o777, 0o700);

    const [early] = (await rawExchange(socketPath, ['{"id":1,"op":"state"}'], 1)) as {
      ok: boolean;
      error: { code: string; message: string };
    }[];
    assert.equal(early?.ok, false);
    assert.equal(early?.error.code, 'PROTOCOL');
    assert.match(early?.error.message ?? '', /first request must be 'hello'/);

    const [wrong] = (await rawExchange(socketPath, ['{"id":1,"op":"hello","protocol":99,"client":"t"}'], 1)) as {
      error: { code: string; message: string };
    }[];
    assert.equal(wrong?.error.code, 'UNSUPPORTED_VERSION');

    const answers = (await rawExchange(
      socketPath,
      [
        `{"id":1,"op":"hello","protocol":${protocol.PROTOCOL_VERSION},"client":"t"}`,
        '{"id":2,"op":"pause","now":true}',
        '{"id":3,"op":"state"}',
      ],
      3,
    )) as { id: number; ok: boolean; result?: { state?: string; vmId?: string }; error?: { message: string } }[];
    assert.equal(answers[0]?.result?.vmId, vm.id);
    assert.equal(answers[1]?.ok, false);
    assert.match(answers[1]?.error?.message ?? '', /unknown field 'now'/);
    assert.equal(answers[2]?.result?.state, 'Running');
  });

  it('reports stats: CPU usage, memory, uptime, vCPUs', async () => {
    await sleep(1100);
    const stats = await manager.stats('echo1');
    assert.equal(stats.vcpuCount, 1);
    assert.equal(stats.assignedMemoryMiB, 32);
    assert.ok(stats.uptimeMs > 1000);
    assert.ok(stats.cpuUsagePercent >= 0 && stats.cpuUsagePercent <= 100);
    assert.equal(stats.vcpus.length, 1);
    assert.deepEqual(stats.disks, [], 'a VM without disks reports none');
    const listed = (await manager.list()).find((v) => v.name === 'echo1');
    assert.equal(listed?.stats?.vcpuCount, 1);
  });

  it('pauses and resumes, refusing what the lifecycle does not allow', async () => {
    await assert.rejects(
      manager.start('echo1'),
      (e: BerthError) =>
        e.code === 'INVALID_STATE' && e.message === "cannot start 'echo1': it is Running; it is already running",
    );
    await assert.rejects(manager.resume('echo1'), /cannot resume 'echo1': it is Running/);
    assert.equal((await manager.pause('echo1')).state, 'Paused');
    await assert.rejects(manager.pause('echo1'), /cannot pause 'echo1': it is Paused/);
    const c = await attach('echo1', false);
    await c.session.write('p');
    await sleep(200);
    assert.equal(c.sink.text, '', 'a paused guest does not echo');
    assert.equal((await manager.resume('echo1')).state, 'Running');
    await c.sink.waitFor('p');
    await c.session.detach();
    // Saving is saved-state.test.ts's; a running VM has no saved state to delete.
    await assert.rejects(
      manager.deleteSavedState('echo1'),
      (e: BerthError) => e.code === 'INVALID_STATE' && /it has no saved state \(save it first\)$/.test(e.message),
    );
    // The echo guest ignores the power button: Shut Down gives up after its timeout, says so,
    // and the VM runs on.
    await assert.rejects(
      manager.shutDown('echo1', 1500),
      (e: BerthError) =>
        e.code === 'SHUTDOWN_TIMEOUT' &&
        /^'echo1' did not shut down within 2 s: its guest did not act on the power button .* it is still running\. Turn it off instead/.test(
          e.message,
        ),
    );
    assert.equal((await manager.show('echo1')).state, 'Running');
    await assert.rejects(manager.remove('echo1'), /cannot remove 'echo1': it is Running; turn it off first/);
    await assert.rejects(
      manager.set('echo1', { memoryMiB: 64 }),
      /cannot change the memory of 'echo1' while it is Running/,
    );
    assert.equal(
      (await manager.set('echo1', { notes: 'notes change any time' })).config.notes,
      'notes change any time',
    );
  });

  it('the worker outlives the manager that started it; another manager finds it through the socket', async () => {
    await newVm('survivor');
    const { stdout } = await run(process.execPath, [join(supportDir, 'manager-child.js'), root, 'survivor']);
    const started = JSON.parse(stdout) as VmSummary;
    assert.equal(started.state, 'Running');
    // The child has exited; a fresh manager (another "process" as far as state goes) looks.
    const fresh = new VmManager({ root });
    const seen = await fresh.state('survivor');
    assert.equal(seen.state, 'Running');
    assert.equal(seen.workerPid, started.workerPid);
    const sink = new TextSink();
    const session = await fresh.attachConsole('survivor', { onData: sink.push });
    await sink.waitFor('echo: ready');
    await session.write('still here');
    await sink.waitFor('still here');
    await session.detach();
  });

  it('two managers starting the same VM at once: one starts it, the other is refused', async () => {
    await newVm('contested');
    const child = join(supportDir, 'manager-child.js');
    const attempt = () =>
      run(process.execPath, [child, root, 'contested']).then(
        () => 'started',
        (err: { stderr?: string }) => err.stderr ?? '',
      );
    const results = await Promise.all([attempt(), attempt()]);
    assert.equal(results.filter((r) => r === 'started').length, 1, JSON.stringify(results));
    assert.match(results.find((r) => r !== 'started') ?? '', /cannot start 'contested': it is Running/);
    assert.equal((await manager.turnOff('contested')).state, 'Off');
  });

  it('a worker killed with SIGKILL leaves its VM Failed with the reason; the other VM runs on', async () => {
    const victim = await manager.state('survivor');
    assert.ok(victim.workerPid);
    process.kill(victim.workerPid, 'SIGKILL');
    await waitUntil('the worker to die', () => !pidAlive(victim.workerPid ?? 0));
    const failed = await manager.state('survivor');
    assert.equal(failed.state, 'Failed');
    assert.equal(failed.stateReason, `worker process ${victim.workerPid} died (signal SIGKILL)`);
    const folder = (await manager.show('survivor')).folder;
    assert.ok(!existsSync(join(folder, 'run', RUN_FILES.socket)), 'the stale socket is removed');
    assert.ok(!existsSync(join(folder, 'run', RUN_FILES.pid)), 'the stale pid file is removed');
    // Still Failed on the next look, from another manager.
    assert.equal((await new VmManager({ root }).state('survivor')).stateReason, failed.stateReason);

    const other = await manager.state('echo1');
    assert.equal(other.state, 'Running');
    const c = await attach('echo1', false);
    await c.session.write('unaffected');
    await c.sink.waitFor('unaffected');
    await c.session.detach();

    // Start again from Failed; or clear it with turn-off.
    assert.equal((await manager.start('survivor')).state, 'Running');
    assert.equal((await manager.turnOff('survivor')).state, 'Off');
  });

  it('stop turns the VM off: the worker ends and records the exit', async () => {
    const before = await manager.state('echo1');
    const off = await manager.turnOff('echo1');
    assert.equal(off.state, 'Off');
    assert.equal(off.lastExit?.reason, 'stopped');
    assert.ok(!pidAlive(before.workerPid ?? 0));
    await assert.rejects(
      manager.pause('echo1'),
      (e: BerthError) => e.message === "cannot pause 'echo1': it is Off; start it first",
    );
    await assert.rejects(manager.stats('echo1'), /statistics exist only while it runs/);
    await assert.rejects(
      manager.attachConsole('echo1', { onData: () => undefined }),
      /cannot attach to the console of 'echo1': it is Off/,
    );
  });

  it('records how the guest ended (test-exit port) and a console sees the end', async () => {
    await newVm('exiter', 'echo');
    await manager.start('exiter');
    const sink = new TextSink();
    let ended: { exit?: { reason: string; code: number } } | undefined;
    const session = await manager.attachConsole('exiter', { onData: sink.push, onEnd: (info) => (ended = info) });
    await sink.waitFor('echo: ready');
    await session.write('ab\x04');
    await sink.waitFor('echo: done 2 bytes');
    await waitUntil('the console to end', () => ended !== undefined);
    assert.equal(ended?.exit?.reason, 'guest-exit');
    const off = await manager.state('exiter');
    assert.equal(off.state, 'Off');
    assert.equal(off.lastExit?.code, 0);
    assert.match(off.stateReason ?? '', /the guest exited with code 0/);

    await manager.set('exiter', { cmdline: 'exit 7' });
    await manager.start('exiter').catch(() => undefined); // it may end before the start is confirmed
    await waitUntil('exit 7', async () => (await manager.state('exiter')).lastExit?.code === 7);
  });

  it('a NAT adapter reaches the running VM: the guest driver finds the card and gets a DHCP lease', async () => {
    const mac = '52:54:00:ab:cd:ef';
    await manager.create({
      name: 'netted',
      memory: { startupMiB: 32 },
      boot: { kind: 'pvh', kernelPath, cmdline: 'virtio-net dhcp' },
      network: [{ kind: 'nat', mac }],
      testExitPort: true,
    });
    await manager.start('netted').catch(() => undefined); // it may end before the start is confirmed
    await waitUntil('the guest to end', async () => (await manager.state('netted')).state === 'Off', 40_000);
    const off = await manager.state('netted');
    const log = readFileSync(join((await manager.show('netted')).folder, 'run', RUN_FILES.log), 'utf8');
    assert.deepEqual([off.lastExit?.reason, off.lastExit?.code], ['guest-exit', 0], log.slice(-800));
  });

  it('a VM made from the command line with a NAT port forward answers over TCP through it', async () => {
    const { ok } = cliRunner(() => root);
    const hostPort = await freePort();
    await ok(
      'vm',
      'new',
      '--name',
      'served',
      '--kernel',
      kernelPath,
      '--memory',
      '32',
      '--test-exit-port',
      '--cmdline',
      'virtio-net echo-server 7777',
      '--nic',
      `nat,forward=tcp:127.0.0.1:${hostPort}:7777`,
    );
    await ok('vm', 'start', 'served');
    const { sink, session } = await attach('served');
    await sink.waitFor('virtio-net: listening on 10.0.2.15:7777\n', 40_000);
    assert.equal(await talk(hostPort, ['hello ', 'berth\n'], 12), 'HELLO BERTH\n');
    await sink.waitFor('connection closed after 12 bytes');
    await session.detach().catch(() => undefined); // the guest ends after the connection
    await waitUntil('the guest to end', async () => (await manager.state('served')).state === 'Off', 40_000);
    assert.deepEqual(
      [(await manager.state('served')).lastExit?.reason, (await manager.state('served')).lastExit?.code],
      ['guest-exit', 0],
    );
  });

  it('a VM that cannot start reports why, and stays Off', async () => {
    const copy = join(root, 'doomed.elf');
    copyFileSync(kernelPath, copy);
    await newVm('doomed', 'echo', copy);
    rmSync(copy);
    await assert.rejects(
      manager.start('doomed'),
      (e: BerthError) =>
        e.code === 'START_FAILED' && /cannot start 'doomed': kernel .*doomed\.elf does not exist/.test(e.message),
    );
    assert.equal((await manager.state('doomed')).state, 'Off');
  });
});
