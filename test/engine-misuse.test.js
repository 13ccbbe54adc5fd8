// Misuse gets a clear error, never a crash: bad addresses and options, writes
// after a close, wrong write arguments, start/stop out of order, a port in use
// (and no descriptor left behind), bad deadlines, and the native EngineHandle
// called with wrong argument types.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import { Engine, Upgrader, dial, NetClosedError, SysError, NetloopError, OverflowError, TimeoutError } from '../dist/index.js';
import { binding, RECORD_INTS, REC_OPEN } from '../dist/native.js';
import { signal } from './helpers/engine.js';

t.setTimeout(20_000);

async function errorOf(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return null;
}

function openFds() {
  return fs.readdirSync('/proc/self/fd').length;
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

// An echo engine with one net client connected; resolves to the server-side Conn.
async function connected(t, extra = {}) {
  const sig = signal();
  const ev = { opens: [], closes: [] };
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: (c) => {
      ev.opens.push(c);
      sig.poke();
    },
    onData: (c, d) => c.write(d),
    onClose: (c, err) => {
      ev.closes.push([c, err]);
      sig.poke();
    },
    ...extra,
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = Number(/:(\d+)$/.exec(engine.addresses()[0])[1]);
  const client = await connect(port);
  t.teardown(() => client.destroy());
  const got = [];
  client.on('data', (d) => {
    got.push(d);
    sig.poke();
  });
  await sig.until(() => ev.opens.length === 1);
  return { engine, ev, sig, client, conn: ev.opens[0], got: () => Buffer.concat(got), port };
}

const BAD_ADDRESSES = [
  ['127.0.0.1', 'address "127.0.0.1": missing ":port"'],
  ['abc', 'address "abc": missing ":port"'],
  ['127.0.0.1:70000', 'address "127.0.0.1:70000": port must be an integer from 0 to 65535'],
  ['127.0.0.1:', 'address "127.0.0.1:": port must be an integer from 0 to 65535'],
  ['127.0.0.1:-1', 'address "127.0.0.1:-1": port must be an integer from 0 to 65535'],
  ['127.0.0.1:8o', 'address "127.0.0.1:8o": port must be an integer from 0 to 65535'],
  ['::1:8080', 'address "::1:8080": write IPv6 addresses as "[::1]:port"'],
  ['[::1]', 'address "[::1]": expected "[ipv6]:port"'],
  ['[::1]8080', 'address "[::1]8080": expected "[ipv6]:port"'],
  ['[127.0.0.1]:80', 'address "[127.0.0.1]:80": "127.0.0.1" is not an IPv6 address'],
  ['unix:', 'address "unix:": the unix socket path is empty'],
  ['unix:/tmp/a\u0000b', 'address "unix:/tmp/a\u0000b": the unix socket path contains a NUL byte'],
  [8080, 'address must be a string like "127.0.0.1:8080" or "unix:/path", got number'],
  [null, 'address must be a string like "127.0.0.1:8080" or "unix:/path", got object'],
  [undefined, 'address must be a string like "127.0.0.1:8080" or "unix:/path", got undefined'],
  // A URL where an address belongs: the message says what an address is.
  ['ws://127.0.0.1:9600/', `address "ws://127.0.0.1:9600/": addresses are host:port without a scheme (ws://) or path, e.g. "127.0.0.1:9600"; a ws:// URL is dialed with dial() from 'netloop'`],
  ['http://localhost/x', 'address "http://localhost/x": addresses are host:port without a scheme (http://) or path, e.g. "localhost:PORT"'],
  ['tcp://[::1]:80', 'address "tcp://[::1]:80": addresses are host:port without a scheme (tcp://) or path, e.g. "[::1]:80"'],
];

t.test('bad addresses throw TypeError at new Engine and at dial', { timeout: 10_000 }, async (t) => {
  for (const [addr, message] of BAD_ADDRESSES) {
    // An entry that is not a string is named by its index: it may also be { addr, tls }.
    const expected = typeof addr === 'string' ? message : `addrs[0] must be an address string or { addr, tls }, got ${addr === null ? 'null' : typeof addr}`;
    t.throws(() => new Engine({ addrs: [addr] }), { name: 'TypeError', message: expected }, `new Engine: ${JSON.stringify(addr)}`);
  }
  t.throws(() => new Engine({ addrs: '127.0.0.1:0' }), { name: 'TypeError', message: 'addrs must be an array of addresses: strings ("127.0.0.1:8080") or { addr, tls } objects' });
  t.throws(() => new Engine(null), { name: 'TypeError', message: 'new Engine(options): options must be an object' });
  t.throws(() => new Engine(5), { name: 'TypeError', message: 'new Engine(options): options must be an object' });

  let opens = 0;
  const engine = new Engine({ onOpen: () => opens++ });
  await engine.start();
  t.teardown(() => engine.stop());
  for (const [addr, message] of BAD_ADDRESSES) {
    const err = await errorOf(engine.dial(addr));
    t.type(err, TypeError, `dial: ${JSON.stringify(addr)}`);
    t.equal(err?.message, message);
  }
  const err = await errorOf(engine.dial('127.0.0.1:1', { timeout: 'soon' }));
  t.type(err, TypeError, 'dial timeout of the wrong type');
  t.equal(err?.message, 'timeout must be an integer from 0 to 2147483647, got soon');
  const err2 = await errorOf(engine.dial('127.0.0.1:1', { timeout: -5 }));
  t.equal(err2?.message, 'timeout must be an integer from 0 to 2147483647, got -5');
  t.equal(opens, 0, 'nothing was dialed');
  t.equal(engine.stats().dialed, 0, 'stats agree');
});

t.test('wrong option types throw TypeError', async (t) => {
  const cases = [
    [{ backlog: 'x' }, 'backlog must be an integer from 1 to 65535, got x'],
    [{ backlog: 0 }, 'backlog must be an integer from 1 to 65535, got 0'],
    [{ backlog: 1.5 }, 'backlog must be an integer from 1 to 65535, got 1.5'],
    [{ maxWriteBufferSize: -1 }, 'maxWriteBufferSize must be an integer from 1 to 4294967295, got -1'],
    [{ maxWriteBufferSize: NaN }, 'maxWriteBufferSize must be an integer from 1 to 4294967295, got NaN'],
    [{ maxLoad: '10' }, 'maxLoad must be an integer from 1 to 4294967295, got 10'],
    [{ closeTimeout: -1 }, 'closeTimeout must be an integer from 0 to 2147483647, got -1'],
    [{ dialTimeout: Infinity }, 'dialTimeout must be an integer from 0 to 2147483647, got Infinity'],
    [{ readBufferSize: 100 }, 'readBufferSize must be an integer from 4096 to 1073741824, got 100'],
    [{ readBudget: 0 }, 'readBudget must be an integer from 1 to 1073741824, got 0'],
    [{ maxEventsPerIteration: 5000 }, 'maxEventsPerIteration must be an integer from 1 to 1024, got 5000'],
    [{ onData: 5 }, 'onData must be a function'],
    [{ onOpen: 'x' }, 'onOpen must be a function'],
    [{ onClose: {} }, 'onClose must be a function'],
    [{ onDrain: true }, 'onDrain must be a function'],
    [{ reusePort: 'yes' }, 'reusePort must be a boolean'],
    [{ noDelay: 1 }, 'noDelay must be a boolean'],
    [{ ref: null }, 'ref must be a boolean'],
  ];
  for (const [opts, message] of cases) {
    t.throws(() => new Engine(opts), { name: 'TypeError', message }, JSON.stringify(opts) ?? String(opts));
  }
  t.throws(() => new Engine({ backlog: 'x' }), TypeError, 'a TypeError instance');
});

t.test('an unknown option throws TypeError naming it and the option probably meant', async (t) => {
  const cases = [
    [() => new Engine({ port: 9600 }), "Engine: unknown option 'port' (did you mean 'addrs'?)"],
    [() => new Engine({ host: '127.0.0.1' }), "Engine: unknown option 'host' (did you mean 'addrs'?)"],
    [() => new Engine({ addr: '127.0.0.1:0' }), "Engine: unknown option 'addr' (did you mean 'addrs'?)"],
    [() => new Engine({ maxWriteBuffersize: 1 }), "Engine: unknown option 'maxWriteBuffersize' (did you mean 'maxWriteBufferSize'?)"],
    [() => new Engine({ iomode: 'blocking' }), "Engine: unknown option 'iomode' (did you mean 'ioMode'?)"],
    [() => new Engine({ highWaterMark: 1 }), "Engine: unknown option 'highWaterMark' (did you mean 'maxWriteBufferSize'?)"],
    [() => new Engine({ timeout: 5 }), "Engine: unknown option 'timeout' (did you mean 'dialTimeout'?)"],
    [() => new Engine({ zzz: 1 }), "Engine: unknown option 'zzz'"],
    [() => new Upgrader({ maxPayload: 1024 }), "Upgrader: unknown option 'maxPayload' (did you mean 'messageLengthLimit'?)"],
    [() => new Upgrader({ perMessageDeflate: true }), "Upgrader: unknown option 'perMessageDeflate' (did you mean 'compression'?)"],
    [() => new Upgrader({ paths: ['/ws'] }), "Upgrader: unknown option 'paths' (did you mean 'path'?)"],
    [() => new Upgrader({ protocols: ['chat'] }), "Upgrader: unknown option 'protocols' (did you mean 'subprotocols'?)"],
    [() => new Upgrader({ verifyClient: () => true }), "Upgrader: unknown option 'verifyClient' (did you mean 'checkOrigin'?)"],
    [() => new Upgrader({ keepAlive: 1000 }), "Upgrader: unknown option 'keepAlive' (did you mean 'keepaliveTime'?)"],
    [() => new Upgrader({ compression: { levle: 3 } }), "Upgrader compression: unknown option 'levle' (did you mean 'level'?)"],
    [() => new Upgrader({ compression: { serverMaxWindow: 10 } }), "Upgrader compression: unknown option 'serverMaxWindow' (did you mean 'serverMaxWindowBits'?)"],
    [() => new Engine({ workers: 1, supervisor: { timeout: 1 } }), "supervisor: unknown option 'timeout' (did you mean 'startTimeout'?)"],
    [() => new Engine({ workers: 1, supervisor: { scirpt: 'x.js' } }), "supervisor: unknown option 'scirpt' (did you mean 'script'?)"],
  ];
  for (const [fn, message] of cases) t.throws(fn, { name: 'TypeError', message }, message);

  // dial (WebSocket) and Engine.dial check theirs before any connection is made.
  const e1 = await errorOf(dial('ws://127.0.0.1:1/', { protocols: ['chat'] }));
  t.equal(e1?.message, "dial: unknown option 'protocols' (did you mean 'subprotocols'?)");
  t.type(e1, TypeError);
  const e2 = await errorOf(dial('ws://127.0.0.1:1/', { perMessageDeflate: true }));
  t.equal(e2?.message, "dial: unknown option 'perMessageDeflate' (did you mean 'compression'?)");
  const e3 = await errorOf(dial('ws://127.0.0.1:1/', { compression: { memlevel: 8 } }));
  t.equal(e3?.message, "dial compression: unknown option 'memlevel' (did you mean 'memLevel'?)");
  const engine = new Engine({});
  await engine.start();
  t.teardown(() => engine.stop());
  const e4 = await errorOf(engine.dial('127.0.0.1:1', { timout: 5 }));
  t.equal(e4?.message, "Engine.dial: unknown option 'timout' (did you mean 'timeout'?)");
  t.equal(engine.stats().dialed, 0, 'nothing was dialed');
});

t.test('Upgrader, dial and compression option types and ranges are checked at the call', async (t) => {
  const upgrader = [
    [{ closeTimeout: -1 }, 'closeTimeout must be an integer from 0 to 2147483647, got -1'],
    [{ keepaliveTime: '1s' }, 'keepaliveTime must be an integer from 0 to 2147483647, got 1s'],
    [{ handshakeTimeout: 2 ** 31 }, 'handshakeTimeout must be an integer from 0 to 2147483647, got 2147483648'],
    [{ messageLengthLimit: 1.5 }, 'messageLengthLimit must be an integer >= 0, got 1.5'],
    [{ maxLoad: 0 }, 'maxLoad must be an integer >= 1, got 0'],
    [{ maxHeadSize: 10 }, 'maxHeadSize must be an integer >= 64, got 10'],
    [{ subprotocols: 'chat' }, 'subprotocols must be an array of strings'],
    [{ subprotocols: ['chat', 1] }, 'subprotocols must be an array of strings'],
    [{ path: 5 }, 'Upgrader: path must be a string, an array of strings, a RegExp or a function (path, head) => boolean, got number'],
    [{ path: ['/a', null] }, 'Upgrader: path must be a string, an array of strings, a RegExp or a function (path, head) => boolean, got an array with a non-string'],
    [{ headers: 'X-A: 1' }, 'headers must be an object of header names to values'],
    [{ checkOrigin: true }, 'checkOrigin(handler): handler must be a function'],
    [{ compression: 'yes' }, 'Upgrader: compression must be a boolean or an options object'],
    [{ compression: { level: 12 } }, 'compression.level must be an integer from -1 to 9, got 12'],
    [{ compression: { memLevel: 0 } }, 'compression.memLevel must be an integer from 1 to 9, got 0'],
    [{ compression: { threshold: -1 } }, 'compression.threshold must be an integer >= 0, got -1'],
  ];
  for (const [opts, message] of upgrader) t.throws(() => new Upgrader(opts), { name: 'TypeError', message }, JSON.stringify(opts));
  // Header values that would split the 101 response used to throw only at the first request, inside the handshake.
  t.throws(() => new Upgrader({ headers: { 'X-A': 'a\r\nSet-Cookie: x' } }), TypeError, 'a CRLF in a header value');
  t.throws(() => new Upgrader({ headers: { 'Bad Name': 'x' } }), TypeError, 'a header name that is not a token');
  t.doesNotThrow(() => new Upgrader({ headers: { 'X-Server': 'netloop' } }));
  t.throws(() => new Upgrader({ compression: { serverMaxWindowBits: 20 } }), { name: 'RangeError', message: 'permessage-deflate: serverMaxWindowBits must be an integer from 8 to 15, got 20' });
  for (const path of ['/ws', ['/a', '/b'], /^\/ws/, () => true]) t.doesNotThrow(() => new Upgrader({ path }), `path ${String(path)}`);

  const dials = [
    [{ handshakeTimeout: -1 }, 'handshakeTimeout must be an integer from 0 to 2147483647, got -1'],
    [{ closeTimeout: 'x' }, 'closeTimeout must be an integer from 0 to 2147483647, got x'],
    [{ messageLengthLimit: -1 }, 'messageLengthLimit must be an integer >= 0, got -1'],
    [{ engine: {} }, 'dial: engine must be an Engine'],
    [{ headers: null }, 'dial: headers must be an object of header names to values'],
    [{ compression: { level: 'max' } }, 'compression.level must be an integer from -1 to 9, got max'],
  ];
  for (const [opts, message] of dials) {
    const err = await errorOf(dial('ws://127.0.0.1:1/', opts));
    t.type(err, TypeError, JSON.stringify(opts));
    t.equal(err?.message, message);
  }
});

t.test('write after close() and after onClose throws NetClosedError', { timeout: 10_000 }, async (t) => {
  const { ev, sig, client, conn, got } = await connected(t);
  conn.write('before');
  conn.close();
  const check = (fn, label) => {
    let err;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    t.type(err, NetClosedError, label);
    t.type(err, NetloopError);
    t.equal(err?.code, 'NETLOOP_CLOSED');
    t.equal(err?.message, 'use of closed network connection');
  };
  check(() => conn.write('after'), 'write after close()');
  check(() => conn.write(Buffer.from('after')), 'write(Buffer) after close()');
  check(() => conn.writev(['a', 'b']), 'writev after close()');
  t.equal(conn.closed, true);
  await new Promise((resolve) => client.once('end', resolve));
  t.equal(got().toString(), 'before', 'only the bytes written before close() arrived');
  await sig.until(() => ev.closes.length === 1);
  check(() => conn.write('after'), 'write after onClose');
  check(() => conn.writev([Buffer.alloc(1)]), 'writev after onClose');
  t.equal(ev.closes.length, 1, 'onClose once');
  t.equal(ev.closes[0][1], null, 'graceful close: null');
  // Closing again is a no-op, not an error.
  conn.close();
  conn.closeWithError(new Error('late'));
  conn.closeAndClean();
  t.equal(ev.closes.length, 1, 'still one onClose');
});

t.test('write of a wrong type throws TypeError; the connection keeps working', { timeout: 10_000 }, async (t) => {
  const { ev, sig, client, conn, got } = await connected(t);
  const bad = [
    [123, 'write(data): data must be a Buffer, Uint8Array or string, got number'],
    [null, 'write(data): data must be a Buffer, Uint8Array or string, got null'],
    [{}, 'write(data): data must be a Buffer, Uint8Array or string, got object'],
    [undefined, 'write(data): data must be a Buffer, Uint8Array or string, got undefined'],
    [[1, 2], 'write(data): data must be a Buffer, Uint8Array or string, got object'],
    [new ArrayBuffer(4), 'write(data): data must be a Buffer, Uint8Array or string, got object'],
  ];
  for (const [data, message] of bad) {
    t.throws(() => conn.write(data), { name: 'TypeError', message }, `write(${String(data)})`);
  }
  t.throws(() => conn.writev('abc'), { name: 'TypeError', message: 'writev(list): list must be an array of Buffers or strings' });
  t.throws(() => conn.writev(null), TypeError, 'writev(null)');
  t.throws(() => conn.onDrain(5), { name: 'TypeError', message: 'onDrain(handler): handler must be a function or null' });
  t.throws(() => conn.closeWithError('bye'), { name: 'TypeError', message: 'closeWithError(err): err must be an Error or null' });
  t.throws(() => conn.closeAndClean(42), { name: 'TypeError', message: 'closeAndClean(err): err must be an Error or null' });
  t.equal(conn.closed, false, 'none of these closed the connection');
  // Still usable: an echo round trip with exact bytes.
  client.write('ping');
  await sig.until(() => got().length >= 4);
  t.equal(got().toString(), 'ping', 'echo still works, and nothing stray was sent');
  t.equal(ev.closes.length, 0, 'no onClose');
});

t.test('a writev with a bad element throws and queues nothing', { timeout: 10_000 }, async (t) => {
  // writev queues its list "as one write": a TypeError half-way must not
  // leave the first elements on the wire (a framed protocol would be corrupted).
  const { sig, client, conn, got } = await connected(t);
  t.throws(() => conn.writev(['half', 123, 'rest']), TypeError, 'writev([string, number, string])');
  conn.write('|ok');
  client.write('x'); // the echo marks the end of what the engine sent
  await sig.until(() => got().includes('x'));
  t.equal(got().toString(), '|okx', 'nothing from the failed writev reached the peer');
});

t.test('setReadDeadline / setWriteDeadline with a wrong type throw TypeError', { timeout: 10_000 }, async (t) => {
  const { ev, sig, client, conn, got } = await connected(t);
  const message = 'deadline must be a Date, epoch milliseconds (Date.now() + ms), or null';
  for (const v of ['soon', {}, NaN, Infinity, undefined, new Date('nope')]) {
    t.throws(() => conn.setReadDeadline(v), { name: 'TypeError', message }, `setReadDeadline(${String(v)})`);
    t.throws(() => conn.setWriteDeadline(v), { name: 'TypeError', message }, `setWriteDeadline(${String(v)})`);
  }
  t.equal(conn.closed, false);
  client.write('still');
  await sig.until(() => got().length >= 5);
  t.equal(got().toString(), 'still', 'the connection is unaffected');
  t.equal(ev.closes.length, 0);
});

t.test('a deadline given a duration throws; setReadTimeout / setWriteTimeout take durations', { timeout: 10_000 }, async (t) => {
  const { ev, sig, client, conn, got } = await connected(t);
  t.throws(() => conn.setReadDeadline(5000), {
    name: 'TypeError',
    message: 'setReadDeadline takes an absolute time (Date or Date.now() + ms); use setReadTimeout(ms) for a duration',
  });
  t.throws(() => conn.setWriteDeadline(30_000), {
    name: 'TypeError',
    message: 'setWriteDeadline takes an absolute time (Date or Date.now() + ms); use setWriteTimeout(ms) for a duration',
  });
  for (const v of [-1, 1.5, 'soon', 2 ** 31, undefined, null]) {
    t.throws(() => conn.setReadTimeout(v), { name: 'TypeError', message: `setReadTimeout(ms) must be an integer from 0 to 2147483647, got ${String(v)}` });
    t.throws(() => conn.setWriteTimeout(v), { name: 'TypeError', message: `setWriteTimeout(ms) must be an integer from 0 to 2147483647, got ${String(v)}` });
  }
  // 0 clears: a timeout set and cleared does not fire.
  conn.setReadTimeout(50);
  conn.setReadTimeout(0);
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.equal(conn.closed, false, 'cleared: still open after the timeout would have fired');
  client.write('alive');
  await sig.until(() => got().length >= 5);
  t.equal(got().toString(), 'alive', 'and still echoing');
  const started = Date.now();
  conn.setReadTimeout(100);
  await sig.until(() => ev.closes.length === 1);
  const waited = Date.now() - started;
  t.ok(waited >= 90 && waited < 2000, `closed after about 100 ms (${waited} ms)`);
  t.type(ev.closes[0][1], TimeoutError);
  t.equal(ev.closes[0][1].message, 'read timeout');
});

t.test('setWriteTimeout(ms): data the peer does not take within ms closes the connection with "write timeout"', { timeout: 10_000 }, async (t) => {
  const { ev, sig, client, conn } = await connected(t);
  client.pause();
  conn.write(Buffer.alloc(16 * 1024 * 1024)); // more than loopback's socket buffers take
  conn.setWriteTimeout(100);
  await sig.until(() => ev.closes.length === 1);
  t.type(ev.closes[0][1], TimeoutError);
  t.equal(ev.closes[0][1].message, 'write timeout');
});

t.test('a write that cannot be queued throws OverflowError at the call and the connection stays open', { timeout: 10_000 }, async (t) => {
  const LIMIT = 4 * 1024 * 1024;
  const { ev, sig, client, conn, got } = await connected(t, { maxWriteBufferSize: LIMIT });
  const over = Buffer.alloc(LIMIT + 1, 1);
  const err = (() => {
    try {
      conn.write(over);
    } catch (e) {
      return e;
    }
    return null;
  })();
  t.type(err, OverflowError, 'larger than the limit alone');
  t.equal(err?.code, 'NETLOOP_OVERFLOW');
  t.equal(err?.limit, LIMIT);
  t.equal(err?.message, `write: ${LIMIT + 1} bytes would exceed maxWriteBufferSize (${LIMIT}); nothing was queued and the connection is open`);
  t.throws(() => conn.write('é'.repeat(LIMIT / 2 + 1)), { name: 'OverflowError', message: `write: ${LIMIT + 2} bytes would exceed maxWriteBufferSize (${LIMIT}); nothing was queued and the connection is open` }, 'a string is counted in UTF-8 bytes');
  t.throws(() => conn.writev([Buffer.alloc(LIMIT / 2), Buffer.alloc(LIMIT / 2), 'x']), { message: `writev: ${LIMIT + 1} bytes would exceed maxWriteBufferSize (${LIMIT}); nothing was queued and the connection is open` });
  t.equal(conn.closed, false);
  // Fill the queue with small writes (not checked) while the peer does not
  // read, then a large one that would take it past the limit.
  client.pause();
  let queued = 0;
  while (conn.bufferedAmount < LIMIT / 2) {
    conn.write(Buffer.alloc(256 * 1024, 2));
    queued += 256 * 1024;
  }
  const before = conn.bufferedAmount;
  const late = Buffer.alloc(LIMIT - before + 512 * 1024, 3); // fits alone (before >= LIMIT / 2), not on top of the queue, even if the kernel takes a little more
  // The kernel may still take some of the queue between the two readings.
  t.throws(() => conn.write(late), {
    name: 'OverflowError',
    code: 'NETLOOP_OVERFLOW',
    message: new RegExp(`^write: ${late.length} bytes with \\d+ already queued would exceed maxWriteBufferSize \\(${LIMIT}\\); nothing was queued and the connection is open$`),
  });
  t.equal(conn.closed, false, 'still open');
  conn.write('end');
  client.resume();
  await sig.until(() => got().length >= queued + 3);
  const all = got();
  t.equal(all.length, queued + 3, 'exactly what was queued arrived, nothing of the refused writes');
  t.equal(all.subarray(queued).toString(), 'end');
  t.equal(all.indexOf(1), -1, 'no byte of the first refused write');
  t.equal(all.indexOf(3), -1, 'no byte of the late one');
  t.equal(ev.closes.length, 0, 'no onClose');
});

t.test('WebSocket writeMessage larger than maxWriteBufferSize throws OverflowError; the connection keeps working', { timeout: 10_000 }, async (t) => {
  const LIMIT = 1024 * 1024;
  const up = new Upgrader({});
  const errors = [];
  up.onMessage((c, type, data) => {
    try {
      c.writeMessage('binary', Buffer.alloc(LIMIT));
    } catch (e) {
      errors.push(e);
    }
    c.writeMessage(type, data);
  });
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, maxWriteBufferSize: LIMIT });
  await engine.start();
  t.teardown(() => engine.stop());
  const got = [];
  const ws = await dial(`ws://${engine.addresses()[0]}/`, { onMessage: (c, type, data) => got.push([type, data.toString()]) });
  t.teardown(() => ws.closeAndClean());
  ws.writeMessage('text', 'hello');
  const end = Date.now() + 5000;
  while (got.length === 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 5));
  t.same(got, [['text', 'hello']], 'the echo, and no frame of the refused message');
  t.equal(errors.length, 1);
  t.type(errors[0], OverflowError);
  t.equal(errors[0].message, `writeMessage: ${LIMIT + 14} bytes would exceed maxWriteBufferSize (${LIMIT}); nothing was queued and the connection is open`);
});

