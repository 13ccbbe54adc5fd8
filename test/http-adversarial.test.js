// Heads built to make header parsing slow: a value of "a", about 8,100
// spaces and "b", inside the 8 KiB head limit, in each header whose value the
// server or the client takes apart (Upgrade, Connection,
// Sec-WebSocket-Extensions, Sec-WebSocket-Protocol) and in an ordinary one.
// A backtracking pattern that trims or splits such a value costs time
// quadratic in its length (tens to hundreds of ms per head); an index loop
// costs what any head of that size costs. Each case measures the CPU time of
// the process per request (process.cpuUsage, averaged over many requests,
// so that it is the work and not the machine's load that is measured) and
// compares it with a plain head of the same size: first the parsers and
// checks called directly, then a real Engine with an Upgrader over loopback,
// then the client's dial() against a net.Server answering a padded 101.
import t from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { Engine, Upgrader, dial, HandshakeError } from '../dist/index.js';
import { RequestParser } from '../dist/http/request-parser.js';
import { ResponseParser, headerValue } from '../dist/http/response-parser.js';
import { checkUpgrade, isWebSocketUpgrade } from '../dist/http/upgrade.js';
import { listElements, listHasToken } from '../dist/http/chars.js';
import { acceptClientResponse, deflateUpgradeHook } from '../dist/websocket/deflate-negotiation.js';
import { SAMPLE_KEY, testIoMode } from './helpers/ws-peer.js';

t.setTimeout(120000);

const HEAD_LIMIT = 8192;
// A padded request costs at most this many times a plain one of the same size...
const FACTOR = 5;
// ...or this many ms of CPU, whichever is more: a loopback round trip costs
// well under 1 ms, so a floor of a few ms keeps a GC pause or a busy
// neighbour on a shared 2-core machine from failing the test, while the
// quadratic cases cost 10 to 100 times more than it.
const FLOOR_MS = 4;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const acceptOf = (key) => createHash('sha1').update(key + GUID).digest('base64');

function bound(plainMs) {
  return Math.max(FACTOR * plainMs, FLOOR_MS);
}

/**
 * A head of exactly `size` bytes: `firstLine`, `lines`, and last a line
 * `padName: value` whose value `fill(n)` makes up the size. Returns the head
 * and the value.
 */
function paddedHead(firstLine, lines, padName, fill, size = HEAD_LIMIT) {
  const n = size - ([firstLine, ...lines, `${padName}: `].join('\r\n') + '\r\n\r\n').length;
  if (n < 3) throw new Error('head too small to pad');
  const value = fill(n);
  const head = Buffer.from([firstLine, ...lines, `${padName}: ${value}`].join('\r\n') + '\r\n\r\n', 'latin1');
  if (head.length !== size) throw new Error('paddedHead miscounted');
  return { head, value };
}

const spaced = (n) => 'a' + ' '.repeat(n - 2) + 'b';
// The same spaces at the end of the value, where the parser trims them.
const trailing = (n) => 'a' + ' '.repeat(n - 1);
const plainFill = (n) => 'p'.repeat(n);

/** The lines of `lines` (name -> line) but the one named `padName`. */
const linesBut = (lines, padName) => Object.entries(lines).filter(([name]) => name !== padName).map(([, line]) => line);

const REQUEST_LINES = {
  Host: 'Host: 127.0.0.1',
  Upgrade: 'Upgrade: websocket',
  Connection: 'Connection: Upgrade',
  'Sec-WebSocket-Key': `Sec-WebSocket-Key: ${SAMPLE_KEY}`,
  'Sec-WebSocket-Version': 'Sec-WebSocket-Version: 13',
};

/** An upgrade request whose header `padName` (replacing the usual line, if any) holds `fill`. */
const requestHead = (padName, fill) => paddedHead('GET / HTTP/1.1', linesBut(REQUEST_LINES, padName), padName, fill);

// The padded value in each header the server reads as a list, and in one it does not read.
const PADDED_HEADERS = ['Upgrade', 'Connection', 'Sec-WebSocket-Extensions', 'Sec-WebSocket-Protocol', 'X-Pad'];

/** CPU ms (user + system, every thread of the process) per call of fn, over n calls. */
function cpuPerCall(n, fn) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(i);
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1000 / n;
}

