// The VMs on disk: <root>/vms/<vm-id>/config.json, one folder per VM. Config changes are
// read-modify-write under the VM's lock and written atomically; creating, renaming and
// removing also hold the registry lock (<root>/vms/.lock) so names stay unique across
// processes.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

import {
  BerthError,
  CONFIG_SCHEMA_VERSION,
  ConfigError,
  migrateConfigDetailed,
  parseConfig,
  VmName,
  formatIssues,
  type NewVmRequest,
  type VmConfig,
} from '../api';
import { atomicWriteJson, fsyncDir } from './fsutil';
import { withLock } from './lock';
import { defaultDataRoot, VmPaths } from './paths';

export interface VmEntry {
  id: string;
  paths: VmPaths;
  config?: VmConfig;
  // Why config.json could not be read, when it could not.
  problem?: string;
}

export class Registry {
  readonly root: string;
  readonly vmsDir: string;

  constructor(root: string = defaultDataRoot()) {
    this.root = root;
    this.vmsDir = join(root, 'vms');
  }

  paths(id: string): VmPaths {
    return new VmPaths(join(this.vmsDir, id));
  }

  private async ensureRoot(): Promise<void> {
    await fs.mkdir(this.vmsDir, { recursive: true, mode: 0o700 });
  }

  private withRegistryLock<T>(owner: string, fn: () => Promise<T>): Promise<T> {
    return withLock(join(this.vmsDir, '.lock'), owner, { what: 'the VM registry' }, fn);
  }

