// Errors from the VMM addon and from argument checks before it, each with a stable code.

export const NATIVE_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'ADDON_NOT_BUILT',
  'HV_NOT_FOUND',
  'HV_PERMISSION_DENIED',
  'HV_API_VERSION',
  'HV_MISSING_CAPABILITY',
  'HV_OPEN',
  'HV_UNSUPPORTED_HOST',
  'HV_VM_CREATE',
  'HV_VCPU_CREATE',
  'HV_VCPU_STATE',
  'HV_VCPU_RUN',
  'HV_MEMORY',
  'HV_IRQ',
  'HV_CPUID',
  'GUEST_MEMORY_MAP',
  'GUEST_MEMORY_SIZE',
  'GUEST_MEMORY_RANGE',
  'BUS_OVERLAP',
  'BUS_RANGE',
  'VM_VCPU_COUNT',
  'VM_STATE',
  'BOOT_FILE_READ',
  'BOOT_UNKNOWN_FORMAT',
  'BOOT_BAD_IMAGE',
  'BOOT_KERNEL_TOO_BIG',
  'BOOT_INITRD_TOO_BIG',
  'BOOT_CMDLINE_TOO_LONG',
  'DISK_RANGE',
  'DISK_READ_ONLY',
  'DISK_EXISTS',
  'DISK_NOT_FOUND',
  'DISK_PERMISSION',
  'DISK_OPEN',
  'DISK_IO',
  'DISK_TRUNCATED',
  'DISK_NO_SPACE',
  'DISK_UNSUPPORTED',
  'DISK_UNKNOWN_FORMAT',
  'DISK_CHAIN_TOO_DEEP',
  'DISK_BACKING_LOOP',
  'DISK_CORRUPT',
  'DISK_BAD_HEADER',
  'DISK_LOG_REPLAY',
  'DISK_BACKING_NAME',
  'DISK_SHRINK_DATA',
  'DISK_BACKING_MISMATCH',
  'DISK_IN_USE',
  'DISK_CANCELLED',
  'DISK_SIZE',
  'DISK_SHRINK_TOO_SMALL',
  'DISK_SIZE_MISMATCH',
  'DISK_NO_BACKING',
  'NET_TAP_PERMISSION',
  'NET_TAP_UNAVAILABLE',
  'NET_TAP',
  'NET_BRIDGE_NOT_FOUND',
  'NET_PORT_FORWARD',
  'NET_SETUP',
  'DISK_FORMAT_MISMATCH',
  'VM_DEVICES',
  'INTERNAL',
] as const;

export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

export class NativeError extends Error {
  override readonly name = 'NativeError';
  constructor(
    readonly code: NativeErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function isKnownCode(code: unknown): code is NativeErrorCode {
  return typeof code === 'string' && (NATIVE_ERROR_CODES as readonly string[]).includes(code);
}

// Turns whatever the addon threw into a NativeError; unknown codes become INTERNAL so
// callers can switch over a closed set.
export function toNativeError(err: unknown): NativeError {
  if (err instanceof NativeError) return err;
  if (err instanceof Error) {
    const code: unknown = (err as Error & { code?: unknown }).code;
    return new NativeError(isKnownCode(code) ? code : 'INTERNAL', err.message);
  }
  return new NativeError('INTERNAL', String(err));
}
