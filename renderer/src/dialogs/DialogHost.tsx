// Which dialog is open, and the small ones: confirmations and rename prompts.
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';

import { isBridgeError } from '../../../app/api/bridge';
import { keys } from '../cache';
import { call, useApi } from '../context';
import { Dialog, ErrorBox, errorText, OperationProgress, useLongOperation } from './common';
import { EditDiskWizard, HostDisksDialog, InspectDiskDialog, NewDiskWizard } from './DiskDialogs';
import { ExportDialog, ImportWizard, MoveDialog } from './ExportImport';
import { MediaDialog } from './MediaDialog';
import { NewVmWizard } from './NewVmWizard';
import { SettingsDialog } from './Settings';

type VmRefs = { id: string; name: string }[];
type CpRef = { vmId: string; vmName: string; checkpointId: string; checkpointName: string };

export type DialogSpec =
  | { kind: 'new-vm' | 'new-disk' | 'import' | 'edit-disk' | 'inspect-disk' | 'host-disks' }
  | { kind: 'settings'; vmId: string }
  | { kind: 'turn-off' | 'shut-down' | 'delete-vm' | 'delete-saved-state'; vms: VmRefs }
  | { kind: 'move'; vmId: string; name: string }
  | { kind: 'media'; vmId: string; name: string }
  | { kind: 'rename-vm'; vmId: string; name: string }
  | { kind: 'export'; vmId: string; name: string; checkpointId?: string }
  | { kind: 'revert'; vmId: string; name: string }
  | ({ kind: 'apply-checkpoint' | 'rename-checkpoint' } & CpRef)
  | ({ kind: 'delete-checkpoint'; subtree: boolean } & CpRef);

export function DialogHost({ spec, onClose }: { spec: DialogSpec; onClose: () => void; onError: (m: string) => void }) {
  switch (spec.kind) {
    case 'new-vm':
      return <NewVmWizard onClose={onClose} />;
    case 'new-disk':
      return <NewDiskWizard onClose={onClose} />;
    case 'edit-disk':
      return <EditDiskWizard onClose={onClose} />;
    case 'inspect-disk':
      return <InspectDiskDialog onClose={onClose} />;
    case 'host-disks':
      return <HostDisksDialog onClose={onClose} />;
    case 'import':
      return <ImportWizard onClose={onClose} />;
    case 'settings':
      return <SettingsDialog vmId={spec.vmId} onClose={onClose} />;
    case 'export':
      return <ExportDialog vmId={spec.vmId} name={spec.name} checkpointId={spec.checkpointId} onClose={onClose} />;
    case 'turn-off':
    case 'shut-down':
    case 'delete-vm':
    case 'delete-saved-state':
      return <PowerConfirm spec={spec} onClose={onClose} />;
    case 'move':
      return <MoveDialog vmId={spec.vmId} name={spec.name} onClose={onClose} />;
    case 'media':
      return <MediaDialog vmId={spec.vmId} name={spec.name} onClose={onClose} />;
    case 'rename-vm':
      return <RenameVm vmId={spec.vmId} name={spec.name} onClose={onClose} />;
    case 'revert':
      return <CheckpointConfirm spec={spec} onClose={onClose} />;
    case 'apply-checkpoint':
      return <CheckpointConfirm spec={{ ...spec, kind: 'apply-checkpoint' }} onClose={onClose} />;
    case 'delete-checkpoint':
      return <CheckpointConfirm spec={spec} onClose={onClose} />;
    case 'rename-checkpoint':
      return <RenameCheckpoint spec={spec} onClose={onClose} />;
  }
}

const names = (vms: VmRefs) => vms.map((v) => `'${v.name}'`).join(', ');

function PowerConfirm({
  spec,
  onClose,
}: {
  spec: { kind: 'turn-off' | 'shut-down' | 'delete-vm' | 'delete-saved-state'; vms: VmRefs };
  onClose: () => void;
}) {
  const api = useApi();
  const client = useQueryClient();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [deleteDisks, setDeleteDisks] = useState(false);
  const text = {
    'turn-off': {
      title: 'Turn Off Machine',
      message: `Do you want to turn off ${names(spec.vms)}? If you turn off the virtual machine, you will lose any unsaved data in the guest.`,
      ok: 'Turn Off',
    },
    'shut-down': {
      title: 'Shut Down Machine',
      message: `Are you sure you want to shut down ${names(spec.vms)}?`,
      ok: 'Shut Down',
    },
    'delete-vm': {
      title: 'Delete Selected Virtual Machines',
      message: `Are you sure you want to delete ${names(spec.vms)}? The virtual machine configuration and its checkpoints will be deleted.`,
      ok: 'Delete',
    },
    'delete-saved-state': {
      title: 'Delete Saved State',
      message: `Are you sure you want to delete the saved state of ${names(spec.vms)}? The virtual machine will be off and start afresh next time: whatever ran in the guest is lost.`,
      ok: 'Delete',
    },
  }[spec.kind];
  // VMs whose guest did not act on the power button: like Hyper-V, offer to turn them off.
  const [unresponsive, setUnresponsive] = useState<VmRefs>([]);
  const run = async (kind: typeof spec.kind, vms: VmRefs) => {
    setBusy(true);
    setError(undefined);
    setUnresponsive([]);
    const failures: string[] = [];
    const timedOut: VmRefs = [];
    for (const vm of vms) {
      try {
        if (kind === 'turn-off') await call(api, client, 'vm.turnOff', { vm: vm.id });
        else if (kind === 'shut-down') await call(api, client, 'vm.shutDown', { vm: vm.id });
        else if (kind === 'delete-saved-state') await call(api, client, 'vm.deleteSavedState', { vm: vm.id });
        else await api.invoke('vm.remove', { vm: vm.id, deleteDisks });
      } catch (e) {
        failures.push(errorText(e));
        if (isBridgeError(e) && e.code === 'SHUTDOWN_TIMEOUT') timedOut.push(vm);
      }
    }
    setBusy(false);
    setUnresponsive(timedOut);
    if (failures.length > 0) setError(failures.join('\n'));
    else onClose();
  };
  return (
    <Dialog
      title={text.title}
      onClose={onClose}
      footer={
        <>
          {unresponsive.length > 0 ? (
            <button
              type="button"
              className="primary"
              disabled={busy}
              onClick={() => void run('turn-off', unresponsive)}
            >
              Turn Off
            </button>
          ) : (
            <button type="button" className="primary" disabled={busy} onClick={() => void run(spec.kind, spec.vms)}>
              {text.ok}
            </button>
          )}
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </>
      }
    >
      <p className="message">{text.message}</p>
      {busy && spec.kind === 'shut-down' ? (
        <p className="message">Waiting for the guest operating system to shut down...</p>
      ) : null}
      {spec.kind === 'delete-vm' ? (
        <label className="check">
          <input type="checkbox" checked={deleteDisks} onChange={(e) => setDeleteDisks(e.target.checked)} /> Also delete
          the virtual hard disks stored in the virtual machine&apos;s folder
        </label>
      ) : null}
      <ErrorBox error={error} />
    </Dialog>
  );
}

