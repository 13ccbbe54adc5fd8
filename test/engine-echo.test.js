// Echo over TCP on loopback: the engine echoes, Node's own `net` client is the
// peer. Exact bytes (random binary, several sizes and chunkings), several
// concurrent clients, UTF-8 strings, writev ordering, IPv6, port 0, address
// formats and the stats counters.
import t from 'tap';
import net from 'node:net';
import crypto from 'node:crypto';
import { Engine, EOFError, NetloopError } from '../dist/index.js';
import { signal } from './helpers/engine.js';

t.setTimeout(20_000);

// An echo engine that counts every callback per connection.
async function echoEngine(t, addrs = ['127.0.0.1:0'], extra = {}) {
  const sig = signal();
  const conns = new Map(); // Conn -> { opens, closes, errs, remoteInClose }
  const closed = [];
  const engine = new Engine({
    addrs,
    onOpen: (c) => {
      const e = conns.get(c) ?? { opens: 0, closes: 0, errs: [], remoteInClose: undefined };
      e.opens++;
      conns.set(c, e);
      sig.poke();
    },
    onData: (c, data) => {
      c.write(data);
      sig.poke();
    },
    onClose: (c, err) => {
      const e = conns.get(c) ?? { opens: 0, closes: 0, errs: [], remoteInClose: undefined };
      e.closes++;
      e.errs.push(err);
      e.remoteInClose = c.remoteAddr;
      conns.set(c, e);
      closed.push(c);
      sig.poke();
    },
    ...extra,
  });
  await engine.start();
  t.teardown(() => engine.stop());
  return { engine, conns, closed, sig };
}

function portOf(addr) {
  const m = /:(\d+)$/.exec(addr);
  return Number(m[1]);
}

