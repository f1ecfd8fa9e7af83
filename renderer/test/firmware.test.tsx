// Generation 1 and 2 VMs in the window as a user meets them: the wizard's generation step and
// installation from an image file, Settings > Firmware (boot order, Secure Boot and what
// changing it does) and the SCSI controller's DVD drives, Media > DVD Drive; bad input is
// refused where it was entered; the markup passes axe.
import axe from 'axe-core';
import { act } from 'react';
import { describe, expect, it } from 'vitest';

import { BridgeError, type MethodArgs } from '../../app/api/bridge';
import { VmConfig } from '../../app/api/config';
import type { VmDetails } from '../../app/api/vm';
import { MediaDialog } from '../src/dialogs/MediaDialog';
import { NewVmWizard } from '../src/dialogs/NewVmWizard';
import { SettingsDialog } from '../src/dialogs/Settings';
import { buttonNamed as buttonIn, click, domPerTest, newQueryClient, type, withApi } from './dom';
import { FakeApi, must, uuid } from './fixtures';

const hostInfo = {
  hostname: 'testhost',
  platform: 'linux',
  arch: 'x64',
  berthVersion: '0.1.0',
  dataRoot: '/tmp/berth',
  transport: 'web' as const,
};

const dom = domPerTest();
const buttonNamed = (text: string) => buttonIn(dom.container, text);
const inputLabelled = (text: string): HTMLInputElement => {
  const label = [...dom.container.querySelectorAll<HTMLLabelElement>('label')].find((l) => l.textContent === text);
  return must(label && dom.container.querySelector<HTMLInputElement>(`[id="${label.htmlFor}"]`), `the field '${text}'`);
};
const choice = (text: string): HTMLInputElement =>
  must(
    [...dom.container.querySelectorAll<HTMLLabelElement>('label.check')]
      .find((l) => l.textContent?.trim() === text)
      ?.querySelector('input'),
    `the choice '${text}'`,
  );
const alertText = () => dom.container.querySelector('[role="alert"]')?.textContent ?? '';
const settle = () => act(async () => new Promise((r) => setTimeout(r, 0)));

// Serious and critical violations (happy-dom has no layout: colour contrast is the e2e spec's).
async function axeViolations(): Promise<string[]> {
  const r = await axe.run(dom.container, { rules: { 'color-contrast': { enabled: false } } });
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id);
}

function details(
  boot: unknown,
  dvdDrives: unknown[] = [],
  state: VmDetails['state'] = 'Off',
  disks: unknown[] = [],
): VmDetails {
  return {
    id: uuid(9),
    name: 'g2',
    state,
    memoryMiB: 1024,
    processorCount: 1,
    folder: '/tmp/berth/vms/g2',
    config: VmConfig.parse({
      schemaVersion: 2,
      id: uuid(9),
      name: 'g2',
      memory: { startupMiB: 1024 },
      boot,
      dvdDrives,
      disks,
    }),
  };
}

// An API for Settings: it serves vm and keeps the last vm.update request.
function settingsApi(vm: VmDetails): { api: FakeApi; updated: () => MethodArgs<'vm.update'> | undefined } {
  let updated: MethodArgs<'vm.update'> | undefined;
  const api = new FakeApi({
    'vm.get': () => vm,
    'vm.update': (args) => {
      updated = args;
      return vm;
    },
  });
  return { api, updated: () => updated };
}

