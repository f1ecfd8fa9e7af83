// A Generation 1 VM boots an installed Debian from its hard disk: SeaBIOS reads the MBR
// from a virtio-blk disk on PCI, GRUB loads Debian's cloud kernel and initramfs from the
// ext4 partition, systemd starts a getty on the serial console, and the test logs in as
// root and powers the guest off from its shell, which ends the VM (ACPI S5). The disk is
// built on the host beforehand (test/firmware/debian-disk.ts) as qcow2 and VHDX; each run
// boots its own copy, which the guest writes to (journal, logs), and qemu-img finds the
// copy consistent afterwards.
//
// In the KVM lab the guest runs nested under QEMU's emulator: the limits are generous, and
// the spec runs in a lab with a host thread per CPU. The two boots take about 11 minutes
// there, more than CI's 45 minutes leave beside the other lab specs, so this suite runs on
// its own: `npm run test:os-disk` (builds the disk, then runs this file in the lab).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { VmManager } from '../../../app/services';
import { TextSink, cleanBerthHome, makeBerthHome, waitUntil } from '../../support/berth-home';
import {
  DEBIAN_DISK_COMMAND,
  DEBIAN_ROOT_PASSWORD,
  GRUB_MENU_ENTRY,
  LOGIN_PROMPT,
  ROOT_PROMPT,
  debianQcow2,
  debianVhdx,
} from '../../firmware/debian-disk';

// Each stage of the boot within this (a lab run stops a spec that is silent for 6 minutes).
const STAGE_LIMIT_MS = 300_000;
const SHELL_LIMIT_MS = 120_000;
const POWER_OFF_LIMIT_MS = 300_000;

describe('Generation 1 (SeaBIOS) boots Debian installed on a disk', () => {
  let root: string;
  let manager: VmManager;

  before(() => {
    for (const image of [debianQcow2, debianVhdx]) {
      if (!existsSync(image)) throw new Error(`${image} is missing: run ${DEBIAN_DISK_COMMAND}`);
    }
    root = makeBerthHome('deb');
    manager = new VmManager({ root });
  });
  after(() => cleanBerthHome(root));

  // A wait that failed says how the VM stopped (or that it runs) and what it printed last.
  async function withVmState(name: string, err: unknown, sink: TextSink): Promise<Error> {
    const vm = await manager.state(name);
    const message = err instanceof Error ? err.message : String(err);
    return new Error(
      `${message}; the VM is ${vm.state}${vm.stateReason ? ` (${vm.stateReason})` : ''}; ` +
        `its console ended with ${JSON.stringify(sink.text.slice(-600))}`,
    );
  }

  // Boots a copy of `image` to the login prompt, logs in as root, runs `systemctl poweroff`
  // and waits for the VM to be off. Returns the console text.
  async function bootLogInPowerOff(name: string, image: string, format: string): Promise<string> {
    const disk = join(root, `${name}.${format}`);
    copyFileSync(image, disk);
    await manager.create({
      name,
      memory: { startupMiB: 512 },
      processors: { count: 1 },
      // Watched on the serial console; without a display, GRUB's text skips SeaBIOS's slow
      // display ROM (see ../kvm/firmware-boot.test.ts).
      boot: { kind: 'bios', bootOrder: ['disk', 'dvd', 'network'], display: false },
      disks: [{ slot: 0, kind: 'virtual', path: disk }],
    });
    const started = Date.now();
    const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
    await manager.start(name);
    const sink = new TextSink();
    const session = await manager.attachConsole(name, { onData: sink.push, replay: true });
    try {
      await sink.waitFor(GRUB_MENU_ENTRY, STAGE_LIMIT_MS);
      console.log(`# ${name}: GRUB's menu after ${seconds()} s`);
      await sink.waitFor('Loading, please wait', STAGE_LIMIT_MS); // the initramfs
      console.log(`# ${name}: Linux ran its initramfs after ${seconds()} s`);
      await sink.waitFor('Debian GNU/Linux 12 (bookworm)', STAGE_LIMIT_MS); // systemd's welcome
      console.log(`# ${name}: systemd started after ${seconds()} s`);
      await sink.waitFor('] Reached target', STAGE_LIMIT_MS); // systemd's progress
      console.log(`# ${name}: systemd reached its first target after ${seconds()} s`);
      await sink.waitFor(LOGIN_PROMPT, STAGE_LIMIT_MS);
      console.log(`# ${name}: login prompt after ${seconds()} s`);
      await session.write('root\r');
      await sink.waitFor('Password:', SHELL_LIMIT_MS);
      await session.write(`${DEBIAN_ROOT_PASSWORD}\r`);
      await sink.waitFor(ROOT_PROMPT, SHELL_LIMIT_MS);
      console.log(`# ${name}: root's shell after ${seconds()} s`);
      await session.write('systemctl poweroff\r');
      await sink.waitFor('systemctl poweroff', SHELL_LIMIT_MS); // the shell's echo
      await waitUntil(
        `${name} to power off`,
        async () => (await manager.state(name)).state === 'Off',
        POWER_OFF_LIMIT_MS,
      );
      console.log(`# ${name}: off after ${seconds()} s`);
      // What the guest wrote left the image consistent (qemu-img exits non-zero otherwise).
      execFileSync('qemu-img', ['check', '-f', format, disk], { stdio: ['ignore', 'ignore', 'pipe'] });
      return sink.text;
    } catch (err) {
      throw await withVmState(name, err, sink);
    } finally {
      await session.detach();
      if ((await manager.state(name)).state === 'Running') await manager.turnOff(name);
    }
  }

  it('from a qcow2 disk to a root shell, and powers off from it', { timeout: 1_200_000 }, async () => {
    const text = await bootLogInPowerOff('deb-qcow2', debianQcow2, 'qcow2');
    assert.match(text, /Booting from Hard Disk/);
    assert.match(text, /Welcome to .*Debian GNU\/Linux 12/);
    assert.doesNotMatch(text, /Kernel panic|Login incorrect/);
    assert.match(text, /reboot: Power down/);
    const vm = await manager.state('deb-qcow2');
    assert.equal(vm.state, 'Off');
    assert.equal(vm.lastExit?.reason, 'power-off');
  });

  it('from a VHDX disk to a root shell, and powers off from it', { timeout: 1_200_000 }, async () => {
    await bootLogInPowerOff('deb-vhdx', debianVhdx, 'vhdx');
    assert.equal((await manager.state('deb-vhdx')).lastExit?.reason, 'power-off');
  });
});
