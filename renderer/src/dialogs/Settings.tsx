// VM Settings: the hardware tree on the left (Boot or, for Generation 1 and 2, Firmware;
// Memory, Processor, the disks including passthrough disks from the host's list, the SCSI
// controller's DVD drives, network adapters, COM 1) and Management (Name,
// Notes, Checkpoints, Automatic Start/Stop), the page on the right; OK/Apply send one
// vm.update with what changed.
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';

import type { VmUpdatePatch } from '../../../app/api/bridge';
import { randomMac, type DiskAttachment, type NetworkAdapter, type VmConfig } from '../../../app/api/config';
import { call, useApi, useVmDetails } from '../context';
import { Dialog, ErrorBox, errorText, Row } from './common';
import {
  dvdProblems,
  DvdDrivePage,
  FirmwarePage,
  ScsiControllerPage,
  toDvdDrives,
  type DvdDraft,
  type FirmwareDraft,
} from './FirmwarePages';
import { AddDiskPage, DiskPage } from './DiskPages';
import { NetworkAdapterPage } from './NetworkAdapterPage';

interface Draft {
  name: string;
  notes: string;
  memoryMiB: number;
  processorCount: number;
  bootKind: 'pvh' | 'linux';
  kernelPath: string;
  initrdPath: string;
  cmdline: string;
  testExitPort: boolean;
  com1: boolean;
  checkpointType: VmConfig['checkpoints']['type'];
  standardCheckpointFallback: boolean;
  automaticStartAction: VmConfig['automaticStartAction'];
  automaticStartDelaySeconds: number;
  automaticStopAction: VmConfig['automaticStopAction'];
  disks: DiskAttachment[];
  network: NetworkAdapter[];
  // Generation 1 and 2 VMs.
  firmware?: FirmwareDraft;
  dvdDrives: DvdDraft[];
}

function draftOf(c: VmConfig): Draft {
  const boot =
    c.boot.kind === 'pvh' || c.boot.kind === 'linux' ? c.boot : { kind: 'pvh' as const, kernelPath: '', cmdline: '' };
  return {
    name: c.name,
    notes: c.notes,
    memoryMiB: c.memory.startupMiB,
    processorCount: c.processors.count,
    bootKind: boot.kind,
    kernelPath: boot.kernelPath,
    initrdPath: 'initrdPath' in boot ? (boot.initrdPath ?? '') : '',
    cmdline: boot.cmdline,
    testExitPort: c.testExitPort,
    com1: c.com1.enabled,
    checkpointType: c.checkpoints.type,
    standardCheckpointFallback: c.checkpoints.standardFallback,
    automaticStartAction: c.automaticStartAction,
    automaticStartDelaySeconds: c.automaticStartDelaySeconds,
    automaticStopAction: c.automaticStopAction,
    disks: c.disks,
    network: c.network,
    ...(c.boot.kind === 'uefi' || c.boot.kind === 'bios'
      ? {
          firmware: {
            kind: c.boot.kind,
            secureBoot: c.boot.kind === 'uefi' ? c.boot.secureBoot : false,
            bootOrder: [...c.boot.bootOrder],
            display: c.boot.display,
          },
        }
      : {}),
    dvdDrives: [...c.dvdDrives].sort((a, b) => a.slot - b.slot),
  };
}

