// BerthApi over `berth serve` (HTTP), for the window in a browser: POST /api/<method> and
// one event stream (GET /api/events, text/event-stream read through fetch so the token can
// travel as a header; EventSource cannot send headers). Browser globals only (fetch,
// TextDecoder, AbortController); Node 20 has them too, so the tests use this client as well.
//
// The page gets its token from its URL once (?token=...), keeps it in sessionStorage and
// removes it from the address bar: see tokenFromLocation().
import {
  BridgeError,
  HTTP,
  isTopic,
  TOPICS,
  unwrapReply,
  type BerthApi,
  type EventPayload,
  type Method,
  type MethodArgs,
  type MethodResult,
  type Topic,
} from './bridge';

export interface HttpBerthApiOptions {
  token: string;
  // Where `berth serve` listens; '' (the default) is the page's own origin.
  baseUrl?: string;
  // Called when the event stream drops and when it is back (the window may show it).
  onConnection?: (connected: boolean) => void;
  // Wait before reconnecting the event stream.
  retryMs?: number;
}

export interface HttpBerthApi extends BerthApi {
  // Stops the event stream (tests, page unload).
  close(): void;
  // Resolves once the event stream is connected (its 'hello' arrived).
  ready(): Promise<void>;
}

type Handler = (payload: never) => void;

export function createHttpBerthApi(options: HttpBerthApiOptions): HttpBerthApi {
  const base = options.baseUrl ?? '';
  const handlers = new Map<Topic, Set<Handler>>();
  let clientId = '';
  let closed = false;
  let abort: AbortController | undefined;
  let markReady: () => void = () => undefined;
  let readyPromise = new Promise<void>((resolve) => (markReady = resolve));

  const headers = (): Record<string, string> => {
    const h: Record<string, string> = { [HTTP.tokenHeader]: options.token };
    if (clientId) h[HTTP.clientHeader] = clientId;
    return h;
  };

  const dispatch = (topic: string, data: string): void => {
    if (topic === 'hello') {
      clientId = (JSON.parse(data) as { clientId: string }).clientId;
      markReady();
      options.onConnection?.(true);
      return;
    }
    if (!isTopic(topic)) return;
    const parsed = TOPICS[topic].safeParse(JSON.parse(data));
    if (!parsed.success) return;
    for (const h of handlers.get(topic) ?? []) (h as (p: unknown) => void)(parsed.data);
  };

  const stream = async (): Promise<void> => {
    while (!closed) {
      abort = new AbortController();
      try {
        const res = await fetch(`${base}${HTTP.eventsPath}`, {
          headers: { ...headers(), accept: 'text/event-stream' },
          signal: abort.signal,
        });
        if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let topic = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) topic = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length > 0) dispatch(topic, data.join('\n'));
          }
        }
      } catch {
        // dropped or refused: try again below
      }
      if (closed) break;
      clientId = '';
      readyPromise = new Promise<void>((resolve) => (markReady = resolve));
      options.onConnection?.(false);
      await new Promise((r) => setTimeout(r, options.retryMs ?? 1000));
    }
  };
  void stream();

  return {
    async invoke<M extends Method>(method: M, args: MethodArgs<M>): Promise<MethodResult<M>> {
      let res: Response;
      try {
        res = await fetch(`${base}${HTTP.apiPrefix}${method}`, {
          method: 'POST',
          headers: { ...headers(), 'content-type': 'application/json' },
          body: JSON.stringify(args ?? {}),
        });
      } catch (err) {
        throw new BridgeError('WORKER_UNREACHABLE', `cannot reach berth serve: ${(err as Error).message}`);
      }
      let body: unknown;
      try {
        body = await res.json();
      } catch {
        throw new BridgeError('PROTOCOL', `berth serve answered HTTP ${res.status} without JSON`);
      }
      return unwrapReply<M>(body);
    },
    subscribe<T extends Topic>(topic: T, handler: (payload: EventPayload<T>) => void): () => void {
      let set = handlers.get(topic);
      if (!set) handlers.set(topic, (set = new Set()));
      set.add(handler as Handler);
      return () => set.delete(handler as Handler);
    },
    close() {
      closed = true;
      abort?.abort();
    },
    ready: () => readyPromise,
  };
}

// The page's token: from ?token= (then kept in sessionStorage and removed from the address
// bar and history), or from sessionStorage after a reload. Browser only.
export function tokenFromLocation(): string | undefined {
  const g = globalThis as unknown as {
    location?: { href: string };
    sessionStorage?: { getItem(k: string): string | null; setItem(k: string, v: string): void };
    history?: { replaceState(data: unknown, unused: string, url: string): void };
  };
  if (!g.location) return undefined;
  const url = new URL(g.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    g.sessionStorage?.setItem('berth-token', fromUrl);
    url.searchParams.delete('token');
    g.history?.replaceState(null, '', url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return g.sessionStorage?.getItem('berth-token') ?? undefined;
}
