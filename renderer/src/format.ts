// Display helpers for the list and the Details pane (Hyper-V's formats).
import type { VmSummary } from '../../app/api/vm';

export function formatUptime(ms: number | undefined): string {
  if (ms === undefined) return '';
  const total = Math.floor(ms / 1000);
  const days = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const hms = [h, m, s].map((n) => String(n).padStart(2, '0')).join(':');
  return days > 0 ? `${days}.${hms}` : hms;
}

export function formatMiB(mib: number | undefined): string {
  if (mib === undefined) return '';
  return `${Math.round(mib)} MB`;
}

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export function formatCpu(percent: number | undefined): string {
  if (percent === undefined) return '';
  return `${Math.round(percent)} %`;
}

// The State column: what Hyper-V calls them.
export function stateLabel(vm: VmSummary): string {
  return vm.state;
}

// The Status column: an operation in progress or why a VM is in its state.
export function statusText(vm: VmSummary): string {
  if (vm.state === 'Starting') return 'Starting...';
  if (vm.state === 'Stopping') return 'Stopping...';
  if (vm.state === 'Failed') return vm.stateReason ?? 'The worker process failed';
  return '';
}

// Running VMs show their assigned memory; others show nothing, as in Hyper-V.
export function assignedMemory(vm: VmSummary): number | undefined {
  if (vm.state !== 'Running' && vm.state !== 'Paused') return undefined;
  return vm.stats?.assignedMemoryMiB ?? vm.memoryMiB;
}
