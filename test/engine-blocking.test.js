// Blocking and mixed I/O modes of the Engine, raw TCP, on real loopback
// sockets against Node's own net clients: every connection read by a thread
// of its own (counted in /proc/self/task), echo of exact bytes both ways with
// backpressure, the close reporting of the blocking column for raw TCP,
// deadlines, dialing, Unix sockets, the mixed mode's threshold, 2,000
// connections opened and closed concurrently with no thread and no
// descriptor left behind, and the races: a close while the reader is inside
// its read, a reset while JS writes, stop() while readers read, a connection
// closed from its own callbacks.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine, EOFError, NetClosedError, SysError, TimeoutError } from '../dist/index.js';
import { fdCount, sleep, until, pattern } from './helpers/engine.js';

t.setTimeout(120000);

const threadCount = () => fs.readdirSync('/proc/self/task').length;

/** Engine on 127.0.0.1:0; records opens and closes; stops at teardown. */
async function serve(t, options = {}) {
  const ctx = { opens: [], closes: [], byConn: new Map() };
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    ioMode: 'blocking',
    onData: (c, d) => c.write(d),
    ...options,
    onOpen(c) {
      ctx.opens.push(c);
      options.onOpen?.(c);
    },
    onClose(c, err) {
      ctx.closes.push({ conn: c, err });
      ctx.byConn.set(c, (ctx.byConn.get(c) ?? 0) + 1);
      options.onClose?.(c, err);
    },
  });
  await engine.start();
  ctx.engine = engine;
  ctx.port = Number(engine.addresses()[0].split(':').pop());
  t.teardown(() => engine.stop());
  return ctx;
}

function connect(port) {
  const sock = net.connect(port, '127.0.0.1');
  const c = { sock, rx: [], rxLen: 0, ended: false, error: null, closed: false };
  sock.on('data', (d) => {
    c.rx.push(d);
    c.rxLen += d.length;
  });
  sock.on('end', () => (c.ended = true));
  sock.on('error', (e) => (c.error = e));
  sock.on('close', () => (c.closed = true));
  c.ready = new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return c;
}

/** The server's Conn for a client socket. */
const connOf = (s, client) => s.opens.find((c) => c.remoteAddr === `127.0.0.1:${client.sock.localPort}`);

function errIs(t, err, cls, message) {
  t.type(err, cls, `onClose: ${cls.name}`);
  if (message !== undefined) t.equal(err?.message, message);
}

t.test('blocking: a thread per connection, exact echo, stats', async (t) => {
  const threads0 = threadCount();
  const s = await serve(t);
  const clients = [];
  for (let i = 0; i < 8; i++) clients.push(connect(s.port));
  await Promise.all(clients.map((c) => c.ready));
  await until(() => s.opens.length === 8, 3000, '8 opens');
  t.ok(s.opens.every((c) => c.ioMode === 'blocking'), 'every connection is blocking');
  t.equal(s.engine.stats().blockingOnline, 8, 'stats().blockingOnline');
  t.equal(threadCount() - threads0, 8, 'one thread per connection');
  t.ok(s.engine.stats().readerThreadBytes >= 8 * 80 * 1024, `reader threads reserve ${s.engine.stats().readerThreadBytes} bytes`);
  // 1 MiB each way per connection, in odd-sized writes; every byte checked.
  const total = 1 << 20;
  for (const [i, c] of clients.entries()) {
    for (let off = 0; off < total; off += 7919) c.sock.write(pattern(i * 7 + off, Math.min(7919, total - off)));
  }
  await until(() => clients.every((c) => c.rxLen >= total), 20000, 'every echo');
  for (const [i, c] of clients.entries()) t.ok(Buffer.concat(c.rx).equals(pattern(i * 7, total)), `client ${i}: 1 MiB echoed exactly`);
  for (const c of clients) c.sock.end();
  await until(() => s.closes.length === 8, 5000, '8 closes');
  for (const { err } of s.closes) errIs(t, err, EOFError, 'EOF');
  await until(() => threadCount() === threads0, 3000, 'the threads to exit');
  t.equal(s.engine.stats().blockingOnline, 0);
  t.equal(s.engine.stats().readerThreadsStarted, 8);
});

