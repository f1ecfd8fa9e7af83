// A temporary BERTH_HOME for one spec file, and helpers for specs that run VMs through the
// services: console capture, polling, and the compiled CLI's path.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { VmManager } from '../../app/services';
import { repoRoot } from './guest';

export const cliPath = join(repoRoot, 'dist', 'app', 'cli', 'main.js');
// The CLI with the checkpoint crash hook installed: crash-cli.js STEP ARGS...
export const crashCliPath = join(__dirname, 'crash-cli.js');
export const supportDir = __dirname;

// Short paths: the control socket's path must fit in a Unix socket address.
export function makeBerthHome(tag: string): string {
  return mkdtempSync(join(tmpdir(), `berth-${tag}-`));
}

// Turns off whatever still runs under this root and removes it.
export async function cleanBerthHome(root: string): Promise<void> {
  const manager = new VmManager({ root });
  for (const vm of await manager.list().catch(() => [])) {
    if (vm.state !== 'Off') await manager.turnOff(vm.id).catch(() => undefined);
  }
  rmSync(root, { recursive: true, force: true });
}

export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// Collects console text and waits for a needle.
export class TextSink {
  text = '';
  push = (bytes: Uint8Array | string): void => {
    this.text += typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('latin1');
  };
  waitFor(needle: string, timeoutMs = 10_000): Promise<void> {
    return waitUntil(
      `${JSON.stringify(needle)} (have ${JSON.stringify(this.text.slice(-200))})`,
      () => this.text.includes(needle),
      timeoutMs,
    );
  }
}
