#!/usr/bin/env node
// The netloop command: `netloop echo` runs an echo server until SIGINT/SIGTERM.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Engine, type IoMode } from '../index.js'; // index: Engine with its supervisor registered (--workers)
import { Upgrader } from '../websocket/upgrader.js';
import type { SupervisorOptions } from '../workers.js';
import type { Conn } from '../conn.js';
import type { WebSocketConn } from '../websocket/conn.js';
import { reportClose } from './close-report.js';
import { client } from './client.js';
import { tryIt, welcomeHandler } from './welcome.js';

const HELP = `Usage: netloop <command> [options]

Commands:
  demo                Serve a page to look at (a chat room, the engine's live
                      figures, a close lab that plays the close contract in
                      each I/O mode) on one port, with its WebSockets handed
                      to netloop by Node's http server. Open the URL printed.
  echo                Run an echo server until SIGINT or SIGTERM, then stop cleanly.
  client <ws-url>     Connect to a WebSocket server (ws:// or wss://), send each line of standard
                      input as a text message and print every message received;
                      at the end of input close (1000) and exit.
  compare             Play every row of the close-reporting contract against each
                      I/O mode with a real client, print the table observed, and
                      mark (✗) every cell that differs from the contract. Exits 1
                      if any does. The TLS rows use a self-signed certificate
                      made for the run (node:crypto), or --tls-cert/--tls-key.
  bench <scenario>    Run the benchmark harness (a source checkout's bench/run.js);
                      netloop bench --help lists its scenarios and flags.

Options for echo:
  --proto <tcp|ws>    tcp: raw bytes; ws: WebSocket, every message echoed
                      with its type (text or binary).                     [default: tcp]
  --host <addr>       Address to listen on (IPv4, IPv6 or a host name).   [default: 127.0.0.1]
  --port <n>          TCP port; 0 lets the OS choose (printed at start).  [default: 8080]
  --unix <path>       Listen on a Unix domain socket instead of TCP.
  --reuse-port        Set SO_REUSEPORT, so several servers can share the port.
  --mode <m>          I/O mode: nonblocking (the poller), blocking (a thread
                      per connection) or mixed.                           [default: nonblocking]
  --max-blocking <n>  mixed: connections served by a thread, at most.     [default: 1000]
  --log-close         Print one JSON line per closed connection: its mode,
                      what onClose received (class, code, message), what
                      the close handler received, and closeInfo (ws).
  --workers <n>       Run n supervised worker processes sharing the port
                      (SO_REUSEPORT); one that dies is restarted and
                      reported on stderr. 0: in this process.             [default: 0]
  --max-load <n>      Online connections; more are closed at accept
                      (ws: answered 503).                                 [default: 1000000]
  --path <path>       ws: the path that upgrades (others get 404).        [default: any]
                      A plain HTTP GET (no upgrade) gets a page saying how to
                      connect.
  --compression       ws: offer permessage-deflate (RFC 7692).
  --tls-cert <file>   Serve TLS (wss:// for ws) with this certificate chain
                      (PEM, leaf first); needs --tls-key. compare: the TLS
                      rows' certificate.
  --tls-key <file>    The certificate's private key (PEM).
  --tls-ca <file>     client: trust this CA or self-signed certificate
                      (PEM) for a wss:// server, beside Node's root CAs.
  --quiet             Print nothing but errors (client: only the replies).
  -h, --help          Show this help.

Options for demo:
  --host <addr>       Address to listen on.                               [default: 127.0.0.1]
  --port <n>          TCP port; 0 lets the OS choose.                     [default: 8080]
  --mode <m>          The engine's I/O mode for the pages' WebSockets.    [default: mixed]
  --max-blocking <n>  mixed: pages read by a thread, at most; the others
                      by the poller (two windows: one of each).           [default: 1]
  --tls               Serve the page and its socket over netloop's TLS
                      (https://, wss://) with a self-signed certificate
                      made for the run (node:crypto), or with
                      --tls-cert/--tls-key. A browser warns about a
                      self-signed certificate until you accept it.

Examples:
  netloop demo --port 8080
  netloop demo --port 8443 --tls          (npm start -- --tls)
  netloop echo --proto tcp --host 127.0.0.1 --port 9000
  netloop echo --proto ws --port 9001
  netloop echo --proto ws --port 9001 --workers 2
  netloop echo --proto ws --port 9443 --tls-cert cert.pem --tls-key key.pem
  netloop echo --proto ws --port 9001 --mode blocking --log-close
  netloop client ws://127.0.0.1:9001/
  netloop compare
  netloop echo --unix /tmp/echo.sock
`;

