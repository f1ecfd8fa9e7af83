// Advisory locks between Berth processes (the window, the CLI, a second CLI).
//
// Choice: an O_EXCL lock file holding {pid, procStart, token, owner, at}, not flock(2)
// (Node has no flock, and a native helper for it would put the addon in every CLI call).
// A lock whose holder is gone (pid not running, or a reused pid with another start time)
// is stale and is broken. Breaking is itself guarded by a second O_EXCL file (<lock>.break)
// and re-checks the token, so two processes that find the same stale lock cannot delete a
// fresh one another process just took. Release removes the file only if it still holds
// our token. Holders keep locks for milliseconds (a config write, a worker spawn), so
// waiters poll with a short randomized backoff.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { BerthError } from '../api';
import { processStartTime, sameProcessAlive } from './fsutil';

interface LockRecord {
  pid: number;
  procStart: string | null;
  token: string;
  owner: string;
  at: string;
}

// A lock file that cannot be parsed is a holder between open() and write(), unless it is
// older than this.
const UNREADABLE_GRACE_MS = 5_000;

export interface LockOptions {
  // What the lock protects, for the BUSY message ("VM 'web1'").
  what: string;
  timeoutMs?: number;
}

async function readRecord(path: string): Promise<{ record?: LockRecord; mtimeMs: number } | undefined> {
  try {
    const [text, stat] = await Promise.all([fs.readFile(path, 'utf8'), fs.stat(path)]);
    try {
      const record = JSON.parse(text) as LockRecord;
      if (typeof record.pid === 'number' && typeof record.token === 'string') return { record, mtimeMs: stat.mtimeMs };
    } catch {
      // partially written
    }
    return { mtimeMs: stat.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function tryCreate(path: string, record: LockRecord): Promise<boolean> {
  let handle;
  try {
    handle = await fs.open(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(JSON.stringify(record));
  } finally {
    await handle.close();
  }
  return true;
}

// Removes the lock at `path` if it still holds `token`, guarded by <path>.break.
async function breakStale(path: string, token: string | undefined, mtimeMs: number): Promise<void> {
  const breaker = `${path}.break`;
  const mine: LockRecord = {
    pid: process.pid,
    procStart: processStartTime(process.pid),
    token: randomBytes(8).toString('hex'),
    owner: 'lock breaker',
    at: new Date().toISOString(),
  };
  if (!(await tryCreate(breaker, mine))) {
    // Someone else is breaking it; a breaker left by a crashed process is removed by age.
    const other = await readRecord(breaker);
    if (other && Date.now() - other.mtimeMs > UNREADABLE_GRACE_MS) await fs.rm(breaker, { force: true });
    return;
  }
  try {
    const now = await readRecord(path);
    if (!now) return;
    const same = token !== undefined ? now.record?.token === token : !now.record && now.mtimeMs === mtimeMs;
    if (same) await fs.rm(path, { force: true });
  } finally {
    await fs.rm(breaker, { force: true });
  }
}

export class FileLock {
  private constructor(
    readonly path: string,
    private readonly token: string,
  ) {}

  static async acquire(path: string, owner: string, options: LockOptions): Promise<FileLock> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    const token = randomBytes(8).toString('hex');
    const record: LockRecord = {
      pid: process.pid,
      procStart: processStartTime(process.pid),
      token,
      owner,
      at: new Date().toISOString(),
    };
    let delay = 2;
    for (;;) {
      if (await tryCreate(path, { ...record, at: new Date().toISOString() })) return new FileLock(path, token);
      const held = await readRecord(path);
      if (held) {
        const { record: holder, mtimeMs } = held;
        const stale = holder
          ? !sameProcessAlive(holder.pid, holder.procStart)
          : Date.now() - mtimeMs > UNREADABLE_GRACE_MS;
        if (stale) {
          await breakStale(path, holder?.token, mtimeMs);
          continue;
        }
        if (Date.now() >= deadline) {
          const who = holder ? `process ${holder.pid} (${holder.owner}, since ${holder.at})` : 'another process';
          throw new BerthError(
            'BUSY',
            `${options.what} is busy: ${who} holds its lock (${path}); try again when it has finished`,
          );
        }
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 50);
    }
  }

  async release(): Promise<void> {
    const held = await readRecord(this.path);
    if (held?.record?.token === this.token) await fs.rm(this.path, { force: true });
  }
}

export async function withLock<T>(path: string, owner: string, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  const lock = await FileLock.acquire(path, owner, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
