// The New Virtual Machine wizard: name, generation (1: BIOS, 2: UEFI, or a kernel booted
// directly), memory, processors, networking, virtual hard disk (new, existing, none),
// installation options (an image file for Generation 1 and 2; kernel, initrd and command
// line otherwise), summary.
import { useQueryClient } from '@tanstack/react-query';
import { useMemo, useState } from 'react';

import { DISK_FORMATS } from '../../../app/api/bridge';
import { call, useApi, useHost } from '../context';
import { errorText, Row, Wizard } from './common';
import { defaultNewVmForm, toNewDisks, toRequest, validateNewVm, type NewVmForm } from './newVmForm';

export function NewVmWizard({ onClose }: { onClose: () => void }) {
  const api = useApi();
  const client = useQueryClient();
  const host = useHost();
  const [form, setForm] = useState<NewVmForm>(defaultNewVmForm);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const errors = useMemo(() => validateNewVm(form), [form]);
  const set = <K extends keyof NewVmForm>(k: K, v: NewVmForm[K]) => setForm((f) => ({ ...f, [k]: v }));
  const num = (s: string) => (s.trim() === '' ? NaN : Number(s));

  // One request: the VM and its new disk are made together, and when the disk cannot be
  // made no VM is left behind (the error says what failed).
  const finish = async () => {
    setBusy(true);
    setError(undefined);
    let created: string | undefined;
    try {
      const vm = await call(api, client, 'vm.create', { config: toRequest(form), newDisks: toNewDisks(form) });
      created = vm.name;
      if (form.startAfter) await call(api, client, 'vm.start', { vm: vm.id });
      onClose();
    } catch (e) {
      setError(
        created === undefined
          ? errorText(e)
          : `The virtual machine '${created}' was created, but it did not start: ${errorText(e)}`,
      );
      setBusy(false);
    }
  };

  // Generation 1 and 2: install now from an image file, or later.
  const isoOptions = (
    <fieldset className="radio-group">
      <legend>Installation options</legend>
      <label className="check">
        <input
          type="radio"
          name="install"
          checked={form.install === 'later'}
          onChange={() => set('install', 'later')}
        />{' '}
        Install an operating system later
      </label>
      <label className="check">
        <input type="radio" name="install" checked={form.install === 'iso'} onChange={() => set('install', 'iso')} />{' '}
        Install an operating system from a bootable image file (.iso)
      </label>
      {form.install === 'iso' ? (
        <div className="indent">
          <Row
            label="Image file (.iso):"
            hint="The image goes into a DVD drive, which the virtual machine boots first."
          >
            <input
              type="text"
              value={form.isoPath}
              placeholder="/path/to/installer.iso"
              onChange={(e) => set('isoPath', e.target.value)}
            />
          </Row>
        </div>
      ) : null}
    </fieldset>
  );
  const kernelOptions = (
    <>
      <p className="prose">Choose the kernel this virtual machine boots.</p>
      <Row label="Boot protocol:">
        <select value={form.bootKind} onChange={(e) => set('bootKind', e.target.value as NewVmForm['bootKind'])}>
          <option value="pvh">PVH (ELF kernel)</option>
          <option value="linux">Linux boot protocol (bzImage)</option>
        </select>
      </Row>
      <Row label="Kernel:">
        <input
          type="text"
          value={form.kernelPath}
          placeholder="/path/to/vmlinux"
          onChange={(e) => set('kernelPath', e.target.value)}
        />
      </Row>
      <Row label="Initial RAM disk:">
        <input
          type="text"
          value={form.initrdPath}
          placeholder="(optional)"
          onChange={(e) => set('initrdPath', e.target.value)}
        />
      </Row>
      <Row label="Kernel command line:">
        <input type="text" value={form.cmdline} onChange={(e) => set('cmdline', e.target.value)} />
      </Row>
      <label className="check">
        <input type="checkbox" checked={form.testExitPort} onChange={(e) => set('testExitPort', e.target.checked)} />{' '}
        Enable the test-exit port (0xf4)
      </label>
    </>
  );

  const steps = [
    {
      id: 'begin',
      label: 'Before You Begin',
      content: (
        <div className="prose">
          <p>
            This wizard helps you create a virtual machine. You can use it to configure the memory, processors, network,
            virtual hard disk and boot media of the new virtual machine.
          </p>
          <p>To create a virtual machine with default values, click Finish after you name it and choose its kernel.</p>
        </div>
      ),
    },
    {
      id: 'name',
      label: 'Specify Name and Location',
      errors: errors.name,
      content: (
        <>
          <p className="prose">Choose a name and location for this virtual machine.</p>
          <Row label="Name:">
            <input type="text" value={form.name} onChange={(e) => set('name', e.target.value)} />
          </Row>
          <Row label="Location:" hint="Each virtual machine gets its own folder under the data root.">
            <input type="text" value={host.data ? `${host.data.dataRoot}/vms` : ''} readOnly />
          </Row>
        </>
      ),
    },
    {
      id: 'generation',
      label: 'Specify Generation',
      errors: errors.generation,
      content: (
        <>
          <fieldset className="radio-group">
            <legend>Generation of this virtual machine</legend>
            <label className="check">
              <input
                type="radio"
                name="generation"
                checked={form.generation === '1'}
                onChange={() => set('generation', '1')}
              />{' '}
              Generation 1
            </label>
            <p className="prose indent">
              A BIOS starts the guest, as on older PCs. Works with most guest operating systems.
            </p>
            <label className="check">
              <input
                type="radio"
                name="generation"
                checked={form.generation === '2'}
                onChange={() => set('generation', '2')}
              />{' '}
              Generation 2
            </label>
            <p className="prose indent">
              UEFI firmware starts the guest, with Secure Boot. For 64-bit operating systems that boot with UEFI.
            </p>
            <label className="check">
              <input
                type="radio"
                name="generation"
                checked={form.generation === 'kernel'}
                onChange={() => set('generation', 'kernel')}
              />{' '}
              Linux kernel booted directly
            </label>
            <p className="prose indent">No firmware: Berth loads a kernel file (and initial RAM disk) itself.</p>
          </fieldset>
          {form.generation === '2' ? (
            <label className="check">
              <input type="checkbox" checked={form.secureBoot} onChange={(e) => set('secureBoot', e.target.checked)} />{' '}
              Enable Secure Boot (Microsoft UEFI Certificate Authority keys)
            </label>
          ) : null}
          <p className="prose">Once the virtual machine has been created, you cannot change its generation here.</p>
        </>
      ),
    },
    {
      id: 'memory',
      label: 'Assign Memory',
      errors: errors.memory,
      content: (
        <>
          <p className="prose">Specify the amount of memory to allocate to this virtual machine (2 MB to 1 TB).</p>
          <Row label="Startup memory (MB):">
            <input
              type="number"
              min={2}
              value={Number.isNaN(form.memoryMiB) ? '' : form.memoryMiB}
              onChange={(e) => set('memoryMiB', num(e.target.value))}
            />
          </Row>
          <label className="check">
            <input type="checkbox" disabled checked={false} readOnly /> Use Dynamic Memory for this virtual machine (not
            available yet)
          </label>
        </>
      ),
    },
    {
      id: 'processors',
      label: 'Processors',
      errors: errors.processors,
      content: (
        <Row label="Number of virtual processors:">
          <input
            type="number"
            min={1}
            value={Number.isNaN(form.processors) ? '' : form.processors}
            onChange={(e) => set('processors', num(e.target.value))}
          />
        </Row>
      ),
    },
    {
      id: 'networking',
      label: 'Configure Networking',
      errors: errors.networking,
      content: (
        <>
          <p className="prose">Each new virtual machine can have a network adapter.</p>
          <Row label="Connection:">
            <select value={form.network} onChange={(e) => set('network', e.target.value as NewVmForm['network'])}>
              <option value="none">Not Connected</option>
              <option value="nat">NAT (user-mode networking)</option>
              <option value="bridge">Host bridge (the host&apos;s network)</option>
            </select>
          </Row>
          {form.network === 'bridge' ? (
            <Row label="Bridge:" hint="An existing bridge on the host, such as br0 or virbr0.">
              <input type="text" value={form.bridgeName} onChange={(e) => set('bridgeName', e.target.value)} />
            </Row>
          ) : null}
        </>
      ),
    },
    {
      id: 'disk',
      label: 'Connect Virtual Hard Disk',
      errors: errors.disk,
      content: (
        <fieldset className="radio-group">
          <legend>Virtual hard disk</legend>
          <label className="check">
            <input type="radio" name="disk" checked={form.disk === 'new'} onChange={() => set('disk', 'new')} /> Create
            a virtual hard disk
          </label>
          {form.disk === 'new' ? (
            <div className="indent">
              <Row label="Name:">
                <input type="text" value={form.newDiskName} onChange={(e) => set('newDiskName', e.target.value)} />
              </Row>
              <Row label="Format:">
                <select
                  value={form.newDiskFormat}
                  onChange={(e) => set('newDiskFormat', e.target.value as NewVmForm['newDiskFormat'])}
                >
                  {DISK_FORMATS.map((f) => (
                    <option key={f} value={f}>
                      {f.toUpperCase()}
                    </option>
                  ))}
                </select>
              </Row>
              <Row label="Size (GB):">
                <input
                  type="number"
                  min={1}
                  value={Number.isNaN(form.newDiskSizeGiB) ? '' : form.newDiskSizeGiB}
                  onChange={(e) => set('newDiskSizeGiB', num(e.target.value))}
                />
              </Row>
            </div>
          ) : null}
          <label className="check">
            <input
              type="radio"
              name="disk"
              checked={form.disk === 'existing'}
              onChange={() => set('disk', 'existing')}
            />{' '}
            Use an existing virtual hard disk
          </label>
          {form.disk === 'existing' ? (
            <div className="indent">
              <Row label="Location:">
                <input
                  type="text"
                  value={form.existingDiskPath}
                  placeholder="/path/to/disk.qcow2"
                  onChange={(e) => set('existingDiskPath', e.target.value)}
                />
              </Row>
            </div>
          ) : null}
          <label className="check">
            <input type="radio" name="disk" checked={form.disk === 'none'} onChange={() => set('disk', 'none')} />{' '}
            Attach a virtual hard disk later
          </label>
        </fieldset>
      ),
    },
    {
      id: 'boot',
      label: 'Installation Options',
      errors: errors.boot,
      content: <>{form.generation === 'kernel' ? kernelOptions : isoOptions}</>,
    },
    {
      id: 'summary',
      label: 'Summary',
      content: (
        <>
          <p className="prose">
            You have successfully completed the New Virtual Machine Wizard. You are about to create the following
            virtual machine.
          </p>
          <dl className="summary-list">
            <dt>Name:</dt>
            <dd>{form.name}</dd>
            <dt>Memory:</dt>
            <dd>{form.memoryMiB} MB</dd>
            <dt>Processors:</dt>
            <dd>{form.processors}</dd>
            <dt>Network:</dt>
            <dd>
              {form.network === 'nat'
                ? 'NAT'
                : form.network === 'bridge'
                  ? `Bridge ${form.bridgeName.trim()}`
                  : 'Not Connected'}
            </dd>
            <dt>Hard Disk:</dt>
            <dd>
              {form.disk === 'new'
                ? `${form.newDiskName} (${form.newDiskFormat.toUpperCase()}, ${form.newDiskSizeGiB} GB)`
                : form.disk === 'existing'
                  ? form.existingDiskPath
                  : 'None'}
            </dd>
            <dt>Generation:</dt>
            <dd>
              {form.generation === '1'
                ? 'Generation 1 (BIOS)'
                : form.generation === '2'
                  ? `Generation 2 (UEFI, Secure Boot ${form.secureBoot ? 'on' : 'off'})`
                  : 'None: a kernel booted directly'}
            </dd>
            {form.generation === 'kernel' ? (
              <>
                <dt>Kernel:</dt>
                <dd>{form.kernelPath}</dd>
                <dt>Command line:</dt>
                <dd>{form.cmdline || '(empty)'}</dd>
              </>
            ) : (
              <>
                <dt>Operating system:</dt>
                <dd>{form.install === 'iso' ? `Installed from ${form.isoPath}` : 'Installed later'}</dd>
              </>
            )}
          </dl>
          <label className="check">
            <input type="checkbox" checked={form.startAfter} onChange={(e) => set('startAfter', e.target.checked)} />{' '}
            Start the virtual machine after it is created
          </label>
        </>
      ),
    },
  ];
  return (
    <Wizard
      title="New Virtual Machine Wizard"
      steps={steps}
      busy={busy}
      error={error}
      onCancel={onClose}
      onFinish={() => void finish()}
    />
  );
}
