// File helpers: atomic replacement, tolerant reads, process liveness.
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

// Replaces `path` atomically: a temp file in the same folder, written and fsynced, renamed
// over the target, then the folder fsynced so the rename itself survives a crash. Readers
// see the old or the new content, never a mix.
export async function atomicWriteFile(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function atomicWriteJson(path: string, value: unknown): Promise<void> {
  await atomicWriteFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

function isNoEntry(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

// The parsed JSON, or undefined if the file does not exist.
export async function readJsonIfExists(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    if (isNoEntry(err)) return undefined;
    throw err;
  }
  return JSON.parse(text) as unknown;
}

export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    if (isNoEntry(err)) return undefined;
    throw err;
  }
}

export async function removeIfExists(path: string): Promise<void> {
  await fs.rm(path, { force: true });
}

// True if a process with this pid exists (EPERM: it exists but belongs to someone else).
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// The process's start time in clock ticks since boot (Linux), to tell a reused pid from
// the process that wrote a pid file; null where /proc is not available.
export function processStartTime(pid: number): string | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

// True if the process that recorded (pid, procStart) is still the one running.
export function sameProcessAlive(pid: number, procStart: string | null): boolean {
  if (!processExists(pid)) return false;
  if (procStart === null) return true;
  const now = processStartTime(pid);
  return now === null || now === procStart;
}