// What changed between the stored config and the draft, as a vm.update patch.
export function settingsPatch(before: Draft, after: Draft): VmUpdatePatch {
  const p: VmUpdatePatch = {};
  if (after.name !== before.name) p.name = after.name;
  if (after.notes !== before.notes) p.notes = after.notes;
  if (after.memoryMiB !== before.memoryMiB) p.memoryMiB = after.memoryMiB;
  if (after.processorCount !== before.processorCount) p.processorCount = after.processorCount;
  if (after.firmware && before.firmware) {
    if (after.firmware.secureBoot !== before.firmware.secureBoot) p.secureBoot = after.firmware.secureBoot;
    if (after.firmware.bootOrder.join() !== before.firmware.bootOrder.join()) p.bootOrder = after.firmware.bootOrder;
    if (after.firmware.display !== before.firmware.display) p.display = after.firmware.display;
  } else {
    if (after.bootKind !== before.bootKind) p.bootKind = after.bootKind;
    if (after.kernelPath !== before.kernelPath) p.kernelPath = after.kernelPath;
    if (after.initrdPath !== before.initrdPath) p.initrdPath = after.initrdPath === '' ? null : after.initrdPath;
    if (after.cmdline !== before.cmdline) p.cmdline = after.cmdline;
  }
  if (JSON.stringify(after.dvdDrives) !== JSON.stringify(before.dvdDrives)) p.dvdDrives = toDvdDrives(after.dvdDrives);
  if (after.testExitPort !== before.testExitPort) p.testExitPort = after.testExitPort;
  if (after.com1 !== before.com1) p.com1 = after.com1;
  if (after.checkpointType !== before.checkpointType) p.checkpointType = after.checkpointType;
  if (after.standardCheckpointFallback !== before.standardCheckpointFallback) {
    p.standardCheckpointFallback = after.standardCheckpointFallback;
  }
  if (after.automaticStartAction !== before.automaticStartAction) p.automaticStartAction = after.automaticStartAction;
  if (after.automaticStartDelaySeconds !== before.automaticStartDelaySeconds) {
    p.automaticStartDelaySeconds = after.automaticStartDelaySeconds;
  }
  if (after.automaticStopAction !== before.automaticStopAction) {
    p.automaticStopAction = after.automaticStopAction;
  }
  if (JSON.stringify(after.disks) !== JSON.stringify(before.disks)) p.disks = after.disks;
  if (JSON.stringify(after.network) !== JSON.stringify(before.network)) p.network = after.network;
  return p;
}

type Page =
  | 'boot'
  | 'firmware'
  | 'scsi'
  | `dvd-${number}`
  | 'memory'
  | 'processor'
  | `disk-${number}`
  | 'add-disk'
  | `net-${number}`
  | 'com1'
  | 'name'
  | 'checkpoints'
  | 'auto';

