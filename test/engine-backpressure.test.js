// Engine write path under backpressure, on real loopback sockets against
// Node's own net clients: 64 MiB through a slow reader guided by
// bufferedAmount and onDrain, a single large write split by the kernel, and
// writev of many small buffers. Every byte is checked against a deterministic
// pattern, incrementally.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Engine, EOFError, NetClosedError } from '../dist/index.js';
import { fdCount, sleep, until, PERIOD, RING, pattern } from './helpers/engine.js';

const KiB = 1024;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers

// A deterministic byte pattern with a prime period.

function patternBuffer(offset, len) {
  const out = Buffer.allocUnsafe(len);
  for (let p = 0; p < len; p += MiB) pattern(offset + p, Math.min(MiB, len - p)).copy(out, p);
  return out;
}

function matches(offset, data) {
  for (let p = 0; p < data.length; p += MiB) {
    const n = Math.min(MiB, data.length - p);
    if (!data.subarray(p, p + n).equals(pattern(offset + p, n))) return false;
  }
  return true;
}

/** Engine on 127.0.0.1:0 recording opens and closes; finish() runs the shared checks. */
async function serve(t, options = {}) {
  const fdsBefore = fdCount();
  const ctx = { opens: [], closes: new Map(), writeInClose: [], clients: [], drains: 0 };
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    ...options,
    onOpen(conn) {
      ctx.opens.push(conn);
      options.onOpen?.(conn);
    },
    onDrain(conn) {
      ctx.drains++;
      options.onDrain?.(conn);
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
  await engine.start();
  ctx.port = Number(engine.addresses()[0].split(':').pop());
  let finished = false;
  t.teardown(async () => {
    if (finished) return;
    for (const s of ctx.clients) s.destroy();
    await engine.stop();
  });
  ctx.opened = (n) => until(() => ctx.opens.length >= n, 5000, `${n} onOpen calls`);
  ctx.closed = async (conn, ms = 5000) => {
    await until(() => ctx.closes.has(conn), ms, 'onClose');
    return ctx.closes.get(conn)[0];
  };
  ctx.connect = (opts = {}) => {
    const s = net.connect({ host: '127.0.0.1', port: ctx.port, ...opts });
    s.st = { bytes: 0, ok: true, firstBad: -1, ended: false, error: null, closed: false };
    s.on('end', () => (s.st.ended = true));
    s.on('error', (e) => (s.st.error = e));
    s.on('close', () => (s.st.closed = true));
    ctx.clients.push(s);
    return s;
  };
  ctx.finish = async () => {
    finished = true;
    for (const s of ctx.clients) s.destroy();
    await until(() => ctx.clients.every((s) => s.st.closed), 5000, 'every client to close');
    await engine.stop();
    t.equal(engine.stats().online, 0, 'stats().online is 0 after stop');
    t.equal(engine.stats().queuedBytes, 0, 'stats().queuedBytes is 0 after stop');
    t.same(
      ctx.opens.map((c) => ctx.closes.get(c)?.length ?? 0),
      ctx.opens.map(() => 1),
      'onClose called exactly once per connection',
    );
    t.ok(
      ctx.writeInClose.length === ctx.opens.length && ctx.writeInClose.every((e) => e instanceof NetClosedError),
      'conn.write() inside onClose throws NetClosedError',
    );
    t.equal(fdCount(), fdsBefore, 'no descriptor left behind');
  };
  return ctx;
}

// ---------------------------------------------------------------------------

t.test('64 MiB to a slow reader: backpressure engages, drains, every byte in order', async (t) => {
  const TOTAL = 64 * MiB;
  const CHUNK = 256 * KiB;
  const HIGH = 16 * MiB; // stop writing at this many queued bytes, resume on drain
  const w = { off: 0, maxBuffered: 0, connDrains: 0, bufferedAtDrain: [], queuedAtDrain: [], waits: 0 };
  let conn;
  const pump = () => {
    while (w.off < TOTAL) {
      conn.write(pattern(w.off, CHUNK));
      w.off += CHUNK;
      const b = conn.bufferedAmount;
      if (b > w.maxBuffered) w.maxBuffered = b;
      if (b >= HIGH) {
        w.waits++;
        return; // onDrain resumes
      }
    }
  };
  const ctx = await serve(t, {
    onOpen(c) {
      conn = c;
      c.onDrain((cc) => {
        if (cc !== c) w.wrongConn = true;
        w.connDrains++;
        w.bufferedAtDrain.push(cc.bufferedAmount);
        w.queuedAtDrain.push(ctx.engine.stats().queuedBytes);
        pump();
      });
      pump();
    },
  });
  // The client pauses for 10 ms after every 4 MiB it reads.
  const c = ctx.connect();
  c.on('data', (d) => {
    if (c.st.ok && !matches(c.st.bytes, d)) {
      c.st.ok = false;
      c.st.firstBad = c.st.bytes;
    }
    const before = c.st.bytes;
    c.st.bytes += d.length;
    if (Math.floor(before / (4 * MiB)) !== Math.floor(c.st.bytes / (4 * MiB))) {
      c.pause();
      setTimeout(() => c.resume(), 10);
    }
    if (c.st.bytes === TOTAL) c.end();
  });
  await ctx.opened(1);
  const err = await ctx.closed(ctx.opens[0], 60000);
  t.ok(err instanceof EOFError, 'closed by the client after the last byte (EOFError)');
  t.equal(c.st.bytes, TOTAL, 'the client received exactly 64 MiB');
  t.ok(c.st.ok, `every byte in order (first mismatch at ${c.st.firstBad})`);
  t.ok(w.maxBuffered > 8 * MiB, `backpressure engaged: bufferedAmount reached ${(w.maxBuffered / MiB).toFixed(1)} MiB`);
  t.ok(w.waits >= 1, `the writer waited for drain ${w.waits} times`);
  t.ok(w.connDrains >= w.waits, `conn.onDrain fired ${w.connDrains} times`);
  t.equal(ctx.drains, w.connDrains, 'engine onDrain fired as often as conn.onDrain');
  t.notOk(w.wrongConn, 'conn.onDrain handler got its own connection');
  t.ok(w.bufferedAtDrain.every((b) => b === 0), 'bufferedAmount was 0 at every drain');
  t.ok(w.queuedAtDrain.every((b) => b === 0), 'stats().queuedBytes was 0 at every drain');
  const st = ctx.engine.stats();
  t.equal(st.queuedBytes, 0, 'stats().queuedBytes back to 0');
  t.equal(st.bytesOut, TOTAL, 'stats().bytesOut is 64 MiB');
  await ctx.finish();
});

t.test('one 8 MiB write to a paused peer: the kernel takes part, the rest is queued and delivered', async (t) => {
  const TOTAL = 8 * MiB;
  const big = patternBuffer(0, TOTAL);
  const drains = [];
  const ctx = await serve(t, {
    onDrain: (conn) => drains.push(conn.bufferedAmount),
  });
  const c = ctx.connect();
  c.pause();
  c.on('data', (d) => {
    if (c.st.ok && !matches(c.st.bytes, d)) c.st.ok = false;
    c.st.bytes += d.length;
    if (c.st.bytes === TOTAL) c.end();
  });
  await ctx.opened(1);
  const conn = ctx.opens[0];
  t.equal(conn.bufferedAmount, 0, 'nothing buffered before the write');
  conn.write(big);
  const queued = conn.bufferedAmount; // flushes: one sendmsg, the rest queued
  const st = ctx.engine.stats();
  t.ok(queued > 0 && queued < TOTAL, `the kernel took part of it (${TOTAL - queued} bytes), ${queued} queued`);
  t.equal(st.queuedBytes, queued, 'stats().queuedBytes matches bufferedAmount');
  t.equal(st.bytesOut, TOTAL - queued, 'stats().bytesOut counts what the kernel took');
  await sleep(50);
  t.equal(conn.bufferedAmount, queued, 'the queue waits while the peer does not read');
  t.same(drains, [], 'no drain yet');
  c.resume();
  const err = await ctx.closed(conn, 20000);
  t.ok(err instanceof EOFError, 'EOFError after the client ended');
  t.equal(c.st.bytes, TOTAL, 'the client received exactly 8 MiB');
  t.ok(c.st.ok, 'in order');
  t.same(drains, [0], 'onDrain fired once, with bufferedAmount 0');
  t.equal(ctx.engine.stats().queuedBytes, 0, 'stats().queuedBytes back to 0');
  t.equal(ctx.engine.stats().bytesOut, TOTAL, 'stats().bytesOut is 8 MiB');
  await ctx.finish();
});

t.test('writev of many small buffers (and mixed writes) arrives in order', async (t) => {
  // A mix of sizes that crosses every boundary of the write path: more
  // buffers than one sendmsg takes, the out slab (1 MiB) and the command
  // array (8192) filling up mid-writev, large buffers passed by reference,
  // and UTF-8 strings.
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const list = [];
  const expected = [];
  let off = 0;
  for (let i = 0; i < 20000; i++) {
    const kind = rand(100);
    if (kind < 3) {
      const len = 16 * KiB + 1 + rand(48 * KiB); // by reference
      const b = patternBuffer(off, len);
      list.push(b);
      expected.push(b);
      off += len;
    } else if (kind < 13) {
      const s = `#${i}:é€😀;`;
      list.push(s);
      expected.push(Buffer.from(s, 'utf8'));
    } else if (kind < 18) {
      const b = patternBuffer(off, 1 + rand(200));
      const u8 = new Uint8Array(b.buffer, b.byteOffset, b.length); // a plain Uint8Array
      list.push(u8);
      expected.push(b);
      off += b.length;
    } else {
      const b = patternBuffer(off, 1 + rand(300));
      list.push(b);
      expected.push(b);
      off += b.length;
    }
  }
  const head = Buffer.from('head:');
  const tail = patternBuffer(7, 100 * KiB);
  const want = Buffer.concat([head, ...expected, tail]);

  const ctx = await serve(t);
  const c = ctx.connect();
  c.pause();
  const got = [];
  c.on('data', (d) => {
    got.push(d);
    c.st.bytes += d.length;
    if (c.st.bytes >= want.length) c.end();
  });
  await ctx.opened(1);
  const conn = ctx.opens[0];
  conn.write('head:');
  conn.writev(list);
  conn.write(tail);
  const queued = conn.bufferedAmount;
  t.ok(queued > 0, `part of it was queued for the paused peer (${queued} of ${want.length} bytes)`);
  c.resume();
  const err = await ctx.closed(conn, 20000);
  t.ok(err instanceof EOFError, 'EOFError after the client ended');
  const all = Buffer.concat(got);
  t.equal(all.length, want.length, `exactly ${want.length} bytes`);
  t.ok(all.equals(want), 'every buffer, in order, byte for byte');
  t.equal(ctx.engine.stats().queuedBytes, 0, 'stats().queuedBytes back to 0');
  await ctx.finish();
});

t.test('writev to a reading peer: small batches go out at once', async (t) => {
  const ctx = await serve(t, {
    onData(conn, data) {
      // Answer every request with a writev of its bytes, one buffer each.
      conn.writev([...data].map((b) => Buffer.from([b])));
    },
  });
  const c = ctx.connect();
  const got = [];
  c.on('data', (d) => got.push(d));
  await ctx.opened(1);
  const msg = Buffer.from('writev-echo-0123456789'.repeat(50));
  c.write(msg);
  await until(() => Buffer.concat(got).length >= msg.length, 5000, 'the echo');
  t.ok(Buffer.concat(got).equals(msg), 'echoed byte for byte');
  t.equal(ctx.opens[0].bufferedAmount, 0, 'nothing queued');
  t.equal(ctx.drains, 0, 'no drain when nothing was ever queued');
  c.end();
  await ctx.closed(ctx.opens[0]);
  await ctx.finish();
});
