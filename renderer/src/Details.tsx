// The Details pane under the list: the selected VM's Summary, Memory and Networking tabs.
import { useState } from 'react';

import type { VmDetails, VmSummary } from '../../app/api/vm';
import { useThumbnail } from './context';
import { assignedMemory, formatBytes, formatCpu, formatMiB, formatUptime } from './format';

type Tab = 'summary' | 'memory' | 'networking';
const TABS: { id: Tab; label: string }[] = [
  { id: 'summary', label: 'Summary' },
  { id: 'memory', label: 'Memory' },
  { id: 'networking', label: 'Networking' },
];

// The VM's screen, live while it runs and has a display; a dark box otherwise.
function Thumb({ vm, details }: { vm: VmSummary; details: VmDetails | undefined }) {
  const boot = details?.config.boot;
  const hasDisplay = (boot?.kind === 'bios' || boot?.kind === 'uefi') && boot.display;
  const live = vm.state === 'Running' || vm.state === 'Paused';
  const shot = useThumbnail(vm.id, hasDisplay && live);
  if (hasDisplay && live && shot.data) {
    return (
      <div className="thumb thumb-live">
        <img className="thumb-screen" src={`data:image/png;base64,${shot.data.png}`} alt={`The screen of ${vm.name}`} />
      </div>
    );
  }
  return (
    <div className={`thumb state-${vm.state.toLowerCase()}`} aria-hidden="true">
      {vm.state === 'Running' ? <span className="thumb-text">{'>'}_</span> : null}
    </div>
  );
}

function Field({ label, value }: { label: string; value: string }) {
  return (
    <>
      <dt>{label}:</dt>
      <dd>{value}</dd>
    </>
  );
}

export function DetailsPane({
  vm,
  details,
  count,
}: {
  vm: VmSummary | undefined;
  details: VmDetails | undefined;
  count: number;
}) {
  const [tab, setTab] = useState<Tab>('summary');
  if (!vm) {
    return (
      <section className="details" aria-label="Details">
        <div className="pane-title">{count > 1 ? `${count} virtual machines selected` : 'Details'}</div>
        <div className="pane-message">{count > 1 ? '' : 'No item selected.'}</div>
      </section>
    );
  }
  const live = vm.state === 'Running' || vm.state === 'Paused';
  const cfg = details?.config;
  return (
    <section className="details" aria-label={`Details of ${vm.name}`}>
      <div className="pane-title">{vm.name}</div>
      <div className="details-body" role="tabpanel" id={`details-${tab}`} aria-labelledby={`tab-${tab}`}>
        <Thumb vm={vm} details={details} />
        {tab === 'summary' ? (
          <dl className="fields">
            <Field label="Created" value={cfg?.createdAt ? new Date(cfg.createdAt).toLocaleString() : ''} />
            <Field label="Configuration Version" value={cfg ? String(cfg.schemaVersion) : ''} />
            <Field
              label="Generation"
              value={
                !cfg
                  ? ''
                  : cfg.boot.kind === 'uefi'
                    ? `2 (UEFI, Secure Boot ${cfg.boot.secureBoot ? 'on' : 'off'})`
                    : cfg.boot.kind === 'bios'
                      ? '1 (BIOS)'
                      : cfg.boot.kind === 'linux'
                        ? 'Linux boot'
                        : 'PVH'
              }
            />
            <Field label="Notes" value={cfg?.notes || 'None'} />
            <Field label="State" value={vm.state + (vm.stateReason ? ` (${vm.stateReason})` : '')} />
            <Field label="Processors" value={String(vm.processorCount)} />
            <Field label="CPU Usage" value={live ? formatCpu(vm.stats?.cpuUsagePercent ?? 0) : ''} />
            <Field label="Uptime" value={live ? formatUptime(vm.stats?.uptimeMs) : ''} />
            <Field label="Checkpoint type" value={cfg?.checkpoints.type ?? ''} />
          </dl>
        ) : null}
        {tab === 'memory' ? (
          <dl className="fields">
            <Field label="Startup Memory" value={formatMiB(vm.memoryMiB)} />
            <Field label="Dynamic Memory" value={cfg?.memory.dynamic.enabled ? 'Enabled' : 'Disabled'} />
            <Field label="Assigned Memory" value={formatMiB(assignedMemory(vm))} />
            <Field label="Resident (host)" value={live ? formatBytes(vm.stats?.residentBytes) : ''} />
            <Field label="Memory Status" value={live ? 'OK' : ''} />
          </dl>
        ) : null}
        {tab === 'networking' ? (
          cfg && cfg.network.length > 0 ? (
            <table className="net-table">
              <thead>
                <tr>
                  <th scope="col">Adapter</th>
                  <th scope="col">Connection</th>
                  <th scope="col">MAC Address</th>
                  <th scope="col">Status</th>
                </tr>
              </thead>
              <tbody>
                {cfg.network.map((n, i) => (
                  <tr key={n.mac}>
                    <td>Network Adapter {i + 1}</td>
                    <td>{n.kind === 'bridge' ? `Bridge ${n.bridge ?? ''}` : 'NAT (user mode)'}</td>
                    <td>{n.mac}</td>
                    <td>{live ? 'OK' : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <div className="pane-message">This virtual machine has no network adapters.</div>
          )
        ) : null}
      </div>
      <div className="tabs" role="tablist" aria-label="Details">
        {TABS.map((t) => (
          <button
            key={t.id}
            id={`tab-${t.id}`}
            type="button"
            role="tab"
            aria-selected={tab === t.id}
            aria-controls={`details-${t.id}`}
            className={tab === t.id ? 'tab selected' : 'tab'}
            onClick={() => setTab(t.id)}
          >
            {t.label}
          </button>
        ))}
      </div>
    </section>
  );
}