async function cpuPerCallAsync(n, fn) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await fn(i);
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1000 / n;
}

const fmt = (ms) => `${ms.toFixed(3)} ms`;

// ---------------------------------------------------------------------------
// The server's parsing and checks, called directly

/** What the Upgrader does with a head before any I/O: parse, route, check (with permessage-deflate). */
function serverWork(head) {
  const r = new RequestParser().push(head);
  if (r === 'need-more' || r instanceof Error) throw new Error(`the head did not parse: ${r.message ?? r}`);
  isWebSocketUpgrade(r.head);
  return checkUpgrade(r.head, { subprotocols: ['chat'], negotiateExtensions: deflateUpgradeHook({}, () => {}) });
}

t.test('request parser and checkUpgrade: padded heads cost what a plain head costs', async (t) => {
  const plain = requestHead('X-Pad', plainFill).head;
  const N = 200;
  cpuPerCall(N, () => serverWork(plain)); // warm-up
  const plainMs = cpuPerCall(N, () => serverWork(plain));
  t.comment(`plain ${plain.length}-byte head: ${fmt(plainMs)} per head`);
  for (const name of PADDED_HEADERS) {
    for (const [fill, kept] of [[spaced, (v) => v], [trailing, () => 'a']]) {
      const { head, value } = requestHead(name, fill);
      t.equal(head.length, plain.length);
      // Inner spaces are part of the value; trailing ones are not.
      t.equal(new RequestParser().push(head).head.get(name), kept(value));
      const ms = cpuPerCall(20, () => serverWork(head));
      const what = `${name} ${fill === spaced ? '"a <spaces> b"' : '"a <spaces>"'}`;
      t.comment(`padded ${what}: ${fmt(ms)} per head`);
      t.ok(ms <= bound(plainMs), `padded ${what}: ${fmt(ms)} <= ${fmt(bound(plainMs))}`);
    }
  }
});


// ---------------------------------------------------------------------------
// A real server over loopback

/** Sends `head` on a new connection; resolves with the status once the response head arrived, then resets the connection. */
function roundTrip(port, head) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(head));
    sock.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.indexOf('\r\n\r\n') < 0) return;
      sock.resetAndDestroy();
      resolve(Number(got.toString('latin1', 9, 12)));
    });
    sock.on('error', reject);
    sock.on('close', () => reject(new Error(`closed before a response head: ${JSON.stringify(got.toString('latin1'))}`)));
  });
}

t.test('Engine with an Upgrader over loopback: padded request heads cost what a plain one costs', async (t) => {
  const up = new Upgrader({ subprotocols: ['chat'], compression: true });
  let opened = 0;
  up.onOpen(() => opened++);
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, ...testIoMode() });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = Number(engine.addresses()[0].split(':').pop());

  const plain = requestHead('X-Pad', plainFill).head;
  const N = 60;
  t.equal(await roundTrip(port, plain), 101);
  await cpuPerCallAsync(N, () => roundTrip(port, plain)); // warm-up
  const plainMs = await cpuPerCallAsync(N, () => roundTrip(port, plain));
  t.comment(`plain ${plain.length}-byte head over loopback: ${fmt(plainMs)} per request`);
  // An ordinary header keeps the upgrade valid; a padded list header breaks it.
  const expected = { Upgrade: 400, Connection: 400, 'Sec-WebSocket-Extensions': 400, 'Sec-WebSocket-Protocol': 400, 'X-Pad': 101 };
  for (const name of PADDED_HEADERS) {
    const { head } = requestHead(name, spaced);
    t.equal(await roundTrip(port, head), expected[name], `padded ${name}: ${expected[name]}`);
    const ms = await cpuPerCallAsync(20, () => roundTrip(port, head));
    t.comment(`padded ${name} over loopback: ${fmt(ms)} per request`);
    t.ok(ms <= bound(plainMs), `padded ${name}: ${fmt(ms)} <= ${fmt(bound(plainMs))}`);
  }
  t.ok(opened >= 2 * N + 22, `the plain and X-Pad heads were upgraded (${opened})`);
});

// ---------------------------------------------------------------------------
// The client's parsing of a response head

const RESPONSE_LINES = {
  Upgrade: 'Upgrade: websocket',
  Connection: 'Connection: Upgrade',
};

