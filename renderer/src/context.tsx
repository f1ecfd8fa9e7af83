// The BerthApi for the components, and the queries over it. Queries load once; events keep
// them current (cache.ts), so none of them refetch on focus or on a timer.
import { useQuery, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { createContext, useContext } from 'react';

import type {
  BerthApi,
  CheckpointList,
  CheckpointSummary,
  Method,
  MethodArgs,
  MethodResult,
  Operation,
} from '../../app/api/bridge';
import type { VmSummary } from '../../app/api/vm';
import { keys } from './cache';

export const ApiContext = createContext<BerthApi | null>(null);

export function useApi(): BerthApi {
  const api = useContext(ApiContext);
  if (!api) throw new Error('no BerthApi: wrap the window in <ApiContext.Provider>');
  return api;
}

export function useHost() {
  const api = useApi();
  return useQuery({ queryKey: keys.host, queryFn: () => api.invoke('host.info', {}), staleTime: Infinity });
}

export function useVms() {
  const api = useApi();
  return useQuery({ queryKey: keys.vms, queryFn: () => api.invoke('vm.list', {}), staleTime: Infinity });
}

export function useVmDetails(id: string | undefined) {
  const api = useApi();
  return useQuery({
    queryKey: keys.vm(id ?? ''),
    queryFn: () => api.invoke('vm.get', { vm: id ?? '' }),
    enabled: id !== undefined,
    staleTime: Infinity,
  });
}

// The Details pane's live thumbnail of a running VM's screen: asked for once a second while
// the pane shows it and the window is visible (react-query pauses the interval in the
// background); a refusal (no mode set yet) leaves the dark box.
export const THUMBNAIL_INTERVAL_MS = 1000;
export function useThumbnail(id: string | undefined, enabled: boolean) {
  const api = useApi();
  return useQuery({
    queryKey: keys.thumbnail(id ?? ''),
    queryFn: () => api.invoke('vm.thumbnail', { vm: id ?? '' }),
    enabled: id !== undefined && enabled,
    refetchInterval: THUMBNAIL_INTERVAL_MS,
    refetchIntervalInBackground: false,
    staleTime: 0,
    gcTime: 0,
    retry: false,
  });
}

export function useCheckpoints(id: string | undefined) {
  const api = useApi();
  return useQuery({
    queryKey: keys.checkpoints(id ?? ''),
    queryFn: () => api.invoke('checkpoint.list', { vm: id ?? '' }),
    enabled: id !== undefined,
    staleTime: Infinity,
    retry: false,
  });
}

export function useHostDisks(enabled = true) {
  const api = useApi();
  return useQuery({
    queryKey: keys.hostDisks,
    queryFn: () => api.invoke('host.disks', {}),
    enabled,
    staleTime: 10_000,
    retry: false,
  });
}

export function useOperation(id: string | undefined): Operation | undefined {
  const client = useQueryClient();
  const { data } = useQuery({
    queryKey: keys.operations,
    queryFn: () => client.getQueryData<Operation[]>(keys.operations) ?? [],
    staleTime: Infinity,
    initialData: [],
  });
  return id === undefined ? undefined : data.find((o) => o.id === id);
}

// Calls a method and writes what it returns into the cache at once (the event that follows
// carries the same data), so the window never shows a stale state after its own action.
export async function call<M extends Method>(
  api: BerthApi,
  client: QueryClient,
  method: M,
  args: MethodArgs<M>,
): Promise<MethodResult<M>> {
  const result = await api.invoke(method, args);
  const r = result as unknown;
  if (r && typeof r === 'object' && 'id' in r && 'state' in r && 'name' in r) {
    const vm = r as VmSummary;
    client.setQueryData<VmSummary[]>(keys.vms, (old) => {
      if (!old) return old;
      const { config: _c, folder: _f, ...summary } = vm as VmSummary & { config?: unknown; folder?: unknown };
      void _c;
      void _f;
      const i = old.findIndex((v) => v.id === vm.id);
      if (i < 0) return [...old, summary];
      const next = [...old];
      next[i] = summary;
      return next;
    });
    if ('config' in r) client.setQueryData(keys.vm(vm.id), r);
  }
  return result;
}

// The tree of checkpoints as nested nodes, with 'Now' under the current one.
export interface CheckpointNode {
  checkpoint: CheckpointSummary;
  children: CheckpointNode[];
  // 'Now' hangs under this node.
  current: boolean;
}

export function buildCheckpointTree(list: CheckpointList): CheckpointNode[] {
  const nodes = new Map<string, CheckpointNode>();
  for (const c of list.checkpoints) nodes.set(c.id, { checkpoint: c, children: [], current: c.id === list.now });
  const roots: CheckpointNode[] = [];
  for (const c of [...list.checkpoints].sort((a, b) => a.createdAt.localeCompare(b.createdAt))) {
    const node = nodes.get(c.id);
    if (!node) continue;
    const parent = c.parent !== null ? nodes.get(c.parent) : undefined;
    if (parent) parent.children.push(node);
    else roots.push(node);
  }
  return roots;
}

export function hasChildren(list: CheckpointList | undefined, id: string): boolean {
  return list?.checkpoints.some((c) => c.parent === id) ?? false;
}
