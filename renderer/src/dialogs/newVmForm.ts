// The New Virtual Machine wizard's form, its validation per page, and the request it makes.
// Validation uses the contract's own schema (NewVmRequest), so the wizard refuses exactly
// what the service would, and each problem is shown on the page that owns the field.
import { NewVmRequest, type NewVmRequest as NewVmRequestInput } from '../../../app/api/config';
import type { DiskFormat, NewDiskRequest } from '../../../app/api/bridge';

// Hyper-V's choice, plus Berth's own: a kernel file booted directly (no firmware).
export type Generation = 'kernel' | '1' | '2';

export interface NewVmForm {
  name: string;
  generation: Generation;
  secureBoot: boolean; // Generation 2
  install: 'later' | 'iso'; // Generation 1 and 2: the operating system's installation
  isoPath: string;
  memoryMiB: number;
  processors: number;
  network: 'none' | 'nat' | 'bridge';
  bridgeName: string; // the host bridge a bridged adapter joins
  disk: 'new' | 'existing' | 'none';
  newDiskName: string;
  newDiskFormat: DiskFormat;
  newDiskSizeGiB: number;
  existingDiskPath: string;
  bootKind: 'pvh' | 'linux';
  kernelPath: string;
  initrdPath: string;
  cmdline: string;
  testExitPort: boolean;
  startAfter: boolean;
}

export const defaultNewVmForm: NewVmForm = {
  name: 'New Virtual Machine',
  generation: 'kernel',
  secureBoot: true,
  install: 'later',
  isoPath: '',
  memoryMiB: 512,
  processors: 1,
  network: 'none',
  bridgeName: 'br0',
  disk: 'none',
  newDiskName: 'New Virtual Machine.qcow2',
  newDiskFormat: 'qcow2',
  newDiskSizeGiB: 16,
  existingDiskPath: '',
  bootKind: 'pvh',
  kernelPath: '',
  initrdPath: '',
  cmdline: '',
  testExitPort: false,
  startAfter: false,
};

export type NewVmStep = 'name' | 'generation' | 'memory' | 'processors' | 'networking' | 'disk' | 'boot';

// The new disk vm.create makes in the VM's folder, with the VM (sizes in whole MiB).
export function toNewDisks(form: NewVmForm): NewDiskRequest[] {
  if (form.disk !== 'new') return [];
  return [
    {
      name: form.newDiskName.trim(),
      format: form.newDiskFormat,
      sizeBytes: Math.round(form.newDiskSizeGiB * 1024) * 1024 * 1024,
    },
  ];
}

// The request for vm.create (a new disk travels beside it: toNewDisks).
// Generation 1 gets a DVD drive as in Hyper-V (empty unless an image was chosen);
// Generation 2 gets one for an image. With an image the DVD drive boots first.
function firmware(form: NewVmForm): Pick<NewVmRequestInput, 'boot' | 'dvdDrives'> {
  const iso = form.install === 'iso' ? form.isoPath.trim() : undefined;
  const bootOrder = ['dvd', 'disk', 'network'] as const;
  const dvdDrives = iso !== undefined ? [{ slot: 0, path: iso }] : form.generation === '1' ? [{ slot: 0 }] : [];
  const boot: NewVmRequestInput['boot'] =
    form.generation === '1'
      ? { kind: 'bios', bootOrder: [...bootOrder] }
      : { kind: 'uefi', secureBoot: form.secureBoot, bootOrder: [...bootOrder] };
  return { boot, dvdDrives };
}

export function toRequest(form: NewVmForm): NewVmRequestInput {
  const kernel: NewVmRequestInput['boot'] = {
    kind: form.bootKind,
    kernelPath: form.kernelPath.trim(),
    cmdline: form.cmdline,
    ...(form.initrdPath.trim() !== '' ? { initrdPath: form.initrdPath.trim() } : {}),
  };
  const { boot, dvdDrives } = form.generation === 'kernel' ? { boot: kernel, dvdDrives: [] } : firmware(form);
  return {
    name: form.name,
    memory: { startupMiB: form.memoryMiB },
    processors: { count: form.processors },
    boot,
    dvdDrives,
    disks:
      form.disk === 'existing' && form.existingDiskPath.trim() !== ''
        ? [{ slot: 0, kind: 'virtual', path: form.existingDiskPath.trim() }]
        : [],
    network:
      form.network === 'nat'
        ? [{ kind: 'nat' }]
        : form.network === 'bridge'
          ? [{ kind: 'bridge', bridge: form.bridgeName.trim() }]
          : [],
    testExitPort: form.testExitPort,
  };
}

const stepOfField: Record<string, NewVmStep> = {
  name: 'name',
  memory: 'memory',
  processors: 'processors',
  network: 'networking',
  disks: 'disk',
  boot: 'boot',
  dvdDrives: 'boot',
  testExitPort: 'boot',
};

const fieldLabels: Record<string, string> = {
  name: 'Name',
  'memory.startupMiB': 'Startup memory (MB)',
  'processors.count': 'Number of virtual processors',
  'boot.kernelPath': 'Kernel',
  'boot.initrdPath': 'Initial RAM disk',
  'boot.cmdline': 'Kernel command line',
  'dvdDrives.0.path': 'Image file (.iso)',
  'network.0.bridge': 'Bridge',
};

export function validateNewVm(form: NewVmForm): Record<NewVmStep, string[]> {
  const out: Record<NewVmStep, string[]> = {
    name: [],
    generation: [],
    memory: [],
    processors: [],
    networking: [],
    disk: [],
    boot: [],
  };
  const r = NewVmRequest.safeParse(toRequest(form));
  if (!r.success) {
    for (const issue of r.error.issues) {
      const path = issue.path.map(String);
      const step = stepOfField[path[0] ?? ''] ?? 'name';
      const key = path.join('.');
      let msg = issue.message;
      if (key === 'boot.kernelPath' && form.kernelPath.trim() === '') msg = 'is required: the kernel to boot';
      else if (key === 'dvdDrives.0.path' && form.isoPath.trim() === '') {
        msg = 'is required: the bootable image file (.iso) to install from';
      } else if (key === 'network.0.bridge' && form.bridgeName.trim() === '') {
        msg = 'is required: the host bridge to join (such as br0)';
      } else if (issue.code === 'too_small' && 'minimum' in issue) msg = `must be at least ${String(issue.minimum)}`;
      else if (issue.code === 'too_big' && 'maximum' in issue) msg = `must be at most ${String(issue.maximum)}`;
      out[step].push(`${fieldLabels[key] ?? key}: ${msg}`);
    }
  }
  if (!Number.isInteger(form.memoryMiB)) out.memory.push('Startup memory (MB): must be a whole number');
  if (form.disk === 'new') {
    if (form.newDiskName.trim() === '' || form.newDiskName.includes('/')) {
      out.disk.push('Name: must be a file name (no folders)');
    }
    if (!(form.newDiskSizeGiB >= 1) || form.newDiskSizeGiB > 64 * 1024)
      out.disk.push('Size (GB): must be between 1 and 65536');
  }
  if (form.disk === 'existing' && form.existingDiskPath.trim() === '')
    out.disk.push('Location: choose a virtual hard disk');
  return out;
}
