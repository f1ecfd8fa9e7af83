// The New Virtual Machine wizard as a user fills it in: "Create a virtual hard disk" sends
// the disk with the VM in one vm.create (nothing to clean up if it fails), and a refusal
// is shown in the wizard, which stays open.
import { describe, expect, it } from 'vitest';

import { BridgeError, type MethodArgs } from '../../app/api/bridge';
import { NewVmWizard } from '../src/dialogs/NewVmWizard';
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

async function open(api: FakeApi, onClose: () => void): Promise<void> {
  await dom.render(withApi(api, newQueryClient(), <NewVmWizard onClose={onClose} />));
}

const buttonNamed = (text: string) => buttonIn(dom.container, text);
const inputLabelled = (text: string): HTMLInputElement => {
  const label = [...dom.container.querySelectorAll<HTMLLabelElement>('label')].find((l) => l.textContent === text);
  return must(label && dom.container.querySelector<HTMLInputElement>(`[id="${label.htmlFor}"]`), `the field '${text}'`);
};

async function fillIn(): Promise<void> {
  await click(buttonNamed('Installation Options'));
  await type(inputLabelled('Kernel:'), '/boot/vmlinux');
  await click(buttonNamed('Connect Virtual Hard Disk'));
  const create = must(
    [...dom.container.querySelectorAll<HTMLLabelElement>('label.check')].find((l) =>
      l.textContent?.includes('Create a virtual hard disk'),
    ),
  );
  await click(must(create.querySelector('input')));
  await type(inputLabelled('Size (GB):'), '2');
}

describe('New Virtual Machine wizard', () => {
  it('creates the VM and its new disk with one request', async () => {
    const created: MethodArgs<'vm.create'>[] = [];
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.create': (args) => {
        created.push(args);
        return {
          id: uuid(7),
          name: args.config.name,
          state: 'Off',
          memoryMiB: 512,
          processorCount: 1,
          folder: `/tmp/berth/vms/${uuid(7)}`,
          config: {},
        };
      },
    });
    let closed = false;
    await open(api, () => (closed = true));
    await fillIn();
    await click(buttonNamed('Finish'));
    expect(created).toHaveLength(1);
    expect(created[0]?.newDisks).toEqual([
      { name: 'New Virtual Machine.qcow2', format: 'qcow2', sizeBytes: 2 * 1024 ** 3 },
    ]);
    expect(created[0]?.config.boot).toMatchObject({ kernelPath: '/boot/vmlinux' });
    expect(api.calls.map((c) => c.method)).not.toContain('disk.create');
    expect(api.calls.map((c) => c.method)).not.toContain('vm.update');
    expect(closed).toBe(true);
  });

  it('shows why the VM could not be created and stays open', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.create': () => {
        throw new BridgeError(
          'DISK_NO_SPACE',
          '/tmp/berth/vms/x/disks/New Virtual Machine.qcow2: no space left on device',
        );
      },
    });
    let closed = false;
    await open(api, () => (closed = true));
    await fillIn();
    await click(buttonNamed('Finish'));
    expect(dom.container.querySelector('[role="alert"]')?.textContent).toMatch(/no space left on device/);
    expect(closed).toBe(false);
    expect(buttonNamed('Finish').disabled).toBe(false);
  });
});
