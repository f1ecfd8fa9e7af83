// Settings > Network Adapter as a user edits it: restricted mode and a host port forward on a
// NAT adapter reach vm.update as the configuration the services check; a refusal is shown
// and the dialog stays open with what was entered.
import { act } from 'react';
import { describe, expect, it } from 'vitest';

import { BridgeError, type MethodArgs } from '../../app/api/bridge';
import { VmConfig } from '../../app/api/config';
import type { VmDetails } from '../../app/api/vm';
import { keys } from '../src/cache';
import { SettingsDialog } from '../src/dialogs/Settings';
import { buttonNamed as buttonIn, click, domPerTest, newQueryClient, type, withApi } from './dom';
import { FakeApi, must, uuid } from './fixtures';

const MAC = '02:00:00:12:34:56';
const details: VmDetails = {
  id: uuid(7),
  name: 'web1',
  state: 'Off',
  memoryMiB: 64,
  processorCount: 1,
  folder: '/tmp/berth/vms/web1',
  config: VmConfig.parse({
    schemaVersion: 2,
    id: uuid(7),
    name: 'web1',
    memory: { startupMiB: 64 },
    boot: { kind: 'pvh', kernelPath: '/boot/vmlinux', cmdline: '' },
    network: [{ kind: 'nat', mac: MAC }],
  }),
};

const dom = domPerTest();

async function open(api: FakeApi, onClose: () => void): Promise<void> {
  await dom.render(withApi(api, newQueryClient(), <SettingsDialog vmId={details.id} onClose={onClose} />));
  await act(async () => new Promise((r) => setTimeout(r, 0)));
}

const buttonNamed = (text: string) => buttonIn(dom.container, text);
const field = (label: string): HTMLInputElement =>
  must(dom.container.querySelector<HTMLInputElement>(`input[aria-label="${label}"]`), `the field '${label}'`);

async function addForward(): Promise<void> {
  await click(buttonNamed('Network AdapterNAT'));
  const restricted = must(
    [...dom.container.querySelectorAll<HTMLLabelElement>('label.check')].find((l) =>
      l.textContent?.includes('Restricted'),
    ),
  );
  await click(must(restricted.querySelector('input')));
  await click(buttonNamed('Add Port Forward'));
  await type(field('Host port'), '2222');
  await type(field('Guest port'), '22');
}

describe('Settings: network adapter', () => {
  it('sends restricted mode and a port forward with the adapter, keeping its MAC', async () => {
    let updated: MethodArgs<'vm.update'> | undefined;
    const api = new FakeApi({
      'vm.get': () => details,
      'vm.update': (args) => {
        updated = args;
        return details;
      },
    });
    let closed = false;
    await open(api, () => (closed = true));
    await addForward();
    await click(buttonNamed('OK'));
    expect(updated).toEqual({
      vm: details.id,
      patch: {
        network: [
          {
            kind: 'nat',
            mac: MAC,
            restricted: true,
            portForwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 2222, guestPort: 22 }],
          },
        ],
      },
    });
    expect(closed).toBe(true);
  });

  it('shows why the services refused the forward and keeps what was entered', async () => {
    const message = 'network.0.portForwards.0.hostPort: Too small: expected number to be >=1';
    const api = new FakeApi({
      'vm.get': () => details,
      'vm.update': () => {
        throw new BridgeError('INVALID_CONFIG', message);
      },
    });
    let closed = false;
    await open(api, () => (closed = true));
    await addForward();
    await type(field('Host port'), '');
    await click(buttonNamed('OK'));
    expect(dom.container.querySelector('[role="alert"]')?.textContent).toContain(message);
    expect(closed).toBe(false);
    expect(field('Guest port').value).toBe('22');
    expect(field('Host port').value).toBe('');
  });
});

describe('Settings: the configuration it edits', () => {
  // After a checkpoint is applied the window's copy of the VM is stale until the service
  // answers again: Settings opened then must edit the service's configuration, not the copy.
  it('waits for a refetch in flight instead of editing a stale copy', async () => {
    const stale: VmDetails = {
      ...details,
      memoryMiB: 96,
      config: VmConfig.parse({ ...details.config, memory: { startupMiB: 96 } }),
    };
    let answer: (d: VmDetails) => void = () => undefined;
    const api = new FakeApi({ 'vm.get': () => new Promise<VmDetails>((r) => (answer = r)) });
    const client = newQueryClient();
    client.setQueryData(keys.vm(details.id), stale);
    await client.invalidateQueries({ queryKey: keys.vm(details.id) });
    await dom.render(withApi(api, client, <SettingsDialog vmId={details.id} onClose={() => undefined} />));
    await act(async () => new Promise((r) => setTimeout(r, 0)));
    expect(dom.container.textContent).toContain('Loading...');
    await act(async () => answer(details));
    // The answer reaches the form through react-query's notification and an effect: a few
    // turns of the event loop.
    for (let i = 0; i < 100 && dom.container.textContent?.includes('Loading...'); i++) {
      await act(async () => new Promise((r) => setTimeout(r, 10)));
    }
    expect(buttonNamed('Memory64 MB')).toBeTruthy();
  });
});
