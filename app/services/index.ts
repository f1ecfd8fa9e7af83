// The management services: the VM registry on disk, the lifecycle, the workers.
export { SHUT_DOWN_TIMEOUT_MS, VmManager, type ConsoleHandlers, type ConsoleSession } from './manager';
export { Registry, type VmEntry } from './registry';
export { ControlClient } from './control-client';
export { FileLock, withLock } from './lock';
export { atomicWriteFile, atomicWriteJson } from './fsutil';
export { defaultDataRoot, VmPaths } from './paths';
export { VmWatcher, type StatsBatch, type VmWatcherEvents } from './events';
export { BridgeHost, type BridgeHostOptions } from './bridge-host';
export { CheckpointService } from './checkpoints';
export { DiskService } from './disks';
export { HardwareService, type DiskSpec, type HardwarePatch } from './hardware';
export { ExportService, type ProgressOptions } from './export';
export { exportCheckpoint } from './export-checkpoint';
export { storageBackend, type OperationContext, type StorageBackend } from './bridge-storage';
export { HostActions } from './host-actions';
export { MoveService, parseMoveTarget, type MoveTarget } from './move';
export { DvdService, type DvdList } from './dvd';
export { FIRMWARE_DIRS, FIRMWARE_IMAGES, findFirmware } from './firmware';
