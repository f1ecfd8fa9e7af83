// The parts with logic: action enablement by state, sorting, selection, wizard validation.
import { describe, expect, it } from 'vitest';

import { checkpointActionsFor, vmActionsFor } from '../src/actions';
import { flattenCheckpoints } from '../src/Checkpoints';
import { defaultNewVmForm, toNewDisks, toRequest, validateNewVm } from '../src/dialogs/newVmForm';
import { settingsPatch } from '../src/dialogs/Settings';
import { clickRow, emptySelection, keyMove } from '../src/selection';
import { compareVms, nextSort, sortVms } from '../src/sort';
import { must, stats, uuid, vm } from './fixtures';

const enabled = (states: Parameters<typeof vmActionsFor>[0]) =>
  Object.fromEntries(vmActionsFor(states).map((a) => [a.id, a.enabled]));

describe('action enablement', () => {
  it('follows the lifecycle rules for an Off VM', () => {
    const e = enabled([{ state: 'Off' }]);
    expect(e.start).toBe(true);
    expect(e['turn-off']).toBe(false);
    expect(e['shut-down']).toBe(false);
    expect(e.pause).toBe(false);
    expect(e.reset).toBe(false);
    expect(e.save).toBe(false);
    expect(e['delete-saved-state']).toBeUndefined(); // only offered for a Saved VM
    expect(e.delete).toBe(true);
    expect(e.export).toBe(true);
    expect(e.move).toBe(true);
    expect(e.checkpoint).toBe(true);
    expect(e.revert).toBe(false);
    expect(e.connect).toBe(true);
  });
  it('follows the lifecycle rules for a Running VM', () => {
    const e = enabled([{ state: 'Running', hasCurrentCheckpoint: true }]);
    expect(e.start).toBe(false);
    expect(e['turn-off']).toBe(true);
    expect(e['shut-down']).toBe(true);
    expect(e.pause).toBe(true);
    expect(e.reset).toBe(true);
    expect(e.save).toBe(true);
    expect(e['delete-saved-state']).toBeUndefined();
    expect(e.delete).toBe(false);
    // A standard checkpoint of a running VM holds its memory; Revert turns it off first.
    expect(e.revert).toBe(true);
    expect(e.checkpoint).toBe(true);
    expect(e.export).toBe(false);
    expect(e.move).toBe(true); // saved for the move, resumed at the destination
  });
  it('a Saved VM offers Start and Delete Saved State, not Turn Off, Save or Pause', () => {
    const e = enabled([{ state: 'Saved', hasCurrentCheckpoint: true }]);
    const labels = vmActionsFor([{ state: 'Saved' }]).map((a) => a.label);
    expect(labels).toContain('Start');
    expect(labels).toContain('Delete Saved State...');
    expect(e.start).toBe(true);
    expect(e['delete-saved-state']).toBe(true);
    expect(e['turn-off']).toBe(false);
    expect(e['shut-down']).toBe(false);
    expect(e.save).toBe(false);
    expect(e.pause).toBe(false);
    expect(e.reset).toBe(false);
    expect(e.delete).toBe(true);
    expect(e.export).toBe(true);
    expect(e.move).toBe(true);
    expect(e.revert).toBe(true);
    expect(e.checkpoint).toBe(false);
    expect(e.rename).toBe(true);
  });
  it('Save is offered for a paused VM, and Delete Saved State for a selection with a Saved VM', () => {
    expect(enabled([{ state: 'Paused' }]).save).toBe(true);
    const mixed = vmActionsFor([{ state: 'Saved' }, { state: 'Off' }]);
    expect(mixed.find((a) => a.id === 'delete-saved-state')?.enabled).toBe(false);
    expect(enabled([{ state: 'Saved' }, { state: 'Saved' }])['delete-saved-state']).toBe(true);
    expect(mixed.map((a) => a.id)).not.toContain('move'); // one VM at a time
  });
  it('shows Resume in place of Pause for a paused VM', () => {
    const ids = vmActionsFor([{ state: 'Paused' }]).map((a) => a.id);
    expect(ids).toContain('resume');
    expect(ids).not.toContain('pause');
    expect(enabled([{ state: 'Paused' }]).reset).toBe(false);
  });
  it('allows nothing but Turn Off and Connect while Starting or Stopping', () => {
    for (const state of ['Starting', 'Stopping'] as const) {
      const e = enabled([{ state }]);
      expect(e['turn-off']).toBe(true);
      expect(e.start).toBe(false);
      expect(e.rename).toBe(false);
      expect(e.checkpoint).toBe(false);
      expect(e.delete).toBe(false);
      expect(e.save).toBe(false);
      expect(e.move).toBe(false);
    }
  });
  it('Failed VMs can be started, turned off (clears the failure) and deleted', () => {
    const e = enabled([{ state: 'Failed' }]);
    expect(e.start).toBe(true);
    expect(e['turn-off']).toBe(true);
    expect(e.delete).toBe(true);
    expect(e.pause).toBe(false);
  });
  it('multi-selection offers the multi actions, enabled only when every VM allows them', () => {
    const actions = vmActionsFor([{ state: 'Off' }, { state: 'Running' }]);
    const ids = actions.map((a) => a.id);
    expect(ids).not.toContain('settings');
    expect(ids).not.toContain('rename');
    expect(ids).toContain('start');
    expect(actions.find((a) => a.id === 'start')?.enabled).toBe(false);
    expect(enabled([{ state: 'Off' }, { state: 'Off' }]).start).toBe(true);
  });
  it('checkpoints disabled in the settings disable Checkpoint', () => {
    expect(enabled([{ state: 'Off', checkpointsDisabled: true }]).checkpoint).toBe(false);
  });
  it('checkpoint actions: Apply on a settled VM, Delete while Off; Delete Subtree needs children', () => {
    const a = Object.fromEntries(checkpointActionsFor({ state: 'Off' }, false).map((x) => [x.id, x.enabled]));
    expect(a.apply).toBe(true);
    expect(a['delete-subtree']).toBe(false);
    expect(enabled([{ state: 'Off', hasCurrentCheckpoint: true }]).revert).toBe(true);
    const b = Object.fromEntries(checkpointActionsFor({ state: 'Running' }, true).map((x) => [x.id, x.enabled]));
    expect(b.apply).toBe(true); // the service turns the VM off first
    expect(b.delete).toBe(false);
    expect(b['delete-subtree']).toBe(false);
    expect(b.export).toBe(false);
    const c = Object.fromEntries(checkpointActionsFor({ state: 'Saved' }, true).map((x) => [x.id, x.enabled]));
    expect(c.apply).toBe(true);
    expect(c.export).toBe(true);
    expect(c.delete).toBe(false);
    const d = Object.fromEntries(checkpointActionsFor({ state: 'Starting' }, true).map((x) => [x.id, x.enabled]));
    expect(d.apply).toBe(false);
    expect(checkpointActionsFor(undefined, false)).toEqual([]);
  });
});