/** A 101 for `key` whose header `padName` (replacing the usual line, if any) holds `fill`. */
const responseHead = (key, padName, fill) =>
  paddedHead('HTTP/1.1 101 Switching Protocols', [...linesBut(RESPONSE_LINES, padName), `Sec-WebSocket-Accept: ${acceptOf(key)}`], padName, fill);

/** What dial() does with a response head: parse it, then read the lists in it. */
function clientWork(head) {
  const r = new ResponseParser().push(head);
  if (r === 'need-more' || r instanceof Error) throw new Error(`the head did not parse: ${r.message ?? r}`);
  listHasToken(headerValue(r.head, 'upgrade'), 'websocket');
  listHasToken(headerValue(r.head, 'connection'), 'upgrade');
  const extensions = headerValue(r.head, 'sec-websocket-extensions');
  if (extensions !== undefined) {
    listElements(extensions);
    acceptClientResponse(extensions, {});
  }
  return r.head;
}

t.test('response parser: padded 101 heads cost what a plain one costs', async (t) => {
  const plain = responseHead(SAMPLE_KEY, 'X-Pad', plainFill).head;
  const N = 200;
  cpuPerCall(N, () => clientWork(plain)); // warm-up
  const plainMs = cpuPerCall(N, () => clientWork(plain));
  t.comment(`plain ${plain.length}-byte 101: ${fmt(plainMs)} per head`);
  for (const name of PADDED_HEADERS) {
    for (const [fill, kept] of [[spaced, (v) => v], [trailing, () => 'a']]) {
      const { head, value } = responseHead(SAMPLE_KEY, name, fill);
      t.equal(head.length, plain.length);
      t.equal(headerValue(clientWork(head), name.toLowerCase()), kept(value));
      const ms = cpuPerCall(20, () => clientWork(head));
      const what = `${name} ${fill === spaced ? '"a <spaces> b"' : '"a <spaces>"'}`;
      t.comment(`padded ${what}: ${fmt(ms)} per head`);
      t.ok(ms <= bound(plainMs), `padded ${what}: ${fmt(ms)} <= ${fmt(bound(plainMs))}`);
    }
  }
});

t.test('dial() against a server answering padded 101 heads: the cost of a plain one', async (t) => {
  let padName = 'X-Pad';
  let fill = plainFill;
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (d) => {
      if (got === null) return; // frames after the handshake: ignored
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const at = got.indexOf('Sec-WebSocket-Key: ');
      const key = got.slice(at + 19, got.indexOf('\r\n', at));
      got = null;
      sock.write(responseHead(key, padName, fill).head);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  const engine = new Engine();
  await engine.start();
  t.teardown(() => engine.stop());
  const url = `ws://127.0.0.1:${server.address().port}/`;

  /** One handshake: 'open' (then closed at once) or the HandshakeError's code. */
  const handshake = () =>
    dial(url, { engine, compression: true, subprotocols: ['chat'], handshakeTimeout: 5000 }).then(
      (ws) => {
        ws.closeAndClean(null);
        return 'open';
      },
      (err) => {
        if (!(err instanceof HandshakeError)) throw err;
        return err.code;
      },
    );

  const N = 60;
  t.equal(await handshake(), 'open');
  await cpuPerCallAsync(N, handshake); // warm-up
  const plainMs = await cpuPerCallAsync(N, handshake);
  t.comment(`plain 101 to dial(): ${fmt(plainMs)} per handshake`);
  const expected = {
    Upgrade: 'WS_ERR_HANDSHAKE',
    Connection: 'WS_ERR_HANDSHAKE',
    'Sec-WebSocket-Extensions': 'WS_ERR_HANDSHAKE_EXTENSION',
    'Sec-WebSocket-Protocol': 'WS_ERR_HANDSHAKE_PROTOCOL',
    'X-Pad': 'open',
  };
  fill = spaced;
  for (const name of PADDED_HEADERS) {
    padName = name;
    t.equal(await handshake(), expected[name], `padded ${name}: ${expected[name]}`);
    const ms = await cpuPerCallAsync(20, handshake);
    t.comment(`padded ${name} to dial(): ${fmt(ms)} per handshake`);
    t.ok(ms <= bound(plainMs), `padded ${name}: ${fmt(ms)} <= ${fmt(bound(plainMs))}`);
  }
});
