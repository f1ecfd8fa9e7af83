// The host's automatic actions (Hyper-V's automatic start and stop actions): what `berth host
// startup` and `berth host shutdown` did to each VM, and the record shutdown leaves for the
// next startup's "restart if it was running".
import { z } from 'zod';

export const HOST_FILES = {
  // Which VMs were running when `berth host shutdown` last ran (HostShutdownRecord).
  shutdownRecord: 'host-shutdown.json',
} as const;

export const HostShutdownRecord = z.strictObject({
  at: z.iso.datetime(),
  running: z.array(z.uuid()),
});
export type HostShutdownRecord = z.infer<typeof HostShutdownRecord>;

export const HostActionOutcome = z.enum(['started', 'shut-down', 'turned-off', 'saved', 'failed']);

export const HostActionResult = z.strictObject({
  vm: z.uuid(),
  name: z.string(),
  // The VM's configured action ('start', 'restart-if-running', 'shut-down', 'turn-off', ...).
  action: z.string(),
  outcome: HostActionOutcome,
  // Why it failed, or what was done instead (a shut-down the guest ignored, then turned off).
  message: z.string().optional(),
});
export type HostActionResult = z.infer<typeof HostActionResult>;
