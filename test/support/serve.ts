// `berth serve` for specs that drive the window from this host's Chromium: run here when this
// host's /dev/kvm works, otherwise inside the KVM lab with its port forwarded to this host's
// loopback, so the browser reaches it at the same 127.0.0.1 address either way.
import { spawn } from 'node:child_process';

import { kvmHere, runInLab } from '../lab/lab';
import { cliPath } from './berth-home';
import { freePort } from './ports';

export interface Serve {
  url: string;
  where: 'host' | 'lab';
  stop(): Promise<void>;
}

// Resolves with the URL from serve's first --json line; rejects with what it printed otherwise.
function firstLine(
  onData: (handler: (text: string) => void) => void,
  ended: Promise<string>,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`berth serve did not start in ${timeoutMs / 1000} s: ${out}`)),
      timeoutMs,
    );
    onData((text) => {
      out += text;
      // Complete lines only: output from the lab arrives in chunks that can end mid-line.
      const line = out
        .split('\n')
        .slice(0, -1)
        .find((l) => l.startsWith('{'));
      if (!line) return;
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { url: string }).url);
      } catch (e) {
        reject(new Error(`berth serve printed ${line}: ${(e as Error).message}`));
      }
    });
    void ended.then((why) => {
      clearTimeout(timer);
      reject(new Error(`berth serve ended before it listened (${why}): ${out}`));
    });
  });
}

// home: BERTH_HOME as the serving side sees it (inside the lab, the lab's own /tmp).
export async function startServe(home: string): Promise<Serve> {
  const env = { ...process.env, BERTH_HOME: home };
  if (kvmHere()) {
    const child = spawn(process.execPath, [cliPath, 'serve', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = new Promise<string>((resolve) => child.once('exit', (code) => resolve(`exit ${String(code)}`)));
    const url = await firstLine(
      (h) => {
        child.stdout.on('data', (c: Buffer) => h(c.toString()));
        child.stderr.on('data', (c: Buffer) => h(c.toString()));
      },
      ended,
      15_000,
    );
    return {
      url,
      where: 'host',
      stop: async () => {
        child.kill('SIGTERM');
        await ended;
      },
    };
  }
  const port = await freePort();
  const abort = new AbortController();
  const handlers: ((text: string) => void)[] = [];
  const run = runInLab([process.execPath, cliPath, 'serve', '--json', '--port', String(port)], {
    env,
    forwards: [port],
    signal: abort.signal,
    onOutput: (chunk) => handlers.forEach((h) => h(chunk.toString())),
  });
  const ended = run.then(
    (r) => `lab exit ${r.status}`,
    (e: Error) => e.message,
  );
  // The lab boots, then Node loads the services: slower than on a host with KVM.
  const url = await firstLine((h) => handlers.push(h), ended, 120_000);
  return {
    url,
    where: 'lab',
    stop: async () => {
      abort.abort();
      await ended;
    },
  };
}
