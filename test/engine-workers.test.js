// One engine per worker_thread (the addon is context-aware): two engines at
// once on their own ports and on one port with reusePort, checked with
// Node's own net clients from the main thread; workers that stop and exit
// cleanly, and workers that exit or are terminated with their engine running,
// which must not disturb the main thread or its own engine.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { Engine, EOFError } from '../dist/index.js';
import { fdCount, sleep, until } from './helpers/engine.js';

const INDEX_URL = new URL('../dist/index.js', import.meta.url).href;

function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (e) => resolve(e.code));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// The worker: an echo engine on workerData.addr. Commands from the main
// thread: 'stop' (stop, report, let the thread end by itself), 'exit'
// (process.exit with the engine running), 'stop-exit' (stop() and exit at
// once, while the engine is stopping).
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { Engine, EOFError, NetClosedError } = await import(workerData.url);
  const r = { opens: 0, closeCalls: 0, eof: 0, nulls: 0, other: [], writeInClose: 0, closedConns: new Set() };
  const conns = new Set();
  const engine = new Engine({
    addrs: [workerData.addr],
    reusePort: workerData.reusePort,
    onOpen(conn) { r.opens++; conns.add(conn); },
    onData(conn, data) { conn.write(data); },
    onClose(conn, err) {
      r.closeCalls++;
      conns.delete(conn);
      r.closedConns.add(conn);
      if (err instanceof EOFError) r.eof++;
      else if (err === null) r.nulls++;
      else r.other.push(String(err));
      try { conn.write('late'); } catch (e) { if (e instanceof NetClosedError) r.writeInClose++; }
    },
  });
  try {
    await engine.start();
  } catch (err) {
    parentPort.postMessage({ type: 'start-failed', name: err.name, code: err.code });
    parentPort.unref();
    return;
  }
  parentPort.postMessage({ type: 'listening', addr: engine.addresses()[0] });
  parentPort.on('message', async (cmd) => {
    if (cmd === 'stop') {
      await engine.stop();
      const { closedConns, ...rest } = r;
      parentPort.postMessage({ type: 'stopped', ...rest, distinctClosed: closedConns.size, stats: engine.stats() });
      parentPort.unref();
    } else if (cmd === 'exit') {
      process.exit(7);
    } else if (cmd === 'stop-exit') {
      engine.stop();
      process.exit(8);
    }
  });
})();
`;

function startWorker(t, addr, reusePort = false) {
  const w = new Worker(WORKER, { eval: true, workerData: { url: INDEX_URL, addr, reusePort } });
  w.st = { messages: [], exitCode: undefined, error: null };
  w.on('message', (m) => w.st.messages.push(m));
  w.on('error', (e) => (w.st.error = e));
  w.on('exit', (code) => (w.st.exitCode = code));
  t.teardown(() => (w.st.exitCode === undefined ? w.terminate() : undefined));
  w.next = async (type, ms = 10000) => {
    await until(() => w.st.messages.some((m) => m.type === type) || w.st.exitCode !== undefined, ms, `worker "${type}"`);
    const i = w.st.messages.findIndex((m) => m.type === type);
    if (i < 0) throw new Error(`the worker exited (${w.st.exitCode}, ${w.st.error}) before "${type}"`);
    return w.st.messages.splice(i, 1)[0];
  };
  w.exited = () => until(() => w.st.exitCode !== undefined, 10000, 'the worker to exit').then(() => w.st.exitCode);
  return w;
}

/** A net client that sends msg, checks its exact echo, and ends. Resolves with what happened. */
function echoOnce(port, msg) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const r = { echo: '', ended: false, error: null, localPort: 0 };
    s.setEncoding('latin1');
    s.on('connect', () => {
      r.localPort = s.localPort;
      s.write(msg);
    });
    s.on('data', (d) => {
      r.echo += d;
      if (r.echo.length >= msg.length) s.end();
    });
    s.on('end', () => (r.ended = true));
    s.on('error', (e) => (r.error = e.code));
    s.on('close', () => resolve(r));
  });
}

/** A net client kept open: request() sends and waits for the echo. */
function persistentClient(port, clients) {
  const s = net.connect({ host: '127.0.0.1', port });
  s.st = { text: '', ended: false, error: null, closed: false };
  s.setEncoding('latin1');
  s.on('data', (d) => (s.st.text += d));
  s.on('end', () => (s.st.ended = true));
  s.on('error', (e) => (s.st.error = e.code));
  s.on('close', () => (s.st.closed = true));
  s.request = async (msg) => {
    const start = s.st.text.length;
    s.write(msg);
    await until(() => s.st.text.length >= start + msg.length || s.st.closed, 5000, `the echo of ${msg}`);
    return s.st.text.slice(start);
  };
  clients.push(s);
  return s;
}

async function mainEngine(t) {
  const ctx = { opens: 0, closes: 0 };
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: () => ctx.opens++,
    onData: (conn, data) => conn.write(data),
    onClose: () => ctx.closes++,
  });
  await engine.start();
  t.teardown(() => engine.stop());
  ctx.engine = engine;
  ctx.port = Number(engine.addresses()[0].split(':').pop());
  return ctx;
}

// libuv and worker_threads create some descriptors on first use: run one
// worker through its whole life before counting anything.
t.before(async () => {
  const w = new Worker('0', { eval: true });
  await new Promise((resolve) => w.on('exit', resolve));
});

t.test('two engines in two workers, each on its own port', async (t) => {
  const PER = 16;
  const fdsBefore = fdCount();
  const workers = [startWorker(t, '127.0.0.1:0'), startWorker(t, '127.0.0.1:0')];
  const addrs = await Promise.all(workers.map((w) => w.next('listening').then((m) => m.addr)));
  const ports = addrs.map((a) => Number(a.split(':').pop()));
  t.not(ports[0], ports[1], `two ports (${ports.join(', ')})`);
  const results = await Promise.all(
    ports.flatMap((port, wi) => Array.from({ length: PER }, (_, i) => echoOnce(port, `w${wi}-c${i}-${'x'.repeat(i * 100)}`))),
  );
  t.ok(
    results.every((r, k) => r.echo === `w${Math.floor(k / PER)}-c${k % PER}-${'x'.repeat((k % PER) * 100)}`),
    `all ${2 * PER} clients got their exact echo`,
  );
  t.ok(results.every((r) => r.ended && r.error === null), 'and a clean end');
  // Each client saw 'end': the engine closed the socket after the client's
  // FIN, and reported it in the same batch, before 'stop' can arrive.
  for (const w of workers) w.postMessage('stop');
  const reports = await Promise.all(workers.map((w) => w.next('stopped')));
  reports.forEach((r, i) => {
    t.equal(r.opens, PER, `worker ${i}: onOpen ${PER} times`);
    t.equal(r.closeCalls, PER, `worker ${i}: onClose ${PER} times`);
    t.equal(r.distinctClosed, PER, `worker ${i}: once per connection`);
    t.equal(r.eof, PER, `worker ${i}: every onClose got EOFError (${r.other.join('; ')})`);
    t.equal(r.writeInClose, PER, `worker ${i}: write() inside onClose threw NetClosedError`);
    t.equal(r.stats.online, 0, `worker ${i}: stats().online 0`);
    t.equal(r.stats.accepted, PER, `worker ${i}: stats().accepted ${PER}`);
  });
  const codes = await Promise.all(workers.map((w) => w.exited()));
  t.same(codes, [0, 0], 'both workers exited by themselves with code 0');
  t.same(workers.map((w) => w.st.error), [null, null], 'no worker error');
  t.same(await Promise.all(ports.map(portIsFree)), [true, true], 'both ports are free again');
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind in the process');
});

t.test('two engines in two workers on one port with reusePort', async (t) => {
  const CLIENTS = 64;
  const fdsBefore = fdCount();
  const a = startWorker(t, '127.0.0.1:0', true);
  const addr = (await a.next('listening')).addr;
  const port = Number(addr.split(':').pop());
  const b = startWorker(t, `127.0.0.1:${port}`, true);
  t.equal((await b.next('listening')).addr, addr, 'the second engine listens on the same address');
  const c = startWorker(t, `127.0.0.1:${port}`, false);
  const failed = await c.next('start-failed');
  t.same(failed, { type: 'start-failed', name: 'SysError', code: 'EADDRINUSE' }, 'a third engine without reusePort gets EADDRINUSE');
  t.equal(await c.exited(), 0, 'and its worker ends cleanly');

  const results = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => echoOnce(port, `client-${i};`.repeat(i + 1))));
  t.ok(results.every((r, i) => r.echo === `client-${i};`.repeat(i + 1)), `all ${CLIENTS} clients got their exact echo`);
  t.ok(results.every((r) => r.ended && r.error === null), 'and a clean end');
  a.postMessage('stop');
  b.postMessage('stop');
  const [ra, rb] = await Promise.all([a.next('stopped'), b.next('stopped')]);
  t.equal(ra.opens + rb.opens, CLIENTS, `the two engines accepted ${CLIENTS} connections between them (${ra.opens} + ${rb.opens})`);
  t.ok(ra.opens > 0 && rb.opens > 0, 'both took some');
  t.equal(ra.closeCalls + rb.closeCalls, CLIENTS, 'onClose once per connection');
  t.equal(ra.distinctClosed + rb.distinctClosed, CLIENTS, 'for distinct connections');
  t.equal(ra.eof + rb.eof + ra.nulls + rb.nulls, CLIENTS, `closed by the clients (EOFError) or by stop (null) (${[...ra.other, ...rb.other].join('; ')})`);
  t.same([ra.stats.online, rb.stats.online], [0, 0], 'stats().online 0 in both');
  t.same(await Promise.all([a.exited(), b.exited()]), [0, 0], 'both workers exited with code 0');
  t.equal(await portIsFree(port), true, 'the port is free again');
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind in the process');
});

for (const how of ['process.exit()', 'worker.terminate()', 'process.exit() during stop()']) {
  t.test(`a worker ended by ${how} with its engine running does not disturb the main thread`, async (t) => {
    const fdsBefore = fdCount();
    const clients = [];
    const main = await mainEngine(t);
    const m1 = persistentClient(main.port, clients);
    t.equal(await m1.request('main-before'), 'main-before', 'the main engine echoes');

    const w = startWorker(t, '127.0.0.1:0');
    const port = Number((await w.next('listening')).addr.split(':').pop());
    const wc = persistentClient(port, clients);
    t.equal(await wc.request('worker-hello'), 'worker-hello', 'the worker engine echoes');
    // Keep traffic flowing to the worker while it goes away.
    let ticks = 0;
    const traffic = setInterval(() => {
      if (!wc.st.closed) wc.write(`t${ticks++};`);
    }, 1);
    await sleep(20);
    if (how === 'process.exit()') w.postMessage('exit');
    else if (how === 'worker.terminate()') w.terminate();
    else w.postMessage('stop-exit');
    const code = await w.exited().finally(() => clearInterval(traffic));
    t.equal(code, how === 'process.exit()' ? 7 : how === 'worker.terminate()' ? 1 : 8, `the worker exited with code ${code}`);
    t.equal(w.st.error, null, 'no worker error');
    await until(() => wc.st.closed, 5000, "the worker's client to see its connection end");
    t.ok(wc.st.ended || wc.st.error === 'ECONNRESET' || wc.st.error === 'EPIPE', `the worker's client saw end or reset (${wc.st.ended ? 'end' : wc.st.error})`);
    t.equal(await portIsFree(port), true, "the worker engine's port was released");

    t.equal(await m1.request('main-after'), 'main-after', 'the main engine still echoes on its open connection');
    const m2 = persistentClient(main.port, clients);
    t.equal(await m2.request('main-new'), 'main-new', 'and accepts new ones');
    t.equal(main.engine.stats().online, 2, 'main engine: 2 online');
    for (const s of clients) s.end();
    await until(() => clients.every((s) => s.st.closed), 5000, 'the clients to close');
    await until(() => main.closes === 2, 5000, 'the main onClose calls');
    await main.engine.stop();
    t.equal(main.opens, 2, 'main engine: 2 opens');
    t.equal(main.closes, 2, 'main engine: 2 closes');
    t.equal(fdCount(), fdsBefore, 'no descriptor left behind in the process');
  });
}