export function SettingsDialog({ vmId, onClose }: { vmId: string; onClose: () => void }) {
  const api = useApi();
  const client = useQueryClient();
  const details = useVmDetails(vmId);
  const [base, setBase] = useState<Draft>();
  const [draft, setDraft] = useState<Draft>();
  const [page, setPage] = useState<Page>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    // Never a stale copy: while the details are being refetched (after a checkpoint was
    // applied, say), the form waits for the service's answer.
    if (details.data && !base && !details.isFetching) {
      const d = draftOf(details.data.config);
      setBase(d);
      setDraft(d);
    }
  }, [details.data, details.isFetching, base]);
  const running = details.data !== undefined && details.data.state !== 'Off' && details.data.state !== 'Failed';

  const apply = async (close: boolean) => {
    if (!base || !draft) return;
    setBusy(true);
    setError(undefined);
    try {
      const problems = dvdProblems(draft.dvdDrives);
      if (problems.length > 0) throw new Error(problems.join('; '));
      const patch = settingsPatch(base, draft);
      if (Object.keys(patch).length > 0) {
        const vm = await call(api, client, 'vm.update', { vm: vmId, patch });
        const d = draftOf(vm.config);
        setBase(d);
        setDraft(d);
      }
      if (close) onClose();
    } catch (e) {
      setError(errorText(e));
    }
    setBusy(false);
  };

  const title = `Settings for ${details.data?.name ?? ''} on ${'this host'}`;
  if (!draft) {
    return (
      <Dialog title={title} onClose={onClose}>
        {details.error ? <ErrorBox error={errorText(details.error)} /> : <p>Loading...</p>}
      </Dialog>
    );
  }
  const set = <K extends keyof Draft>(k: K, v: Draft[K]) => setDraft((d) => (d ? { ...d, [k]: v } : d));
  const first: Page = draft.firmware ? 'firmware' : 'boot';
  const shown: Page = page ?? first;
  const num = (s: string) => (s.trim() === '' ? NaN : Number(s));
  const fw = draft.firmware;
  const hw: { id: Page; label: string; sub?: string }[] = [
    fw
      ? { id: 'firmware', label: 'Firmware', sub: fw.kind === 'uefi' ? 'UEFI' : 'BIOS' }
      : { id: 'boot', label: 'Boot', sub: draft.kernelPath.split('/').pop() ?? '' },
    { id: 'memory', label: 'Memory', sub: `${draft.memoryMiB} MB` },
    {
      id: 'processor',
      label: 'Processor',
      sub: `${draft.processorCount} Virtual processor${draft.processorCount === 1 ? '' : 's'}`,
    },
    ...draft.disks.map((d, i) => ({
      id: `disk-${i}` as Page,
      label: d.kind === 'passthrough' ? 'Physical Hard Disk' : 'Hard Drive',
      sub:
        (d.kind === 'passthrough' ? d.deviceId : (d.path.split('/').pop() ?? '')) +
        (d.controller === 'scsi' ? ' (SCSI)' : ''),
    })),
    { id: 'add-disk', label: 'Add Hard Drive' },
    ...(fw ? [{ id: 'scsi' as Page, label: 'SCSI Controller' }] : []),
    ...draft.dvdDrives.map((d, i) => ({
      id: `dvd-${i}` as Page,
      label: 'DVD Drive',
      sub: d.path ? (d.path.split('/').pop() ?? '') : 'None',
    })),
    ...draft.network.map((n, i) => ({
      id: `net-${i}` as Page,
      label: 'Network Adapter',
      sub: n.kind === 'nat' ? 'NAT' : (n.bridge ?? ''),
    })),
    { id: 'com1', label: 'COM 1', sub: draft.com1 ? 'Console' : 'None' },
  ];
  const mgmt: { id: Page; label: string; sub?: string }[] = [
    { id: 'name', label: 'Name', sub: draft.name },
    { id: 'checkpoints', label: 'Checkpoints', sub: draft.checkpointType },
    { id: 'auto', label: 'Automatic Start/Stop Action' },
  ];
  const freeSlot = () => {
    const used = new Set(draft.disks.map((d) => d.slot));
    let s = 0;
    while (used.has(s)) s++;
    return s;
  };
  return (
    <Dialog
      title={title}
      onClose={onClose}
      wide
      className="settings"
      footer={
        <>
          <button type="button" className="primary" disabled={busy} onClick={() => void apply(true)}>
            OK
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button
            type="button"
            disabled={busy || !base || Object.keys(settingsPatch(base, draft)).length === 0}
            onClick={() => void apply(false)}
          >
            Apply
          </button>
        </>
      }
    >
      <div className="settings-body">
        <nav className="hw-tree" aria-label="Settings">
          <div className="hw-heading">Hardware</div>
          <ul>
            {hw.map((h) => (
              <li key={h.id}>
                <button
                  type="button"
                  className={shown === h.id ? 'current' : ''}
                  aria-current={shown === h.id ? 'page' : undefined}
                  onClick={() => setPage(h.id)}
                >
                  <span className="hw-label">{h.label}</span>
                  {h.sub ? <span className="hw-sub">{h.sub}</span> : null}
                </button>
              </li>
            ))}
            <li>
              <button
                type="button"
                onClick={() => set('network', [...draft.network, { kind: 'nat', mac: randomMac() }])}
                disabled={running}
              >
                <span className="hw-label">Add Network Adapter</span>
              </button>
            </li>
          </ul>
          <div className="hw-heading">Management</div>
          <ul>
            {mgmt.map((h) => (
              <li key={h.id}>
                <button
                  type="button"
                  className={shown === h.id ? 'current' : ''}
                  aria-current={shown === h.id ? 'page' : undefined}
                  onClick={() => setPage(h.id)}
                >
                  <span className="hw-label">{h.label}</span>
                  {h.sub ? <span className="hw-sub">{h.sub}</span> : null}
                </button>
              </li>
            ))}
          </ul>
        </nav>
        <div className="settings-page">
          {running ? (
            <p className="hint">
              Some settings cannot be modified because the virtual machine is {details.data?.state}.
            </p>
          ) : null}
          {shown === 'boot' ? (
            <fieldset disabled={running}>
              <legend>Boot</legend>
              <Row label="Boot protocol:">
                <select value={draft.bootKind} onChange={(e) => set('bootKind', e.target.value as Draft['bootKind'])}>
                  <option value="pvh">PVH (ELF kernel)</option>
                  <option value="linux">Linux boot protocol</option>
                </select>
              </Row>
              <Row label="Kernel:">
                <input type="text" value={draft.kernelPath} onChange={(e) => set('kernelPath', e.target.value)} />
              </Row>
              <Row label="Initial RAM disk:">
                <input type="text" value={draft.initrdPath} onChange={(e) => set('initrdPath', e.target.value)} />
              </Row>
              <Row label="Command line:">
                <input type="text" value={draft.cmdline} onChange={(e) => set('cmdline', e.target.value)} />
              </Row>
              <label className="check">
                <input
                  type="checkbox"
                  checked={draft.testExitPort}
                  onChange={(e) => set('testExitPort', e.target.checked)}
                />{' '}
                Test-exit port (0xf4)
              </label>
            </fieldset>
          ) : null}
          {shown === 'firmware' && draft.firmware ? (
            <FirmwarePage
              firmware={draft.firmware}
              secureBootBefore={base?.firmware?.secureBoot}
              disabled={running}
              onChange={(f) => set('firmware', f)}
            />
          ) : null}
          {shown === 'scsi' ? (
            <ScsiControllerPage
              drives={draft.dvdDrives}
              disabled={running}
              onAdd={() => {
                let slot = 0;
                while (draft.dvdDrives.some((d) => d.slot === slot)) slot++;
                set('dvdDrives', [...draft.dvdDrives, { slot }]);
                setPage(`dvd-${draft.dvdDrives.length}`);
              }}
            />
          ) : null}
          {shown.startsWith('dvd-') ? (
            <DvdDrivePage
              drive={draft.dvdDrives[Number(shown.slice(4))]}
              running={running}
              onChange={(d) =>
                set(
                  'dvdDrives',
                  draft.dvdDrives.map((x, i) => (i === Number(shown.slice(4)) ? d : x)),
                )
              }
              onRemove={() => {
                set(
                  'dvdDrives',
                  draft.dvdDrives.filter((_, i) => i !== Number(shown.slice(4))),
                );
                setPage('scsi');
              }}
            />
          ) : null}
          {shown === 'memory' ? (
            <fieldset disabled={running}>
              <legend>Memory</legend>
              <Row label="Startup RAM (MB):">
                <input
                  type="number"
                  min={2}
                  value={Number.isNaN(draft.memoryMiB) ? '' : draft.memoryMiB}
                  onChange={(e) => set('memoryMiB', num(e.target.value))}
                />
              </Row>
            </fieldset>
          ) : null}
          {shown === 'processor' ? (
            <fieldset disabled={running}>
              <legend>Processor</legend>
              <Row label="Number of virtual processors:">
                <input
                  type="number"
                  min={1}
                  value={Number.isNaN(draft.processorCount) ? '' : draft.processorCount}
                  onChange={(e) => set('processorCount', num(e.target.value))}
                />
              </Row>
            </fieldset>
          ) : null}
          {shown.startsWith('disk-') ? (
            <DiskPage
              disk={draft.disks[Number(shown.slice(5))]}
              disabled={running}
              scsiAvailable={draft.firmware !== undefined}
              onChange={(d) =>
                set(
                  'disks',
                  draft.disks.map((x, i) => (i === Number(shown.slice(5)) ? d : x)),
                )
              }
              onRemove={() => {
                set(
                  'disks',
                  draft.disks.filter((_, i) => i !== Number(shown.slice(5))),
                );
                setPage(first);
              }}
            />
          ) : null}
          {shown === 'add-disk' ? (
            <AddDiskPage
              disabled={running}
              onAdd={(d) => {
                set('disks', [...draft.disks, { ...d, slot: freeSlot() } as DiskAttachment]);
                setPage(`disk-${draft.disks.length}`);
              }}
            />
          ) : null}
          {shown.startsWith('net-') ? (
            <NetworkAdapterPage
              adapter={draft.network[Number(shown.slice(4))]}
              disabled={running}
              onChange={(n) =>
                set(
                  'network',
                  draft.network.map((x, i) => (i === Number(shown.slice(4)) ? n : x)),
                )
              }
              onRemove={() => {
                set(
                  'network',
                  draft.network.filter((_, i) => i !== Number(shown.slice(4))),
                );
                setPage(first);
              }}
            />
          ) : null}
          {shown === 'com1' ? (
            <fieldset disabled={running}>
              <legend>COM 1</legend>
              <label className="check">
                <input type="checkbox" checked={draft.com1} onChange={(e) => set('com1', e.target.checked)} /> Connect
                COM 1 to the console (Connect window)
              </label>
            </fieldset>
          ) : null}
          {shown === 'name' ? (
            <fieldset>
              <legend>Name</legend>
              <Row label="Name:">
                <input type="text" value={draft.name} onChange={(e) => set('name', e.target.value)} />
              </Row>
              <label className="stacked">
                Notes:
                <textarea rows={6} value={draft.notes} onChange={(e) => set('notes', e.target.value)} />
              </label>
            </fieldset>
          ) : null}
          {shown === 'checkpoints' ? (
            <fieldset>
              <legend>Checkpoints</legend>
              {(['standard', 'production', 'disabled'] as const).map((t) => (
                <label key={t} className="check">
                  <input
                    type="radio"
                    name="cptype"
                    checked={draft.checkpointType === t}
                    onChange={() => set('checkpointType', t)}
                  />{' '}
                  {t === 'disabled' ? 'Disable checkpoints' : `${t[0]?.toUpperCase()}${t.slice(1)} checkpoints`}
                </label>
              ))}
              {draft.checkpointType === 'production' ? (
                <label className="check indent">
                  <input
                    type="checkbox"
                    checked={draft.standardCheckpointFallback}
                    onChange={(e) => set('standardCheckpointFallback', e.target.checked)}
                  />{' '}
                  Create standard checkpoints if it&apos;s not possible to create a production checkpoint
                </label>
              ) : null}
              <p className="hint">
                Production checkpoints are taken of a virtual machine that is off (its disks are then consistent). Of a
                running virtual machine Berth cannot take one: it has no way to ask the guest to make its disks
                consistent. A standard checkpoint of a running virtual machine holds its memory and resumes it at that
                moment when applied.
              </p>
            </fieldset>
          ) : null}
          {shown === 'auto' ? (
            <fieldset>
              <legend>Automatic Start and Stop</legend>
              <Row label="When the host starts:">
                <select
                  value={draft.automaticStartAction}
                  onChange={(e) => set('automaticStartAction', e.target.value as Draft['automaticStartAction'])}
                >
                  <option value="nothing">Nothing</option>
                  <option value="start">Always start this virtual machine</option>
                  <option value="restart-if-running">Start if it was running when the host stopped</option>
                </select>
              </Row>
              <Row
                label="Startup delay (seconds):"
                hint="Berth runs these actions when you log in and out once 'berth host install-autostart' has installed its user service."
              >
                <input
                  type="number"
                  min={0}
                  max={3600}
                  value={draft.automaticStartDelaySeconds}
                  disabled={draft.automaticStartAction === 'nothing'}
                  onChange={(e) => set('automaticStartDelaySeconds', Number(e.target.value))}
                />
              </Row>
              <Row label="When the host shuts down:">
                <select
                  value={draft.automaticStopAction}
                  onChange={(e) => set('automaticStopAction', e.target.value as Draft['automaticStopAction'])}
                >
                  <option value="turn-off">Turn off the virtual machine</option>
                  <option value="save">Save the virtual machine state</option>
                  <option value="shut-down">Shut down the guest operating system</option>
                </select>
              </Row>
            </fieldset>
          ) : null}
          <ErrorBox error={error} />
        </div>
      </div>
    </Dialog>
  );
}
