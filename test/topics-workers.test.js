// Topics across worker processes (lib/pubsub/workers-relay.ts): `new
// Engine({ workers: 3 })` running test/fixtures/topics-worker.js, no adapter
// configured, so the primary relays publishes between the workers. A client
// on each of the three workers (real `ws` clients and Node sockets; the
// kernel's SO_REUSEPORT hash decides which worker gets which, so clients are
// opened until every worker has one); every publish is delivered exactly
// once to every subscriber, in each publisher's order, the publisher
// excluded where asked.
import t from 'tap';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Engine } from '../dist/index.js';
import { sleep, until } from './helpers/engine.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/topics-worker.js', import.meta.url));

async function supervised(t, proto) {
  const engine = new Engine({ addrs: ['127.0.0.1:0'], workers: 3, supervisor: { script: FIXTURE, args: [proto], execArgv: [], stopTimeout: 8000 } });
  t.teardown(() => engine.stop());
  await engine.start();
  return engine;
}

/** Opens clients until one is served by each worker (by the pid each greets with); the extra ones are closed. */
async function onePerWorker(t, open) {
  const byPid = new Map();
  for (let i = 0; i < 60 && byPid.size < 3; i++) {
    const c = await open();
    if (byPid.has(c.pid)) c.close();
    else byPid.set(c.pid, c);
  }
  if (byPid.size < 3) throw new Error(`only ${byPid.size} workers got a client in 60 tries`);
  return [...byPid.values()];
}

t.test('WebSocket: a client on each of 3 workers, every publish delivered exactly once', async (t) => {
  const engine = await supervised(t, 'ws');
  const url = `ws://${engine.addresses()[0]}/`;
  const clients = await onePerWorker(t, async () => {
    const ws = new WebSocket(url);
    t.teardown(() => ws.terminate());
    ws.got = [];
    ws.on('error', () => {});
    await new Promise((resolve, reject) => {
      ws.once('message', (d) => {
        ws.pid = Number(String(d).slice(4));
        ws.on('message', (m) => ws.got.push(String(m)));
        resolve();
      });
      ws.once('error', reject);
    });
    return ws;
  });
  // Each worker told the primary about its subscriber when the connection
  // opened (before its greeting); give the IPC messages a moment to land.
  await sleep(100);
  const N = 200;
  for (let i = 0; i < N; i++) for (const [k, c] of clients.entries()) c.send(`all:${k}-${i}`);
  for (const [k, c] of clients.entries()) c.send(`others:${k}-end`);
  await until(() => clients.every((c) => c.got.length === 3 * N + 2), 15000, 'every delivery');
  await sleep(200); // anything more would be a duplicate
  for (const [k, c] of clients.entries()) {
    t.equal(c.got.length, 3 * N + 2, `client ${k} (pid ${c.pid}): ${3 * N + 2} messages, no duplicate`);
    t.equal(new Set(c.got).size, c.got.length, `client ${k}: each message once`);
    for (let p = 0; p < 3; p++) {
      const fromP = c.got.filter((m) => m.startsWith(`${p}-`));
      const expected = [...Array.from({ length: N }, (_, i) => `${p}-${i}`), ...(p === k ? [] : [`${p}-end`])];
      t.same(fromP, expected, `client ${k}: publisher ${p}'s messages in order${p === k ? ', its own "others:" publish excluded' : ''}`);
    }
  }
});

t.test('raw TCP: a client on each of 3 workers, every publish delivered once to the others', async (t) => {
  const engine = await supervised(t, 'tcp');
  const [host, port] = engine.addresses()[0].split(':');
  const clients = await onePerWorker(t, async () => {
    const s = net.connect({ host, port: Number(port) });
    t.teardown(() => s.destroy());
    s.setEncoding('latin1');
    s.got = '';
    await new Promise((resolve, reject) => {
      s.on('data', (d) => {
        s.got += d;
        if (s.pid === undefined && s.got.includes('\n')) {
          s.pid = Number(s.got.slice(4, s.got.indexOf('\n')));
          s.got = s.got.slice(s.got.indexOf('\n') + 1);
          resolve();
        }
      });
      s.once('error', reject);
    });
    s.close = () => s.destroy();
    return s;
  });
  await sleep(100);
  const N = 100;
  for (let i = 0; i < N; i++) {
    for (const [k, c] of clients.entries()) c.write(`${k}-${i};`);
    await sleep(1);
  }
  const lengthFrom = (k) => Array.from({ length: N }, (_, i) => `${k}-${i};`).join('').length;
  const want = (k) => [0, 1, 2].filter((p) => p !== k).reduce((sum, p) => sum + lengthFrom(p), 0);
  await until(() => clients.every((c, k) => c.got.length >= want(k)), 15000, 'every delivery');
  await sleep(200);
  for (const [k, c] of clients.entries()) {
    t.equal(c.got.length, want(k), `client ${k}: exactly the others' bytes`);
    const items = c.got.split(';').filter(Boolean);
    for (let p = 0; p < 3; p++) {
      const fromP = items.filter((m) => m.startsWith(`${p}-`));
      t.same(fromP, p === k ? [] : Array.from({ length: N }, (_, i) => `${p}-${i}`), `client ${k}: from ${p} ${p === k ? 'nothing (its own)' : 'all, in order'}`);
    }
  }
});
