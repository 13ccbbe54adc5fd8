// The WebSocket opening handshake and the connection-level timers of the
// Upgrader, over real loopback sockets against Node's own `net` socket: the
// 101 response byte for byte (RFC 6455's sample key), the request head one
// byte at a time, every rejection (status, required headers, and the server
// closing the connection afterwards), the head limits (defaults and
// configured values), maxLoad, the handshake timeout, the plain HTTP
// handler, subprotocol choice, frames sent right behind the head, and
// keepalive (pings, pongs, the read timeout).
import t from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Engine, Upgrader, TimeoutError } from '../dist/index.js';

// The whole file is bounded; each wait inside it is bounded much more tightly (until()).
t.setTimeout(60000);
import { sleep, until, hex, SAMPLE_KEY, KEY, maskBytes, cframe, cclose, sframe, sclose, parseFrames, upgradeRequest, Peer, startServer, closedOnce } from './helpers/ws-peer.js';


// ---------------------------------------------------------------------------

/** RFC 6455 §1.3's sample request (its Origin and subprotocols included). */
const SAMPLE_HEADERS = [
  ['Host', 'server.example.com'],
  ['Upgrade', 'websocket'],
  ['Connection', 'Upgrade'],
  ['Sec-WebSocket-Key', SAMPLE_KEY],
  ['Origin', 'http://example.com'],
  ['Sec-WebSocket-Protocol', 'chat, superchat'],
  ['Sec-WebSocket-Version', '13'],
];

const BASE_HEADERS = [
  ['Host', '127.0.0.1'],
  ['Upgrade', 'websocket'],
  ['Connection', 'Upgrade'],
  ['Sec-WebSocket-Key', SAMPLE_KEY],
  ['Sec-WebSocket-Version', '13'],
];

/**
 * A request head: `set` replaces (or with null removes) headers of `headers`
 * by name, `add` appends lines.
 */
function requestHead({ method = 'GET', path = '/', version = 'HTTP/1.1', headers = BASE_HEADERS, set = {}, add = [] } = {}) {
  const replaced = new Map(Object.entries(set).map(([k, v]) => [k.toLowerCase(), v]));
  const lines = [`${method} ${path} ${version}`];
  for (const [n, v] of headers) {
    const r = replaced.get(n.toLowerCase());
    if (r === undefined) lines.push(`${n}: ${v}`);
    else if (r !== null) lines.push(`${n}: ${r}`);
  }
  for (const [n, v] of add) lines.push(`${n}: ${v}`);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}

/** Splits a complete HTTP response: status, reason, headers ([lower-case name, value]), body. */
function parseResponse(buf) {
  const i = buf.indexOf('\r\n\r\n');
  if (i < 0) throw new Error(`no complete response head in ${JSON.stringify(buf.toString('latin1'))}`);
  const lines = buf.toString('latin1', 0, i).split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(lines[0]);
  if (m === null) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers = lines.slice(1).map((l) => {
    const c = l.indexOf(':');
    return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()];
  });
  const get = (name) => headers.filter(([n]) => n === name).map(([, v]) => v).join(', ') || undefined;
  return { status: Number(m[1]), reason: m[2], headers, get, body: buf.subarray(i + 4) };
}

/**
 * Sends `head` on a fresh connection and waits for the server to close it;
 * returns the parsed response and the peer. Checks the response is complete
 * (Content-Length) and ends with the server's FIN, not a reset.
 */
t.test('path as a RegExp: matching paths upgrade, others get 404, and a /g RegExp does not alternate', async (t) => {
  // A RegExp used to be accepted by new Upgrader and then crash the process
  // on the first request (allowed.includes is not a function).
  const s = await startServer(t, { path: /^\/ws(\/|$)/g });
  for (const path of ['/ws', '/ws/room', '/ws?x=1']) {
    await t.test(`${path} upgrades`, async (t) => {
      const { peer, rec } = await upgradeWith(t, s, requestHead({ path }), expected101());
      t.equal(rec.conn.path, path.replace(/\?.*/, ''));
      await closeCleanly(t, peer, rec);
    });
  }
  for (const path of ['/wsx', '/', '/other/ws']) {
    await t.test(`${path} -> 404`, async (t) => {
      await expectRejection(t, s, requestHead({ path }), 404);
    });
  }
});

