// Fault injection for the crash-safety tests: BERTH_TEST_CRASH_AT=<step name> makes the
// process kill itself with SIGKILL when it reaches that step (no cleanup, no flush), as a
// power cut or `kill -9` would. Unset in normal use, where this does nothing.
export const CRASH_ENV = 'BERTH_TEST_CRASH_AT';

export function crashPoint(step: string): void {
  if (process.env[CRASH_ENV] === step) process.kill(process.pid, 'SIGKILL');
}