function connect(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

// Sends `payload` (in chunks of `chunk` bytes, or one write if chunk is 0),
// reads until as many bytes came back, then ends and waits for 'close'.
async function roundTrip(t, port, payload, chunk, host = '127.0.0.1') {
  const s = await connect(port, host);
  t.teardown(() => s.destroy());
  const localPort = s.localPort; // undefined once the socket is closed
  const got = [];
  let n = 0;
  const received = new Promise((resolve, reject) => {
    s.on('data', (d) => {
      got.push(d);
      n += d.length;
      if (n >= payload.length) resolve();
    });
    s.once('error', reject);
    s.once('end', () => (n >= payload.length ? resolve() : reject(new Error(`EOF after ${n} of ${payload.length} bytes`))));
  });
  if (chunk === 0) {
    s.write(payload);
  } else {
    for (let off = 0; off < payload.length; off += chunk) s.write(payload.subarray(off, off + chunk));
  }
  await received;
  const closed = new Promise((resolve) => s.once('close', resolve));
  s.end();
  await closed;
  return { echoed: Buffer.concat(got), localPort };
}

function assertEOF(t, err) {
  t.type(err, EOFError);
  t.type(err, NetloopError);
  t.equal(err.code, 'NETLOOP_EOF');
  t.equal(err.message, 'EOF');
}

const SIZES = [
  ['1 byte', 1],
  ['1000 bytes', 1000],
  ['64 KiB', 64 * 1024],
  ['64 KiB + 1', 64 * 1024 + 1],
  ['3 MiB', 3 * 1024 * 1024],
];

for (const [label, size] of SIZES) {
  for (const [how, chunk] of [
    ['one write', 0],
    ['small chunks', size >= 1024 * 1024 ? 4093 : 97],
  ]) {
    t.test(`echo ${label}, ${how}`, { timeout: 15_000 }, async (t) => {
      const { engine, conns, closed, sig } = await echoEngine(t);
      const port = portOf(engine.addresses()[0]);
      const payload = crypto.randomBytes(size);
      const { echoed } = await roundTrip(t, port, payload, chunk);
      t.equal(echoed.length, payload.length, 'as many bytes came back as were sent');
      t.ok(echoed.equals(payload), 'the echoed stream equals the sent stream byte for byte');
      await sig.until(() => closed.length === 1);
      t.equal(conns.size, 1, 'one connection');
      const [e] = conns.values();
      t.equal(e.opens, 1, 'onOpen once');
      t.equal(e.closes, 1, 'onClose once');
      assertEOF(t, e.errs[0]);
      const s = engine.stats();
      t.equal(s.bytesIn, size, 'bytesIn');
      t.equal(s.bytesOut, size, 'bytesOut');
      t.equal(s.online, 0, 'online back to 0');
      t.equal(s.queuedBytes, 0, 'nothing queued');
    });
  }
}

t.test('several concurrent clients, each gets its own bytes back; stats are exact', { timeout: 15_000 }, async (t) => {
  const { engine, conns, closed, sig } = await echoEngine(t);
  const port = portOf(engine.addresses()[0]);
  const N = 12;
  const payloads = Array.from({ length: N }, (_, i) => crypto.randomBytes(1 + i * 37_123));
  const results = await Promise.all(payloads.map((p, i) => roundTrip(t, port, p, i % 2 === 0 ? 0 : 1500)));
  for (let i = 0; i < N; i++) {
    t.ok(results[i].echoed.equals(payloads[i]), `client ${i}: exact bytes (${payloads[i].length})`);
  }
  await sig.until(() => closed.length === N);
  t.equal(conns.size, N, 'N distinct connections');
  let badOpen = 0;
  let badClose = 0;
  for (const e of conns.values()) {
    if (e.opens !== 1) badOpen++;
    if (e.closes !== 1) badClose++;
    assertEOF(t, e.errs[0]);
  }
  t.equal(badOpen, 0, 'onOpen exactly once per connection');
  t.equal(badClose, 0, 'onClose exactly once per connection');
  // Each accepted connection's peer is one of our clients.
  const remotes = new Set([...conns.values()].map((e) => e.remoteInClose));
  const expected = new Set(results.map((r) => `127.0.0.1:${r.localPort}`));
  t.same(remotes, expected, 'remoteAddr (read in onClose) matches each client');
  const total = payloads.reduce((a, p) => a + p.length, 0);
  const s = engine.stats();
  t.equal(s.accepted, N, 'accepted');
  t.equal(s.dialed, 0, 'dialed');
  t.equal(s.closed, N, 'closed');
  t.equal(s.rejected, 0, 'rejected');
  t.equal(s.bytesIn, total, 'bytesIn exact');
  t.equal(s.bytesOut, total, 'bytesOut exact');
  t.equal(s.online, 0, 'online back to 0');
  t.equal(s.queuedBytes, 0, 'queuedBytes 0');
  await engine.stop();
  const after = engine.stats();
  t.equal(after.accepted, N, 'stats() keeps the final counts after stop()');
  t.equal(after.bytesIn, total, 'bytesIn after stop()');
});

t.test('tiny budgets (4 KiB slab, 1000-byte read budget, 2 events per iteration) still echo exactly', { timeout: 15_000 }, async (t) => {
  const { engine, conns, closed, sig } = await echoEngine(t, ['127.0.0.1:0'], {
    readBufferSize: 4096,
    readBudget: 1000,
    maxEventsPerIteration: 2,
  });
  const port = portOf(engine.addresses()[0]);
  const N = 6;
  const payloads = Array.from({ length: N }, (_, i) => crypto.randomBytes(200_000 + i * 1001));
  const results = await Promise.all(payloads.map((p, i) => roundTrip(t, port, p, i % 2 === 0 ? 0 : 777)));
  for (let i = 0; i < N; i++) t.ok(results[i].echoed.equals(payloads[i]), `client ${i}: exact bytes`);
  await sig.until(() => closed.length === N);
  for (const e of conns.values()) {
    t.equal(e.opens, 1, 'onOpen once');
    t.equal(e.closes, 1, 'onClose once');
  }
  const total = payloads.reduce((a, p) => a + p.length, 0);
  t.equal(engine.stats().bytesIn, total, 'bytesIn');
  t.equal(engine.stats().bytesOut, total, 'bytesOut');
});

t.test('the client half-closes right after sending: every echoed byte arrives before the FIN', { timeout: 15_000 }, async (t) => {
  // Every byte is read while the echo queues up (the FIN must arrive while
  // the queue is full): no backpressure pause here.
  const { engine, conns, closed, sig } = await echoEngine(t, undefined, { writeHighWaterMark: 0 });
  const port = portOf(engine.addresses()[0]);
  const payload = crypto.randomBytes(16 * 1024 * 1024 + 11); // well past the loopback socket buffers
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  t.teardown(() => s.destroy());
  await new Promise((resolve) => s.once('connect', resolve));
  // Do not read until everything is sent and our FIN is out: the engine's
  // echo backs up into its write queue, and the FIN arrives while it is full.
  s.pause();
  const got = [];
  const ended = new Promise((resolve) => s.once('end', resolve));
  s.on('data', (d) => got.push(d));
  s.pause();
  await new Promise((resolve) => s.end(payload, resolve));
  await sig.until(() => engine.stats().bytesIn === payload.length);
  t.ok(engine.stats().queuedBytes > 0, `the echo is queued as the last bytes (and the FIN behind them) arrive (${engine.stats().queuedBytes} bytes)`);
  s.resume();
  await ended;
  const echoed = Buffer.concat(got);
  t.equal(echoed.length, payload.length, 'every byte came back');
  t.ok(echoed.equals(payload), 'byte for byte');
  await sig.until(() => closed.length === 1);
  const [e] = conns.values();
  t.equal(e.opens, 1, 'onOpen once');
  t.equal(e.closes, 1, 'onClose once');
  assertEOF(t, e.errs[0]);
  t.equal(engine.stats().bytesOut, payload.length, 'bytesOut');
});

t.test('stats while connections are open: online counts them', { timeout: 10_000 }, async (t) => {
  const { engine, conns, closed, sig } = await echoEngine(t);
  const port = portOf(engine.addresses()[0]);
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const s = await connect(port);
    t.teardown(() => s.destroy());
    clients.push(s);
  }
  await sig.until(() => conns.size === 3);
  let s = engine.stats();
  t.equal(s.online, 3, 'online 3');
  t.equal(s.accepted, 3, 'accepted 3');
  t.equal(s.closed, 0, 'closed 0');
  const gone = clients.map((c) => new Promise((resolve) => c.once('close', resolve)));
  for (const c of clients) c.end();
  await Promise.all(gone);
  await sig.until(() => closed.length === 3);
  s = engine.stats();
  t.equal(s.online, 0, 'online 0');
  t.equal(s.closed, 3, 'closed 3');
  t.equal(s.bytesIn, 0, 'no bytes in');
  t.equal(s.bytesOut, 0, 'no bytes out');
});

