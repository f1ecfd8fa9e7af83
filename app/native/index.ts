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
export { NativeError, NATIVE_ERROR_CODES, type NativeErrorCode } from './errors';
export { addonPath } from './addon';
