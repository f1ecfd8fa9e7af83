// Test data and a fake BerthApi for the component tests.
import type { BerthApi, EventPayload, Method, MethodArgs, MethodResult, Topic } from '../../app/api/bridge';
import type { VmState, VmStats, VmSummary } from '../../app/api/vm';

export function uuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

export function stats(over: Partial<VmStats> = {}): VmStats {
  return {
    cpuUsagePercent: 3,
    assignedMemoryMiB: 512,
    residentBytes: 64 << 20,
    uptimeMs: 61_000,
    vcpuCount: 1,
    vcpus: [{ id: 0, cpuTimeMs: 10, exits: { io: 0, mmio: 0, halt: 0, interrupted: 0, shutdown: 0, other: 0 } }],
    disks: [],
    resets: 0,
    ...over,
  };
}

export function vm(n: number, state: VmState = 'Off', over: Partial<VmSummary> = {}): VmSummary {
  const base: VmSummary = { id: uuid(n), name: `vm${n}`, state, memoryMiB: 512, processorCount: 1 };
  if (state === 'Running' || state === 'Paused') base.stats = stats();
  return { ...base, ...over };
}

type Handler = (payload: never) => void;

export class FakeApi implements BerthApi {
  calls: { method: string; args: unknown }[] = [];
  handlers = new Map<string, Set<Handler>>();
  constructor(private readonly answers: Partial<{ [M in Method]: (args: MethodArgs<M>) => unknown }>) {}
  async invoke<M extends Method>(method: M, args: MethodArgs<M>): Promise<MethodResult<M>> {
    this.calls.push({ method, args });
    const answer = this.answers[method] as ((a: MethodArgs<M>) => unknown) | undefined;
    if (!answer) throw new Error(`${method} is not available in this fake`);
    return (await answer(args)) as MethodResult<M>;
  }
  subscribe<T extends Topic>(topic: T, handler: (payload: EventPayload<T>) => void): () => void {
    let set = this.handlers.get(topic);
    if (!set) this.handlers.set(topic, (set = new Set()));
    set.add(handler as Handler);
    return () => set.delete(handler as Handler);
  }
  emit<T extends Topic>(topic: T, payload: EventPayload<T>): void {
    for (const h of this.handlers.get(topic) ?? []) (h as (p: unknown) => void)(payload);
  }
}

// The value, or a test failure naming what was missing.
export function must<T>(value: T | null | undefined, what = 'value'): T {
  if (value === null || value === undefined) throw new Error(`expected ${what}`);
  return value;
}
