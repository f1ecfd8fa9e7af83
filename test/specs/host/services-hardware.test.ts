// VM hardware through the `berth` command line, as the window changes it: disks and network
// adapters on `vm new` and `vm set` (refusals that say what was wrong), a VM whose disk
// cannot be made leaves nothing behind, production checkpoints' fallback setting, and
// `berth export --checkpoint`. No VM runs here.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { MAX_VIRTIO_DEVICES } from '../../../app/api';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { cliRunner, type Json } from '../../support/cli';
import { testGuestPath } from '../../support/guest';

describe('VM hardware from the command line', () => {
  let home: string;
  before(() => {
    home = makeBerthHome('hw');
  });
  after(() => cleanBerthHome(home));

  const { run, ok, refused } = cliRunner(() => home);
  const vmNew = (name: string, ...more: string[]): Promise<Json> =>
    ok('vm', 'new', '--name', name, '--kernel', testGuestPath(), '--memory', '32', ...more);
  const network = (vm: Json): { kind: string; mac: string; bridge?: string }[] =>
    (vm['config'] as { network: { kind: string; mac: string; bridge?: string }[] }).network;

  it('creates a VM with a new disk and network adapters, and changes them', async () => {
    const vm = await vmNew(
      'nics',
      '--disk',
      'new:8M:vhdx',
      '--nic',
      'nat',
      '--nic',
      'bridge:br0,mac=02:00:00:aa:bb:cc',
    );
    const folder = vm['folder'] as string;
    assert.deepEqual((vm['config'] as { disks: unknown[] }).disks, [
      { slot: 0, kind: 'virtual', path: join(folder, 'disks', 'disk0.vhdx'), readOnly: false },
    ]);
    assert.deepEqual(
      network(vm).map((n) => [n.kind, n.bridge]),
      [
        ['nat', undefined],
        ['bridge', 'br0'],
      ],
    );
    assert.equal(network(vm)[1]?.mac, '02:00:00:aa:bb:cc');
    const shown = await run(['vm', 'show', 'nics']);
    assert.match(shown.stdout, /Network:\s+nat [0-9a-f:]{17}, bridge br0 02:00:00:aa:bb:cc/);

    const changed = await ok('vm', 'set', 'nics', '--remove-nic', '02:00:00:AA:BB:CC', '--add-nic', 'nat');
    assert.deepEqual(
      network(changed).map((n) => n.kind),
      ['nat', 'nat'],
    );
    assert.notEqual(network(changed)[0]?.mac, network(changed)[1]?.mac, 'each adapter gets its own MAC');
    const first = await ok('vm', 'set', 'nics', '--remove-nic', '0');
    assert.equal(network(first).length, 1);

    assert.match(
      await refused('vm', 'set', 'nics', '--remove-nic', '5'),
      /'nics' has no network adapter 5; give its MAC or its number \(0 to 0\)/,
    );
    const multicast = await run(['vm', 'set', 'nics', '--add-nic', 'bridge:br0,mac=03:00:00:00:00:01', '--json']);
    assert.equal(multicast.code, 2);
    assert.match(multicast.stdout, /mac: must be a unicast address \(first byte even\)/);
    const usage = await run(['vm', 'set', 'nics', '--add-nic', 'wifi', '--json']);
    assert.equal(usage.code, 2);
    assert.match(usage.stdout, /--add-nic takes nat or bridge:NAME/);

    // NAT port forwards and restricted mode, as the worker will get them.
    const forwarded = await ok(
      'vm',
      'set',
      'nics',
      '--add-nic',
      'nat,restricted,forward=2222:22,forward=udp:127.0.0.2:5353:53',
    );
    assert.deepEqual((network(forwarded).at(-1) as { restricted?: boolean; portForwards?: unknown[] }).portForwards, [
      { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 2222, guestPort: 22 },
      { protocol: 'udp', hostAddress: '127.0.0.2', hostPort: 5353, guestPort: 53 },
    ]);
    assert.equal((network(forwarded).at(-1) as { restricted?: boolean }).restricted, true);
    const twice = await run(['vm', 'set', 'nics', '--add-nic', 'nat,forward=80:8080,forward=80:8081', '--json']);
    assert.equal(twice.code, 2);
    assert.match(twice.stdout, /tcp 127\.0\.0\.1:80 is forwarded twice/);
    const bridged = await run(['vm', 'set', 'nics', '--add-nic', 'bridge:br0,forward=80:80', '--json']);
    assert.equal(bridged.code, 2);
    assert.match(bridged.stdout, /portForwards: is only for kind 'nat'/);
    const badPort = await run(['vm', 'set', 'nics', '--add-nic', 'nat,forward=70000:22', '--json']);
    assert.equal(badPort.code, 2);
    assert.match(badPort.stdout, /hostPort: must be at most 65535/);
    const unknown = await run(['vm', 'set', 'nics', '--add-nic', 'nat,forward=ssh', '--json']);
    assert.match(unknown.stdout, /unknown option 'forward=ssh'.*forward=\[tcp\|udp:\]/);
  });

  it('refuses more disks and adapters than a VM can have, naming the limit, before making any file', async () => {
    const disks = Array.from({ length: MAX_VIRTIO_DEVICES }, () => ['--disk', 'new:1M']).flat();
    const message = await refused(
      'vm',
      'new',
      '--name',
      'crowded',
      '--kernel',
      testGuestPath(),
      '--nic',
      'nat',
      ...disks,
    );
    assert.match(message, new RegExp(`at most ${MAX_VIRTIO_DEVICES} disks and network adapters together`));
    assert.deepEqual(
      readdirSync(join(home, 'vms')).filter((n) => n.startsWith('.')),
      readdirSync(join(home, 'vms')).filter((n) => n === '.lock'),
    );
  });

  it('leaves no VM behind when one of its disks cannot be made', async () => {
    const message = await refused(
      'vm',
      'new',
      '--name',
      'half',
      '--kernel',
      testGuestPath(),
      '--disk',
      'new:8M',
      '--disk',
      join(home, 'missing.qcow2'),
    );
    assert.match(message, /missing\.qcow2/);
    const list = await ok('vm', 'list');
    assert.equal((list['vms'] as { name: string }[]).filter((v) => v.name === 'half').length, 0);
    assert.deepEqual(
      readdirSync(join(home, 'vms')).filter((n) => n.startsWith('.new-')),
      [],
    );
  });

  it('sets the production checkpoint fallback and shows it', async () => {
    await vmNew('prod-cli', '--disk', 'new:4M');
    const vm = await ok('vm', 'set', 'prod-cli', '--checkpoint-type', 'production');
    assert.deepEqual((vm['config'] as { checkpoints: unknown }).checkpoints, {
      type: 'production',
      standardFallback: true,
    });
    await ok('vm', 'set', 'prod-cli', '--standard-checkpoint-fallback', 'off');
    assert.match((await run(['vm', 'show', 'prod-cli'])).stdout, /Checkpoints:\s+production only/);
    const bad = await run(['vm', 'set', 'prod-cli', '--standard-checkpoint-fallback', 'maybe', '--json']);
    assert.equal(bad.code, 2);
    assert.match(bad.stdout, /--standard-checkpoint-fallback takes on or off, not 'maybe'/);
    const cp = await ok('checkpoint', 'create', 'prod-cli', '--name', 'off-and-consistent');
    assert.equal(cp['type'], 'production');
  });

  it('exports a checkpoint as a new VM and imports it', async () => {
    const dest = join(home, 'out');
    const r = await ok('export', 'prod-cli', dest, '--checkpoint', 'off-and-consistent');
    const folder = join(dest, 'prod-cli-off-and-consistent');
    assert.equal(r['folder'], folder);
    const manifest = JSON.parse(readFileSync(join(folder, 'export.json'), 'utf8')) as Json;
    assert.deepEqual(manifest['checkpoints'], []);
    assert.deepEqual(manifest['disks'], ['disks/disk0.qcow2']);
    assert.ok(existsSync(join(folder, 'disks', 'disk0.qcow2')));
    const imported = await ok('import', folder, '--copy', '--name', 'prod-copy');
    assert.equal(imported['name'], 'prod-copy');
    assert.match(
      await refused('export', 'prod-cli', dest, '--checkpoint', 'nope'),
      /'prod-cli' has no checkpoint 'nope'; 'berth checkpoint list prod-cli' shows them/,
    );
    const usage = await run(['export', 'prod-cli', dest, '--checkpoint', 'x', '--config-only', '--json']);
    assert.equal(usage.code, 2);
    assert.match(usage.stdout, /--checkpoint exports the checkpoint as a whole VM/);
  });
});