describe('New Virtual Machine wizard: generation', () => {
  async function open(api: FakeApi): Promise<void> {
    await dom.render(withApi(api, newQueryClient(), <NewVmWizard onClose={() => undefined} />));
  }

  it('creates a Generation 2 VM with Secure Boot that installs from an image file, with its new disk', async () => {
    const created: MethodArgs<'vm.create'>[] = [];
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.create': (args) => {
        created.push(args);
        return details({ kind: 'uefi' });
      },
    });
    await open(api);
    await click(buttonNamed('Specify Generation'));
    await click(choice('Generation 2'));
    expect(choice('Enable Secure Boot (Microsoft UEFI Certificate Authority keys)').checked).toBe(true);
    expect(await axeViolations()).toEqual([]);
    await click(buttonNamed('Connect Virtual Hard Disk'));
    await click(choice('Create a virtual hard disk'));
    await click(buttonNamed('Installation Options'));
    await click(choice('Install an operating system from a bootable image file (.iso)'));
    // No image given yet: Finish sends nothing and the page says what is missing.
    await click(buttonNamed('Finish'));
    expect(created).toHaveLength(0);
    expect(dom.container.textContent).toContain(
      'Image file (.iso): is required: the bootable image file (.iso) to install from',
    );
    expect(await axeViolations()).toEqual([]);
    await type(inputLabelled('Image file (.iso):'), '/isos/debian-13-amd64-netinst.iso');
    await click(buttonNamed('Finish'));
    expect(created).toHaveLength(1);
    expect(created[0]?.config.boot).toEqual({ kind: 'uefi', secureBoot: true, bootOrder: ['dvd', 'disk', 'network'] });
    expect(created[0]?.config.dvdDrives).toEqual([{ slot: 0, path: '/isos/debian-13-amd64-netinst.iso' }]);
    expect(created[0]?.newDisks).toHaveLength(1);
  });

  it('makes Generation 1 a BIOS VM with an empty DVD drive, and Secure Boot off when unchecked for Generation 2', async () => {
    const created: MethodArgs<'vm.create'>[] = [];
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.create': (args) => {
        created.push(args);
        return details({ kind: 'bios' });
      },
    });
    await open(api);
    await click(buttonNamed('Specify Generation'));
    await click(choice('Generation 1'));
    expect(dom.container.textContent).not.toContain('Enable Secure Boot');
    await click(buttonNamed('Finish'));
    expect(created[0]?.config.boot).toEqual({ kind: 'bios', bootOrder: ['dvd', 'disk', 'network'] });
    expect(created[0]?.config.dvdDrives).toEqual([{ slot: 0 }]);
  });

  it('shows the service refusing a missing image and stays open', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.create': () => {
        throw new BridgeError(
          'DVD_MEDIA_NOT_FOUND',
          "cannot create 'x': DVD drive 0: the image /isos/gone.iso does not exist",
        );
      },
    });
    await open(api);
    await click(buttonNamed('Specify Generation'));
    await click(choice('Generation 2'));
    await click(choice('Enable Secure Boot (Microsoft UEFI Certificate Authority keys)'));
    await click(buttonNamed('Installation Options'));
    await click(choice('Install an operating system from a bootable image file (.iso)'));
    await type(inputLabelled('Image file (.iso):'), '/isos/gone.iso');
    await click(buttonNamed('Finish'));
    expect(alertText()).toMatch(/the image \/isos\/gone\.iso does not exist/);
    expect(
      (api.calls.find((c) => c.method === 'vm.create')?.args as MethodArgs<'vm.create'>).config.boot,
    ).toMatchObject({
      secureBoot: false,
    });
  });
});

describe('Settings: Firmware and DVD drives', () => {
  async function open(api: FakeApi): Promise<void> {
    await dom.render(withApi(api, newQueryClient(), <SettingsDialog vmId={uuid(9)} onClose={() => undefined} />));
    await settle();
  }

  it('moves a device up the boot order and turns Secure Boot off, saying that resets the UEFI settings', async () => {
    const vm = details({ kind: 'uefi' }, [{ slot: 0, path: '/isos/a.iso' }]);
    const { api, updated } = settingsApi(vm);
    await open(api);
    expect(dom.container.querySelector('legend')?.textContent).toBe('Firmware');
    await click(must(dom.container.querySelector<HTMLButtonElement>('button[aria-label="Move Hard Drive up"]')));
    const order = [...dom.container.querySelectorAll('.boot-order .boot-device')].map((e) => e.textContent);
    expect(order).toEqual(['Hard Drive', 'DVD Drive', 'Network Adapter']);
    expect(dom.container.querySelector<HTMLButtonElement>('button[aria-label="Move Hard Drive up"]')?.disabled).toBe(
      true,
    );
    await click(choice('Enable Secure Boot (Microsoft UEFI Certificate Authority keys)'));
    expect(dom.container.querySelector('[role="status"]')?.textContent).toMatch(/UEFI settings.*are reset/);
    expect(await axeViolations()).toEqual([]);
    await click(buttonNamed('OK'));
    expect(updated()).toEqual({ vm: vm.id, patch: { secureBoot: false, bootOrder: ['disk', 'dvd', 'network'] } });
  });

  it('turns the display off for a VM that needs only its serial console', async () => {
    const vm = details({ kind: 'bios' }, [{ slot: 0 }]);
    const { api, updated } = settingsApi(vm);
    await open(api);
    const display = choice('Display (graphical console)');
    expect(display.checked).toBe(true);
    await click(display);
    expect(await axeViolations()).toEqual([]);
    await click(buttonNamed('OK'));
    expect(updated()).toEqual({ vm: vm.id, patch: { display: false } });
  });

  it('puts a hard drive on the SCSI controller of a Generation 1 VM', async () => {
    const disk = { slot: 0, kind: 'virtual', path: '/vms/d0.qcow2' };
    const vm = details({ kind: 'bios' }, [], 'Off', [disk]);
    const { api, updated } = settingsApi(vm);
    await open(api);
    await click(buttonNamed('Hard Drived0.qcow2'));
    const select = must(dom.container.querySelector<HTMLSelectElement>('select[aria-label="Controller"]'));
    expect(select.value).toBe('virtio');
    expect(select.disabled).toBe(false);
    await act(async () => {
      select.value = 'scsi';
      select.dispatchEvent(new Event('change', { bubbles: true }));
    });
    expect(buttonNamed('Hard Drived0.qcow2 (SCSI)')).toBeTruthy();
    expect(await axeViolations()).toEqual([]);
    await click(buttonNamed('OK'));
    expect(updated()).toEqual({ vm: vm.id, patch: { disks: [{ ...disk, readOnly: false, controller: 'scsi' }] } });
  });

  it('offers only virtio for the hard drive of a VM that boots a kernel file', async () => {
    const kernel = details({ kind: 'pvh', kernelPath: '/k', cmdline: '' }, [], 'Off', [
      { slot: 0, kind: 'virtual', path: '/vms/d0.qcow2' },
    ]);
    await open(new FakeApi({ 'vm.get': () => kernel }));
    await click(buttonNamed('Hard Drived0.qcow2'));
    expect(must(dom.container.querySelector<HTMLSelectElement>('select[aria-label="Controller"]')).disabled).toBe(true);
  });

  it('adds a DVD drive with an image, refusing an image file left empty', async () => {
    const vm = details({ kind: 'bios' });
    const updates: MethodArgs<'vm.update'>[] = [];
    const api = new FakeApi({
      'vm.get': () => vm,
      'vm.update': (args) => {
        updates.push(args);
        return vm;
      },
    });
    await open(api);
    expect(dom.container.textContent).not.toContain('Enable Secure Boot');
    await click(buttonNamed('SCSI Controller'));
    await click(buttonNamed('Add DVD Drive'));
    await click(choice('Image file'));
    expect(await axeViolations()).toEqual([]);
    await click(buttonNamed('Apply'));
    expect(alertText()).toContain('DVD Drive 0: choose a bootable image file (.iso), or None');
    expect(updates).toHaveLength(0);
    await type(inputLabelled('Image file (.iso):'), '/isos/a.iso');
    await click(buttonNamed('Apply'));
    expect(updates).toEqual([{ vm: vm.id, patch: { dvdDrives: [{ slot: 0, path: '/isos/a.iso' }] } }]);
  });

  it('removes a DVD drive', async () => {
    const vm = details({ kind: 'uefi' }, [{ slot: 0 }, { slot: 1, path: '/isos/b.iso' }]);
    const { api, updated } = settingsApi(vm);
    await open(api);
    await click(buttonNamed('DVD Driveb.iso'));
    await click(buttonNamed('Remove'));
    await click(buttonNamed('OK'));
    expect(updated()?.patch).toEqual({ dvdDrives: [{ slot: 0 }] });
  });
});