describe('sorting', () => {
  const list = [
    vm(1, 'Off', { name: 'web10' }),
    vm(2, 'Running', { name: 'web2', stats: stats({ cpuUsagePercent: 50, uptimeMs: 10 }) }),
    vm(3, 'Running', { name: 'db', stats: stats({ cpuUsagePercent: 5, uptimeMs: 99 }) }),
    vm(4, 'Paused', { name: 'Alpha' }),
  ];
  it('sorts names naturally and case-insensitively', () => {
    expect(sortVms(list, { key: 'name', dir: 'asc' }).map((v) => v.name)).toEqual(['Alpha', 'db', 'web2', 'web10']);
    expect(sortVms(list, { key: 'name', dir: 'desc' }).map((v) => v.name)).toEqual(['web10', 'web2', 'db', 'Alpha']);
  });
  it('sorts states by liveness and numbers numerically, empty cells last both ways', () => {
    expect(sortVms(list, { key: 'state', dir: 'asc' }).map((v) => v.name)).toEqual(['db', 'web2', 'Alpha', 'web10']);
    expect(sortVms(list, { key: 'cpu', dir: 'desc' }).map((v) => v.name)).toEqual(['web2', 'db', 'Alpha', 'web10']);
    expect(sortVms(list, { key: 'cpu', dir: 'asc' }).at(-1)?.name).toBe('web10');
    expect(
      sortVms(list, { key: 'uptime', dir: 'asc' })
        .map((v) => v.name)
        .slice(0, 2),
    ).toEqual(['web2', 'db']);
  });
  it('breaks ties by name so the order is stable', () => {
    const a = vm(5, 'Off', { name: 'b' });
    const b = vm(6, 'Off', { name: 'a' });
    expect(compareVms(a, b, { key: 'state', dir: 'asc' })).toBeGreaterThan(0);
  });
  it('clicking a header flips the direction, another header starts ascending', () => {
    expect(nextSort({ key: 'name', dir: 'asc' }, 'name')).toEqual({ key: 'name', dir: 'desc' });
    expect(nextSort({ key: 'name', dir: 'desc' }, 'cpu')).toEqual({ key: 'cpu', dir: 'asc' });
  });
});