t.test('blocking: 32 MiB to a slow reader: backpressure, drain, every byte in order', async (t) => {
  const total = 32 << 20;
  let written = 0;
  let maxBuffered = 0;
  let drains = 0;
  const pump = (c) => {
    while (written < total && c.bufferedAmount < 4 << 20) {
      const n = Math.min(256 * 1024, total - written);
      c.write(pattern(written, n));
      written += n;
      maxBuffered = Math.max(maxBuffered, c.bufferedAmount);
    }
    if (written === total) c.close();
  };
  const s = await serve(t, {
    onOpen: (c) => {
      c.onDrain(() => {
        drains++;
        pump(c);
      });
      pump(c);
    },
  });
  const c = connect(s.port);
  c.sock.pause();
  await until(() => maxBuffered > 1 << 20, 5000, 'the queue to fill');
  let got = 0;
  let ok = true;
  c.sock.removeAllListeners('data');
  c.sock.on('data', (d) => {
    if (!d.equals(pattern(got, d.length))) ok = false;
    got += d.length;
    c.sock.pause();
    setImmediate(() => c.sock.resume()); // slow, not stalled
  });
  c.sock.resume();
  await until(() => c.closed, 60000, 'the whole stream');
  t.equal(got, total, '32 MiB arrived');
  t.ok(ok, 'in order, byte for byte');
  t.ok(drains > 0, `drain fired ${drains} times`);
  t.ok(maxBuffered > 1 << 20, `bufferedAmount rose to ${maxBuffered}`);
  await until(() => s.closes.length === 1, 3000, 'onClose');
  // close() after everything was written: the reader reports our close.
  errIs(t, s.closes[0].err, NetClosedError, 'use of closed network connection');
});

t.test('blocking: the close contract for raw TCP', async (t) => {
  const cases = [
    ['peer FIN', (c) => c.sock.end(), EOFError, 'EOF'],
    ['peer reset', (c) => c.sock.resetAndDestroy(), SysError, 'connection reset by peer'],
    ['close() while the reader is inside its read', (c, conn) => conn.close(), NetClosedError, 'use of closed network connection'],
    ['read deadline', (c, conn) => conn.setReadDeadline(Date.now() + 100), TimeoutError, 'i/o timeout'],
  ];
  for (const [name, act, cls, message] of cases) {
    await t.test(name, async (t) => {
      const threads0 = threadCount();
      const s = await serve(t);
      const c = connect(s.port);
      await c.ready;
      await until(() => s.opens.length === 1, 3000, 'open');
      await sleep(10); // the reader is blocked in recv() now
      act(c, s.opens[0]);
      await until(() => s.closes.length === 1, 3000, 'onClose');
      errIs(t, s.closes[0].err, cls, message);
      await sleep(20);
      t.equal(s.byConn.get(s.opens[0]), 1, 'onClose exactly once');
      t.throws(() => s.opens[0].write('x'), NetClosedError, 'write after close throws');
      await until(() => threadCount() === threads0, 3000, 'the thread to exit');
      if (name !== 'peer reset') await until(() => c.closed, 3000, 'the client to see the close');
    });
  }
  await t.test('closeWithError(e) and closeAndClean(e): e, with FIN and RST', async (t) => {
    const s = await serve(t);
    const a = connect(s.port);
    const b = connect(s.port);
    await until(() => s.opens.length === 2, 3000, 'opens');
    await Promise.all([a.ready, b.ready]);
    const ca = connOf(s, a);
    const cb = connOf(s, b);
    const e1 = new Error('one');
    const e2 = new Error('two');
    ca.write('bye');
    ca.closeWithError(e1);
    cb.closeAndClean(e2);
    await until(() => s.closes.length === 2, 3000, 'onClose');
    t.equal(s.closes.find((x) => x.conn === ca).err, e1);
    t.equal(s.closes.find((x) => x.conn === cb).err, e2);
    await until(() => a.closed && b.closed, 3000, 'the clients');
    t.equal(Buffer.concat(a.rx).toString(), 'bye', 'written before the close: delivered');
    t.ok(a.ended && a.error === null, 'closeWithError: FIN');
    t.equal(b.error?.code, 'ECONNRESET', 'closeAndClean: RST');
  });
  await t.test('write deadline, the peer reads nothing: i/o timeout', async (t) => {
    const s = await serve(t, { onOpen: (c) => c.setWriteDeadline(Date.now() + 300) });
    const c = connect(s.port);
    c.sock.pause();
    await until(() => s.opens.length === 1, 3000, 'open');
    const big = Buffer.alloc(1 << 20, 1);
    for (let i = 0; i < 16; i++) s.opens[0].write(big);
    await until(() => s.closes.length === 1, 5000, 'onClose');
    errIs(t, s.closes[0].err, TimeoutError, 'i/o timeout');
    c.sock.destroy();
  });
});

