// The Electron main process: one window over the bridge (app/services/bridge-host.ts).
// Thin: the renderer never sees Node (contextIsolation, sandbox, no nodeIntegration); the
// page is served from berth://app with a strict CSP; navigation, new windows, webviews and
// permission requests are refused; every IPC request is validated (app/main/ipc.ts).
import { promises as fs } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';

import { app, BrowserWindow, ipcMain, protocol, session, type WebContents } from 'electron';

import { BridgeHost, storageBackend, VmManager } from '../services';
import { CONTENT_SECURITY_POLICY } from '../web';
import { APP_ORIGIN, APP_SCHEME, EVENT_CHANNEL, INVOKE_CHANNEL, IpcDispatcher } from './ipc';

const rendererRoot = resolve(join(__dirname, '..', '..', 'renderer'));
const preloadPath = join(__dirname, '..', 'preload', 'preload.js');

const mimeTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

protocol.registerSchemesAsPrivileged([
  { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } },
]);

async function serveRenderer(request: Request): Promise<Response> {
  const url = new URL(request.url);
  let rel = normalize(decodeURIComponent(url.pathname)).replace(/^([/\\])+/, '');
  if (rel === '' || rel === '.' || extname(rel) === '') rel = 'index.html';
  const file = resolve(rendererRoot, rel);
  if (url.host !== 'app' || !file.startsWith(rendererRoot + sep)) return new Response('not found', { status: 404 });
  try {
    const body = await fs.readFile(file);
    const type = mimeTypes[extname(file)] ?? 'application/octet-stream';
    const headers: Record<string, string> = { 'Content-Type': type, 'X-Content-Type-Options': 'nosniff' };
    if (type.startsWith('text/html')) headers['Content-Security-Policy'] = CONTENT_SECURITY_POLICY;
    return new Response(body, { headers });
  } catch {
    return new Response(`the window is not built (${file}); run npm run build`, { status: 404 });
  }
}

function harden(contents: WebContents): void {
  contents.on('will-navigate', (event) => event.preventDefault());
  contents.on('will-redirect', (event) => event.preventDefault());
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
}

async function main(): Promise<void> {
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return;
  }
  app.on('web-contents-created', (_event, contents) => harden(contents));
  await app.whenReady();
  protocol.handle(APP_SCHEME, serveRenderer);
  session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  session.defaultSession.setPermissionCheckHandler(() => false);

  const manager = new VmManager({ clientName: `berth window ${process.pid}` });
  const bridge = new BridgeHost({
    manager,
    storage: storageBackend(manager),
    transport: 'electron',
    version: app.getVersion(),
  });
  const ipc = new IpcDispatcher(bridge, APP_ORIGIN);
  ipcMain.handle(INVOKE_CHANNEL, (event, method: unknown, args: unknown) =>
    ipc.handle({ id: event.sender.id, url: event.senderFrame?.url }, method, args),
  );

  const open = (): void => {
    const win = new BrowserWindow({
      width: 1280,
      height: 800,
      title: 'Berth',
      show: false,
      webPreferences: {
        preload: preloadPath,
        contextIsolation: true,
        sandbox: true,
        nodeIntegration: false,
        nodeIntegrationInWorker: false,
        webSecurity: true,
        allowRunningInsecureContent: false,
        webviewTag: false,
        spellcheck: false,
      },
    });
    const contents = win.webContents;
    const id = contents.id;
    ipc.attach(id, (event) => {
      if (!contents.isDestroyed()) contents.send(EVENT_CHANNEL, event);
    });
    contents.on('destroyed', () => ipc.detach(id));
    win.once('ready-to-show', () => win.show());
    void win.loadURL(`${APP_ORIGIN}/index.html`);
  };
  open();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) open();
  });
  // VMs keep running in their workers when the window closes.
  app.on('window-all-closed', () => {
    void bridge.close().finally(() => app.quit());
  });
}

void main();
