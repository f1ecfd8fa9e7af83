// The window over a fake BerthApi: events pushed by the service land in the react-query
// cache and on screen (no polling), the actions follow the state, errors show where the
// action was taken.
import { QueryClient } from '@tanstack/react-query';
import { act } from 'react';
import { describe, expect, it } from 'vitest';

import type { BerthEvent } from '../../app/api/bridge';
import { BridgeError } from '../../app/api/bridge';
import type { VmSummary } from '../../app/api/vm';
import { App } from '../src/App';
import { applyEvents, connectCache, keys, mergeList } from '../src/cache';
import { domPerTest, newQueryClient, withApi } from './dom';
import { FakeApi, must, stats, vm } from './fixtures';

const hostInfo = {
  hostname: 'testhost',
  platform: 'linux',
  arch: 'x64',
  berthVersion: '0.1.0',
  dataRoot: '/tmp/berth',
  transport: 'web' as const,
};

const dom = domPerTest();

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await act(async () => {
      await new Promise((r) => setTimeout(r, 5));
    });
  }
}

async function mount(api: FakeApi): Promise<QueryClient> {
  const client = newQueryClient();
  connectCache(api, client, (flush) => queueMicrotask(flush));
  await dom.render(withApi(api, client, <App />));
  await settle();
  return client;
}

const rows = () => [...dom.container.querySelectorAll<HTMLElement>('.vm-row')];
const cellTexts = (row: HTMLElement) => [...row.querySelectorAll('[role="gridcell"]')].map((c) => c.textContent);
const action = (id: string) =>
  dom.container.querySelector<HTMLButtonElement>(`.actions-pane button[data-action="${id}"]`);

describe('cache updates from events', () => {
  it('mergeList keeps unchanged rows and replaces changed ones', () => {
    const old = [vm(1, 'Running'), vm(2, 'Off')];
    const s = stats({ cpuUsagePercent: 42 });
    const next = mergeList(
      old,
      new Map(),
      new Map([
        [must(old[0]).id, s],
        [must(old[1]).id, s],
      ]),
      new Set(),
    );
    expect(next[0]?.stats).toBe(s);
    expect(next[1]).toBe(old[1]); // stats for a VM that is not running are ignored
    expect(mergeList(old, new Map(), new Map(), new Set())).toBe(old);
  });
  it('applies vm, vm-removed and stats batches to the list in one write', () => {
    const client = new QueryClient();
    const a = vm(1, 'Running');
    const b = vm(2, 'Off');
    client.setQueryData<VmSummary[]>(keys.vms, [a, b]);
    let writes = 0;
    client.getQueryCache().subscribe((e) => {
      if (e.type === 'updated') writes++;
    });
    const events: BerthEvent[] = [
      {
        topic: 'stats',
        payload: {
          at: new Date().toISOString(),
          items: [{ id: a.id, state: 'Running', stats: stats({ cpuUsagePercent: 77 }) }],
        },
      },
      { topic: 'vm', payload: { vm: vm(3, 'Off', { name: 'new' }) } },
      { topic: 'vm-removed', payload: { id: b.id } },
    ];
    applyEvents(client, events);
    const list = must(client.getQueryData<VmSummary[]>(keys.vms));
    expect(list.map((v) => v.name)).toEqual(['vm1', 'new']);
    expect(list[0]?.stats?.cpuUsagePercent).toBe(77);
    expect(writes).toBe(1);
  });
});

describe('VM details in the cache', () => {
  it('are refetched after a vm or checkpoints event: the configuration is in no event', async () => {
    const client = new QueryClient();
    let memoryMiB = 96;
    const details = () => ({ ...vm(1, 'Off'), memoryMiB, config: { memory: { startupMiB: memoryMiB } } });
    await client.fetchQuery({ queryKey: keys.vm(vm(1).id), queryFn: details });
    expect(client.getQueryData(keys.vm(vm(1).id))).toMatchObject({ config: { memory: { startupMiB: 96 } } });
    // A checkpoint was applied elsewhere (the CLI, another window): the service says so.
    memoryMiB = 64;
    applyEvents(client, [{ topic: 'checkpoints', payload: { vmId: vm(1).id } }]);
    expect(client.getQueryState(keys.vm(vm(1).id))?.isInvalidated).toBe(true);
    await client.refetchQueries({ queryKey: keys.vm(vm(1).id), type: 'all' });
    expect(client.getQueryData(keys.vm(vm(1).id))).toMatchObject({ config: { memory: { startupMiB: 64 } } });
    applyEvents(client, [{ topic: 'vm', payload: { vm: vm(1, 'Off') } }]);
    expect(client.getQueryState(keys.vm(vm(1).id))?.isInvalidated).toBe(true);
  });
});

