#!/usr/bin/env node
// The `berth` command line: the same services as the window, one subcommand per action.
// --json on every command prints one JSON document (errors as {"error":{code,message}}).
// Exit codes: 0 done, 1 refused or failed, 2 usage error.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import {
  BerthError,
  toErrorBody,
  VIRTUAL_DISK_FORMATS,
  type CheckpointList,
  type NetworkAdapter,
  type VirtualDiskFormat,
  type VmDetails,
  type VmSummary,
} from '../api';
import {
  CheckpointService,
  DiskService,
  exportCheckpoint,
  ExportService,
  HardwareService,
  VmManager,
} from '../services';
import {
  diskFormat,
  filePath,
  list,
  oneOf,
  parseBytes,
  parseCount,
  parseDiskSpec,
  parseMiB,
  parseNicSpec,
  parseOnOff,
  str,
  UsageError,
  type Values,
} from './parse';
import { SERVE_USAGE, serveMain } from './serve';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

type Options = NonNullable<ParseArgsConfig['options']>;

interface Command {
  usage: string;
  summary: string;
  options?: Options;
  positionals: string[]; // names of the required positionals
  run: (ctx: Context) => Promise<unknown>;
}

interface Context {
  manager: VmManager;
  disks: DiskService;
  hardware: HardwareService;
  checkpoints: CheckpointService;
  exports: ExportService;
  values: Values;
  args: string[];
  json: boolean;
  print: (text: string) => void;
}

const common: Options = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } };

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

