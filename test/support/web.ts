// HTTP helpers for the berth serve specs: raw requests (to send what a browser would not),
// the error body of a refusal, and a collector of pushed events.
import assert from 'node:assert/strict';
import { request } from 'node:http';

import type { EventPayload, Topic } from '../../app/api/bridge';
import type { HttpBerthApi } from '../../app/api/bridge-http';
import type { WebServer } from '../../app/web';
import { waitUntil } from './berth-home';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function raw(
  server: WebServer,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string; noHost?: boolean },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.port,
        method: options.method ?? 'GET',
        path: options.path,
        headers: options.headers ?? {},
        setHost: !options.noHost,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export const json = { 'content-type': 'application/json' };

export function errorOf(a: Answer): { code: string; message: string } {
  const body = JSON.parse(a.body) as { ok: boolean; error: { code: string; message: string } };
  assert.equal(body.ok, false);
  return body.error;
}

// Collects events of one topic and waits for one that matches.
export class Events<T extends Topic> {
  readonly seen: EventPayload<T>[] = [];
  constructor(api: HttpBerthApi, topic: T) {
    api.subscribe(topic, (p) => this.seen.push(p));
  }
  async waitFor(what: string, match: (p: EventPayload<T>) => boolean, timeoutMs = 15_000): Promise<EventPayload<T>> {
    let found: EventPayload<T> | undefined;
    await waitUntil(what, () => (found = this.seen.find(match)) !== undefined, timeoutMs);
    return found as EventPayload<T>;
  }
}
