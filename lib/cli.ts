#!/usr/bin/env node
// The netloop command: `netloop echo` runs an echo server until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { Engine } from './engine.js';
import { Upgrader } from './websocket/upgrader.js';

const HELP = `Usage: netloop <command> [options]

Commands:
  echo                Run an echo server until SIGINT or SIGTERM, then stop cleanly.

Options for echo:
  --proto <tcp|ws>    tcp: raw bytes; ws: WebSocket, every message echoed
                      with its type (text or binary).                     [default: tcp]
  --host <addr>       Address to listen on (IPv4, IPv6 or a host name).   [default: 127.0.0.1]
  --port <n>          TCP port; 0 lets the OS choose (printed at start).  [default: 8080]
  --unix <path>       Listen on a Unix domain socket instead of TCP.
  --reuse-port        Set SO_REUSEPORT, so several servers can share the port.
  --max-load <n>      Online connections; more are closed at accept
                      (ws: answered 503).                                 [default: 1000000]
  --path <path>       ws: the path that upgrades (others get 404).        [default: any]
  --compression       ws: offer permessage-deflate (RFC 7692).
  --quiet             Print nothing but errors.
  -h, --help          Show this help.

Examples:
  netloop echo --proto tcp --host 127.0.0.1 --port 9000
  netloop echo --proto ws --port 9001
  netloop echo --unix /tmp/echo.sock
`;

function fail(message: string): never {
  process.stderr.write(`netloop: ${message}\n\n${HELP}`);
  process.exit(2);
}

async function echo(values: Record<string, string | boolean | undefined>): Promise<void> {
  const proto = (values.proto as string | undefined) ?? 'tcp';
  if (proto !== 'tcp' && proto !== 'ws') fail(`--proto ${proto}: expected "tcp" or "ws"`);
  const portText = (values.port as string | undefined) ?? '8080';
  if (!/^\d+$/.test(portText) || Number(portText) > 65535) fail(`--port ${portText}: expected an integer from 0 to 65535`);
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  const unix = values.unix as string | undefined;
  const addr = unix !== undefined ? `unix:${unix}` : host.includes(':') ? `[${host}]:${portText}` : `${host}:${portText}`;
  const maxLoadText = (values['max-load'] as string | undefined) ?? '1000000';
  if (!/^\d+$/.test(maxLoadText) || Number(maxLoadText) < 1) fail(`--max-load ${maxLoadText}: expected a positive integer`);
  const quiet = values.quiet === true;

  const common = { addrs: [addr], reusePort: values['reuse-port'] === true };
  let engine: Engine;
  if (proto === 'ws') {
    const upgrader = new Upgrader({
      maxLoad: Number(maxLoadText),
      ...(values.path !== undefined ? { path: values.path as string } : {}),
      ...(values.compression === true ? { compression: true } : {}),
    });
    upgrader.onMessage((conn, type, data) => conn.writeMessage(type, data));
    engine = new Engine({ ...common, upgrader });
  } else {
    engine = new Engine({
      ...common,
      maxLoad: Number(maxLoadText),
      // `data` is only valid during the callback; write() copies small
      // buffers at once and sends large ones before the slab is reused.
      onData: (conn, data) => conn.write(data),
    });
  }
  try {
    await engine.start();
  } catch (err) {
    process.stderr.write(`netloop: cannot listen on ${addr}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (!quiet) process.stdout.write(`netloop echo (${proto}) listening on ${engine.addresses().join(', ')}\n`);

  const shutdown = (signal: string): void => {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    void engine.stop().then(() => {
      const s = engine.stats();
      if (!quiet) {
        process.stdout.write(
          `netloop echo stopped (${signal}): ${s.accepted} connections, ${s.bytesIn} bytes in, ${s.bytesOut} bytes out\n`,
        );
      }
    });
  };
  const onInt = (): void => shutdown('SIGINT');
  const onTerm = (): void => shutdown('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
}

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        proto: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        unix: { type: 'string' },
        'reuse-port': { type: 'boolean' },
        'max-load': { type: 'string' },
        path: { type: 'string' },
        compression: { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(HELP);
    return;
  }
  const command = positionals[0];
  if (command === undefined) fail('missing command');
  if (command === 'echo') return echo(values);
  fail(`unknown command "${command}"`);
}

await main(process.argv.slice(2));
