// Notices a lab VM that broke down while its command runs, so the run ends within a minute
// instead of at the caller's silence limit. The lab's init prints a heartbeat on its console
// every BEAT_SECONDS; a lab whose heartbeat stops has frozen (its emulated CPUs no longer
// make progress), and a lab kernel that reports a fatal fault will not finish the command.
import { closeSync, openSync, readSync } from 'node:fs';

export const BEAT_SECONDS = 5;
// Twelve missed beats: far beyond what a loaded host delays a sleeping shell loop by.
export const BEAT_LIMIT_SECONDS = 60;
const POLL_MS = 2000;

// Kernel messages after which the lab kernel cannot be trusted to finish the command.
const FATAL =
  /Kernel panic|Fatal exception|general protection fault|Oops:|double fault|kernel stack overflow|BUG: unable to handle|kthread starved for/;

export interface LabWatchdog {
  stop(): void;
}

export interface WatchdogTiming {
  beatLimitMs: number;
  pollMs: number;
}

// Calls onBreakdown once with the reason when the console at `consoleLog` shows a fatal
// kernel message, or when heartbeats started and then stopped.
export function watchLabConsole(
  consoleLog: string,
  onBreakdown: (reason: string) => void,
  timing: WatchdogTiming = { beatLimitMs: BEAT_LIMIT_SECONDS * 1000, pollMs: POLL_MS },
): LabWatchdog {
  let offset = 0;
  let partial = '';
  let lastBeat: number | undefined;
  let fatal: string | undefined;
  let fatalSeen = 0;
  const readNew = (): string => {
    let fd: number;
    try {
      fd = openSync(consoleLog, 'r');
    } catch {
      return '';
    }
    try {
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        chunks.push(Buffer.from(buf.subarray(0, n)));
      }
      return Buffer.concat(chunks).toString('utf8');
    } finally {
      closeSync(fd);
    }
  };
  const timer = setInterval(() => {
    const text = partial + readNew();
    const end = text.lastIndexOf('\n') + 1;
    partial = text.slice(end);
    for (const line of text.slice(0, end).split('\n')) {
      if (line.startsWith('BERTH-LAB-BEAT')) lastBeat = Date.now();
      else if (fatal === undefined && FATAL.test(line)) {
        fatal = line.replace(/\r/g, '').trim();
        fatalSeen = Date.now();
      }
    }
    // A fatal message is followed by its trace: give it a poll or two to reach the log.
    if (fatal !== undefined && Date.now() - fatalSeen >= timing.pollMs * 2) {
      finish(`its kernel reported "${fatal}"`);
    } else if (lastBeat !== undefined && Date.now() - lastBeat > timing.beatLimitMs) {
      finish(`it stopped answering (no heartbeat for ${timing.beatLimitMs / 1000} s)`);
    }
  }, timing.pollMs);
  const finish = (reason: string): void => {
    clearInterval(timer);
    onBreakdown(reason);
  };
  return { stop: () => clearInterval(timer) };
}
