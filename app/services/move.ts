// Quick migration (Hyper-V's Move of a running VM without live migration): the VM is saved
// if it runs, its files (configuration, disks, checkpoints, saved state) go to another Berth
// data root, it is registered and resumed there, and only then removed here. The down-time
// runs from the start of the save to running on the target.
//
// The target is a folder (another data root on this host) or an SSH target,
// ssh://[user@]host[:port]/path or user@host:/path, reached with the system's ssh (batch
// mode: keys or an agent, no password prompt) and tar; `berth` must be on the remote PATH.
// The files travel as an export (export.ts) into <target>/vms/.incoming-<id>/, which the
// target's `import --restore --move-files` turns into the VM's folder.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';

import { BerthError, type MoveResult, type VmState, type VmSummary } from '../api';
import { ExportService, type ProgressOptions } from './export';
import { VmManager } from './manager';
import { checkpointStatePath, savedStatePath } from './saved-state';
import { readTree } from './checkpoints';

export type MoveTarget = { kind: 'local'; root: string } | { kind: 'ssh'; host: string; port?: number; root: string };

const NAME = /^[A-Za-z0-9._-]+$/;

// "ssh://[user@]host[:port]/path", "[user@]host:/path", or a local folder.
export function parseMoveTarget(text: string): MoveTarget {
  const bad = (why: string): BerthError =>
    new BerthError(
      'INVALID_CONFIG',
      `destination '${text}': ${why}; give a folder, ssh://[user@]host[:port]/path or user@host:/path`,
    );
  if (text.includes('\0')) throw bad('contains a NUL character');
  const url = /^ssh:\/\/(?:([^@/]+)@)?([^:/]+)(?::(\d+))?(\/.*)$/.exec(text);
  const scp = url ? null : /^(?:([^@/:]+)@)?([^@/:]+):(\/.*)$/.exec(text);
  if (text.startsWith('ssh://') && !url) throw bad('not an ssh URL with an absolute path');
  const m = url ?? scp;
  if (!m) return { kind: 'local', root: resolve(text) };
  const [, user, host = '', port, path = ''] = url ? m : [m[0], m[1], m[2], undefined, m[3]];
  if (!NAME.test(host) || host.startsWith('-')) throw bad(`'${host}' is not a host name`);
  if (user !== undefined && (!NAME.test(user) || user.startsWith('-'))) throw bad(`'${user}' is not a user name`);
  const target: MoveTarget = { kind: 'ssh', host: user === undefined ? host : `${user}@${host}`, root: path };
  if (port !== undefined) {
    const n = Number(port);
    if (n < 1 || n > 65535) throw bad(`port ${port} is out of range`);
    target.port = n;
  }
  return target;
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], stdin?: NodeJS.ReadableStream): Promise<Ran> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    if (stdin && child.stdin) stdin.pipe(child.stdin);
    child.on('error', (err) =>
      fail(new BerthError('IO', `cannot run ${cmd}: ${err.message}; install it (Berth uses the system's ${cmd})`)),
    );
    child.on('close', (code) => done({ code: code ?? 1, stdout, stderr }));
  });
}

export class MoveService {
  private readonly exports: ExportService;

  constructor(private readonly manager: VmManager) {
    this.exports = new ExportService(manager);
  }

  private sshArgs(t: Extract<MoveTarget, { kind: 'ssh' }>, script: string): string[] {
    return ['-o', 'BatchMode=yes', ...(t.port === undefined ? [] : ['-p', String(t.port)]), t.host, script];
  }