t.test('start() twice rejects; stop() twice resolves', { timeout: 10_000 }, async (t) => {
  const engine = new Engine({ addrs: ['127.0.0.1:0'] });
  t.teardown(() => engine.stop());
  await engine.start();
  t.equal(engine.running, true);
  const err = await errorOf(engine.start());
  t.type(err, Error, 'second start() rejects');
  t.equal(err?.message, 'Engine.start(): the engine is already running');
  t.equal(engine.running, true, 'still running');
  const addrs = engine.addresses();
  t.equal(addrs.length, 1, 'still one listener');

  // start() while a start() is in progress.
  const e2 = new Engine({ addrs: ['127.0.0.1:0'] });
  t.teardown(() => e2.stop());
  const p1 = e2.start();
  const err2 = await errorOf(e2.start());
  await p1;
  t.equal(err2?.message, 'Engine.start(): the engine is already starting');

  const s1 = engine.stop();
  const s2 = engine.stop();
  t.equal(s1, s2, 'the same promise');
  t.equal(await s1, undefined, 'resolves');
  t.equal(await engine.stop(), undefined, 'a third stop() after completion resolves too');
  t.equal(engine.running, false);
  const err3 = await errorOf(engine.start());
  t.equal(err3?.message, 'Engine.start(): the engine is already stopped', 'no restart after stop()');

  // stop() on an engine that never started.
  const e3 = new Engine({});
  t.equal(await e3.stop(), undefined, 'stop() before start() resolves');
  t.equal(await e3.stop(), undefined, 'twice');
});

