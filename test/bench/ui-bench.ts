// npm run bench:ui: the window's list with 500 VMs in Debian's Chromium. The VM summaries and
// stats come through the real bridge client (HTTP + the event stream) from a test server
// that speaks berth serve's protocol with made-up data (500 running VMs cannot run on one
// host), serving the built renderer. Measures, as medians over repeated runs:
//   - first render: the list goes from empty to 500 VMs (cache write -> list committed)
//   - stats update: one stats batch for all 500 rows (cache write -> list committed), and
//     the same batch pushed over the event stream (arrival -> list committed)
// and the cold start (navigation -> first commit of the 500-row list). Prints figures only;
// targets: first render < 100 ms, stats update < 16 ms.
import { randomUUID } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';

import type { VmStats, VmSummary } from '../../app/api/vm';
import { chromiumMissing, launchChromium } from '../support/chromium';
import { repoRoot } from '../support/guest';

const COUNT = Number(process.env['BERTH_BENCH_VMS'] ?? 500);
const RUNS = Number(process.env['BERTH_BENCH_RUNS'] ?? 25);
const staticRoot = join(repoRoot, 'dist', 'renderer');

function stats(i: number, tick: number): VmStats {
  return {
    cpuUsagePercent: (i * 7 + tick * 13) % 100,
    assignedMemoryMiB: 512 + (i % 8) * 256,
    residentBytes: (64 + (i % 32)) << 20,
    uptimeMs: (3600 + i * 17 + tick) * 1000,
    vcpuCount: 1 + (i % 4),
    vcpus: [{ id: 0, cpuTimeMs: tick * 10, exits: { io: 0, mmio: 0, halt: 0, interrupted: 0, shutdown: 0, other: 0 } }],
    disks: [],
    resets: 0,
  };
}

const vms: VmSummary[] = Array.from({ length: COUNT }, (_, i) => ({
  id: randomUUID(),
  name: `vm-${String(i).padStart(3, '0')}`,
  state: 'Running',
  memoryMiB: 512 + (i % 8) * 256,
  processorCount: 1 + (i % 4),
  workerPid: 10_000 + i,
  stats: stats(i, 0),
}));

const answers: Record<string, () => unknown> = {
  'host.info': () => ({
    hostname: 'benchhost',
    platform: process.platform,
    arch: process.arch,
    berthVersion: '0.1.0',
    dataRoot: '/tmp/bench',
    transport: 'web',
  }),
  'vm.list': () => vms,
  'operation.list': () => [],
};

const streams = new Set<ServerResponse>();
function push(topic: string, payload: unknown): void {
  for (const res of streams) res.write(`event: ${topic}\ndata: ${JSON.stringify(payload)}\n\n`);
}

const types: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.map': 'application/json',
};

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/api/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write(`event: hello\ndata: ${JSON.stringify({ clientId: randomUUID() })}\n\n`);
    streams.add(res);
    req.on('close', () => streams.delete(res));
    return;
  }
  if (url.pathname.startsWith('/api/')) {
    const method = url.pathname.slice(5);
    const answer = answers[method];
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify(
        answer ? { ok: true, result: answer() } : { ok: false, error: { code: 'UNKNOWN_METHOD', message: method } },
      ),
    );
    return;
  }
  const file = normalize(join(staticRoot, url.pathname === '/' ? 'index.html' : url.pathname));
  if (!file.startsWith(staticRoot) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
});

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};
const fmt = (xs: number[]) =>
  `median ${median(xs).toFixed(2)} ms (min ${Math.min(...xs).toFixed(2)}, max ${Math.max(...xs).toFixed(2)}, n=${xs.length})`;

