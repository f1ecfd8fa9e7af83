// `berth host ...`: the host's block devices, and the VMs' automatic start and stop actions
// (startup, shutdown, and the user unit that runs them at login and logout).
import type { HostActionResult } from '../api';
import { HostActions, SHUT_DOWN_TIMEOUT_MS } from '../services';
import { installAutostart, removeAutostart } from '../services/autostart';
import { formatBytes, table, type Command } from './command';
import { parseCount, str, UsageError } from './parse';

function resultRows(results: HostActionResult[], none: string): string {
  if (results.length === 0) return none;
  const rows = [['NAME', 'ACTION', 'OUTCOME', 'NOTE']];
  for (const r of results) rows.push([r.name, r.action, r.outcome, r.message ?? '']);
  return table(rows);
}

// Exit status 1 when any VM's action failed (the results say which).
const anyFailed = (result: unknown): boolean =>
  (result as { results: HostActionResult[] }).results.some((r) => r.outcome === 'failed');

const commands: Record<string, Command> = {
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
  startup: {
    usage: 'berth host startup [--json]',
    summary:
      "carry out the VMs' automatic start actions: start those set to start (after their delay) " +
      'and those set to restart-if-running that were running at the last host shutdown',
    positionals: [],
    run: async ({ manager, print }) => {
      const results = await new HostActions(manager).startup();
      print(resultRows(results, 'no VM has an automatic start action to carry out'));
      return { results };
    },
    failed: anyFailed,
  },
  shutdown: {
    usage: 'berth host shutdown [--timeout SECONDS] [--json]',
    summary:
      "carry out the running VMs' automatic stop actions (turn off, or shut down: a guest that does not " +
      `respond within ${SHUT_DOWN_TIMEOUT_MS / 1000} s, or --timeout, is turned off) and remember which ran`,
    positionals: [],
    options: { timeout: { type: 'string' } },
    run: async ({ manager, values, print }) => {
      const seconds = parseCount('timeout', str(values, 'timeout'));
      if (seconds !== undefined && (seconds < 1 || seconds > 3600)) {
        throw new UsageError(`--timeout takes 1 to 3600 seconds, not ${seconds}`);
      }
      const results = await new HostActions(manager).shutdown(seconds === undefined ? undefined : seconds * 1000);
      print(resultRows(results, 'no VM is running'));
      return { results };
    },
    failed: anyFailed,
  },
  'install-autostart': {
    usage: 'berth host install-autostart [--json]',
    summary: "install and enable the systemd user unit that runs 'host startup' at login and 'host shutdown' at logout",
    positionals: [],
    run: async ({ manager, print }) => {
      const unit = await installAutostart({
        node: process.execPath,
        cli: require.main?.filename ?? process.argv[1] ?? '',
        dataRoot: manager.root,
        electron: process.versions['electron'] !== undefined,
      });
      print(`installed and enabled ${unit}`);
      return { unit };
    },
  },
  'remove-autostart': {
    usage: 'berth host remove-autostart [--json]',
    summary: 'disable and remove the unit install-autostart installed',
    positionals: [],
    run: async ({ print }) => {
      const removed = await removeAutostart();
      print(removed ? 'removed the autostart unit' : 'there was no autostart unit');
      return { removed };
    },
  },
};

// The autostart unit is a systemd user unit: offered on Linux only (a LaunchAgent would be
// macOS's, with the macOS port).
export const hostCommands: Record<string, Command> = Object.fromEntries(
  Object.entries(commands).filter(([name]) => process.platform === 'linux' || !name.endsWith('-autostart')),
);
