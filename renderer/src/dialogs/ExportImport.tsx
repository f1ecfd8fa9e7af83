// Export (a VM or one of its checkpoints, to a folder) and the Import Virtual Machine wizard
// (register in place, restore, copy). Both run as operations with progress and Cancel.
import { useState } from 'react';

import { MoveResult, type ImportRequest } from '../../../app/api/bridge';
import { useApi } from '../context';
import { Dialog, errorText, OperationProgress, Row, RunFooter, RunStatus, useLongOperation, Wizard } from './common';

export function ExportDialog(props: {
  vmId: string;
  name: string;
  checkpointId?: string | undefined;
  onClose: () => void;
}) {
  const api = useApi();
  const [folder, setFolder] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [done, setDone] = useState<string>();
  const long = useLongOperation();
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await long.start(
        api.invoke('vm.export', {
          vm: props.vmId,
          folder: folder.trim(),
          ...(props.checkpointId ? { checkpointId: props.checkpointId } : {}),
        }),
      );
      setDone(`Exported '${props.name}' to ${folder.trim()}.`);
    } catch (e) {
      setError(errorText(e));
      long.reset();
    }
    setBusy(false);
  };
  return (
    <Dialog
      title={`Export ${props.checkpointId ? 'Checkpoint' : 'Virtual Machine'}`}
      onClose={props.onClose}
      footer={
        <RunFooter
          done={done !== undefined}
          busy={busy}
          ready={folder.trim() !== ''}
          action="Export"
          onRun={() => void run()}
          onClose={props.onClose}
        />
      }
    >
      <p className="message">Specify where you want to save the files of &apos;{props.name}&apos;.</p>
      <Row label="Location:">
        <input
          type="text"
          value={folder}
          placeholder="/path/to/exports"
          onChange={(e) => setFolder(e.target.value)}
          disabled={busy || !!done}
        />
      </Row>
      <RunStatus operationId={long.operationId} onEnd={long.onEnd} done={done} error={error} />
    </Dialog>
  );
}

// Move (quick migration): another Berth data root on this host, or an SSH target. A running
// VM is saved for the move and resumed there; the dialog reports the down-time.
export function MoveDialog(props: { vmId: string; name: string; onClose: () => void }) {
  const api = useApi();
  const [destination, setDestination] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [done, setDone] = useState<string>();
  const long = useLongOperation();
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const op = await long.start(api.invoke('vm.move', { vm: props.vmId, destination: destination.trim() }));
      const parsed = MoveResult.safeParse(op.result);
      const r = parsed.success ? parsed.data : undefined;
      const downtime = r && r.downtimeMs !== null ? ` Down-time: ${(r.downtimeMs / 1000).toFixed(1)} s.` : '';
      setDone(`Moved '${props.name}' to ${destination.trim()}${r ? `; it is ${r.stateThere} there` : ''}.${downtime}`);
    } catch (e) {
      setError(errorText(e));
      long.reset();
    }
    setBusy(false);
  };
  return (
    <Dialog
      title="Move Virtual Machine"
      onClose={props.onClose}
      footer={
        <RunFooter
          done={done !== undefined}
          busy={busy}
          ready={destination.trim() !== ''}
          action="Move"
          onRun={() => void run()}
          onClose={props.onClose}
        />
      }
    >
      <p className="message">
        Specify the Berth data root to move &apos;{props.name}&apos; to: a folder on this computer, or
        ssh://user@host/path for another one. A running virtual machine is saved, moved and resumed there.
      </p>
      <Row label="Destination:">
        <input
          type="text"
          value={destination}
          placeholder="/path/to/berth-root or ssh://user@host/path"
          onChange={(e) => setDestination(e.target.value)}
          disabled={busy || !!done}
        />
      </Row>
      <RunStatus operationId={long.operationId} onEnd={long.onEnd} done={done} error={error} />
    </Dialog>
  );
}

export function ImportWizard({ onClose }: { onClose: () => void }) {
  const api = useApi();
  const [path, setPath] = useState('');
  const [mode, setMode] = useState<ImportRequest['mode']>('register');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const long = useLongOperation();
  const finish = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await long.start(
        api.invoke('vm.import', {
          path: path.trim(),
          mode,
          ...(mode === 'copy' && name.trim() ? { name: name.trim() } : {}),
        }),
      );
      onClose();
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
      long.reset();
    }
  };
  return (
    <Wizard
      title="Import Virtual Machine"
      busy={busy}
      error={error}
      onCancel={onClose}
      onFinish={() => void finish()}
      steps={[
        {
          id: 'locate',
          label: 'Locate Folder',
          errors: path.trim() === '' ? ['Folder: enter the folder that holds the virtual machine'] : [],
          content: (
            <Row label="Folder:">
              <input type="text" value={path} onChange={(e) => setPath(e.target.value)} />
            </Row>
          ),
        },
        {
          id: 'type',
          label: 'Choose Import Type',
          content: (
            <fieldset className="radio-group">
              <legend>Import type</legend>
              <label className="check">
                <input type="radio" name="mode" checked={mode === 'register'} onChange={() => setMode('register')} />{' '}
                Register the virtual machine in-place (use the existing unique ID)
              </label>
              <label className="check">
                <input type="radio" name="mode" checked={mode === 'restore'} onChange={() => setMode('restore')} />{' '}
                Restore the virtual machine (use the existing unique ID)
              </label>
              <label className="check">
                <input type="radio" name="mode" checked={mode === 'copy'} onChange={() => setMode('copy')} /> Copy the
                virtual machine (create a new unique ID)
              </label>
              {mode === 'copy' ? (
                <Row label="New name (optional):">
                  <input type="text" value={name} onChange={(e) => setName(e.target.value)} />
                </Row>
              ) : null}
            </fieldset>
          ),
        },
        {
          id: 'summary',
          label: 'Summary',
          content: (
            <>
              <dl className="summary-list">
                <dt>Folder:</dt>
                <dd>{path}</dd>
                <dt>Import type:</dt>
                <dd>{mode}</dd>
              </dl>
              {long.operationId ? <OperationProgress operationId={long.operationId} onEnd={long.onEnd} /> : null}
            </>
          ),
        },
      ]}
    />
  );
}