  // Holds the VM's lock (run/lock) while fn runs.
  withVmLock<T>(
    entry: { id: string; paths: VmPaths; config?: VmConfig },
    owner: string,
    fn: () => Promise<T>,
  ): Promise<T> {
    const what = entry.config ? `VM '${entry.config.name}'` : `VM ${entry.id}`;
    return withLock(join(entry.paths.run, 'lock'), owner, { what }, fn).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BerthError('NOT_FOUND', `${what} no longer exists (another process removed it)`);
      }
      throw err;
    });
  }

  // Reads and validates one VM's configuration; an older schema is upgraded and saved.
  async read(id: string): Promise<VmConfig> {
    const paths = this.paths(id);
    let text: string;
    try {
      text = await fs.readFile(paths.config, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BerthError('NOT_FOUND', `no VM with id ${id}`);
      throw err;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new ConfigError([`(config): ${paths.config} is not valid JSON (${(err as Error).message})`]);
    }
    const { config, changed } = migrateConfigDetailed(raw);
    if (config.id !== id) {
      throw new ConfigError([`id: ${config.id} does not match the folder ${paths.folder}`]);
    }
    if (changed) {
      // Save the upgrade (and generated defaults such as MACs) so they are stable.
      return this.update(id, 'upgrade config', (c) => c);
    }
    return config;
  }

  async list(): Promise<VmEntry[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.vmsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const entries: VmEntry[] = [];
    for (const id of names.filter((n) => !n.startsWith('.')).sort()) {
      const paths = this.paths(id);
      try {
        entries.push({ id, paths, config: await this.read(id) });
      } catch (err) {
        if (err instanceof BerthError && err.code === 'NOT_FOUND') continue; // removed meanwhile
        entries.push({ id, paths, problem: (err as Error).message });
      }
    }
    entries.sort((a, b) => (a.config?.name ?? a.id).localeCompare(b.config?.name ?? b.id));
    return entries;
  }

  // Finds a VM by id, name, or an unambiguous id prefix (at least 4 characters).
  async resolve(ref: string): Promise<VmEntry & { config: VmConfig }> {
    const all = (await this.list()).filter((e): e is VmEntry & { config: VmConfig } => e.config !== undefined);
    const byId = all.find((e) => e.id === ref);
    if (byId) return byId;
    const byName = all.filter((e) => e.config.name === ref);
    if (byName.length === 1 && byName[0]) return byName[0];
    const folded = all.filter((e) => e.config.name.toLowerCase() === ref.toLowerCase());
    if (folded.length === 1 && folded[0]) return folded[0];
    const byPrefix = ref.length >= 4 ? all.filter((e) => e.id.startsWith(ref.toLowerCase())) : [];
    if (byPrefix.length === 1 && byPrefix[0]) return byPrefix[0];
    const matches = byName.length > 1 ? byName : folded.length > 1 ? folded : byPrefix;
    if (matches.length > 1) {
      throw new BerthError(
        'AMBIGUOUS',
        `'${ref}' matches ${matches.length} VMs (${matches.map((m) => `${m.config.name} ${m.id}`).join(', ')}); use the id`,
      );
    }
    throw new BerthError('NOT_FOUND', `no VM named '${ref}'; 'berth vm list' shows the VMs`);
  }

  private async assertNameFree(name: string, exceptId?: string): Promise<void> {
    const clash = (await this.list()).find(
      (e) => e.id !== exceptId && e.config?.name.toLowerCase() === name.toLowerCase(),
    );
    if (clash)
      throw new BerthError('NAME_IN_USE', `a VM named '${clash.config?.name ?? name}' already exists (${clash.id})`);
  }

  // Creates a VM. fill(staging, final, config) may put files into the staging folder (new
  // disks) and return the configuration naming them at their final place; the folder is
  // renamed into place only when everything worked, so a failed step leaves nothing behind.
  async create(
    request: NewVmRequest,
    options: {
      check?: (config: VmConfig) => Promise<void>;
      fill?: (staging: VmPaths, final: VmPaths, config: VmConfig) => Promise<VmConfig>;
    } = {},
  ): Promise<VmConfig> {
    const id = randomUUID();
    let config = parseConfig({
      ...request,
      schemaVersion: CONFIG_SCHEMA_VERSION,
      id,
      createdAt: new Date().toISOString(),
    });
    await options.check?.(config);
    await this.ensureRoot();
    // Refused before any disk is made; checked again under the lock.
    await this.assertNameFree(config.name);
    // Build the folder under a hidden name, then rename it into place: a lister never
    // sees a VM without its config, nor one whose creation failed half-way.
    const staging = join(this.vmsDir, `.new-${id}`);
    const paths = new VmPaths(staging);
    try {
      await fs.mkdir(staging, { mode: 0o700 });
      for (const dir of [paths.disks, paths.checkpoints, paths.state, paths.run]) await fs.mkdir(dir, { mode: 0o700 });
      if (options.fill) config = parseConfig(await options.fill(paths, this.paths(id), config));
      await atomicWriteJson(paths.config, config);
      return await this.withRegistryLock('create VM', async () => {
        await this.assertNameFree(config.name);
        await fs.rename(staging, this.paths(id).folder);
        await fsyncDir(this.vmsDir);
        return config;
      });
    } catch (err) {
      await fs.rm(staging, { recursive: true, force: true });
      throw err;
    }
  }

  // Registers a VM with a given configuration (an import): the id and the name must be
  // free; fill(paths) puts the VM's files in place in the staging folder before the VM
  // appears. Refusals name the VM already registered.
  async adopt(config: VmConfig, fill: (paths: VmPaths) => Promise<void>): Promise<VmConfig> {
    const checked = parseConfig(config);
    await this.ensureRoot();
    return this.withRegistryLock('import VM', async () => {
      const existing = (await this.list()).find((e) => e.id === checked.id);
      if (existing) {
        throw new BerthError(
          'CONFLICT',
          `a VM with id ${checked.id} is already registered ('${existing.config?.name ?? existing.id}'); ` +
            'import it as a copy (--copy) to give it a new id',
        );
      }
      const clash = (await this.list()).find((e) => e.config?.name.toLowerCase() === checked.name.toLowerCase());
      if (clash) {
        throw new BerthError(
          'CONFLICT',
          `a VM named '${clash.config?.name ?? checked.name}' is already registered (${clash.id}); ` +
            'import it with another name (--copy --name NEW-NAME)',
        );
      }
      const staging = join(this.vmsDir, `.new-${checked.id}`);
      await fs.rm(staging, { recursive: true, force: true });
      const paths = new VmPaths(staging);
      await fs.mkdir(staging, { mode: 0o700 });
      for (const dir of [paths.disks, paths.checkpoints, paths.state, paths.run]) await fs.mkdir(dir, { mode: 0o700 });
      try {
        await fill(paths);
        await atomicWriteJson(paths.config, checked);
        await fs.rename(staging, this.paths(checked.id).folder);
      } catch (err) {
        await fs.rm(staging, { recursive: true, force: true });
        throw err;
      }
      await fsyncDir(this.vmsDir);
      return checked;
    });
  }

  // Read-modify-write of one VM's configuration under its lock.
  async update(
    id: string,
    owner: string,
    change: (config: VmConfig) => VmConfig | Promise<VmConfig>,
  ): Promise<VmConfig> {
    const paths = this.paths(id);
    return this.withVmLock({ id, paths }, owner, async () => {
      let raw: unknown;
      try {
        raw = JSON.parse(await fs.readFile(paths.config, 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BerthError('NOT_FOUND', `no VM with id ${id}`);
        throw err;
      }
      const current = migrateConfigDetailed(raw).config;
      const next = parseConfig(await change(structuredClone(current)));
      if (next.id !== id) throw new ConfigError(['id: cannot be changed']);
      await atomicWriteJson(paths.config, next);
      return next;
    });
  }

  async rename(id: string, newName: string): Promise<VmConfig> {
    const checked = VmName.safeParse(newName);
    if (!checked.success) throw new ConfigError(formatIssues(checked.error.issues, newName, 'name'));
    return this.withRegistryLock('rename VM', async () => {
      await this.assertNameFree(newName, id);
      return this.update(id, 'rename VM', (c) => ({ ...c, name: newName }));
    });
  }

  // Removes the VM's folder. The caller checks the VM is off. The folder is first renamed
  // out of vms/ (atomic), so no process sees half a VM.
  async remove(id: string, check: () => Promise<void>): Promise<void> {
    const paths = this.paths(id);
    await this.withRegistryLock('remove VM', () =>
      this.withVmLock({ id, paths }, 'remove VM', async () => {
        await check();
        const trash = join(this.vmsDir, `.removed-${id}-${Date.now()}`);
        await fs.rename(paths.folder, trash);
        await fsyncDir(this.vmsDir);
        await fs.rm(trash, { recursive: true, force: true });
      }),
    );
  }
}
