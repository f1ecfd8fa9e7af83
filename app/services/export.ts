// Export and import with Hyper-V's semantics.
//
// An export is a folder <dest>/<vm name>/ holding export.json (ExportManifest),
// config.json, checkpoints/*.json and disks/: every file the VM and its checkpoints use,
// copied sparse with their differencing links kept (each file alone, parents recorded by
// name), and all paths in the copied metadata relative to the export folder. Import takes
// such a folder three ways: register it in place (the disks stay where they are, same id),
// restore (copy the disks into Berth's data root, same id) or copy (copy, new id). The
// configuration alone exports as Berth JSON, libvirt domain XML or an OVF 2.0 envelope
// (with its disks flattened to standalone qcow2 files, which is what the OVF names).
// A Saved VM's state (state/saved.bstate) and the memory of checkpoints that hold it
// (checkpoints/<id>/memory.bstate) travel with it, so an imported Saved VM is Saved there.
import { randomUUID } from 'node:crypto';
import { promises as fs, realpathSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';

import {
  BerthError,
  CheckpointRecord,
  CheckpointTreeFile,
  ConfigError,
  EXPORT_FORMAT_VERSION,
  ExportManifest,
  formatIssues,
  migrateConfigDetailed,
  randomMac,
  STATE_FILES,
  type ImportMode,
  type VmConfig,
  type VmDetails,
} from '../api';
import { convertDisk, inspectDisk, reconnectDisk, type DiskFormat } from '../native/disk';
import { CheckpointService, readTree } from './checkpoints';
import { chainFailure, diskCall } from './disks';
import { ovfEnvelope, toLibvirt } from './export-formats';
import { atomicWriteJson } from './fsutil';
import type { VmManager } from './manager';
import { VmPaths } from './paths';
import { checkpointVarsPath } from './firmware';
import { checkpointStatePath, savedStatePath } from './saved-state';

export interface ProgressOptions {
  onProgress?: (done: number, total: number, what: string) => void;
  signal?: AbortSignal;
}

// Maps the strings under `keys` (disk paths by default). DVD drives' images are not part
// of an export (as in Hyper-V): their paths stay as they are.
function mapPaths<T>(value: T, fn: (p: string) => string, keys = new Set(['path'])): T {
  const walk = (v: unknown, k: string): unknown => {
    if (Array.isArray(v)) return v.map((x, i) => walk(x, String(i)));
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v).map(([key, x]) => [key, key === 'dvdDrives' ? structuredClone(x) : walk(x, key)]),
      );
    }
    return typeof v === 'string' && keys.has(k) ? fn(v) : v;
  };
  return walk(JSON.parse(JSON.stringify(value)), '') as T;
}

export function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_') || 'vm';
}

// Resolves a path taken from an imported file inside root, or refuses it: absolute paths,
// '..' that leaves root, and symbolic links that lead out.
export function insideFolder(root: string, p: string, field: string): string {
  if (isAbsolute(p)) {
    throw new BerthError(
      'INVALID_CONFIG',
      `${field}: '${p}' is an absolute path; an import may only name files inside its folder`,
    );
  }
  const full = resolve(root, normalize(p));
  const rootReal = realpathSync(root);
  if (full !== resolve(root) && !full.startsWith(resolve(root) + sep)) {
    throw new BerthError('INVALID_CONFIG', `${field}: '${p}' leaves the import folder`);
  }
  let real: string;
  try {
    real = realpathSync(full);
  } catch {
    throw new BerthError('INVALID_CONFIG', `${field}: '${p}' does not exist in the import folder`);
  }
  if (real !== rootReal && !real.startsWith(rootReal + sep)) {
    throw new BerthError(
      'INVALID_CONFIG',
      `${field}: '${p}' is a symbolic link that leads out of the import folder (to ${real})`,
    );
  }
  return real;
}

export class ExportService {
  constructor(private readonly manager: VmManager) {}

