// The preload: exposes window.berth (BerthApi) to the page, and nothing else. It runs
// sandboxed, where only 'electron' can be required, so it imports types only; the main
// process validates every request (app/main/ipc.ts).
//
// invoke() rejects with a plain {name: 'BridgeError', code, message} object: contextBridge
// keeps a plain object's fields but drops an Error's own ones. Check err.code, not instanceof
// (isBridgeError in app/api/bridge.ts does).
import { contextBridge, ipcRenderer } from 'electron';

import type { BerthApi, BerthEvent, EventPayload, Method, MethodArgs, MethodResult, Reply, Topic } from '../api/bridge';

// The same two strings as app/main/ipc.ts.
const INVOKE_CHANNEL = 'berth:invoke';
const EVENT_CHANNEL = 'berth:event';

type Handler = (payload: unknown) => void;
const handlers = new Map<string, Set<Handler>>();

ipcRenderer.on(EVENT_CHANNEL, (_event, message: BerthEvent) => {
  for (const handler of handlers.get(message.topic) ?? []) {
    try {
      handler(message.payload);
    } catch (err) {
      console.error(err);
    }
  }
});

const api: BerthApi = {
  async invoke<M extends Method>(method: M, args: MethodArgs<M>): Promise<MethodResult<M>> {
    const reply = (await ipcRenderer.invoke(INVOKE_CHANNEL, method, args)) as Reply;
    if (reply.ok) return reply.result as MethodResult<M>;
    throw { name: 'BridgeError', code: reply.error.code, message: reply.error.message };
  },
  subscribe<T extends Topic>(topic: T, handler: (payload: EventPayload<T>) => void): () => void {
    let set = handlers.get(topic);
    if (!set) handlers.set(topic, (set = new Set()));
    const h = handler as Handler;
    set.add(h);
    return () => {
      set.delete(h);
    };
  },
};

contextBridge.exposeInMainWorld('berth', api);