function fail(message: string): never {
  process.stderr.write(`netloop: ${message}\n\n${HELP}`);
  process.exit(2);
}

/** --workers: the primary reports on stderr every worker that exits unasked, and its restart. */
function supervisorReports(): SupervisorOptions {
  return {
    onWorkerExit(w) {
      if (w.reason === 'stopped') return;
      const how = w.signal !== null ? `was killed by ${w.signal}` : `exited with code ${w.code}`;
      const why = w.reason === 'crashed' ? '' : w.reason === 'start-failed' ? ` (cannot listen: ${w.error?.message})` : ' (did not start in time)';
      const next = w.restartIn !== null ? `; restarting in ${w.restartIn} ms` : '';
      process.stderr.write(`netloop: worker ${w.id} (pid ${w.pid}) ${how}${why}${next}\n`);
    },
    onWorkerListening(w) {
      if (w.restarts > 0) process.stderr.write(`netloop: worker ${w.id} restarted (pid ${w.pid})\n`);
    },
  };
}

/**
 * The engine, or exit 2 saying why its options were refused (a TLS key that is not the
 * certificate's, a file that is not PEM): the engine checks them, this says so without a stack.
 */
function newEngine(options: ConstructorParameters<typeof Engine>[0]): Engine {
  try {
    return new Engine(options);
  } catch (err) {
    process.stderr.write(`netloop: ${(err as Error).message}\n`);
    return process.exit(2);
  }
}

/** --tls-cert/--tls-key: the engine's tls option (files read now), or none. */
function tlsOption(values: Record<string, string | boolean | undefined>): { cert: Buffer; key: Buffer } | undefined {
  const certFile = values['tls-cert'] as string | undefined;
  const keyFile = values['tls-key'] as string | undefined;
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) fail('--tls-cert and --tls-key go together');
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      return fail(`${flag} ${file}: ${(err as Error).message}`);
    }
  };
  return { cert: read('--tls-cert', certFile), key: read('--tls-key', keyFile) };
}

function portOption(values: Record<string, string | boolean | undefined>): number {
  const text = (values.port as string | undefined) ?? '8080';
  if (!/^\d+$/.test(text) || Number(text) > 65535) fail(`--port ${text}: expected an integer from 0 to 65535`);
  return Number(text);
}

function modeOption(values: Record<string, string | boolean | undefined>, dflt: IoMode): IoMode {
  const mode = (values.mode as string | undefined) ?? dflt;
  if (mode !== 'nonblocking' && mode !== 'blocking' && mode !== 'mixed') fail(`--mode ${mode}: expected nonblocking, blocking or mixed`);
  return mode;
}

function maxBlockingOption(values: Record<string, string | boolean | undefined>, dflt: string): number {
  const text = (values['max-blocking'] as string | undefined) ?? dflt;
  if (!/^\d+$/.test(text)) fail(`--max-blocking ${text}: expected an integer`);
  return Number(text);
}