t.test('a port already in use: SysError EADDRINUSE, and no descriptor left behind', { timeout: 10_000 }, async (t) => {
  const busy = net.createServer();
  await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((r) => busy.close(r)));
  const port = busy.address().port;

  const before = openFds();
  const engine = new Engine({ addrs: [`127.0.0.1:${port}`] });
  const err = await errorOf(engine.start());
  const after = openFds();
  t.type(err, SysError);
  t.type(err, NetloopError);
  t.equal(err?.code, 'EADDRINUSE', 'code');
  t.equal(err?.errno, 98, 'errno');
  t.equal(err?.message, `listen 127.0.0.1:${port}: address already in use`, 'message');
  t.equal(engine.running, false, 'not running');
  t.equal(after, before, `no descriptor left open (${before} before, ${after} after)`);
  t.equal(await engine.stop(), undefined, 'stop() after a failed start() resolves');
});

t.test('a failed start() releases the listeners it had already opened', { timeout: 10_000 }, async (t) => {
  const busy = net.createServer();
  await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((r) => busy.close(r)));
  const busyPort = busy.address().port;
  // A port that was free a moment ago.
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const freePort = probe.address().port;
  await new Promise((resolve) => probe.close(resolve));

  const before = openFds();
  const engine = new Engine({ addrs: [`127.0.0.1:${freePort}`, `127.0.0.1:${busyPort}`] });
  const err = await errorOf(engine.start());
  t.equal(err?.code, 'EADDRINUSE');
  t.equal(err?.message, `listen 127.0.0.1:${busyPort}: address already in use`);
  t.equal(openFds(), before, 'no descriptor left open');
  // The first listener must be gone: the port can be listened on again.
  const again = net.createServer();
  const listenErr = await new Promise((resolve) => {
    again.once('error', (e) => resolve(e.code));
    again.listen(freePort, '127.0.0.1', () => resolve(null));
  });
  if (listenErr === null) await new Promise((r) => again.close(r));
  t.equal(listenErr, null, `127.0.0.1:${freePort} is free again`);
});

