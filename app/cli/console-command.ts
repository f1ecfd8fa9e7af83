// `berth vm console NAME`: COM1 on the terminal (raw mode), Ctrl-] detaches; with --json
// the output arrives as events ({"event":"console","data":base64}).
import { BerthError, toErrorBody } from '../api';
import type { Context } from './command';

const DETACH = 0x1d; // Ctrl-]

export async function attachConsole({ manager, args, values, json }: Context): Promise<unknown> {
  const name = args[0] ?? '';
  const stdin = process.stdin;
  let finish: (result: unknown) => void = () => undefined;
  const done = new Promise<unknown>((resolve) => (finish = resolve));
  const emit = (doc: unknown): void => void process.stdout.write(`${JSON.stringify(doc)}\n`);
  const session = await manager.attachConsole(name, {
    replay: values['no-replay'] !== true,
    onData: (bytes) =>
      json ? emit({ event: 'console', data: bytes.toString('base64') }) : process.stdout.write(bytes),
    onEnd: ({ exit, error }) => {
      if (exit) {
        if (!json) process.stderr.write(`\r\n[berth: '${name}' stopped: ${exit.reason} code ${exit.code}]\r\n`);
        finish({ ended: { exit } });
      } else {
        const body = toErrorBody(
          error ?? new BerthError('WORKER_UNREACHABLE', 'the worker closed the console; run berth vm show'),
        );
        if (!json) process.stderr.write(`\r\n[berth: the console ended: ${body.message}]\r\n`);
        finish({ error: body });
      }
    },
  });
  if (!json) {
    process.stderr.write(`[berth: connected to '${name}'; Ctrl-] detaches]\r\n`);
  }
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  // Input is sent in order; detaching waits for what was typed before it.
  let queue = Promise.resolve();
  const send = (bytes: Buffer): void => {
    if (bytes.length === 0) return;
    queue = queue.then(() => session.write(bytes)).catch(() => undefined);
  };
  let detaching = false;
  const detach = (): void => {
    if (detaching) return;
    detaching = true;
    void queue.then(async () => {
      await session.detach();
      if (!json) process.stderr.write(`\r\n[berth: detached from '${name}'; it keeps running]\r\n`);
      finish({ detached: true });
    });
  };
  const onInput = (chunk: Buffer): void => {
    const at = chunk.indexOf(DETACH);
    if (at < 0) return send(chunk);
    send(chunk.subarray(0, at));
    stdin.off('data', onInput);
    detach();
  };
  stdin.on('data', onInput);
  stdin.on('end', () => detach());
  const result = await done;
  if (raw) stdin.setRawMode(false);
  stdin.pause();
  stdin.off('data', onInput);
  if (result && typeof result === 'object' && 'error' in result) {
    const body = (result as { error: { code: 'WORKER_UNREACHABLE'; message: string } }).error;
    throw new BerthError(body.code, body.message);
  }
  return json ? undefined : result;
}