// Progress for long operations: a bar on a terminal (stderr), nothing with --json or when
// stderr is not a terminal; Ctrl-C aborts the operation (which cleans up after itself).
function progress(
  ctx: Context,
  label: string,
): {
  onProgress: (done: number, total: number) => void;
  signal: AbortSignal;
  end: () => void;
} {
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.on('SIGINT', onSigint);
  const tty = !ctx.json && process.stderr.isTTY === true;
  let drawn = false;
  return {
    signal: controller.signal,
    onProgress: (done, total) => {
      if (!tty) return;
      const width = 30;
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      process.stderr.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}`);
      drawn = true;
    },
    end: () => {
      process.off('SIGINT', onSigint);
      if (drawn) process.stderr.write('\n');
    },
  };
}

async function withProgress<T>(
  ctx: Context,
  label: string,
  fn: (p: ReturnType<typeof progress>) => Promise<T>,
): Promise<T> {
  const p = progress(ctx, label);
  try {
    return await fn(p);
  } finally {
    p.end();
  }
}

function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function adapterText(n: NetworkAdapter): string {
  return n.kind === 'bridge' ? `bridge ${n.bridge ?? ''} ${n.mac}` : `nat ${n.mac}`;
}

function summaryLine(vm: VmSummary): string {
  return `'${vm.name}' is ${vm.state}${vm.stateReason ? ` (${vm.stateReason})` : ''}`;
}

function showText(vm: VmDetails): string {
  const c = vm.config;
  const lines: [string, string][] = [
    ['Name', c.name],
    ['Id', c.id],
    ['State', vm.state + (vm.stateReason ? ` (${vm.stateReason})` : '')],
    ['Memory', `${c.memory.startupMiB} MiB`],
    ['Processors', String(c.processors.count)],
  ];
  if (c.boot.kind !== 'firmware') {
    lines.push(['Boot', `${c.boot.kind} ${c.boot.kernelPath}`]);
    if (c.boot.initrdPath) lines.push(['Initrd', c.boot.initrdPath]);
    lines.push(['Command line', c.boot.cmdline]);
  }
  lines.push(['COM1', c.com1.enabled ? 'on' : 'off']);
  lines.push([
    'Disks',
    c.disks.length === 0
      ? 'none'
      : c.disks.map((d) => `${d.slot}:${d.kind === 'virtual' ? d.path : d.deviceId}`).join(', '),
  ]);
  lines.push(['Network', c.network.length === 0 ? 'none' : c.network.map(adapterText).join(', ')]);
  lines.push([
    'Checkpoints',
    c.checkpoints.type === 'production'
      ? `production${c.checkpoints.standardFallback ? ' (standard when a production one is not possible)' : ' only'}`
      : c.checkpoints.type,
  ]);
  lines.push(['Automatic start', c.automaticStartAction]);
  lines.push(['Automatic stop', c.automaticStopAction]);
  if (c.testExitPort) lines.push(['Test-exit port', 'on']);
  if (vm.workerPid !== undefined) lines.push(['Worker', `pid ${vm.workerPid}`]);
  if (vm.stats) {
    lines.push(['CPU usage', `${vm.stats.cpuUsagePercent}%`]);
    lines.push(['Uptime', formatDuration(vm.stats.uptimeMs)]);
  }
  if (vm.lastExit) lines.push(['Last exit', `${vm.lastExit.reason} code ${vm.lastExit.code} at ${vm.lastExit.at}`]);
  if (c.notes) lines.push(['Notes', c.notes]);
  lines.push(['Folder', vm.folder]);
  const w = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n');
}

const settingOptions: Options = {
  memory: { type: 'string' },
  cpus: { type: 'string' },
  kernel: { type: 'string' },
  initrd: { type: 'string' },
  'no-initrd': { type: 'boolean' },
  cmdline: { type: 'string' },
  boot: { type: 'string' },
  notes: { type: 'string' },
  'test-exit-port': { type: 'string' },
  com1: { type: 'string' },
  'checkpoint-type': { type: 'string' },
  'automatic-start-action': { type: 'string' },
  'automatic-stop-action': { type: 'string' },
  'standard-checkpoint-fallback': { type: 'string' },
};

function lifecycle(verb: string, summary: string, run: (m: VmManager, name: string) => Promise<VmSummary>): Command {
  return {
    usage: `berth vm ${verb} NAME [--json]`,
    summary,
    positionals: ['NAME'],
    run: async ({ manager, args, print }) => {
      const vm = await run(manager, args[0] ?? '');
      print(summaryLine(vm));
      return vm;
    },
  };
}

const commands: Record<string, Command> = {
  list: {
    usage: 'berth vm list [--json]',
    summary: 'list the VMs with their state',
    positionals: [],
    run: async ({ manager, print }) => {
      const vms = await manager.list();
      if (vms.length === 0) print("no VMs yet; create one with 'berth vm new --name NAME --kernel PATH'");
      else {
        const rows = [['NAME', 'STATE', 'CPU', 'MEMORY', 'UPTIME', 'ID']];
        for (const vm of vms) {
          rows.push([
            vm.name,
            vm.state,
            vm.stats ? `${vm.stats.cpuUsagePercent}%` : '',
            `${vm.memoryMiB} MiB`,
            formatDuration(vm.stats?.uptimeMs),
            vm.id,
          ]);
        }
        print(table(rows));
      }
      return { vms };
    },
  },
  new: {
    usage:
      "berth vm new --name NAME --kernel PATH [--memory MiB] [--cpus N] [--cmdline '...'] [--initrd PATH]\n" +
      '              [--boot pvh|linux] [--notes TEXT] [--test-exit-port] [--no-com1] [--start] [--json]\n' +
      '              [--disk [SLOT=]new:SIZE[:FORMAT][,ro] | [SLOT=]PATH[,ro] | [SLOT=]passthrough:ID[,ro]]...\n' +
      '              [--nic nat[,mac=MAC] | bridge:NAME[,mac=MAC]]...',
    summary: 'create a VM (64 MiB and 1 processor unless told otherwise)',
    positionals: [],
    options: {
      name: { type: 'string' },
      memory: { type: 'string' },
      cpus: { type: 'string' },
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      cmdline: { type: 'string' },
      boot: { type: 'string' },
      notes: { type: 'string' },
      'test-exit-port': { type: 'boolean' },
      'no-com1': { type: 'boolean' },
      start: { type: 'boolean' },
      disk: { type: 'string', multiple: true },
      nic: { type: 'string', multiple: true },
    },
    run: async ({ manager, hardware, values, print }) => {
      const name = str(values, 'name');
      const kernelPath = filePath(values, 'kernel');
      if (name === undefined) throw new UsageError('--name is required');
      if (kernelPath === undefined) throw new UsageError('--kernel is required (the kernel or PVH image to boot)');
      const boot: { kind: 'pvh' | 'linux'; kernelPath: string; cmdline: string; initrdPath?: string } = {
        kind: oneOf('boot', str(values, 'boot'), ['pvh', 'linux'] as const) ?? 'pvh',
        kernelPath,
        cmdline: str(values, 'cmdline') ?? '',
      };
      const initrd = filePath(values, 'initrd');
      if (initrd !== undefined) boot.initrdPath = initrd;
      const diskSpecs = list(values, 'disk').map((d) => parseDiskSpec('--disk', d));
      const network = list(values, 'nic').map((n) => parseNicSpec('--nic', n));
      // One step: when a disk cannot be made or attached, no VM is left behind.
      let vm: VmDetails | VmSummary = await hardware.createVm(
        {
          name,
          notes: str(values, 'notes') ?? '',
          memory: { startupMiB: parseMiB('memory', str(values, 'memory')) ?? 64 },
          processors: { count: parseCount('cpus', str(values, 'cpus')) ?? 1 },
          boot,
          network,
          com1: { enabled: values['no-com1'] !== true },
          testExitPort: values['test-exit-port'] === true,
        },
        diskSpecs,
      );
      print(`created '${vm.name}' (${vm.id})`);
      for (const d of (vm as VmDetails).config.disks) {
        print(`  slot ${d.slot}: ${d.kind === 'virtual' ? d.path : `passthrough ${d.deviceId}`}`);
      }
      for (const n of (vm as VmDetails).config.network) print(`  network: ${adapterText(n)}`);
      if (values['start'] === true) {
        vm = { ...vm, ...(await manager.start(vm.id)) };
        print(summaryLine(vm));
      }
      return vm;
    },
  },
  set: {
    usage:
      'berth vm set NAME [--memory MiB] [--cpus N] [--kernel PATH] [--initrd PATH | --no-initrd] [--cmdline S]\n' +
      '              [--boot pvh|linux] [--notes TEXT] [--test-exit-port on|off] [--com1 on|off]\n' +
      '              [--checkpoint-type standard|production|disabled]\n' +
      '              [--automatic-start-action nothing|start|restart-if-running]\n' +
      '              [--automatic-stop-action turn-off|save|shut-down]\n' +
      '              [--add-disk [SLOT=]new:SIZE[:FORMAT][,ro] | [SLOT=]PATH[,ro] | [SLOT=]passthrough:ID[,ro]]...\n' +
      '              [--remove-disk SLOT]... [--add-nic nat[,mac=MAC] | bridge:NAME[,mac=MAC]]...\n' +
      '              [--remove-nic MAC|N]... [--standard-checkpoint-fallback on|off] [--json]',
    summary: 'change settings (hardware only while the VM is off)',
    positionals: ['NAME'],
    options: {
      ...settingOptions,
      'add-disk': { type: 'string', multiple: true },
      'remove-disk': { type: 'string', multiple: true },
      'add-nic': { type: 'string', multiple: true },
      'remove-nic': { type: 'string', multiple: true },
    },
    run: async ({ manager, hardware, args, values, print }) => {
      const add = list(values, 'add-disk').map((d) => parseDiskSpec('--add-disk', d));
      const remove = list(values, 'remove-disk').map((d) => parseCount('remove-disk', d) ?? 0);
      const addNics = list(values, 'add-nic').map((n) => parseNicSpec('--add-nic', n));
      const removeNics = list(values, 'remove-nic');
      const given: Record<string, unknown> = {
        notes: str(values, 'notes'),
        memoryMiB: parseMiB('memory', str(values, 'memory')),
        processorCount: parseCount('cpus', str(values, 'cpus')),
        kernelPath: filePath(values, 'kernel'),
        initrdPath: values['no-initrd'] === true ? null : filePath(values, 'initrd'),
        cmdline: str(values, 'cmdline'),
        bootKind: oneOf('boot', str(values, 'boot'), ['pvh', 'linux'] as const),
        testExitPort: parseOnOff('test-exit-port', str(values, 'test-exit-port')),
        com1: parseOnOff('com1', str(values, 'com1')),
        checkpointType: oneOf('checkpoint-type', str(values, 'checkpoint-type'), [
          'standard',
          'production',
          'disabled',
        ] as const),
        automaticStartAction: oneOf('automatic-start-action', str(values, 'automatic-start-action'), [
          'nothing',
          'start',
          'restart-if-running',
        ] as const),
        standardCheckpointFallback: parseOnOff(
          'standard-checkpoint-fallback',
          str(values, 'standard-checkpoint-fallback'),
        ),
        automaticStopAction: oneOf('automatic-stop-action', str(values, 'automatic-stop-action'), [
          'turn-off',
          'save',
          'shut-down',
        ] as const),
      };
      const patch = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
      const hardwareChanges = add.length + remove.length + addNics.length + removeNics.length;
      if (Object.keys(patch).length === 0 && hardwareChanges === 0) {
        throw new UsageError('nothing to change: give at least one setting');
      }
      const ref = args[0] ?? '';
      let vm = Object.keys(patch).length > 0 ? await manager.set(ref, patch) : await manager.show(ref);
      if (remove.length > 0) vm = await hardware.detach(vm.id, remove);
      if (add.length > 0) vm = await hardware.attach(vm.id, add);
      if (removeNics.length > 0) vm = await hardware.removeAdapters(vm.id, removeNics);
      if (addNics.length > 0) vm = await hardware.addAdapters(vm.id, addNics);
      print(`updated '${vm.name}'`);
      return vm;
    },
  },
  show: {
    usage: 'berth vm show NAME [--json]',
    summary: 'show a VM: settings, state, statistics',
    positionals: ['NAME'],
    run: async ({ manager, args, print }) => {
      const vm = await manager.show(args[0] ?? '');
      print(showText(vm));
      return vm;
    },
  },
  start: lifecycle('start', 'start a VM in its own worker process', (m, n) => m.start(n)),
  stop: lifecycle('stop', 'ask the guest to shut down (see turn-off)', (m, n) => m.shutDown(n)),
  'turn-off': lifecycle('turn-off', 'turn a VM off at once, like pulling the power cord', (m, n) => m.turnOff(n)),
  pause: lifecycle('pause', 'pause a running VM', (m, n) => m.pause(n)),
  resume: lifecycle('resume', 'resume a paused VM', (m, n) => m.resume(n)),
  reset: lifecycle('reset', 'reset a running VM (a hard reboot)', (m, n) => m.reset(n)),
  save: lifecycle('save', 'save the memory state (not available yet)', (m, n) => m.save(n)),
  remove: {
    usage: 'berth vm remove NAME [--delete-disks] [--json]',
    summary: "delete a VM that is off, with its folder (--delete-disks also for disks in the folder's disks/)",
    positionals: ['NAME'],
    options: { 'delete-disks': { type: 'boolean' } },
    run: async ({ manager, args, values, print }) => {
      const vm = await manager.state(args[0] ?? '');
      await manager.remove(vm.id, { deleteDisks: values['delete-disks'] === true });
      print(`removed '${vm.name}'`);
      return { removed: { id: vm.id, name: vm.name } };
    },
  },
  rename: {
    usage: 'berth vm rename NAME NEW-NAME [--json]',
    summary: 'rename a VM',
    positionals: ['NAME', 'NEW-NAME'],
    run: async ({ manager, args, print }) => {
      const vm = await manager.rename(args[0] ?? '', args[1] ?? '');
      print(`renamed to '${vm.name}'`);
      return vm;
    },
  },
  console: {
    usage: 'berth vm console NAME [--no-replay] [--json]',
    summary: 'attach to COM1: type to the guest, Ctrl-] detaches',
    positionals: ['NAME'],
    options: { 'no-replay': { type: 'boolean' } },
    run: (ctx) => attachConsole(ctx),
  },
};

function inspectText(info: Awaited<ReturnType<DiskService['inspect']>>): string {
  return info.images
    .map((img, i) =>
      [
        `${i === 0 ? '' : 'parent: '}${img.path}`,
        `  format ${img.format} (${img.subformat}), virtual size ${formatBytes(img.virtualSize)} (${img.virtualSize} bytes),` +
          ` file ${formatBytes(img.fileSize)}, allocated ${formatBytes(img.allocatedBytes)}` +
          (img.dirty ? ', dirty' : '') +
          (img.corrupt ? ', CORRUPT' : ''),
      ].join('\n'),
    )
    .concat(info.chainError ? [`chain error: ${info.chainError.message}`] : [])
    .join('\n');
}

function extFormat(path: string): VirtualDiskFormat | undefined {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase();
  return ext === 'img'
    ? 'raw'
    : (VIRTUAL_DISK_FORMATS as readonly string[]).includes(ext ?? '')
      ? (ext as VirtualDiskFormat)
      : undefined;
}

const diskCommands: Record<string, Command> = {
  new: {
    usage: 'berth disk new PATH --size SIZE [--format qcow2|vhdx|vhd|raw] [--fixed] [--parent PATH] [--json]',
    summary: 'create a virtual disk (qcow2 unless told; --parent makes a differencing disk)',
    positionals: ['PATH'],
    options: {
      size: { type: 'string' },
      format: { type: 'string' },
      fixed: { type: 'boolean' },
      parent: { type: 'string' },
    },
    run: async ({ disks, args, values, print }) => {
      const path = resolve(args[0] ?? '');
      const size = str(values, 'size');
      const parent = filePath(values, 'parent');
      if (size === undefined && parent === undefined) throw new UsageError('--size is required (or --parent)');
      const o: Parameters<DiskService['create']>[1] = {};
      if (size !== undefined) o.sizeBytes = parseBytes('--size', size);
      const format = diskFormat('format', str(values, 'format')) ?? extFormat(path);
      if (format !== undefined) o.format = format;
      if (values['fixed'] === true) o.fixed = true;
      if (parent !== undefined) o.parent = parent;
      const info = await disks.create(path, o);
      print(`created ${path}\n${inspectText(info)}`);
      return info;
    },
  },
  inspect: {
    usage: 'berth disk inspect PATH [--json]',
    summary: "show a disk's format, sizes and backing chain",
    positionals: ['PATH'],
    run: async ({ disks, args, print }) => {
      const info = await disks.inspect(args[0] ?? '');
      print(inspectText(info));
      return info;
    },
  },
  convert: {
    usage: 'berth disk convert SOURCE TARGET [--format qcow2|vhdx|vhd|raw] [--fixed] [--json]',
    summary: 'copy a disk (its whole chain) into a new standalone file of any format',
    positionals: ['SOURCE', 'TARGET'],
    options: { format: { type: 'string' }, fixed: { type: 'boolean' } },
    run: async (ctx) => {
      const [src = '', dst = ''] = ctx.args;
      const format = diskFormat('format', str(ctx.values, 'format')) ?? extFormat(dst);
      if (format === undefined) throw new UsageError('--format is required (the target name has no known extension)');
      const info = await withProgress(ctx, 'converting', (p) =>
        ctx.disks.convert(src, dst, { format, ...(ctx.values['fixed'] === true ? { fixed: true } : {}) }, p),
      );
      ctx.print(`converted to ${resolve(dst)}`);
      return info;
    },
  },
  resize: {
    usage: 'berth disk resize PATH --size SIZE [--json]',
    summary: 'expand or shrink a virtual disk',
    positionals: ['PATH'],
    options: { size: { type: 'string' } },
    run: async (ctx) => {
      const size = str(ctx.values, 'size');
      if (size === undefined) throw new UsageError('--size is required');
      const info = await withProgress(ctx, 'resizing', (p) =>
        ctx.disks.resize(ctx.args[0] ?? '', parseBytes('--size', size), p),
      );
      ctx.print(`resized to ${formatBytes(info.images[0]?.virtualSize ?? 0)}`);
      return info;
    },
  },
  compact: {
    usage: 'berth disk compact PATH [--json]',
    summary: 'reclaim zeroed and discarded space',
    positionals: ['PATH'],
    run: async (ctx) => {
      const info = await withProgress(ctx, 'compacting', (p) => ctx.disks.compact(ctx.args[0] ?? '', p));
      ctx.print(`compacted: file ${formatBytes(info.images[0]?.fileSize ?? 0)}`);
      return info;
    },
  },
  merge: {
    usage: 'berth disk merge CHILD [--to NEW-PATH [--format F]] [--json]',
    summary: 'merge a differencing disk into its parent, or its chain into a new file (--to)',
    positionals: ['CHILD'],
    options: { to: { type: 'string' }, format: { type: 'string' } },
    run: async (ctx) => {
      const to = filePath(ctx.values, 'to');
      const child = ctx.args[0] ?? '';
      let target: Parameters<DiskService['merge']>[1] = { into: 'parent' };
      if (to !== undefined) {
        const format = diskFormat('format', str(ctx.values, 'format')) ?? extFormat(to) ?? 'qcow2';
        target = { into: 'new', path: to, format };
      }
      const info = await withProgress(ctx, 'merging', (p) => ctx.disks.merge(child, target, p));
      ctx.print(`merged into ${info.images[0]?.path ?? ''}`);
      return info;
    },
  },
  reconnect: {
    usage: 'berth disk reconnect CHILD NEW-PARENT [--json]',
    summary: 'point a differencing disk at a new parent (same size and content)',
    positionals: ['CHILD', 'NEW-PARENT'],
    run: async ({ disks, args, print }) => {
      const info = await disks.reconnect(args[0] ?? '', args[1] ?? '');
      print(`${info.images[0]?.path ?? ''} now has parent ${info.images[1]?.path ?? ''}`);
      return info;
    },
  },
};

function treeText(l: CheckpointList): string {
  if (l.checkpoints.length === 0) return `'${l.vm}' has no checkpoints`;
  const lines: string[] = [];
  const walk = (parent: string | null, depth: number): void => {
    for (const c of l.checkpoints.filter((x) => x.parent === parent)) {
      lines.push(`${'  '.repeat(depth)}${c.name}  (${c.id.slice(0, 8)}, ${c.createdAt})`);
      walk(c.id, depth + 1);
      if (c.isNowParent) lines.push(`${'  '.repeat(depth + 1)}Now`);
    }
  };
  walk(null, 0);
  if (l.now === null) lines.push('Now');
  return lines.join('\n');
}

const checkpointCommands: Record<string, Command> = {
  create: {
    usage: 'berth checkpoint create VM [--name NAME] [--exclude-passthrough] [--json]',
    summary: 'take a checkpoint of a VM that is off',
    positionals: ['VM'],
    options: { name: { type: 'string' }, 'exclude-passthrough': { type: 'boolean' } },
    run: async ({ checkpoints, args, values, print }) => {
      const o: { name?: string; excludePassthrough?: boolean } = {};
      const name = str(values, 'name');
      if (name !== undefined) o.name = name;
      if (values['exclude-passthrough'] === true) o.excludePassthrough = true;
      const c = await checkpoints.create(args[0] ?? '', o);
      print(`created checkpoint '${c.name}' (${c.id})`);
      return c;
    },
  },
  list: {
    usage: 'berth checkpoint list VM [--json]',
    summary: "show a VM's checkpoint tree and where 'Now' is",
    positionals: ['VM'],
    run: async ({ checkpoints, args, print }) => {
      const l = await checkpoints.list(args[0] ?? '');
      print(treeText(l));
      return l;
    },
  },
  apply: {
    usage: 'berth checkpoint apply VM CHECKPOINT [--save-current [--save-name NAME]] [--json]',
    summary: 'go back to a checkpoint (the current state is discarded unless --save-current)',
    positionals: ['VM', 'CHECKPOINT'],
    options: { 'save-current': { type: 'boolean' }, 'save-name': { type: 'string' } },
    run: async ({ checkpoints, args, values, print }) => {
      const saveName = str(values, 'save-name');
      const save = saveName ?? values['save-current'] === true;
      const l = await checkpoints.apply(args[0] ?? '', args[1] ?? '', { saveCurrent: save });
      print(`applied; Now is under '${l.checkpoints.find((c) => c.id === l.now)?.name ?? ''}'`);
      return l;
    },
  },
  rename: {
    usage: 'berth checkpoint rename VM CHECKPOINT NEW-NAME [--json]',
    summary: 'rename a checkpoint',
    positionals: ['VM', 'CHECKPOINT', 'NEW-NAME'],
    run: async ({ checkpoints, args, print }) => {
      const c = await checkpoints.rename(args[0] ?? '', args[1] ?? '', args[2] ?? '');
      print(`renamed to '${c.name}'`);
      return c;
    },
  },
  remove: {
    usage: 'berth checkpoint remove VM CHECKPOINT [--subtree] [--json]',
    summary: 'delete a checkpoint (its disks merged so no other view changes), or its whole subtree',
    positionals: ['VM', 'CHECKPOINT'],
    options: { subtree: { type: 'boolean' } },
    run: async ({ checkpoints, args, values, print }) => {
      const l = await checkpoints.remove(args[0] ?? '', args[1] ?? '', { subtree: values['subtree'] === true });
      print(`removed; ${l.checkpoints.length} checkpoint(s) left`);
      return l;
    },
  },
};

const hostCommands: Record<string, Command> = {
  disks: {
    usage: 'berth host disks [--json]',
    summary: "list the host's block devices (for passthrough: map one with --disk passthrough:ID)",
    positionals: [],
    run: ({ disks, print }) => {
      const all = disks.hostDisks();
      const rows = [['DEVICE', 'SIZE', 'MODEL', 'FLAGS', 'ID']];
      for (const d of all) {
        const flags = [
          d.system ? 'system' : '',
          d.mounts.length > 0 ? `mounted(${d.mounts.join(',')})` : '',
          d.inUse ? 'in-use' : '',
          d.removable ? 'removable' : '',
          d.readOnly ? 'ro' : '',
        ].filter((f) => f !== '');
        rows.push([d.devicePath, formatBytes(d.sizeBytes), d.model, flags.join(' ') || 'offline', d.stableId ?? '-']);
      }
      print(all.length === 0 ? 'no block devices found' : table(rows));
      return Promise.resolve({ disks: all });
    },
  },
};

const topCommands: Record<string, Command> = {
  export: {
    usage:
      'berth export VM DESTINATION [--checkpoint CHECKPOINT] [--json]\n' +
      '       berth export VM FILE --config-only [--format berth|libvirt]\n' +
      '       berth export VM FOLDER --config-only --format ovf',
    summary:
      'export a VM (config, disks, checkpoints) to DESTINATION/<name>/, one checkpoint as a new VM ' +
      '(its disks flattened at that point) to DESTINATION/<name>-<checkpoint>/, or the configuration alone',
    positionals: ['VM', 'DESTINATION'],
    options: { 'config-only': { type: 'boolean' }, format: { type: 'string' }, checkpoint: { type: 'string' } },
    run: async (ctx) => {
      const [vm = '', dest = ''] = ctx.args;
      const format = oneOf('format', str(ctx.values, 'format'), ['berth', 'libvirt', 'ovf'] as const);
      const checkpoint = str(ctx.values, 'checkpoint');
      if (checkpoint !== undefined) {
        if (ctx.values['config-only'] === true || format !== undefined) {
          throw new UsageError(
            '--checkpoint exports the checkpoint as a whole VM; it does not take --config-only or --format',
          );
        }
        const r = await withProgress(ctx, 'exporting', (p) =>
          exportCheckpoint(ctx.manager, vm, checkpoint, resolve(dest), p),
        );
        ctx.print(`exported checkpoint '${checkpoint}' of '${vm}' as a new VM to ${r.folder}`);
        return r;
      }
      if (ctx.values['config-only'] !== true) {
        if (format !== undefined) throw new UsageError('--format is for --config-only');
        const r = await withProgress(ctx, 'exporting', (p) => ctx.exports.exportVm(vm, resolve(dest), p));
        ctx.print(`exported to ${r.folder}`);
        return r;
      }
      if (format === 'ovf') {
        const r = await withProgress(ctx, 'exporting', (p) => ctx.exports.ovf(vm, resolve(dest), p));
        ctx.print(`wrote ${r.envelope}`);
        return r;
      }
      const text =
        format === 'libvirt'
          ? await ctx.exports.libvirtXml(vm)
          : `${JSON.stringify(await ctx.exports.configJson(vm), null, 2)}\n`;
      writeFileSync(resolve(dest), text, { mode: 0o600 });
      ctx.print(`wrote ${resolve(dest)}`);
      return { file: resolve(dest), format: format ?? 'berth' };
    },
  },
  import: {
    usage: 'berth import FOLDER [--register | --restore | --copy [--name NAME]] [--json]',
    summary: 'import an exported VM: register it in place (default), restore (copy, same id) or copy (new id)',
    positionals: ['FOLDER'],
    options: {
      register: { type: 'boolean' },
      restore: { type: 'boolean' },
      copy: { type: 'boolean' },
      name: { type: 'string' },
    },
    run: async (ctx) => {
      const modes = (['register', 'restore', 'copy'] as const).filter((m) => ctx.values[m] === true);
      if (modes.length > 1) throw new UsageError('choose one of --register, --restore, --copy');
      const mode = modes[0] ?? 'register';
      const name = str(ctx.values, 'name');
      const vm = await withProgress(ctx, 'importing', (p) =>
        ctx.exports.importVm(ctx.args[0] ?? '', mode, { ...p, ...(name === undefined ? {} : { name }) }),
      );
      ctx.print(`imported '${vm.name}' (${vm.id}) by ${mode}`);
      return vm;
    },
  },
};

const groups: Record<string, Record<string, Command>> = {
  vm: commands,
  disk: diskCommands,
  checkpoint: checkpointCommands,
  host: hostCommands,
};

const DETACH = 0x1d; // Ctrl-]

async function attachConsole({ manager, args, values, json }: Context): Promise<unknown> {
  const name = args[0] ?? '';
  const stdin = process.stdin;
  let finish: (result: unknown) => void = () => undefined;
  const done = new Promise<unknown>((resolve) => (finish = resolve));
  const emit = (doc: unknown): void => void process.stdout.write(`${JSON.stringify(doc)}\n`);
  const session = await manager.attachConsole(name, {
    replay: values['no-replay'] !== true,
    onData: (bytes) =>
      json ? emit({ event: 'console', data: bytes.toString('base64') }) : process.stdout.write(bytes),
    onEnd: ({ exit, error }) => {
      if (exit) {
        if (!json) process.stderr.write(`\r\n[berth: '${name}' stopped: ${exit.reason} code ${exit.code}]\r\n`);
        finish({ ended: { exit } });
      } else {
        const body = toErrorBody(
          error ?? new BerthError('WORKER_UNREACHABLE', 'the worker closed the console; run berth vm show'),
        );
        if (!json) process.stderr.write(`\r\n[berth: the console ended: ${body.message}]\r\n`);
        finish({ error: body });
      }
    },
  });
  if (!json) {
    process.stderr.write(`[berth: connected to '${name}'; Ctrl-] detaches]\r\n`);
  }
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  // Input is sent in order; detaching waits for what was typed before it.
  let queue = Promise.resolve();
  const send = (bytes: Buffer): void => {
    if (bytes.length === 0) return;
    queue = queue.then(() => session.write(bytes)).catch(() => undefined);
  };
  let detaching = false;
  const detach = (): void => {
    if (detaching) return;
    detaching = true;
    void queue.then(async () => {
      await session.detach();
      if (!json) process.stderr.write(`\r\n[berth: detached from '${name}'; it keeps running]\r\n`);
      finish({ detached: true });
    });
  };
  const onInput = (chunk: Buffer): void => {
    const at = chunk.indexOf(DETACH);
    if (at < 0) return send(chunk);
    send(chunk.subarray(0, at));
    stdin.off('data', onInput);
    detach();
  };
  stdin.on('data', onInput);
  stdin.on('end', () => detach());
  const result = await done;
  if (raw) stdin.setRawMode(false);
  stdin.pause();
  stdin.off('data', onInput);
  if (result && typeof result === 'object' && 'error' in result) {
    const body = (result as { error: { code: 'WORKER_UNREACHABLE'; message: string } }).error;
    throw new BerthError(body.code, body.message);
  }
  return json ? undefined : result;
}

function helpText(): string {
  const lines = ['usage: berth GROUP COMMAND [ARGS] [--json]', ''];
  for (const [group, cmds] of Object.entries(groups)) {
    lines.push(`${group} commands:`);
    const w = Math.max(...Object.keys(cmds).map((k) => k.length));
    for (const [name, c] of Object.entries(cmds)) lines.push(`  ${group} ${name.padEnd(w)}  ${c.summary}`);
    lines.push('');
  }
  for (const [name, c] of Object.entries(topCommands)) lines.push(`${name}: ${c.summary}`);
  lines.push(
    '',
    "'berth GROUP COMMAND --help' shows a command's options. Data lives in $BERTH_HOME (default:",
    '$XDG_DATA_HOME/berth or ~/.local/share/berth; ~/Library/Application Support/Berth on macOS).',
    'Exit codes: 0 done, 1 refused or failed, 2 usage error.',
    '',
    `${SERVE_USAGE}: the window in a browser on this machine (loopback, with a token).`,
  );
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const fail = (code: number, body: { code: string; message: string }, hint?: string): number => {
    if (json) process.stdout.write(`${JSON.stringify({ error: body })}\n`);
    else process.stderr.write(`berth: ${body.message}${hint ? `\n${hint}` : ''}\n`);
    return code;
  };
  const [group, verb, ...rest] = argv;
  if (group === undefined || group === 'help' || group === '--help' || group === '-h') {
    process.stdout.write(`${helpText()}\n`);
    return group === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (group === '--version') {
    process.stdout.write('berth 0.1.0\n');
    return EXIT_OK;
  }
  if (group === 'serve') return serveMain({ argv: argv.slice(1) });
  const top = topCommands[group];
  const groupTable = groups[group];
  if (!top && !groupTable) {
    return fail(EXIT_USAGE, { code: 'USAGE', message: `unknown command '${group}'` }, "see 'berth help'");
  }
  const command = top ?? (verb === undefined ? undefined : groupTable?.[verb]);
  if (!command) {
    if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
      process.stdout.write(`${helpText()}\n`);
      return verb === undefined ? EXIT_USAGE : EXIT_OK;
    }
    return fail(EXIT_USAGE, { code: 'USAGE', message: `unknown command '${group} ${verb}'` }, "see 'berth help'");
  }
  let values: Values;
  let args: string[];
  try {
    const parsed = parseArgs({
      args: top ? argv.slice(1) : rest,
      options: { ...common, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    values = parsed.values as Values;
    args = parsed.positionals;
    if (values['help'] === true) {
      process.stdout.write(`usage: ${command.usage}\n\n${command.summary}\n`);
      return EXIT_OK;
    }
    if (args.length !== command.positionals.length) {
      const want = command.positionals.length === 0 ? 'no arguments' : command.positionals.join(' ');
      throw new UsageError(
        args.length < command.positionals.length
          ? `missing ${command.positionals.slice(args.length).join(' ')}`
          : `unexpected argument '${args[command.positionals.length] ?? ''}' (takes ${want})`,
      );
    }
  } catch (err) {
    const message = (err as Error).message.replace(/\. To specify a positional.*$/s, '');
    return fail(EXIT_USAGE, { code: 'USAGE', message }, `usage: ${command.usage}`);
  }
  const manager = new VmManager({ clientName: `berth cli ${process.pid}` });
  try {
    const result = await command.run({
      manager,
      disks: new DiskService(manager),
      hardware: new HardwareService(manager),
      checkpoints: new CheckpointService(manager),
      exports: new ExportService(manager),
      values,
      args,
      json,
      print: (text) => {
        if (!json) process.stdout.write(`${text}\n`);
      },
    });
    if (json && result !== undefined) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof UsageError) {
      return fail(EXIT_USAGE, { code: 'USAGE', message: err.message }, `usage: ${command.usage}`);
    }
    return fail(EXIT_FAILED, toErrorBody(err));
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`berth: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = EXIT_FAILED;
    },
  );
}
