// Talks to a TCP port on this host: sends `chunks` with a pause between them, reads until
// `expectLength` bytes came back, then closes; resolves with what was read.
import { connect } from 'node:net';

export function talk(port: number, chunks: string[], expectLength: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.once('error', reject);
    socket.on('data', (data: string) => {
      got += data;
      if (got.length >= expectLength) socket.end();
    });
    socket.once('close', () => resolve(got));
    socket.once('connect', () => {
      void (async () => {
        for (const chunk of chunks) {
          socket.write(chunk);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
    });
  });
}
