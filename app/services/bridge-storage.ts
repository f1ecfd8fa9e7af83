// The bridge's StorageBackend over the storage services (disks, checkpoints, export and
// import), so the window's disk, checkpoint and export methods reach the same code as the
// CLI. Long work reports progress and stops on the operation's signal.
import { BerthError } from '../api';
import type { StorageBackend } from './bridge-host';
import { CheckpointService } from './checkpoints';
import { DiskService } from './disks';
import { ExportService } from './export';
import type { VmManager } from './manager';

export function storageBackend(manager: VmManager): Partial<StorageBackend> {
  const disks = new DiskService(manager);
  const checkpoints = new CheckpointService(manager);
  const exports = new ExportService(manager);
  return {
    hostDisks: async () => disks.hostDisks(),
    createDisk: async (r) => {
      const options: Parameters<DiskService['create']>[1] = { format: r.format };
      if (r.sizeBytes !== undefined) options.sizeBytes = r.sizeBytes;
      if (r.fixed !== undefined) options.fixed = r.fixed;
      if (r.parentPath !== undefined) options.parent = r.parentPath;
      await disks.create(r.path, options);
      return { path: r.path };
    },
    inspectDisk: (path) => disks.inspect(path),
    editDisk: async (r, ctx) => {
      const op = { onProgress: (done: number, total: number) => ctx.progress(done, total), signal: ctx.signal };
      switch (r.action) {
        case 'compact':
          await disks.compact(r.path, op);
          return { path: r.path };
        case 'expand':
        case 'shrink':
          await disks.resize(r.path, r.sizeBytes, op);
          return { path: r.path };
        case 'convert': {
          const target: { format: typeof r.format; fixed?: boolean } = { format: r.format };
          if (r.fixed !== undefined) target.fixed = r.fixed;
          await disks.convert(r.path, r.destination, target, op);
          return { path: r.destination };
        }
        case 'merge':
          if (r.into.kind === 'parent') {
            await disks.merge(r.path, { into: 'parent' }, op);
            return { path: r.path };
          }
          await disks.merge(r.path, { into: 'new', path: r.into.destination, format: r.into.format }, op);
          return { path: r.into.destination };
      }
    },
    listCheckpoints: (vm) => checkpoints.list(vm),
    createCheckpoint: (vm, name) => checkpoints.create(vm, name === undefined ? {} : { name }),
    applyCheckpoint: async (vm, id) => {
      await checkpoints.apply(vm, id);
    },
    renameCheckpoint: (vm, id, name) => checkpoints.rename(vm, id, name),
    deleteCheckpoint: async (vm, id, subtree, ctx) => {
      if (ctx.signal.aborted) throw new BerthError('CANCELLED', 'deleting the checkpoint was cancelled');
      await checkpoints.remove(vm, id, { subtree });
    },
    exportVm: async (vm, folder, checkpointId, ctx) => {
      if (checkpointId !== undefined) {
        throw new BerthError('NOT_IMPLEMENTED', 'exporting a single checkpoint is not available yet; export the VM');
      }
      const { folder: written } = await exports.exportVm(vm, folder, {
        onProgress: (done, total) => ctx.progress(done, total),
        signal: ctx.signal,
      });
      return { folder: written };
    },
    importVm: async (r, ctx) => {
      const options: Parameters<ExportService['importVm']>[2] = {
        onProgress: (done, total) => ctx.progress(done, total),
        signal: ctx.signal,
      };
      if (r.name !== undefined) options.name = r.name;
      const details = await exports.importVm(r.path, r.mode, options);
      const { config, folder, ...summary } = details;
      void config;
      void folder;
      return summary;
    },
  };
}
