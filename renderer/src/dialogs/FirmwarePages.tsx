// Settings pages of Generation 1 and 2 VMs: Firmware (boot order with Move Up/Move Down,
// Secure Boot for Generation 2 with what changing it does, the display) and the SCSI controller with its
// DVD drives (add, remove, an image file or None). While the VM runs only a drive's media
// may change (as Media > DVD Drive does).
import { MAX_DVD_DRIVES, type BootDevice, type DvdDrive } from '../../../app/api/config';
import { Row } from './common';

export interface FirmwareDraft {
  kind: 'uefi' | 'bios';
  secureBoot: boolean;
  bootOrder: BootDevice[];
  display: boolean;
}

// A drive as the page edits it: path '' is "Image file" chosen but not yet given.
export type DvdDraft = { slot: number; path?: string | undefined };

export const BOOT_DEVICE_LABELS: Record<BootDevice, string> = {
  dvd: 'DVD Drive',
  disk: 'Hard Drive',
  network: 'Network Adapter',
};

// What would make the services refuse the drives, said where the user can fix it.
export function dvdProblems(drives: DvdDraft[]): string[] {
  return drives
    .filter((d) => d.path !== undefined && d.path.trim() === '')
    .map((d) => `DVD Drive ${d.slot}: choose a bootable image file (.iso), or None`);
}

export function toDvdDrives(drives: DvdDraft[]): DvdDrive[] {
  return drives.map((d) => (d.path === undefined ? { slot: d.slot } : { slot: d.slot, path: d.path.trim() }));
}

export function FirmwarePage(props: {
  firmware: FirmwareDraft;
  secureBootBefore: boolean | undefined;
  disabled: boolean;
  onChange: (f: FirmwareDraft) => void;
}) {
  const f = props.firmware;
  const move = (i: number, by: -1 | 1) => {
    const order = [...f.bootOrder];
    const [item] = order.splice(i, 1);
    if (item === undefined) return;
    order.splice(i + by, 0, item);
    props.onChange({ ...f, bootOrder: order });
  };
  const changed = props.secureBootBefore !== undefined && props.secureBootBefore !== f.secureBoot;
  return (
    <fieldset disabled={props.disabled}>
      <legend>Firmware</legend>
      <p className="prose">
        {f.kind === 'uefi' ? 'Generation 2 (UEFI).' : 'Generation 1 (BIOS).'} The firmware tries these devices in this
        order:
      </p>
      <ol className="boot-order" aria-label="Boot order">
        {f.bootOrder.map((d, i) => (
          <li key={d}>
            <span className="boot-device">{BOOT_DEVICE_LABELS[d]}</span>
            <button
              type="button"
              aria-label={`Move ${BOOT_DEVICE_LABELS[d]} up`}
              disabled={i === 0}
              onClick={() => move(i, -1)}
            >
              Move Up
            </button>
            <button
              type="button"
              aria-label={`Move ${BOOT_DEVICE_LABELS[d]} down`}
              disabled={i === f.bootOrder.length - 1}
              onClick={() => move(i, 1)}
            >
              Move Down
            </button>
          </li>
        ))}
      </ol>
      {f.kind === 'uefi' ? (
        <>
          <label className="check">
            <input
              type="checkbox"
              checked={f.secureBoot}
              onChange={(e) => props.onChange({ ...f, secureBoot: e.target.checked })}
            />{' '}
            Enable Secure Boot (Microsoft UEFI Certificate Authority keys)
          </label>
          <p className={changed ? 'hint warning' : 'hint'} role={changed ? 'status' : undefined}>
            Changing Secure Boot replaces this virtual machine&apos;s UEFI variable store with a new one: its UEFI
            settings, such as the boot entries an installed operating system added, are reset.
          </p>
        </>
      ) : null}
      <label className="check">
        <input
          type="checkbox"
          checked={f.display}
          onChange={(e) => props.onChange({ ...f, display: e.target.checked })}
        />{' '}
        Display (graphical console)
      </label>
      <p className="hint">
        Without a display the virtual machine has its serial console only, as a headless server does.
      </p>
    </fieldset>
  );
}

export function ScsiControllerPage(props: { drives: DvdDraft[]; disabled: boolean; onAdd: () => void }) {
  return (
    <fieldset disabled={props.disabled}>
      <legend>SCSI Controller</legend>
      <p className="prose">
        The controller holds the DVD drives of this virtual machine ({props.drives.length} of {MAX_DVD_DRIVES}).
      </p>
      <div className="button-row">
        <button type="button" disabled={props.drives.length >= MAX_DVD_DRIVES} onClick={props.onAdd}>
          Add DVD Drive
        </button>
      </div>
    </fieldset>
  );
}

export function DvdDrivePage(props: {
  drive: DvdDraft | undefined;
  running: boolean;
  onChange: (d: DvdDraft) => void;
  onRemove: () => void;
}) {
  const d = props.drive;
  if (!d) return null;
  const name = `dvd-media-${d.slot}`;
  return (
    <fieldset>
      <legend>DVD Drive {d.slot}</legend>
      <p className="prose">Media</p>
      <label className="check">
        <input
          type="radio"
          name={name}
          checked={d.path === undefined}
          onChange={() => props.onChange({ slot: d.slot })}
        />{' '}
        None
      </label>
      <label className="check">
        <input
          type="radio"
          name={name}
          checked={d.path !== undefined}
          onChange={() => props.onChange({ slot: d.slot, path: '' })}
        />{' '}
        Image file
      </label>
      {d.path !== undefined ? (
        <div className="indent">
          <Row label="Image file (.iso):">
            <input
              type="text"
              value={d.path}
              placeholder="/path/to/installer.iso"
              onChange={(e) => props.onChange({ slot: d.slot, path: e.target.value })}
            />
          </Row>
        </div>
      ) : null}
      <div className="button-row">
        <button type="button" disabled={props.running} onClick={props.onRemove}>
          Remove
        </button>
      </div>
      {props.running ? (
        <p className="hint">
          The virtual machine is running: the new media goes into the drive when you apply, and stays there.
        </p>
      ) : null}
    </fieldset>
  );
}