t.test('strings are written as UTF-8 (multi-byte characters, every write path)', { timeout: 10_000 }, async (t) => {
  const strings = [
    'héllo wörld € 𝄞 日本語 ✓', // short: copied into the out slab
    '日'.repeat(5461), // 16383 bytes: the largest string still copied into the slab
    '😀'.repeat(3000), // 6000 UTF-16 units, 12000 bytes: converted, then copied
    '€'.repeat(6000), // 18000 bytes: converted and handed over by reference
    'a\u0000b\u00ff\u0100\u07ff\u0800\uffff', // boundaries of the 1/2/3-byte forms and NUL
    '', // nothing at all
    '\u{10ffff}z', // the last code point
  ];
  const expected = Buffer.concat(strings.map((s) => Buffer.from(s, 'utf8')));
  let opens = 0;
  let closes = 0;
  let closeErr;
  const sig = signal();
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: (c) => {
      opens++;
      for (const s of strings) c.write(s);
      c.close();
    },
    onClose: (_c, err) => {
      closes++;
      closeErr = err;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const s = await connect(portOf(engine.addresses()[0]));
  t.teardown(() => s.destroy());
  const got = [];
  s.on('data', (d) => got.push(d));
  await new Promise((resolve) => s.once('end', resolve));
  const buf = Buffer.concat(got);
  t.equal(buf.length, expected.length, 'byte length is the UTF-8 length');
  t.ok(buf.equals(expected), 'exact UTF-8 bytes');
  t.equal(buf.toString('utf8'), strings.join(''), 'decodes back to the same text');
  // net ends its side after the engine's FIN (allowHalfOpen false): a graceful close completes.
  await sig.until(() => closes === 1);
  t.equal(opens, 1, 'onOpen once');
  t.equal(closes, 1, 'onClose once');
  t.equal(closeErr, null, 'a delivered close() reports null');
  t.equal(engine.stats().bytesOut, expected.length, 'bytesOut counts UTF-8 bytes');
});

t.test('writev and write keep their order, across every write path', { timeout: 10_000 }, async (t) => {
  const big = crypto.randomBytes(100 * 1024); // by reference
  const huge = crypto.randomBytes(2 * 1024 * 1024 + 3); // larger than the 1 MiB out slab
  const small = crypto.randomBytes(16 * 1024); // exactly the largest copied write
  const u8 = new Uint8Array([1, 2, 3, 255]);
  const list = ['first|', small, 'ü|', big, u8, Buffer.alloc(0), 'mid|', huge, '|last'];
  // Many 16 KiB writes fill the 1 MiB out slab and force a flush in the middle of the tick.
  const many = Array.from({ length: 80 }, (_, i) => Buffer.alloc(16 * 1024, i));
  const expected = Buffer.concat([
    ...list.map((x) => (typeof x === 'string' ? Buffer.from(x) : Buffer.from(x))),
    Buffer.from('after-writev|'),
    ...many,
    Buffer.from('end'),
  ]);
  let opens = 0;
  let closes = 0;
  let closeErr;
  const sig = signal();
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: (c) => {
      opens++;
      c.writev(list);
      c.write('after-writev|');
      for (const b of many) c.write(b);
      c.writev(['end']);
      c.close();
    },
    onClose: (_c, err) => {
      closes++;
      closeErr = err;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const s = await connect(portOf(engine.addresses()[0]));
  t.teardown(() => s.destroy());
  const got = [];
  s.on('data', (d) => got.push(d));
  await new Promise((resolve) => s.once('end', resolve));
  const buf = Buffer.concat(got);
  t.equal(buf.length, expected.length, 'every byte arrived');
  t.ok(buf.equals(expected), 'in the order written');
  await sig.until(() => closes === 1);
  t.equal(opens, 1, 'onOpen once');
  t.equal(closes, 1, 'onClose once');
  t.equal(closeErr, null, 'graceful close delivered: null');
});

t.test('writes to two connections interleaved in one tick stay separate and ordered', { timeout: 10_000 }, async (t) => {
  const sig = signal();
  const open = [];
  let closes = 0;
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: (c) => {
      open.push(c);
      sig.poke();
    },
    onClose: () => {
      closes++;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = portOf(engine.addresses()[0]);
  const a = await connect(port);
  t.teardown(() => a.destroy());
  await sig.until(() => open.length === 1);
  const b = await connect(port);
  t.teardown(() => b.destroy());
  await sig.until(() => open.length === 2);
  const [ca, cb] = open;
  const expA = [];
  const expB = [];
  for (let i = 0; i < 200; i++) {
    const x = crypto.randomBytes(1 + ((i * 7919) % 40_000));
    const y = `b${i};`;
    ca.write(x);
    cb.write(y);
    expA.push(x);
    expB.push(Buffer.from(y));
  }
  ca.close();
  cb.close();
  const read = (s) =>
    new Promise((resolve) => {
      const got = [];
      s.on('data', (d) => got.push(d));
      s.once('end', () => resolve(Buffer.concat(got)));
    });
  const [ga, gb] = await Promise.all([read(a), read(b)]);
  t.ok(ga.equals(Buffer.concat(expA)), 'connection A: exact bytes in order');
  t.ok(gb.equals(Buffer.concat(expB)), 'connection B: exact bytes in order');
  await sig.until(() => closes === 2);
  t.equal(closes, 2, 'onClose once each');
});

t.test('IPv6: listen on [::1]:0', async (t) => {
  const v6 = await new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err) => resolve(err.code));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
  if (v6 !== true) {
    t.skip(`::1 is not available on this machine (listen failed with ${v6})`);
    return;
  }
  t.setTimeout(10_000);
  const { engine, conns, closed, sig } = await echoEngine(t, ['[::1]:0']);
  const addrs = engine.addresses();
  t.equal(addrs.length, 1);
  t.match(addrs[0], /^\[::1\]:\d+$/, 'formatted as [::1]:port');
  const port = portOf(addrs[0]);
  t.not(port, 0, 'the real port, not 0');
  const s = await connect(port, '::1');
  t.teardown(() => s.destroy());
  await sig.until(() => conns.size === 1);
  const [c] = conns.keys();
  const clientPort = s.localPort;
  t.equal(c.localAddr, `[::1]:${port}`, 'localAddr');
  t.equal(c.remoteAddr, `[::1]:${clientPort}`, 'remoteAddr');
  const payload = crypto.randomBytes(200_000);
  const got = [];
  let n = 0;
  const done = new Promise((resolve) =>
    s.on('data', (d) => {
      got.push(d);
      n += d.length;
      if (n >= payload.length) resolve();
    }),
  );
  s.write(payload);
  await done;
  t.ok(Buffer.concat(got).equals(payload), 'exact bytes over IPv6');
  s.end();
  await sig.until(() => closed.length === 1);
  const e = conns.get(c);
  t.equal(e.opens, 1);
  t.equal(e.closes, 1);
  assertEOF(t, e.errs[0]);
  t.equal(e.remoteInClose, `[::1]:${clientPort}`, 'remoteAddr readable in onClose');
});

t.test('port 0: addresses() reports the ports the OS chose', { timeout: 10_000 }, async (t) => {
  const { engine, conns, closed, sig } = await echoEngine(t, ['127.0.0.1:0', '127.0.0.1:0']);
  const addrs = engine.addresses();
  t.equal(addrs.length, 2, 'one address per listener');
  const ports = addrs.map((a) => {
    t.match(a, /^127\.0\.0\.1:\d+$/, `${a} is host:port`);
    return portOf(a);
  });
  t.ok(ports[0] > 0 && ports[1] > 0, 'real ports');
  t.not(ports[0], ports[1], 'two different ports');
  for (const port of ports) {
    const payload = crypto.randomBytes(1234);
    const { echoed } = await roundTrip(t, port, payload, 0);
    t.ok(echoed.equals(payload), `echo through port ${port}`);
  }
  await sig.until(() => closed.length === 2);
  t.equal(conns.size, 2, 'one connection through each listener');
  for (const e of conns.values()) {
    t.equal(e.opens, 1, 'onOpen once');
    t.equal(e.closes, 1, 'onClose once');
  }
  await engine.stop();
  t.same(engine.addresses(), addrs, 'addresses() still answers after stop()');
});

t.test('localAddr and remoteAddr formats; remoteAddr readable inside onClose', { timeout: 10_000 }, async (t) => {
  const sig = signal();
  const seen = [];
  let closes = 0;
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: (c) => {
      // Only localAddr here: remoteAddr is first read inside onClose (the
      // native side must keep the peer address until the close is delivered).
      seen.push({ c, local: c.localAddr, remoteInClose: undefined, err: undefined });
      sig.poke();
    },
    onData: (c, d) => c.write(d),
    onClose: (c, err) => {
      closes++;
      const e = seen.find((x) => x.c === c);
      e.remoteInClose = c.remoteAddr;
      e.err = err;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = portOf(engine.addresses()[0]);
  const s = await connect(port);
  t.teardown(() => s.destroy());
  await sig.until(() => seen.length === 1);
  t.equal(seen[0].local, `127.0.0.1:${port}`, 'localAddr is "127.0.0.1:port"');
  const clientPort = s.localPort;
  s.end();
  await sig.until(() => closes === 1);
  t.equal(seen[0].remoteInClose, `127.0.0.1:${clientPort}`, 'remoteAddr read first in onClose');
  t.equal(seen[0].c.remoteAddr, `127.0.0.1:${clientPort}`, 'and still after it');
  assertEOF(t, seen[0].err);

  // A second connection reads remoteAddr while open: same format.
  const s2 = await connect(port);
  t.teardown(() => s2.destroy());
  await sig.until(() => seen.length === 2);
  const clientPort2 = s2.localPort;
  t.equal(seen[1].c.remoteAddr, `127.0.0.1:${clientPort2}`, 'remoteAddr while open');
  t.equal(seen[1].c.localAddr, `127.0.0.1:${port}`, 'localAddr while open');
  s2.end();
  await sig.until(() => closes === 2);
  t.equal(seen[1].remoteInClose, `127.0.0.1:${clientPort2}`, 'remoteAddr in onClose');
});
