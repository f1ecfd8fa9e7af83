// Settings pages of a VM's hard drives: a drive (controller, slot, file or host device,
// read-only, Remove) and Add Hard Drive (a virtual hard disk file or a host disk for
// passthrough).
import { useState } from 'react';

import type { DiskAttachment } from '../../../app/api/config';
import { useHostDisks } from '../context';
import { formatBytes } from '../format';
import { ErrorBox, errorText, Row } from './common';

export function DiskPage(props: {
  disk: DiskAttachment | undefined;
  disabled: boolean;
  // A Generation 1 or 2 VM: its SCSI controller may hold the disk.
  scsiAvailable: boolean;
  onChange: (d: DiskAttachment) => void;
  onRemove: () => void;
}) {
  const d = props.disk;
  if (!d) return null;
  return (
    <fieldset disabled={props.disabled}>
      <legend>{d.kind === 'passthrough' ? 'Physical Hard Disk' : 'Hard Drive'}</legend>
      <Row label="Controller:">
        <select
          aria-label="Controller"
          value={d.controller ?? 'virtio'}
          disabled={!props.scsiAvailable && d.controller !== 'scsi'}
          onChange={(e) => {
            const next = { ...d };
            if (e.target.value === 'scsi') next.controller = 'scsi';
            else delete next.controller;
            props.onChange(next);
          }}
        >
          <option value="virtio">virtio (a disk device of its own)</option>
          <option value="scsi">SCSI controller (Generation 1 and 2)</option>
        </select>
      </Row>
      <Row label="Location (slot):">
        <input
          type="number"
          min={0}
          max={63}
          value={d.slot}
          onChange={(e) => props.onChange({ ...d, slot: Number(e.target.value) })}
        />
      </Row>
      {d.kind === 'virtual' ? (
        <Row label="Virtual hard disk:">
          <input type="text" value={d.path} onChange={(e) => props.onChange({ ...d, path: e.target.value })} />
        </Row>
      ) : (
        <Row label="Physical hard disk:">
          <input type="text" value={d.deviceId} readOnly />
        </Row>
      )}
      <label className="check">
        <input
          type="checkbox"
          checked={d.readOnly}
          onChange={(e) => props.onChange({ ...d, readOnly: e.target.checked })}
        />{' '}
        Read-only
      </label>
      <div className="button-row">
        <button type="button" onClick={props.onRemove}>
          Remove
        </button>
      </div>
    </fieldset>
  );
}

export function AddDiskPage({
  disabled,
  onAdd,
}: {
  disabled: boolean;
  onAdd: (d: Omit<DiskAttachment, 'slot'>) => void;
}) {
  const [kind, setKind] = useState<'virtual' | 'passthrough'>('virtual');
  const [path, setPath] = useState('');
  const [device, setDevice] = useState('');
  const disks = useHostDisks(kind === 'passthrough');
  return (
    <fieldset disabled={disabled}>
      <legend>Add Hard Drive</legend>
      <label className="check">
        <input type="radio" name="addkind" checked={kind === 'virtual'} onChange={() => setKind('virtual')} /> Virtual
        hard disk
      </label>
      {kind === 'virtual' ? (
        <Row label="Path:">
          <input type="text" value={path} placeholder="/path/to/disk.vhdx" onChange={(e) => setPath(e.target.value)} />
        </Row>
      ) : null}
      <label className="check">
        <input type="radio" name="addkind" checked={kind === 'passthrough'} onChange={() => setKind('passthrough')} />{' '}
        Physical hard disk (passthrough)
      </label>
      {kind === 'passthrough' ? (
        disks.error ? (
          <ErrorBox error={errorText(disks.error)} />
        ) : (
          <Row label="Host disk:">
            <select value={device} onChange={(e) => setDevice(e.target.value)}>
              <option value="">{disks.isLoading ? 'Loading...' : 'Choose a disk'}</option>
              {(disks.data ?? []).map((h) => (
                <option key={h.name} value={h.stableId ?? h.devicePath} disabled={h.inUse || h.system}>
                  {h.devicePath} {h.model} {formatBytes(h.sizeBytes)}
                  {h.system
                    ? ' (system disk)'
                    : h.inUse
                      ? ` (in use${h.inUseBy.length ? ` by ${h.inUseBy.join(', ')}` : ''})`
                      : ''}
                </option>
              ))}
            </select>
          </Row>
        )
      ) : null}
      <div className="button-row">
        <button
          type="button"
          disabled={kind === 'virtual' ? path.trim() === '' : device === ''}
          onClick={() =>
            onAdd(
              kind === 'virtual'
                ? ({ kind: 'virtual', path: path.trim(), readOnly: false } as Omit<DiskAttachment, 'slot'>)
                : ({ kind: 'passthrough', deviceId: device, readOnly: false } as Omit<DiskAttachment, 'slot'>),
            )
          }
        >
          Add
        </button>
      </div>
    </fieldset>
  );
}
