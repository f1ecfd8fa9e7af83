// The host's automatic actions, as Hyper-V runs them when its host starts and stops:
// startup() starts every VM set to 'start' (each after its own delay) and every VM set to
// 'restart-if-running' that shutdown() found running; shutdown() applies each running VM's
// stop action ('shut-down' presses the power button and turns off a guest that does not
// respond; 'save' saves its memory and device state, and the startup resumes it when its
// start action says so) and records which VMs were running. VMs are handled side by side;
// one failing stops no other.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  BerthError,
  HOST_FILES,
  HostShutdownRecord,
  type HostActionResult,
  type VmConfig,
  type VmSummary,
} from '../api';
import { atomicWriteJson, readJsonIfExists, removeIfExists } from './fsutil';
import type { VmManager } from './manager';

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export class HostActions {
  constructor(private readonly manager: VmManager) {}

  private get recordPath(): string {
    return join(this.manager.root, HOST_FILES.shutdownRecord);
  }

  // Starts what the VMs' start actions ask for; the shutdown record is used up.
  async startup(): Promise<HostActionResult[]> {
    const record = HostShutdownRecord.safeParse(await readJsonIfExists(this.recordPath));
    const wasRunning = new Set(record.success ? record.data.running : []);
    const configs = await this.configs();
    const chosen = configs.filter(
      ({ config: c }) =>
        c.automaticStartAction === 'start' || (c.automaticStartAction === 'restart-if-running' && wasRunning.has(c.id)),
    );
    const results = await Promise.all(
      chosen.map(async ({ config: c, state }): Promise<HostActionResult> => {
        const base = { vm: c.id, name: c.name, action: c.automaticStartAction };
        if (state === 'Running' || state === 'Paused' || state === 'Starting') {
          return { ...base, outcome: 'started', message: `it was already ${state}` };
        }
        await sleep(c.automaticStartDelaySeconds * 1000);
        try {
          await this.manager.start(c.id);
          return { ...base, outcome: 'started' };
        } catch (err) {
          return { ...base, outcome: 'failed', message: messageOf(err) };
        }
      }),
    );
    await removeIfExists(this.recordPath);
    return results;
  }

  // Applies each running or paused VM's stop action; the record names those that ran.
  async shutdown(shutDownTimeoutMs?: number): Promise<HostActionResult[]> {
    const configs = await this.configs();
    const running = configs.filter(({ state }) => state === 'Running' || state === 'Paused');
    const record: HostShutdownRecord = { at: new Date().toISOString(), running: running.map((r) => r.config.id) };
    await atomicWriteJson(this.recordPath, record);
    return Promise.all(running.map(({ config, state }) => this.stop(config, state, shutDownTimeoutMs)));
  }

  private async stop(c: VmConfig, state: VmSummary['state'], timeoutMs?: number): Promise<HostActionResult> {
    const base = { vm: c.id, name: c.name, action: c.automaticStopAction };
    try {
      if (c.automaticStopAction === 'turn-off') {
        await this.manager.turnOff(c.id);
        return { ...base, outcome: 'turned-off' };
      }
      if (c.automaticStopAction === 'save') {
        await this.manager.save(c.id);
        return { ...base, outcome: 'saved' };
      }
      // A paused guest cannot see the power button.
      if (state === 'Paused') await this.manager.resume(c.id);
      try {
        await this.manager.shutDown(c.id, timeoutMs);
        return { ...base, outcome: 'shut-down' };
      } catch (err) {
        if (!(err instanceof BerthError && err.code === 'SHUTDOWN_TIMEOUT')) throw err;
        await this.manager.turnOff(c.id);
        return {
          ...base,
          outcome: 'turned-off',
          message: `${err.message.replace(/ Turn it off.*$/, '')} Turned off.`,
        };
      }
    } catch (err) {
      return { ...base, outcome: 'failed', message: messageOf(err) };
    }
  }

  private async configs(): Promise<{ config: VmConfig; state: VmSummary['state'] }[]> {
    const [entries, summaries] = await Promise.all([this.manager.registry.list(), this.manager.list()]);
    const states = new Map(summaries.map((s) => [s.id, s.state]));
    return entries.flatMap((e) => (e.config ? [{ config: e.config, state: states.get(e.id) ?? 'Off' }] : []));
  }
}