  private async ssh(t: Extract<MoveTarget, { kind: 'ssh' }>, script: string, what: string): Promise<string> {
    const r = await run('ssh', this.sshArgs(t, script));
    if (r.code !== 0) {
      throw new BerthError(
        'IO',
        `${what} on ${t.host} failed (ssh exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
      );
    }
    return r.stdout;
  }

  private remoteBerth(t: Extract<MoveTarget, { kind: 'ssh' }>, args: string): string {
    return `BERTH_HOME=${quote(t.root)} berth ${args}`;
  }

  // The bytes these files occupy (those that exist).
  private static async allocated(files: string[]): Promise<number> {
    let total = 0;
    for (const f of files) {
      const st = await fs.stat(f).catch(() => undefined);
      if (st?.isFile()) total += st.blocks * 512;
    }
    return total;
  }

  // Refuses a target that cannot take the VM, before anything is saved or copied.
  private async checkTarget(target: MoveTarget, vm: { id: string; name: string }, needed: number): Promise<void> {
    const fix =
      "point --to at another Berth data root (the folder BERTH_HOME names there), or create one with 'mkdir -p ROOT/vms'";
    if (target.kind === 'local') {
      if (resolve(target.root) === resolve(this.manager.root)) {
        throw new BerthError('INVALID_CONFIG', `'${vm.name}' is already in ${target.root}`);
      }
      const st = await fs.stat(target.root).catch(() => undefined);
      if (!st?.isDirectory())
        throw new BerthError('NOT_FOUND', `the destination ${target.root} does not exist; ${fix}`);
      if (!(await fs.stat(join(target.root, 'vms')).catch(() => undefined))?.isDirectory()) {
        throw new BerthError(
          'INVALID_CONFIG',
          `${target.root} is not a Berth data root (it has no vms/ folder); ${fix}`,
        );
      }
      const there = new VmManager({ root: target.root });
      const clash = (await there.registry.list()).find(
        (e) => e.id === vm.id || e.config?.name.toLowerCase() === vm.name.toLowerCase(),
      );
      if (clash) {
        throw new BerthError(
          'CONFLICT',
          `${target.root} already has ${clash.id === vm.id ? `a VM with id ${vm.id}` : `a VM named '${vm.name}'`} ` +
            `('${clash.config?.name ?? clash.id}'); remove or rename it there first`,
        );
      }
      const fsStat = await fs.statfs(target.root);
      const free = fsStat.bavail * fsStat.bsize;
      if (needed > free) {
        throw new BerthError(
          'DISK_NO_SPACE',
          `${target.root} has ${free} bytes free but moving '${vm.name}' needs about ${needed}; free some space there`,
        );
      }
      return;
    }
    const root = quote(target.root);
    const out = await this.ssh(
      target,
      `test -d ${root} || { echo missing; exit 0; }; test -d ${root}/vms || { echo not-root; exit 0; }; ` +
        `command -v berth >/dev/null || { echo no-berth; exit 0; }; df -Pk ${root} | tail -n 1; ` +
        this.remoteBerth(target, 'vm list --json'),
      'checking the destination',
    );
    const where = `${target.host}:${target.root}`;
    const first = out.split('\n')[0]?.trim() ?? '';
    if (first === 'missing') throw new BerthError('NOT_FOUND', `the destination ${where} does not exist; ${fix}`);
    if (first === 'not-root') {
      throw new BerthError('INVALID_CONFIG', `${where} is not a Berth data root (it has no vms/ folder); ${fix}`);
    }
    if (first === 'no-berth') {
      throw new BerthError('NOT_FOUND', `'berth' is not on the PATH of ${target.host}; install Berth there first`);
    }
    const freeKiB = Number(first.split(/\s+/)[3]);
    if (Number.isFinite(freeKiB) && needed > freeKiB * 1024) {
      throw new BerthError(
        'DISK_NO_SPACE',
        `${where} has ${freeKiB * 1024} bytes free but moving '${vm.name}' needs about ${needed}; free some space there`,
      );
    }
    const listed = JSON.parse(out.slice(out.indexOf('\n') + 1)) as { vms?: { id: string; name: string }[] };
    const clash = (listed.vms ?? []).find((v) => v.id === vm.id || v.name.toLowerCase() === vm.name.toLowerCase());
    if (clash) {
      throw new BerthError(
        'CONFLICT',
        `${where} already has ${clash.id === vm.id ? `a VM with id ${vm.id}` : `a VM named '${vm.name}'`}; remove or rename it there first`,
      );
    }
  }

  async move(ref: string, destination: string, options: ProgressOptions = {}): Promise<MoveResult> {
    const target = parseMoveTarget(destination);
    const entry = await this.manager.registry.resolve(ref);
    const { id, config } = entry;
    const name = config.name;
    const passthrough = config.disks.filter((d) => d.kind === 'passthrough');
    if (passthrough.length > 0) {
      const which = passthrough.map((d) => `${d.deviceId} on slot ${d.slot}`).join(', ');
      throw new BerthError(
        'INVALID_STATE',
        `cannot move '${name}': passthrough disk ${which} is a device of this host and cannot move; ` +
          `remove it from the VM first (berth vm set ${name} --remove-disk SLOT)`,
      );
    }
    const before = await this.manager.state(id);
    const running = before.state === 'Running' || before.state === 'Paused';
    if (!running && !(['Off', 'Saved', 'Failed'] as VmState[]).includes(before.state)) {
      throw new BerthError('INVALID_STATE', `cannot move '${name}' while it is ${before.state}; wait until it settles`);
    }
    const { files } = await this.exports.filesOf(entry.paths.folder, config);
    const tree = await readTree(entry.paths);
    const stateFiles = [
      savedStatePath(entry.paths),
      ...[...tree.records.values()].map((r) => checkpointStatePath(entry.paths, r.id)),
    ];
    // What the move writes there: every file, and the memory a save writes first.
    const needed =
      (await MoveService.allocated([...files, ...stateFiles])) + (running ? config.memory.startupMiB * 1024 * 1024 : 0);
    await this.checkTarget(target, { id, name }, needed);
    const leftBehind = files.filter((f) => !resolve(f).startsWith(resolve(entry.paths.folder) + '/'));

    const t0 = Date.now();
    if (running) await this.manager.save(id);
    const bytesCopied = await MoveService.allocated([...files, ...stateFiles]);
    const incoming = `.incoming-${id}`;
    let there: VmSummary;
    try {
      there =
        target.kind === 'local'
          ? await this.toLocal(target, id, incoming, options)
          : await this.toSsh(target, id, incoming, options);
    } catch (err) {
      // Nothing was registered there: the VM stays here (resumed if it ran).
      if (running) await this.manager.start(id).catch(() => undefined);
      throw err;
    }
    if (running) {
      try {
        there = await this.startThere(target, id);
      } catch (err) {
        await this.removeThere(target, id).catch(() => undefined);
        await this.manager.start(id).catch(() => undefined);
        const body = err instanceof BerthError ? err : new BerthError('START_FAILED', String(err));
        throw new BerthError(
          body.code,
          `'${name}' could not be resumed at ${destination} (${body.message}); it was removed there and resumed here`,
        );
      }
    }
    const downtimeMs = running ? Date.now() - t0 : null;
    await this.manager.remove(id, { deleteDisks: true });
    return {
      id,
      name,
      destination,
      remote: target.kind === 'ssh',
      stateThere: there.state,
      bytesCopied,
      downtimeMs,
      leftBehind,
    };
  }

  private async toLocal(
    target: Extract<MoveTarget, { kind: 'local' }>,
    id: string,
    incoming: string,
    options: ProgressOptions,
  ): Promise<VmSummary> {
    const vms = join(target.root, 'vms');
    try {
      const { folder } = await this.exports.exportVm(id, vms, { ...options, folderName: incoming });
      const there = new ExportService(new VmManager({ root: target.root }));
      return await there.importVm(folder, 'restore', { moveFiles: true });
    } finally {
      await fs.rm(join(vms, incoming), { recursive: true, force: true });
    }
  }

  private async toSsh(
    target: Extract<MoveTarget, { kind: 'ssh' }>,
    id: string,
    incoming: string,
    options: ProgressOptions,
  ): Promise<VmSummary> {
    const outgoing = join(this.manager.registry.vmsDir, `.outgoing-${id}`);
    const remote = `${target.root}/vms/${incoming}`;
    try {
      const { folder } = await this.exports.exportVm(id, this.manager.registry.vmsDir, {
        ...options,
        folderName: `.outgoing-${id}`,
      });
      const tar = spawn('tar', ['-C', folder, ...(process.platform === 'linux' ? ['--sparse'] : []), '-cf', '-', '.'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let tarErr = '';
      tar.stderr.on('data', (b: Buffer) => (tarErr += b.toString()));
      const sent = await run(
        'ssh',
        this.sshArgs(target, `rm -rf ${quote(remote)} && mkdir -p ${quote(remote)} && tar -C ${quote(remote)} -xf -`),
        tar.stdout,
      );
      const tarCode = await new Promise<number>((r) =>
        tar.exitCode !== null ? r(tar.exitCode) : tar.on('close', (c) => r(c ?? 1)),
      );
      if (sent.code !== 0 || tarCode !== 0) {
        throw new BerthError('IO', `copying to ${target.host}:${remote} failed: ${(sent.stderr || tarErr).trim()}`);
      }
      const out = await this.ssh(
        target,
        `${this.remoteBerth(target, `import ${quote(remote)} --restore --move-files --json`)}; rc=$?; ` +
          `rm -rf ${quote(remote)}; exit $rc`,
        'registering the VM',
      );
      return JSON.parse(out) as VmSummary;
    } catch (err) {
      await this.ssh(target, `rm -rf ${quote(remote)}`, 'cleaning up').catch(() => undefined);
      throw err;
    } finally {
      await fs.rm(outgoing, { recursive: true, force: true });
    }
  }

  private async startThere(target: MoveTarget, id: string): Promise<VmSummary> {
    if (target.kind === 'local') return new VmManager({ root: target.root }).start(id);
    return JSON.parse(
      await this.ssh(target, this.remoteBerth(target, `vm start ${id} --json`), 'starting the VM'),
    ) as VmSummary;
  }

  private async removeThere(target: MoveTarget, id: string): Promise<void> {
    if (target.kind === 'local') {
      await new VmManager({ root: target.root }).remove(id, { deleteDisks: true });
      return;
    }
    await this.ssh(target, this.remoteBerth(target, `vm remove ${id} --delete-disks --json`), 'removing the copy');
  }
}
