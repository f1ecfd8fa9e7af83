// Media > DVD Drive: Insert Disk (an image file, .iso) and Eject for each DVD drive of a
// Generation 1 or 2 VM, off or running. The media stays in the drive for the next start.
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';

import { call, useApi, useVmDetails } from '../context';
import { Dialog, ErrorBox, errorText, Row } from './common';

export function MediaDialog({ vmId, name, onClose }: { vmId: string; name: string; onClose: () => void }) {
  const api = useApi();
  const client = useQueryClient();
  const details = useVmDetails(vmId);
  const [paths, setPaths] = useState<Record<number, string>>({});
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const config = details.data?.config;
  const drives = config ? [...config.dvdDrives].sort((a, b) => a.slot - b.slot) : [];
  const firmware = config ? config.boot.kind === 'uefi' || config.boot.kind === 'bios' : false;

  const act = async (slot: number, path: string | undefined) => {
    setError(undefined);
    if (path !== undefined && path.trim() === '') {
      setError(`DVD Drive ${slot}: choose a bootable image file (.iso) to insert`);
      return;
    }
    setBusy(true);
    try {
      if (path === undefined) await call(api, client, 'vm.ejectDvd', { vm: vmId, slot });
      else await call(api, client, 'vm.insertDvd', { vm: vmId, slot, path: path.trim() });
      setPaths((p) => ({ ...p, [slot]: '' }));
    } catch (e) {
      setError(errorText(e));
    }
    setBusy(false);
  };

  return (
    <Dialog
      title={`Media of ${name}`}
      onClose={onClose}
      footer={
        <button type="button" className="primary" onClick={onClose}>
          Close
        </button>
      }
    >
      {details.error ? <ErrorBox error={errorText(details.error)} /> : null}
      {!config ? <p>Loading...</p> : null}
      {config && !firmware ? (
        <p className="prose">
          &apos;{name}&apos; boots a kernel file directly and has no DVD drives; DVD drives belong to Generation 1 and 2
          virtual machines.
        </p>
      ) : null}
      {config && firmware && drives.length === 0 ? (
        <p className="prose">
          &apos;{name}&apos; has no DVD drive. Add one in Settings, under SCSI Controller, while it is off.
        </p>
      ) : null}
      {drives.map((d) => (
        <fieldset key={d.slot} disabled={busy}>
          <legend>DVD Drive {d.slot}</legend>
          <p className="prose">{d.path ? `Contains ${d.path}` : 'Empty'}</p>
          <Row label="Image file (.iso):">
            <input
              type="text"
              value={paths[d.slot] ?? ''}
              placeholder="/path/to/installer.iso"
              onChange={(e) => setPaths((p) => ({ ...p, [d.slot]: e.target.value }))}
            />
          </Row>
          <div className="button-row">
            <button type="button" onClick={() => void act(d.slot, paths[d.slot] ?? '')}>
              Insert Disk
            </button>
            <button type="button" disabled={d.path === undefined} onClick={() => void act(d.slot, undefined)}>
              Eject
            </button>
          </div>
        </fieldset>
      ))}
      <ErrorBox error={error} />
    </Dialog>
  );
}
