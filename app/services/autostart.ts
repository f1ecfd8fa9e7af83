// `berth host install-autostart`: a systemd user unit that runs `berth host startup` when the
// user's service manager starts (at login, or at boot with lingering) and `berth host
// shutdown` when it stops (logout, shutdown), so the VMs' automatic actions happen.
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

import { BerthError } from '../api';
import { atomicWriteFile, removeIfExists } from './fsutil';

export const AUTOSTART_UNIT = 'berth-autostart.service';

export interface AutostartCommand {
  node: string; // the runtime (Node, or Electron run as Node)
  cli: string; // the berth command line's main script
  dataRoot: string; // BERTH_HOME of the VMs it acts on
  electron: boolean;
}

export function autostartUnitPath(env: NodeJS.ProcessEnv = process.env): string {
  const config = env['XDG_CONFIG_HOME'] || join(homedir(), '.config');
  return join(config, 'systemd', 'user', AUTOSTART_UNIT);
}

// systemd quotes: double quotes around each word, with \ and " escaped.
const quote = (s: string): string => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

export function autostartUnit(c: AutostartCommand): string {
  const run = (verb: string) => [c.node, c.cli, 'host', verb].map(quote).join(' ');
  return [
    '# Written by `berth host install-autostart`; `berth host remove-autostart` removes it.',
    '[Unit]',
    "Description=Berth: the virtual machines' automatic start and stop actions",
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `Environment=${quote(`BERTH_HOME=${c.dataRoot}`)}`,
    ...(c.electron ? ['Environment=ELECTRON_RUN_AS_NODE=1'] : []),
    `ExecStart=${run('startup')}`,
    `ExecStop=${run('shutdown')}`,
    // Shut Down waits up to 120 s per VM (side by side); leave room for the turn-offs after.
    'TimeoutStopSec=200',
    // The VMs' workers belong to no unit: they are started detached and must outlive it.
    'KillMode=process',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

function systemctl(args: string[]): void {
  const r = spawnSync('systemctl', ['--user', ...args], { encoding: 'utf8' });
  if (r.status === 0) return;
  const why = r.error ? r.error.message : (r.stderr || r.stdout).trim() || `exit status ${r.status}`;
  throw new BerthError(
    'SERVICE_MANAGER',
    `systemctl --user ${args.join(' ')} failed: ${why}. The unit is written (${autostartUnitPath()}); ` +
      `enable it from a login session with: systemctl --user daemon-reload && systemctl --user enable ${AUTOSTART_UNIT}`,
  );
}

// Writes the unit and enables it; returns its path.
export async function installAutostart(c: AutostartCommand): Promise<string> {
  const path = autostartUnitPath();
  await fs.mkdir(dirname(path), { recursive: true });
  await atomicWriteFile(path, autostartUnit(c), 0o644);
  systemctl(['daemon-reload']);
  systemctl(['enable', AUTOSTART_UNIT]);
  return path;
}

// Disables and removes the unit; true when there was one. Without a reachable systemd the
// enabling link is removed by hand (it is only a symlink in default.target.wants).
export async function removeAutostart(): Promise<boolean> {
  const path = autostartUnitPath();
  const wanted = join(dirname(path), 'default.target.wants', AUTOSTART_UNIT);
  const existed = await fs.lstat(path).then(
    () => true,
    () => false,
  );
  try {
    systemctl(['disable', AUTOSTART_UNIT]);
  } catch {
    await removeIfExists(wanted);
  }
  await removeIfExists(path);
  return existed;
}