describe('Media > DVD Drive', () => {
  it('inserts an image into a running VM and ejects it, showing a refusal where it happened', async () => {
    let vm = details({ kind: 'uefi' }, [{ slot: 0 }], 'Running');
    const calls: string[] = [];
    const api = new FakeApi({
      'vm.get': () => vm,
      'vm.insertDvd': (args) => {
        if (args.path === '/isos/notes.txt') {
          throw new BridgeError(
            'DVD_MEDIA_INVALID',
            "DVD drive 0 of 'g2': /isos/notes.txt is not a bootable image file (.iso)",
          );
        }
        calls.push(`insert ${args.slot} ${args.path}`);
        vm = details({ kind: 'uefi' }, [{ slot: 0, path: args.path }], 'Running');
        return vm;
      },
      'vm.ejectDvd': (args) => {
        calls.push(`eject ${args.slot}`);
        vm = details({ kind: 'uefi' }, [{ slot: 0 }], 'Running');
        return vm;
      },
    });
    await dom.render(withApi(api, newQueryClient(), <MediaDialog vmId={vm.id} name="g2" onClose={() => undefined} />));
    await settle();
    expect(buttonNamed('Eject').disabled).toBe(true);
    await click(buttonNamed('Insert Disk'));
    expect(alertText()).toContain('choose a bootable image file (.iso)');
    await type(inputLabelled('Image file (.iso):'), '/isos/notes.txt');
    await click(buttonNamed('Insert Disk'));
    expect(alertText()).toContain('is not a bootable image file');
    await type(inputLabelled('Image file (.iso):'), '/isos/a.iso');
    await click(buttonNamed('Insert Disk'));
    expect(dom.container.textContent).toContain('Contains /isos/a.iso');
    expect(await axeViolations()).toEqual([]);
    await click(buttonNamed('Eject'));
    expect(calls).toEqual(['insert 0 /isos/a.iso', 'eject 0']);
    expect(dom.container.textContent).toContain('Empty');
  });

  it('says a VM that boots a kernel has no DVD drives', async () => {
    const vm = details({ kind: 'pvh', kernelPath: '/boot/vmlinux' });
    const api = new FakeApi({ 'vm.get': () => vm });
    await dom.render(withApi(api, newQueryClient(), <MediaDialog vmId={vm.id} name="g2" onClose={() => undefined} />));
    await settle();
    expect(dom.container.textContent).toContain('has no DVD drives');
  });
});
