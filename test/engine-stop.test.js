// Engine.stop() with traffic in flight, on real loopback sockets against
// Node's own net clients: from outside and from inside an onData callback.
// Every connection's onClose fires exactly once with null, every client sees
// its connection end, no descriptor is left behind, the port is free again.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Engine, NetClosedError } from '../dist/index.js';
import { fdCount, sleep, until, PERIOD, RING } from './helpers/engine.js';

const KiB = 1024;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function busyWait(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

const pattern = (offset, len) => RING.subarray(offset % PERIOD, (offset % PERIOD) + len);
function matches(offset, data) {
  for (let p = 0; p < data.length; p += MiB) {
    const n = Math.min(MiB, data.length - p);
    if (!data.subarray(p, p + n).equals(pattern(offset + p, n))) return false;
  }
  return true;
}

/** True when a net server can listen on the port again. */
function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (e) => resolve(e.code));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A net client that streams the pattern to the echo server as fast as its
 * write buffer allows and checks every echoed byte against what it sent.
 */
function streamingClient(port, clients) {
  const s = net.connect({ host: '127.0.0.1', port });
  s.st = { sent: 0, got: 0, ok: true, ended: false, error: null, closed: false, stop: false };
  const CHUNK = 16 * KiB;
  const pump = () => {
    while (!s.st.stop && !s.destroyed && s.writable) {
      const more = s.write(pattern(s.st.sent, CHUNK));
      s.st.sent += CHUNK;
      if (!more) return; // 'drain' resumes
    }
  };
  s.on('connect', pump);
  s.on('drain', pump);
  s.on('data', (d) => {
    if (s.st.ok && (!matches(s.st.got, d) || s.st.got + d.length > s.st.sent)) s.st.ok = false;
    s.st.got += d.length;
  });
  s.on('end', () => {
    s.st.ended = true;
    s.st.stop = true;
    s.destroy();
  });
  s.on('error', (e) => {
    s.st.error = e;
    s.st.stop = true;
  });
  s.on('close', () => (s.st.closed = true));
  clients.push(s);
  return s;
}

/** Engine with an echo server that records everything. */
async function echoEngine(t, extra = {}) {
  const ctx = { opens: [], closes: new Map(), writeInClose: [], dataAfterStop: 0, stopCalled: false };
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    ...extra,
    onOpen: (conn) => ctx.opens.push(conn),
    onData(conn, data) {
      if (ctx.stopCalled) ctx.dataAfterStop++;
      if (extra.onData) return extra.onData(conn, data);
      conn.write(data);
    },
    onClose(conn, err) {
      const list = ctx.closes.get(conn) ?? [];
      list.push(err);
      ctx.closes.set(conn, list);
      try {
        conn.write('late');
        ctx.writeInClose.push(null);
      } catch (e) {
        ctx.writeInClose.push(e);
      }
    },
  });
  ctx.engine = engine;
  return ctx;
}

function checkAfterStop(t, ctx, clients, N, fdsBefore, port) {
  t.equal(ctx.opens.length, N, `${N} connections opened`);
  t.same(
    ctx.opens.map((c) => ctx.closes.get(c)?.length ?? 0),
    ctx.opens.map(() => 1),
    'onClose fired exactly once per connection',
  );
  t.ok(
    ctx.opens.every((c) => ctx.closes.get(c)?.[0] === null),
    'every onClose got null',
  );
  t.ok(
    ctx.writeInClose.length === N && ctx.writeInClose.every((e) => e instanceof NetClosedError),
    'conn.write() inside onClose throws NetClosedError',
  );
  const st = ctx.engine.stats();
  t.equal(st.online, 0, 'stats().online is 0');
  t.equal(st.accepted, N, 'stats().accepted');
  t.equal(st.closed, N, 'stats().closed');
  t.equal(st.queuedBytes, 0, 'stats().queuedBytes is 0');
  t.equal(ctx.engine.running, false, 'engine.running is false');
}

// ---------------------------------------------------------------------------

t.test('stop() while 50 clients stream: resolves, closes everything, releases every descriptor', async (t) => {
  const N = 50;
  const clients = [];
  const fdsBefore = fdCount();
  const ctx = await echoEngine(t);
  await ctx.engine.start();
  const port = Number(ctx.engine.addresses()[0].split(':').pop());
  t.teardown(() => {
    for (const s of clients) s.destroy();
    return ctx.engine.stop();
  });
  for (let i = 0; i < N; i++) streamingClient(port, clients);
  await until(() => ctx.opens.length === N, 5000, `${N} onOpen calls`);
  // Every client must make progress while all of them stream (the per-
  // connection read budget exists so that busy peers cannot starve others).
  // Checked as an assertion, so that stop() below is exercised either way.
  const progressed = await until(() => clients.every((s) => s.st.got >= 256 * KiB), 5000, 'progress').then(
    () => true,
    () => false,
  );
  const gots = clients.map((s) => s.st.got).sort((a, b) => a - b);
  t.ok(
    progressed,
    `every client got 256 KiB of echoes within 5 s (least ${gots[0]} bytes, ` +
      `${gots.filter((g) => g === 0).length} got none, most ${gots[N - 1]})`,
  );
  t.ok(clients.every((s) => s.st.ok), 'every echoed byte so far is right');

  ctx.stopCalled = true;
  const t0 = performance.now();
  const stopped = ctx.engine.stop();
  t.equal(ctx.engine.stop(), stopped, 'a second stop() returns the same promise');
  await within(stopped, 5000, 'stop() to resolve');
  t.ok(performance.now() - t0 < 5000, `stop() resolved in ${Math.round(performance.now() - t0)} ms`);
  t.equal(ctx.dataAfterStop, 0, 'no onData after stop()');
  checkAfterStop(t, ctx, clients, N, fdsBefore, port);

  await until(() => clients.every((s) => s.st.closed), 10000, 'every client to see its connection end');
  const how = clients.map((s) => (s.st.ended ? 'end' : s.st.error?.code ?? 'none'));
  t.ok(
    how.every((h) => h === 'end' || h === 'ECONNRESET' || h === 'EPIPE'),
    `every client saw end or reset (${[...new Set(how)].join(', ')})`,
  );
  t.ok(clients.every((s) => s.st.ok), 'every byte echoed before the stop was right');
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind');
  t.equal(await portIsFree(port), true, 'the port is free again');
  await within(ctx.engine.stop(), 1000, 'stop() after stop()');
  t.equal(ctx.engine.stats().online, 0, 'stats() after stop still answers: online 0');
});