async function echo(values: Record<string, string | boolean | undefined>): Promise<void> {
  const proto = (values.proto as string | undefined) ?? 'tcp';
  if (proto !== 'tcp' && proto !== 'ws') fail(`--proto ${proto}: expected "tcp" or "ws"`);
  const portText = String(portOption(values));
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  const unix = values.unix as string | undefined;
  const addr = unix !== undefined ? `unix:${unix}` : host.includes(':') ? `[${host}]:${portText}` : `${host}:${portText}`;
  const maxLoadText = (values['max-load'] as string | undefined) ?? '1000000';
  if (!/^\d+$/.test(maxLoadText) || Number(maxLoadText) < 1) fail(`--max-load ${maxLoadText}: expected a positive integer`);
  let quiet = values.quiet === true;
  const workersText = (values.workers as string | undefined) ?? '0';
  if (!/^\d+$/.test(workersText) || Number(workersText) > 1024) fail(`--workers ${workersText}: expected an integer from 0 to 1024`);
  const workers = Number(workersText);
  if (workers > 0 && unix !== undefined) fail('--workers: a Unix socket cannot be shared by several processes; use --port');

  const mode = modeOption(values, 'nonblocking');
  const maxBlocking = maxBlockingOption(values, '1000');
  const logClose = values['log-close'] === true;
  const tls = tlsOption(values);

  const common = {
    addrs: [addr],
    ...(tls ? { tls } : {}),
    reusePort: values['reuse-port'] === true,
    ioMode: mode,
    maxBlockingOnline: maxBlocking,
    ...(workers > 0 ? { workers, supervisor: supervisorReports() } : {}),
  };
  let engine: Engine;
  // The path a client should use: the one that upgrades (any path does without --path).
  const wsPath = values.path !== undefined ? (values.path as string) : '/';
  if (proto === 'ws') {
    const upgrader = new Upgrader({
      maxLoad: Number(maxLoadText),
      ...(values.path !== undefined ? { path: values.path as string } : {}),
      ...(values.compression === true ? { compression: true } : {}),
      // A plain request (a browser pointed at the port) learns how to connect, instead of a 400.
      httpHandler: welcomeHandler(() => engine.addresses()[0] ?? addr, wsPath, tls !== undefined),
    });
    // After our close frame (engine.stop() says 1001 to everyone) messages may
    // still arrive until the peer's close frame; they are not echoed.
    upgrader.onMessage((conn, type, data) => {
      if (!conn.closed) conn.writeMessage(type, data);
    });
    if (logClose) {
      const handlerCalls = new WeakMap<WebSocketConn, { code: number; reason: string }>();
      upgrader.setCloseHandler((conn, code, reason) => handlerCalls.set(conn, { code, reason }));
      upgrader.onClose((conn, err) => logLine(reportClose(conn, err, handlerCalls.get(conn) ?? null, conn)));
    }
    engine = newEngine({ ...common, upgrader });
  } else {
    engine = newEngine({
      ...common,
      maxLoad: Number(maxLoadText),
      // `data` is only valid during the callback; write() copies small
      // buffers at once and sends large ones before the slab is reused.
      onData: (conn, data) => conn.write(data),
      ...(logClose ? { onClose: (conn: Conn, err: Error | null) => logLine(reportClose(conn, err, null)) } : {}),
    });
  }
  if (engine.role === 'worker') quiet = true; // the primary speaks for its workers
  try {
    await engine.start();
  } catch (err) {
    if (engine.role === 'worker') process.exit(1); // the primary reports it
    process.stderr.write(`netloop: cannot ${tls ? 'serve TLS' : 'listen'} on ${addr}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (!quiet) {
    const pids = engine.role === 'primary' ? (await engine.workerStats()).map((w) => w.pid) : [];
    const note = pids.length > 0 ? ` (${pids.length} worker processes, pids ${pids.join(', ')})` : '';
    process.stdout.write(`netloop echo (${proto}${tls ? ' over TLS' : ''}) listening on ${engine.addresses().join(', ')}${note}\n`);
    const first = engine.addresses()[0];
    if (proto === 'ws' && unix === undefined && first !== undefined) process.stdout.write(tryIt(`${tls ? 'wss' : 'ws'}://${first}${wsPath}`, values['tls-cert'] as string | undefined));
  }

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

// `netloop demo`: the page, until SIGINT or SIGTERM.
async function demo(values: Record<string, string | boolean | undefined>): Promise<void> {
  const { startDemo } = await import('./demo/server.js');
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  const port = portOption(values);
  const ioMode = modeOption(values, 'mixed');
  const maxBlockingOnline = maxBlockingOption(values, '1');
  let tls = tlsOption(values);
  const selfSigned = values.tls === true && tls === undefined;
  if (selfSigned) {
    // For localhost, 127.0.0.1 and ::1, valid for a week, kept in memory only.
    const { selfSigned: makeCertificate } = await import('./self-signed.js');
    const made = makeCertificate(['localhost', '127.0.0.1', '::1'], 7, 'netloop demo');
    tls = { cert: Buffer.from(made.cert), key: Buffer.from(made.key) };
  }
  let d;
  try {
    d = await startDemo({ host, port, ioMode, maxBlockingOnline, ...(tls ? { tls } : {}) });
  } catch (err) {
    const busy = (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? ' (another program has the port: try --port 0, or another port)' : '';
    process.stderr.write(`netloop demo: cannot listen on ${host}:${port}: ${(err as Error).message}${busy}\n`);
    process.exit(1);
  }
  const demoServer = d;
  process.stdout.write(`netloop demo listening on ${demoServer.url} (WebSocket ${demoServer.wsUrl}, I/O mode ${ioMode}${ioMode === 'mixed' ? `, reader threads for ${maxBlockingOnline} page(s), the poller beyond` : ''})\n`);
  process.stdout.write(`Open ${demoServer.url} in a browser (two windows to chat); Ctrl-C to stop.\n`);
  if (selfSigned) {
    process.stdout.write(
      'The certificate is self-signed, made for this run: the browser warns first ("Your connection is not private",\n' +
        '"Potential Security Risk Ahead"). Accept it for this address (Chrome: Advanced, then Proceed; Firefox: Advanced,\n' +
        'then Accept the Risk); the page and its wss:// socket then both use it. Nothing is added to the system\'s trust store.\n',
    );
  }
  const shutdown = (): void => {
    process.off('SIGINT', shutdown);
    process.off('SIGTERM', shutdown);
    void demoServer.stop().then(() => process.stdout.write('netloop demo stopped\n'));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

// `netloop bench ...`: the benchmark harness with the same arguments, in a child process so its
// flags, output and exit code stay its own. It lives in bench/ of the source repository (it is
// not in the npm package: it needs the native load generator built from bench/native/).
async function bench(args: string[]): Promise<void> {
  const { spawn } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const runner = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
  if (!existsSync(runner)) {
    process.stderr.write(`netloop: bench: ${runner} not found; the harness comes with the source repository, not the npm package\n`);
    process.exit(2);
  }
  const child = spawn(process.execPath, [runner, ...args], { stdio: 'inherit' });
  // The harness stops its servers on these signals; keep this process alive until it has.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)));
}

function logLine(report: object): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...report })}\n`);
}

async function compare(values: Record<string, string | boolean | undefined>): Promise<void> {
  const tls = tlsOption(values);
  const { compareModes, formatComparison, MODE_COLUMNS } = await import('./compare.js');
  process.stderr.write(`netloop compare: every row of the close contract, in ${MODE_COLUMNS.length} mode columns (mixed: maxBlockingOnline 1)\n`);
  let n = 0;
  const rows = await compareModes((row) => process.stderr.write(`  ${++n}. ${row.event}\n`), tls ? { tls } : {});
  const { table, marked } = formatComparison(rows);
  process.stdout.write(`${table}\n\n${marked === 0 ? 'Every cell matches the contract.' : `${marked} cell(s) differ from the contract (marked ✗).`}\n`);
  if (marked > 0) process.exitCode = 1;
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'bench') return bench(argv.slice(1));
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
        workers: { type: 'string' },
        mode: { type: 'string' },
        'max-blocking': { type: 'string' },
        'log-close': { type: 'boolean' },
        'max-load': { type: 'string' },
        path: { type: 'string' },
        compression: { type: 'boolean' },
        tls: { type: 'boolean' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'tls-ca': { type: 'string' },
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
  if (command === 'demo') return demo(values);
  if (command === 'client') {
    const url = positionals[1];
    if (url === undefined) fail('client: missing the URL (ws://host:port/path)');
    const caFile = values['tls-ca'] as string | undefined;
    let ca: Buffer | undefined;
    if (caFile !== undefined) {
      try {
        ca = readFileSync(caFile);
      } catch (err) {
        return fail(`--tls-ca ${caFile}: ${(err as Error).message}`);
      }
    }
    return client(url, { quiet: values.quiet === true, ca });
  }
  if (command === 'compare') return compare(values);
  fail(`unknown command "${command}"`);
}

await main(process.argv.slice(2));