t.test('blocking: stop() while every reader is blocked in its read', async (t) => {
  const threads0 = threadCount();
  const fds0 = fdCount();
  const s = await serve(t);
  const clients = Array.from({ length: 50 }, () => connect(s.port));
  await Promise.all(clients.map((c) => c.ready));
  await until(() => s.opens.length === 50, 5000, 'opens');
  t.equal(threadCount() - threads0, 50);
  await s.engine.stop();
  t.equal(s.closes.length, 50, 'every connection reported');
  t.ok(s.closes.every((x) => x.err instanceof NetClosedError), 'each with NetClosedError');
  t.equal(threadCount(), threads0, 'every reader thread joined by the time stop() resolves');
  await until(() => clients.every((c) => c.closed), 3000, 'the clients to see the close');
  for (const c of clients) c.sock.destroy();
  await sleep(20);
  t.equal(fdCount(), fds0, 'no descriptor left behind');
});

t.test('blocking: 2,000 connections opened and closed concurrently, no thread or descriptor left behind', async (t) => {
  const N = 2000;
  const threads0 = threadCount();
  const s = await serve(t, { backlog: 4096 });
  const fds0 = fdCount(); // the engine's own: poller, listener, spare
  const clients = [];
  let opened = 0;
  // Open in waves so that the backlog never overflows, then close from both sides at once.
  for (let i = 0; i < N; i += 250) {
    const wave = Array.from({ length: Math.min(250, N - i) }, () => connect(s.port));
    clients.push(...wave);
    await Promise.all(wave.map((c) => c.ready));
    opened += wave.length;
  }
  await until(() => s.opens.length === N, 20000, `${N} opens`);
  t.equal(s.engine.stats().blockingOnline, N, `${N} reader threads`);
  t.equal(threadCount() - threads0, N, `${N} more threads in /proc/self/task`);
  // Half close from the server (close()), half from the client (FIN), all at once.
  for (let i = 0; i < N; i++) {
    if (i % 2 === 0) s.opens[i].close();
    else clients.find((c) => s.opens[i].remoteAddr === `127.0.0.1:${c.sock.localPort}`).sock.end();
  }
  await until(() => s.closes.length === N, 30000, `${N} closes`);
  t.equal(opened, N);
  t.equal([...s.byConn.values()].every((n) => n === 1), true, 'onClose exactly once each');
  await until(() => clients.every((c) => c.closed), 10000, 'every client closed');
  await until(() => threadCount() === threads0, 10000, 'every thread gone');
  t.equal(s.engine.stats().blockingOnline, 0);
  t.equal(s.engine.stats().online, 0);
  t.equal(s.engine.stats().readerThreadsStarted, N);
  await sleep(20);
  t.equal(fdCount(), fds0, 'no descriptor left behind');
});

t.test('blocking: a reset while JS writes', async (t) => {
  let writing = true;
  const s = await serve(t, {
    onOpen: (c) => {
      const tick = () => {
        if (!writing || c.closed) return;
        try {
          c.write(Buffer.alloc(64 * 1024, 7));
        } catch {
          return;
        }
        setImmediate(tick);
      };
      tick();
    },
  });
  for (let i = 0; i < 5; i++) {
    const c = connect(s.port);
    await c.ready;
    await until(() => c.rxLen > 256 * 1024, 5000, 'data flowing');
    c.sock.resetAndDestroy();
  }
  await until(() => s.closes.length === 5, 5000, 'five closes');
  writing = false;
  for (const { err } of s.closes) {
    t.type(err, SysError, `SysError (${err?.code})`);
    t.ok(['ECONNRESET', 'EPIPE'].includes(err?.code), 'the reset, seen by the reader or the writer');
  }
  t.ok([...s.byConn.values()].every((n) => n === 1), 'onClose exactly once each');
});

