// The VM configuration, versioned. config.json holds a VmConfig with `schemaVersion`;
// migrateConfig() upgrades older files and refuses newer ones. Unknown fields are refused
// (a typo must not be dropped silently); every error names the field that failed.
import { z } from 'zod';

import { BerthError } from './errors';
import { formatIssues } from './issues';

export const CONFIG_SCHEMA_VERSION = 2;
// Device limits, defined once: the wizard, the CLI and the services refuse what the VMM
// could not build at start.
// virtio-mmio devices a VM can have, one ISA interrupt each (kVirtioIrqs in
// native/machine/machine.h; `npm run lint` checks that the two agree). Disks and network
// adapters share them.
export const MAX_VIRTIO_DEVICES = 9;
export const MAX_DISKS = MAX_VIRTIO_DEVICES;
export const MAX_NETWORK_ADAPTERS = 8;
// Slot numbers (the guest reads the slot as the disk's serial, berth-slot-N).
export const MAX_DISK_SLOTS = 64;
// DVD drives of a Generation 1 or 2 VM, on its SCSI controller (one virtio device, counted
// with the disks and adapters when the VM has any drive or SCSI disk), and their slot
// numbers (the drives' order on the controller, after its SCSI disks).
export const MAX_DVD_DRIVES = 4;
export const MAX_DVD_SLOTS = 8;
// Host port forwards per NAT adapter.
export const MAX_PORT_FORWARDS = 32;
export const MAX_MEMORY_MIB = 1024 * 1024; // 1 TiB; the host's own limit is checked at start
export const MAX_PROCESSORS = 256;

// A random unicast MAC in the locally administered range (x2:, x6:, xA:, xE:).
export function randomMac(): string {
  const bytes = new Uint8Array(6);
  globalThis.crypto.getRandomValues(bytes);
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const name = z
  .string()
  .min(1)
  .max(100)
  .refine((s) => s.trim() === s, 'must not start or end with spaces')
  // eslint-disable-next-line no-control-regex
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters');
export const VmName = name;

const mib = z.int();
const path = z
  .string()
  .min(1)
  .refine((s) => !s.includes('\0'), 'must not contain NUL characters');

export const DynamicMemory = z.strictObject({
  // Reserved: the balloon arrives later. Enabling it now is refused rather than ignored.
  enabled: z.boolean().refine((v) => v === false, 'dynamic memory is reserved and cannot be enabled yet'),
  minimumMiB: mib.min(2).max(MAX_MEMORY_MIB).default(512),
  maximumMiB: mib.min(2).max(MAX_MEMORY_MIB).default(MAX_MEMORY_MIB),
});

export const MemorySettings = z.strictObject({
  startupMiB: mib.min(2).max(MAX_MEMORY_MIB),
  dynamic: DynamicMemory.default({ enabled: false, minimumMiB: 512, maximumMiB: MAX_MEMORY_MIB }),
});

export const ProcessorSettings = z.strictObject({ count: z.int().min(1).max(MAX_PROCESSORS) });

const kernelBoot = {
  kernelPath: path,
  initrdPath: path.optional(),
  cmdline: z
    .string()
    .max(4096)
    .refine((s) => !s.includes('\0'), 'must not contain NUL characters')
    .default(''),
};
// The kinds of device a Generation 1 or 2 VM's firmware tries, first to last.
export const BOOT_DEVICES = ['dvd', 'disk', 'network'] as const;
export type BootDevice = (typeof BOOT_DEVICES)[number];
export const DEFAULT_BOOT_ORDER: readonly BootDevice[] = ['dvd', 'disk', 'network'];
export const BootOrder = z
  .array(z.enum(BOOT_DEVICES))
  .min(1)
  .max(BOOT_DEVICES.length)
  .superRefine((order, ctx) => {
    order.forEach((d, i) => {
      if (order.indexOf(d) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `'${d}' is listed twice` });
    });
  });