t.test('path as a predicate gets the path and the head', async (t) => {
  const seen = [];
  const s = await startServer(t, { path: (path, head) => (seen.push([path, head.method]), path === '/p') });
  const { peer, rec } = await upgradeWith(t, s, requestHead({ path: '/p?q' }), expected101());
  await closeCleanly(t, peer, rec);
  await expectRejection(t, s, requestHead({ path: '/np' }), 404);
  t.same(seen, [['/p', 'GET'], ['/np', 'GET']]);
});

async function exchange(t, s, head, { slowly = false, bodiless = false } = {}) {
  const peer = await Peer.connect(t, s.addr);
  if (slowly) await peer.writeSlowly(head, 4, 1);
  else peer.write(head);
  await peer.waitEnd(3000);
  const r = parseResponse(peer.raw);
  const len = r.get('content-length');
  if (len !== undefined && !bodiless) t.equal(r.body.length, Number(len), 'the whole body, as Content-Length says');
  t.equal(peer.error, null, 'no reset');
  t.ok(peer.ended, 'the server closed the connection (FIN)');
  return { r, peer };
}

/** A rejection: status, Connection: close, and the headers `want` (name -> value). */
async function expectRejection(t, s, head, status, want = {}) {
  const opensBefore = s.recs.length;
  const { r } = await exchange(t, s, head);
  t.equal(r.status, status, `status ${status}`);
  t.equal(r.get('connection'), 'close', 'Connection: close');
  for (const [name, value] of Object.entries(want)) t.equal(r.get(name.toLowerCase()), value, `${name}: ${value}`);
  t.equal(r.get('sec-websocket-accept'), undefined, 'no Sec-WebSocket-Accept');
  t.equal(s.recs.length, opensBefore, 'no onOpen');
  return r;
}

/** The exact 101 for SAMPLE_KEY, with optional extra header lines. */
function expected101(extra = []) {
  return (
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' +
    extra.map(([n, v]) => `${n}: ${v}\r\n`).join('') +
    '\r\n'
  );
}

/** Upgrades with `head` (sent whole) and checks the 101 is exactly `want`; returns the peer and its record. */
async function upgradeWith(t, s, head, want) {
  const peer = await Peer.connect(t, s.addr);
  peer.write(head);
  await until(() => peer.headLen >= 0 || peer.closed, 3000, 'the response head');
  t.equal(peer.head, want, 'the 101, byte for byte');
  const rec = await s.rec(peer);
  return { peer, rec };
}

/** Closes a peer cleanly (close 1000, wait for the echo and FIN) and checks onClose came once, with null. */
async function closeCleanly(t, peer, rec) {
  const before = peer.rxLen;
  peer.write(cclose(1000));
  await peer.waitEnd();
  // A keepalive ping may cross our close frame on the wire: it may come
  // before the echo, never after it.
  const after = parseFrames(peer.rx.subarray(before)).frames.filter((f) => hex(f.header) !== '8900');
  t.same(after.map((f) => hex(Buffer.concat([f.header, f.payload]))), ['880203e8'], 'close echoed');
  const c = await closedOnce(t, rec);
  t.equal(c.err, null);
}

