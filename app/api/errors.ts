// The error shape every service, the worker protocol and the CLI's --json output share.
import { z } from 'zod';

export const ERROR_CODES = [
  'INVALID_CONFIG', // a configuration or request failed validation (message names the field)
  'UNSUPPORTED_VERSION', // a configuration or protocol version this Berth does not understand
  'NOT_FOUND', // no VM with that name or id
  'AMBIGUOUS', // a name or id prefix matches several VMs
  'NAME_IN_USE',
  'INVALID_STATE', // the lifecycle does not allow the operation now ("cannot pause 'x': it is Off")
  'UNSUPPORTED', // reserved features (firmware boot, save, guest shutdown without a power button)
  'BUSY', // another process holds the VM's lock for too long
  'START_FAILED', // the worker could not create or start the VM
  'WORKER_UNREACHABLE', // the worker process does not answer on its control socket
  'PROTOCOL', // a malformed or out-of-order control-socket message
  'IO', // the file system refused
  'IN_USE', // a disk or device another VM, checkpoint or the host uses (the message says which)
  'CONFLICT', // an import whose id or name is already registered
  'CANCELLED', // the user cancelled a long operation
  'DISK', // the disk layer refused (the native code is in the message)
  'USAGE', // command-line usage
  'NOT_IMPLEMENTED', // a bridge method whose service is not built yet
  'FORBIDDEN', // berth serve refused the request (token, Origin, Host)
  'INTERNAL',
] as const;
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

export function toErrorBody(err: unknown): ErrorBody {
  if (err instanceof BerthError) return err.toJSON();
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    if (typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code)) {
      return { code: code as ErrorCode, message: err.message };
    }
    return { code: 'INTERNAL', message: err.message };
  }
  return { code: 'INTERNAL', message: String(err) };
}