// --- The native EngineHandle, called directly ------------------------------

function arrays() {
  return {
    records: new Int32Array(64 * RECORD_INTS),
    slab: Buffer.alloc(64 * 1024),
    cmds: new Int32Array(64 * RECORD_INTS),
    out: Buffer.alloc(64 * 1024),
  };
}

const CONFIG = {
  maxEvents: 64,
  readBudget: 64 * 1024,
  acceptBudget: 16,
  maxWriteBufferSize: 1 << 20,
  closeTimeout: 1000,
  noDelay: true,
  maxLoad: 100,
};

t.test('native EngineHandle: wrong constructor arguments throw TypeError', async (t) => {
  const wrong = 'EngineHandle(config, arrays, onBatch): wrong arguments';
  const badArrays = 'EngineHandle: arrays must be { records: Int32Array, slab: Uint8Array, cmds: Int32Array, out: Uint8Array, meter?: Float64Array(2) }';
  const cases = [
    ['no arguments', () => new binding.EngineHandle(), wrong],
    ['config null', () => new binding.EngineHandle(null, arrays(), () => {}), wrong],
    ['arrays a string', () => new binding.EngineHandle(CONFIG, 'x', () => {}), wrong],
    ['onBatch not a function', () => new binding.EngineHandle(CONFIG, arrays(), 5), wrong],
    ['records Float64Array', () => new binding.EngineHandle(CONFIG, { ...arrays(), records: new Float64Array(320) }, () => {}), badArrays],
    ['slab a plain array', () => new binding.EngineHandle(CONFIG, { ...arrays(), slab: [1, 2, 3] }, () => {}), badArrays],
    ['cmds missing', () => new binding.EngineHandle(CONFIG, { ...arrays(), cmds: undefined }, () => {}), badArrays],
    ['out an ArrayBuffer', () => new binding.EngineHandle(CONFIG, { ...arrays(), out: new ArrayBuffer(16) }, () => {}), badArrays],
    ['records empty', () => new binding.EngineHandle(CONFIG, { ...arrays(), records: new Int32Array(4) }, () => {}), 'EngineHandle: arrays must not be empty'],
    ['slab empty', () => new binding.EngineHandle(CONFIG, { ...arrays(), slab: Buffer.alloc(0) }, () => {}), 'EngineHandle: arrays must not be empty'],
  ];
  for (const [label, fn, message] of cases) t.throws(fn, { name: 'TypeError', message }, label);
  t.throws(() => binding.EngineHandle(CONFIG, arrays(), () => {}), TypeError, 'called without new');
});

