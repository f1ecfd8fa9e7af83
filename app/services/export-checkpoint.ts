// Exporting one checkpoint, as Hyper-V does: a new VM (the configuration the checkpoint
// recorded) whose disks are the checkpoint's chains flattened at that point, one standalone
// file per disk, with no checkpoints of its own. The folder has the layout of a VM export
// (export.json, config.json, checkpoints/, disks/), so `berth import` takes it.
import { promises as fs } from 'node:fs';
import { basename, extname, join, relative, resolve } from 'node:path';

import { BerthError, EXPORT_FORMAT_VERSION, type ExportManifest } from '../api';
import { convertDisk, inspectDisk, type DiskFormat } from '../native/disk';
import { CheckpointService, readTree } from './checkpoints';
import { chainFailure, diskCall } from './disks';
import { fileSafe, type ProgressOptions } from './export';
import { checkpointVarsPath, copyPrivate } from './firmware';
import { atomicWriteJson } from './fsutil';
import type { VmManager } from './manager';
import { VmPaths } from './paths';

export async function exportCheckpoint(
  manager: VmManager,
  ref: string,
  checkpointRef: string,
  dest: string,
  options: ProgressOptions = {},
): Promise<{ folder: string; manifest: ExportManifest }> {
  const entry = await manager.registry.resolve(ref);
  const name = entry.config.name;
  const { state } = await manager.state(entry.id);
  // A Saved VM's checkpoints are as still as an Off one's (its current disks are not read).
  if (state !== 'Off' && state !== 'Failed' && state !== 'Saved') {
    throw new BerthError(
      'INVALID_STATE',
      `cannot export a checkpoint of '${name}' while it is ${state}; turn it off (or save it) first`,
    );
  }
  return manager.registry.withVmLock(entry, 'export a checkpoint', async () => {
    await CheckpointService.recover(entry.paths);
    const tree = await readTree(entry.paths);
    const record = CheckpointService.find(tree, name, checkpointRef);
    const folder = resolve(dest, fileSafe(`${name}-${record.name}`));
    if (await fs.stat(folder).catch(() => undefined)) {
      throw new BerthError('CONFLICT', `${folder} already exists; choose another destination or remove it`);
    }
    // What each slot's disk looked like at the checkpoint: its view file and all below it.
    const sources = await Promise.all(
      record.disks.map(async (d) => {
        const file = resolve(entry.paths.folder, d.path);
        const info = await diskCall(() => inspectDisk(file));
        if (info.chainError) throw chainFailure(file, info.chainError);
        const top = info.images[0];
        const format = (top?.format === 'host-device' ? 'raw' : (top?.format ?? 'qcow2')) as DiskFormat;
        return { slot: d.slot, file, format, size: top?.virtualSize ?? 0 };
      }),
    );
    const total = sources.reduce((a, s) => a + s.size, 0);
    await fs.mkdir(join(folder, 'disks'), { recursive: true, mode: 0o700 });
    try {
      const config = structuredClone(record.config);
      const written: string[] = [];
      let base = 0;
      for (const s of sources) {
        // Overlay names carry the checkpoint's id (disk.ckpt-1a2b3c4d.qcow2); the copy is
        // standalone, so it gets the disk's own name back.
        const stem = basename(s.file, extname(s.file)).replace(/\.ckpt-[0-9a-f]{8}$/, '');
        let file = `${stem}.${s.format}`;
        for (let i = 1; written.includes(file); i++) file = `${stem}-${i}.${s.format}`;
        written.push(file);
        const dst = join(folder, 'disks', file);
        options.onProgress?.(base, total, basename(s.file));
        const o: Parameters<typeof convertDisk>[3] = {
          onProgress: (done) => options.onProgress?.(base + Math.min(done, s.size), total, basename(s.file)),
        };
        if (options.signal) o.signal = options.signal;
        await diskCall(() => convertDisk(s.file, dst, { format: s.format }, o));
        base += s.size;
        for (const d of config.disks) if (d.kind === 'virtual' && d.slot === s.slot) d.path = relative(folder, dst);
      }
      await atomicWriteJson(join(folder, 'config.json'), config);
      await fs.mkdir(join(folder, 'checkpoints'));
      await atomicWriteJson(join(folder, 'checkpoints', 'tree.json'), { now: null, retained: [] });
      const manifest: ExportManifest = {
        berthExport: EXPORT_FORMAT_VERSION,
        vmId: config.id,
        name: config.name,
        exportedAt: new Date().toISOString(),
        config: 'config.json',
        disks: written.map((f) => join('disks', f)),
        checkpoints: [],
        checkpointStates: [],
        checkpointFirmwareVars: [],
      };
      // A Generation 2 VM's UEFI settings as they were at the checkpoint.
      const vars = checkpointVarsPath(entry.paths, record.id);
      if (await fs.stat(vars).catch(() => undefined)) {
        const exported = new VmPaths(folder).uefiVars;
        await copyPrivate(vars, exported);
        manifest.firmwareVars = relative(folder, exported);
      }
      await atomicWriteJson(join(folder, 'export.json'), manifest);
      options.onProgress?.(total, total, '');
      return { folder, manifest };
    } catch (err) {
      await fs.rm(folder, { recursive: true, force: true });
      throw err;
    }
  });
}