  // Every file the VM and its checkpoints need: tops, checkpoint views, retained parents,
  // and their backing chains.
  async filesOf(folder: string, config: VmConfig): Promise<{ files: string[]; parent: Map<string, string> }> {
    const tree = await readTree(new VmPaths(folder));
    const roots = [
      ...config.disks.flatMap((d) => (d.kind === 'virtual' ? [resolve(folder, d.path)] : [])),
      ...[...tree.records.values()].flatMap((r) => r.disks.map((d) => resolve(folder, d.path))),
      ...tree.retained.map((f) => resolve(folder, f)),
    ];
    const files: string[] = [];
    const parent = new Map<string, string>();
    for (const r of roots) {
      const info = await diskCall(() => inspectDisk(r));
      if (info.chainError) throw chainFailure(r, info.chainError);
      info.images.forEach((img, i) => {
        const p = resolve(img.path);
        if (!files.includes(p)) files.push(p);
        const next = info.images[i + 1];
        if (next) parent.set(p, resolve(next.path));
      });
    }
    return { files, parent };
  }

  // Copies each file alone (keeping its parent link) and records the parents by name in
  // the target folder. Returns source -> target.
  private static async copyDisks(
    files: string[],
    parent: Map<string, string>,
    disksDir: string,
    options: ProgressOptions,
  ): Promise<Map<string, string>> {
    const names = new Map<string, string>();
    const used = new Set<string>();
    for (const f of files) {
      let name = basename(f);
      for (let i = 1; used.has(name); i++) name = `${basename(f, extname(f))}-${i}${extname(f)}`;
      used.add(name);
      names.set(f, join(disksDir, name));
    }
    const infos = await Promise.all(files.map((f) => diskCall(() => inspectDisk(f))));
    const sizes = infos.map((i) => i.images[0]?.virtualSize ?? 0);
    const total = sizes.reduce((a, b) => a + b, 0);
    let base = 0;
    await fs.mkdir(disksDir, { recursive: true });
    for (const [i, f] of files.entries()) {
      const dst = names.get(f) ?? '';
      const format = (infos[i]?.images[0]?.format ?? 'raw') as DiskFormat;
      const hasParent = parent.has(f);
      options.onProgress?.(base, total, basename(f));
      const o: Parameters<typeof convertDisk>[3] = {
        onProgress: (done) => options.onProgress?.(base + Math.min(done, sizes[i] ?? 0), total, basename(f)),
      };
      if (options.signal) o.signal = options.signal;
      await diskCall(() =>
        convertDisk(f, dst, { format: format === 'raw' || !hasParent ? format : format, keepBacking: hasParent }, o),
      );
      base += sizes[i] ?? 0;
    }
    // Parents recorded by name (the copies share one folder).
    for (const f of files) {
      const p = parent.get(f);
      const dst = names.get(f);
      const pdst = p === undefined ? undefined : names.get(p);
      if (dst !== undefined && pdst !== undefined) await diskCall(() => reconnectDisk(dst, pdst));
    }
    options.onProgress?.(total, total, '');
    return names;
  }

  // Copies (or, with move, renames: same file system) the saved state and the checkpoints'
  // memory from one VM folder layout to another. Returns the files written.
  static async copyStates(
    from: VmPaths,
    to: VmPaths,
    records: CheckpointRecord[],
    options: { move?: boolean; saved?: boolean } = {},
  ): Promise<{ saved?: string; checkpoints: string[]; firmwareVars?: string; checkpointVars: string[] }> {
    const move = options.move ?? false;
    const put = async (src: string, dst: string): Promise<void> => {
      await fs.mkdir(dirname(dst), { recursive: true, mode: 0o700 });
      if (move) await fs.rename(src, dst);
      else await fs.copyFile(src, dst);
    };
    const out: { saved?: string; checkpoints: string[]; firmwareVars?: string; checkpointVars: string[] } = {
      checkpoints: [],
      checkpointVars: [],
    };
    // The UEFI variable stores (the VM's and its checkpoints' copies), private to the user.
    if (await fs.stat(from.uefiVars).catch(() => undefined)) {
      out.firmwareVars = to.uefiVars;
      await put(from.uefiVars, to.uefiVars);
      await fs.chmod(to.uefiVars, 0o600);
    }
    for (const r of records) {
      const src = checkpointVarsPath(from, r.id);
      if (!(await fs.stat(src).catch(() => undefined))) continue;
      const dst = checkpointVarsPath(to, r.id);
      await put(src, dst);
      await fs.chmod(dst, 0o600);
      out.checkpointVars.push(dst);
    }
    const saved = savedStatePath(from);
    if (options.saved !== false && (await fs.stat(saved).catch(() => undefined))) {
      out.saved = savedStatePath(to);
      await put(saved, out.saved);
      const info = join(from.state, STATE_FILES.savedInfo);
      if (await fs.stat(info).catch(() => undefined)) await put(info, join(to.state, STATE_FILES.savedInfo));
    }
    for (const r of records) {
      if (!r.holdsMemory) continue;
      const src = checkpointStatePath(from, r.id);
      if (!(await fs.stat(src).catch(() => undefined))) continue;
      const dst = checkpointStatePath(to, r.id);
      await put(src, dst);
      out.checkpoints.push(dst);
    }
    return out;
  }

