// The window's entry: the BerthApi comes from the Electron preload (window.berth) or, in a
// browser on `berth serve`, from the HTTP client with the page's token.
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

import type { BerthApi } from '../../app/api/bridge';
import { createHttpBerthApi, tokenFromLocation } from '../../app/api/bridge-http';
import { App } from './App';
import { applyEvents, connectCache } from './cache';
import { ApiContext } from './context';
import './styles.css';

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      // The cache is kept current by events; nothing refetches on its own.
      queries: { staleTime: Infinity, refetchOnWindowFocus: false, refetchOnReconnect: false, retry: 1 },
    },
  });
}

function start(): void {
  const root = document.getElementById('root');
  if (!root) return;
  const client = createQueryClient();
  const preload = (window as unknown as { berth?: BerthApi }).berth;
  let api: BerthApi;
  if (preload) api = preload;
  else {
    const token = tokenFromLocation();
    if (!token) {
      root.textContent = 'This page needs the address berth serve printed (it carries the access token).';
      return;
    }
    let connectedBefore = false;
    api = createHttpBerthApi({
      token,
      // After the event stream drops and comes back, events may have been missed: reload
      // everything once.
      onConnection: (connected) => {
        if (connected && connectedBefore) void client.invalidateQueries();
        if (connected) connectedBefore = true;
      },
    });
  }
  connectCache(api, client);
  // `npm run bench:ui` opens the window with ?bench: it reads the list's commit times and
  // drives the cache directly (test/bench/ui-bench.ts).
  let onListCommit: (() => void) | undefined;
  if (new URLSearchParams(location.search).has('bench')) {
    const bench = { client, api, applyEvents, listCommits: [] as number[] };
    (window as unknown as { __berthBench?: typeof bench }).__berthBench = bench;
    onListCommit = () => bench.listCommits.push(performance.now());
  }
  createRoot(root).render(
    <StrictMode>
      <ApiContext.Provider value={api}>
        <QueryClientProvider client={client}>
          <App {...(onListCommit ? { onListCommit } : {})} />
        </QueryClientProvider>
      </ApiContext.Provider>
    </StrictMode>,
  );
}

start();
