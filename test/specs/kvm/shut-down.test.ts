// Shut Down, as the window and `berth vm stop` do it: the services press the VM's ACPI power
// button (the worker pulses the Generic Event Device's interrupt) and wait. Debian's cloud
// kernel, with its button and evdev modules and busybox acpid in the initramfs, powers off;
// the VM ends Off with the guest's ACPI power-off as its last exit. (A guest that ignores the
// button, the echo guest, is in services-worker and cli-vm: the timeout and its message.)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { VmManager } from '../../../app/services';
import { TextSink, cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { markerLine } from '../../linux-boot/boot';
import { INITRAMFS_POWER_BUTTON, INITRAMFS_WAITING } from '../../linux-boot/initramfs';
import { loadPreparedLinuxBoot } from '../../linux-boot/prepare';

describe('Shut Down presses the ACPI power button', () => {
  let root: string;
  let manager: VmManager;
  before(() => {
    root = makeBerthHome('shutdown');
    manager = new VmManager({ root });
  });
  after(() => cleanBerthHome(root));

  it(
    'a Linux guest with acpid powers off, and the VM is Off with the ACPI power-off as its exit',
    { timeout: 600_000 },
    async (t) => {
      const prepared = loadPreparedLinuxBoot(); // fails naming the command that prepares it
      const token = randomBytes(6).toString('hex');
      await manager.create({
        name: 'linux',
        memory: { startupMiB: 256 },
        processors: { count: 2 },
        boot: {
          kind: 'linux',
          kernelPath: prepared.bzImage,
          initrdPath: prepared.initramfs,
          cmdline: `console=ttyS0 panic=-1 berth.check=${token} berth.wait`,
        },
      });
      // In the KVM lab a Linux boot fails now and then for the emulator beneath (see
      // linux-boot.test.ts): the boot, not the shut-down, is tried up to three times there.
      const attempts = process.env['BERTH_IN_LAB'] === '1' ? 3 : 1;
      let sink = new TextSink();
      let ended: unknown;
      let session: Awaited<ReturnType<VmManager['attachConsole']>> | undefined;
      for (let attempt = 1; ; attempt++) {
        await manager.start('linux');
        sink = new TextSink();
        ended = undefined;
        session = await manager.attachConsole('linux', { onData: sink.push, onEnd: (info) => (ended = info) });
        try {
          await sink.waitFor(markerLine(token), 90_000);
          await sink.waitFor(INITRAMFS_WAITING, 60_000);
          break;
        } catch (err) {
          if (attempt >= attempts) throw err;
          t.diagnostic(`boot attempt ${attempt} failed in the KVM lab (${(err as Error).message}); booting again`);
          await session.detach();
          if ((await manager.show('linux')).state !== 'Off') await manager.turnOff('linux');
        }
      }

      const summary = await manager.shutDown('linux', 120_000);
      assert.equal(summary.state, 'Off');
      assert.ok(
        sink.text.includes(INITRAMFS_POWER_BUTTON),
        `acpid did not run the power button's action:\n${sink.text.slice(-2000)}`,
      );
      const shown = await manager.show('linux');
      assert.deepEqual(
        { reason: shown.lastExit?.reason, detail: shown.lastExit?.detail },
        { reason: 'power-off', detail: 'acpi' },
        `the VM did not end by the guest's ACPI power-off:\n${sink.text.slice(-2000)}`,
      );
      assert.ok(ended !== undefined, 'the console saw the VM end');
      await session.detach();
    },
  );
});
