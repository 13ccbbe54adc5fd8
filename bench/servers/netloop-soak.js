#!/usr/bin/env node
// netloop's soak server (bench/scenarios/soak.js): a WebSocket echo in one I/O mode whose
// keepalive is short (a client that goes silent is closed by its read deadline), which answers
// the text message "close please" with writeClose(1000) (the server-side close path), and which
// writes its engine's stats and the count of onClose errors by class to --stats-file every
// second with its own descriptors and threads (written to a temporary file and renamed, so the
// harness never reads half a file).
//
//   node bench/servers/netloop-soak.js --host H --port P --stats-file F [--mode M]
//        [--max-blocking N] [--keepalive MS]
import { readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'nonblocking' },
    'max-blocking': { type: 'string' },
    keepalive: { type: 'string', default: '10000' },
    'stats-file': { type: 'string' },
  },
});
const dist = process.env.NETLOOP_BENCH_DIST ?? path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'dist');
const { Engine, Upgrader } = await import(pathToFileURL(path.join(path.resolve(dist), 'index.js')).href);

// onClose errors by class (null: a clean close), and the close codes the peers sent.
const closes = {};
const peerCodes = {};
let messages = 0;

const up = new Upgrader({ keepaliveTime: Number(values.keepalive), messageLengthLimit: 1 << 20 });
up.onMessage((c, type, data) => {
  messages++;
  if (c.closed) return;
  if (type === 'text' && data.length === 12 && data.toString() === 'close please') c.writeClose(1000, 'soak');
  else c.writeMessage(type, data);
});
up.onClose((c, err) => {
  const k = err === null ? 'null' : err.closeCode !== undefined ? `${err.name} ${err.closeCode}` : `${err.name} ${err.code}`;
  closes[k] = (closes[k] ?? 0) + 1;
});
up.setCloseHandler((c, code) => {
  peerCodes[code] = (peerCodes[code] ?? 0) + 1;
});

const engine = new Engine({
  addrs: [`${values.host}:${values.port}`],
  upgrader: up,
  ioMode: values.mode,
  ...(values['max-blocking'] ? { maxBlockingOnline: Number(values['max-blocking']) } : {}),
});
await engine.start();
process.stdout.write(`listening ${engine.addresses()[0]}\n`);

const file = values['stats-file'];
const writeStats = () => {
  if (!file) return;
  // Descriptors and threads in the same instant as the engine's counts, so that the harness can
  // judge what connections do not explain (fds - online, threads - blockingOnline): churn moves
  // the counts, a leak moves the rest.
  const fds = readdirSync('/proc/self/fd').length;
  const threads = Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  writeFileSync(`${file}.tmp`, JSON.stringify({ at: Date.now(), stats: engine.stats(), fds, threads, messages, closes, peerCodes }));
  renameSync(`${file}.tmp`, file);
};
// A harness killed outright (a test runner's timeout sends SIGKILL) cannot stop its server:
// an orphan, re-parented away from it, stops itself.
const parent = process.ppid;
const timer = setInterval(() => {
  if (process.ppid !== parent) stop();
  else writeStats();
}, 1000);
writeStats();

const stop = async () => {
  clearInterval(timer);
  await engine.stop();
  writeStats();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