t.test('native EngineHandle: wrong method arguments throw TypeError, and it still works', { timeout: 10_000 }, async (t) => {
  const a = arrays();
  const opens = [];
  let batches = 0;
  const sig = signal();
  const h = new binding.EngineHandle(CONFIG, a, (n) => {
    batches++;
    for (let i = 0; i < n; i++) if (a.records[i * RECORD_INTS] === REC_OPEN) opens.push(a.records[i * RECORD_INTS + 1]);
    sig.poke();
  });
  let stopped = false;
  t.teardown(() => {
    if (!stopped) return new Promise((resolve) => h.stop(resolve) || resolve());
  });
  const before = [
    ['listen()', () => h.listen(), 'listen(host, port, backlog, reusePort)'],
    ['listen(numbers)', () => h.listen(1, 2, 3, false), 'listen(host, port, backlog, reusePort)'],
    ['listen(port string)', () => h.listen('127.0.0.1', '0', 5, false), 'listen(host, port, backlog, reusePort)'],
    ['listen(backlog string)', () => h.listen('127.0.0.1', 0, 'x', false), 'listen(host, port, backlog, reusePort)'],
    ['listen(3 args)', () => h.listen('127.0.0.1', 0, 5), 'listen(host, port, backlog, reusePort)'],
    ['listenUnix(number)', () => h.listenUnix(5, 5), 'listenUnix(path, backlog)'],
    ['listenUnix(backlog string)', () => h.listenUnix('/tmp/x', 'y'), 'listenUnix(path, backlog)'],
    ['listenerAddress(string)', () => h.listenerAddress('a'), 'listenerAddress(id)'],
    ['flush(string)', () => h.flush('x'), 'flush(count, refs)'],
    ['flush()', () => h.flush(), 'flush(count, refs)'],
    ['queued(string, n)', () => h.queued('a', 1), 'queued(slot, gen)'],
    ['queued(n)', () => h.queued(1), 'queued(slot, gen)'],
    ['address(n)', () => h.address(1), 'address(slot, gen, peer)'],
    ['address(string, n, b)', () => h.address('1', 0, true), 'address(slot, gen, peer)'],
    ['stats(Float64Array(11))', () => h.stats(new Float64Array(11)), 'stats(Float64Array(15))'],
    ['stats([])', () => h.stats([]), 'stats(Float64Array(15))'],
    ['stats(Int32Array(8))', () => h.stats(new Int32Array(8)), 'stats(Float64Array(15))'],
    ['stats()', () => h.stats(), 'stats(Float64Array(15))'],
  ];
  for (const [label, fn, message] of before) t.throws(fn, { name: 'TypeError', message }, label);
  // Values of the right type but out of range are errors as values, not exceptions.
  t.equal(h.listen('127.0.0.1', 70000, 5, false), -22, 'port 70000: -EINVAL');
  t.equal(h.listen('not an ip', 0, 5, false), -22, 'bad host: -EINVAL');
  t.equal(h.listenerAddress(999), -9, 'unknown listener: -EBADF');
  t.equal(h.queued(12345, 0), -1, 'unknown slot: -1');
  t.equal(h.address(12345, 0, true), -9, 'unknown slot: -EBADF');

  const id = h.listen('127.0.0.1', 0, 16, false);
  t.ok(id >= 0, 'listen works after the bad calls');
  const la = h.listenerAddress(id);
  t.equal(la[0], 'IPv4');
  t.equal(la[1], '127.0.0.1');
  t.equal(h.start(), 0, 'start');
  t.throws(() => h.start(), { name: 'TypeError', message: 'start(): the engine was already started' }, 'start() twice');

  const running = [
    ['dial(number)', () => h.dial(5), 'dial(host, port, timeoutMs, tlsContext?, servername?)'],
    ['dial(port string)', () => h.dial('127.0.0.1', 'x', 5), 'dial(host, port, timeoutMs, tlsContext?, servername?)'],
    ['dial(2 args)', () => h.dial('127.0.0.1', 1), 'dial(host, port, timeoutMs, tlsContext?, servername?)'],
    ['dialUnix(number)', () => h.dialUnix(5, 1), 'dialUnix(path, timeoutMs, tlsContext?, servername?)'],
    ['dialUnix(timeout string)', () => h.dialUnix('/tmp/x', 'a'), 'dialUnix(path, timeoutMs, tlsContext?, servername?)'],
    ['flush(string)', () => h.flush('x'), 'flush(count, refs)'],
    ['flush(-1)', () => h.flush(-1), 'flush: count out of range'],
    ['flush(NaN)', () => h.flush(NaN), 'flush: count out of range'],
    ['flush(Infinity)', () => h.flush(Infinity), 'flush: count out of range'],
    ['flush(capacity + 1)', () => h.flush(65), 'flush: count out of range'],
  ];
  for (const [label, fn, message] of running) t.throws(fn, { name: 'TypeError', message }, label);
  t.throws(() => Object.getPrototypeOf(h).listen.call({}, '127.0.0.1', 0, 5, false), TypeError, 'a method called on a foreign object');
  t.equal(h.flush(0, 'not an array'), undefined, 'flush(0, non-array refs) is harmless');
  t.equal(h.dial('no such host', 80, 100), -22, 'dial to a non-numeric host: -EINVAL');

  // Still alive: accept a net client.
  const [, , port] = la;
  const s = await connect(port);
  t.teardown(() => s.destroy());
  await sig.until(() => opens.length === 1);
  t.equal(opens.length, 1, 'the OPEN record arrived');
  t.ok(batches >= 1);
  await new Promise((resolve) => t.equal(h.stop(resolve), true, 'stop() returns true'));
  stopped = true;
  t.equal(h.stop(() => {}), false, 'stop() again returns false');
  t.equal(h.flush(0), undefined, 'flush after stop is a no-op');
  t.equal(h.dial('127.0.0.1', port, 100), -9, 'dial after stop: -EBADF');
});

