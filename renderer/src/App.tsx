// The Hyper-V Manager window: the navigation tree (this host; room for remote hosts), the
// Virtual Machines list, the Checkpoints tree, the Details pane, and the Actions pane.
import { useQueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useMemo, useState } from 'react';

import type { VmSummary } from '../../app/api/vm';
import { ActionSection, ContextMenu, type MenuItem } from './ActionsPane';
import { checkpointActionsFor, vmActionsFor, type ActionSubject, type VmActionId } from './actions';
import { CheckpointsPane, NOW } from './Checkpoints';
import { ConsoleWindow } from './Console';
import { call, useApi, useCheckpoints, useHost, useVmDetails, useVms } from './context';
import { DetailsPane } from './Details';
import { errorText } from './dialogs/common';
import { DialogHost, type DialogSpec } from './dialogs/DialogHost';
import { emptySelection, pruneSelection, type Selection } from './selection';
import type { SortSpec } from './sort';
import { VmList } from './VmList';

const POWER: Partial<Record<VmActionId, 'vm.start' | 'vm.pause' | 'vm.resume' | 'vm.reset' | 'vm.save'>> = {
  start: 'vm.start',
  pause: 'vm.pause',
  resume: 'vm.resume',
  reset: 'vm.reset',
  save: 'vm.save',
};

type ErrorSource = 'host' | 'vm' | 'checkpoint' | 'list';

