// Generation 1 VMs boot Debian's SeaBIOS, unmodified, through Berth's VMM on the Q35-like
// platform (PCI through ECAM and the configuration ports, the chipset, fw_cfg with its ACPI
// tables and boot order, virtio-pci devices), and SeaBIOS boots a real installation image:
// Debian's installer ISO (test/firmware/prepare.ts) from a DVD drive on the SCSI controller
// and from a hard disk, to GRUB's menu on the serial console, and GRUB goes on to load the
// installer's kernel and initrd from the image. The ISO is made on the host beforehand.
//
// In the KVM lab, firmware runs nested under QEMU's emulator, where real-mode BIOS code is
// slow (QEMU itself, as the VMM there, did not reach GRUB's menu in 200 s): the limits are
// generous, and the specs stop at GRUB rather than the installer's first screen.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';

import { VmManager } from '../../../app/services';
import { TextSink, cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { GRUB_MENU_MARKER, PREPARE_COMMAND, installerIso } from '../../firmware/prepare';

const GRUB_LIMIT_MS = 240_000;
const MENU_ENTRY = 'Install Debian (serial console)';

describe('Generation 1 (SeaBIOS) boots an installation image', () => {
  let root: string;
  let manager: VmManager;

  before(() => {
    if (!existsSync(installerIso)) throw new Error(`${installerIso} is missing: run ${PREPARE_COMMAND}`);
    root = makeBerthHome('fw');
    manager = new VmManager({ root });
  });
  after(() => cleanBerthHome(root));

  async function bootToGrub(name: string): Promise<string> {
    await manager.start(name);
    const sink = new TextSink();
    const session = await manager.attachConsole(name, { onData: sink.push, replay: true });
    try {
      await sink.waitFor(GRUB_MENU_MARKER, GRUB_LIMIT_MS);
      await sink.waitFor(MENU_ENTRY, 60_000);  // the menu is drawn after the banner
      return sink.text;
    } finally {
      await session.detach();
      await manager.turnOff(name);
    }
  }

  it('from a DVD drive (virtio-scsi) to GRUB', { timeout: GRUB_LIMIT_MS + 60_000 }, async () => {
    await manager.create({
      name: 'gen1-dvd',
      memory: { startupMiB: 512 },
      boot: { kind: 'bios', bootOrder: ['dvd', 'disk', 'network'] },
      dvdDrives: [{ slot: 0, path: installerIso }],
    });
    const text = await bootToGrub('gen1-dvd');
    assert.match(text, /SeaBIOS \(version 1\.16/);
    assert.match(text, /Booting from DVD\/CD/);
  });

  it('from a hard disk (virtio-blk on PCI) to GRUB', { timeout: GRUB_LIMIT_MS + 60_000 }, async () => {
    await manager.create({
      name: 'gen1-disk',
      memory: { startupMiB: 512 },
      boot: { kind: 'bios', bootOrder: ['disk', 'dvd', 'network'] },
      disks: [{ slot: 0, kind: 'virtual', path: installerIso, readOnly: true }],
    });
    const text = await bootToGrub('gen1-disk');
    assert.match(text, /Booting from Hard Disk/);
  });
});