export type BootOrder = z.infer<typeof BootOrder>;
const bootOrder = BootOrder.default(() => [...DEFAULT_BOOT_ORDER]);
// Generation 1 and 2: the display (the graphical console), on as in Hyper-V. Off, the VM has
// its serial console only, as a headless server; a BIOS VM then also skips the display's
// option ROM, whose text output is slow where VM exits are (nested virtualization).
const display = z.boolean().default(true);

export const BootSettings = z.discriminatedUnion('kind', [
  // A PVH ELF kernel (the test guest, or a Linux vmlinux with the PVH note).
  z.strictObject({ kind: z.literal('pvh'), ...kernelBoot }),
  // A Linux bzImage or vmlinux through the Linux boot protocol.
  z.strictObject({ kind: z.literal('linux'), ...kernelBoot }),
  // Generation 2: UEFI (OVMF) with the VM's own variable store (<vm>/firmware/uefi-vars.fd),
  // made from the template with Microsoft's keys enrolled (Secure Boot on) or without keys.
  z.strictObject({ kind: z.literal('uefi'), secureBoot: z.boolean().default(true), bootOrder, display }),
  // Generation 1: a BIOS (SeaBIOS).
  z.strictObject({ kind: z.literal('bios'), bootOrder, display }),
]);
export type BootSettings = z.infer<typeof BootSettings>;
export type FirmwareBoot = Extract<BootSettings, { kind: 'uefi' | 'bios' }>;
export type KernelBoot = Extract<BootSettings, { kind: 'pvh' | 'linux' }>;

export function isFirmwareBoot(boot: BootSettings): boolean {
  return boot.kind === 'uefi' || boot.kind === 'bios';
}

// Hyper-V's words: Generation 1 (BIOS), Generation 2 (UEFI); a kernel booted directly has none.
export function generationOf(boot: BootSettings): 1 | 2 | undefined {
  return boot.kind === 'bios' ? 1 : boot.kind === 'uefi' ? 2 : undefined;
}

// A DVD drive (Generation 1 and 2 VMs): an ISO image, or no media when path is absent.
export const DvdDrive = z.strictObject({
  slot: z
    .int()
    .min(0)
    .max(MAX_DVD_SLOTS - 1),
  path: path.optional(),
});
export type DvdDrive = z.infer<typeof DvdDrive>;

const slot = z
  .int()
  .min(0)
  .max(MAX_DISK_SLOTS - 1);
// Which controller a disk is on: a virtio-blk device of its own (the default, every VM), or
// the SCSI controller of a Generation 1 or 2 VM as a SCSI hard disk (as Hyper-V's
// Generation 2 VMs have them). Absent means 'virtio', so older files need no migration.
export const DISK_CONTROLLERS = ['virtio', 'scsi'] as const;
export const DiskController = z.enum(DISK_CONTROLLERS);
export type DiskController = z.infer<typeof DiskController>;
export const DiskAttachment = z.discriminatedUnion('kind', [
  z.strictObject({
    slot,
    kind: z.literal('virtual'),
    path,
    readOnly: z.boolean().default(false),
    controller: DiskController.optional(),
  }),
  // A host block device, opened exclusively and excluded from checkpoints (part B).
  z.strictObject({
    slot,
    kind: z.literal('passthrough'),
    deviceId: z.string().min(1),
    readOnly: z.boolean().default(false),
    controller: DiskController.optional(),
  }),
]);
export type DiskAttachment = z.infer<typeof DiskAttachment>;

export function diskController(d: { controller?: DiskController | undefined }): DiskController {
  return d.controller ?? 'virtio';
}

export const MacAddress = z
  .string()
  .regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i, 'must be a MAC address like 02:00:00:12:34:56')
  .refine((m) => (parseInt(m.slice(0, 2), 16) & 1) === 0, 'must be a unicast address (first byte even)')
  .transform((m) => m.toLowerCase());

