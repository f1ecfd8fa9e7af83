#!/usr/bin/env node
// The `berth` command line: the same services as the window, one subcommand per action.
// --json on every command prints one JSON document (errors as {"error":{code,message}}).
// Exit codes: 0 done, 1 refused or failed, 2 usage error.
import { parseArgs } from 'node:util';

import { toErrorBody } from '../api';
import { CheckpointService, DiskService, ExportService, HardwareService, VmManager } from '../services';
import { UsageError, type Values } from './parse';
import { common, type Command } from './command';
import { SERVE_USAGE, serveMain } from './serve';
import { hostCommands } from './host-commands';
import { checkpointCommands, diskCommands, topCommands } from './storage-commands';
import { vmCommands } from './vm-commands';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

const groups: Record<string, Record<string, Command>> = {
  vm: vmCommands,
  disk: diskCommands,
  checkpoint: checkpointCommands,
  host: hostCommands,
};

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
  // Two-word commands (`vm dvd insert`): the second word is part of the command's name.
  const twoWord = verb !== undefined && rest[0] !== undefined ? groupTable?.[`${verb} ${rest[0]}`] : undefined;
  const command = top ?? (verb === undefined ? undefined : (groupTable?.[verb] ?? twoWord));
  const commandArgs = twoWord && !groupTable?.[verb ?? ''] ? rest.slice(1) : rest;
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
      args: top ? argv.slice(1) : commandArgs,
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
    return command.failed?.(result) ? EXIT_FAILED : EXIT_OK;
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
