// VM state and stats pushed to front ends (the window, `berth serve`): the service watches
// the registry and the workers' control sockets, and tells its listeners what changed. The
// polling happens here, in the service, once for every window; a front end calls refresh()
// after an action so its own changes show at once.
//
// Events: 'vm' (a VM appeared, or its state, name or settings changed: the whole summary),
// 'removed' (its id), 'stats' (every running VM's stats, one batch per tick).
import { EventEmitter } from 'node:events';

import type { VmState, VmStats, VmSummary } from '../api';
import type { VmManager } from './manager';

export interface StatsBatch {
  at: string;
  items: { id: string; state: VmState; stats: VmStats }[];
}

export interface VmWatcherEvents {
  vm: [VmSummary];
  removed: [string];
  stats: [StatsBatch];
  // A poll failed (the data root became unreadable); the watcher keeps trying.
  error: [Error];
}

export const DEFAULT_WATCH_INTERVAL_MS = 1000;

// What identifies a change worth a 'vm' event: everything but the stats.
function fingerprint(vm: VmSummary): string {
  const { stats, ...rest } = vm;
  void stats;
  return JSON.stringify(rest);
}

export class VmWatcher extends EventEmitter<VmWatcherEvents> {
  private readonly known = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private started = false;
  private readonly intervalMs: number;

  constructor(
    private readonly manager: VmManager,
    options: { intervalMs?: number } = {},
  ) {
    super();
    this.intervalMs = options.intervalMs ?? DEFAULT_WATCH_INTERVAL_MS;
  }

  // Begins watching; the first poll reports every VM as 'vm'.
  start(): void {
    if (this.started) return;
    this.started = true;
    void this.refresh();
  }

  stop(): void {
    this.started = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  // Polls now (a poll under way is followed by one more). Resolves when that poll is done.
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    clearTimeout(this.timer);
    this.running = this.poll().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.refresh();
      } else if (this.started) {
        this.timer = setTimeout(() => void this.refresh(), this.intervalMs);
        this.timer.unref();
      }
    });
    return this.running;
  }

  private async poll(): Promise<void> {
    let vms: VmSummary[];
    try {
      vms = await this.manager.list();
    } catch (err) {
      if (this.listenerCount('error') > 0) this.emit('error', err as Error);
      return;
    }
    const seen = new Set<string>();
    const items: StatsBatch['items'] = [];
    for (const vm of vms) {
      seen.add(vm.id);
      const print = fingerprint(vm);
      if (this.known.get(vm.id) !== print) {
        this.known.set(vm.id, print);
        this.emit('vm', vm);
      }
      if (vm.stats) items.push({ id: vm.id, state: vm.state, stats: vm.stats });
    }
    for (const id of [...this.known.keys()]) {
      if (!seen.has(id)) {
        this.known.delete(id);
        this.emit('removed', id);
      }
    }
    if (items.length > 0) this.emit('stats', { at: new Date().toISOString(), items });
  }
}