describe('selection', () => {
  const order = ['a', 'b', 'c', 'd', 'e'];
  it('click, ctrl+click and shift+click', () => {
    let s = clickRow(emptySelection, order, 'b', { ctrl: false, shift: false });
    expect([...s.ids]).toEqual(['b']);
    s = clickRow(s, order, 'd', { ctrl: false, shift: true });
    expect([...s.ids].sort()).toEqual(['b', 'c', 'd']);
    s = clickRow(s, order, 'c', { ctrl: true, shift: false });
    expect([...s.ids].sort()).toEqual(['b', 'd']);
  });
  it('keyboard: arrows, shift extends, Home/End, PageDown, Ctrl+A', () => {
    let s = keyMove(emptySelection, order, 'ArrowDown', { ctrl: false, shift: false }, 2);
    expect(s?.focus).toBe('a');
    s = keyMove(must(s), order, 'ArrowDown', { ctrl: false, shift: true }, 2);
    expect([...must(s).ids].sort()).toEqual(['a', 'b']);
    s = keyMove(must(s), order, 'End', { ctrl: false, shift: false }, 2);
    expect([...must(s).ids]).toEqual(['e']);
    s = keyMove(must(s), order, 'Home', { ctrl: false, shift: false }, 2);
    s = keyMove(must(s), order, 'PageDown', { ctrl: false, shift: false }, 2);
    expect(s?.focus).toBe('c');
    s = keyMove(must(s), order, 'a', { ctrl: true, shift: false }, 2);
    expect(s?.ids.size).toBe(5);
    expect(keyMove(must(s), order, 'x', { ctrl: false, shift: false }, 2)).toBeNull();
  });
});

describe('New Virtual Machine wizard validation', () => {
  it('asks for a kernel on the boot page and accepts the defaults otherwise', () => {
    const v = validateNewVm(defaultNewVmForm);
    expect(v.boot.join()).toMatch(/Kernel: is required/);
    expect(v.name).toEqual([]);
    expect(v.memory).toEqual([]);
    const ok = validateNewVm({ ...defaultNewVmForm, kernelPath: '/k' });
    expect(Object.values(ok).flat()).toEqual([]);
  });
  it('puts each problem on the page that owns the field', () => {
    const v = validateNewVm({ ...defaultNewVmForm, kernelPath: '/k', name: ' x', memoryMiB: 1, processors: 0 });
    expect(v.name.join()).toMatch(/Name: must not start or end with spaces/);
    expect(v.memory.join()).toMatch(/Startup memory \(MB\): must be at least 2/);
    expect(v.processors.join()).toMatch(/Number of virtual processors: must be at least 1/);
  });
  it('checks the disk page by its choice', () => {
    expect(validateNewVm({ ...defaultNewVmForm, kernelPath: '/k', disk: 'existing' }).disk).toHaveLength(1);
    expect(
      validateNewVm({ ...defaultNewVmForm, kernelPath: '/k', disk: 'new', newDiskSizeGiB: 0 }).disk.join(),
    ).toMatch(/Size/);
    expect(
      validateNewVm({ ...defaultNewVmForm, kernelPath: '/k', disk: 'new', newDiskSizeGiB: 0.0001 }).disk.join(),
    ).toMatch(/Size \(GB\): must be between 1 and 65536/);
    expect(
      validateNewVm({ ...defaultNewVmForm, kernelPath: '/k', disk: 'new', newDiskName: 'a/b' }).disk.join(),
    ).toMatch(/file name/);
  });
  it('sends the new disk with the VM, sized in whole MiB', () => {
    expect(toNewDisks({ ...defaultNewVmForm, disk: 'none' })).toEqual([]);
    expect(
      toNewDisks({
        ...defaultNewVmForm,
        disk: 'new',
        newDiskName: ' d.vhdx ',
        newDiskFormat: 'vhdx',
        newDiskSizeGiB: 1.5,
      }),
    ).toEqual([{ name: 'd.vhdx', format: 'vhdx', sizeBytes: 1536 * 1024 * 1024 }]);
  });
  it('builds the request the service takes', () => {
    const r = toRequest({
      ...defaultNewVmForm,
      kernelPath: '/k',
      cmdline: 'echo',
      testExitPort: true,
      network: 'nat',
      disk: 'existing',
      existingDiskPath: '/d.qcow2',
    });
    expect(r).toMatchObject({
      boot: { kind: 'pvh', kernelPath: '/k', cmdline: 'echo' },
      testExitPort: true,
      network: [{ kind: 'nat' }],
      disks: [{ slot: 0, kind: 'virtual', path: '/d.qcow2' }],
    });
    expect('initrdPath' in r.boot).toBe(false);
  });
  it('joins a host bridge by name, and says on the networking page when the name is missing', () => {
    const form = { ...defaultNewVmForm, kernelPath: '/k', network: 'bridge' as const, bridgeName: ' virbr0 ' };
    expect(toRequest(form).network).toEqual([{ kind: 'bridge', bridge: 'virbr0' }]);
    expect(validateNewVm(form).networking).toEqual([]);
    expect(validateNewVm({ ...form, bridgeName: ' ' }).networking).toEqual([
      'Bridge: is required: the host bridge to join (such as br0)',
    ]);
  });
});

