// virtio-net on the real KVM: the test guest's own driver and tiny IPv4 stack get a DHCP
// lease from the NAT backend (libslirp), serve TCP through a host port forward, survive
// hostile queue use; the TAP backend opens a real tap device (root) and reports missing
// CAP_NET_ADMIN clearly; bad configurations are refused before the VM exists.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { Machine, NativeError, type NicConfig } from '../../../app/native';
import { repoRoot, testGuestPath } from '../../support/guest';
import { runGuest } from '../../support/run-guest';
import { freePort } from '../../support/ports';
import { talk } from '../../support/tcp';

const MAC = '52:54:00:12:34:56';
const LEASE = 'virtio-net: mac 52:54:00:12:34:56\nvirtio-net: dhcp lease 10.0.2.15 gateway 10.0.2.2 dns 10.0.2.3\n';

async function echoThroughGuest(nic: Omit<NicConfig, 'portForwards'>) {
  const hostPort = await freePort();
  const guestPort = 7777;
  let reply = '';
  const run = await runGuest(`virtio-net echo-server ${guestPort}`, {
    nics: [{ ...nic, portForwards: [{ protocol: 'tcp', hostPort, guestPort }] }],
    timeoutMs: 60_000,
    interact: async (_machine, com1) => {
      await com1.waitFor(`virtio-net: listening on 10.0.2.15:${guestPort}\n`, 40_000);
      reply = await talk(hostPort, ['hello ', 'berth\n'], 12);
    },
  });
  return { run, reply, guestPort };
}

