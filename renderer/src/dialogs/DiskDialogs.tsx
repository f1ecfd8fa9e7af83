// New Virtual Hard Disk, Edit Disk (compact, convert, expand, shrink, merge), Inspect Disk
// and Host Disks. Disk work runs as an operation with a progress bar and Cancel.
import { useState } from 'react';

import { DISK_FORMATS, type DiskEditRequest, type DiskFormat, type DiskInspection } from '../../../app/api/bridge';
import { useApi, useHostDisks } from '../context';
import { formatBytes } from '../format';
import { Dialog, ErrorBox, errorText, OperationProgress, Row, useLongOperation, Wizard } from './common';

const GiB = 1024 ** 3;

export function NewDiskWizard({ onClose }: { onClose: () => void }) {
  const api = useApi();
  const [format, setFormat] = useState<DiskFormat>('vhdx');
  const [type, setType] = useState<'dynamic' | 'fixed' | 'differencing'>('dynamic');
  const [path, setPath] = useState('');
  const [sizeGiB, setSizeGiB] = useState(16);
  const [parent, setParent] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const long = useLongOperation();
  const locationErrors = path.trim() === '' ? ['Location: enter the path of the new disk'] : [];
  const configErrors =
    type === 'differencing'
      ? parent.trim() === ''
        ? ['Parent disk: enter the path of the parent disk']
        : []
      : !(sizeGiB > 0)
        ? ['Size (GB): must be greater than 0']
        : [];
  const finish = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await long.start(
        api.invoke('disk.create', {
          path: path.trim(),
          format,
          ...(type === 'fixed' ? { fixed: true } : {}),
          ...(type === 'differencing' ? { parentPath: parent.trim() } : { sizeBytes: Math.round(sizeGiB * GiB) }),
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
      title="New Virtual Hard Disk Wizard"
      busy={busy}
      error={error}
      onCancel={onClose}
      onFinish={() => void finish()}
      steps={[
        {
          id: 'format',
          label: 'Choose Disk Format',
          content: (
            <fieldset className="radio-group">
              <legend>Disk format</legend>
              {DISK_FORMATS.map((f) => (
                <label key={f} className="check">
                  <input type="radio" name="fmt" checked={format === f} onChange={() => setFormat(f)} />{' '}
                  {f.toUpperCase()}
                </label>
              ))}
            </fieldset>
          ),
        },
        {
          id: 'type',
          label: 'Choose Disk Type',
          content: (
            <fieldset className="radio-group">
              <legend>Disk type</legend>
              <label className="check">
                <input type="radio" name="type" checked={type === 'fixed'} onChange={() => setType('fixed')} /> Fixed
                size
              </label>
              <label className="check">
                <input type="radio" name="type" checked={type === 'dynamic'} onChange={() => setType('dynamic')} />{' '}
                Dynamically expanding
              </label>
              <label className="check">
                <input
                  type="radio"
                  name="type"
                  checked={type === 'differencing'}
                  onChange={() => setType('differencing')}
                />{' '}
                Differencing
              </label>
            </fieldset>
          ),
        },
        {
          id: 'location',
          label: 'Specify Name and Location',
          errors: locationErrors,
          content: (
            <Row label="Location:">
              <input
                type="text"
                value={path}
                placeholder={`/path/to/disk.${format}`}
                onChange={(e) => setPath(e.target.value)}
              />
            </Row>
          ),
        },
        {
          id: 'configure',
          label: 'Configure Disk',
          errors: configErrors,
          content:
            type === 'differencing' ? (
              <Row label="Parent disk:">
                <input type="text" value={parent} onChange={(e) => setParent(e.target.value)} />
              </Row>
            ) : (
              <Row label="Size (GB):">
                <input
                  type="number"
                  min={1}
                  value={Number.isNaN(sizeGiB) ? '' : sizeGiB}
                  onChange={(e) => setSizeGiB(Number(e.target.value))}
                />
              </Row>
            ),
        },
        {
          id: 'summary',
          label: 'Summary',
          content: (
            <>
              <dl className="summary-list">
                <dt>Format:</dt>
                <dd>{format.toUpperCase()}</dd>
                <dt>Type:</dt>
                <dd>{type}</dd>
                <dt>Location:</dt>
                <dd>{path}</dd>
                <dt>{type === 'differencing' ? 'Parent:' : 'Size:'}</dt>
                <dd>{type === 'differencing' ? parent : `${sizeGiB} GB`}</dd>
              </dl>
              {long.operationId ? <OperationProgress operationId={long.operationId} onEnd={long.onEnd} /> : null}
            </>
          ),
        },
      ]}
    />
  );
}

type EditAction = DiskEditRequest['action'];

export function EditDiskWizard({ onClose }: { onClose: () => void }) {
  const api = useApi();
  const [path, setPath] = useState('');
  const [action, setAction] = useState<EditAction>('compact');
  const [destination, setDestination] = useState('');
  const [format, setFormat] = useState<DiskFormat>('qcow2');
  const [sizeGiB, setSizeGiB] = useState(32);
  const [into, setInto] = useState<'parent' | 'new'>('parent');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [minShrink, setMinShrink] = useState<string>();
  const long = useLongOperation();
  const request = (): DiskEditRequest => {
    const p = path.trim();
    switch (action) {
      case 'compact':
        return { action, path: p };
      case 'convert':
        return { action, path: p, destination: destination.trim(), format };
      case 'expand':
      case 'shrink':
        return { action, path: p, sizeBytes: Math.round(sizeGiB * GiB) };
      case 'merge':
        return {
          action,
          path: p,
          into: into === 'parent' ? { kind: 'parent' } : { kind: 'new', destination: destination.trim(), format },
        };
    }
  };
  const needsDestination = action === 'convert' || (action === 'merge' && into === 'new');
  const finish = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await long.start(api.invoke('disk.edit', request()));
      onClose();
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
      long.reset();
    }
  };
  return (
    <Wizard
      title="Edit Virtual Hard Disk Wizard"
      busy={busy}
      error={error}
      onCancel={onClose}
      onFinish={() => void finish()}
      steps={[
        {
          id: 'locate',
          label: 'Locate Disk',
          errors: path.trim() === '' ? ['Location: enter the path of the disk to edit'] : [],
          content: (
            <Row label="Location:">
              <input type="text" value={path} onChange={(e) => setPath(e.target.value)} />
            </Row>
          ),
        },
        {
          id: 'action',
          label: 'Choose Action',
          content: (
            <fieldset className="radio-group">
              <legend>What do you want to do to the disk?</legend>
              {(
                [
                  ['compact', 'Compact: reduce the file size by removing unused space'],
                  ['convert', 'Convert: copy the contents to a new disk in another format'],
                  ['expand', 'Expand: increase the capacity'],
                  ['shrink', 'Shrink: reduce the capacity'],
                  ['merge', 'Merge: merge the changes of a differencing disk'],
                ] as const
              ).map(([a, label]) => (
                <label key={a} className="check">
                  <input type="radio" name="action" checked={action === a} onChange={() => setAction(a)} /> {label}
                </label>
              ))}
            </fieldset>
          ),
        },
        {
          id: 'configure',
          label: 'Configure Disk',
          errors: needsDestination && destination.trim() === '' ? ['Destination: enter the path of the new disk'] : [],
          content: (
            <>
              {action === 'compact' ? <p className="prose">The disk will be compacted in place.</p> : null}
              {action === 'merge' ? (
                <fieldset className="radio-group">
                  <legend>Merge into</legend>
                  <label className="check">
                    <input type="radio" name="into" checked={into === 'parent'} onChange={() => setInto('parent')} /> To
                    the parent virtual hard disk
                  </label>
                  <label className="check">
                    <input type="radio" name="into" checked={into === 'new'} onChange={() => setInto('new')} /> To a new
                    virtual hard disk
                  </label>
                </fieldset>
              ) : null}
              {needsDestination ? (
                <>
                  <Row label="Destination:">
                    <input type="text" value={destination} onChange={(e) => setDestination(e.target.value)} />
                  </Row>
                  <Row label="Format:">
                    <select value={format} onChange={(e) => setFormat(e.target.value as DiskFormat)}>
                      {DISK_FORMATS.map((f) => (
                        <option key={f} value={f}>
                          {f.toUpperCase()}
                        </option>
                      ))}
                    </select>
                  </Row>
                </>
              ) : null}
              {action === 'expand' || action === 'shrink' ? (
                <>
                  <Row label="New size (GB):">
                    <input type="number" min={1} value={sizeGiB} onChange={(e) => setSizeGiB(Number(e.target.value))} />
                  </Row>
                  {action === 'shrink' ? (
                    <div className="button-row">
                      <button
                        type="button"
                        onClick={() =>
                          api
                            .invoke('disk.minShrinkSize', { path: path.trim() })
                            .then((r) => setMinShrink(`The smallest possible size is ${formatBytes(r.sizeBytes)}.`))
                            .catch((e: unknown) => setMinShrink(errorText(e)))
                        }
                      >
                        Find minimum size
                      </button>
                      <span>{minShrink}</span>
                    </div>
                  ) : null}
                </>
              ) : null}
            </>
          ),
        },
        {
          id: 'summary',
          label: 'Summary',
          content: (
            <>
              <dl className="summary-list">
                <dt>Disk:</dt>
                <dd>{path}</dd>
                <dt>Action:</dt>
                <dd>{action}</dd>
                {needsDestination ? (
                  <>
                    <dt>Destination:</dt>
                    <dd>
                      {destination} ({format.toUpperCase()})
                    </dd>
                  </>
                ) : null}
              </dl>
              {long.operationId ? <OperationProgress operationId={long.operationId} onEnd={long.onEnd} /> : null}
            </>
          ),
        },
      ]}
    />
  );
}

