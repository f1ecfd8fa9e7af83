// `berth vm ...`: create, change, show, remove, rename VMs, the lifecycle actions, the
// console (console-command.ts) and DVD drives (firmware-commands.ts).

import { basename } from 'node:path';

import { DISK_CONTROLLERS, type BootSettings, type NetworkAdapter, type VmDetails, type VmSummary } from '../api';
import { DisplayService, MoveService, SHUT_DOWN_TIMEOUT_MS, VmManager } from '../services';
import {
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
} from './parse';
import { formatBytes, formatDuration, table, withProgress, type Command, type Options } from './command';
import { attachConsole } from './console-command';
import {
  bootLines,
  dvdCommands,
  FIRMWARE_NEW_USAGE,
  FIRMWARE_SET_USAGE,
  firmwareBootFromFlags,
  firmwareNewOptions,
  firmwareNotes,
  firmwarePatchFromFlags,
  firmwareSetOptions,
} from './firmware-commands';

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
  lines.push(...bootLines(c));
  lines.push(['COM1', c.com1.enabled ? 'on' : 'off']);
  lines.push([
    'Disks',
    c.disks.length === 0
      ? 'none'
      : c.disks
          .map(
            (d) => `${d.slot}:${d.kind === 'virtual' ? d.path : d.deviceId}${d.controller === 'scsi' ? ' (SCSI)' : ''}`,
          )
          .join(', '),
  ]);
  lines.push(['Network', c.network.length === 0 ? 'none' : c.network.map(adapterText).join(', ')]);
  lines.push([
    'Checkpoints',
    c.checkpoints.type === 'production'
      ? `production${c.checkpoints.standardFallback ? ' (standard when a production one is not possible)' : ' only'}`
      : c.checkpoints.type,
  ]);
  lines.push([
    'Automatic start',
    c.automaticStartAction === 'nothing'
      ? 'nothing'
      : `${c.automaticStartAction} (after ${c.automaticStartDelaySeconds} s)`,
  ]);
  lines.push(['Automatic stop', c.automaticStopAction]);
  if (c.testExitPort) lines.push(['Test-exit port', 'on']);
  if (vm.workerPid !== undefined) lines.push(['Worker', `pid ${vm.workerPid}`]);
  if (vm.stats) {
    lines.push(['CPU usage', `${vm.stats.cpuUsagePercent}%`]);
    lines.push(['Uptime', formatDuration(vm.stats.uptimeMs)]);
    for (const d of vm.stats.disks) {
      lines.push([
        'Disk I/O',
        `${basename(d.path)}: ${d.ioBackend}, ${d.queues} queue${d.queues === 1 ? '' : 's'}, ` +
          `${d.completedRequests} requests, up to ${d.peakInFlight} in flight`,
      ]);
    }
  }
  if (vm.savedState) {
    const s = vm.savedState;
    lines.push(['Saved state', `${formatBytes(s.stateBytes)} at ${s.savedAt} (${s.path})`]);
    if (s.pauseMs !== undefined && s.totalMs !== undefined) {
      lines.push(['Save took', `${Math.round(s.totalMs)} ms, the guest paused ${Math.round(s.pauseMs)} ms`]);
    }
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
  'automatic-start-delay': { type: 'string' },
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

export const vmCommands: Record<string, Command> = {
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
      FIRMWARE_NEW_USAGE +
      '\n' +
      '              [--disk [SLOT=]new:SIZE[:FORMAT][,ro] | [SLOT=]PATH[,ro] | [SLOT=]passthrough:ID[,ro]]...\n' +
      '              [--controller virtio|scsi (for the disks; or ,scsi after one disk)]\n' +
      '              [--nic nat[,mac=MAC][,restricted][,forward=[tcp|udp:][ADDRESS:]HOSTPORT:GUESTPORT]...\n' +
      '               | bridge:NAME[,mac=MAC]]...',
    summary:
      'create a VM: a kernel booted directly (--kernel), or Generation 1 (BIOS) or 2 (UEFI, Secure Boot on) ' +
      'with --generation (64 MiB, or 1024 MiB for Generation 1 and 2, and 1 processor unless told otherwise)',
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
      controller: { type: 'string' },
      nic: { type: 'string', multiple: true },
      ...firmwareNewOptions,
    },
    run: async ({ manager, hardware, values, print }) => {
      const name = str(values, 'name');
      if (name === undefined) throw new UsageError('--name is required');
      const firmware = firmwareBootFromFlags(values);
      let boot: BootSettings;
      if (firmware) boot = firmware.boot;
      else {
        const kernelPath = filePath(values, 'kernel');
        if (kernelPath === undefined) {
          throw new UsageError(
            '--kernel is required (the kernel or PVH image to boot), or --generation 1|2 for a VM that boots firmware',
          );
        }
        const kernel: { kind: 'pvh' | 'linux'; kernelPath: string; cmdline: string; initrdPath?: string } = {
          kind: oneOf('boot', str(values, 'boot'), ['pvh', 'linux'] as const) ?? 'pvh',
          kernelPath,
          cmdline: str(values, 'cmdline') ?? '',
        };
        const initrd = filePath(values, 'initrd');
        if (initrd !== undefined) kernel.initrdPath = initrd;
        boot = kernel;
      }
      const controller = oneOf('controller', str(values, 'controller'), DISK_CONTROLLERS);
      const diskSpecs = list(values, 'disk').map((d) => parseDiskSpec('--disk', d, controller));
      const diskSize = str(values, 'disk-size');
      // A new qcow2 disk in the VM's folder, on the first free slot.
      if (diskSize !== undefined) diskSpecs.push({ kind: 'new', sizeBytes: parseBytes('--disk-size', diskSize) });
      const network = list(values, 'nic').map((n) => parseNicSpec('--nic', n));
      // One step: when a disk cannot be made or attached, no VM is left behind.
      let vm: VmDetails | VmSummary = await hardware.createVm(
        {
          name,
          notes: str(values, 'notes') ?? '',
          memory: { startupMiB: parseMiB('memory', str(values, 'memory')) ?? (firmware ? 1024 : 64) },
          processors: { count: parseCount('cpus', str(values, 'cpus')) ?? 1 },
          boot,
          dvdDrives: firmware?.dvdDrives ?? [],
          network,
          com1: { enabled: values['no-com1'] !== true },
          testExitPort: values['test-exit-port'] === true,
        },
        diskSpecs,
      );
      print(`created '${vm.name}' (${vm.id})`);
      for (const d of (vm as VmDetails).config.disks) {
        const on = d.controller === 'scsi' ? ' (SCSI)' : '';
        print(`  slot ${d.slot}: ${d.kind === 'virtual' ? d.path : `passthrough ${d.deviceId}`}${on}`);
      }
      for (const n of (vm as VmDetails).config.network) print(`  network: ${adapterText(n)}`);
      for (const [k, v] of bootLines((vm as VmDetails).config).slice(0, 4)) print(`  ${k.toLowerCase()}: ${v}`);
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
      '              [--boot pvh|linux|bios|uefi] [--notes TEXT] [--test-exit-port on|off] [--com1 on|off]\n' +
      '              [--checkpoint-type standard|production|disabled]\n' +
      '              [--automatic-start-action nothing|start|restart-if-running] [--automatic-start-delay S]\n' +
      '              [--automatic-stop-action turn-off|save|shut-down]\n' +
      '              [--add-disk [SLOT=]new:SIZE[:FORMAT][,ro] | [SLOT=]PATH[,ro] | [SLOT=]passthrough:ID[,ro]]...\n' +
      '              [--controller virtio|scsi (for the added disks; or ,scsi after one disk)]\n' +
      '              [--remove-disk SLOT]... [--add-nic nat[,mac=MAC][,restricted][,forward=...]...\n' +
      '               | bridge:NAME[,mac=MAC]]...\n' +
      '              [--remove-nic MAC|N]... [--standard-checkpoint-fallback on|off] [--json]\n' +
      FIRMWARE_SET_USAGE,
    summary: 'change settings (hardware only while the VM is off)',
    positionals: ['NAME'],
    options: {
      ...settingOptions,
      'add-disk': { type: 'string', multiple: true },
      controller: { type: 'string' },
      'remove-disk': { type: 'string', multiple: true },
      'add-nic': { type: 'string', multiple: true },
      'remove-nic': { type: 'string', multiple: true },
      ...firmwareSetOptions,
    },
    run: async ({ manager, hardware, args, values, print }) => {
      const controller = oneOf('controller', str(values, 'controller'), DISK_CONTROLLERS);
      const add = list(values, 'add-disk').map((d) => parseDiskSpec('--add-disk', d, controller));
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
        bootKind: oneOf('boot', str(values, 'boot'), ['pvh', 'linux', 'bios', 'uefi'] as const),
        ...firmwarePatchFromFlags(values),
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
        automaticStartDelaySeconds: parseCount('automatic-start-delay', str(values, 'automatic-start-delay')),
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
      const before = await manager.show(ref);
      let vm = Object.keys(patch).length > 0 ? await manager.set(ref, patch) : before;
      if (remove.length > 0) vm = await hardware.detach(vm.id, remove);
      if (add.length > 0) vm = await hardware.attach(vm.id, add);
      if (removeNics.length > 0) vm = await hardware.removeAdapters(vm.id, removeNics);
      if (addNics.length > 0) vm = await hardware.addAdapters(vm.id, addNics);
      print(`updated '${vm.name}'`);
      for (const note of firmwareNotes(before.config, vm.config)) print(note);
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
  start: {
    usage: 'berth vm start NAME [--json]',
    summary: 'start a VM in its own worker process (a Saved VM resumes from its saved state)',
    positionals: ['NAME'],
    run: async ({ manager, args, print }) => {
      const vm = await manager.start(args[0] ?? '');
      if (vm.resumedFrom === 'saved-state') print(`'${vm.name}' resumed from its saved state`);
      print(summaryLine(vm));
      return vm;
    },
  },
  save: {
    usage: 'berth vm save NAME [--json]',
    summary: "save a running or paused VM's memory and device state and stop its worker (Saved); start resumes it",
    positionals: ['NAME'],
    run: async ({ manager, args, print }) => {
      const vm = await manager.save(args[0] ?? '');
      print(summaryLine(vm));
      const s = vm.savedState;
      if (s) {
        const timing =
          s.pauseMs !== undefined && s.totalMs !== undefined
            ? ` in ${Math.round(s.totalMs)} ms (the guest paused ${Math.round(s.pauseMs)} ms)`
            : '';
        print(`saved ${formatBytes(s.stateBytes)} to ${s.path}${timing}`);
      }
      return vm;
    },
  },
  'delete-saved-state': lifecycle(
    'delete-saved-state',
    "discard a Saved VM's saved state (it becomes Off; the next start boots afresh)",
    (m, n) => m.deleteSavedState(n),
  ),
  move: {
    usage: 'berth vm move NAME --to FOLDER | --to ssh://[user@]host[:port]/path | --to user@host:/path [--json]',
    summary:
      'quick migration: save the VM if it runs, copy its files to another Berth data root, register and resume ' +
      'it there, then remove it here (ssh targets need berth on their PATH)',
    positionals: ['NAME'],
    options: { to: { type: 'string' } },
    run: async (ctx) => {
      const to = str(ctx.values, 'to');
      if (to === undefined || to === '') throw new UsageError('--to is required: the destination data root');
      const r = await withProgress(ctx, 'moving', (p) => new MoveService(ctx.manager).move(ctx.args[0] ?? '', to, p));
      ctx.print(
        `moved '${r.name}' to ${r.destination}; it is ${r.stateThere} there (${formatBytes(r.bytesCopied)} copied)`,
      );
      if (r.downtimeMs !== null)
        ctx.print(`down-time: ${(r.downtimeMs / 1000).toFixed(1)} s (from the save to running there)`);
      if (r.leftBehind.length > 0) {
        ctx.print(
          `disk files outside its folder were copied; the originals are still here: ${r.leftBehind.join(', ')}`,
        );
      }
      return r;
    },
  },
  stop: {
    usage: 'berth vm stop NAME [--timeout SECONDS] [--json]',
    summary: `shut a VM down: press its ACPI power button and wait for the guest to power off (${
      SHUT_DOWN_TIMEOUT_MS / 1000
    } s unless --timeout; see turn-off)`,
    positionals: ['NAME'],
    options: { timeout: { type: 'string' } },
    run: async ({ manager, args, values, print }) => {
      const seconds = parseCount('timeout', str(values, 'timeout'));
      if (seconds !== undefined && (seconds < 1 || seconds > 3600)) {
        throw new UsageError(`--timeout takes 1 to 3600 seconds, not ${seconds}`);
      }
      const vm = await manager.shutDown(args[0] ?? '', seconds === undefined ? undefined : seconds * 1000);
      print(summaryLine(vm));
      return vm;
    },
  },
  'turn-off': lifecycle('turn-off', 'turn a VM off at once, like pulling the power cord', (m, n) => m.turnOff(n)),
  pause: lifecycle('pause', 'pause a running VM', (m, n) => m.pause(n)),
  resume: lifecycle('resume', 'resume a paused VM', (m, n) => m.resume(n)),
  reset: lifecycle('reset', 'reset a running VM (a hard reboot)', (m, n) => m.reset(n)),
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
  screenshot: {
    usage: 'berth vm screenshot NAME FILE.png [--json]',
    summary: "write what a Generation 1 or 2 VM's display shows to a PNG file",
    positionals: ['NAME', 'FILE'],
    run: async ({ manager, args, print }) => {
      const path = await new DisplayService(manager).screenshot(args[0] ?? '', args[1] ?? '');
      print(`wrote the screen of '${args[0] ?? ''}' to ${path}`);
      return { path };
    },
  },
  ...dvdCommands,
};