// A NAT adapter's host port forward: connections to hostAddress:hostPort on the host reach
// the guest's DHCP address (10.0.2.15) on guestPort.
export const PortForward = z.strictObject({
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
  hostAddress: z.ipv4().default('127.0.0.1'),
  hostPort: z.int().min(1).max(65535),
  guestPort: z.int().min(1).max(65535),
});
export type PortForward = z.infer<typeof PortForward>;

export const NetworkAdapter = z
  .strictObject({
    kind: z.enum(['nat', 'bridge']),
    mac: MacAddress.default(randomMac),
    bridge: z.string().min(1).optional(),
    // NAT only: no connections from the guest to the outside (forwards still work).
    restricted: z.boolean().optional(),
    portForwards: z.array(PortForward).max(MAX_PORT_FORWARDS).optional(),
  })
  .superRefine((a, ctx) => {
    if (a.kind === 'bridge' && (a.restricted !== undefined || a.portForwards !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [a.restricted !== undefined ? 'restricted' : 'portForwards'],
        message: "is only for kind 'nat' (a bridged adapter is on the host's network)",
      });
    }
    const seen = new Set<string>();
    (a.portForwards ?? []).forEach((f, i) => {
      const key = `${f.protocol} ${f.hostAddress}:${f.hostPort}`;
      if (seen.has(key)) {
        ctx.addIssue({ code: 'custom', path: ['portForwards', i, 'hostPort'], message: `${key} is forwarded twice` });
      }
      seen.add(key);
    });
    if (a.kind === 'bridge' && a.bridge === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['bridge'],
        message: "is required when kind is 'bridge' (the host bridge to join)",
      });
    }
    if (a.kind === 'nat' && a.bridge !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['bridge'], message: "is only for kind 'bridge'" });
    }
  });
export type NetworkAdapter = z.infer<typeof NetworkAdapter>;

export const Com1Settings = z.strictObject({ enabled: z.boolean().default(true) });

export const CHECKPOINT_TYPES = ['standard', 'production', 'disabled'] as const;
export const CheckpointSettings = z.strictObject({
  type: z.enum(CHECKPOINT_TYPES).default('standard'),
  // Hyper-V's "create a standard checkpoint if it's not possible to create a production
  // checkpoint" (on by default, as there). A production checkpoint of a running VM needs
  // the guest's cooperation, which Berth has no channel for yet.
  standardFallback: z.boolean().default(true),
  // A folder for checkpoint files; absent means <vm>/checkpoints.
  location: path.optional(),
});

export const AutomaticStartAction = z.enum(['nothing', 'start', 'restart-if-running']);
export const AutomaticStopAction = z.enum(['turn-off', 'save', 'shut-down']);
// Seconds `berth host startup` waits before starting the VM (to spread the host's load).
export const AutomaticStartDelay = z.int().min(0).max(3600);

// The fields of a configuration, without the checks that span several fields.
export const VmConfigShape = z.strictObject({
  schemaVersion: z.literal(CONFIG_SCHEMA_VERSION),
  id: z.uuid(),
  name,
  notes: z.string().max(10_000).default(''),
  memory: MemorySettings,
  processors: ProcessorSettings.default({ count: 1 }),
  boot: BootSettings,
  disks: z.array(DiskAttachment).max(MAX_DISKS).default([]),
  network: z.array(NetworkAdapter).max(MAX_NETWORK_ADAPTERS).default([]),
  dvdDrives: z.array(DvdDrive).max(MAX_DVD_DRIVES).default([]),
  com1: Com1Settings.default({ enabled: true }),
  checkpoints: CheckpointSettings.default({ type: 'standard', standardFallback: true }),
  automaticStartAction: AutomaticStartAction.default('nothing'),
  automaticStartDelaySeconds: AutomaticStartDelay.default(0),
  automaticStopAction: AutomaticStopAction.default('turn-off'),
  // The test-exit port (0xf4): lets a test guest end the VM with a code.
  testExitPort: z.boolean().default(false),
  createdAt: z.iso.datetime().optional(),
});

