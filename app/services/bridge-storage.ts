// The storage side of the bridge: VM creation with new disks, hardware lists, disks,
// checkpoints, export and import, over the same services the CLI uses. StorageBackend is
// complete (no optional member), so a window method without a service cannot compile.
// Long work reports progress and stops on the operation's signal.
import {
  BerthError,
  type DiskAttachment,
  type MoveResult,
  type NetworkAdapter,
  type NewVmRequest,
  type VmDetails,
  type VmSummary,
} from '../api';
import type {
  CheckpointList,
  CheckpointSummary,
  DiskCreateRequest,
  DiskEditRequest,
  DiskInspection,
  HostDisk,
  ImportRequest,
  NewDiskRequest,
} from '../api/bridge';
import { CheckpointService } from './checkpoints';
import { DiskService } from './disks';
import { ExportService } from './export';
import { exportCheckpoint } from './export-checkpoint';
import { HardwareService } from './hardware';
import type { VmManager } from './manager';
import { MoveService } from './move';

export interface OperationContext {
  // Units done and in all; reported to the windows at most every 100 ms (and at the end).
  progress(done: number, total: number): void;
  signal: AbortSignal;
}

export interface StorageBackend {
  // Creates a VM with its new disks in one step (nothing is left when a disk fails).
  createVm(config: NewVmRequest, newDisks: NewDiskRequest[]): Promise<VmDetails>;
  // VM Settings: replaces the VM's disk and network lists (only while it is Off).
  updateHardware(vm: string, patch: { disks?: DiskAttachment[]; network?: NetworkAdapter[] }): Promise<void>;
  hostDisks(): Promise<HostDisk[]>;
  createDisk(request: DiskCreateRequest, ctx: OperationContext): Promise<{ path: string }>;
  inspectDisk(path: string): Promise<DiskInspection>;
  minShrinkSize(path: string): Promise<number>;
  editDisk(request: DiskEditRequest, ctx: OperationContext): Promise<{ path: string }>;
  listCheckpoints(vm: string): Promise<CheckpointList>;
  createCheckpoint(vm: string, name?: string): Promise<CheckpointSummary>;
  applyCheckpoint(vm: string, checkpointId: string): Promise<void>;
  renameCheckpoint(vm: string, checkpointId: string, name: string): Promise<CheckpointSummary>;
  deleteCheckpoint(vm: string, checkpointId: string, subtree: boolean, ctx: OperationContext): Promise<void>;
  // checkpointId: export that checkpoint as a new VM (its disks flattened at that point).
  exportVm(
    vm: string,
    folder: string,
    checkpointId: string | undefined,
    ctx: OperationContext,
  ): Promise<{ folder: string }>;
  importVm(request: ImportRequest, ctx: OperationContext): Promise<VmSummary>;
  // Quick migration to another data root (a folder or an SSH target).
  moveVm(vm: string, destination: string, ctx: OperationContext): Promise<MoveResult>;
}

export function storageBackend(manager: VmManager): StorageBackend {
  const disks = new DiskService(manager);
  const hardware = new HardwareService(manager);
  const checkpoints = new CheckpointService(manager);
  const exports = new ExportService(manager);
  const moves = new MoveService(manager);
  const progress = (ctx: OperationContext) => ({
    onProgress: (done: number, total: number) => ctx.progress(done, total),
    signal: ctx.signal,
  });
  return {
    createVm: (config, newDisks) =>
      hardware.createVm(
        config,
        newDisks.map((d) => ({ kind: 'new', name: d.name, format: d.format, sizeBytes: d.sizeBytes })),
      ),
    updateHardware: async (vm, patch) => {
      await hardware.replace(vm, patch);
    },
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
    minShrinkSize: (path) => disks.minShrinkSize(path),
    editDisk: async (r, ctx) => {
      const op = progress(ctx);
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
      const { folder: written } =
        checkpointId === undefined
          ? await exports.exportVm(vm, folder, progress(ctx))
          : await exportCheckpoint(manager, vm, checkpointId, folder, progress(ctx));
      return { folder: written };
    },
    importVm: async (r, ctx) => {
      const options: Parameters<ExportService['importVm']>[2] = progress(ctx);
      if (r.name !== undefined) options.name = r.name;
      const details = await exports.importVm(r.path, r.mode, options);
      const { config, folder, ...summary } = details;
      void config;
      void folder;
      return summary;
    },
    moveVm: (vm, destination, ctx) => moves.move(vm, destination, progress(ctx)),
  };
}
