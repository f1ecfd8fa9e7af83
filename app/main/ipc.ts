// The main process's side of the window's IPC, without Electron: a plain dispatcher over
// the bridge host (app/services/bridge-host.ts), so its checks run under Node in the specs.
// Every request is validated against app/api/bridge's schemas before any service runs, and
// only the app's own pages (berth://app) may call: a frame from anywhere else is refused.
import { BerthError, toErrorBody } from '../api';
import type { BerthEvent, Reply } from '../api/bridge';
import type { BridgeHost } from '../services';

// Channel names; app/preload/preload.ts spells the same two strings.
export const INVOKE_CHANNEL = 'berth:invoke';
export const EVENT_CHANNEL = 'berth:event';
export const APP_SCHEME = 'berth';
export const APP_ORIGIN = `${APP_SCHEME}://app`;

export interface IpcSender {
  // webContents id
  id: number;
  // The URL of the frame that sent the request.
  url: string | undefined;
}

export class IpcDispatcher {
  private readonly clients = new Map<number, string>();

  constructor(
    private readonly bridge: BridgeHost,
    private readonly appOrigin: string = APP_ORIGIN,
  ) {}

  // A window's webContents appeared: its events go to send().
  attach(senderId: number, send: (event: BerthEvent) => void): void {
    if (this.clients.has(senderId)) return;
    this.clients.set(senderId, this.bridge.connect(send).id);
  }

  // The window went away: its console sessions are detached.
  detach(senderId: number): void {
    const clientId = this.clients.get(senderId);
    if (clientId === undefined) return;
    this.clients.delete(senderId);
    this.bridge.disconnect(clientId);
  }

  // One ipcRenderer.invoke(INVOKE_CHANNEL, method, args). Never throws.
  async handle(sender: IpcSender, method: unknown, args: unknown): Promise<Reply> {
    let origin: string | undefined;
    try {
      origin = sender.url ? new URL(sender.url).origin : undefined;
    } catch {
      origin = undefined;
    }
    // URL.origin is 'null' for non-special schemes; compare scheme and host instead.
    const fromApp =
      sender.url !== undefined && (origin === this.appOrigin || sender.url.startsWith(`${this.appOrigin}/`));
    if (!fromApp) {
      return {
        ok: false,
        error: toErrorBody(new BerthError('FORBIDDEN', `refused: IPC from ${JSON.stringify(sender.url ?? '')}`)),
      };
    }
    return this.bridge.invoke(method, args, this.clients.get(sender.id));
  }
}
