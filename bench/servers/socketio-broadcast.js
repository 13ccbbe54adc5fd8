// A Socket.IO 4 broadcast server: every client joins the room 'all'; each 'pub' event (the
// generator's connection 0 sends them) is emitted to the room, the sender included.
//
//   node bench/servers/socketio-broadcast.js --host 127.0.0.1 --port P [--redis-servers N]
//
// Without --redis-servers: one process, Socket.IO's in-memory adapter (rooms). With
// --redis-servers N: N Socket.IO server processes (node:cluster workers sharing the port) whose
// rooms go through one Redis with @socket.io/redis-adapter; the primary starts a throwaway
// redis-server (bench/harness/redis-server.js) and stops it on exit.
// Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import cluster from 'node:cluster';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { startRedisServer } from '../harness/redis-server.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'redis-servers': { type: 'string' },
  },
});
const redisServers = values['redis-servers'] === undefined ? 0 : Number(values['redis-servers']);
if (!Number.isInteger(redisServers) || redisServers < 0) {
  console.error('socketio-broadcast: --redis-servers must be a whole number');
  process.exit(2);
}

async function serve(redisUrl) {
  const httpServer = http.createServer();
  const options = { transports: ['websocket'] };
  if (redisUrl) {
    const { createClient } = await import('redis');
    const { createAdapter } = await import('@socket.io/redis-adapter');
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on('error', (err) => console.error(`socketio-broadcast: Redis: ${err.message}`));
    await Promise.all([pub.connect(), sub.connect()]);
    options.adapter = createAdapter(pub, sub);
  }
  const io = new Server(httpServer, options);
  io.on('connection', (socket) => {
    socket.join('all');
    socket.on('pub', (payload) => io.to('all').emit('msg', payload));
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(Number(values.port), values.host, resolve);
  });
  return httpServer.address().port;
}

const stop = () => process.exit(0);
if (redisServers === 0) {
  const port = await serve(undefined).catch((err) => {
    console.error(`socketio-broadcast: ${err.message}`);
    process.exit(1);
  });
  process.stdout.write(`listening ${values.host}:${port} (socket.io rooms, one process)\n`);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, stop);
} else if (cluster.isPrimary) {
  const { url, stopBeforeStart } = await startRedisServer('socketio-broadcast');
  // Workers share the port the primary chose (port 0: a free one, then the same for all).
  const port = Number(values.port) || await new Promise((resolve) => {
    const probe = http.createServer().listen(0, values.host, () => {
      const p = probe.address().port;
      probe.close(() => resolve(p));
    });
  });
  cluster.setupPrimary({ args: [...process.argv.slice(2), '--port', String(port)] });
  let ready = 0;
  const workers = Array.from({ length: redisServers }, () => cluster.fork({ NETLOOP_BENCH_REDIS_URL: url }));
  for (const w of workers) {
    w.on('message', (m) => {
      if (m === 'ready' && ++ready === redisServers) {
        process.stdout.write(`listening ${values.host}:${port} (socket.io, ${redisServers} server processes, @socket.io/redis-adapter on ${url})\n`);
      }
    });
    w.on('exit', (code) => {
      if (ready < redisServers || code) {
        console.error(`socketio-broadcast: a server process exited (code ${code})`);
        process.exit(1);
      }
    });
  }
  const stopAll = () => {
    for (const w of workers) w.process.kill('SIGKILL');
    process.exit(0);
  };
  stopBeforeStart();
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, stopAll);
  process.on('exit', () => { for (const w of workers) w.process.kill('SIGKILL'); });
} else {
  await serve(process.env.NETLOOP_BENCH_REDIS_URL).catch((err) => {
    console.error(`socketio-broadcast: ${err.message}`);
    process.exit(1);
  });
  process.send('ready');
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, stop);
}