describe('virtio-net on the real KVM', () => {
  it('dhcp: the guest reads its MAC and gets a lease from the NAT', async () => {
    const run = await runGuest('virtio-net dhcp', { nics: [{ kind: 'nat', mac: MAC }], timeoutMs: 40_000 });
    assert.equal(run.output, LEASE);
    assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
  });

  it('the card is announced on the command line like the other virtio devices', async () => {
    const run = await runGuest('hello', { rng: true, nics: [{ kind: 'nat', mac: '02:00:00:00:00:01' }] });
    assert.equal(
      run.output,
      'Hello from the Berth test guest\n' +
        'cmdline: hello virtio_mmio.device=0x200@0xd0000000:5 virtio_mmio.device=0x200@0xd0001000:6\n',
    );
  });

  it('echo-server: a host port forward reaches the guest, which echoes uppercased and sees the close', async () => {
    const { run, reply, guestPort } = await echoThroughGuest({ kind: 'nat', mac: MAC });
    assert.equal(reply, 'HELLO BERTH\n');
    assert.equal(
      run.output,
      LEASE + `virtio-net: listening on 10.0.2.15:${guestPort}\nvirtio-net: connection closed after 12 bytes\n`,
    );
    assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
  });

  it('restricted NAT: DHCP and the port forward still work', async () => {
    const { run, reply } = await echoThroughGuest({ kind: 'nat', mac: MAC, restricted: true });
    assert.equal(reply, 'HELLO BERTH\n');
    // libslirp leases no router and no DNS server in restricted mode.
    assert.equal(
      run.output,
      'virtio-net: mac 52:54:00:12:34:56\nvirtio-net: dhcp lease 10.0.2.15 gateway 0.0.0.0 dns 0.0.0.0\n' +
        'virtio-net: listening on 10.0.2.15:7777\nvirtio-net: connection closed after 12 bytes\n',
    );
    assert.equal(run.exit.code, 0);
  });

  it('hostile driver: a short transmit chain and a tiny receive buffer are returned, the card keeps working', async () => {
    const run = await runGuest('virtio-net-hostile', { nics: [{ kind: 'nat', mac: MAC }], timeoutMs: 40_000 });
    assert.equal(
      run.output,
      'net-hostile: short transmit chain -> returned, device ok\n' +
        'net-hostile: tiny receive buffer -> returned empty, device ok\n' +
        'net-hostile: dhcp lease 10.0.2.15 afterwards\n',
    );
    assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
    assert.equal(run.machine.stats().resets, 0);
  });

  it('bad configurations are refused with the reason', async () => {
    const base = { memoryMiB: 64, vcpus: 1, kernelPath: testGuestPath(), cmdline: 'hello' };
    const cases: [NicConfig, RegExp][] = [
      [{ kind: 'nat', mac: '52:54:00:12:34' }, /nics\[0\]\.mac must be a MAC address/],
      [{ kind: 'nat', mac: 'zz:54:00:12:34:56' }, /nics\[0\]\.mac must be a MAC address/],
      [{ kind: 'nat', mac: '01:00:5e:00:00:01' }, /multicast/],
      [
        { kind: 'nat', mac: MAC, portForwards: [{ protocol: 'tcp', hostPort: 0, guestPort: 80 }] },
        /hostPort must be a port number from 1 to 65535/,
      ],
      [
        { kind: 'nat', mac: MAC, portForwards: [{ protocol: 'tcp', hostPort: 8080, guestPort: 65536 }] },
        /guestPort must be a port number from 1 to 65535/,
      ],
      [{ kind: 'tap', mac: MAC, restricted: true }, /apply to kind 'nat' only/],
      [{ kind: 'nat', mac: MAC, tapName: 'tap0' }, /apply to kind 'tap' only/],
    ];
    for (const [nic, message] of cases) {
      await assert.rejects(Machine.create({ ...base, nics: [nic] }), (err: unknown) => {
        assert.ok(err instanceof NativeError);
        assert.equal(err.code, 'INVALID_ARGUMENT');
        assert.match(err.message, message);
        return true;
      });
    }
  });

  it('a host port that is already taken is NET_PORT_FORWARD', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const hostPort = typeof address === 'object' && address ? address.port : 0;
    try {
      await assert.rejects(
        Machine.create({
          memoryMiB: 64,
          vcpus: 1,
          kernelPath: testGuestPath(),
          nics: [{ kind: 'nat', mac: MAC, portForwards: [{ protocol: 'tcp', hostPort, guestPort: 80 }] }],
        }),
        (err: unknown) => {
          assert.ok(err instanceof NativeError);
          assert.equal(err.code, 'NET_PORT_FORWARD');
          assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${hostPort}`));
          return true;
        },
      );
    } finally {
      server.close();
    }
  });
});

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'ignore' });
}

function tapCounter(name: string, counter: string): number {
  return Number(readFileSync(`/sys/class/net/${name}/statistics/${counter}`, 'utf8'));
}

const isRoot = process.getuid?.() === 0;

describe('virtio-net TAP backend (bridged)', { skip: !isRoot && 'needs root to create tap devices' }, () => {
  it("creates a tap device, attaches it to an existing bridge, and the guest's frames come out of it", async () => {
    const tap = 'berthtst0';
    const bridge = 'berthbr0';
    spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    ip('link', 'add', bridge, 'type', 'bridge');
    try {
      let sawFrames = false;
      let master = '';
      const run = await runGuest('virtio-net dhcp', {
        nics: [{ kind: 'tap', mac: MAC, tapName: tap, bridge }],
        timeoutMs: 30_000,
        interact: async (machine, com1) => {
          await com1.waitFor('virtio-net: mac 52:54:00:12:34:56\n');
          assert.ok(existsSync(`/sys/class/net/${tap}`), 'the tap device exists while the VM runs');
          master = readlinkSync(`/sys/class/net/${tap}/master`).split('/').pop() ?? '';
          // No DHCP server on the bridge: the guest keeps sending DISCOVERs; they arrive in
          // the host's network stack through the tap device.
          const started = Date.now();
          while (Date.now() - started < 10_000 && !sawFrames) {
            sawFrames = tapCounter(tap, 'rx_packets') > 0;
            await new Promise((r) => setTimeout(r, 50));
          }
          await machine.stop();
        },
      });
      assert.equal(master, bridge);
      assert.ok(sawFrames, "the guest's DHCP DISCOVER reached the host through the tap device");
      assert.equal(run.exit.reason, 'stopped');
    } finally {
      spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    }
  });

  it('uses an existing tap device; a missing bridge is NET_BRIDGE_NOT_FOUND', async () => {
    const tap = 'berthtst1';
    spawnSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
    ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
    try {
      const run = await runGuest('hello', { nics: [{ kind: 'tap', mac: MAC, tapName: tap }] });
      assert.equal(run.exit.code, 0);
      await assert.rejects(
        Machine.create({
          memoryMiB: 64,
          vcpus: 1,
          kernelPath: testGuestPath(),
          nics: [{ kind: 'tap', mac: MAC, tapName: tap, bridge: 'berthnobr0' }],
        }),
        (err: unknown) => {
          assert.ok(err instanceof NativeError);
          assert.equal(err.code, 'NET_BRIDGE_NOT_FOUND');
          assert.match(err.message, /bridge berthnobr0 does not exist/);
          return true;
        },
      );
    } finally {
      spawnSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
    }
  });

  it('without CAP_NET_ADMIN creating a tap device fails with NET_TAP_PERMISSION naming the capability', () => {
    if (!existsSync('/usr/sbin/capsh') && !existsSync('/sbin/capsh')) return;
    const script = `
      const { Machine } = require(${JSON.stringify(join(repoRoot, 'dist', 'app', 'native'))});
      Machine.create({ memoryMiB: 16, vcpus: 1, kernelPath: ${JSON.stringify(testGuestPath())},
                       nics: [{ kind: 'tap', mac: '52:54:00:12:34:56', tapName: 'berthtst2' }] })
        .then(() => console.log(JSON.stringify({ ok: true })),
              (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))
        .finally(() => process.exit(0));`;
    const child = spawnSync(
      'capsh',
      ['--drop=cap_net_admin', '--', '-c', `exec "$0" -e "$1"`, process.execPath, script],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(child.status, 0, child.stderr);
    const result = JSON.parse(child.stdout.trim()) as { code?: string; message?: string };
    assert.equal(result.code, 'NET_TAP_PERMISSION');
    assert.match(result.message ?? '', /^creating tap device berthtst2 needs CAP_NET_ADMIN: .* or use NAT$/);
  });
});