describe('the window', () => {
  it('shows the list, then follows pushed state and stats without asking again', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.list': () => [vm(1, 'Off', { name: 'web1' }), vm(2, 'Off', { name: 'db1' })],
    });
    await mount(api);
    expect(rows().map((r) => cellTexts(r)[0])).toEqual(['db1', 'web1']);
    const listCalls = () => api.calls.filter((c) => c.method === 'vm.list').length;
    expect(listCalls()).toBe(1);

    await act(async () => {
      api.emit('vm', {
        vm: vm(1, 'Running', { name: 'web1', stats: stats({ cpuUsagePercent: 12, uptimeMs: 3_723_000 }) }),
      });
    });
    await settle();
    const web1 = must(rows().find((r) => cellTexts(r)[0] === 'web1'));
    expect(cellTexts(web1).slice(0, 5)).toEqual(['web1', 'Running', '12 %', '512 MB', '01:02:03']);

    await act(async () => {
      api.emit('stats', {
        at: new Date().toISOString(),
        items: [{ id: vm(1).id, state: 'Running', stats: stats({ cpuUsagePercent: 99, uptimeMs: 3_724_000 }) }],
      });
    });
    await settle();
    expect(cellTexts(must(rows().find((r) => cellTexts(r)[0] === 'web1'))).slice(2, 5)).toEqual([
      '99 %',
      '512 MB',
      '01:02:04',
    ]);

    await act(async () => api.emit('vm-removed', { id: vm(2).id }));
    await settle();
    expect(rows().map((r) => cellTexts(r)[0])).toEqual(['web1']);
    expect(listCalls()).toBe(1);
  });

  it('sorts by a column header and enables actions by the selected VM state', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.list': () => [
        vm(1, 'Running', { name: 'a', stats: stats({ cpuUsagePercent: 1 }) }),
        vm(2, 'Running', { name: 'b', stats: stats({ cpuUsagePercent: 50 }) }),
      ],
      'vm.get': () => {
        throw new BridgeError('NOT_FOUND', 'nope');
      },
      'checkpoint.list': ({ vm: id }) => ({ vm: id, now: null, checkpoints: [] }),
    });
    await mount(api);
    const cpuHeader = must(
      [...dom.container.querySelectorAll<HTMLButtonElement>('[role="columnheader"] button')].find((b) =>
        b.textContent?.startsWith('CPU'),
      ),
    );
    await act(async () => cpuHeader.click());
    await act(async () => cpuHeader.click());
    expect(rows().map((r) => cellTexts(r)[0])).toEqual(['b', 'a']);
    expect(dom.container.querySelector('[role="columnheader"][aria-sort="descending"]')?.textContent).toMatch(
      /CPU Usage/,
    );

    const row = must(rows()[1]);
    await act(async () => row.dispatchEvent(new MouseEvent('mousedown', { bubbles: true, button: 0 })));
    await settle();
    expect(action('start')?.disabled).toBe(true);
    expect(action('turn-off')?.disabled).toBe(false);
    expect(action('pause')?.disabled).toBe(false);
    expect(action('delete')?.disabled).toBe(true);
    // 'Now' with no checkpoint yet
    expect(dom.container.querySelector('.checkpoint-tree')?.textContent).toBe('Now');
  });

  it('shows a refused action under the section that ran it', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.list': () => [vm(1, 'Running', { name: 'web1' })],
      'vm.get': () => {
        throw new BridgeError('NOT_FOUND', 'nope');
      },
      'checkpoint.list': ({ vm: id }) => ({ vm: id, now: null, checkpoints: [] }),
      'vm.pause': () => {
        throw new BridgeError('INVALID_STATE', "cannot pause 'web1': it is Off; start it first");
      },
    });
    await mount(api);
    await act(async () => must(rows()[0]).dispatchEvent(new MouseEvent('mousedown', { bubbles: true, button: 0 })));
    await settle();
    await act(async () => must(action('pause')).click());
    await settle();
    const section = dom.container.querySelector('section[aria-label="Actions for web1"]');
    expect(section?.querySelector('[role="alert"]')?.textContent).toMatch(/cannot pause 'web1'/);
  });

  it('Shut Down: a guest that does not respond is named, and the dialog offers Turn Off for it', async () => {
    const message =
      "'web1' did not shut down within 120 s: its guest did not act on the power button (it may not handle ACPI, or be busy or still starting); it is still running. Turn it off instead (berth vm turn-off web1), or try again later";
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.list': () => [vm(1, 'Running', { name: 'web1' })],
      'vm.get': () => {
        throw new BridgeError('NOT_FOUND', 'nope');
      },
      'checkpoint.list': ({ vm: id }) => ({ vm: id, now: null, checkpoints: [] }),
      'vm.shutDown': () => {
        throw new BridgeError('SHUTDOWN_TIMEOUT', message);
      },
      'vm.turnOff': () => vm(1, 'Off', { name: 'web1' }),
    });
    await mount(api);
    await act(async () => must(rows()[0]).dispatchEvent(new MouseEvent('mousedown', { bubbles: true, button: 0 })));
    await settle();
    await act(async () => must(action('shut-down')).click());
    await settle();
    const dialog = () => must(document.querySelector<HTMLElement>('[role="dialog"]'), 'the dialog');
    const button = (label: string) =>
      [...dialog().querySelectorAll<HTMLButtonElement>('button')].find((b) => b.textContent === label);
    await act(async () => must(button('Shut Down'), 'Shut Down').click());
    await settle();
    expect(dialog().querySelector('[role="alert"]')?.textContent).toContain(message);
    expect(button('Shut Down')).toBeUndefined();
    await act(async () => must(button('Turn Off'), 'Turn Off').click());
    await settle();
    expect(
      api.calls.map((c) => c.method).filter((m) => m.startsWith('vm.') && m !== 'vm.list' && m !== 'vm.get'),
    ).toEqual(['vm.shutDown', 'vm.turnOff']);
    expect(document.querySelector('[role="dialog"]')).toBeNull();
  });

  it('a Saved VM: the State column says Saved, Start resumes it, Delete Saved State asks and deletes', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.list': () => [vm(1, 'Saved', { name: 'web1' }), vm(2, 'Running', { name: 'web2' })],
      'vm.get': () => {
        throw new BridgeError('NOT_FOUND', 'nope');
      },
      'checkpoint.list': ({ vm: id }) => ({ vm: id, now: null, checkpoints: [] }),
      'vm.deleteSavedState': () => vm(1, 'Off', { name: 'web1' }),
    });
    await mount(api);
    expect(cellTexts(must(rows()[0])).slice(0, 2)).toEqual(['web1', 'Saved']);
    await act(async () => must(rows()[0]).dispatchEvent(new MouseEvent('mousedown', { bubbles: true, button: 0 })));
    await settle();
    expect(action('start')?.textContent).toBe('Start');
    expect(action('start')?.disabled).toBe(false);
    expect(action('turn-off')?.disabled).toBe(true);
    expect(action('save')?.disabled).toBe(true);
    expect(action('move')?.disabled).toBe(false);
    await act(async () => must(action('delete-saved-state'), 'Delete Saved State').click());
    await settle();
    const dialog = () => must(document.querySelector<HTMLElement>('[role="dialog"]'), 'the dialog');
    expect(dialog().textContent).toContain("delete the saved state of 'web1'");
    const button = [...dialog().querySelectorAll<HTMLButtonElement>('button')].find((b) => b.textContent === 'Delete');
    await act(async () => must(button, 'Delete').click());
    await settle();
    expect(api.calls.filter((c) => c.method === 'vm.deleteSavedState').map((c) => c.args)).toEqual([{ vm: vm(1).id }]);
    expect(document.querySelector('[role="dialog"]')).toBeNull();
    // A running VM offers Save, and no Delete Saved State.
    await act(async () => must(rows()[1]).dispatchEvent(new MouseEvent('mousedown', { bubbles: true, button: 0 })));
    await settle();
    expect(action('save')?.disabled).toBe(false);
    expect(action('delete-saved-state')).toBeNull();
  });

  it('keyboard: arrows move the selection, Ctrl+A selects all, the context menu lists the actions', async () => {
    const api = new FakeApi({
      'host.info': () => hostInfo,
      'vm.list': () => [vm(1, 'Off', { name: 'a' }), vm(2, 'Off', { name: 'b' }), vm(3, 'Running', { name: 'c' })],
      'vm.get': () => {
        throw new BridgeError('NOT_FOUND', 'nope');
      },
      'checkpoint.list': ({ vm: id }) => ({ vm: id, now: null, checkpoints: [] }),
    });
    await mount(api);
    const grid = must(dom.container.querySelector<HTMLElement>('[role="grid"]'));
    const key = (k: string, extra: KeyboardEventInit = {}) =>
      act(async () => {
        grid.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, ...extra }));
      });
    await key('ArrowDown');
    await key('ArrowDown');
    expect(dom.container.querySelector('.vm-row.selected')?.textContent).toMatch(/^b/);
    await key('a', { ctrlKey: true });
    expect(dom.container.querySelectorAll('.vm-row.selected').length).toBe(3);
    expect(dom.container.querySelector('section[aria-label="Actions for 3 virtual machines"]')).not.toBeNull();
    await key('F10', { shiftKey: true });
    const menu = document.querySelector('[role="menu"]');
    expect(menu).not.toBeNull();
    const start = must(menu).querySelector('[data-action="start"]');
    expect(start?.getAttribute('aria-disabled')).toBe('true'); // c is running
  });
});
