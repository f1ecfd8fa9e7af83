// Named steps of the crash-safe checkpoint operations (checkpoints.ts), where the
// crash-safety specs stop a process as a power cut or `kill -9` would. The product never
// stops there: only a hook installed in code does anything (the specs' own entry point,
// test/support/crash-cli.ts, installs one), so no setting or environment variable of a
// user's can reach it.
export type CrashHook = (step: string) => void;

let hook: CrashHook | undefined;

export function installCrashHook(h: CrashHook | undefined): void {
  hook = h;
}

export function crashPoint(step: string): void {
  hook?.(step);
}
