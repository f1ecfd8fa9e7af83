// Which actions the Actions pane, the context menu and the console toolbar offer, and when
// each is enabled. The lifecycle rules come from app/api (the same table the services and
// the worker enforce), so a button is never enabled for a request the service would refuse
// on state alone.
import { allows, NOT_YET } from '../../app/api/lifecycle';
import type { VmState, VmSummary } from '../../app/api/vm';

export type VmActionId =
  | 'connect'
  | 'settings'
  | 'media'
  | 'start'
  | 'turn-off'
  | 'shut-down'
  | 'save'
  | 'delete-saved-state'
  | 'pause'
  | 'resume'
  | 'reset'
  | 'checkpoint'
  | 'revert'
  | 'export'
  | 'move'
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
// What the checkpoint, export and move services take: a checkpoint of a VM that is Off, or a
// standard one (with its memory) of a running or paused VM; applying one to any settled VM
// (a running one is turned off first, a Saved one's saved state discarded); deleting one
// while it is Off; export of an Off or Saved VM (the state goes with it); a move of any VM
// not starting or stopping (a running one is saved for the move and resumed there).
const offline = (s: VmState): boolean => s === 'Off';
const checkpointable = (s: VmState): boolean => s === 'Off' || s === 'Running' || s === 'Paused';
const applicable = (s: VmState): boolean => checkpointable(s) || s === 'Saved';
const exportable = (s: VmState): boolean => s === 'Off' || s === 'Saved';
const movable = (s: VmState): boolean => settled(s);
// DVD media change in the configuration (off) or through the worker (running, paused).
const mediaChangeable = (s: VmState): boolean => s === 'Off' || s === 'Failed' || s === 'Running' || s === 'Paused';

export const VM_ACTIONS: readonly VmActionSpec[] = [
  // Connect is always offered: the console window says when the VM is off and offers Start.
  { id: 'connect', label: 'Connect...', multi: false, enabled: () => true },
  { id: 'settings', label: 'Settings...', multi: false, enabled: () => true },
  // Media > DVD Drive: Insert Disk, Eject (Generation 1 and 2 VMs; the dialog says when a VM has none).
  { id: 'media', label: 'DVD Drive...', multi: false, enabled: (v) => mediaChangeable(v.state) },
  { id: 'start', label: 'Start', multi: true, enabled: (v) => allows(v.state, 'start') },
  { id: 'turn-off', label: 'Turn Off...', multi: true, enabled: (v) => allows(v.state, 'turn-off') },
  { id: 'shut-down', label: 'Shut Down...', multi: true, enabled: (v) => allows(v.state, 'shut-down') },
  { id: 'save', label: 'Save', multi: true, enabled: (v) => allows(v.state, 'save') },
  {
    id: 'delete-saved-state',
    label: 'Delete Saved State...',
    multi: true,
    enabled: (v) => allows(v.state, 'delete-saved-state'),
  },
  { id: 'pause', label: 'Pause', multi: true, enabled: (v) => allows(v.state, 'pause') },
  { id: 'resume', label: 'Resume', multi: true, enabled: (v) => allows(v.state, 'resume') },
  { id: 'reset', label: 'Reset', multi: true, enabled: (v) => allows(v.state, 'reset') },
  {
    id: 'checkpoint',
    label: 'Checkpoint',
    multi: true,
    enabled: (v) => !v.checkpointsDisabled && checkpointable(v.state),
  },
  {
    id: 'revert',
    label: 'Revert...',
    multi: false,
    enabled: (v) => applicable(v.state) && v.hasCurrentCheckpoint === true,
  },
  { id: 'export', label: 'Export...', multi: false, enabled: (v) => exportable(v.state) },
  { id: 'move', label: 'Move...', multi: false, enabled: (v) => movable(v.state) && v.state !== 'Failed' },
  { id: 'rename', label: 'Rename...', multi: false, enabled: (v) => settled(v.state) },
  { id: 'delete', label: 'Delete...', multi: true, enabled: (v) => allows(v.state, 'remove') },
];

export interface ActionView {
  id: string;
  label: string;
  enabled: boolean;
}

// The VM actions for a selection: hidden when the selection is empty; an action Berth cannot
// do yet (NOT_YET, empty now) is not offered at all; Delete Saved State only while a selected
// VM is Saved (as Hyper-V shows it); with several VMs only the multi actions, each
// enabled when every selected VM allows it. Pause and Resume share a slot (Hyper-V shows
// Resume in place of Pause while a VM is paused).
export function vmActionsFor(selection: readonly ActionSubject[]): ActionView[] {
  if (selection.length === 0) return [];
  const specs = VM_ACTIONS.filter((a) => (selection.length === 1 || a.multi) && !(a.id in NOT_YET));
  const allPaused = selection.every((v) => v.state === 'Paused');
  const anySaved = selection.some((v) => v.state === 'Saved');
  return specs
    .filter((a) => (allPaused ? a.id !== 'pause' : a.id !== 'resume'))
    .filter((a) => a.id !== 'delete-saved-state' || anySaved)
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

// Checkpoint actions need a checkpoint (not 'Now'). Apply takes a settled VM (the service
// turns a running one off first); Rename any; Export a VM that is Off or Saved; Delete one
// that is Off (the service's rules). Delete Checkpoint Subtree needs children.
export function checkpointActionsFor(vm: ActionSubject | undefined, hasChildren: boolean): ActionView[] {
  if (!vm) return [];
  const enabled: Record<CheckpointActionId, boolean> = {
    apply: applicable(vm.state),
    export: exportable(vm.state),
    rename: true,
    delete: offline(vm.state),
    'delete-subtree': offline(vm.state) && hasChildren,
  };
  return CHECKPOINT_ACTIONS.map((a) => ({ id: a.id, label: a.label, enabled: enabled[a.id] }));
}

export const subjectOf = (vm: VmSummary, extra: Partial<ActionSubject> = {}): ActionSubject => ({
  state: vm.state,
  ...extra,
});