describe('VM Settings patch', () => {
  it('sends only what changed; an emptied initrd is removed', () => {
    const base = {
      name: 'a',
      notes: '',
      memoryMiB: 512,
      processorCount: 1,
      bootKind: 'pvh' as const,
      kernelPath: '/k',
      initrdPath: '/i',
      cmdline: '',
      testExitPort: false,
      com1: true,
      checkpointType: 'standard' as const,
      standardCheckpointFallback: true,
      automaticStartAction: 'nothing' as const,
      automaticStartDelaySeconds: 0,
      automaticStopAction: 'turn-off' as const,
      disks: [],
      network: [],
      dvdDrives: [],
    };
    expect(settingsPatch(base, base)).toEqual({});
    expect(settingsPatch(base, { ...base, memoryMiB: 1024, initrdPath: '' })).toEqual({
      memoryMiB: 1024,
      initrdPath: null,
    });
    expect(settingsPatch(base, { ...base, network: [{ kind: 'nat', mac: '02:00:00:00:00:01' }] })).toEqual({
      network: [{ kind: 'nat', mac: '02:00:00:00:00:01' }],
    });
    expect(settingsPatch(base, { ...base, checkpointType: 'production', standardCheckpointFallback: false })).toEqual({
      checkpointType: 'production',
      standardCheckpointFallback: false,
    });
  });
});

describe('checkpoint tree', () => {
  it('says whether each checkpoint is a production or a standard one', () => {
    const cp = (n: number, type: 'production' | 'standard', parent: string | null) => ({
      id: uuid(n),
      name: `c${n}`,
      parent,
      createdAt: '2026-01-01T00:00:00.000Z',
      children: [],
      isNowParent: false,
      disks: [],
      excludedSlots: [],
      type,
      holdsMemory: false,
      stateBytes: null,
    });
    const flat = flattenCheckpoints({
      vm: 'v',
      now: uuid(2),
      checkpoints: [cp(1, 'production', null), cp(2, 'standard', uuid(1))],
    });
    expect(flat.map((f) => [f.label, f.title])).toEqual([
      ['c1', 'Production checkpoint, 2026-01-01T00:00:00.000Z'],
      ['c2', 'Standard checkpoint, 2026-01-01T00:00:00.000Z'],
      ['Now', 'Now'],
    ]);
  });

  it('marks a checkpoint that holds memory, with its size', () => {
    const flat = flattenCheckpoints({
      vm: 'v',
      now: uuid(1),
      checkpoints: [
        {
          id: uuid(1),
          name: 'live',
          parent: null,
          createdAt: '2026-01-01T00:00:00.000Z',
          children: [],
          isNowParent: true,
          disks: [],
          excludedSlots: [],
          type: 'standard',
          holdsMemory: true,
          stateBytes: 3 * 1024 * 1024,
        },
      ],
    });
    expect(flat[0]?.memory).toBe('3.0 MB');
    expect(flat[0]?.title).toBe(
      "Standard checkpoint, 2026-01-01T00:00:00.000Z, with the virtual machine's memory (3.0 MB)",
    );
  });
});
