// netloop's broadcast server: every WebSocket message received is sent to every open connection
// (the sender included), framed once.
//
//   node bench/servers/netloop-broadcast.js --host 127.0.0.1 --port P [--mode nonblocking|blocking|mixed] [--max-blocking N] [--workers N] [--redis auto|URL]
//
// Every connection subscribes to one topic at open, and each message received is published to it
// with Upgrader.publish(): the public topics API frames the message once and hands the same bytes
// to every subscriber's write (no per-connection framing, no copy of the payload in JS).
// --mode sets the Engine's ioMode and --max-blocking its maxBlockingOnline (omitted: the Engine's
// defaults). --workers N runs N supervised worker processes (the script runs again in each): a
// publish in one worker reaches the subscribers of the others through the primary's relay.
// --redis: topics through Redis (netloop/redis) instead of the relay: with --workers N, N
// netloop servers (one per worker process, each with its own adapter and Redis connections)
// sharing one Redis; `auto` starts a throwaway redis-server (no persistence, a free loopback
// port) and stops it on exit, a URL uses yours.
// Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startRedisServer } from '../harness/redis-server.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string' },
    'max-blocking': { type: 'string' },
    workers: { type: 'string' },
    redis: { type: 'string' },
  },
});

// The same build the `netloop` server runs (dist/ next to the CLI the harness uses).
const distDir = process.env.NETLOOP_BENCH_DIST
  ? path.resolve(process.env.NETLOOP_BENCH_DIST)
  : path.join(path.dirname(path.dirname(path.dirname(new URL(import.meta.url).pathname))), 'dist');
const { Engine, Upgrader } = await import(pathToFileURL(path.join(distDir, 'index.js')).href);

// The workers run this script again with the primary's environment: the primary starts Redis
// (for `auto`) and hands its URL down; a worker never starts one.
let stopBeforeStart = () => {};
if (values.redis !== undefined && process.env.NETLOOP_BENCH_REDIS_URL === undefined) {
  if (values.redis === 'auto') {
    const started = await startRedisServer('netloop-broadcast');
    process.env.NETLOOP_BENCH_REDIS_URL = started.url;
    stopBeforeStart = started.stopBeforeStart;
  } else {
    process.env.NETLOOP_BENCH_REDIS_URL = values.redis;
  }
}
let pubsub;
if (process.env.NETLOOP_BENCH_REDIS_URL !== undefined) {
  const { redisPubSub } = await import(pathToFileURL(path.join(distDir, 'pubsub', 'redis.js')).href);
  pubsub = redisPubSub({
    url: process.env.NETLOOP_BENCH_REDIS_URL,
    onGap: (gap) => console.error(`netloop-broadcast: Redis gap ${JSON.stringify(gap)}`),
    onError: (err) => console.error(`netloop-broadcast: Redis: ${err.message}`),
  });
}

const upgrader = new Upgrader({ pubsub });
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
  // Serve only once Redis answers: a publish made before this server's adapter is connected
  // never reaches its subscribers (at most once), and the closed-loop generator would wait for
  // it forever. The primary of --workers serves nothing and needs no connection.
  if (pubsub !== undefined && engine.role !== 'primary') await pubsub.connect();
  await engine.start();
} catch (err) {
  console.error(`netloop-broadcast: ${err.message}`);
  process.exit(1);
}
// The workers share the primary's stdout: only the primary announces itself.
if (engine.role !== 'worker') {
  const how = [
    values.mode,
    values.workers ? `${values.workers} worker processes` : undefined,
    pubsub || values.redis ? `topics through Redis ${process.env.NETLOOP_BENCH_REDIS_URL}` : undefined,
  ].filter(Boolean).join(', ');
  process.stdout.write(`listening ${engine.addresses().join(', ')} (netloop broadcast${how ? `, ${how}` : ''})\n`);
}

stopBeforeStart();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    void engine.stop().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