t.test('the accept value of the RFC sample key', async (t) => {
  const accept = createHash('sha1').update(SAMPLE_KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  t.equal(accept, 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
});

t.test('101: the RFC sample request gets the exact response, sent whole or one byte at a time', async (t) => {
  const s = await startServer(t, { subprotocols: ['chat'] });
  const head = requestHead({ path: '/chat', headers: SAMPLE_HEADERS });
  const want = expected101([['Sec-WebSocket-Protocol', 'chat']]);
  await t.test('whole', async (t) => {
    const { peer, rec } = await upgradeWith(t, s, head, want);
    t.equal(rec.conn.subprotocol, 'chat');
    t.equal(rec.conn.path, '/chat');
    await sleep(20);
    t.equal(peer.rxLen, 0, 'nothing after the head');
    await closeCleanly(t, peer, rec);
  });
  await t.test('one byte per write', async (t) => {
    const peer = await Peer.connect(t, s.addr);
    await peer.writeSlowly(head, 3, 1);
    await until(() => peer.headLen >= 0 || peer.closed, 3000, 'the response head');
    t.equal(peer.head, want, 'the 101, byte for byte');
    const rec = await s.rec(peer);
    peer.write(cframe(1, 'after a slow head'));
    await peer.waitRx(sframe(1, 'after a slow head').length);
    t.equal(hex(peer.rx), hex(sframe(1, 'after a slow head')));
    await closeCleanly(t, peer, rec);
  });
  await t.test('no subprotocol configured: no Sec-WebSocket-Protocol', async (t) => {
    const plain = await startServer(t);
    const { peer, rec } = await upgradeWith(t, plain, head, expected101());
    t.equal(rec.conn.subprotocol, '');
    await closeCleanly(t, peer, rec);
  });
});

t.test('rejections: status, required headers, and the connection closed', async (t) => {
  const s = await startServer(t, { path: ['/ws', '/chat'], checkOrigin: (origin) => origin === undefined || origin === 'http://good.example' });
  const cases = [
    ['a key that is not 16 bytes of base64', requestHead({ path: '/ws', set: { 'Sec-WebSocket-Key': 'c2hvcnQ=' } }), 400],
    ['two keys', requestHead({ path: '/ws', add: [['Sec-WebSocket-Key', SAMPLE_KEY]] }), 400],
    ['no key', requestHead({ path: '/ws', set: { 'Sec-WebSocket-Key': null } }), 400],
    ['no Host', requestHead({ path: '/ws', set: { Host: null } }), 400],
    ['two Host lines', requestHead({ path: '/ws', add: [['Host', 'other']] }), 400],
    ['no Upgrade header', requestHead({ path: '/ws', set: { Upgrade: null } }), 400],
    ['Upgrade without the websocket token', requestHead({ path: '/ws', set: { Upgrade: 'h2c' } }), 400],
    ['Connection without the upgrade token', requestHead({ path: '/ws', set: { Connection: 'keep-alive' } }), 400],
    ['HTTP/1.0', requestHead({ path: '/ws', version: 'HTTP/1.0' }), 400],
    ['a bare LF', Buffer.from('GET /ws HTTP/1.1\nHost: x\n\n'), 400],
    ['HTTP/2.0', requestHead({ path: '/ws', version: 'HTTP/2.0' }), 505],
    ['POST', requestHead({ method: 'POST', path: '/ws' }), 405, { Allow: 'GET' }],
    ['a path not served', requestHead({ path: '/other' }), 404],
    ['version 8', requestHead({ path: '/ws', set: { 'Sec-WebSocket-Version': '8' } }), 426, { 'Sec-WebSocket-Version': '13' }],
    ['no version', requestHead({ path: '/ws', set: { 'Sec-WebSocket-Version': null } }), 426, { 'Sec-WebSocket-Version': '13' }],
    ['an origin checkOrigin refuses', requestHead({ path: '/ws', add: [['Origin', 'http://evil.example']] }), 403],
  ];
  for (const [name, head, status, headers] of cases) {
    await t.test(`${name} -> ${status}`, async (t) => {
      await expectRejection(t, s, head, status, headers);
    });
  }
  await t.test('accepted: a served path (query ignored) from an allowed origin', async (t) => {
    const head = requestHead({ path: '/chat?room=1', add: [['Origin', 'http://good.example']] });
    const { peer, rec } = await upgradeWith(t, s, head, expected101());
    t.equal(rec.conn.path, '/chat');
    await closeCleanly(t, peer, rec);
  });
});

/** A valid handshake head of exactly `size` bytes (a padding header fills it). */
function headOfSize(size, path = '/') {
  const base = requestHead({ path });
  const k = size - base.length - 'X-Pad: \r\n'.length;
  if (k < 1) throw new Error(`a head of ${size} bytes cannot be built`);
  const head = requestHead({ path, add: [['X-Pad', 'p'.repeat(k)]] });
  if (head.length !== size) throw new Error('headOfSize miscounted');
  return head;
}

/** A valid handshake head with exactly `n` header lines. */
function headWithHeaders(n) {
  const add = [];
  for (let i = BASE_HEADERS.length; i < n; i++) add.push([`X-H${i}`, String(i)]);
  return requestHead({ add });
}

t.test('431: request head size, default 8 KiB and configured', async (t) => {
  const dflt = await startServer(t);
  await t.test('8192 bytes pass', async (t) => {
    const { peer, rec } = await upgradeWith(t, dflt, headOfSize(8192), expected101());
    await closeCleanly(t, peer, rec);
  });
  await t.test('8193 bytes -> 431', async (t) => {
    await expectRejection(t, dflt, headOfSize(8193), 431);
  });
  await t.test('64 KiB of head -> 431 without reading it all', async (t) => {
    await expectRejection(t, dflt, headOfSize(65536), 431);
  });
  const small = await startServer(t, { maxHeadSize: 300 });
  await t.test('maxHeadSize 300: 300 bytes pass', async (t) => {
    const { peer, rec } = await upgradeWith(t, small, headOfSize(300), expected101());
    await closeCleanly(t, peer, rec);
  });
  await t.test('maxHeadSize 300: 301 bytes -> 431', async (t) => {
    await expectRejection(t, small, headOfSize(301), 431);
  });
  await t.test('maxHeadSize 300: 301 bytes sent one at a time -> 431', async (t) => {
    const { r } = await exchange(t, small, headOfSize(301), { slowly: true });
    t.equal(r.status, 431);
  });
});

t.test('431: header lines, default 40 and configured', async (t) => {
  const dflt = await startServer(t);
  await t.test('40 lines pass', async (t) => {
    const { peer, rec } = await upgradeWith(t, dflt, headWithHeaders(40), expected101());
    await closeCleanly(t, peer, rec);
  });
  await t.test('41 lines -> 431', async (t) => {
    await expectRejection(t, dflt, headWithHeaders(41), 431);
  });
  const few = await startServer(t, { maxHeaders: 6 });
  await t.test('maxHeaders 6: 6 lines pass', async (t) => {
    const { peer, rec } = await upgradeWith(t, few, headWithHeaders(6), expected101());
    await closeCleanly(t, peer, rec);
  });
  await t.test('maxHeaders 6: 7 lines -> 431', async (t) => {
    await expectRejection(t, few, headWithHeaders(7), 431);
  });
});

t.test('503: past maxLoad (1) a second concurrent client gets 503, a later one is served again', async (t) => {
  const s = await startServer(t, { maxLoad: 1 });
  const first = await Peer.open(t, s.addr);
  const rec = await s.rec(first);
  // The 503 goes out at accept, before the request head is even read.
  const second = await Peer.connect(t, s.addr);
  await second.waitEnd();
  const r = parseResponse(second.raw);
  t.equal(r.status, 503);
  t.equal(r.get('retry-after'), '1');
  t.equal(r.get('connection'), 'close');
  t.equal(r.body.length, Number(r.get('content-length')));
  t.ok(second.ended, 'closed by the server');
  t.equal(s.recs.length, 1, 'no onOpen for the refused client');
  // The first is untouched.
  first.write(cframe(1, 'still here'));
  await first.waitRx(sframe(1, 'still here').length);
  await closeCleanly(t, first, rec);
  const third = await Peer.open(t, s.addr);
  const rec3 = await s.rec(third);
  t.pass('after the first left, a new client is served');
  await closeCleanly(t, third, rec3);
});

t.test('handshake timeout: half a head is closed after handshakeTimeout', async (t) => {
  const s = await startServer(t, { handshakeTimeout: 300 });
  const peer = await Peer.connect(t, s.addr);
  const t0 = performance.now();
  peer.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
  await until(() => peer.ended || peer.closed, 3000, 'the server to close the connection');
  const elapsed = performance.now() - t0;
  t.ok(elapsed >= 250 && elapsed < 1000, `closed after ${elapsed.toFixed(0)} ms (handshakeTimeout 300)`);
  t.equal(s.recs.length, 0, 'no onOpen, no onClose');
  // A client that sends nothing at all is closed the same way.
  const silent = await Peer.connect(t, s.addr);
  const t1 = performance.now();
  await until(() => silent.ended || silent.closed, 3000, 'the server to close the silent connection');
  const e1 = performance.now() - t1;
  t.ok(e1 >= 250 && e1 < 1000, `silent client closed after ${e1.toFixed(0)} ms`);
  // A head completed in time is upgraded and then no longer subject to the handshake timeout.
  const ok = await Peer.open(t, s.addr);
  const rec = await s.rec(ok);
  await sleep(450);
  t.equal(rec.closes.length, 0, 'an upgraded connection outlives handshakeTimeout');
  t.notOk(ok.ended || ok.closed);
  await closeCleanly(t, ok, rec);
});

t.test('without httpHandler: plain HTTP gets 404, a broken upgrade attempt 400', async (t) => {
  const s = await startServer(t);
  const plain = (method) => Buffer.from(`${method} /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n`, 'latin1');
  await t.test('GET without Upgrade -> 404 "Not Found"', async (t) => {
    const r = await expectRejection(t, s, plain('GET'), 404);
    t.equal(r.reason, 'Not Found');
    t.equal(r.body.toString(), 'Not Found\n');
  });
  await t.test('POST without Upgrade -> 404', async (t) => {
    await expectRejection(t, s, plain('POST'), 404);
  });
  await t.test('HEAD without Upgrade -> 404, head only', async (t) => {
    const { r } = await exchange(t, s, plain('HEAD'), { bodiless: true });
    t.equal(r.status, 404);
    t.equal(r.get('content-length'), '10');
    t.equal(r.body.length, 0, 'no body after the head of a HEAD answer');
  });
  await t.test('Upgrade: websocket with a key that is not 16 bytes -> 400', async (t) => {
    const r = await expectRejection(t, s, requestHead({ set: { 'Sec-WebSocket-Key': 'c2hvcnQ=' } }), 400);
    t.equal(r.body.toString(), 'Sec-WebSocket-Key must be 16 bytes in base64\n');
  });
  await t.test('Upgrade: websocket without Connection: upgrade -> 400', async (t) => {
    await expectRejection(t, s, requestHead({ set: { Connection: null } }), 400);
  });
  await t.test('Upgrade: websocket with version 8 -> 426', async (t) => {
    await expectRejection(t, s, requestHead({ set: { 'Sec-WebSocket-Version': '8' } }), 426, { 'Sec-WebSocket-Version': '13' });
  });
  await t.test('and a valid upgrade still opens', async (t) => {
    const { peer, rec } = await upgradeWith(t, s, requestHead(), expected101());
    await closeCleanly(t, peer, rec);
  });
});

t.test('httpHandler: plain requests get its status, headers and body; upgrades still work', async (t) => {
  const seen = [];
  const s = await startServer(t, {
    httpHandler: (head) => {
      seen.push([head.method, head.target, head.get('host')]);
      if (head.target === '/health') return { status: 200, headers: { 'X-Health': 'good', 'Cache-Control': 'no-store' }, body: 'ok\n' };
      return { status: 404, headers: [['X-Why', 'unknown path']], body: 'nothing here\n' };
    },
  });
  await t.test('GET /health', async (t) => {
    const { peer } = await exchange(t, s, Buffer.from('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    t.equal(
      peer.raw.toString('latin1'),
      'HTTP/1.1 200 OK\r\nX-Health: good\r\nCache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n',
    );
  });
  await t.test('GET /elsewhere', async (t) => {
    const { r } = await exchange(t, s, Buffer.from('GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    t.equal(r.status, 404);
    t.equal(r.get('x-why'), 'unknown path');
    t.equal(r.body.toString(), 'nothing here\n');
  });
  await t.test('HEAD /health: the head only', async (t) => {
    const { peer } = await exchange(t, s, Buffer.from('HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'), { bodiless: true });
    const text = peer.raw.toString('latin1');
    t.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    t.match(text, /Content-Length: 3\r\n/);
    t.ok(text.endsWith('\r\n\r\n'), 'no body');
  });
  await t.test('a WebSocket upgrade on the same server', async (t) => {
    const { peer, rec } = await upgradeWith(t, s, requestHead({ path: '/ws' }), expected101());
    await closeCleanly(t, peer, rec);
  });
  t.same(seen, [['GET', '/health', '127.0.0.1'], ['GET', '/elsewhere', '127.0.0.1'], ['HEAD', '/health', '127.0.0.1']]);
});

t.test('subprotocols: the server\'s preference wins; none when nothing matches', async (t) => {
  const s = await startServer(t, { subprotocols: ['chat', 'superchat'], headers: { 'X-Server': 'netloop' } });
  for (const [offer, chosen] of [
    ['superchat, chat', 'chat'],
    ['superchat', 'superchat'],
    ['foo,  superchat ,bar', 'superchat'],
    ['foo, bar', ''],
    [null, ''],
  ]) {
    await t.test(`offered ${JSON.stringify(offer)} -> ${JSON.stringify(chosen)}`, async (t) => {
      const head = requestHead(offer === null ? {} : { add: [['Sec-WebSocket-Protocol', offer]] });
      const extra = chosen === '' ? [] : [['Sec-WebSocket-Protocol', chosen]];
      const { peer, rec } = await upgradeWith(t, s, head, expected101([...extra, ['X-Server', 'netloop']]));
      t.equal(rec.conn.subprotocol, chosen);
      await closeCleanly(t, peer, rec);
    });
  }
  await t.test('a malformed offer -> 400', async (t) => {
    await expectRejection(t, s, requestHead({ add: [['Sec-WebSocket-Protocol', 'a b']] }), 400);
  });
});

t.test('frames sent right behind the request head, in the same TCP write, are not lost', async (t) => {
  const s = await startServer(t);
  const extra = Buffer.concat([cframe(1, 'eager'), cframe(9, 'p'), cframe(2, [1, 2, 3], { fin: false })]);
  const peer = await Peer.open(t, s.addr, { extra });
  const rec = await s.rec(peer);
  peer.write(cframe(0, [4], { fin: true }));
  const want = Buffer.concat([sframe(1, 'eager'), sframe(0xa, 'p'), sframe(2, [1, 2, 3, 4])]);
  await peer.waitRx(want.length);
  t.equal(hex(peer.rx), hex(want));
  // And a head whose last bytes share a write with half a frame.
  const head = requestHead();
  const f = cframe(1, 'split behind the head');
  const p2 = await Peer.connect(t, s.addr);
  p2.write(head.subarray(0, head.length - 2));
  await sleep(10);
  p2.write(Buffer.concat([head.subarray(head.length - 2), f.subarray(0, 5)]));
  await sleep(10);
  p2.write(f.subarray(5));
  await p2.waitRx(sframe(1, 'split behind the head').length);
  t.equal(hex(p2.rx), hex(sframe(1, 'split behind the head')));
  await closeCleanly(t, peer, rec);
  await closeCleanly(t, p2, await s.rec(p2));
});

t.test('keepalive (keepaliveTime 400 ms)', async (t) => {
  const s = await startServer(t, { keepaliveTime: 400 });
  await t.test('an idle client receives a ping (89 00) within about a second', async (t) => {
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    await peer.waitRx(2, 1000);
    t.equal(hex(peer.rx.subarray(0, 2)), '8900');
    peer.write(cframe(0xa, ''));
    await closeCleanly(t, peer, rec);
  });
  await t.test('a client that answers the pings stays open past 2 s', async (t) => {
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    // Like a browser or ws: each ping is answered as soon as it is read.
    let answered = 0;
    peer.sock.on('data', () => {
      const { frames } = parseFrames(peer.rx);
      while (answered < frames.length) {
        const f = frames[answered++];
        if (f.opcode === 9) peer.write(cframe(0xa, f.payload));
      }
    });
    await until(() => peer.closed || peer.ended, 2200, 'nothing').catch(() => {});
    t.notOk(peer.ended || peer.closed, 'still open after 2.2 s');
    t.equal(rec.closes.length, 0, `no onClose${rec.closes.length ? ` (got ${rec.closes[0].err?.message} ${(rec.closes[0].at - rec.openAt).toFixed(0)} ms after onOpen, after ${answered} pongs)` : ''}`);
    const { frames } = parseFrames(peer.rx);
    t.ok(frames.length >= 3, `${frames.length} pings received`);
    t.ok(frames.every((f) => f.opcode === 9 && f.len === 0 && f.fin), 'only empty pings');
    t.equal(rec.pongs.length, answered, 'every pong reached the pong handler');
    await closeCleanly(t, peer, rec);
  });
  await t.test('a client that never answers is closed: TimeoutError "read timeout" ("i/o timeout" on a blocking connection)', async (t) => {
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    const c = await closedOnce(t, rec, 2000);
    const elapsed = c.at - rec.openAt;
    t.ok(elapsed >= 400 && elapsed < 1000, `closed ${elapsed.toFixed(0)} ms after onOpen (keepaliveTime 400, at most 1.5 x plus slack)`);
    t.type(c.err, TimeoutError);
    t.equal(c.err?.message, rec.conn.ioMode === 'blocking' ? 'i/o timeout' : 'read timeout');
    t.equal(c.err?.code, 'NETLOOP_TIMEOUT');
    t.same(rec.handler, []);
    t.match(c.info, { code: 1006, reason: '', wasClean: false, initiator: 'network' });
    await peer.waitClosed();
    const { frames, rest } = parseFrames(peer.rx);
    t.equal(rest, 0);
    t.ok(frames.length >= 1 && frames.every((f) => hex(f.header) === '8900'), 'only pings on the wire, no close frame');
  });
  await t.test('keepaliveTime 0 disables it', async (t) => {
    const off = await startServer(t, { keepaliveTime: 0 });
    const peer = await Peer.open(t, off.addr);
    const rec = await off.rec(peer);
    await sleep(300);
    t.equal(peer.rxLen, 0, 'no ping');
    await closeCleanly(t, peer, rec);
  });
});
