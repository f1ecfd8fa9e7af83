// Console capture for specs whose guests count on their console (the test guest's `counter`,
// the Linux initramfs's berth.count): an attached session with its text, the counts in it,
// and waits that say what they saw when they give up.
import type { ConsoleSession, VmManager } from '../../app/services';
import { TextSink, waitUntil } from './berth-home';

export interface CountLine {
  n: number;
  end: number; // index just past the line's newline in the text it was found in
}

// Every complete line `<prefix>N` (ending in \n, \r\n from a Linux tty) in the text, in order.
// A line the text ends in the middle of is not one yet.
export function countLines(text: string, prefix: string): CountLine[] {
  const re = new RegExp(`${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)\\r?\\n`, 'g');
  return [...text.matchAll(re)].map((m) => ({ n: Number(m[1]), end: (m.index ?? 0) + m[0].length }));
}

export function lastCount(text: string, prefix: string): number | undefined {
  return countLines(text, prefix).at(-1)?.n;
}

// Where a sequence of counts is not n, n+1, n+2, ...: undefined when it is.
export function countGap(counts: number[]): string | undefined {
  for (let i = 1; i < counts.length; i++) {
    const prev = counts[i - 1] ?? 0;
    if (counts[i] !== prev + 1) return `${String(counts[i])} follows ${prev}`;
  }
  return undefined;
}

// A console session whose text is kept, and which knows when the worker ended it.
export class CapturedConsole {
  private constructor(
    readonly session: ConsoleSession,
    readonly sink: TextSink,
    private readonly state: { ended: boolean },
  ) {}

  static async attach(manager: VmManager, ref: string, replay = true): Promise<CapturedConsole> {
    const sink = new TextSink();
    const state = { ended: false };
    const session = await manager.attachConsole(ref, {
      onData: sink.push,
      onEnd: () => (state.ended = true),
      replay,
    });
    return new CapturedConsole(session, sink, state);
  }

  get ended(): boolean {
    return this.state.ended;
  }

  get text(): string {
    return this.sink.text;
  }

  async waitForCount(prefix: string, atLeast: number, timeoutMs: number): Promise<number> {
    await waitUntil(
      `${prefix}${atLeast} or more (last seen ${String(lastCount(this.text, prefix))}; console ended with ` +
        `${JSON.stringify(this.text.slice(-300))})`,
      () => (lastCount(this.text, prefix) ?? -1) >= atLeast,
      timeoutMs,
    );
    return lastCount(this.text, prefix) ?? -1;
  }

  // The worker closes the console when it ends (a save, a turn-off): everything it sent is here then.
  async waitForEnd(timeoutMs = 30_000): Promise<void> {
    await waitUntil(
      `the worker to end the console session (console ended with ${JSON.stringify(this.text.slice(-200))})`,
      () => this.state.ended,
      timeoutMs,
    );
  }

  detach(): Promise<void> {
    return this.session.detach();
  }
}
