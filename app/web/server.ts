// `berth serve`: the window's API and UI for a browser, over node:http.
//
//   POST /api/<method>   JSON args -> Reply {ok, result | error} (app/api/bridge.ts)
//   GET  /api/events     text/event-stream: first `event: hello` {clientId}, then
//                        `event: <topic>` / `data: <payload JSON>`; ': ping' every 15 s
//   GET  /...            the built renderer (dist/renderer), index.html for app routes
//
// Security (a VM manager is root-equivalent for its user's VMs):
// - Bound to 127.0.0.1 unless the user passes another address, which must be confirmed
//   (allowNonLoopback, `--host` on the command line) and is warned about: plain HTTP.
// - A random 256-bit token, printed in the URL (http://127.0.0.1:PORT/?token=...). Every
//   /api request must carry it in the X-Berth-Token header (compared in constant time); the
//   page keeps it in sessionStorage and strips it from the address bar. A header, not a
//   cookie: cookies are not port-scoped, so any other server on 127.0.0.1 would receive it.
//   The event stream is read with fetch() for the same reason (EventSource sends no headers).
// - Host must be this server's own address and port (127.0.0.1:PORT or localhost:PORT on
//   loopback): a DNS-rebinding page arrives with its own name in Host and is refused.
// - Origin, when sent, must be this server's own origin: another site's page is refused
//   even before the token is looked at. POST needs Content-Type: application/json.
// - HTML goes out with a strict CSP (scripts from self only, no framing, no plugins), and
//   every response with nosniff, no-referrer (the URL holds the token), no-store on /api.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';

import { BerthError, type ErrorBody, type ErrorCode } from '../api';
import { HTTP, type BerthEvent, type Reply } from '../api/bridge';
import { BridgeHost, storageBackend, VmManager, type StorageBackend } from '../services';

export const DEFAULT_HOST = '127.0.0.1';
const MAX_BODY_BYTES = 4 * 1024 * 1024;
// How much of an oversized body is read (and dropped) before the connection is cut.
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;
const PING_MS = 15_000;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  // xterm and React set styles at run time; no inline scripts are allowed.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

export interface WebServerOptions {
  host?: string;
  // 0 (the default) picks a free port.
  port?: number;
  // Required to listen on anything but a loopback address.
  allowNonLoopback?: boolean;
  token?: string;
  // The built renderer; default dist/renderer next to this build.
  staticRoot?: string;
  manager?: VmManager;
  root?: string;
  // The storage services; by default the real ones over `manager`.
  storage?: StorageBackend;
  watchIntervalMs?: number;
}

export interface WebServer {
  readonly url: string; // with the token
  readonly origin: string;
  readonly port: number;
  readonly host: string;
  readonly token: string;
  readonly bridge: BridgeHost;
  close(): Promise<void>;
}

