// `netloop client <ws://host:port/path | wss://…>`: a line-oriented WebSocket client on netloop's own
// dial(), so that trying a server needs nothing but this package (Node 20 has no global
// WebSocket without a flag, and `npx wscat` needs the network). Each line of standard input is
// sent as a text message; each message received is printed on standard output, one per line
// (binary as hex). At the end of input it closes with 1000 and exits once the server has
// answered: messages still on their way arrive before the server's close frame.
// What happens to the connection goes to standard error, so standard output is only replies.
import { createInterface } from 'node:readline';
import { dial } from '../websocket/client.js';
import type { WebSocketConn } from '../websocket/conn.js';
import { CloseError } from '../errors.js';

/**
 * `ca`: PEM text to trust for a wss:// server (its CA, or a self-signed certificate itself);
 * without it the server is checked against Node's root certificates, as a browser would.
 */
export async function client(url: string, opts: { quiet: boolean; ca?: Buffer }): Promise<void> {
  const note = (line: string): void => {
    if (!opts.quiet) process.stderr.write(`netloop client: ${line}\n`);
  };
  // Settles once: with onClose's error, or with the reason the connection never opened.
  const done = new Promise<{ opened: boolean; err: Error | null }>((resolve) => {
    dial(url, {
      ...(opts.ca !== undefined ? { tls: { ca: opts.ca } } : {}),
      onMessage: (_c, type, data) => {
        process.stdout.write(type === 'text' ? `${data.toString('utf8')}\n` : `<binary ${data.length} bytes> ${data.toString('hex')}\n`);
      },
      onClose: (c, err) => {
        const info = c.closeInfo;
        note(`closed${info !== null ? ` (${info.code}${info.reason !== '' ? ` ${info.reason}` : ''})` : ''}${err !== null ? `: ${err.message}` : ''}`);
        resolve({ opened: true, err });
      },
    }).then(
      (conn: WebSocketConn) => {
        note(`connected to ${url}; each line is sent as a text message, replies are printed (Ctrl-D to end)`);
        const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
        lines.on('line', (line) => {
          if (!conn.closed) conn.writeMessage('text', line);
        });
        lines.on('close', () => conn.writeClose(1000));
      },
      (err: Error) => {
        process.stderr.write(`netloop client: cannot connect to ${url}: ${err.message}\n`);
        resolve({ opened: false, err });
      },
    );
  });
  const { opened, err } = await done;
  // The server may have closed first, with standard input still open: nothing more to read.
  process.stdin.destroy();
  // Clean: our close answered (null), or the server ending normally or going away.
  const clean = opened && (err === null || (err instanceof CloseError && (err.closeCode === 1000 || err.closeCode === 1001)));
  process.exitCode = clean ? 0 : 1;
}
