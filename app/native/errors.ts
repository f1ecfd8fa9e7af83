// Errors from the VMM addon and from argument checks before it, each with a stable code.

// The codes are part of the contract (app/api/errors.ts), defined there once.
import { NATIVE_ERROR_CODES, type NativeErrorCode } from '../api/errors';

export { NATIVE_ERROR_CODES, type NativeErrorCode };

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
