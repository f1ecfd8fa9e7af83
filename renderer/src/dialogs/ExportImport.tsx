// Export (a VM or one of its checkpoints, to a folder) and the Import Virtual Machine wizard
// (register in place, restore, copy). Both run as operations with progress and Cancel.
import { useState } from 'react';

import type { ImportRequest } from '../../../app/api/bridge';
import { useApi } from '../context';
import { Dialog, ErrorBox, errorText, OperationProgress, Row, useLongOperation, Wizard } from './common';

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
        done ? (
          <button type="button" className="primary" onClick={props.onClose}>
            Close
          </button>
        ) : (
          <>
            <button
              type="button"
              className="primary"
              disabled={busy || folder.trim() === ''}
              onClick={() => void run()}
            >
              Export
            </button>
            <button type="button" onClick={props.onClose}>
              Cancel
            </button>
          </>
        )
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
      {long.operationId ? <OperationProgress operationId={long.operationId} onEnd={long.onEnd} /> : null}
      {done ? (
        <p className="success" role="status">
          {done}
        </p>
      ) : null}
      <ErrorBox error={error} />
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
