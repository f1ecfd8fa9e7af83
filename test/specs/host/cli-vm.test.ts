// The berth command line as a user types it (`node dist/app/cli/main.js ...`), where no VM
// has to run: creating, listing and showing a VM, usage errors and refusals, with and
// without --json. Starting, the console and turning off are in ../kvm/cli-vm.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { testGuestPath } from '../../support/guest';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, newEchoVmArgs, type Json } from '../../support/cli';

describe('berth vm (command line), no VM running', () => {
  let home: string;
  let kernel: string;

  before(() => {
    home = makeBerthHome('cli');
    kernel = testGuestPath();
  });
  after(() => cleanBerthHome(home));

  const { run } = cliRunner(() => home);
  const berth = (...args: string[]) => run(args);
  const json = async (...args: string[]): Promise<{ code: number | null; body: Json }> => {
    const r = await run([...args, '--json']);
    assert.equal(r.stderr, '', 'nothing on stderr with --json');
    return { code: r.code, body: JSON.parse(r.stdout) as Json };
  };

  it('creates, lists and shows a VM', async () => {
    assert.match((await berth('vm', 'list')).stdout, /^no VMs yet/);
    const created = await berth(...newEchoVmArgs('cli1', kernel));
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^created 'cli1' \([0-9a-f-]{36}\)\n/);
    assert.match(created.stdout, /\n {2}generation: none \(boots a kernel file directly\)\n/);
    const list = await berth('vm', 'list');
    assert.equal(list.code, 0);
    assert.match(list.stdout, /^NAME\s+STATE\s+CPU\s+MEMORY\s+UPTIME\s+ID\n/);
    assert.match(list.stdout, /\ncli1\s+Off\s+32 MiB\s+[0-9a-f-]{36}\n/);
    const listed = await json('vm', 'list');
    assert.equal(listed.code, 0);
    const vms = listed.body['vms'] as { name: string; state: string; memoryMiB: number }[];
    assert.deepEqual(
      vms.map((v) => [v.name, v.state, v.memoryMiB]),
      [['cli1', 'Off', 32]],
    );
    const show = await json('vm', 'show', 'cli1');
    assert.equal((show.body['config'] as { boot: { cmdline: string } }).boot.cmdline, 'echo');
    const text = await berth('vm', 'show', 'cli1');
    assert.match(text.stdout, /Memory:\s+32 MiB/);
    assert.match(text.stdout, /Test-exit port:\s+on/);
  });

  it('usage errors exit 2 and say what to do; refusals exit 1 with {error:{code,message}}', async () => {
    const noName = await berth('vm', 'new', '--kernel', kernel);
    assert.equal(noName.code, 2);
    assert.match(noName.stderr, /^berth: --name is required\nusage: berth vm new/);
    const unknownFlag = await json('vm', 'list', '--colour');
    assert.equal(unknownFlag.code, 2);
    assert.equal((unknownFlag.body['error'] as { code: string }).code, 'USAGE');
    assert.match((unknownFlag.body['error'] as { message: string }).message, /--colour/);
    assert.equal((await berth('vm', 'frobnicate')).code, 2);
    assert.equal((await berth('vm', 'start')).code, 2);
    assert.equal((await berth('vm', 'new', '--name', 'x', '--kernel', kernel, '--memory', 'lots')).code, 2);

    const badTimeout = await berth('vm', 'stop', 'cli1', '--timeout', '0');
    assert.equal(badTimeout.code, 2);
    assert.match(badTimeout.stderr, /^berth: --timeout takes 1 to 3600 seconds, not 0\n/);

    const tiny = await json('vm', 'new', '--name', 'tiny', '--kernel', kernel, '--memory', '1');
    assert.equal(tiny.code, 1);
    assert.deepEqual(tiny.body, {
      error: { code: 'INVALID_CONFIG', message: 'memory.startupMiB: must be at least 2' },
    });
    const paused = await json('vm', 'pause', 'cli1');
    assert.equal(paused.code, 1);
    assert.deepEqual(paused.body, {
      error: { code: 'INVALID_STATE', message: "cannot pause 'cli1': it is Off; start it first" },
    });
    const missing = await berth('vm', 'start', 'nope');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^berth: no VM named 'nope'; 'berth vm list' shows the VMs\n$/);
  });
});
