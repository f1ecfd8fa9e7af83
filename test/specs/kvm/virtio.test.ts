// virtio-mmio with virtio-rng and virtio-console on the real KVM: the test guest's own
// drivers find the devices on the command line, use them, and throw every hostile case
// of the split virtqueue at the rng device; the VMM must keep running throughout.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { runGuest } from '../../support/run-guest';

describe('virtio devices on the real KVM', () => {
  it('virtio-rng: two 64-byte requests return different random bytes', async () => {
    const run = await runGuest('virtio-rng', { rng: true });
    assert.equal(run.output, 'virtio-rng: got 64 bytes, 64 bytes, different: yes\n');
    assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
  });

  it('the devices are announced on the command line in Linux syntax', async () => {
    const run = await runGuest('hello', { rng: true, virtioConsole: true });
    assert.equal(
      run.output,
      'Hello from the Berth test guest\n' +
        'cmdline: hello virtio_mmio.device=0x200@0xd0000000:5 virtio_mmio.device=0x200@0xd0001000:6\n',
    );
  });

  it('virtio-console: what the host types is echoed back on the virtio console', async () => {
    const typed = 'Hello over virtio! 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n';
    let console2 = '';
    const run = await runGuest('virtio-console', {
      virtioConsole: true,
      interact: async (machine, com1) => {
        let echoed: () => void = () => {};
        const allEchoed = new Promise<void>((resolve) => (echoed = resolve));
        machine.on((event) => {
          if (event.type !== 'console2') return;
          console2 += Buffer.from(event.data).toString('latin1');
          if (console2.length >= typed.length) echoed();
        });
        await com1.waitFor('virtio-console: ready\n');
        machine.writeConsole2(typed.slice(0, 40));
        machine.writeConsole2(typed.slice(40));
        await allEchoed;
        machine.writeConsole2('\x04ignored');
      },
    });
    assert.equal(console2, typed);
    assert.equal(run.output, `virtio-console: ready\nvirtio-console: done ${typed.length} bytes\n`);
    assert.equal(run.exit.code, 0);
  });

  it('after a host reset the new VM gets its ioeventfds again and the console works', async () => {
    let console2 = '';
    const run = await runGuest('virtio-console', {
      virtioConsole: true,
      interact: async (machine, com1) => {
        machine.on((event) => {
          if (event.type === 'console2') console2 += Buffer.from(event.data).toString('latin1');
        });
        await com1.waitFor('virtio-console: ready\n');
        machine.writeConsole2('one');
        await new Promise<void>((resolve, reject) => {
          const started = Date.now();
          const poll = setInterval(() => {
            if (console2 === 'one' || Date.now() - started > 10_000) {
              clearInterval(poll);
              if (console2 === 'one') resolve();
              else reject(new Error(`no echo before the reset: ${JSON.stringify(console2)}`));
            }
          }, 10);
        });
        await machine.reset();
        com1.text = '';
        await com1.waitFor('virtio-console: ready\n');
        machine.writeConsole2('two\x04');
      },
    });
    assert.equal(console2, 'onetwo');
    assert.equal(run.output, 'virtio-console: ready\nvirtio-console: done 3 bytes\n');
    assert.equal(run.machine.stats().resets, 1);
  });

  it('virtio-hostile: every malformed queue sets DEVICE_NEEDS_RESET, the device recovers, the VMM runs on', async () => {
    const cases = [
      'descriptor loop',
      'address outside RAM',
      'huge length',
      'write into read-only buffer',
      'avail index far ahead',
      'bad queue size',
    ];
    let statsWhileRunning: unknown;
    const run = await runGuest('virtio-hostile', {
      rng: true,
      interact: async (machine, com1) => {
        await com1.waitFor('bad queue size -> needs reset');
        statsWhileRunning = machine.stats();
      },
    });
    assert.equal(
      run.output,
      cases.map((c) => `hostile: ${c} -> needs reset, recovered\n`).join('') + 'hostile: all cases handled\n',
    );
    assert.deepEqual({ reason: run.exit.reason, code: run.exit.code }, { reason: 'guest-exit', code: 0 });
    assert.ok(statsWhileRunning);
    const stats = run.machine.stats();
    assert.equal(stats.resets, 0);
    assert.ok(stats.vcpus[0] && stats.vcpus[0].exits.mmio > 0);
  });

  it('a VM without a virtio console drops writeConsole2 quietly', async () => {
    const run = await runGuest('hello', {
      interact: async (machine) => {
        machine.writeConsole2('nobody listens');
        await Promise.resolve();
      },
    });
    assert.equal(run.exit.code, 0);
    assert.ok(!run.events.some((e) => e.type === 'console2'));
  });
});
