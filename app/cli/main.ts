#!/usr/bin/env node
// The `berth` command line: the same services as the window, one subcommand per action.
// --json on every command prints one JSON document (errors as {"error":{code,message}}).
// Exit codes: 0 done, 1 refused or failed, 2 usage error.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { BerthError, toErrorBody, type VmDetails, type VmSummary } from '../api';
import { VmManager } from '../services';
import { SERVE_USAGE, serveMain } from './serve';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

interface Command {
  usage: string;
  summary: string;
  options?: Options;
  positionals: string[]; // names of the required positionals
  run: (ctx: Context) => Promise<unknown>;
}

interface Context {
  manager: VmManager;
  values: Values;
  args: string[];
  json: boolean;
  print: (text: string) => void;
}

const common: Options = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } };

function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}

// File options are stored absolute: the worker does not run in the user's folder.
function filePath(values: Values, key: string): string | undefined {
  const v = str(values, key);
  return v === undefined ? undefined : resolve(v);
}

// "64", "64M", "64MiB", "2G", "2GiB" -> MiB.
function parseMiB(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)\s*(m|mib|mb|g|gib|gb)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--${flag} takes a size in MiB (e.g. 64, 512M, 2G), not '${text}'`);
  const n = Number(m[1]);
  return m[2] && m[2].toLowerCase().startsWith('g') ? n * 1024 : n;
}

function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`--${flag} takes a whole number, not '${text}'`);
  return Number(text);
}

function parseOnOff(flag: string, text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined;
  if (/^(on|true|yes|1)$/i.test(text)) return true;
  if (/^(off|false|no|0)$/i.test(text)) return false;
  throw new UsageError(`--${flag} takes on or off, not '${text}'`);
}

function oneOf<T extends string>(flag: string, text: string | undefined, allowed: readonly T[]): T | undefined {
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) {
    throw new UsageError(`--${flag} takes one of ${allowed.join(', ')}, not '${text}'`);
  }
  return text as T;
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
  lines.push(['Network', c.network.length === 0 ? 'none' : c.network.map((n) => `${n.kind} ${n.mac}`).join(', ')]);
  lines.push(['Checkpoints', c.checkpoints.type]);
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
      '              [--boot pvh|linux] [--notes TEXT] [--test-exit-port] [--no-com1] [--start] [--json]',
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
    },
    run: async ({ manager, values, print }) => {
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
      let vm: VmDetails | VmSummary = await manager.create({
        name,
        notes: str(values, 'notes') ?? '',
        memory: { startupMiB: parseMiB('memory', str(values, 'memory')) ?? 64 },
        processors: { count: parseCount('cpus', str(values, 'cpus')) ?? 1 },
        boot,
        com1: { enabled: values['no-com1'] !== true },
        testExitPort: values['test-exit-port'] === true,
      });
      print(`created '${vm.name}' (${vm.id})`);
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
      '              [--automatic-stop-action turn-off|save|shut-down] [--json]',
    summary: 'change settings (hardware only while the VM is off)',
    positionals: ['NAME'],
    options: settingOptions,
    run: async ({ manager, args, values, print }) => {
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
        automaticStopAction: oneOf('automatic-stop-action', str(values, 'automatic-stop-action'), [
          'turn-off',
          'save',
          'shut-down',
        ] as const),
      };
      const patch = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
      if (Object.keys(patch).length === 0) throw new UsageError('nothing to change: give at least one setting');
      const vm = await manager.set(args[0] ?? '', patch);
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
  const lines = ['usage: berth vm COMMAND [ARGS] [--json]', '', 'commands:'];
  const w = Math.max(...Object.keys(commands).map((k) => k.length));
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(w)}  ${c.summary}`);
  lines.push(
    '',
    "'berth vm COMMAND --help' shows a command's options. Data lives in $BERTH_HOME (default:",
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
  if (group !== 'vm') {
    return fail(EXIT_USAGE, { code: 'USAGE', message: `unknown command '${group}'` }, "see 'berth help'");
  }
  const command = verb === undefined ? undefined : commands[verb];
  if (!command) {
    if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
      process.stdout.write(`${helpText()}\n`);
      return verb === undefined ? EXIT_USAGE : EXIT_OK;
    }
    return fail(EXIT_USAGE, { code: 'USAGE', message: `unknown command 'vm ${verb}'` }, "see 'berth help'");
  }
  let values: Values;
  let args: string[];
  try {
    const parsed = parseArgs({
      args: rest,
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
