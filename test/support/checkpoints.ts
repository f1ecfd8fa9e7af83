// The checkpoint specs' tools, through the `berth` command line: a VM with a qcow2 disk,
// the current top of its chain, qemu-io writes and reads, and a whole-tree consistency check
// (parents and Now exist, no journal left, qemu-img check passes on every disk file).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Json } from './cli';

export function checkpointKit(
  ok: (...args: string[]) => Promise<Json>,
  kernel: () => string,
): {
  newVm: (name: string, cmdline?: string) => Promise<{ id: string; folder: string; disk: string }>;
  topOf: (name: string) => Promise<string>;
  qemuWrite: (file: string, pattern: number, offset: number) => void;
  qemuReads: (file: string, pattern: number, offset: number) => boolean;
  assertConsistent: (name: string, folder: string) => Promise<Json>;
} {
  const newVm = async (name: string, cmdline = 'hello'): Promise<{ id: string; folder: string; disk: string }> => {
    const vm = await ok(
      'vm',
      'new',
      '--name',
      name,
      '--kernel',
      kernel(),
      '--memory',
      '32',
      '--cmdline',
      cmdline,
      '--test-exit-port',
      '--disk',
      'new:4M:qcow2',
    );
    const config = vm['config'] as { disks: { path: string }[] };
    return { id: vm['id'] as string, folder: vm['folder'] as string, disk: config.disks[0]?.path ?? '' };
  };
  const topOf = async (name: string): Promise<string> => {
    const vm = await ok('vm', 'show', name);
    return (vm['config'] as { disks: { path: string }[] }).disks[0]?.path ?? '';
  };
  const qemuWrite = (file: string, pattern: number, offset: number): void => {
    execFileSync('qemu-io', ['-c', `write -P ${pattern} ${offset} 64k`, file], { stdio: 'pipe' });
  };
  const qemuReads = (file: string, pattern: number, offset: number): boolean => {
    try {
      const out = execFileSync('qemu-io', ['-r', '-c', `read -P ${pattern} ${offset} 64k`, file], {
        stdio: 'pipe',
      }).toString();
      return !/failed|error/i.test(out);
    } catch {
      return false;
    }
  };
  const assertConsistent = async (name: string, folder: string): Promise<Json> => {
    const list = await ok('checkpoint', 'list', name);
    assert.ok(!existsSync(join(folder, 'checkpoints', 'journal.json')), 'the journal was finished');
    const cps = list['checkpoints'] as { id: string; parent: string | null; disks: { path: string }[] }[];
    const ids = new Set(cps.map((c) => c.id));
    for (const c of cps) {
      if (c.parent !== null) assert.ok(ids.has(c.parent), `parent of ${c.id} exists`);
      for (const d of c.disks) assert.ok(existsSync(d.path), `checkpoint file ${d.path} exists`);
    }
    if (list['now'] !== null) assert.ok(ids.has(list['now'] as string), 'Now is a checkpoint');
    assert.ok(existsSync(await topOf(name)), 'the current disk exists');
    for (const f of readdirSync(join(folder, 'disks'))) {
      execFileSync('qemu-img', ['check', join(folder, 'disks', f)], { stdio: 'pipe' });
    }
    return list;
  };

  return { newVm, topOf, qemuWrite, qemuReads, assertConsistent };
}
