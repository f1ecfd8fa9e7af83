// A standard checkpoint of a running (or paused) VM, as Hyper-V takes one: the VM's memory
// and device state with its disks at the same moment.
//
// 1. Under the VM's lock, the overlays are planned as for a VM that is off, and a 'prepare'
//    journal written that lists what will be created (the overlays, the checkpoint's
//    folder), the commit's writes (record, configuration on the overlays, tree) and the
//    state file (checkpoints/<id>/memory.bstate).
// 2. The overlays are created; the configuration still names the current files.
// 3. The worker (op checkpoint) pauses the VM, writes the state file, flushes, reopens each
//    disk on its overlay and resumes it if it was running. A refusal leaves the VM on its
//    current files: the overlays and folder are removed.
// 4. The journal becomes 'commit' and is carried out.
// A crash between 3 and 4 is rolled forward by recovery, because the state file exists
// (the worker writes it atomically, before it switches disks); before 3 it is rolled back.
import { promises as fs } from 'node:fs';

import { BerthError, WorkerSpec, type CheckpointSummary, type VmConfig, migrateConfig } from '../api';
import { CheckpointService, readTree, summarize, type CreateOptions, type Journal } from './checkpoints';
import { crashPoint } from './crash';
import { readJsonIfExists } from './fsutil';
import type { VmManager } from './manager';
import { checkpointStateFolder, checkpointStatePath } from './saved-state';

// Production checkpoints of a running VM need the guest's cooperation (no channel for it
// yet): refused, or taken as standard ones when the VM's setting allows.
function checkpointType(config: VmConfig): 'standard' {
  if (config.checkpoints.type === 'disabled') {
    throw new BerthError(
      'INVALID_STATE',
      `checkpoints are disabled for '${config.name}'; enable them with 'berth vm set ${config.name} --checkpoint-type standard'`,
    );
  }
  if (config.checkpoints.type === 'production' && !config.checkpoints.standardFallback) {
    throw new BerthError(
      'INVALID_STATE',
      `cannot take a checkpoint of '${config.name}' while it runs: a production checkpoint of a running VM needs ` +
        "the guest's cooperation to make its disks consistent, which Berth has no channel to the guest for, and " +
        `creating a standard checkpoint instead is turned off for this VM; turn the VM off first, or allow the ` +
        `fallback (berth vm set '${config.name}' --standard-checkpoint-fallback on)`,
    );
  }
  return 'standard';
}

export async function createLiveCheckpoint(
  manager: VmManager,
  vmId: string,
  options: CreateOptions,
): Promise<CheckpointSummary> {
  const resolved = await manager.registry.resolve(vmId);
  return manager.registry.withVmLock(resolved, 'take a checkpoint', async () => {
    const paths = resolved.paths;
    await fs.mkdir(paths.checkpoints, { recursive: true, mode: 0o700 });
    await CheckpointService.recover(paths);
    const config = migrateConfig(JSON.parse(await fs.readFile(paths.config, 'utf8')));
    const plan = await CheckpointService.plan(paths, config, options, checkpointType(config));
    plan.record.type = 'standard';
    plan.record.holdsMemory = true;
    // The disks in the order the worker has them (its spec), each on its new top file; a
    // passthrough disk (excluded from the checkpoint) stays on its device.
    const spec = WorkerSpec.safeParse(await readJsonIfExists(paths.runFile('spec')).catch(() => undefined));
    const bySlot = [...config.disks].sort((a, b) => a.slot - b.slot);
    if (!spec.success || spec.data.disks.length !== bySlot.length) {
      throw new BerthError(
        'INVALID_STATE',
        `cannot take a checkpoint of '${config.name}': its worker's machine (${paths.runFile('spec')}) does not ` +
          'match its configuration; turn it off and take the checkpoint then',
      );
    }
    const specDisks = spec.data.disks;
    const disks = bySlot.map((d, i) => {
      const overlay = plan.overlays.find((o) => o.slot === d.slot)?.overlay;
      return d.kind === 'virtual' && overlay !== undefined ? overlay : (specDisks[i]?.path ?? '');
    });
    const folder = checkpointStateFolder(paths, plan.id);
    const stateFile = checkpointStatePath(paths, plan.id);
    const journal: Journal = {
      op: 'create',
      phase: 'prepare',
      checkpoint: plan.id,
      created: [...plan.overlays.map((o) => o.overlay), folder],
      diskSteps: [],
      writes: plan.writes,
      removes: [],
      stateFile,
      copies: [],
    };
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('live:journaled');
    const rollBack = async (): Promise<void> => {
      for (const f of journal.created) await fs.rm(f, { force: true, recursive: true });
      await CheckpointService.endJournal(paths);
    };
    try {
      await fs.mkdir(folder, { mode: 0o700 });
      await CheckpointService.createOverlays(paths, plan, 'live:overlay');
      // Taken while the firmware may write it; a UEFI variable write is rare after boot.
      await CheckpointService.copyVars(paths, plan);
    } catch (err) {
      await rollBack();
      throw err;
    }
    const { client } = await manager.running(vmId, 'save').catch(async (err: unknown) => {
      await rollBack();
      throw err;
    });
    try {
      await client.request({ op: 'checkpoint', path: stateFile, disks });
    } catch (err) {
      await rollBack();
      const body = err instanceof BerthError ? err : new BerthError('INTERNAL', String(err));
      throw new BerthError(
        body.code,
        `cannot take a checkpoint of '${config.name}': ${body.message}; it continues on its current disks`,
      );
    } finally {
      client.close();
    }
    crashPoint('live:saved');
    journal.phase = 'commit';
    await CheckpointService.writeJournal(paths, journal);
    crashPoint('live:committing');
    await CheckpointService.commit(journal);
    await CheckpointService.endJournal(paths);
    const s = (await summarize(await readTree(paths), paths)).find((c) => c.id === plan.id);
    if (!s) throw new BerthError('INTERNAL', 'the new checkpoint vanished');
    return s;
  });
}