// Why a VM with this many virtio disks, adapters and SCSI devices (DVD drives and SCSI
// disks) could not start, or undefined. The machine gives each virtio disk and adapter a
// virtio device, and the SCSI controller that holds the DVD drives and SCSI disks is one
// more (only when it holds any).
export function deviceCountProblem(disks: number, adapters: number, scsiDevices = 0): string | undefined {
  const controller = scsiDevices > 0 ? 1 : 0;
  if (disks + adapters + controller <= MAX_VIRTIO_DEVICES) return undefined;
  const limit = controller
    ? `${MAX_VIRTIO_DEVICES - 1} virtio disks and network adapters together when it has DVD drives or SCSI ` +
      'disks (their SCSI controller takes one of its device slots)'
    : `${MAX_VIRTIO_DEVICES} disks and network adapters together`;
  return `a VM can have at most ${limit} (this one would have ${disks} disk(s) and ${adapters} adapter(s)); remove some`;
}

function crossChecks(c: z.infer<typeof VmConfigShape>, ctx: z.RefinementCtx): void {
  const seen = new Map<number, number>();
  c.disks.forEach((d, i) => {
    const first = seen.get(d.slot);
    if (first !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['disks', i, 'slot'],
        message: `slot ${d.slot} is already used by disks[${first}]`,
      });
    } else seen.set(d.slot, i);
  });
  const macs = new Map<string, number>();
  c.network.forEach((n, i) => {
    const first = macs.get(n.mac);
    if (first !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['network', i, 'mac'],
        message: `${n.mac} is already used by network[${first}]`,
      });
    } else macs.set(n.mac, i);
  });
  const scsiDisks = c.disks.filter((d) => diskController(d) === 'scsi').length;
  const tooMany = deviceCountProblem(c.disks.length - scsiDisks, c.network.length, c.dvdDrives.length + scsiDisks);
  if (tooMany) ctx.addIssue({ code: 'custom', path: ['disks'], message: tooMany });
  if (!isFirmwareBoot(c.boot)) {
    c.disks.forEach((d, i) => {
      if (diskController(d) !== 'scsi') return;
      ctx.addIssue({
        code: 'custom',
        path: ['disks', i, 'controller'],
        message:
          "'scsi' is for Generation 1 (bios) and 2 (uefi) VMs, whose SCSI controller holds the disk; a VM that " +
          "boots a kernel file directly has none: use 'virtio'",
      });
    });
  }
  if (c.dvdDrives.length > 0 && !isFirmwareBoot(c.boot)) {
    ctx.addIssue({
      code: 'custom',
      path: ['dvdDrives'],
      message:
        'DVD drives are for Generation 1 (bios) and 2 (uefi) VMs; a VM that boots a kernel file directly has none',
    });
  }
  const dvdSlots = new Map<number, number>();
  c.dvdDrives.forEach((d, i) => {
    const first = dvdSlots.get(d.slot);
    if (first !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['dvdDrives', i, 'slot'],
        message: `slot ${d.slot} is already used by dvdDrives[${first}]`,
      });
    } else dvdSlots.set(d.slot, i);
  });
  const dyn = c.memory.dynamic;
  if (dyn.minimumMiB > dyn.maximumMiB) {
    ctx.addIssue({ code: 'custom', path: ['memory', 'dynamic', 'minimumMiB'], message: 'must not exceed maximumMiB' });
  }
}

export const VmConfig = VmConfigShape.superRefine(crossChecks);
export type VmConfig = z.infer<typeof VmConfig>;
export type VmConfigInput = z.input<typeof VmConfig>;

// What `vm new` takes: a configuration without the fields Berth assigns.
export const NewVmRequest = VmConfigShape.omit({ schemaVersion: true, id: true, createdAt: true });
export type NewVmRequest = z.input<typeof NewVmRequest>;