// Runs in the page (as a string: the test tsconfig has no DOM types).
const IN_PAGE = `
window.__benchLib = {
  bench: window.__berthBench,
  frame: () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))),
  async committedAfter(n) {
    const b = window.__berthBench;
    const t = performance.now();
    while (b.listCommits.length <= n) {
      if (performance.now() - t > 5000) throw new Error('the list did not commit');
      await new Promise((r) => setTimeout(r, 0));
    }
    return b.listCommits[n];
  },
  async firstRender(runs) {
    const { bench, frame } = window.__benchLib;
    const full = bench.client.getQueryData(['vms']);
    const out = [];
    for (let i = 0; i < runs; i++) {
      bench.client.setQueryData(['vms'], []);
      await frame(); await frame();
      const n = bench.listCommits.length;
      const t0 = performance.now();
      bench.client.setQueryData(['vms'], full.map((v) => ({ ...v })));
      const t1 = await window.__benchLib.committedAfter(n);
      if (document.querySelectorAll('.vm-row').length === 0) throw new Error('no rows rendered');
      out.push(t1 - t0);
    }
    return out;
  },
  async statsUpdate(runs) {
    const { bench, frame } = window.__benchLib;
    const out = [];
    for (let i = 0; i < runs; i++) {
      await frame();
      const list = bench.client.getQueryData(['vms']);
      const items = list.map((v, k) => ({ id: v.id, state: 'Running', stats: { ...v.stats, cpuUsagePercent: (k + i * 7) % 100, uptimeMs: v.stats.uptimeMs + 1000 } }));
      const n = bench.listCommits.length;
      const t0 = performance.now();
      bench.applyEvents(bench.client, [{ topic: 'stats', payload: { at: new Date().toISOString(), items } }]);
      const t1 = await window.__benchLib.committedAfter(n);
      out.push(t1 - t0);
    }
    return out;
  },
  // Arrival of a pushed stats event -> the list committed (includes the wait for the frame).
  armPushed() {
    const { bench } = window.__benchLib;
    window.__pushed = [];
    bench.api.subscribe('stats', () => {
      const n = bench.listCommits.length;
      const t0 = performance.now();
      window.__benchLib.committedAfter(n).then((t1) => window.__pushed.push(t1 - t0));
    });
  },
};
`;

async function main(): Promise<void> {
  const missing = chromiumMissing();
  if (missing) throw new Error(missing);
  if (!existsSync(join(staticRoot, 'index.html')))
    throw new Error('dist/renderer is not built (npm run build:renderer)');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const browser = await launchChromium();
  try {
    const page = await browser.context.newPage();
    // The first row's appearance, seen by a MutationObserver installed before the page runs.
    await page.addInitScript(`
      new MutationObserver((_, obs) => {
        if (document.querySelector('.vm-row')) { window.__firstRow = performance.now(); obs.disconnect(); }
      }).observe(document, { childList: true, subtree: true });
    `);
    const cold: number[] = [];
    for (let i = 0; i < 7; i++) {
      await page.goto(`http://127.0.0.1:${port}/?bench&token=bench`);
      await page.locator('.vm-row').first().waitFor();
      cold.push((await page.evaluate(`window.__firstRow`)) as number);
    }
    const rendered = (await page.evaluate(`document.querySelectorAll('.vm-row').length`)) as number;
    const total = (await page.evaluate(
      `document.querySelector('[role="grid"]').getAttribute('aria-rowcount') - 1`,
    )) as number;
    await page.evaluate(IN_PAGE);
    const first = (await page.evaluate(`window.__benchLib.firstRender(${RUNS})`)) as number[];
    const update = (await page.evaluate(`window.__benchLib.statsUpdate(${RUNS})`)) as number[];
    await page.evaluate(`window.__benchLib.armPushed()`);
    const pushed: number[] = [];
    for (let tick = 1; tick <= RUNS; tick++) {
      push('stats', {
        at: new Date().toISOString(),
        items: vms.map((v, i) => ({ id: v.id, state: 'Running', stats: stats(i, tick) })),
      });
      await new Promise((r) => setTimeout(r, 60));
    }
    await new Promise((r) => setTimeout(r, 200));
    pushed.push(...((await page.evaluate(`window.__pushed`)) as number[]));

    console.log(
      `UI benchmark: ${total} VMs in the list (${rendered} rows in the DOM: virtualized), Chromium ${browser.context.browser()?.version() ?? ''}`,
    );
    console.log(`cold start, navigation -> first rows on screen with ${total} VMs: ${fmt(cold)}`);
    console.log(`first render of the list, cache write -> committed: ${fmt(first)} (target < 100 ms)`);
    console.log(`stats update of every row, cache write -> committed: ${fmt(update)} (target < 16 ms)`);
    console.log(
      `stats update pushed over the event stream, arrival -> committed (incl. waiting for the frame): ${fmt(pushed)}`,
    );
  } finally {
    await browser.close();
    server.close();
    for (const s of streams) s.destroy();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
