// The error shape every service, the worker protocol and the CLI's --json output share, and
// the one list of codes: the services' own and the native layer's (a native failure keeps
// its code all the way to the window and `--json`, e.g. DISK_CORRUPT).
import { z } from 'zod';

// Every code native/ throws (berth::Error, SystemError, to_js_error). `npm run lint`
// (test/tools/check-error-codes.mjs) fails when native/ throws a code missing here, so none
// reaches JavaScript as INTERNAL.
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
  'HV_IRQFD',
  'HV_IOEVENTFD',
  'HV_CPUID',
  'GUEST_MEMORY_MAP',
  'GUEST_MEMORY_SIZE',
  'GUEST_MEMORY_RANGE',
  'BUS_OVERLAP',
  'BUS_RANGE',
  'VM_VCPU_COUNT',
  'VM_STATE',
  'VM_DEVICES',
  'BOOT_FILE_READ',
  'BOOT_UNKNOWN_FORMAT',
  'BOOT_BAD_IMAGE',
  'BOOT_KERNEL_TOO_BIG',
  'BOOT_INITRD_TOO_BIG',
  'BOOT_CMDLINE_TOO_LONG',
  'BOOT_ACPI',
  'FIRMWARE_NOT_FOUND',
  'FIRMWARE_INVALID',
  'FIRMWARE_VARS_MISMATCH',
  'BOOT_VCPU_COUNT',
  'VIRTIO_SETUP',
  'DISK_RANGE',
  'DISK_READ_ONLY',
  'DISK_EXISTS',
  'DISK_NOT_FOUND',
  'DISK_PERMISSION',
  'DVD_MEDIA_NOT_FOUND',
  'DVD_MEDIA_INVALID',
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
  'DISK_FORMAT_MISMATCH',
  'DISK_QUEUE_FULL',
  'NET_TAP_PERMISSION',
  'NET_TAP_UNAVAILABLE',
  'NET_TAP',
  'NET_BRIDGE_NOT_FOUND',
  'NET_PORT_FORWARD',
  'NET_SETUP',
  // PCI: a function, BAR, capability or bus slot the machine set up wrongly (a programming
  // error in the platform, never the guest's doing).
  'PCI_FUNCTION_INVALID',
  'PCI_BAR_INVALID',
  'DISPLAY_ROM_INVALID',
  'DISPLAY_MEMORY',
  'SCREENSHOT_WRITE',
  'PCI_CAPABILITY_INVALID',
  'PCI_SLOT_INVALID',
  'PCI_SLOT_IN_USE',
  // Firmware devices: a fw_cfg item or file the machine cannot offer (bad key, name, size),
  // an ACPI table-loader command the firmware would refuse, a flash file that is missing,
  // of the wrong size, or a variable store that does not fit the code image.
  'FW_CFG_ITEM',
  'FW_CFG_FILE',
  'ACPI_LOADER',
  'FLASH_FILE',
  'FLASH_SIZE',
  'FLASH_LAYOUT',
  // Saved state: a damaged or truncated file, a format version this Berth does not read, a
  // host CPU without features the saved vCPUs used, a spec that does not describe the saved
  // machine, a file that could not be written.
  'STATE_INVALID',
  'STATE_VERSION',
  'STATE_CPU_MISMATCH',
  'STATE_MACHINE_MISMATCH',
  'STATE_IO',
  // A socket the worker serves (control, display) cannot be made (common/unix_socket).
  'START_FAILED',
  'INTERNAL',
] as const;
export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

const SERVICE_ERROR_CODES = [
  'INVALID_CONFIG', // a configuration or request failed validation (message names the field)
  'UNSUPPORTED_VERSION', // a configuration or protocol version this Berth does not understand
  'NOT_FOUND', // no VM with that name or id
  'AMBIGUOUS', // a name or id prefix matches several VMs
  'NAME_IN_USE',
  'INVALID_STATE', // the lifecycle does not allow the operation now ("cannot pause 'x': it is Off")
  'UNSUPPORTED', // reserved features (dynamic memory)
  // A DVD drive's ISO image is missing (the message names the drive and the path), or is
  // not an ISO 9660 / UDF image. The services check before the worker starts and before a
  // running VM's media changes; the worker answers the same codes to op 'media'.
  'DVD_MEDIA_NOT_FOUND',
  'DVD_MEDIA_INVALID',
  'SHUTDOWN_TIMEOUT', // the guest did not power off in time after the ACPI power button (it runs on)
  'SERVICE_MANAGER', // systemctl --user refused to (en|dis)able Berth's autostart unit (the message says how to)
  'BUSY', // another process holds the VM's lock for too long
  'START_FAILED', // the worker could not create or start the VM
  'WORKER_UNREACHABLE', // the worker process does not answer on its control socket
  'PROTOCOL', // a malformed or out-of-order control-socket message
  'IO', // the file system refused
  'IN_USE', // a disk or device another VM, checkpoint or the host uses (the message says which)
  'CONFLICT', // an import whose id or name is already registered
  'CANCELLED', // the user cancelled a long operation
  'USAGE', // command-line usage
  'FORBIDDEN', // berth serve refused the request (token, Origin, Host)
  'UNKNOWN_METHOD', // a bridge request names a method the contract does not have
  'METHOD_NOT_ALLOWED', // berth serve: the path does not take that HTTP method
  'TOO_LARGE', // berth serve: the request body is over the limit
  'INTERNAL',
] as const;

export const ERROR_CODES = [
  ...SERVICE_ERROR_CODES,
  ...NATIVE_ERROR_CODES.filter((c) => !(SERVICE_ERROR_CODES as readonly string[]).includes(c)),
] as unknown as readonly [ServiceCode | NativeErrorCode, ...(ServiceCode | NativeErrorCode)[]];
type ServiceCode = (typeof SERVICE_ERROR_CODES)[number];
export const ErrorCode = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorBody = z.strictObject({ code: ErrorCode, message: z.string() });
export type ErrorBody = z.infer<typeof ErrorBody>;

// Thrown by app/services; carries a stable code and a message that says what to do.
export class BerthError extends Error {
  override readonly name = 'BerthError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}

export function toErrorBody(err: unknown): ErrorBody {
  if (err instanceof BerthError) return err.toJSON();
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    if (isErrorCode(code)) return { code, message: err.message };
    return { code: 'INTERNAL', message: err.message };
  }
  return { code: 'INTERNAL', message: String(err) };
}