export class ConfigError extends BerthError {
  constructor(
    readonly issues: string[],
    code: 'INVALID_CONFIG' | 'UNSUPPORTED_VERSION' = 'INVALID_CONFIG',
  ) {
    super(code, issues.join('; '));
  }
}

// Validates a current-version configuration; throws ConfigError naming each failing field.
export function parseConfig(raw: unknown): VmConfig {
  const result = VmConfig.safeParse(raw);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues, raw, '(config)'));
  return result.data;
}

// ---- migrations -----------------------------------------------------------------------

type Json = Record<string, unknown>;
// migrations[n] turns a version-n object into a version-(n+1) object. Each step may assume
// only what version n promised, and must not validate: the final parse does.
const migrations: Record<number, (old: Json) => Json> = {
  // Version 0: the pre-release flat layout (no schemaVersion), as the demo's MachineConfig:
  // { id, name, memoryMiB, vcpus, kernelPath, initrdPath?, cmdline?, testExitPort? }.
  0: (old) => {
    const { memoryMiB, vcpus, kernelPath, initrdPath, cmdline, ...rest } = old;
    const boot: Json = { kind: 'pvh', kernelPath };
    if (initrdPath !== undefined) boot['initrdPath'] = initrdPath;
    if (cmdline !== undefined) boot['cmdline'] = cmdline;
    return { ...rest, schemaVersion: 1, memory: { startupMiB: memoryMiB }, processors: { count: vcpus }, boot };
  },
  // Version 2 adds firmware boot ('uefi', 'bios') and DVD drives. Version 1 refused the
  // reserved kind 'firmware', so every version-1 VM boots a kernel and keeps doing so.
  1: (old) => ({ ...old, schemaVersion: 2 }),
};

export interface MigrationResult {
  config: VmConfig;
  fromVersion: number;
  // True when the stored text should be rewritten: an older version, or defaults filled in
  // (a generated MAC must be saved, or it would change on every read).
  changed: boolean;
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

// Brings a configuration document up to the current version, without the final validation.
function upgrade(raw: unknown): { doc: Json; fromVersion: number } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(['(config): must be a JSON object']);
  }
  let doc = raw as Json;
  const declared = doc['schemaVersion'];
  const fromVersion = declared === undefined ? 0 : declared;
  if (typeof fromVersion !== 'number' || !Number.isInteger(fromVersion) || fromVersion < 0) {
    throw new ConfigError([`schemaVersion: must be a whole number, not ${JSON.stringify(declared)}`]);
  }
  if (fromVersion > CONFIG_SCHEMA_VERSION) {
    throw new ConfigError(
      [
        `schemaVersion: ${fromVersion} is newer than this Berth understands (${CONFIG_SCHEMA_VERSION}); ` +
          'open this VM with the newer Berth that wrote it',
      ],
      'UNSUPPORTED_VERSION',
    );
  }
  for (let v = fromVersion; v < CONFIG_SCHEMA_VERSION; v++) {
    const step = migrations[v];
    if (!step) throw new ConfigError([`schemaVersion: no migration from version ${v}`], 'UNSUPPORTED_VERSION');
    doc = step(doc);
  }
  return { doc, fromVersion };
}

// For configurations kept inside other files (a checkpoint's record keeps the configuration
// of its time): the document at the current version, left for the schema to judge.
export function upgradeConfigDocument(raw: unknown): unknown {
  try {
    return upgrade(raw).doc;
  } catch {
    return raw;
  }
}

export function migrateConfigDetailed(raw: unknown): MigrationResult {
  const { doc, fromVersion } = upgrade(raw);
  const config = parseConfig(doc);
  return {
    config,
    fromVersion,
    changed: fromVersion !== CONFIG_SCHEMA_VERSION || canonical(raw) !== canonical(config),
  };
}

export function migrateConfig(raw: unknown): VmConfig {
  return migrateConfigDetailed(raw).config;
}
