// Checkpoints (Hyper-V's snapshots): a tree per VM with a 'Now' position.
//
//   <vm>/checkpoints/<id>.json   CheckpointRecord: parent, name, time, config copy, and the
//                                files holding its view of each virtual disk
//   <vm>/checkpoints/tree.json   { now, retained }
//   <vm>/checkpoints/journal.json  an operation in flight (see below)
//
// Taking a checkpoint freezes each virtual disk's current file (it becomes the checkpoint's
// view, never written again) and puts a new differencing overlay on top of it (qcow2; a
// VHDX child for VHDX disks) in the VM's disks/ folder; the configuration then points at
// the overlays. Applying one puts new overlays on the checkpoint's files and discards the
// current overlays. Deleting one merges its files down so that no other checkpoint's view
// (nor the current state) changes: a file with one child is merged with that child (the
// child's data goes into it, it takes the child's place, the child's children are pointed
// at it); a file with several children is kept ("retained") as their shared parent; a file
// with none is removed.
//
// Crash safety: every operation first writes its whole intended change to journal.json
// (atomically). 'prepare' journals list the files the operation creates: a crash before
// the commit removes them (roll back). 'commit' journals carry the disk steps and every
// metadata file's final content, all idempotent: a crash after that point is rolled
// forward. Any later operation on the VM (and starting it) first finishes a leftover
// journal. crashPoint() names the steps (see crash.ts).
//
// A standard checkpoint of a running VM (checkpoints-live.ts) also holds the VM's memory and
// device state (checkpoints/<id>/memory.bstate): its 'prepare' journal carries the commit's
// writes and the state file, and the worker switches to the new overlays only together with
// writing that file, so recovery rolls it forward when the file exists and back otherwise.
// Applying such a checkpoint resumes the VM from that file (which stays the checkpoint's).
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { z } from 'zod';

import {
  BerthError,
  CheckpointRecord,
  CheckpointTreeFile,
  migrateConfig,
  parseConfig,
  type CheckpointList,
  type CheckpointSummary,
  type VmConfig,
  type VmState,
} from '../api';
import { createDisk, inspectDisk, mergeDisk, reconnectDisk } from '../native/disk';
import { crashPoint } from './crash';
import { checkpointVarsPath, copyPrivate } from './firmware';
import { atomicWriteJson, readJsonIfExists } from './fsutil';
import type { VmManager } from './manager';
import type { VmEntry } from './registry';
import { createLiveCheckpoint } from './checkpoints-live';
import { VmPaths } from './paths';
import {
  allocatedBytes,
  checkpointStateFolder,
  checkpointStatePath,
  needsOffMessage,
  savedStateFiles,
} from './saved-state';

const JOURNAL = 'journal.json';
const TREE = 'tree.json';
const OVERLAY_RE = /\.ckpt-[0-9a-f]{8}$/;

const DiskStep = z.discriminatedUnion('kind', [
  // Merge child into its parent (the native merge removes child when done).
  z.strictObject({ kind: z.literal('merge'), child: z.string(), parent: z.string() }),
  // Point child at parent (pointer only; both show the same data).
  z.strictObject({ kind: z.literal('reconnect'), child: z.string(), parent: z.string() }),
]);
type DiskStep = z.infer<typeof DiskStep>;

export const Journal = z.strictObject({
  op: z.enum(['create', 'apply', 'delete']),
  phase: z.enum(['prepare', 'commit']),
  checkpoint: z.string(),
  created: z.array(z.string()).default([]),
  diskSteps: z.array(DiskStep).default([]),
  writes: z.array(z.strictObject({ path: z.string(), content: z.unknown() })).default([]),
  removes: z.array(z.string()).default([]),
  // A live checkpoint: the state file the worker writes; when it exists the worker runs on
  // the new overlays, so a 'prepare' journal is rolled forward (its writes are complete).
  stateFile: z.string().optional(),
  // Whole files put in place (a checkpoint's copy of the UEFI variable store going back).
  copies: z.array(z.strictObject({ from: z.string(), to: z.string() })).default([]),
});
export type Journal = z.infer<typeof Journal>;