t.test('native EngineHandle: destroy() of a never-started handle releases everything at once', { timeout: 10_000 }, async (t) => {
  const dir = fs.mkdtempSync(`${os.tmpdir()}/netloop-misuse-`);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sockPath = `${dir}/h.sock`;
  const before = openFds();
  let batches = 0;
  const h = new binding.EngineHandle(CONFIG, arrays(), () => batches++);
  const id = h.listen('127.0.0.1', 0, 16, false);
  t.ok(id >= 0, 'a TCP listener');
  const port = h.listenerAddress(id)[2];
  t.ok(h.listenUnix(sockPath, 16) >= 0, 'a unix listener');
  t.ok(fs.existsSync(sockPath), 'its socket file exists');
  t.ok(openFds() > before, 'descriptors are open');
  t.equal(h.destroy(), undefined, 'destroy()');
  t.equal(openFds(), before, 'every descriptor released at once');
  t.notOk(fs.existsSync(sockPath), 'the socket file was removed');
  t.equal(h.destroy(), undefined, 'destroy() twice is harmless');
  // The TCP port is free again.
  const again = net.createServer();
  const code = await new Promise((resolve) => {
    again.once('error', (e) => resolve(e.code));
    again.listen(port, '127.0.0.1', () => resolve(null));
  });
  if (code === null) await new Promise((r) => again.close(r));
  t.equal(code, null, `127.0.0.1:${port} is free again`);
  // A destroyed handle refuses everything without crashing.
  t.throws(() => h.start(), TypeError, 'start() after destroy() throws TypeError');
  t.equal(h.dial('127.0.0.1', port, 100), -9, 'dial: -EBADF');
  t.equal(h.stop(() => {}), false, 'stop: false');
  t.equal(h.flush(0), undefined, 'flush: no-op');
  t.ok(h.listen('127.0.0.1', 0, 16, false) < 0, 'listen after destroy() fails with an errno');
  t.equal(openFds(), before, 'and leaves nothing open');
  t.equal(batches, 0, 'onBatch never called');
});