export function defaultStaticRoot(): string {
  return join(__dirname, '..', '..', 'renderer');
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

function hostForUrl(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

const statusFor: Partial<Record<ErrorCode, number>> = {
  INVALID_CONFIG: 400,
  USAGE: 400,
  PROTOCOL: 400,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  AMBIGUOUS: 409,
  NAME_IN_USE: 409,
  INVALID_STATE: 409,
  BUSY: 409,
  SHUTDOWN_TIMEOUT: 504,
  UNSUPPORTED: 422,
  UNKNOWN_METHOD: 404,
  METHOD_NOT_ALLOWED: 405,
  TOO_LARGE: 413,
  WORKER_UNREACHABLE: 503,
};

// The HTTP status of a refusal: from the table, else disk refusals are the request's
// (422; a missing file 404, a file in use 409), else 500.
function statusOf(code: ErrorCode): number {
  const known = statusFor[code];
  if (known !== undefined) return known;
  if (code === 'DISK_NOT_FOUND') return 404;
  if (code === 'DISK_IN_USE' || code === 'IN_USE' || code === 'CONFLICT') return 409;
  if (code.startsWith('DISK_')) return 422;
  return 500;
}

const mimeTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

function commonHeaders(res: ServerResponse): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function refuse(res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  const error: ErrorBody = { code, message };
  sendJson(res, status, { ok: false, error } satisfies Reply);
}

function notAllowed(res: ServerResponse, req: IncomingMessage, path: string, allow: string): void {
  res.setHeader('Allow', allow);
  refuse(res, 405, 'METHOD_NOT_ALLOWED', `${path} does not take ${req.method ?? '?'}; it takes ${allow}`);
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

class BodyTooLarge extends BerthError {
  constructor() {
    super('TOO_LARGE', `the request body is over ${MAX_BODY_BYTES} bytes, the limit of one API request`);
  }
}

// The body, or BodyTooLarge as soon as it is known to exceed the limit (from Content-Length,
// or while reading). The rest of an oversized body is read and dropped, so the client gets
// its answer instead of a reset connection; a body that goes on far past the limit is cut.
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const declared = Number(header(req, 'content-length') ?? NaN);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = declared > MAX_BODY_BYTES;
    if (over) reject(new BodyTooLarge());
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_DRAIN_BYTES) return void req.destroy();
      if (over) return;
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolveBody(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startWebServer(options: WebServerOptions = {}): Promise<WebServer> {
  const host = options.host ?? DEFAULT_HOST;
  if (!isLoopback(host) && !options.allowNonLoopback) {
    throw new BerthError(
      'USAGE',
      `refusing to listen on ${host}: it is not a loopback address, and anyone who can reach it could ` +
        'control your VMs; pass --host explicitly to confirm (the traffic is plain HTTP)',
    );
  }
  const token = options.token ?? randomBytes(32).toString('base64url');
  const staticRoot = resolve(options.staticRoot ?? defaultStaticRoot());
  const manager = options.manager ?? new VmManager(options.root === undefined ? {} : { root: options.root });
  const bridgeOptions: ConstructorParameters<typeof BridgeHost>[0] = { manager, transport: 'web' };
  bridgeOptions.storage = options.storage ?? storageBackend(manager);
  if (options.watchIntervalMs !== undefined) bridgeOptions.watchIntervalMs = options.watchIntervalMs;
  const bridge = new BridgeHost(bridgeOptions);
  const streams = new Set<ServerResponse>();

  let port = 0;
  // Host header values this server answers to (set once the port is known).
  const allowedHosts = new Set<string>();
  const hostAllowed = (value: string | undefined): boolean => {
    if (value === undefined) return false;
    const v = value.toLowerCase();
    if (allowedHosts.has(v)) return true;
    // Listening on every address: any IP literal with our port (rebinding needs a name).
    if (WILDCARD.has(host)) {
      const m = /^(\[[0-9a-f:.]+\]|[0-9.]+):(\d+)$/.exec(v);
      return !!m && Number(m[2]) === port && isIP((m[1] ?? '').replace(/^\[|\]$/g, '')) !== 0;
    }
    return false;
  };

  const handleApi = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    if (!sameToken(header(req, HTTP.tokenHeader), token)) {
      refuse(
        res,
        401,
        'FORBIDDEN',
        `missing or wrong ${HTTP.tokenHeader} header: open the URL berth serve printed (it carries the token)`,
      );
      return;
    }
    if (path === HTTP.eventsPath) {
      if (req.method !== 'GET') return notAllowed(res, req, path, 'GET');
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      const write = (topic: string, payload: unknown): void => {
        res.write(`event: ${topic}\ndata: ${JSON.stringify(payload)}\n\n`);
      };
      const client = bridge.connect((event: BerthEvent) => write(event.topic, event.payload));
      write('hello', { clientId: client.id });
      streams.add(res);
      const ping = setInterval(() => res.write(': ping\n\n'), PING_MS);
      const end = (): void => {
        clearInterval(ping);
        streams.delete(res);
        bridge.disconnect(client.id);
      };
      req.on('close', end);
      res.on('error', end);
      return;
    }
    if (req.method !== 'POST') return notAllowed(res, req, path, 'POST');
    const type = (header(req, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') {
      return refuse(res, 415, 'USAGE', 'API requests must be sent as Content-Type: application/json');
    }
    let args: unknown;
    try {
      const body = await readBody(req);
      args = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        res.setHeader('Connection', 'close');
        return refuse(res, 413, err.code, err.message);
      }
      return refuse(res, 400, 'USAGE', 'the request body is not JSON');
    }
    const method = decodeURIComponent(path.slice(HTTP.apiPrefix.length));
    const clientId = header(req, HTTP.clientHeader);
    const reply = await bridge.invoke(method, args, clientId && bridge.hasClient(clientId) ? clientId : undefined);
    sendJson(res, reply.ok ? 200 : statusOf(reply.error.code), reply);
  };

  const serveStatic = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return notAllowed(res, req, path, 'GET, HEAD');
    let rel = normalize(decodeURIComponent(path)).replace(/^([/\\])+/, '');
    if (rel === '' || rel === '.') rel = 'index.html';
    let file = resolve(staticRoot, rel);
    if (file !== staticRoot && !file.startsWith(staticRoot + sep)) return refuse(res, 404, 'NOT_FOUND', 'not found');
    let stat = await fs.stat(file).catch(() => undefined);
    // App routes (no extension) get the page itself.
    if ((!stat || stat.isDirectory()) && extname(rel) === '') {
      file = join(staticRoot, 'index.html');
      stat = await fs.stat(file).catch(() => undefined);
    }
    if (!stat || !stat.isFile()) {
      if (file === join(staticRoot, 'index.html')) {
        const text =
          '<!doctype html><meta charset="utf-8"><title>Berth</title>' +
          `<p>The Berth window is not built (no ${staticRoot}/index.html): run <code>npm run build</code>. ` +
          'The API is served at /api.</p>';
        res.writeHead(503, {
          'Content-Type': 'text/html; charset=utf-8',
          'Content-Security-Policy': CONTENT_SECURITY_POLICY,
        });
        res.end(text);
        return;
      }
      return refuse(res, 404, 'NOT_FOUND', 'not found');
    }
    const type = mimeTypes[extname(file).toLowerCase()] ?? 'application/octet-stream';
    const headers: Record<string, string | number> = {
      'Content-Type': type,
      'Content-Length': stat.size,
      // Vite names built assets by content hash; the page itself is always fetched anew.
      'Cache-Control': file.endsWith('.html') ? 'no-store' : 'public, max-age=3600',
    };
    if (type.startsWith('text/html')) headers['Content-Security-Policy'] = CONTENT_SECURITY_POLICY;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return void res.end();
    createReadStream(file).pipe(res);
  };

  const server: Server = createServer((req, res) => {
    commonHeaders(res);
    const fail = (err: unknown): void => {
      if (!res.headersSent) refuse(res, 500, 'INTERNAL', (err as Error).message);
      else res.destroy();
    };
    try {
      const hostHeader = header(req, 'host');
      if (!hostAllowed(hostHeader)) {
        return refuse(
          res,
          403,
          'FORBIDDEN',
          `refused: Host ${JSON.stringify(hostHeader ?? '')} is not this server (${[...allowedHosts][0] ?? ''})`,
        );
      }
      const origin = header(req, 'origin');
      if (origin !== undefined) {
        let originHost: string | undefined;
        try {
          const u = new URL(origin);
          originHost = u.protocol === 'http:' ? u.host.toLowerCase() : undefined;
        } catch {
          originHost = undefined;
        }
        if (!originHost || !hostAllowed(originHost)) {
          return refuse(res, 403, 'FORBIDDEN', `refused: requests from ${JSON.stringify(origin)} are not allowed`);
        }
      }
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/api' || path.startsWith(HTTP.apiPrefix)) void handleApi(req, res, path).catch(fail);
      else void serveStatic(req, res, path).catch(fail);
    } catch (err) {
      fail(err);
    }
  });
  server.headersTimeout = 30_000;

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  port = (server.address() as AddressInfo).port;
  const urlHost = hostForUrl(WILDCARD.has(host) ? DEFAULT_HOST : host);
  allowedHosts.add(`${hostForUrl(host)}:${port}`.toLowerCase());
  if (isLoopback(host)) allowedHosts.add(`localhost:${port}`);
  const origin = `http://${urlHost}:${port}`;

  return {
    url: `${origin}/?token=${token}`,
    origin,
    port,
    host,
    token,
    bridge,
    close: async () => {
      for (const res of streams) res.end();
      await bridge.close();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
    },
  };
}
