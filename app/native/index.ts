// The VMM addon, typed: the only way the rest of Berth reaches native code.
export { probe, validateConfig, Machine } from './machine';
export type {
  Capabilities,
  ExitEvent,
  ExitReason,
  MachineConfig,
  MachineEvent,
  MachineState,
  MachineStats,
} from './machine';
export {
  DISK_FORMATS,
  createDisk,
  inspectDisk,
  checkDisk,
  convertDisk,
  expandDisk,
  minShrinkSize,
  shrinkDisk,
  compactDisk,
  mergeDisk,
  reconnectDisk,
} from './disk';
export type {
  ConvertDiskOptions,
  CreateDiskOptions,
  DiskCheckReport,
  DiskFormat,
  DiskImageInfo,
  DiskInspection,
  DiskTargetOptions,
  MergeTarget,
  OperationOptions,
} from './disk';
export type { NicConfig, PortForward } from './nics';
export { NativeError, NATIVE_ERROR_CODES, type NativeErrorCode } from './errors';
export { addonPath } from './addon';
export { vmmPath } from './vmm';
