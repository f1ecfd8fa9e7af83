// The VMs' automatic start and stop actions from the command line, where no VM has to run:
// the settings and their refusals, `berth host startup` reporting a VM it could not start,
// and the systemd user unit of `berth host install-autostart` (judged by systemd-analyze).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { cleanBerthHome, cliPath, makeBerthHome } from '../../support/berth-home';
import { cliRunner } from '../../support/cli';

describe('automatic start and stop actions (no VM running)', () => {
  let home: string;
  let xdg: string;
  let kernel: string;
  before(() => {
    home = makeBerthHome('hostact');
    xdg = mkdtempSync(join(tmpdir(), 'berth-xdg-'));
    kernel = join(xdg, 'vmlinux');
    writeFileSync(kernel, 'not started in this spec');
  });
  after(async () => {
    await cleanBerthHome(home);
    rmSync(xdg, { recursive: true, force: true });
  });
  const { run, ok, refused } = cliRunner(() => home);

  it('sets the actions and the start delay, save among the stop actions', async () => {
    await ok('vm', 'new', '--name', 'a1', '--kernel', kernel);
    const set = await ok(
      'vm',
      'set',
      'a1',
      '--automatic-start-action',
      'start',
      '--automatic-start-delay',
      '5',
      '--automatic-stop-action',
      'shut-down',
    );
    const config = set['config'] as Record<string, unknown>;
    assert.deepEqual(
      [config['automaticStartAction'], config['automaticStartDelaySeconds'], config['automaticStopAction']],
      ['start', 5, 'shut-down'],
    );
    assert.match((await run(['vm', 'show', 'a1'])).stdout, /Automatic start:\s+start \(after 5 s\)\n/);
    // 'save': the host's shutdown saves the VM (its memory and device state).
    const saved = await ok('vm', 'set', 'a1', '--automatic-stop-action', 'save');
    assert.equal((saved['config'] as Record<string, unknown>)['automaticStopAction'], 'save');
    assert.match(await refused('vm', 'set', 'a1', '--automatic-start-delay', '3601'), /automaticStartDelaySeconds/);
    // A configuration written by hand with 'save' reads the same.
    const path = join(home, 'vms', config['id'] as string, 'config.json');
    const stored = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...stored, automaticStopAction: 'save' }));
    const shown = await ok('vm', 'show', 'a1');
    assert.equal((shown['config'] as Record<string, unknown>)['automaticStopAction'], 'save');
  });

  it('startup reports a VM it could not start, and exits 1; shutdown with nothing running does nothing', async () => {
    rmSync(kernel); // a1 cannot start: its kernel is gone
    const r = await run(['host', 'startup', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const { results } = JSON.parse(r.stdout) as { results: Record<string, unknown>[] };
    assert.equal(results.length, 1);
    assert.deepEqual(
      [results[0]?.['name'], results[0]?.['action'], results[0]?.['outcome']],
      ['a1', 'start', 'failed'],
    );
    assert.equal(results[0]?.['message'], `cannot start 'a1': kernel ${kernel} does not exist`);
    const down = await run(['host', 'shutdown']);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout, 'no VM is running\n');
    const bad = await run(['host', 'shutdown', '--timeout', '0']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--timeout takes 1 to 3600 seconds, not 0/);
  });

  it('install-autostart writes a user unit systemd accepts, says how to enable it without a user bus, and remove-autostart removes it', async () => {
    const env = { XDG_CONFIG_HOME: xdg };
    const unit = join(xdg, 'systemd', 'user', 'berth-autostart.service');
    const r = await run(['host', 'install-autostart'], env);
    const text = readFileSync(unit, 'utf8');
    assert.match(text, new RegExp(`^Environment="BERTH_HOME=${home}"$`, 'm'));
    assert.match(text, new RegExp(`^ExecStart="${process.execPath}" "${cliPath}" "host" "startup"$`, 'm'));
    assert.match(text, new RegExp(`^ExecStop="${process.execPath}" "${cliPath}" "host" "shutdown"$`, 'm'));
    assert.match(text, /^WantedBy=default\.target$/m);
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    assert.equal(verify.error, undefined, 'systemd-analyze is part of systemd (apt-get install systemd)');
    assert.equal(verify.stderr, '', `systemd-analyze found problems in the unit:\n${text}`);
    // This machine has no systemd user instance: the unit is kept and the message says what to run.
    const bus = spawnSync('systemctl', ['--user', 'is-system-running'], { encoding: 'utf8' });
    if (bus.status === 0 || /running|degraded/.test(bus.stdout)) {
      assert.equal(r.code, 0, r.stderr);
    } else {
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /systemctl --user daemon-reload failed: .*The unit is written \(.*berth-autostart\.service\); enable it from a login session with: systemctl --user daemon-reload && systemctl --user enable berth-autostart\.service/,
      );
    }
    const removed = await run(['host', 'remove-autostart'], env);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, 'removed the autostart unit\n');
    assert.equal(existsSync(unit), false);
    assert.equal((await run(['host', 'remove-autostart'], env)).stdout, 'there was no autostart unit\n');
  });
});
