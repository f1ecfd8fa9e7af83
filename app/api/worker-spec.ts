// What the services hand the per-VM worker (berth-vmm worker): run/machine.json, the machine
// to build, fully resolved from the VM's configuration at start (disks in slot order with
// passthrough devices resolved to their /dev path, adapters with their MACs). The worker
// (native/worker/machine_spec.cc) refuses anything else, naming the field.
import { z } from 'zod';

export const WORKER_SPEC_VERSION = 2;

const filePath = z
  .string()
  .min(1)
  .refine((p) => !p.includes('\0'), 'must not contain NUL characters');

export const WorkerDisk = z.strictObject({
  path: filePath,
  readOnly: z.boolean(),
  format: z.enum(['raw', 'qcow2', 'vhdx', 'vhd', 'host-device']).optional(),
  // What the guest reads as the disk's serial (VIRTIO_BLK_T_GET_ID, or the SCSI unit serial
  // number page): "berth-slot-N".
  serial: z.string().max(20),
  // 'scsi': a SCSI hard disk on the firmware VM's SCSI controller (targets: the SCSI disks
  // in this order, then the DVD drives); absent or 'virtio': a virtio-blk device.
  controller: z.enum(['virtio', 'scsi']).optional(),
});

export const WorkerPortForward = z.strictObject({
  protocol: z.enum(['tcp', 'udp']),
  hostAddress: z.ipv4(),
  hostPort: z.int().min(1).max(65535),
  guestPort: z.int().min(1).max(65535),
});

export const WorkerNic = z.strictObject({
  kind: z.enum(['nat', 'tap']),
  mac: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/),
  restricted: z.boolean(),
  portForwards: z.array(WorkerPortForward),
  // tap only: the device to open (created when absent) and the bridge it joins.
  tapName: z.string().min(1).optional(),
  bridge: z.string().min(1).optional(),
});

export const WorkerKernelBoot = z.strictObject({
  kernelPath: filePath,
  initrdPath: filePath.optional(),
  cmdline: z.string(),
});

// Generation 1 (bios: SeaBIOS's ROM) and 2 (uefi: OVMF's code image and the VM's own copy
// of a variable store, which the firmware writes). bootOrder: the kinds of device the
// firmware tries, first to last (default dvd, disk, network). display: a PCI display
// (bochs-display) served as the graphical console on the run folder's display socket; a
// BIOS VM's display needs SeaVGABIOS's option ROM (displayRomPath).
export const WorkerFirmwareBoot = z.strictObject({
  firmware: z.discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('uefi'),
      codePath: filePath,
      varsPath: filePath,
      bootOrder: z.array(z.enum(['dvd', 'disk', 'network'])).optional(),
      display: z.boolean().optional(),
    }),
    z.strictObject({
      kind: z.literal('bios'),
      codePath: filePath,
      bootOrder: z.array(z.enum(['dvd', 'disk', 'network'])).optional(),
      display: z.boolean().optional(),
      displayRomPath: filePath.optional(),
    }),
  ]),
});

export const WorkerSpec = z.strictObject({
  specVersion: z.literal(WORKER_SPEC_VERSION),
  vmId: z.uuid(),
  name: z.string().min(1),
  memoryMiB: z.int().min(2),
  vcpus: z.int().min(1),
  boot: z.union([WorkerKernelBoot, WorkerFirmwareBoot]),
  testExitPort: z.boolean(),
  // COM1's output reaches console clients (false: the guest's serial port goes nowhere).
  com1: z.boolean(),
  disks: z.array(WorkerDisk),
  nics: z.array(WorkerNic),
  // DVD drives of a firmware-booted VM, on its SCSI controller: an ISO image each, or empty
  // (path ''). A VM that boots a kernel file has none.
  dvds: z
    .array(z.strictObject({ path: z.string().refine((p) => !p.includes('\0'), 'must not contain NUL characters') }))
    .optional(),
  // Resume from this state file (absolute) instead of booting: the saved state of a Saved VM
  // or a checkpoint's memory. Only read. The rest of the spec must describe the machine that
  // was saved (memory, vCPUs, the same disks in the same order, NICs), else the start fails
  // with STATE_MACHINE_MISMATCH; a damaged file with STATE_INVALID, STATE_VERSION or
  // STATE_CPU_MISMATCH.
  restoreFrom: filePath.refine((p) => p.startsWith('/'), 'must be an absolute path').optional(),
});
export type WorkerSpec = z.infer<typeof WorkerSpec>;
