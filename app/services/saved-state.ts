// Saved state (Hyper-V's Save): the worker writes the VM's memory and device state to
// <vm>/state/saved.bstate (op save) and ends; a VM with that file and no worker is Saved.
// Starting a Saved VM hands the worker the file (WorkerSpec.restoreFrom); once the VM runs
// the file is deleted. Delete Saved State discards it (the VM is Off and boots afresh).
// Hardware changes are refused while a VM is Saved: the state describes the machine it was
// saved on.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertTransition,
  BerthError,
  SavedStateInfo,
  STATE_FILES,
  type SaveResult,
  type SavedStateSummary,
  type VmState,
  type VmSummary,
} from '../api';
import { atomicWriteJson, fsyncDir, readJsonIfExists, removeIfExists, sameProcessAlive } from './fsutil';
import type { VmManager } from './manager';
import type { VmPaths } from './paths';

// How long the worker may take to end after it answered the save (its state is on disk).
const END_AFTER_SAVE_MS = 30_000;

export function savedStatePath(paths: VmPaths): string {
  return join(paths.state, STATE_FILES.saved);
}

function savedInfoPath(paths: VmPaths): string {
  return join(paths.state, STATE_FILES.savedInfo);
}

// Every file of a Saved VM's state (for a removal in a journal).
export function savedStateFiles(paths: VmPaths): string[] {
  return [savedStatePath(paths), savedInfoPath(paths)];
}

// A checkpoint's own folder (checkpoints/<id>/) and its memory state file.
export function checkpointStateFolder(paths: VmPaths, checkpointId: string): string {
  return join(paths.checkpoints, checkpointId);
}

export function checkpointStatePath(paths: VmPaths, checkpointId: string): string {
  return join(paths.checkpoints, checkpointId, STATE_FILES.checkpoint);
}

// The bytes a file occupies on disk (a state file is sparse where guest memory was zero).
export async function allocatedBytes(path: string): Promise<number | null> {
  const st = await fs.stat(path).catch(() => undefined);
  return st?.isFile() ? st.blocks * 512 : null;
}

// The Saved VM's state file, or undefined when there is none.
export async function readSavedState(paths: VmPaths): Promise<SavedStateSummary | undefined> {
  const path = savedStatePath(paths);
  const st = await fs.stat(path).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const summary: SavedStateSummary = { path, stateBytes: st.blocks * 512, savedAt: st.mtime.toISOString() };
  const info = SavedStateInfo.safeParse(await readJsonIfExists(savedInfoPath(paths)).catch(() => undefined));
  if (info.success) {
    summary.savedAt = info.data.savedAt;
    summary.memoryBytes = info.data.memoryBytes;
    summary.pauseMs = info.data.pauseMs;
    summary.totalMs = info.data.totalMs;
  }
  return summary;
}

// Removes the saved state (the VM becomes Off).
export async function discardSavedState(paths: VmPaths): Promise<void> {
  await removeIfExists(savedStatePath(paths));
  await removeIfExists(savedInfoPath(paths));
  await fsyncDir(paths.state).catch(() => undefined);
}

// What a failed resume tells the user about the state it kept.
export function keptStateHint(name: string, paths: VmPaths): string {
  return (
    `its saved state was kept (${savedStatePath(paths)}): start it again once the cause is fixed, or delete ` +
    `the saved state ('berth vm delete-saved-state ${name}', or Delete Saved State in the window) to boot it afresh`
  );
}

// Why a change that needs the VM Off is refused in this state; action names the VM
// ("change the memory of 'web1'").
export function needsOffMessage(action: string, name: string, state: VmState): string {
  if (state === 'Saved') {
    return (
      `cannot ${action} while it is Saved: its saved state belongs to the hardware it was saved with; ` +
      `delete the saved state first ('berth vm delete-saved-state ${name}'), or start it and shut it down`
    );
  }
  return `cannot ${action} while it is ${state}; turn it off first`;
}

// Save: asks the worker to write the VM's state and waits until the worker has ended.
export async function saveVm(manager: VmManager, ref: string): Promise<VmSummary> {
  const resolved = await manager.registry.resolve(ref);
  return manager.registry.withVmLock(resolved, 'save VM', async () => {
    const { entry, client } = await manager.running(ref, 'save');
    const name = entry.config.name;
    const p = entry.paths;
    const pid = client.info.pid;
    const path = savedStatePath(p);
    await fs.mkdir(p.state, { recursive: true, mode: 0o700 });
    await removeIfExists(savedInfoPath(p));
    const closed = new Promise<void>((resolve) => client.onClose(() => resolve()));
    const savedAt = new Date().toISOString();
    let result: SaveResult;
    try {
      result = await client.request({ op: 'save', path });
    } catch (err) {
      client.close();
      const { state } = await manager.state(entry.id).catch(() => ({ state: 'Failed' as VmState }));
      const body = err instanceof BerthError ? err : new BerthError('INTERNAL', String(err));
      throw new BerthError(
        body.code,
        `cannot save '${name}': ${body.message}; it is ${state}` +
          (state === 'Running' || state === 'Paused' ? ' (nothing was saved)' : ''),
      );
    }
    const info: SavedStateInfo = {
      savedAt,
      memoryBytes: result.memoryBytes,
      pauseMs: result.pauseMs,
      totalMs: result.totalMs,
    };
    await atomicWriteJson(savedInfoPath(p), info);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, END_AFTER_SAVE_MS)))]);
    clearTimeout(timer);
    client.close();
    const deadline = Date.now() + END_AFTER_SAVE_MS;
    while (sameProcessAlive(pid, null) && Date.now() < deadline) await sleep(20);
    const summary = await manager.state(entry.id);
    if (summary.state !== 'Saved') {
      throw new BerthError(
        'INTERNAL',
        `the worker of '${name}' answered the save but '${name}' is ${summary.state}` +
          `${summary.stateReason ? ` (${summary.stateReason})` : ''}; see ${p.runFile('log')}`,
      );
    }
    return summary;
  });
}

// Delete Saved State: the VM becomes Off; its next start boots afresh.
export async function deleteSavedState(manager: VmManager, ref: string): Promise<VmSummary> {
  const entry = await manager.registry.resolve(ref);
  return manager.registry.withVmLock(entry, 'delete the saved state', async () => {
    const { state } = await manager.state(entry.id);
    assertTransition(entry.config.name, state, 'delete-saved-state');
    await discardSavedState(entry.paths);
    return manager.state(entry.id);
  });
}