export interface CreateOptions {
  name?: string;
  excludePassthrough?: boolean;
}

export interface CreatePlan {
  id: string;
  overlays: { slot: number; base: string; overlay: string; format: 'qcow2' | 'vhdx' }[];
  record: CheckpointRecord;
  // The commit's metadata: the record, the configuration on the overlays, the tree.
  writes: Journal['writes'];
  // A Generation 2 VM's variable store and where the checkpoint keeps its copy.
  vars?: { from: string; to: string };
}

export interface Tree {
  records: Map<string, CheckpointRecord>;
  now: string | null;
  retained: string[];
}

// What a differencing file records as its parent: the name alone when both sit in one
// folder (so the folder can move), else the absolute path.
export function backingReference(child: string, parent: string): string {
  return dirname(resolve(child)) === dirname(resolve(parent)) ? basename(parent) : resolve(parent);
}

export function isBerthOverlay(paths: VmPaths, file: string): boolean {
  const f = resolve(file);
  return dirname(f) === resolve(paths.disks) && OVERLAY_RE.test(f.slice(0, f.length - extname(f).length));
}

async function backingOf(file: string): Promise<string | null> {
  const info = await inspectDisk(file);
  const top = info.images[0];
  return top && top.backingResolved !== '' ? resolve(top.backingResolved) : null;
}

function replacePaths<T>(value: T, map: Map<string, string>): T {
  return JSON.parse(JSON.stringify(value), (_k, v: unknown) =>
    typeof v === 'string' && map.has(v) ? map.get(v) : v,
  ) as T;
}

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}

export async function readTree(paths: VmPaths): Promise<Tree> {
  const records = new Map<string, CheckpointRecord>();
  const names = await fs.readdir(paths.checkpoints).catch(() => [] as string[]);
  for (const n of names) {
    if (!/^[0-9a-f-]{36}\.json$/.test(n)) continue;
    const raw = await readJsonIfExists(join(paths.checkpoints, n));
    const parsed = CheckpointRecord.safeParse(raw);
    if (!parsed.success) {
      throw new BerthError(
        'INVALID_CONFIG',
        `checkpoint file ${join(paths.checkpoints, n)} is damaged: ${parsed.error.message}`,
      );
    }
    records.set(parsed.data.id, parsed.data);
  }
  const treeRaw = await readJsonIfExists(join(paths.checkpoints, TREE));
  const tree = treeRaw === undefined ? { now: null, retained: [] } : CheckpointTreeFile.parse(treeRaw);
  return { records, now: tree.now, retained: tree.retained };
}

// Every disk file the VM's checkpoints name, with the checkpoint that names it.
export function checkpointFiles(tree: Tree): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of tree.records.values()) for (const d of r.disks) out.set(resolve(d.path), `checkpoint '${r.name}'`);
  for (const f of tree.retained) out.set(resolve(f), 'a checkpoint chain (a shared parent of several checkpoints)');
  return out;
}

