// The lifecycle state machine, shared by the services (before they ask a worker) and the
// worker (which has the last word). Refusals say what state the VM is in and what to do.
import { BerthError } from './errors';
import type { VmState } from './vm';

export type Action = 'start' | 'pause' | 'resume' | 'turn-off' | 'shut-down' | 'reset' | 'save' | 'remove' | 'console';

// Which states allow each action.
const allowed: Record<Action, readonly VmState[]> = {
  start: ['Off', 'Failed'],
  pause: ['Running'],
  resume: ['Paused'],
  // Turning off a Failed VM clears the failure (there is no process left to stop).
  'turn-off': ['Starting', 'Running', 'Paused', 'Stopping', 'Failed'],
  'shut-down': ['Running'],
  reset: ['Running'],
  save: ['Running', 'Paused'],
  remove: ['Off', 'Failed'],
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
  remove: 'remove',
  console: 'attach to the console of',
};

const hints: Partial<Record<Action, Partial<Record<VmState, string>>>> = {
  pause: { Off: 'start it first', Paused: 'it is already paused' },
  resume: { Running: 'it is not paused', Off: 'start it first' },
  start: {
    Running: 'it is already running',
    Paused: 'resume it instead',
    Saved: 'saved state cannot be restored yet',
  },
  remove: { Running: 'turn it off first', Paused: 'turn it off first', Starting: 'turn it off first' },
  reset: { Paused: 'resume it first', Off: 'start it instead' },
  console: { Off: 'start it first', Failed: 'start it again first' },
  'turn-off': { Off: 'it is already off' },
};

// Actions no VM can do yet, whatever its state, and why: the window does not offer them and
// assertTransition refuses them with this reason (UNSUPPORTED).
export const NOT_YET: Partial<Record<Action, string>> = {
  save: 'saved state is not available yet (it arrives with checkpoints); pause it or turn it off instead',
};

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
