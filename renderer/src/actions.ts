// Which actions the Actions pane, the context menu and the console toolbar offer, and when
// each is enabled. The lifecycle rules come from app/api (the same table the services and
// the worker enforce), so a button is never enabled for a request the service would refuse
// on state alone.
import { allows, NOT_YET } from '../../app/api/lifecycle';
import type { VmState, VmSummary } from '../../app/api/vm';

export type VmActionId =
  | 'connect'
  | 'settings'
  | 'start'
  | 'turn-off'
  | 'shut-down'
  | 'save'
  | 'pause'
  | 'resume'
  | 'reset'
  | 'checkpoint'
  | 'revert'
  | 'export'
  | 'rename'
  | 'delete';

export interface VmActionSpec {
  id: VmActionId;
  label: string;
  // Offered for several selected VMs at once (applied to each).
  multi: boolean;
  // Enabled for a VM in this state (and, for revert, with a checkpoint behind 'Now').
  enabled: (vm: ActionSubject) => boolean;
}

export interface ActionSubject {
  state: VmState;
  // True when the VM has a checkpoint that 'Now' derives from (for Revert).
  hasCurrentCheckpoint?: boolean;
  checkpointsDisabled?: boolean;
}

const settled = (s: VmState): boolean => s !== 'Starting' && s !== 'Stopping';
// The checkpoint and export services work on a VM that is Off (checkpoints of a running VM
// need saved memory state, which the VMM does not have yet).
const offline = (s: VmState): boolean => s === 'Off';

export const VM_ACTIONS: readonly VmActionSpec[] = [
  // Connect is always offered: the console window says when the VM is off and offers Start.
  { id: 'connect', label: 'Connect...', multi: false, enabled: () => true },
  { id: 'settings', label: 'Settings...', multi: false, enabled: () => true },
  { id: 'start', label: 'Start', multi: true, enabled: (v) => allows(v.state, 'start') },
  { id: 'turn-off', label: 'Turn Off...', multi: true, enabled: (v) => allows(v.state, 'turn-off') },
  { id: 'shut-down', label: 'Shut Down...', multi: true, enabled: (v) => allows(v.state, 'shut-down') },
  // Not offered while no VM can be saved (NOT_YET says why).
  { id: 'save', label: 'Save', multi: true, enabled: (v) => allows(v.state, 'save') },
  { id: 'pause', label: 'Pause', multi: true, enabled: (v) => allows(v.state, 'pause') },
  { id: 'resume', label: 'Resume', multi: true, enabled: (v) => allows(v.state, 'resume') },
  { id: 'reset', label: 'Reset', multi: true, enabled: (v) => allows(v.state, 'reset') },
  {
    id: 'checkpoint',
    label: 'Checkpoint',
    multi: true,
    enabled: (v) => !v.checkpointsDisabled && offline(v.state),
  },
  {
    id: 'revert',
    label: 'Revert...',
    multi: false,
    enabled: (v) => offline(v.state) && v.hasCurrentCheckpoint === true,
  },
  { id: 'export', label: 'Export...', multi: false, enabled: (v) => offline(v.state) },
  { id: 'rename', label: 'Rename...', multi: false, enabled: (v) => settled(v.state) },
  { id: 'delete', label: 'Delete...', multi: true, enabled: (v) => allows(v.state, 'remove') },
];

export interface ActionView {
  id: string;
  label: string;
  enabled: boolean;
}

// The VM actions for a selection: hidden when the selection is empty; an action Berth cannot
// do yet (NOT_YET) is not offered at all; with several VMs only the multi actions, each
// enabled when every selected VM allows it. Pause and Resume share a slot (Hyper-V shows
// Resume in place of Pause while a VM is paused).
export function vmActionsFor(selection: readonly ActionSubject[]): ActionView[] {
  if (selection.length === 0) return [];
  const specs = VM_ACTIONS.filter((a) => (selection.length === 1 || a.multi) && !(a.id in NOT_YET));
  const allPaused = selection.every((v) => v.state === 'Paused');
  return specs
    .filter((a) => (allPaused ? a.id !== 'pause' : a.id !== 'resume'))
    .map((a) => ({ id: a.id, label: a.label, enabled: selection.every((v) => a.enabled(v)) }));
}

export function isVmActionEnabled(id: VmActionId, vm: ActionSubject): boolean {
  const spec = VM_ACTIONS.find((a) => a.id === id);
  return spec ? spec.enabled(vm) : false;
}

export type CheckpointActionId = 'apply' | 'export' | 'rename' | 'delete' | 'delete-subtree';

export const CHECKPOINT_ACTIONS: readonly { id: CheckpointActionId; label: string }[] = [
  { id: 'apply', label: 'Apply...' },
  { id: 'export', label: 'Export...' },
  { id: 'rename', label: 'Rename...' },
  { id: 'delete', label: 'Delete Checkpoint...' },
  { id: 'delete-subtree', label: 'Delete Checkpoint Subtree...' },
];

// Checkpoint actions need a checkpoint (not 'Now') and a VM that is Off (the service's
// rule); Export of a checkpoint too. Delete Checkpoint Subtree needs children.
export function checkpointActionsFor(vm: ActionSubject | undefined, hasChildren: boolean): ActionView[] {
  if (!vm) return [];
  return CHECKPOINT_ACTIONS.map((a) => ({
    id: a.id,
    label: a.label,
    enabled: offline(vm.state) && (a.id !== 'delete-subtree' || hasChildren),
  }));
}

export const subjectOf = (vm: VmSummary, extra: Partial<ActionSubject> = {}): ActionSubject => ({
  state: vm.state,
  ...extra,
});