  async exportVm(
    ref: string,
    dest: string,
    options: ProgressOptions & { folderName?: string } = {},
  ): Promise<{ folder: string; manifest: ExportManifest }> {
    const entry = await this.manager.registry.resolve(ref);
    const folder = resolve(dest, options.folderName ?? fileSafe(entry.config.name));
    if (await fs.stat(folder).catch(() => undefined)) {
      throw new BerthError('CONFLICT', `${folder} already exists; choose another destination or remove it`);
    }
    return this.manager.registry.withVmLock(entry, 'export VM', async () => {
      const { state } = await this.manager.state(entry.id);
      if (state !== 'Off' && state !== 'Failed' && state !== 'Saved') {
        throw new BerthError(
          'INVALID_STATE',
          `cannot export '${entry.config.name}' while it is ${state}; save it or turn it off first`,
        );
      }
      await CheckpointService.recover(entry.paths);
      const src = entry.paths.folder;
      const config = entry.config;
      const tree = await readTree(entry.paths);
      const { files, parent } = await this.filesOf(src, config);
      await fs.mkdir(folder, { recursive: true, mode: 0o700 });
      try {
        const names = await ExportService.copyDisks(files, parent, join(folder, 'disks'), options);
        const rel = (p: string): string => {
          const n = names.get(resolve(src, p));
          if (n === undefined) throw new BerthError('INTERNAL', `no exported copy of ${p}`);
          return relative(folder, n);
        };
        await atomicWriteJson(join(folder, 'config.json'), mapPaths(config, rel));
        await fs.mkdir(join(folder, 'checkpoints'));
        const cps: string[] = [];
        for (const r of tree.records.values()) {
          const out = `checkpoints/${r.id}.json`;
          await atomicWriteJson(join(folder, out), mapPaths(r, rel));
          cps.push(out);
        }
        await atomicWriteJson(join(folder, 'checkpoints', 'tree.json'), {
          now: tree.now,
          retained: tree.retained.map(rel),
        });
        const states = await ExportService.copyStates(entry.paths, new VmPaths(folder), [...tree.records.values()]);
        const manifest: ExportManifest = {
          berthExport: EXPORT_FORMAT_VERSION,
          vmId: config.id,
          name: config.name,
          exportedAt: new Date().toISOString(),
          config: 'config.json',
          disks: [...names.values()].map((n) => relative(folder, n)),
          checkpoints: cps,
          checkpointStates: states.checkpoints.map((f) => relative(folder, f)),
          checkpointFirmwareVars: states.checkpointVars.map((f) => relative(folder, f)),
        };
        if (states.firmwareVars !== undefined) manifest.firmwareVars = relative(folder, states.firmwareVars);
        if (states.saved !== undefined) manifest.savedState = relative(folder, states.saved);
        await atomicWriteJson(join(folder, 'export.json'), manifest);
        return { folder, manifest };
      } catch (err) {
        await fs.rm(folder, { recursive: true, force: true });
        throw err;
      }
    });
  }