export function App(props: { onListCommit?: () => void }) {
  const api = useApi();
  const client = useQueryClient();
  const host = useHost();
  const vms = useVms();
  const [selection, setSelection] = useState<Selection>(emptySelection);
  const [sort, setSort] = useState<SortSpec>({ key: 'name', dir: 'asc' });
  const [menu, setMenu] = useState<{ kind: 'vm' | 'checkpoint'; at: { x: number; y: number } } | null>(null);
  const [dialog, setDialog] = useState<DialogSpec | null>(null);
  const [consoleVm, setConsoleVm] = useState<string | null>(null);
  const [errors, setErrors] = useState<Partial<Record<ErrorSource, string | undefined>>>({});
  const [checkpointSel, setCheckpointSel] = useState<string | null>(null);

  const list = vms.data;
  const present = useMemo(() => new Set((list ?? []).map((v) => v.id)), [list]);
  useEffect(() => setSelection((s) => pruneSelection(s, present)), [present]);

  const selected = useMemo(() => (list ?? []).filter((v) => selection.ids.has(v.id)), [list, selection.ids]);
  const single = selected.length === 1 ? selected[0] : undefined;
  const details = useVmDetails(single?.id);
  const checkpoints = useCheckpoints(single?.id);
  useEffect(() => setCheckpointSel(null), [single?.id]);

  const subject = (vm: VmSummary): ActionSubject => ({
    state: vm.state,
    hasCurrentCheckpoint: vm.id === single?.id && (checkpoints.data?.now ?? null) !== null,
    checkpointsDisabled: vm.id === single?.id && details.data?.config.checkpoints.type === 'disabled',
  });
  const vmActions: MenuItem[] = vmActionsFor(selected.map(subject));
  // Checkpoint actions only for a checkpoint that still exists (not one just deleted).
  const cpSelected =
    checkpointSel !== null && checkpointSel !== NOW && checkpoints.data?.checkpoints.some((c) => c.id === checkpointSel)
      ? checkpointSel
      : null;
  const cpActions: MenuItem[] =
    single && cpSelected
      ? checkpointActionsFor(
          subject(single),
          checkpoints.data?.checkpoints.some((c) => c.parent === cpSelected) ?? false,
        )
      : [];

  const setError = (source: ErrorSource, message: string | undefined) =>
    setErrors((e) => ({ ...e, [source]: message }));

  const runVmAction = useCallback(
    async (id: string, source: ErrorSource) => {
      const targets = selected;
      const first = targets[0];
      if (!first) return;
      setError(source, undefined);
      const method = POWER[id as VmActionId];
      if (method) {
        const failures: string[] = [];
        await Promise.all(
          targets.map((vm) =>
            call(api, client, method, { vm: vm.id }).catch((e: unknown) => failures.push(errorText(e))),
          ),
        );
        if (failures.length > 0) setError(source, failures.join('\n'));
        return;
      }
      switch (id as VmActionId) {
        case 'connect':
          setConsoleVm(first.id);
          return;
        case 'settings':
          setDialog({ kind: 'settings', vmId: first.id });
          return;
        case 'media':
          setDialog({ kind: 'media', vmId: first.id, name: first.name });
          return;
        case 'turn-off':
        case 'shut-down':
        case 'delete-saved-state':
          setDialog({
            kind: id as 'turn-off' | 'shut-down' | 'delete-saved-state',
            vms: targets.map((v) => ({ id: v.id, name: v.name })),
          });
          return;
        case 'move':
          setDialog({ kind: 'move', vmId: first.id, name: first.name });
          return;
        case 'delete':
          setDialog({ kind: 'delete-vm', vms: targets.map((v) => ({ id: v.id, name: v.name })) });
          return;
        case 'rename':
          setDialog({ kind: 'rename-vm', vmId: first.id, name: first.name });
          return;
        case 'export':
          setDialog({ kind: 'export', vmId: first.id, name: first.name });
          return;
        case 'revert':
          setDialog({ kind: 'revert', vmId: first.id, name: first.name });
          return;
        case 'checkpoint': {
          const failures: string[] = [];
          await Promise.all(
            targets.map((vm) =>
              api.invoke('checkpoint.create', { vm: vm.id }).catch((e: unknown) => failures.push(errorText(e))),
            ),
          );
          if (failures.length > 0) setError(source, failures.join('\n'));
          return;
        }
      }
    },
    [selected, api, client],
  );

  const runCheckpointAction = (id: string, source: ErrorSource) => {
    if (!single || !cpSelected) return;
    const cp = checkpoints.data?.checkpoints.find((c) => c.id === cpSelected);
    if (!cp) return;
    setError(source, undefined);
    const ref = { vmId: single.id, vmName: single.name, checkpointId: cp.id, checkpointName: cp.name };
    if (id === 'apply') setDialog({ kind: 'apply-checkpoint', ...ref });
    else if (id === 'rename') setDialog({ kind: 'rename-checkpoint', ...ref });
    else if (id === 'delete') setDialog({ kind: 'delete-checkpoint', ...ref, subtree: false });
    else if (id === 'delete-subtree') setDialog({ kind: 'delete-checkpoint', ...ref, subtree: true });
    else if (id === 'export')
      setDialog({ kind: 'export', vmId: single.id, name: `${single.name} - ${cp.name}`, checkpointId: cp.id });
  };

  const hostName = host.data?.hostname ?? 'localhost';
  const hostActions: MenuItem[] = [
    {
      id: 'new',
      label: 'New',
      enabled: true,
      children: [
        { id: 'new-vm', label: 'Virtual Machine...', enabled: true },
        { id: 'new-disk', label: 'Hard Disk...', enabled: true },
      ],
    },
    { id: 'import', label: 'Import Virtual Machine...', enabled: true },
    { id: 'edit-disk', label: 'Edit Disk...', enabled: true },
    { id: 'inspect-disk', label: 'Inspect Disk...', enabled: true },
    { id: 'host-disks', label: 'Host Disks...', enabled: true },
    { id: 'refresh', label: 'Refresh', enabled: true },
  ];
  const runHostAction = (id: string) => {
    setError('host', undefined);
    if (id === 'refresh') void client.invalidateQueries();
    else setDialog({ kind: id as 'new-vm' | 'new-disk' | 'import' | 'edit-disk' | 'inspect-disk' | 'host-disks' });
  };

  const onOpen = useCallback((vm: VmSummary) => setConsoleVm(vm.id), []);
  const onContextMenu = useCallback((at: { x: number; y: number }) => setMenu({ kind: 'vm', at }), []);
  const onDelete = useCallback(() => {
    if (vmActions.find((a) => a.id === 'delete')?.enabled) void runVmAction('delete', 'list');
  }, [vmActions, runVmAction]);

  const consoleTarget = consoleVm !== null ? list?.find((v) => v.id === consoleVm) : undefined;

  return (
    <div className="app">
      <header className="menubar" role="menubar" aria-label="Main menu">
        {['File', 'Action', 'View', 'Help'].map((m) => (
          <span key={m} role="menuitem" aria-disabled="true" className="menubar-item">
            {m}
          </span>
        ))}
      </header>
      <div className="toolbar" aria-hidden="true">
        <span className="tb-btn">◀</span>
        <span className="tb-btn">▶</span>
        <span className="tb-sep" />
        <span className="tb-btn">▦</span>
        <span className="tb-btn">?</span>
      </div>
      <div className="panes">
        <nav className="nav-pane" aria-label="Hosts">
          <ul role="tree" aria-label="Hosts">
            <li role="treeitem" aria-expanded="true" aria-selected="false" className="nav-root">
              <span className="nav-icon manager" aria-hidden="true" />
              Berth Manager
              <ul role="group">
                <li role="treeitem" aria-selected="true" className="nav-host selected">
                  <span className="nav-icon host" aria-hidden="true" />
                  {hostName.toUpperCase()}
                </li>
              </ul>
            </li>
          </ul>
        </nav>
        <main className="center-pane">
          <section className="vm-pane" aria-label="Virtual Machines">
            <div className="pane-title">Virtual Machines</div>
            {vms.error ? (
              <div className="pane-message" role="alert">
                {errorText(vms.error)}
              </div>
            ) : (
              <VmList
                vms={list ?? []}
                selection={selection}
                onSelection={setSelection}
                sort={sort}
                onSort={setSort}
                onOpen={onOpen}
                onDelete={onDelete}
                onContextMenu={onContextMenu}
                {...(props.onListCommit ? { onCommit: props.onListCommit } : {})}
              />
            )}
            {errors.list ? (
              <div className="list-error" role="alert">
                {errors.list}
                <button type="button" className="link" onClick={() => setError('list', undefined)}>
                  Dismiss
                </button>
              </div>
            ) : null}
          </section>
          <section className="cp-pane" aria-label="Checkpoints">
            <div className="pane-title">Checkpoints</div>
            <CheckpointsPane
              tree={single ? checkpoints.data : undefined}
              loading={checkpoints.isLoading}
              error={
                single && checkpoints.error
                  ? errorText(checkpoints.error)
                  : !single
                    ? selected.length > 1
                      ? ''
                      : undefined
                    : undefined
              }
              selected={checkpointSel}
              onSelect={setCheckpointSel}
              onApply={(id) => {
                setCheckpointSel(id);
                if (single) {
                  const cp = checkpoints.data?.checkpoints.find((c) => c.id === id);
                  if (cp)
                    setDialog({
                      kind: 'apply-checkpoint',
                      vmId: single.id,
                      vmName: single.name,
                      checkpointId: cp.id,
                      checkpointName: cp.name,
                    });
                }
              }}
              onContextMenu={(at) => setMenu({ kind: 'checkpoint', at })}
            />
          </section>
          <DetailsPane vm={single} details={details.data} count={selected.length} />
        </main>
        <aside className="actions-pane" aria-label="Actions">
          <div className="pane-title">Actions</div>
          <ActionSection
            title={hostName.toUpperCase()}
            items={hostActions}
            onAction={runHostAction}
            error={errors.host}
            onDismissError={() => setError('host', undefined)}
          />
          {selected.length > 0 ? (
            <ActionSection
              title={single ? single.name : `${selected.length} virtual machines`}
              items={vmActions}
              onAction={(id) => void runVmAction(id, 'vm')}
              error={errors.vm}
              onDismissError={() => setError('vm', undefined)}
            />
          ) : null}
          {cpActions.length > 0 ? (
            <ActionSection
              title={checkpoints.data?.checkpoints.find((c) => c.id === cpSelected)?.name ?? 'Checkpoint'}
              items={cpActions}
              onAction={(id) => runCheckpointAction(id, 'checkpoint')}
              error={errors.checkpoint}
              onDismissError={() => setError('checkpoint', undefined)}
            />
          ) : null}
        </aside>
      </div>
      <footer className="statusbar">
        {list ? `${list.length} virtual machine${list.length === 1 ? '' : 's'}` : 'Connecting...'}
        {selected.length > 1 ? ` · ${selected.length} selected` : ''}
      </footer>
      {menu ? (
        <ContextMenu
          at={menu.at}
          label={menu.kind === 'vm' ? 'Virtual machine actions' : 'Checkpoint actions'}
          items={menu.kind === 'vm' ? vmActions : cpActions}
          onAction={(id) => (menu.kind === 'vm' ? void runVmAction(id, 'list') : runCheckpointAction(id, 'list'))}
          onClose={() => setMenu(null)}
        />
      ) : null}
      {dialog ? (
        <DialogHost spec={dialog} onClose={() => setDialog(null)} onError={(m) => setError('host', m)} />
      ) : null}
      {consoleVm !== null ? (
        <ConsoleWindow vmId={consoleVm} vm={consoleTarget} onClose={() => setConsoleVm(null)} />
      ) : null}
    </div>
  );
}
