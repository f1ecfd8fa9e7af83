// The react-query cache is the window's copy of the service's state. It is filled once by a
// query and then kept current by the events the service pushes (applyEvents); nothing polls.
import type { QueryClient } from '@tanstack/react-query';

import type { BerthApi, BerthEvent, Operation, Topic } from '../../app/api/bridge';
import type { VmDetails, VmSummary } from '../../app/api/vm';

export const keys = {
  host: ['host'] as const,
  vms: ['vms'] as const,
  vm: (id: string) => ['vm', id] as const,
  checkpoints: (id: string) => ['checkpoints', id] as const,
  thumbnail: (id: string) => ['thumbnail', id] as const,
  hostDisks: ['host-disks'] as const,
  operations: ['operations'] as const,
};

// The topics that feed the cache (console output goes straight to its console window).
export const CACHE_TOPICS = [
  'vm',
  'vm-removed',
  'stats',
  'checkpoints',
  'operation',
] as const satisfies readonly Topic[];

// Applies a batch of events with one write per cache entry, so a stats tick for 500 VMs is
// one list update (and one render), not 500.
export function applyEvents(client: QueryClient, events: readonly BerthEvent[]): void {
  if (events.length === 0) return;
  const summaries = new Map<string, VmSummary>();
  const stats = new Map<string, VmSummary['stats']>();
  const removed = new Set<string>();
  const operations: Operation[] = [];
  // A VM's details carry its configuration, which no event holds: refetched (if shown) when
  // the VM changed or a checkpoint was applied to it.
  const stale = new Set<string>();
  for (const e of events) {
    switch (e.topic) {
      case 'vm':
        summaries.set(e.payload.vm.id, e.payload.vm);
        stats.delete(e.payload.vm.id);
        removed.delete(e.payload.vm.id);
        stale.add(e.payload.vm.id);
        break;
      case 'vm-removed':
        removed.add(e.payload.id);
        summaries.delete(e.payload.id);
        stats.delete(e.payload.id);
        break;
      case 'stats':
        for (const item of e.payload.items) stats.set(item.id, item.stats);
        break;
      case 'checkpoints':
        void client.invalidateQueries({ queryKey: keys.checkpoints(e.payload.vmId) });
        stale.add(e.payload.vmId);
        break;
      case 'operation':
        operations.push(e.payload.operation);
        break;
      case 'console':
        break;
    }
  }

  if (summaries.size > 0 || stats.size > 0 || removed.size > 0) {
    client.setQueryData<VmSummary[]>(keys.vms, (old) => (old ? mergeList(old, summaries, stats, removed) : old));
  }
  for (const [id, vm] of summaries) {
    client.setQueryData<VmDetails>(keys.vm(id), (old) => (old ? { ...withSummary(old, vm) } : old));
  }
  for (const id of stale) if (!removed.has(id)) void client.invalidateQueries({ queryKey: keys.vm(id) });
  for (const id of removed) {
    client.removeQueries({ queryKey: keys.vm(id) });
    client.removeQueries({ queryKey: keys.checkpoints(id) });
  }
  if (operations.length > 0) {
    client.setQueryData<Operation[]>(keys.operations, (old) => {
      const byId = new Map((old ?? []).map((o) => [o.id, o]));
      for (const o of operations) byId.set(o.id, o);
      return [...byId.values()];
    });
  }
}

// The new list: unchanged rows keep their object (memoized rows skip rendering); a row gets
// a new object only when its summary or stats changed. Returns `old` when nothing changed.
export function mergeList(
  old: readonly VmSummary[],
  summaries: ReadonlyMap<string, VmSummary>,
  stats: ReadonlyMap<string, VmSummary['stats']>,
  removed: ReadonlySet<string>,
): VmSummary[] {
  let touched = false;
  const seen = new Set<string>();
  const next: VmSummary[] = [];
  for (const vm of old) {
    if (removed.has(vm.id)) {
      touched = true;
      continue;
    }
    seen.add(vm.id);
    const summary = summaries.get(vm.id);
    if (summary) {
      touched = true;
      next.push(summary);
      continue;
    }
    const s = stats.get(vm.id);
    if (s && s !== vm.stats && (vm.state === 'Running' || vm.state === 'Paused')) {
      touched = true;
      next.push({ ...vm, stats: s });
      continue;
    }
    next.push(vm);
  }
  for (const [id, vm] of summaries) {
    if (!seen.has(id)) {
      next.push(vm);
      touched = true;
    }
  }
  return touched ? next : (old as VmSummary[]);
}

// Details keep their config and folder; the summary fields come from the event.
function withSummary(old: VmDetails, vm: VmSummary): VmDetails {
  const { stats: _s, stateReason: _r, workerPid: _w, lastExit: _l, ...rest } = old;
  void _s;
  void _r;
  void _w;
  void _l;
  return { ...rest, ...vm };
}

// Subscribes to the cache topics and writes what arrives once per animation frame (or on
// the next task when frames do not run, e.g. a hidden tab), so bursts coalesce into one
// render. Returns the unsubscribe function.
export function connectCache(
  api: BerthApi,
  client: QueryClient,
  schedule: (flush: () => void) => void = defaultSchedule,
): () => void {
  let queue: BerthEvent[] = [];
  let pending = false;
  const flush = (): void => {
    pending = false;
    const batch = queue;
    queue = [];
    applyEvents(client, batch);
  };
  const push = (event: BerthEvent): void => {
    queue.push(event);
    if (!pending) {
      pending = true;
      schedule(flush);
    }
  };
  const offs = CACHE_TOPICS.map((topic) => api.subscribe(topic, (payload) => push({ topic, payload } as BerthEvent)));
  return () => {
    for (const off of offs) off();
  };
}

function defaultSchedule(flush: () => void): void {
  if (typeof requestAnimationFrame === 'function' && typeof document !== 'undefined' && !document.hidden) {
    // Also a timer, in case the frame never comes (the tab is hidden right after).
    let done = false;
    const once = (): void => {
      if (!done) {
        done = true;
        flush();
      }
    };
    requestAnimationFrame(once);
    setTimeout(once, 100);
  } else setTimeout(flush, 0);
}