  // moveFiles (restore only): the export's files are moved into the VM's folder instead of
  // copied (the export is used up; both must be on one file system), as a move does.
  async importVm(
    source: string,
    mode: ImportMode,
    options: ProgressOptions & { name?: string; moveFiles?: boolean } = {},
  ): Promise<VmDetails> {
    const root = resolve(source);
    const manifestRaw = await fs.readFile(join(root, 'export.json'), 'utf8').catch(() => {
      throw new BerthError('NOT_FOUND', `${root} is not a Berth export (no export.json)`);
    });
    const manifestParsed = ExportManifest.safeParse(JSON.parse(manifestRaw));
    if (!manifestParsed.success) {
      throw new ConfigError(formatIssues(manifestParsed.error.issues, JSON.parse(manifestRaw), '(export.json)'));
    }
    const manifest = manifestParsed.data;
    const configPath = insideFolder(root, manifest.config, 'config');
    const { config: imported } = migrateConfigDetailed(JSON.parse(await fs.readFile(configPath, 'utf8')));
    // Every path must stay inside the folder, and so must every disk's backing chain.
    const check = (p: string, field: string): string => insideFolder(root, p, field);
    imported.disks.forEach((d, i) => {
      if (d.kind === 'virtual') check(d.path, `disks[${i}].path`);
    });
    const records: CheckpointRecord[] = [];
    for (const [i, c] of manifest.checkpoints.entries()) {
      const file = check(c, `checkpoints[${i}]`);
      const parsed = CheckpointRecord.safeParse(JSON.parse(await fs.readFile(file, 'utf8')));
      if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, undefined, c));
      parsed.data.disks.forEach((d, j) => check(d.path, `${c}: disks[${j}].path`));
      records.push(parsed.data);
    }
    const treeRaw = await fs.readFile(join(root, 'checkpoints', 'tree.json'), 'utf8').catch(() => '{"now":null}');
    const tree = CheckpointTreeFile.parse(JSON.parse(treeRaw));
    tree.retained.forEach((f, i) => check(f, `checkpoints/tree.json: retained[${i}]`));
    const diskFiles = manifest.disks.map((d, i) => check(d, `disks[${i}]`));
    const rootPaths = new VmPaths(root);
    if (
      manifest.savedState !== undefined &&
      check(manifest.savedState, 'savedState') !== realpathSync(savedStatePath(rootPaths))
    ) {
      throw new BerthError('INVALID_CONFIG', `savedState: must be ${relative(root, savedStatePath(rootPaths))}`);
    }
    manifest.checkpointStates.forEach((f, i) => check(f, `checkpointStates[${i}]`));
    // The variable stores are copied from where they must be (firmware/, checkpoints/<id>/),
    // and only from inside the folder.
    for (const [i, r] of records.entries()) {
      const vars = checkpointVarsPath(rootPaths, r.id);
      if (await fs.lstat(vars).catch(() => undefined)) check(relative(root, vars), `checkpoints[${i}]: uefi-vars`);
    }
    if (await fs.lstat(rootPaths.uefiVars).catch(() => undefined)) {
      check(relative(root, rootPaths.uefiVars), 'firmwareVars');
    }
    if (manifest.savedState !== undefined && mode === 'copy') {
      throw new BerthError(
        'INVALID_STATE',
        `'${manifest.name}' was exported Saved: a copy gets new network addresses, which its saved guest does not ` +
          'expect; import it with --restore or --register, or delete its saved state before exporting',
      );
    }
    if (options.moveFiles && mode !== 'restore') {
      throw new BerthError('INVALID_CONFIG', 'moving the files applies to a restore import only');
    }
    for (const f of diskFiles) {
      const info = await diskCall(() => inspectDisk(f));
      if (info.chainError) throw new BerthError('INVALID_CONFIG', `${relative(root, f)}: ${info.chainError.message}`);
      for (const img of info.images.slice(1)) {
        const real = realpathSync(img.path);
        if (!real.startsWith(realpathSync(root) + sep)) {
          throw new BerthError(
            'INVALID_CONFIG',
            `${relative(root, f)}: its parent disk ${img.path} is outside the import folder`,
          );
        }
      }
    }
    const id = mode === 'copy' ? randomUUID() : imported.id;
    const name = options.name ?? imported.name;
    const finalPaths = this.manager.registry.paths(id);
    let target: (p: string) => string;
    if (mode === 'register') target = (p) => check(p, 'path');
    else {
      const realRoot = realpathSync(root);
      target = (p) => join(finalPaths.disks, relative(join(realRoot, 'disks'), check(p, 'path')));
    }
    const withId = <T>(v: T): T => mapPaths(v, (s) => (s === imported.id ? id : s), new Set(['id']));
    // A copy is a second machine: like Hyper-V, its adapters get new MAC addresses (the same
    // new address for an adapter in the VM and in its checkpoints); register and restore keep them.
    const macs = new Map<string, string>();
    const newMacs = (network: VmConfig['network']): VmConfig['network'] =>
      mode !== 'copy'
        ? network
        : network.map((n) => {
            let mac = macs.get(n.mac);
            if (mac === undefined) macs.set(n.mac, (mac = randomMac()));
            return { ...n, mac };
          });
    const mapped: VmConfig = withId(mapPaths({ ...imported, name }, target));
    const config: VmConfig = { ...mapped, network: newMacs(mapped.network) };
    // Mapped before any file moves (the mapping checks each file in the import folder).
    const mappedRecords = records.map((r) => {
      const rec = withId(mapPaths(r, target));
      return { ...rec, config: { ...rec.config, id, network: newMacs(rec.config.network) } };
    });
    const retained = tree.retained.map(target);
    await this.manager.registry.adopt(config, async (paths) => {
      if (mode !== 'register') {
        const realRoot = realpathSync(root);
        const parent = new Map<string, string>();
        for (const f of diskFiles) {
          const info = await diskCall(() => inspectDisk(f));
          const p = info.images[1]?.path;
          if (p) parent.set(f, realpathSync(p));
        }
        // Copy into the staging folder's disks/ with the same names.
        for (const f of diskFiles) {
          if (!f.startsWith(join(realRoot, 'disks') + sep)) {
            throw new BerthError(
              'INVALID_CONFIG',
              `${relative(root, f)}: disks must sit in the export's disks/ folder`,
            );
          }
        }
        if (options.moveFiles) {
          await fs.mkdir(paths.disks, { recursive: true, mode: 0o700 });
          for (const f of diskFiles) await fs.rename(f, join(paths.disks, relative(join(realRoot, 'disks'), f)));
        } else await ExportService.copyDisks(diskFiles, parent, paths.disks, options);
      }
      await ExportService.copyStates(rootPaths, paths, records, {
        move: options.moveFiles ?? false,
        saved: manifest.savedState !== undefined,
      });
      for (const rec of mappedRecords) await atomicWriteJson(join(paths.checkpoints, `${rec.id}.json`), rec);
      await atomicWriteJson(join(paths.checkpoints, 'tree.json'), { now: tree.now, retained });
    });
    return this.manager.show(id);
  }

  // ---- configuration only ------------------------------------------------------------

  async configJson(ref: string): Promise<VmConfig> {
    return (await this.manager.registry.resolve(ref)).config;
  }

  async libvirtXml(ref: string): Promise<string> {
    const entry = await this.manager.registry.resolve(ref);
    return ExportService.toLibvirt(entry.config, entry.paths.folder);
  }

  static toLibvirt(c: VmConfig, folder: string): string {
    return toLibvirt(c, folder);
  }

  // An OVF 2.0 envelope in dest/<name>.ovf with each virtual disk flattened to a
  // standalone qcow2 file next to it (OVF names the format by URI; VMDK is not written).
  async ovf(ref: string, dest: string, options: ProgressOptions = {}): Promise<{ folder: string; envelope: string }> {
    const entry = await this.manager.registry.resolve(ref);
    const c = entry.config;
    const folder = resolve(dest);
    await fs.mkdir(folder, { recursive: true });
    const stem = fileSafe(c.name);
    const disks = c.disks.filter((d) => d.kind === 'virtual');
    const files: { id: string; href: string; size: number; capacity: number; slot: number }[] = [];
    try {
      for (const d of disks) {
        if (d.kind !== 'virtual') continue;
        const href = `${stem}-disk${d.slot}.qcow2`;
        const out = join(folder, href);
        const src = resolve(entry.paths.folder, d.path);
        const o: Parameters<typeof convertDisk>[3] = {
          onProgress: (done, total) => options.onProgress?.(done, total, href),
        };
        if (options.signal) o.signal = options.signal;
        await diskCall(() => convertDisk(src, out, { format: 'qcow2' }, o));
        const info = await diskCall(() => inspectDisk(out));
        files.push({
          id: `file${d.slot}`,
          href,
          size: (await fs.stat(out)).size,
          capacity: info.images[0]?.virtualSize ?? 0,
          slot: d.slot,
        });
      }
    } catch (err) {
      for (const f of files) await fs.rm(join(folder, f.href), { force: true });
      throw err;
    }
    const envelope = ovfEnvelope(c, files);
    const envelopePath = join(folder, `${stem}.ovf`);
    await fs.writeFile(envelopePath, envelope);
    return { folder, envelope: envelopePath };
  }
}