export async function summarize(tree: Tree, paths: VmPaths): Promise<CheckpointSummary[]> {
  const all = [...tree.records.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const bytes = await Promise.all(
    all.map((r) => (r.holdsMemory ? allocatedBytes(checkpointStatePath(paths, r.id)) : Promise.resolve(null))),
  );
  return all.map((r, i) => ({
    id: r.id,
    name: r.name,
    parent: r.parent,
    createdAt: r.createdAt,
    children: all.filter((c) => c.parent === r.id).map((c) => c.id),
    isNowParent: tree.now === r.id,
    disks: r.disks,
    excludedSlots: r.excludedSlots,
    type: r.type,
    holdsMemory: r.holdsMemory,
    stateBytes: bytes[i] ?? null,
  }));
}

export class CheckpointService {
  constructor(private readonly manager: VmManager) {}

  // Finishes (or rolls back) an operation a crash interrupted. Call under the VM's lock.
  static async recover(paths: VmPaths): Promise<void> {
    const file = join(paths.checkpoints, JOURNAL);
    const raw = await readJsonIfExists(file).catch(() => undefined);
    if (raw === undefined) {
      await fs.rm(file, { force: true });
      return;
    }
    const journal = Journal.parse(raw);
    const liveDone = journal.stateFile !== undefined && (await exists(journal.stateFile));
    if (journal.phase === 'prepare' && !liveDone) {
      for (const f of journal.created) await fs.rm(f, { force: true, recursive: true });
    } else {
      await CheckpointService.commit(journal, true);
    }
    await fs.rm(file, { force: true });
  }

  // The commit half: disk steps, then the metadata files, then the removals. Every step
  // can run again after a crash.
  static async commit(journal: Journal, recovering = false): Promise<void> {
    const op = journal.op;
    for (const step of journal.diskSteps) {
      if (step.kind === 'merge') {
        if (!(await exists(step.child))) continue; // merged and removed already
        let sawProgress = false;
        await mergeDisk(
          step.child,
          { into: 'parent' },
          {
            onProgress: (done, total) => {
              if (!sawProgress && done > 0 && (done < total || total === 0 || done === total)) {
                sawProgress = true;
                if (!recovering) crashPoint('merge:in-progress');
              }
            },
          },
        );
        if (!recovering) crashPoint('merge:done');
      } else {
        // Given absolute; the disk layer records it relative when both share a folder.
        await reconnectDisk(step.child, resolve(step.parent));
        if (!recovering) crashPoint('merge:reconnected');
      }
    }
    for (const c of journal.copies) if (await exists(c.from)) await copyPrivate(c.from, c.to);
    for (const [i, w] of journal.writes.entries()) {
      await atomicWriteJson(w.path, w.content);
      if (!recovering) crashPoint(`${op}:write-${i}`);
    }
    // Files, and a checkpoint's folder (its memory state).
    for (const r of journal.removes) await fs.rm(r, { force: true, recursive: true });
    if (!recovering) crashPoint(`${op}:removed`);
  }

  static async writeJournal(paths: VmPaths, journal: Journal): Promise<void> {
    await atomicWriteJson(join(paths.checkpoints, JOURNAL), journal);
  }

  static async endJournal(paths: VmPaths): Promise<void> {
    await fs.rm(join(paths.checkpoints, JOURNAL), { force: true });
  }

  // Runs fn under the VM's lock, after finishing any interrupted operation; refuses a VM in
  // a state outside `allowed` (Off unless told), saying what to do.
  private async offline<T>(
    ref: string,
    what: string,
    fn: (entry: VmEntry & { config: VmConfig }, config: VmConfig, state: VmState) => Promise<T>,
    allowed: readonly VmState[] = ['Off'],
  ): Promise<T> {
    const entry = await this.manager.registry.resolve(ref);
    return this.manager.registry.withVmLock(entry, what, async () => {
      await fs.mkdir(entry.paths.checkpoints, { recursive: true, mode: 0o700 });
      await CheckpointService.recover(entry.paths);
      const config = migrateConfig(JSON.parse(await fs.readFile(entry.paths.config, 'utf8')));
      const { state } = await this.manager.state(entry.id);
      if (!allowed.includes(state)) {
        throw new BerthError('INVALID_STATE', needsOffMessage(`${what} of '${config.name}'`, config.name, state));
      }
      return fn(entry, config, state);
    });
  }

  async list(ref: string): Promise<CheckpointList> {
    const entry = await this.manager.registry.resolve(ref);
    const tree = await this.manager.registry.withVmLock(entry, 'list checkpoints', async () => {
      await CheckpointService.recover(entry.paths);
      return readTree(entry.paths);
    });
    return { vm: entry.config.name, now: tree.now, checkpoints: await summarize(tree, entry.paths) };
  }

  // A checkpoint by id, name or id prefix; refusals list the candidates.
  static find(tree: Tree, vmName: string, ref: string): CheckpointRecord {
    const all = [...tree.records.values()];
    const exact = all.find((r) => r.id === ref) ?? all.filter((r) => r.name === ref);
    if (!Array.isArray(exact)) return exact;
    if (exact.length === 1 && exact[0]) return exact[0];
    const byPrefix = ref.length >= 4 ? all.filter((r) => r.id.startsWith(ref)) : [];
    if (exact.length === 0 && byPrefix.length === 1 && byPrefix[0]) return byPrefix[0];
    const many = exact.length > 1 ? exact : byPrefix;
    if (many.length > 1) {
      throw new BerthError(
        'AMBIGUOUS',
        `'${ref}' matches ${many.length} checkpoints of '${vmName}' (${many.map((r) => r.id).join(', ')}); use the id`,
      );
    }
    throw new BerthError(
      'NOT_FOUND',
      `'${vmName}' has no checkpoint '${ref}'; 'berth checkpoint list ${vmName}' shows them`,
    );
  }

  // Hyper-V's rules: a production checkpoint of a VM that is off is taken (a powered-off
  // disk is consistent); of a running VM it needs the guest to quiesce its disks, which
  // Berth has no guest channel for, so it is refused, or falls back to a standard one (with
  // the VM's memory, checkpoints-live.ts) when the VM's setting allows.
  async create(ref: string, options: CreateOptions = {}): Promise<CheckpointSummary> {
    const { id, state } = await this.manager.state(ref);
    if (state === 'Running' || state === 'Paused') return createLiveCheckpoint(this.manager, id, options);
    return this.offline(ref, 'take a checkpoint', async (entry, config) => {
      const plan = await CheckpointService.plan(entry.paths, config, options, config.checkpoints.type);
      await CheckpointService.createLocked(entry.paths, plan);
      const s = (await summarize(await readTree(entry.paths), entry.paths)).find((c) => c.id === plan.id);
      if (!s) throw new BerthError('INTERNAL', 'the new checkpoint vanished');
      return s;
    });
  }

  // What taking a checkpoint will do: the new overlay of each virtual disk, the record, and
  // the configuration that points at the overlays.
  static async plan(
    paths: VmPaths,
    config: VmConfig,
    options: CreateOptions,
    type: VmConfig['checkpoints']['type'],
  ): Promise<CreatePlan> {
    if (type === 'disabled') {
      throw new BerthError(
        'INVALID_STATE',
        `checkpoints are disabled for '${config.name}'; enable them with 'berth vm set ${config.name} --checkpoint-type standard'`,
      );
    }
    const passthrough = config.disks.filter((d) => d.kind === 'passthrough');
    if (passthrough.length > 0 && !options.excludePassthrough) {
      const which = passthrough.map((d) => `${d.deviceId} on slot ${d.slot}`).join(', ');
      throw new BerthError(
        'INVALID_STATE',
        `'${config.name}' has passthrough disk ${which}; a checkpoint cannot include a passthrough disk ` +
          '(its contents live on a host device Berth cannot capture); exclude it explicitly with --exclude-passthrough',
      );
    }
    const tree = await readTree(paths);
    const id = randomUUID();
    const short = id.slice(0, 8);
    const overlays: CreatePlan['overlays'] = [];
    for (const d of config.disks) {
      if (d.kind !== 'virtual') continue;
      const base = resolve(paths.folder, d.path);
      const info = await inspectDisk(base);
      const format = info.images[0]?.format === 'vhdx' ? 'vhdx' : 'qcow2';
      const stem = basename(base, extname(base)).replace(OVERLAY_RE, '');
      overlays.push({ slot: d.slot, base, overlay: join(paths.disks, `${stem}.ckpt-${short}.${format}`), format });
    }
    const name = options.name ?? `${config.name} - ${new Date().toISOString().replace('T', ' ').slice(0, 19)}`;
    const record: CheckpointRecord = {
      id,
      name,
      parent: tree.now,
      createdAt: new Date().toISOString(),
      config,
      disks: overlays.map((o) => ({ slot: o.slot, path: o.base })),
      excludedSlots: passthrough.map((d) => d.slot),
      // Of a VM that is off: a consistent disk state, as a production one is.
      type: type === 'production' ? 'production' : 'standard',
      holdsMemory: false,
    };
    const next = structuredClone(config);
    for (const d of next.disks) {
      const o = overlays.find((x) => x.slot === d.slot);
      if (d.kind === 'virtual' && o) d.path = o.overlay;
    }
    const writes: Journal['writes'] = [
      { path: join(paths.checkpoints, `${id}.json`), content: record },
      { path: paths.config, content: parseConfig(next) },
      { path: join(paths.checkpoints, TREE), content: { now: id, retained: tree.retained } },
    ];
    const plan: CreatePlan = { id, overlays, record, writes };
    if (config.boot.kind === 'uefi' && (await exists(paths.uefiVars))) {
      plan.vars = { from: paths.uefiVars, to: checkpointVarsPath(paths, id) };
    }
    return plan;
  }

  // The checkpoint keeps a copy of the VM's UEFI variable store in its folder.
  static async copyVars(paths: VmPaths, plan: CreatePlan): Promise<void> {
    if (plan.vars) await copyPrivate(plan.vars.from, plan.vars.to);
  }

  // Creates the overlays (each a differencing disk over the disk's current file).
  static async createOverlays(paths: VmPaths, plan: CreatePlan, step: string): Promise<void> {
    await fs.mkdir(paths.disks, { recursive: true, mode: 0o700 });
    for (const o of plan.overlays) {
      await createDisk(o.overlay, { format: o.format, backingPath: backingReference(o.overlay, o.base) });
      crashPoint(step);
    }
  }

  // A checkpoint of a VM that is off.
  private static async createLocked(paths: VmPaths, plan: CreatePlan): Promise<string> {
    const journal: Journal = {
      op: 'create',
      phase: 'prepare',
      checkpoint: plan.id,
      created: [...plan.overlays.map((o) => o.overlay), ...(plan.vars ? [checkpointStateFolder(paths, plan.id)] : [])],
      diskSteps: [],
      writes: [],
      removes: [],
      copies: [],
    };
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('create:journaled');
    await CheckpointService.createOverlays(paths, plan, 'create:overlay');
    await CheckpointService.copyVars(paths, plan);
    journal.phase = 'commit';
    journal.writes = plan.writes;
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('create:committing');
    await CheckpointService.commit(journal);
    await CheckpointService.endJournal(paths);
    return plan.id;
  }

  // Goes back to a checkpoint: new overlays on its files; the current overlays are
  // discarded unless saveCurrent takes a checkpoint of the current state first. A running VM
  // is turned off first (after that checkpoint, which then holds its memory), as Hyper-V
  // asks; a Saved VM's saved state is discarded with the rest of the current state. A
  // checkpoint that holds memory then resumes the VM at that moment (its file stays).
  async apply(
    ref: string,
    checkpointRef: string,
    options: { saveCurrent?: boolean | string } = {},
  ): Promise<CheckpointList> {
    const entry = await this.manager.registry.resolve(ref);
    const name = entry.config.name;
    const before = await this.manager.state(entry.id);
    const saveName = typeof options.saveCurrent === 'string' ? { name: options.saveCurrent } : {};
    let saveCurrent = options.saveCurrent !== undefined && options.saveCurrent !== false;
    if (before.state === 'Running' || before.state === 'Paused') {
      CheckpointService.find(await readTree(entry.paths), name, checkpointRef);
      if (saveCurrent) await createLiveCheckpoint(this.manager, entry.id, saveName);
      saveCurrent = false;
      await this.manager.turnOff(entry.id);
    } else if (before.state === 'Saved' && saveCurrent) {
      throw new BerthError(
        'INVALID_STATE',
        `cannot keep the current state of '${name}' in a checkpoint while it is Saved (its memory is in its saved ` +
          `state); start it first (a checkpoint of a running VM holds its memory), or apply without saving it`,
      );
    }
    const { list, target } = await this.offline(
      entry.id,
      'apply a checkpoint',
      async (entry, config, state) => {
        const paths = entry.paths;
        let tree = await readTree(paths);
        const target = CheckpointService.find(tree, config.name, checkpointRef);
        if (saveCurrent) {
          await CheckpointService.createLocked(
            paths,
            await CheckpointService.plan(paths, config, saveName, config.checkpoints.type),
          );
          config = migrateConfig(JSON.parse(await fs.readFile(paths.config, 'utf8')));
          tree = await readTree(paths);
        }
        const list = await this.applyLocked(paths, config, tree, target, state === 'Saved');
        return { list, target };
      },
      ['Off', 'Saved'],
    );
    if (target.holdsMemory) {
      try {
        await this.manager.start(entry.id, { restoreFrom: checkpointStatePath(entry.paths, target.id) });
      } catch (err) {
        const body = err instanceof BerthError ? err : new BerthError('START_FAILED', String(err));
        throw new BerthError(
          body.code,
          `applied checkpoint '${target.name}' to '${name}', but could not resume it from the checkpoint's memory: ` +
            `${body.message}; it is Off on the checkpoint's disks (start it to boot them afresh)`,
        );
      }
    }
    return list;
  }

  private async applyLocked(
    paths: VmPaths,
    config: VmConfig,
    tree: Tree,
    target: CheckpointRecord,
    discardSavedState: boolean,
  ): Promise<CheckpointList> {
    const named = checkpointFiles(tree);
    const discard = config.disks
      .filter((d) => d.kind === 'virtual')
      .map((d) => resolve(paths.folder, d.kind === 'virtual' ? d.path : ''))
      .filter((f) => isBerthOverlay(paths, f) && !named.has(f));
    const short = randomUUID().slice(0, 8);
    const overlays = await Promise.all(
      target.disks.map(async (d) => {
        const info = await inspectDisk(d.path);
        const format = info.images[0]?.format === 'vhdx' ? 'vhdx' : 'qcow2';
        const stem = basename(d.path, extname(d.path)).replace(OVERLAY_RE, '');
        return { slot: d.slot, base: d.path, overlay: join(paths.disks, `${stem}.ckpt-${short}.${format}`), format };
      }),
    );
    const next: VmConfig = structuredClone({ ...target.config, id: config.id, name: config.name });
    for (const d of next.disks) {
      const o = overlays.find((x) => x.slot === d.slot);
      if (d.kind === 'virtual' && o) d.path = o.overlay;
    }
    const journal: Journal = {
      op: 'apply',
      phase: 'prepare',
      checkpoint: target.id,
      created: overlays.map((o) => o.overlay),
      diskSteps: [],
      writes: [],
      removes: [],
      copies: [],
    };
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('apply:journaled');
    for (const o of overlays) {
      await createDisk(o.overlay, {
        format: o.format as 'qcow2' | 'vhdx',
        backingPath: backingReference(o.overlay, o.base),
      });
      crashPoint('apply:overlay');
    }
    journal.phase = 'commit';
    journal.writes = [
      { path: paths.config, content: parseConfig(next) },
      { path: join(paths.checkpoints, TREE), content: { now: target.id, retained: tree.retained } },
    ];
    journal.removes = [...discard, ...(discardSavedState ? savedStateFiles(paths) : [])];
    // The UEFI settings go back to the checkpoint's too.
    const vars = checkpointVarsPath(paths, target.id);
    if (await exists(vars)) journal.copies = [{ from: vars, to: paths.uefiVars }];
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('apply:committing');
    await CheckpointService.commit(journal);
    await CheckpointService.endJournal(paths);
    const after = await readTree(paths);
    return { vm: config.name, now: after.now, checkpoints: await summarize(after, paths) };
  }

  async rename(ref: string, checkpointRef: string, newName: string): Promise<CheckpointSummary> {
    const entry = await this.manager.registry.resolve(ref);
    return this.manager.registry.withVmLock(entry, 'rename a checkpoint', async () => {
      await CheckpointService.recover(entry.paths);
      const tree = await readTree(entry.paths);
      const r = CheckpointService.find(tree, entry.config.name, checkpointRef);
      const checked = CheckpointRecord.shape.name.safeParse(newName);
      if (!checked.success) throw new BerthError('INVALID_CONFIG', `name: must be 1 to 100 characters`);
      r.name = newName;
      await atomicWriteJson(join(entry.paths.checkpoints, `${r.id}.json`), r);
      const s = (await summarize(tree, entry.paths)).find((c) => c.id === r.id);
      if (!s) throw new BerthError('INTERNAL', 'the checkpoint vanished');
      return s;
    });
  }

  // Deletes one checkpoint (its files merged down) or, with subtree, it and all below it.
  async remove(ref: string, checkpointRef: string, options: { subtree?: boolean } = {}): Promise<CheckpointList> {
    return this.offline(ref, 'delete a checkpoint', async (entry, config) => {
      const tree = await readTree(entry.paths);
      const target = CheckpointService.find(tree, config.name, checkpointRef);
      const order: string[] = [];
      const visit = (id: string): void => {
        if (options.subtree) for (const c of tree.records.values()) if (c.parent === id) visit(c.id);
        order.push(id);
      };
      visit(target.id);
      for (const id of order) await this.deleteOne(entry.paths, id);
      const after = await readTree(entry.paths);
      return { vm: config.name, now: after.now, checkpoints: await summarize(after, entry.paths) };
    });
  }

  private async deleteOne(paths: VmPaths, id: string): Promise<void> {
    const tree = await readTree(paths);
    const config = migrateConfig(JSON.parse(await fs.readFile(paths.config, 'utf8')));
    const victim = tree.records.get(id);
    if (!victim) return;
    const tops = config.disks.flatMap((d) => (d.kind === 'virtual' ? [resolve(paths.folder, d.path)] : []));
    const otherViews = new Set(
      [...tree.records.values()].filter((r) => r.id !== id).flatMap((r) => r.disks.map((d) => resolve(d.path))),
    );
    let retained = tree.retained.map((f) => resolve(f));
    const known = new Set([...otherViews, ...tops, ...retained, ...victim.disks.map((d) => resolve(d.path))]);
    const parentOf = new Map<string, string | null>();
    for (const f of known) parentOf.set(f, await backingOf(f).catch(() => null));
    const childrenOf = (f: string): string[] => [...known].filter((k) => parentOf.get(k) === f);

    const steps: DiskStep[] = [];
    // The record and its folder (a standard checkpoint's memory state).
    const removes: string[] = [join(paths.checkpoints, `${id}.json`), checkpointStateFolder(paths, id)];
    const replace = new Map<string, string>();
    for (const d of victim.disks) {
      const f = resolve(d.path);
      if (otherViews.has(f) || tops.includes(f) || retained.includes(f)) continue;
      const kids = childrenOf(f);
      if (kids.length === 0) {
        if (!isBerthOverlay(paths, f)) continue; // never delete a disk the user brought
        removes.push(f);
        known.delete(f);
        // A retained shared parent that no longer has children goes too.
        let up = parentOf.get(f) ?? null;
        while (up !== null && retained.includes(up) && childrenOf(up).length === 0 && isBerthOverlay(paths, up)) {
          removes.push(up);
          retained = retained.filter((r) => r !== up);
          known.delete(up);
          up = parentOf.get(up) ?? null;
        }
      } else if (kids.length === 1 && kids[0] !== undefined) {
        const k = kids[0];
        steps.push({ kind: 'merge', child: k, parent: f });
        for (const g of childrenOf(k)) steps.push({ kind: 'reconnect', child: g, parent: f });
        replace.set(k, f);
        if (retained.includes(k)) retained = retained.map((r) => (r === k ? f : r));
      } else {
        retained.push(f);
      }
    }
    const writes: Journal['writes'] = [];
    for (const r of tree.records.values()) {
      if (r.id === id) continue;
      const changed = replacePaths(r, replace);
      if (changed.parent === id) changed.parent = victim.parent;
      if (JSON.stringify(changed) !== JSON.stringify(r)) {
        writes.push({ path: join(paths.checkpoints, `${r.id}.json`), content: changed });
      }
    }
    writes.push({ path: paths.config, content: replacePaths(config, replace) });
    writes.push({
      path: join(paths.checkpoints, TREE),
      content: { now: tree.now === id ? victim.parent : tree.now, retained },
    });
    const journal: Journal = {
      op: 'delete',
      phase: 'commit',
      checkpoint: id,
      created: [],
      diskSteps: steps,
      writes,
      removes,
      copies: [],
    };
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('delete:journaled');
    await CheckpointService.commit(journal);
    await CheckpointService.endJournal(paths);
  }
}

// Files a VM's checkpoints hold (for the disk service's refusals), without taking its lock.
export async function checkpointFilesOf(folder: string): Promise<Map<string, string>> {
  return checkpointFiles(await readTree(new VmPaths(folder)));
}
