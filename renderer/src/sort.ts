// Sorting the Virtual Machines list by any column, as the column headers do.
import type { VmSummary } from '../../app/api/vm';
import { assignedMemory } from './format';

export type SortKey = 'name' | 'state' | 'cpu' | 'memory' | 'uptime' | 'status';
export interface SortSpec {
  key: SortKey;
  dir: 'asc' | 'desc';
}

// Hyper-V orders states by how "alive" a VM is, not alphabetically.
const stateRank: Record<VmSummary['state'], number> = {
  Running: 0,
  Paused: 1,
  Starting: 2,
  Stopping: 3,
  Saved: 4,
  Off: 5,
  Failed: 6,
};

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function numberOrNull(n: number | undefined): number | null {
  return n === undefined || Number.isNaN(n) ? null : n;
}

function value(vm: VmSummary, key: SortKey): number | string | null {
  switch (key) {
    case 'name':
      return vm.name;
    case 'state':
      return stateRank[vm.state];
    case 'cpu':
      return vm.state === 'Running' || vm.state === 'Paused' ? numberOrNull(vm.stats?.cpuUsagePercent) : null;
    case 'memory':
      return numberOrNull(assignedMemory(vm));
    case 'uptime':
      return vm.state === 'Running' || vm.state === 'Paused' ? numberOrNull(vm.stats?.uptimeMs) : null;
    case 'status':
      return vm.stateReason ?? '';
  }
}

// Empty cells sort last in both directions; ties fall back to the name, then the id, so the
// order is stable while stats change.
export function compareVms(a: VmSummary, b: VmSummary, sort: SortSpec): number {
  const va = value(a, sort.key);
  const vb = value(b, sort.key);
  if (va === null && vb !== null) return 1;
  if (vb === null && va !== null) return -1;
  let c = 0;
  if (va !== null && vb !== null) {
    c = typeof va === 'string' && typeof vb === 'string' ? collator.compare(va, vb) : Number(va) - Number(vb);
  }
  if (sort.dir === 'desc') c = -c;
  if (c !== 0) return c;
  return collator.compare(a.name, b.name) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function sortVms(vms: readonly VmSummary[], sort: SortSpec): VmSummary[] {
  return [...vms].sort((a, b) => compareVms(a, b, sort));
}

// Clicking a header: the same column flips direction, another column starts ascending.
export function nextSort(current: SortSpec, key: SortKey): SortSpec {
  return current.key === key ? { key, dir: current.dir === 'asc' ? 'desc' : 'asc' } : { key, dir: 'asc' };
}
