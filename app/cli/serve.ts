// `berth serve`: the window's UI and API for a browser on this machine (headless hosts,
// UI tests). Loopback only unless --host names another address; prints the URL with its
// token and serves until interrupted.
import { parseArgs } from 'node:util';

import { toErrorBody } from '../api';
import { isLoopback, startWebServer, type WebServer } from '../web';

export const SERVE_USAGE = 'berth serve [--host ADDRESS] [--port N] [--json]';

export interface ServeOptions {
  argv: string[];
  // Where the URL and warnings go (tests pass their own).
  out?: (text: string) => void;
  err?: (text: string) => void;
  // Resolves when the server should stop (default: SIGINT or SIGTERM).
  until?: Promise<void>;
  onListening?: (server: WebServer) => void;
}

export async function serveMain(options: ServeOptions): Promise<number> {
  const out = options.out ?? ((t: string) => process.stdout.write(`${t}\n`));
  const err = options.err ?? ((t: string) => process.stderr.write(`${t}\n`));
  let values: { host?: string; port?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: options.argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    err(`berth: ${(e as Error).message}\nusage: ${SERVE_USAGE}`);
    return 2;
  }
  if (values.help) {
    out(`usage: ${SERVE_USAGE}\n\nserve the Berth window to a browser on this machine (127.0.0.1 unless --host)`);
    return 0;
  }
  let port = 0;
  if (values.port !== undefined) {
    if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) {
      err(`berth: --port takes a port number (0-65535), not '${values.port}'\nusage: ${SERVE_USAGE}`);
      return 2;
    }
    port = Number(values.port);
  }
  const host = values.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    err(
      `berth: warning: serving on ${host}, not a loopback address: anyone who can reach it and learns the ` +
        'token controls your VMs, and the traffic (token included) is plain HTTP',
    );
  }
  let server: WebServer;
  try {
    server = await startWebServer({ host, port, allowNonLoopback: values.host !== undefined });
  } catch (e) {
    const body = toErrorBody(e);
    if (values.json) out(JSON.stringify({ error: body }));
    else err(`berth: ${body.message}`);
    return 1;
  }
  if (values.json)
    out(JSON.stringify({ url: server.url, origin: server.origin, port: server.port, token: server.token }));
  else out(`Berth is serving on ${server.url}\nOpen that URL in a browser on this machine; Ctrl-C stops it.`);
  options.onListening?.(server);
  await (options.until ??
    new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    }));
  await server.close();
  return 0;
}
