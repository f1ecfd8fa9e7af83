// The Details pane's thumbnail as a user sees it: a running Generation 1 or 2 VM's screen,
// asked for again every second while shown; the dark box for a VM that is off, boots a
// kernel, or has its display turned off; a refusal (no picture yet) keeps the box.
import { act } from 'react';
import { describe, expect, it } from 'vitest';

import { BridgeError } from '../../app/api/bridge';
import { VmConfig } from '../../app/api/config';
import type { VmDetails, VmState } from '../../app/api/vm';
import { DetailsPane } from '../src/Details';
import { domPerTest, newQueryClient, withApi } from './dom';
import { FakeApi, must, vm as summary } from './fixtures';

const dom = domPerTest();
// A 1x1 PNG (what the worker sends is a real PNG too; the pane only shows it).
const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC';

function details(state: VmState, boot: unknown): { vm: ReturnType<typeof summary>; details: VmDetails } {
  const s = summary(1, state);
  return {
    vm: s,
    details: {
      id: s.id,
      name: s.name,
      state,
      memoryMiB: 1024,
      processorCount: 1,
      folder: `/tmp/berth/vms/${s.name}`,
      config: VmConfig.parse({ schemaVersion: 2, id: s.id, name: s.name, memory: { startupMiB: 1024 }, boot }),
    },
  };
}

async function show(api: FakeApi, d: ReturnType<typeof details>): Promise<void> {
  await dom.render(withApi(api, newQueryClient(), <DetailsPane vm={d.vm} details={d.details} count={1} />));
}
const settle = (ms = 0) => act(async () => new Promise((r) => setTimeout(r, ms)));
const screen = () => dom.container.querySelector<HTMLImageElement>('img.thumb-screen');

describe('the Details thumbnail', () => {
  it("shows a running VM's screen and asks for it again every second while shown", async () => {
    const d = details('Running', { kind: 'bios' });
    const api = new FakeApi({ 'vm.thumbnail': () => ({ png: PNG_1X1 }) });
    await show(api, d);
    await settle();
    const img = must(screen(), 'the screen');
    expect(img.alt).toBe(`The screen of ${d.vm.name}`);
    expect(img.src).toBe(`data:image/png;base64,${PNG_1X1}`);
    const asked = api.calls.filter((c) => c.method === 'vm.thumbnail').length;
    expect(api.calls[0]).toEqual({ method: 'vm.thumbnail', args: { vm: d.vm.id } });
    await settle(1100);
    expect(api.calls.filter((c) => c.method === 'vm.thumbnail').length).toBeGreaterThan(asked);
    await dom.render(null);
    const stopped = api.calls.length;
    await settle(1100);
    expect(api.calls.length).toBe(stopped);
  });

  it('keeps the dark box, without asking, for a VM that is off, boots a kernel or has no display', async () => {
    const cases = [
      details('Off', { kind: 'uefi' }),
      details('Running', { kind: 'pvh', kernelPath: '/k' }),
      details('Running', { kind: 'bios', display: false }),
    ];
    for (const d of cases) {
      const api = new FakeApi({});
      await show(api, d);
      await settle();
      expect(screen()).toBeNull();
      expect(dom.container.querySelector('.thumb')).not.toBeNull();
      expect(api.calls).toEqual([]);
    }
  });

  it('keeps the dark box while the guest has set no display mode yet', async () => {
    const d = details('Running', { kind: 'uefi' });
    const api = new FakeApi({
      'vm.thumbnail': () => {
        throw new BridgeError('INVALID_STATE', 'the display shows nothing yet');
      },
    });
    await show(api, d);
    await settle();
    expect(screen()).toBeNull();
    expect(dom.container.querySelector('.thumb-text')?.textContent).toBe('>_');
  });
});