t.test('blocking: closed from its own callbacks', async (t) => {
  await t.test('close() in onOpen, closeAndClean() in onData, close() in onClose is harmless', async (t) => {
    let n = 0;
    const s = await serve(t, {
      onOpen: (c) => {
        if (n++ === 0) c.close();
      },
      onData: (c) => c.closeAndClean(new Error('from onData')),
      onClose: (c) => c.close(),
    });
    const a = connect(s.port);
    await until(() => s.closes.length === 1, 3000, 'the first close');
    errIs(t, s.closes[0].err, NetClosedError);
    const b = connect(s.port);
    await b.ready;
    b.sock.write('x');
    await until(() => s.closes.length === 2, 3000, 'the second close');
    t.equal(s.closes[1].err.message, 'from onData');
    await until(() => a.closed && b.closed, 3000, 'clients');
  });
});

t.test('blocking: dial() and Unix sockets', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-blk-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sockPath = path.join(dir, 's.sock');
  const server = await serve(t, { addrs: [`unix:${sockPath}`] });
  const got = [];
  const client = new Engine({ ioMode: 'blocking', onData: (c, d) => got.push(Buffer.from(d)) });
  await client.start();
  t.teardown(() => client.stop());
  const c = await client.dial(`unix:${sockPath}`);
  t.equal(c.ioMode, 'blocking', 'the dialed connection is blocking');
  c.write('over unix');
  await until(() => Buffer.concat(got).length === 9, 3000, 'the echo');
  t.equal(Buffer.concat(got).toString(), 'over unix');
  await until(() => server.opens.length === 1, 3000, 'server open');
  t.equal(server.opens[0].ioMode, 'blocking');
  // TCP dial too.
  const tcp = await serve(t);
  const c2 = await client.dial(`127.0.0.1:${tcp.port}`);
  t.equal(c2.ioMode, 'blocking');
  c2.write('over tcp');
  await until(() => Buffer.concat(got).length === 17, 3000, 'the echo');
});

t.test('mixed: blocking up to maxBlockingOnline, then the poller; the places free up', async (t) => {
  const s = await serve(t, { ioMode: 'mixed', maxBlockingOnline: 3 });
  const clients = [];
  for (let i = 0; i < 5; i++) {
    const c = connect(s.port);
    await c.ready;
    clients.push(c);
    await until(() => s.opens.length === i + 1, 3000, 'open');
  }
  t.same(
    s.opens.map((c) => c.ioMode),
    ['blocking', 'blocking', 'blocking', 'nonblocking', 'nonblocking'],
    'the first three are blocking',
  );
  t.equal(s.engine.stats().blockingOnline, 3);
  // Every mode echoes.
  for (const c of clients) c.sock.write('ping');
  await until(() => clients.every((c) => c.rxLen === 4), 3000, 'echoes');
  clients[0].sock.end();
  await until(() => s.closes.length === 1, 3000, 'a blocking one closed');
  errIs(t, s.closes[0].err, EOFError);
  const c6 = connect(s.port);
  await c6.ready;
  await until(() => s.opens.length === 6, 3000, 'the sixth');
  t.equal(s.opens[5].ioMode, 'blocking', 'its place went to the next connection');
  // A local close reports by mode: NetClosedError for a blocking one, null for the poller's.
  s.opens[1].close();
  s.opens[3].close();
  await until(() => s.closes.length === 3, 3000, 'two closes');
  errIs(t, s.closes.find((x) => x.conn === s.opens[1]).err, NetClosedError);
  t.equal(s.closes.find((x) => x.conn === s.opens[3]).err, null, 'the non-blocking one: null');
});

t.test('options: ioMode and maxBlockingOnline are checked', async (t) => {
  t.throws(() => new Engine({ ioMode: 'threads' }), { name: 'TypeError', message: /ioMode must be 'nonblocking', 'blocking' or 'mixed'/ });
  t.throws(() => new Engine({ ioMode: 1 }), TypeError);
  t.throws(() => new Engine({ ioMode: 'mixed', maxBlockingOnline: -1 }), TypeError);
  t.throws(() => new Engine({ readerStackSize: 1024 }), TypeError);
  t.equal(new Engine({}).options.ioMode, 'nonblocking', 'the default');
});
