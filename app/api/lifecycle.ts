// The lifecycle state machine, shared by the services (before they ask a worker) and the
// worker (which has the last word). Refusals say what state the VM is in and what to do.
import { BerthError } from './errors';
import type { VmState } from './vm';

export type Action =
  | 'start'
  | 'pause'
  | 'resume'
  | 'turn-off'
  | 'shut-down'
  | 'reset'
  | 'save'
  | 'delete-saved-state'
  | 'remove'
  | 'console';

// Which states allow each action.
const allowed: Record<Action, readonly VmState[]> = {
  // From Saved, start resumes the VM from its saved state.
  start: ['Off', 'Failed', 'Saved'],
  pause: ['Running'],
  resume: ['Paused'],
  // Turning off a Failed VM clears the failure (there is no process left to stop). A Saved VM
  // has nothing running to turn off: as in Hyper-V, Delete Saved State is its way to Off.
  'turn-off': ['Starting', 'Running', 'Paused', 'Stopping', 'Failed'],
  'shut-down': ['Running'],
  reset: ['Running'],
  save: ['Running', 'Paused'],
  'delete-saved-state': ['Saved'],
  // A Saved VM is removed with its saved state.
  remove: ['Off', 'Failed', 'Saved'],
  console: ['Starting', 'Running', 'Paused', 'Stopping'],
};

const verbs: Record<Action, string> = {
  start: 'start',
  pause: 'pause',
  resume: 'resume',
  'turn-off': 'turn off',
  'shut-down': 'shut down',
  reset: 'reset',
  save: 'save',
  'delete-saved-state': 'delete the saved state of',
  remove: 'remove',
  console: 'attach to the console of',
};

const fromSaved = 'start it first (it resumes from its saved state)';
const hints: Partial<Record<Action, Partial<Record<VmState, string>>>> = {
  pause: { Off: 'start it first', Paused: 'it is already paused', Saved: fromSaved },
  resume: { Running: 'it is not paused', Off: 'start it first', Saved: fromSaved },
  start: {
    Running: 'it is already running',
    Paused: 'resume it instead',
  },
  save: { Off: 'only a running or paused VM can be saved', Saved: 'it is already saved' },
  'delete-saved-state': {
    Off: 'it has no saved state',
    Failed: 'it has no saved state',
    Running: 'it has no saved state (save it first)',
    Paused: 'it has no saved state (save it first)',
  },
  remove: { Running: 'turn it off first', Paused: 'turn it off first', Starting: 'turn it off first' },
  reset: { Paused: 'resume it first', Off: 'start it instead', Saved: fromSaved },
  'shut-down': { Saved: fromSaved },
  console: { Off: 'start it first', Failed: 'start it again first', Saved: fromSaved },
  'turn-off': {
    Off: 'it is already off',
    Saved: 'nothing runs (its memory is saved on disk); delete the saved state to make it Off, or start it',
  },
};

// Actions no VM can do yet, whatever its state, and why: the window does not offer them and
// assertTransition refuses them with this reason (UNSUPPORTED). Empty since saved state.
export const NOT_YET: Partial<Record<Action, string>> = {};

export function allows(state: VmState, action: Action): boolean {
  return allowed[action].includes(state);
}

// Throws INVALID_STATE ("cannot pause 'web1': it is Off; start it first") unless allowed;
// what NOT_YET names is refused as UNSUPPORTED where it would otherwise apply.
export function assertTransition(name: string, state: VmState, action: Action): void {
  if (!allows(state, action)) {
    const hint = hints[action]?.[state];
    throw new BerthError(
      'INVALID_STATE',
      `cannot ${verbs[action]} '${name}': it is ${state}${hint ? `; ${hint}` : ''}`,
    );
  }
  const notYet = NOT_YET[action];
  if (notYet !== undefined) throw new BerthError('UNSUPPORTED', `cannot ${verbs[action]} '${name}': ${notYet}`);
}