t.test('stop() from inside onData while clients stream', async (t) => {
  const N = 20;
  const clients = [];
  const fdsBefore = fdCount();
  let total = 0;
  let stopped;
  const ctx = await echoEngine(t, {
    onData(conn, data) {
      total += data.length;
      if (stopped === undefined && total >= 4 * MiB) {
        ctx.stopCalled = true;
        stopped = ctx.engine.stop();
        return;
      }
      if (!ctx.engine.running) return; // a user's guard: the engine is stopping
      conn.write(data);
    },
  });
  await ctx.engine.start();
  const port = Number(ctx.engine.addresses()[0].split(':').pop());
  t.teardown(() => {
    for (const s of clients) s.destroy();
    return ctx.engine.stop();
  });
  for (let i = 0; i < N; i++) streamingClient(port, clients);
  await until(() => stopped !== undefined, 15000, 'stop() to be called from onData');
  await within(stopped, 5000, 'stop() to resolve');
  checkAfterStop(t, ctx, clients, N, fdsBefore, port);
  await until(() => clients.every((s) => s.st.closed), 10000, 'every client to see its connection end');
  const how = clients.map((s) => (s.st.ended ? 'end' : s.st.error?.code ?? 'none'));
  t.ok(
    how.every((h) => h === 'end' || h === 'ECONNRESET' || h === 'EPIPE'),
    `every client saw end or reset (${[...new Set(how)].join(', ')})`,
  );
  t.ok(clients.every((s) => s.st.ok), 'every byte echoed was right');
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind');
  t.equal(await portIsFree(port), true, 'the port is free again');
});

t.test('stop() from inside onData: the rest of the batch is not delivered as data', async (t) => {
  // Ten clients send at once while the thread is blocked, so that their data
  // comes in one batch; the first onData stops the engine. The connections
  // are closed by then: their data must not reach onData (a write there
  // would throw NetClosedError), as after close().
  const N = 10;
  const clients = [];
  const fdsBefore = fdCount();
  let armed = false;
  let stopped;
  const calls = [];
  const ctx = await echoEngine(t, {
    onData(conn, data) {
      if (!armed) return;
      calls.push(data.toString());
      if (stopped === undefined) stopped = ctx.engine.stop();
    },
  });
  await ctx.engine.start();
  const port = Number(ctx.engine.addresses()[0].split(':').pop());
  t.teardown(() => {
    for (const s of clients) s.destroy();
    return ctx.engine.stop();
  });
  for (let i = 0; i < N; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.st = { ended: false, error: null, closed: false };
    s.on('end', () => (s.st.ended = true));
    s.on('error', (e) => (s.st.error = e));
    s.on('close', () => (s.st.closed = true));
    s.resume();
    clients.push(s);
  }
  await until(() => ctx.opens.length === N && clients.every((s) => !s.connecting), 5000, 'every client connected');
  armed = true;
  clients.forEach((s, i) => s.write(`data-${i}`));
  busyWait(50);
  await until(() => stopped !== undefined, 5000, 'the first onData');
  await within(stopped, 5000, 'stop() to resolve');
  t.equal(calls.length, 1, `onData was called once, not for the closed connections (got ${JSON.stringify(calls)})`);
  checkAfterStop(t, ctx, clients, N, fdsBefore, port);
  await until(() => clients.every((s) => s.st.closed), 5000, 'every client to see its connection end');
  for (const s of clients) s.destroy();
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind');
  t.equal(await portIsFree(port), true, 'the port is free again');
});

t.test('stop() with nothing connected, and before start()', async (t) => {
  const fdsBefore = fdCount();
  const e = new Engine({ addrs: ['127.0.0.1:0'] });
  await e.start();
  const port = Number(e.addresses()[0].split(':').pop());
  t.equal(await portIsFree(port), 'EADDRINUSE', 'the port is taken while running');
  await within(e.stop(), 2000, 'stop()');
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind');
  t.equal(await portIsFree(port), true, 'the port is free again');
  t.same(e.stats(), { online: 0, accepted: 0, dialed: 0, closed: 0, rejected: 0, bytesIn: 0, bytesOut: 0, queuedBytes: 0, blockingOnline: 0, readerThreadsStarted: 0, readerThreadBytes: 0, readPaused: 0, heldBytes: 0, writesSkipped: 0, tlsHandshakes: 0, tlsFailed: 0 }, 'stats all 0');
  const never = new Engine({ addrs: ['127.0.0.1:0'] });
  await within(never.stop(), 1000, 'stop() of an engine never started');
  t.equal(never.running, false, 'not running');
});
