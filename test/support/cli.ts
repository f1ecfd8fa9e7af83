// Runs the compiled `berth` command line as a user types it, against one BERTH_HOME.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';

import { cliPath } from './berth-home';

export type Json = Record<string, unknown>;

export interface Ran {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

// home is read at each call, so specs can create their BERTH_HOME in before().
// entry: the script to run (the CLI; the crash specs' crash-cli.js STEP first).
export function cliRunner(
  home: () => string,
  entry = cliPath,
): {
  run: (args: string[], env?: Record<string, string>) => Promise<Ran>;
  ok: (...args: string[]) => Promise<Json>;
  refused: (...args: string[]) => Promise<string>;
} {
  const run = (args: string[], env: Record<string, string> = {}): Promise<Ran> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [entry, ...args],
        { env: { ...process.env, BERTH_HOME: home(), ...env } },
        (err, stdout, stderr) => {
          const e = err as (Error & { code?: number; signal?: string }) | null;
          resolve({
            code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
            signal: e?.signal ?? null,
            stdout,
            stderr,
          });
        },
      );
    });
  // With --json: succeeds and returns the parsed output.
  const ok = async (...args: string[]): Promise<Json> => {
    const r = await run([...args, '--json']);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return JSON.parse(r.stdout) as Json;
  };
  // With --json: refused (exit 1); returns the error message.
  const refused = async (...args: string[]): Promise<string> => {
    const r = await run([...args, '--json']);
    assert.equal(r.code, 1, `${args.join(' ')} should be refused: ${r.stdout}`);
    return (JSON.parse(r.stdout) as { error: { message: string } }).error.message;
  };
  return { run, ok, refused };
}

// `berth vm new` for the command-line specs' VM: the echo test guest, 32 MiB, one CPU, with
// the test-exit port.
export function newEchoVmArgs(name: string, kernel: string): string[] {
  return [
    'vm',
    'new',
    '--name',
    name,
    '--memory',
    '32',
    '--cpus',
    '1',
    '--kernel',
    kernel,
    '--cmdline',
    'echo',
    '--test-exit-port',
  ];
}
