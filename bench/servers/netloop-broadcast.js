// netloop's broadcast server: every WebSocket message received is sent to every open connection
// (the sender included), framed once.
//
//   node bench/servers/netloop-broadcast.js --host 127.0.0.1 --port P [--mode nonblocking|blocking|mixed] [--max-blocking N] [--workers N]
//
// Every connection subscribes to one topic at open, and each message received is published to it
// with Upgrader.publish(): the public topics API frames the message once and hands the same bytes
// to every subscriber's write (no per-connection framing, no copy of the payload in JS).
// --mode sets the Engine's ioMode and --max-blocking its maxBlockingOnline (omitted: the Engine's
// defaults). --workers N runs N supervised worker processes (the script runs again in each): a
// publish in one worker reaches the subscribers of the others through the primary's relay.
// Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string' },
    'max-blocking': { type: 'string' },
    workers: { type: 'string' },
  },
});

// The same build the `netloop` server runs (dist/ next to the CLI the harness uses).
const distDir = process.env.NETLOOP_BENCH_DIST
  ? path.resolve(process.env.NETLOOP_BENCH_DIST)
  : path.join(path.dirname(path.dirname(path.dirname(new URL(import.meta.url).pathname))), 'dist');
const { Engine, Upgrader } = await import(pathToFileURL(path.join(distDir, 'index.js')).href);

const upgrader = new Upgrader({});
upgrader.onOpen((c) => c.subscribe('all'));
upgrader.onMessage((_from, type, data) => upgrader.publish('all', data, type));

const options = { addrs: [`${values.host}:${values.port}`], upgrader };
if (values.mode !== undefined) {
  if (!['nonblocking', 'blocking', 'mixed'].includes(values.mode)) {
    console.error(`netloop-broadcast: --mode ${values.mode}: expected nonblocking, blocking or mixed`);
    process.exit(2);
  }
  options.ioMode = values.mode;
}
if (values['max-blocking'] !== undefined) options.maxBlockingOnline = Number(values['max-blocking']);
if (values.workers !== undefined) options.workers = Number(values.workers);
const engine = new Engine(options);
try {
  await engine.start();
} catch (err) {
  console.error(`netloop-broadcast: ${err.message}`);
  process.exit(1);
}
// The workers share the primary's stdout: only the primary announces itself.
if (engine.role !== 'worker') {
  const how = [values.mode, values.workers ? `${values.workers} worker processes` : undefined].filter(Boolean).join(', ');
  process.stdout.write(`listening ${engine.addresses().join(', ')} (netloop broadcast${how ? `, ${how}` : ''})\n`);
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    void engine.stop().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