export function InspectDiskDialog({ onClose }: { onClose: () => void }) {
  const api = useApi();
  const [path, setPath] = useState('');
  const [result, setResult] = useState<DiskInspection>();
  const [error, setError] = useState<string>();
  const inspect = () => {
    setError(undefined);
    api
      .invoke('disk.inspect', { path: path.trim() })
      .then(setResult)
      .catch((e: unknown) => setError(errorText(e)));
  };
  return (
    <Dialog
      title="Inspect Disk"
      onClose={onClose}
      wide
      footer={
        <button type="button" onClick={onClose}>
          Close
        </button>
      }
    >
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          inspect();
        }}
      >
        <label>
          Disk:
          <input type="text" value={path} onChange={(e) => setPath(e.target.value)} />
        </label>
        <button type="submit" className="primary" disabled={path.trim() === ''}>
          Inspect
        </button>
      </form>
      <ErrorBox error={error} />
      {result ? (
        <>
          {result.images.map((img, i) => (
            <dl key={`${img.path}-${i}`} className="summary-list">
              <dt>{i === 0 ? 'Disk' : `Parent ${i}`}:</dt>
              <dd>{img.path}</dd>
              <dt>Format:</dt>
              <dd>
                {img.format.toUpperCase()} {img.subformat}
              </dd>
              <dt>Maximum disk size:</dt>
              <dd>{formatBytes(img.virtualSize)}</dd>
              <dt>Current file size:</dt>
              <dd>{formatBytes(img.fileSize)}</dd>
              <dt>Allocated:</dt>
              <dd>{formatBytes(img.allocatedBytes)}</dd>
              {img.backingPath ? (
                <>
                  <dt>Parent:</dt>
                  <dd>{img.backingResolved || img.backingPath}</dd>
                </>
              ) : null}
              <dt>Status:</dt>
              <dd>{img.corrupt ? 'Corrupt' : img.dirty ? 'Needs repair (dirty)' : 'OK'}</dd>
            </dl>
          ))}
          {result.chainError ? <ErrorBox error={result.chainError.message} /> : null}
        </>
      ) : null}
    </Dialog>
  );
}

export function HostDisksDialog({ onClose }: { onClose: () => void }) {
  const disks = useHostDisks();
  return (
    <Dialog
      title="Host Disks"
      onClose={onClose}
      wide
      footer={
        <button type="button" onClick={onClose}>
          Close
        </button>
      }
    >
      {disks.error ? <ErrorBox error={errorText(disks.error)} /> : null}
      {disks.isLoading ? <p>Loading...</p> : null}
      {disks.data ? (
        <table className="net-table">
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Model</th>
              <th scope="col">Size</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {disks.data.map((d) => (
              <tr key={d.name}>
                <td>{d.devicePath}</td>
                <td>{d.model}</td>
                <td>{formatBytes(d.sizeBytes)}</td>
                <td>
                  {d.system
                    ? 'System disk'
                    : d.inUse
                      ? `In use${d.inUseBy.length ? ` by ${d.inUseBy.join(', ')}` : ''}${d.mounts.length ? ` (mounted ${d.mounts.join(', ')})` : ''}`
                      : 'Available for passthrough'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Dialog>
  );
}
