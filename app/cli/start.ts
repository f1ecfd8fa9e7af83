// `npm start`: opens the Berth window in Electron when Electron can run here (its binary is
// installed and there is a display); otherwise says why and serves the same window on
// loopback (`berth serve`), printing the URL to open.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { serveMain } from './serve';

// The Electron binary's path, or why there is none. In Node, require('electron') returns the
// path of the binary its postinstall downloaded, and throws when that never ran.
export function findElectron(): { path: string } | { reason: string } {
  const load = createRequire(__filename);
  try {
    const path = load('electron') as unknown;
    if (typeof path === 'string') return { path };
    return { reason: 'require("electron") did not give the path of the Electron binary' };
  } catch (err) {
    const message = (err as Error).message.split('\n')[0] ?? '';
    return /Cannot find module 'electron'/.test(message)
      ? { reason: 'Electron is not installed (npm install electron)' }
      : { reason: `Electron's binary is missing: ${message}` };
  }
}

export function displayProblem(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string | undefined {
  if (platform === 'darwin' || platform === 'win32') return undefined;
  if (env['DISPLAY'] || env['WAYLAND_DISPLAY']) return undefined;
  return 'there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set)';
}

async function main(): Promise<number> {
  const electron = findElectron();
  const noDisplay = displayProblem();
  if ('path' in electron && noDisplay === undefined) {
    const child = spawn(electron.path, [join(__dirname, '..', 'main', 'main.js')], { stdio: 'inherit' });
    return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  }
  const why = 'reason' in electron ? electron.reason : (noDisplay ?? '');
  process.stderr.write(`berth: cannot open the window: ${why}.\nServing it on loopback instead (berth serve):\n`);
  return serveMain({ argv: process.argv.slice(2) });
}

if (require.main === module) {
  void main().then((code) => (process.exitCode = code));
}