function NamePrompt(props: {
  title: string;
  label: string;
  initial: string;
  onSubmit: (name: string) => Promise<unknown>;
  onClose: () => void;
}) {
  const [name, setName] = useState(props.initial);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await props.onSubmit(name);
      props.onClose();
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={props.title}
      onClose={props.onClose}
      footer={
        <>
          <button type="button" className="primary" disabled={busy || name.trim() === ''} onClick={() => void submit()}>
            OK
          </button>
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
        </>
      }
    >
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <label className="stacked">
          {props.label}
          <input type="text" value={name} onChange={(e) => setName(e.target.value)} autoFocus />
        </label>
      </form>
      <ErrorBox error={error} />
    </Dialog>
  );
}

function RenameVm({ vmId, name, onClose }: { vmId: string; name: string; onClose: () => void }) {
  const api = useApi();
  const client = useQueryClient();
  return (
    <NamePrompt
      title="Rename Virtual Machine"
      label="Name:"
      initial={name}
      onClose={onClose}
      onSubmit={(n) => call(api, client, 'vm.rename', { vm: vmId, name: n })}
    />
  );
}

function RenameCheckpoint({ spec, onClose }: { spec: CpRef; onClose: () => void }) {
  const api = useApi();
  return (
    <NamePrompt
      title="Rename Checkpoint"
      label="Name:"
      initial={spec.checkpointName}
      onClose={onClose}
      onSubmit={(n) => api.invoke('checkpoint.rename', { vm: spec.vmId, checkpointId: spec.checkpointId, name: n })}
    />
  );
}

function CheckpointConfirm({
  spec,
  onClose,
}: {
  spec:
    | ({ kind: 'apply-checkpoint' | 'delete-checkpoint'; subtree?: boolean } & CpRef)
    | { kind: 'revert'; vmId: string; name: string };
  onClose: () => void;
}) {
  const api = useApi();
  const client = useQueryClient();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const long = useLongOperation();
  let title: string;
  let message: string;
  let ok: string;
  if (spec.kind === 'revert') {
    title = 'Revert Virtual Machine';
    message = `Are you sure you want to revert '${spec.name}' to its last checkpoint? The current state will be lost.`;
    ok = 'Revert';
  } else if (spec.kind === 'apply-checkpoint') {
    title = 'Apply Checkpoint';
    message = `Are you sure you want to apply the checkpoint '${spec.checkpointName}' to '${spec.vmName}'? The current state of the virtual machine will be lost.`;
    ok = 'Apply';
  } else {
    title = spec.subtree ? 'Delete Checkpoint Subtree' : 'Delete Checkpoint';
    message = spec.subtree
      ? `Are you sure you want to delete '${spec.checkpointName}' and all checkpoints below it?`
      : `Are you sure you want to delete the checkpoint '${spec.checkpointName}'?`;
    ok = 'Delete';
  }
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      if (spec.kind === 'revert') {
        const list = await api.invoke('checkpoint.list', { vm: spec.vmId });
        if (list.now === null) throw new Error(`'${spec.name}' has no checkpoint to revert to`);
        await api.invoke('checkpoint.apply', { vm: spec.vmId, checkpointId: list.now });
      } else if (spec.kind === 'apply-checkpoint') {
        await api.invoke('checkpoint.apply', { vm: spec.vmId, checkpointId: spec.checkpointId });
      } else {
        await long.start(
          api.invoke('checkpoint.delete', {
            vm: spec.vmId,
            checkpointId: spec.checkpointId,
            subtree: spec.subtree ?? false,
          }),
        );
      }
      // Applying a checkpoint changes the VM's settings: the window shows them (and Settings
      // opens on them) once the dialog closes, not when the service's event arrives.
      if (spec.kind !== 'delete-checkpoint') await client.invalidateQueries({ queryKey: keys.vm(spec.vmId) });
      onClose();
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
      long.reset();
    }
  };
  return (
    <Dialog
      title={title}
      onClose={onClose}
      footer={
        <>
          <button type="button" className="primary" disabled={busy} onClick={() => void run()}>
            {ok}
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </>
      }
    >
      <p className="message">{message}</p>
      {long.operationId ? <OperationProgress operationId={long.operationId} onEnd={long.onEnd} /> : null}
      <ErrorBox error={error} />
    </Dialog>
  );
}
