// permessage-deflate (RFC 7692) against implementations nobody here wrote,
// over loopback sockets:
//
//  1. the npm `ws` client (perMessageDeflate) and hand-built frames from a
//     raw `net` socket, against `new Upgrader({ compression })`: the
//     negotiated parameters exactly as they appear in the 101 response, the
//     threshold, RSV1 on the wire, context takeover and its absence, window
//     sizes, declined offers, a deflate bomb (1009), RSV1 on a continuation
//     frame (1002), corrupt compressed data (1007);
//  2. netloop's own dial(url, { compression }) against ws's WebSocketServer;
//  3. headless Chromium, which offers permessage-deflate by default;
//  4. undici's WebSocket (v7), which offers permessage-deflate and inflates
//     what the server compresses, but never compresses what it sends.
//
// Where the wire matters, the client talks to the server through a
// transparent TCP tap (startTap) that records both directions; the frames
// are parsed here, independently of lib/, and compressed payloads are
// inflated with Node's public zlib, so RSV1, sizes and the DEFLATE stream
// itself are checked, not only what the two ends report.
import t from 'tap';
import net from 'node:net';
import zlib from 'node:zlib';
import WebSocket, { WebSocketServer } from 'ws';
import { WebSocket as UndiciWebSocket } from 'undici';
import { launchChromium, requireChromium } from './helpers/chromium.js';
import { parseFrames } from './helpers/ws-peer.js';
import { CloseError, ProtocolError, dial } from '../dist/index.js';
import { MiB, assertError, pattern, sleep, startServer, until, utf8Text, within } from './helpers/interop-server.js';

const OPTS = { timeout: 15000 };

const KiB = 1024;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const { Z_SYNC_FLUSH } = zlib.constants;
const hex = (b) => Buffer.from(b).toString('hex');
const SAMPLE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const SAMPLE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
/** RFC 6455 §5.7's example mask key, for every frame the raw client sends. */
const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

// ---------------------------------------------------------------------------
// Frames and DEFLATE, built and read independently of lib/

/** A masked client frame: b0 is FIN|RSV|opcode as one byte (0xC1 = FIN, RSV1, text). */
function cframe(b0, payload) {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  const n = p.length;
  let head;
  if (n < 126) head = Buffer.from([b0, 0x80 | n]);
  else if (n < 0x10000) head = Buffer.from([b0, 0x80 | 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const masked = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) masked[i] = p[i] ^ MASK[i & 3];
  return Buffer.concat([head, MASK, masked]);
}

/** An unmasked server frame with a short payload (< 126 bytes), as it must appear on the wire. */
function sframe(b0, payload) {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  if (p.length >= 126) throw new Error('sframe: short payloads only');
  return Buffer.concat([Buffer.from([b0, p.length]), p]);
}


/** Data frames grouped into messages: { b0 of the first frame, rsv1, opcode, frames, payload (joined) }. */
function messagesOf(frames) {
  const out = [];
  let cur = null;
  for (const f of frames) {
    if (f.opcode >= 0x8) continue;
    if (f.opcode !== 0) cur = { b0: f.b0, rsv1: f.rsv1, opcode: f.opcode, frames: [] };
    cur.frames.push(f);
    if (f.fin) {
      cur.payload = Buffer.concat(cur.frames.map((x) => x.payload));
      out.push(cur);
      cur = null;
    }
  }
  return out;
}

/** A whole message as a peer compresses it (§7.2.1): sync flush, the 00 00 ff ff tail removed. */
function deflateMessage(data, options = {}) {
  const raw = zlib.deflateRawSync(data, { finishFlush: Z_SYNC_FLUSH, ...options });
  if (!raw.subarray(raw.length - 4).equals(TAIL)) throw new Error('deflateMessage: no sync flush tail');
  return raw.subarray(0, raw.length - 4);
}

/**
 * Inflates the payloads of consecutive compressed messages as one DEFLATE
 * stream (§7.2.2: each gets the tail back), which is what a receiver with
 * context takeover does; a payload that needs an earlier message's window
 * inflates only this way.
 *
 * Strict about the window: zlib checks a distance against the window only
 * when it reaches back past the output buffer of the current call, so with
 * a large buffer an 8-bit inflater accepts distances of thousands of bytes.
 * A 64-byte chunkSize (Node's minimum) makes nearly every match go through
 * the window, and "invalid distance too far back" is reported for any
 * distance beyond 2^windowBits.
 */
function inflateMessages(payloads, windowBits = 15) {
  return zlib.inflateRawSync(Buffer.concat(payloads.flatMap((p) => [p, TAIL])), { windowBits, finishFlush: Z_SYNC_FLUSH, chunkSize: 64 });
}

/**
 * Text whose every 1500-byte block appears twice in a row: a 15-bit
 * compressor finds matches at distance 1500, which a receiver limited to a
 * 1024-byte (10-bit) window cannot resolve (zlib: "invalid distance too far
 * back"). Compressed within 10 bits it must not use them.
 */
function farRepeats(n, seed) {
  const parts = [];
  for (let i = 0; parts.join('').length < n; i++) {
    const block = pattern(750, seed + i).toString('hex');
    parts.push(block, block);
  }
  return parts.join('').slice(0, n);
}

/**
 * A public zlib DeflateRaw kept across messages, as a peer with context
 * takeover compresses: each message() is one sync flush, the tail removed.
 */
function contextCompressor() {
  const stream = zlib.createDeflateRaw();
  const out = [];
  stream.on('data', (d) => out.push(d));
  return {
    async message(data) {
      await new Promise((resolve) => stream.write(data, () => stream.flush(Z_SYNC_FLUSH, resolve)));
      const all = Buffer.concat(out.splice(0));
      if (!all.subarray(all.length - 4).equals(TAIL)) throw new Error('contextCompressor: no sync flush tail');
      return all.subarray(0, all.length - 4);
    },
    close() {
      stream.close();
    },
  };
}

/**
 * Text whose 300-byte blocks each appear twice in a row: matches at distance
 * 300, inside a 9-bit window (512) but beyond an 8-bit one (256).
 */
function nearRepeats(n, seed) {
  let s = '';
  for (let i = 0; s.length < n; i++) {
    const block = pattern(150, seed + i).toString('hex');
    s += block + block;
  }
  return s.slice(0, n);
}

// ---------------------------------------------------------------------------
// A transparent TCP tap between a client and a server

/**
 * Listens on 127.0.0.1:0 and forwards every connection to 127.0.0.1:port,
 * keeping what goes each way. `sessions[i].wire()` parses connection i: the
 * request and response heads and the frames after them.
 */
async function startTap(t, port) {
  const sessions = [];
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
    const up = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    const s = {
      c2s: [],
      s2c: [],
      wire() {
        const c2s = Buffer.concat(s.c2s);
        const s2c = Buffer.concat(s.s2c);
        const i = c2s.indexOf('\r\n\r\n');
        const j = s2c.indexOf('\r\n\r\n');
        const client = parseFrames(i < 0 ? Buffer.alloc(0) : c2s.subarray(i + 4));
        const server = parseFrames(j < 0 ? Buffer.alloc(0) : s2c.subarray(j + 4));
        return {
          request: i < 0 ? null : c2s.toString('latin1', 0, i + 4),
          response: j < 0 ? null : s2c.toString('latin1', 0, j + 4),
          client: client.frames,
          server: server.frames,
          clientMessages: messagesOf(client.frames),
          serverMessages: messagesOf(server.frames),
        };
      },
    };
    sessions.push(s);
    for (const x of [down, up]) {
      sockets.add(x);
      x.on('close', () => sockets.delete(x));
    }
    down.on('data', (d) => s.c2s.push(Buffer.from(d)));
    up.on('data', (d) => s.s2c.push(Buffer.from(d)));
    down.pipe(up);
    up.pipe(down);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  const tapPort = server.address().port;
  return { sessions, port: tapPort, addr: `127.0.0.1:${tapPort}`, url: `ws://127.0.0.1:${tapPort}/ws` };
}

/** Value of a header in a raw HTTP head, or undefined; throws if it appears more than once. */
function headerOf(head, name) {
  const lines = head.split('\r\n').filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  if (lines.length > 1) throw new Error(`${name} appears ${lines.length} times`);
  return lines.length === 0 ? undefined : lines[0].slice(name.length + 1).trim();
}

// ---------------------------------------------------------------------------
// A raw net client

class Raw {
  /** Connects to `port`, sends an upgrade request offering `extensions` (when given), waits for the response head. */
  static async open(t, port, extensions) {
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    t.teardown(() => sock.destroy());
    const r = new Raw(sock);
    await within(
      new Promise((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      }),
      3000,
      'raw connect',
    );
    const lines = ['GET /ws HTTP/1.1', 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${SAMPLE_KEY}`, 'Sec-WebSocket-Version: 13'];
    if (extensions !== undefined) lines.push(`Sec-WebSocket-Extensions: ${extensions}`);
    sock.write(lines.join('\r\n') + '\r\n\r\n');
    await until(() => r.head !== null || r.closed, 3000, 'the response head');
    return r;
  }

  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.closed = false;
    this.ended = false;
    sock.on('data', (d) => this.chunks.push(d));
    sock.on('end', () => (this.ended = true));
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => {});
  }

  get raw() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  get head() {
    const i = this.raw.indexOf('\r\n\r\n');
    return i < 0 ? null : this.raw.toString('latin1', 0, i + 4);
  }

  /** Bytes after the response head. */
  get rx() {
    const i = this.raw.indexOf('\r\n\r\n');
    return i < 0 ? Buffer.alloc(0) : this.raw.subarray(i + 4);
  }

  get frames() {
    return parseFrames(this.rx).frames;
  }

  write(buf) {
    this.sock.write(buf);
  }

  async waitFrames(n, ms = 5000) {
    await until(() => this.frames.length >= n || this.closed, ms, `${n} frames from the server`);
    if (this.frames.length < n) throw new Error(`closed after ${this.frames.length} of ${n} frames: ${hex(this.rx)}`);
    return this.frames;
  }

  waitClosed(ms = 5000) {
    return until(() => this.closed, ms, 'the raw socket to close');
  }
}

/** The exact 101 response to SAMPLE_KEY without a subprotocol, with the extension header when given. */
function expected101(extensions) {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${SAMPLE_ACCEPT}`];
  if (extensions !== undefined) lines.push(`Sec-WebSocket-Extensions: ${extensions}`);
  return lines.join('\r\n') + '\r\n\r\n';
}

// ---------------------------------------------------------------------------
// The ws client

/** Opens a ws client; records messages, errors, the 101 response's Sec-WebSocket-Extensions and the close. */
async function connectWs(url, perMessageDeflate = true) {
  const ws = new WebSocket(url, { perMessageDeflate });
  const cl = { ws, messages: [], errors: [], responseExtensions: undefined, closes: 0 };
  ws.on('upgrade', (res) => {
    cl.responseExtensions = res.headers['sec-websocket-extensions'];
  });
  ws.on('message', (data, isBinary) => cl.messages.push({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary }));
  ws.on('error', (err) => cl.errors.push(err));
  cl.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      cl.closes++;
      resolve({ code, reason: reason.toString('utf8') });
    });
  });
  await within(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    }),
    5000,
    'ws client open',
  );
  return cl;
}

const wsClosed = (cl, ms = 5000) => within(cl.closed, ms, 'ws client close event');

/** Closes a ws client with 1000 and checks both ends saw exactly one clean close. */
async function closeWs(t, srv, cl, rec) {
  cl.ws.close(1000);
  t.same(await wsClosed(cl), { code: 1000, reason: '' }, 'ws: closed 1000');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(cl.errors, [], 'ws reported no error');
}

/** Starts a server with compression and a tap in front of it, recording each offer. */
async function compressedServer(t, compression = true, extra = {}) {
  const offers = [];
  const srv = await startServer(t, {
    compression,
    ...extra,
    upgrader: {
      checkOrigin(_origin, head) {
        offers.push(head.get('sec-websocket-extensions'));
        return true;
      },
      ...extra.upgrader,
    },
  });
  const tap = await startTap(t, srv.port);
  return { srv, tap, offers };
}

// ===========================================================================
// 1. The ws client and raw frames against the Upgrader

t.test('ws: permessage-deflate agreed; 10-byte echoes go uncompressed (RSV1 clear on the wire)', OPTS, async (t) => {
  const { srv, tap, offers } = await compressedServer(t);
  const cl = await connectWs(tap.url);
  const rec = await srv.conn(0);
  t.same(offers, ['permessage-deflate; client_max_window_bits'], "ws's default offer");
  t.equal(cl.responseExtensions, 'permessage-deflate', 'the 101 answers permessage-deflate with no parameter');
  t.equal(cl.ws.extensions, 'permessage-deflate', 'ws.extensions');
  const text = 'ten bytes!';
  const bin = pattern(10, 3);
  t.equal(Buffer.byteLength(text), 10);
  cl.ws.send(text);
  cl.ws.send(bin);
  await until(() => cl.messages.length === 2, 5000, 'two echoes');
  t.same(
    cl.messages.map((m) => [m.isBinary, hex(m.data)]),
    [
      [false, hex(text)],
      [true, hex(bin)],
    ],
    'ws got both echoes exactly',
  );
  t.same(
    rec.messages.map((m) => [m.type, hex(m.data)]),
    [
      ['text', hex(text)],
      ['binary', hex(bin)],
    ],
  );
  const w = tap.sessions[0].wire();
  t.equal(headerOf(w.response, 'Sec-WebSocket-Extensions'), 'permessage-deflate', 'the header on the wire');
  // ws applies its threshold only without context takeover (ws/lib/sender.js):
  // with it, even 10 bytes go compressed. The server inflates them.
  t.same(
    w.client.map((f) => [f.b0, f.rsv1]),
    [
      [0xc1, true],
      [0xc2, true],
    ],
    'ws compressed even the 10-byte messages (its threshold applies only without context takeover)',
  );
  t.equal(hex(inflateMessages(w.client.map((f) => f.payload))), hex(Buffer.concat([Buffer.from(text), bin])), "ws's payloads inflate to what the server delivered");
  t.same(
    w.server.map((f) => [f.b0, hex(f.payload)]),
    [
      [0x81, hex(text)],
      [0x82, hex(bin)],
    ],
    'the server echoed both under its threshold (1024): 0x81 and 0x82, the payload as is',
  );
  await closeWs(t, srv, cl, rec);
  await srv.finish(t);
});

t.test('ws: 100 KiB compressible text and 1 MiB random binary, compressed both ways', OPTS, async (t) => {
  const { srv, tap } = await compressedServer(t);
  const cl = await connectWs(tap.url);
  const rec = await srv.conn(0);
  const text = utf8Text(100 * KiB);
  const textBytes = Buffer.from(text);
  const bin = pattern(MiB, 99);
  cl.ws.send(text);
  cl.ws.send(bin);
  await until(() => cl.messages.length === 2, 10000, 'two echoes');
  t.equal(cl.messages[0].isBinary, false);
  t.ok(cl.messages[0].data.equals(textBytes), 'ws: 100 KiB text echo exact');
  t.equal(cl.messages[1].isBinary, true);
  t.ok(cl.messages[1].data.equals(bin), 'ws: 1 MiB binary echo exact');
  t.same(
    rec.messages.map((m) => m.type),
    ['text', 'binary'],
  );
  t.ok(rec.messages[0].data.equals(textBytes) && rec.messages[1].data.equals(bin), 'the server inflated both exactly');

  const w = tap.sessions[0].wire();
  t.same(
    w.clientMessages.map((m) => [m.b0 & 0xf0, m.rsv1]),
    [
      [0xc0, true],
      [0xc0, true],
    ],
    'ws compressed both (RSV1 on the first frame)',
  );
  t.ok(inflateMessages(w.clientMessages.map((m) => m.payload)).equals(Buffer.concat([textBytes, bin])), "ws's payloads inflate to what the server delivered");
  const [st, sb] = w.serverMessages;
  t.equal(w.server.length, 2, 'the server sent each echo as one frame');
  t.equal(st.b0, 0xc1, 'text echo: FIN, RSV1, text');
  t.ok(st.payload.length < textBytes.length / 20, `text echo compressed: ${st.payload.length} bytes for ${textBytes.length}`);
  t.equal(sb.b0, 0xc2, 'binary echo: FIN, RSV1, binary (compressed whatever the ratio: only the threshold decides)');
  t.ok(
    sb.payload.length >= bin.length && sb.payload.length < bin.length + 4 * KiB,
    `random binary does not shrink: ${sb.payload.length} bytes for ${bin.length} (stored blocks)`,
  );
  t.ok(inflateMessages([st.payload, sb.payload]).equals(Buffer.concat([textBytes, bin])), 'the server payloads are one valid DEFLATE stream (public zlib)');
  await closeWs(t, srv, cl, rec);
  await srv.finish(t);
});

t.test('ws: 1,000 messages in a row with context takeover both ways', OPTS, async (t) => {
  const { srv, tap } = await compressedServer(t);
  const cl = await connectWs(tap.url);
  const rec = await srv.conn(0);
  const block = pattern(600, 5).toString('hex'); // 1200 bytes, no repeats inside
  const msgs = Array.from({ length: 1000 }, (_, i) => `{"seq":${i},"user":"u${i % 17}","block":"${block}"}`);
  for (const m of msgs) cl.ws.send(m);
  await until(() => cl.messages.length === 1000, 10000, '1,000 echoes');
  t.ok(
    cl.messages.every((m, i) => !m.isBinary && m.data.toString('utf8') === msgs[i]),
    'ws got all 1,000 echoes, in order, exactly',
  );
  t.equal(rec.messages.length, 1000);
  t.ok(
    rec.messages.every((m, i) => m.type === 'text' && m.data.toString('utf8') === msgs[i]),
    'the server got all 1,000 in order, exactly',
  );
  const w = tap.sessions[0].wire();
  t.equal(w.serverMessages.length, 1000);
  t.ok(
    w.serverMessages.every((m) => m.b0 === 0xc1 && m.frames.length === 1),
    'every echo: one frame, 0xC1',
  );
  const sizes = w.serverMessages.map((m) => m.payload.length);
  const rest = Math.max(...sizes.slice(1));
  t.ok(sizes[0] > 600 && rest < sizes[0] / 4, `server context kept: first ${sizes[0]} bytes, the others at most ${rest}`);
  t.equal(inflateMessages(w.serverMessages.map((m) => m.payload)).toString('utf8'), msgs.join(''), 'server payloads: one DEFLATE stream across 1,000 messages');
  const csizes = w.clientMessages.map((m) => m.payload.length);
  t.ok(
    w.clientMessages.every((m) => m.rsv1) && Math.max(...csizes.slice(1)) < csizes[0] / 4,
    `ws compressed with its context too (first ${csizes[0]}, the others at most ${Math.max(...csizes.slice(1))}) and the server inflated each`,
  );
  await closeWs(t, srv, cl, rec);
  await srv.finish(t);
});

t.test('ws asks for every parameter: the 101 honours each; no context kept, windows within 10 and 9 bits', OPTS, async (t) => {
  const { srv, tap, offers } = await compressedServer(t);
  const cl = await connectWs(tap.url, { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 });
  const rec = await srv.conn(0);
  t.same(offers, ['permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9'], "ws's offer");
  const agreed = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9';
  t.equal(cl.responseExtensions, agreed, 'the 101 answers every parameter, with the same values');
  t.equal(cl.ws.extensions, 'permessage-deflate');
  t.equal(headerOf(tap.sessions[0].wire().response, 'Sec-WebSocket-Extensions'), agreed, 'exactly that on the wire');
  const msg = farRepeats(6000, 40);
  for (let i = 0; i < 3; i++) cl.ws.send(msg);
  await until(() => cl.messages.length === 3, 5000, 'three echoes');
  t.ok(
    cl.messages.every((m) => m.data.toString() === msg) && rec.messages.every((m) => m.data.toString() === msg),
    'echoes exact; the server inflated each with a 9-bit window',
  );
  const w = tap.sessions[0].wire();
  const sp = w.serverMessages.map((m) => m.payload);
  t.ok(
    w.serverMessages.every((m) => m.b0 === 0xc1),
    'server frames compressed (0xC1)',
  );
  t.equal(sp.length, 3);
  t.ok(sp[1].equals(sp[0]) && sp[2].equals(sp[0]), `server_no_context_takeover: the same message compresses to the same ${sp[0].length} bytes each time`);
  for (const [i, p] of sp.entries()) {
    t.equal(inflateMessages([p], 10).toString(), msg, `server message ${i} inflates alone, within a 10-bit window`);
  }
  const cp = w.clientMessages.map((m) => m.payload);
  t.ok(cp.length === 3 && cp[1].equals(cp[0]) && cp[2].equals(cp[0]), 'ws reset its context too (client_no_context_takeover)');
  await closeWs(t, srv, cl, rec);
  await srv.finish(t);
});

t.test('ws asks for 8-bit windows both ways: agreed, and both sides stay within 256 bytes', OPTS, async (t) => {
  // zlib cannot compress raw DEFLATE with an 8-bit window (both ends use 9);
  // a 9-bit compressor never emits distances above 250, so an 8-bit
  // inflater keeps up (deflate.ts). Repeats at distance 300 exercise that.
  const { srv, tap } = await compressedServer(t);
  const cl = await connectWs(tap.url, { serverMaxWindowBits: 8, clientMaxWindowBits: 8 });
  const rec = await srv.conn(0);
  t.equal(cl.responseExtensions, 'permessage-deflate; server_max_window_bits=8; client_max_window_bits=8');
  const msg = nearRepeats(4000, 60);
  for (let i = 0; i < 3; i++) cl.ws.send(msg);
  await until(() => cl.messages.length === 3, 5000, 'three echoes');
  t.ok(rec.messages.length === 3 && rec.messages.every((m) => m.data.toString() === msg), 'the server inflated ws with an 8-bit window');
  t.ok(cl.messages.every((m) => m.data.toString() === msg), 'ws inflated ours with an 8-bit window');
  const w = tap.sessions[0].wire();
  t.ok(w.serverMessages.every((m) => m.rsv1), 'echoes compressed');
  t.equal(
    inflateMessages(
      w.serverMessages.map((m) => m.payload),
      8,
    ).toString(),
    msg.repeat(3),
    'our payloads inflate with windowBits 8 (public zlib)',
  );
  await closeWs(t, srv, cl, rec);
  await srv.finish(t);
});

t.test('ws: a compressed message sent in fragments (RSV1 on the first only) arrives as one message', OPTS, async (t) => {
  const { srv, tap } = await compressedServer(t);
  const cl = await connectWs(tap.url);
  const rec = await srv.conn(0);
  const parts = [farRepeats(3000, 70), 'middle é', farRepeats(2000, 71)];
  cl.ws.send(parts[0], { fin: false });
  cl.ws.send(parts[1], { fin: false });
  cl.ws.send(parts[2], { fin: true });
  await until(() => cl.messages.length === 1, 5000, 'the echo');
  t.same(
    rec.messages.map((m) => [m.type, m.data.toString()]),
    [['text', parts.join('')]],
    'one text message at the server',
  );
  t.equal(cl.messages[0].data.toString(), parts.join(''), 'echo exact');
  const w = tap.sessions[0].wire();
  t.same(
    w.client.map((f) => f.b0),
    [0x41, 0x00, 0x80],
    'on the wire from ws: 0x41 (RSV1, text, not FIN), 0x00, 0x80',
  );
  t.same(
    w.server.map((f) => f.b0),
    [0xc1],
    'the echo: one compressed frame',
  );
  await closeWs(t, srv, cl, rec);
  await srv.finish(t);
});

t.test('server options answered unasked: server_no_context_takeover; client_max_window_bits=10', OPTS, async (t) => {
  t.test('compression: { serverNoContextTakeover: true }', async (t) => {
    const { srv, tap, offers } = await compressedServer(t, { serverNoContextTakeover: true });
    const cl = await connectWs(tap.url);
    const rec = await srv.conn(0);
    t.same(offers, ['permessage-deflate; client_max_window_bits'], 'ws did not ask for it');
    t.equal(cl.responseExtensions, 'permessage-deflate; server_no_context_takeover', 'the server answers it anyway (§7.1.1.1)');
    const msg = farRepeats(3000, 7);
    for (let i = 0; i < 3; i++) cl.ws.send(msg);
    await until(() => cl.messages.length === 3, 5000, 'three echoes');
    t.ok(cl.messages.every((m) => m.data.toString() === msg), 'echoes exact');
    const w = tap.sessions[0].wire();
    const sp = w.serverMessages.map((m) => m.payload);
    t.ok(sp.length === 3 && sp.every((p) => p.equals(sp[0])), `no context between server messages: three identical ${sp[0].length}-byte payloads`);
    const cp = w.clientMessages.map((m) => m.payload.length);
    t.ok(cp[1] < cp[0] / 4 && cp[2] < cp[0] / 4, `ws kept its own context (${cp.join(', ')} bytes)`);
    await closeWs(t, srv, cl, rec);
    await srv.finish(t);
  });

  t.test('compression: { clientMaxWindowBits: 10 }', async (t) => {
    const { srv, tap } = await compressedServer(t, { clientMaxWindowBits: 10 });
    const cl = await connectWs(tap.url);
    const rec = await srv.conn(0);
    t.equal(cl.responseExtensions, 'permessage-deflate; client_max_window_bits=10', 'the limit answers the valueless client_max_window_bits');
    const msg = farRepeats(6000, 9);
    cl.ws.send(msg);
    cl.ws.send(msg);
    await until(() => cl.messages.length === 2, 5000, 'two echoes');
    t.ok(rec.messages.length === 2 && rec.messages.every((m) => m.data.toString() === msg), 'the server inflated both with a 10-bit window');
    t.ok(cl.messages.every((m) => m.data.toString() === msg), 'echoes exact');
    const w = tap.sessions[0].wire();
    t.equal(
      inflateMessages(
        w.clientMessages.map((m) => m.payload),
        10,
      ).toString(),
      msg + msg,
      "ws's payloads stay within 10 bits (public zlib, windowBits 10)",
    );
    await closeWs(t, srv, cl, rec);
    await srv.finish(t);
  });
});

t.test('raw client: the 101 byte for byte, RSV1 by size, the §7.2.3.1 example, context takeover on the wire', OPTS, async (t) => {
  const srv = await startServer(t, { compression: true });
  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  t.equal(r.head, expected101('permessage-deflate'), 'the 101 response, exactly');
  const rec = await srv.conn(0);

  // 10 bytes, uncompressed from us: the echo is below the threshold.
  r.write(cframe(0x81, 'ten bytes!'));
  await r.waitFrames(1);
  t.equal(hex(r.rx), hex(sframe(0x81, 'ten bytes!')), '10-byte echo: 81 0a + the bytes (RSV1 clear)');

  // §7.2.3.1: "Hello" compressed, RSV1 set; delivered inflated, echoed as is (5 < 1024).
  r.write(cframe(0xc1, Buffer.from('f248cdc9c90700', 'hex')));
  let f = await r.waitFrames(2);
  t.equal(hex(f[1].payload), hex('Hello'), 'the §7.2.3.1 message was inflated to "Hello"');
  t.equal(f[1].b0, 0x81);

  // 2000 bytes twice: compressed (0xC1), the second much smaller (context kept).
  const text = farRepeats(2000, 1);
  r.write(cframe(0x81, text));
  r.write(cframe(0x81, text));
  f = await r.waitFrames(4);
  t.same(
    [f[2].b0, f[3].b0],
    [0xc1, 0xc1],
    '2000-byte echoes: 0xC1',
  );
  t.ok(f[3].payload.length < f[2].payload.length / 4, `context takeover: ${f[2].payload.length} then ${f[3].payload.length} bytes`);
  t.equal(inflateMessages([f[2].payload, f[3].payload]).toString(), text + text, 'public zlib inflates both as one stream');
  t.throws(() => inflateMessages([f[3].payload]), { code: 'Z_DATA_ERROR', message: 'invalid distance too far back' }, "the second alone needs the first one's window");

  // A compressed message from us, 2000 bytes, with a DEFLATE stream we made.
  r.write(cframe(0xc2, deflateMessage(pattern(2000, 77))));
  await until(() => rec.messages.length === 5, 3000, 'five messages at the server');
  t.same(
    rec.messages.map((m) => [m.type, m.data.length]),
    [
      ['text', 10],
      ['text', 5],
      ['text', 2000],
      ['text', 2000],
      ['binary', 2000],
    ],
  );
  t.ok(rec.messages[4].data.equals(pattern(2000, 77)), 'binary compressed by public zlib, inflated exactly');
  r.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  await r.waitClosed();
  t.equal(hex(r.frames.at(-1).payload), '03e8', 'close 1000 echoed');
  t.equal(await srv.closed(rec), null);
  await srv.finish(t);
});

t.test('raw client: empty compressed messages (§7.2.3.6) keep the context; a final block (§7.2.3.4) ends the stream', OPTS, async (t) => {
  const srv = await startServer(t, { compression: true });
  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec = await srv.conn(0);
  const text = farRepeats(2000, 51);
  const z = contextCompressor();
  t.teardown(() => z.close());
  const m1 = await z.message(text);
  const m4 = await z.message(text);
  t.ok(m4.length < m1.length / 4, `the second compression of the text needs the first as history (${m1.length} then ${m4.length} bytes)`);
  r.write(cframe(0xc1, m1));
  r.write(cframe(0xc1, Buffer.from([0x00]))); // §7.2.3.6: an empty message
  r.write(cframe(0xc2, Buffer.alloc(0))); // an empty payload with RSV1: what a compressor with nothing to flush sends
  r.write(cframe(0xc1, m4)); // continues the stream of m1
  r.write(cframe(0xc1, zlib.deflateRawSync('Hello'))); // Z_FINISH: BFINAL set, no tail to strip
  r.write(cframe(0xc1, deflateMessage('again'))); // a fresh stream after the final block
  await until(() => rec.messages.length === 6, 3000, 'six messages');
  t.same(
    rec.messages.map((m) => [m.type, m.data.toString()]),
    [
      ['text', text],
      ['text', ''],
      ['binary', ''],
      ['text', text],
      ['text', 'Hello'],
      ['text', 'again'],
    ],
    'empty messages delivered empty, the context kept across them; after a final block a new stream',
  );
  r.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  t.equal(await srv.closed(rec), null);
  await srv.finish(t);
});

t.test('compression.maxMessageLength bounds inflation on the server as DeflateOptions documents', OPTS, async (t) => {
  // DeflateCodecOptions.maxMessageLength: "Bytes a message may inflate to
  // [...] decompress() applies the smaller of this and its maxLength
  // argument". The Upgrader builds its codec with
  // { ...compression, maxMessageLength: this.messageLengthLimit }, so the
  // option given in `compression` is dropped and a 2000-byte message passes
  // a limit of 1000.
  const srv = await startServer(t, { compression: { maxMessageLength: 1000 } });
  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec = await srv.conn(0);
  r.write(cframe(0xc2, deflateMessage(Buffer.alloc(2000))));
  await until(() => r.closed || rec.messages.length > 0, 3000, 'delivery or close');
  await sleep(50);
  t.same(rec.messages, [], 'not delivered');
  t.equal(hex(r.rx), '880203f1', 'close 1009');
  r.sock.destroy();
  await srv.finish(t);
});

t.test('raw client: the threshold option decides RSV1 by size', OPTS, async (t) => {
  const srv = await startServer(t, { compression: { threshold: 16 } });
  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  t.equal(headerOf(r.head, 'Sec-WebSocket-Extensions'), 'permessage-deflate');
  const rec = await srv.conn(0);
  const a15 = 'a'.repeat(15);
  const a16 = 'a'.repeat(16);
  r.write(cframe(0x81, a15));
  r.write(cframe(0x81, a16));
  const f = await r.waitFrames(2);
  t.equal(hex(f[0].payload), hex(a15));
  t.same(
    [f[0].b0, f[1].b0],
    [0x81, 0xc1],
    '15 bytes under a threshold of 16: RSV1 clear; 16 bytes: RSV1 set',
  );
  t.equal(inflateMessages([f[1].payload]).toString(), a16);
  r.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  t.equal(await srv.closed(rec), null);
  await srv.finish(t);
});

t.test('offers the server cannot accept are declined (§5), and the connection works uncompressed', OPTS, async (t) => {
  // RFC 7692 §5: "A server MUST decline an extension negotiation offer for
  // this extension if [...] the negotiation offer contains an extension
  // parameter not defined for use in an offer [or] an extension parameter
  // with an invalid value"; declining means answering without it (§5.1,
  // §7: "the server MUST decline" the offer, not fail the handshake).
  const srv = await startServer(t, { compression: true });
  const declined = [
    'permessage-deflate; server_max_window_bits=7',
    'permessage-deflate; client_max_window_bits=16',
    'permessage-deflate; foo',
    'permessage-deflate; server_no_context_takeover=1',
    'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
    'x-webkit-deflate-frame',
  ];
  for (const [i, offer] of declined.entries()) {
    const r = await Raw.open(t, srv.port, offer);
    t.equal(r.head, expected101(), `"${offer}": 101 without Sec-WebSocket-Extensions`);
    const rec = await srv.conn(i);
    if (i === 0) {
      // Uncompressed both ways, also above the threshold.
      const text = farRepeats(2000, 3);
      r.write(cframe(0x81, text));
      const [f] = await r.waitFrames(1);
      t.equal(f.b0, 0x81, '2000-byte echo not compressed: nothing was agreed');
      t.equal(f.payload.toString(), text);
      // RSV1 now has no meaning: 1002.
      r.write(cframe(0xc1, deflateMessage('hello')));
      await r.waitClosed();
      t.equal(hex(r.frames.at(-1).payload), '03ea', 'RSV1 without the extension: close 1002 on the wire');
      const err = await srv.closed(rec);
      assertError(t, err, ProtocolError, 'WS_ERR_UNEXPECTED_RSV_1', 'RSV1 must be clear: no extension was negotiated', 'onClose err');
      t.equal(err.closeCode, 1002);
    } else {
      r.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
      t.equal(await srv.closed(rec), null);
    }
  }

  // The first offer declined, the next one (a fallback, §5) accepted.
  const r = await Raw.open(t, srv.port, 'permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits');
  t.equal(r.head, expected101('permessage-deflate'), 'a declined offer followed by an acceptable one: the second is accepted');
  r.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  await srv.closed(await srv.conn(declined.length));
  await srv.finish(t);
});

t.test('a header that breaks the §9.1 grammar is refused with 400; a limit on the client window declines an offer without client_max_window_bits', OPTS, async (t) => {
  const srv = await startServer(t, { compression: { clientMaxWindowBits: 10 } });
  for (const bad of ['permessage-deflate;;', 'permessage-deflate; a="x', 'permessage-deflate x']) {
    const r = await Raw.open(t, srv.port, bad);
    t.match(r.head, /^HTTP\/1\.1 400 Bad Request\r\n/, `"${bad}": 400`);
    await r.waitClosed();
    t.match(r.rx.toString(), /^Invalid Sec-WebSocket-Extensions: malformed Sec-WebSocket-Extensions at offset \d+: /, 'body says why');
  }
  t.equal(srv.conns.length, 0, 'no connection opened');
  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  t.equal(r.head, expected101(), 'clientMaxWindowBits set, client_max_window_bits not offered: declined (§7.1.2.2), no header');
  const r2 = await Raw.open(t, srv.port, 'permessage-deflate; client_max_window_bits=12');
  t.equal(r2.head, expected101('permessage-deflate; client_max_window_bits=10'), 'offered 12: answered 10');
  r.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  r2.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  await srv.closed(await srv.conn(1));
  await srv.finish(t);
});

t.test('deflate bomb: 16 MiB of zeros against a 1 MiB limit gets 1009; exactly 1 MiB passes', OPTS, async (t) => {
  const srv = await startServer(t, { compression: true, upgrader: { messageLengthLimit: MiB } });
  const atLimit = deflateMessage(Buffer.alloc(MiB));
  const bomb = deflateMessage(Buffer.alloc(16 * MiB));
  t.ok(bomb.length < 20 * KiB, `the bomb is ${bomb.length} bytes on the wire`);

  const ok = await Raw.open(t, srv.port, 'permessage-deflate');
  const okRec = await srv.conn(0);
  ok.write(cframe(0xc2, atLimit));
  const [echo] = await ok.waitFrames(1);
  t.equal(echo.b0, 0xc2, 'exactly the limit: delivered, echoed compressed');
  t.ok(inflateMessages([echo.payload]).equals(Buffer.alloc(MiB)));
  t.equal(okRec.messages[0].data.length, MiB);

  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec = await srv.conn(1);
  r.write(cframe(0xc2, bomb));
  await r.waitClosed();
  t.equal(hex(r.rx), '880203f1', 'the only bytes after the 101: close 1009, no reason');
  t.ok(r.ended, 'then a FIN');
  const err = await srv.closed(rec);
  assertError(t, err, ProtocolError, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', `compressed message inflates past the limit of ${MiB} bytes`, 'onClose err');
  t.equal(err.closeCode, 1009);
  t.same(rec.closeInfo, { code: 1009, reason: '', wasClean: false, initiator: 'local', error: err });
  t.same(rec.messages, [], 'nothing delivered');
  t.same(rec.closeFrames, []);
  ok.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  t.equal(await srv.closed(okRec), null);
  await srv.finish(t);
});

t.test('RSV1 on a continuation frame: 1002; RSV1 on the first frame only: one message', OPTS, async (t) => {
  const srv = await startServer(t, { compression: true });
  const text = farRepeats(3000, 11);
  const payload = deflateMessage(text);
  const half = payload.length >> 1;

  const good = await Raw.open(t, srv.port, 'permessage-deflate');
  const goodRec = await srv.conn(0);
  good.write(Buffer.concat([cframe(0x41, payload.subarray(0, half)), cframe(0x80, payload.subarray(half))]));
  await until(() => goodRec.messages.length === 1, 3000, 'the fragmented compressed message');
  t.equal(goodRec.messages[0].data.toString(), text, '0x41 then 0x80: inflated as one message');

  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec = await srv.conn(1);
  r.write(Buffer.concat([cframe(0x41, payload.subarray(0, half)), cframe(0xc0, payload.subarray(half))]));
  await r.waitClosed();
  t.equal(hex(r.rx), '880203ea', 'close 1002 on the wire');
  const err = await srv.closed(rec);
  assertError(t, err, ProtocolError, 'WS_ERR_UNEXPECTED_RSV_1', 'RSV1 must be clear on continuation frames', 'onClose err');
  t.equal(err.closeCode, 1002);
  t.same(rec.closeInfo, { code: 1002, reason: '', wasClean: false, initiator: 'local', error: err });
  t.same(rec.messages, []);

  // RSV1 on a control frame is 1002 too, compression or not (§6.1 / RFC 6455 §5.2).
  const p = await Raw.open(t, srv.port, 'permessage-deflate');
  const pRec = await srv.conn(2);
  p.write(cframe(0xc9, 'ping'));
  await p.waitClosed();
  t.equal(hex(p.rx), '880203ea', 'RSV1 on a ping: 1002');
  assertError(t, await srv.closed(pRec), ProtocolError, 'WS_ERR_UNEXPECTED_RSV_1', 'RSV1 must be clear on control frames', 'onClose err');

  good.write(cframe(0x88, Buffer.from([0x03, 0xe8])));
  t.equal(await srv.closed(goodRec), null);
  await srv.finish(t);
});

t.test('corrupt compressed data: 1007 (WS_ERR_DECOMPRESS); inflated text that is not UTF-8: 1007 (WS_ERR_INVALID_UTF8)', OPTS, async (t) => {
  // deflate.ts PerMessageDeflate.decompress(): "Invalid DEFLATE data:
  // ProtocolError 1007 WS_ERR_DECOMPRESS (as ws)".
  const srv = await startServer(t, { compression: true });
  const r = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec = await srv.conn(0);
  r.write(cframe(0xc2, Buffer.from([0xff, 0xff, 0xff, 0xff]))); // BTYPE 11: an invalid block type
  await r.waitClosed();
  t.equal(hex(r.rx), '880203ef', 'close 1007 on the wire');
  const err = await srv.closed(rec);
  assertError(t, err, ProtocolError, 'WS_ERR_DECOMPRESS', /^invalid compressed data: invalid block type/, 'onClose err');
  t.equal(err.closeCode, 1007);
  t.same(rec.closeInfo, { code: 1007, reason: '', wasClean: false, initiator: 'local', error: err });

  // A valid message first, then a corrupt one: the good one is delivered.
  const r2 = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec2 = await srv.conn(1);
  r2.write(Buffer.concat([cframe(0xc1, deflateMessage('fine')), cframe(0xc1, Buffer.from('0123456789abcdef', 'hex'))]));
  await r2.waitClosed();
  t.same(
    rec2.messages.map((m) => m.data.toString()),
    ['fine'],
  );
  t.equal(hex(r2.rx), hex(Buffer.concat([sframe(0x81, 'fine'), Buffer.from('880203ef', 'hex')])), 'the echo, then close 1007');
  assertError(t, await srv.closed(rec2), ProtocolError, 'WS_ERR_DECOMPRESS', /^invalid compressed data: /, 'onClose err');

  const r3 = await Raw.open(t, srv.port, 'permessage-deflate');
  const rec3 = await srv.conn(2);
  r3.write(cframe(0xc1, deflateMessage(Buffer.from([0x61, 0xc3, 0x28]))));
  await r3.waitClosed();
  t.equal(hex(r3.rx), '880203ef', 'invalid UTF-8 after inflation: 1007');
  assertError(t, await srv.closed(rec3), ProtocolError, 'WS_ERR_INVALID_UTF8', 'invalid UTF-8 in a text message', 'onClose err');
  await srv.finish(t);
});

// ===========================================================================
// 2. dial() against ws's WebSocketServer

/**
 * A ws WebSocketServer echoing every message, with a tap in front of it.
 * conns[i] = { ws, offer, messages, closes: [[code, reason]] }; responses[i]
 * is the Sec-WebSocket-Extensions it answered with (from its 'headers' event).
 */
const FRAGMENTS = [farRepeats(3000, 80), 'middle €', farRepeats(2000, 81)];

async function startWsServer(t, perMessageDeflate) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate });
  await within(new Promise((resolve) => wss.once('listening', resolve)), 3000, 'ws server listening');
  const conns = [];
  const responses = [];
  wss.on('headers', (headers) => {
    const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
    responses.push(line === undefined ? undefined : line.slice(line.indexOf(':') + 1).trim());
  });
  wss.on('connection', (ws, req) => {
    const rec = { ws, offer: req.headers['sec-websocket-extensions'], messages: [], closes: [], errors: [] };
    conns.push(rec);
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
      rec.messages.push({ isBinary, data: buf });
      const cmd = buf.toString();
      if (cmd === 'send 2 MiB of zeros') ws.send(Buffer.alloc(2 * MiB));
      else if (cmd === 'send fragments') {
        ws.send(FRAGMENTS[0], { fin: false });
        ws.send(FRAGMENTS[1], { fin: false });
        ws.send(FRAGMENTS[2], { fin: true });
      } else ws.send(buf, { binary: isBinary });
    });
    ws.on('error', (err) => rec.errors.push(err));
    ws.on('close', (code, reason) => rec.closes.push([code, reason.toString()]));
  });
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    return new Promise((resolve) => wss.close(resolve));
  });
  const tap = await startTap(t, wss.address().port);
  return { wss, conns, responses, tap };
}

/** dial() through the tap, recording messages and onClose. */
async function dialRecorded(url, options = {}) {
  const cl = { messages: [], closes: [] };
  cl.closed = new Promise((resolve) => {
    cl.resolveClosed = resolve;
  });
  cl.c = await within(
    dial(url, {
      compression: true,
      ...options,
      onMessage: (_c, type, data) => cl.messages.push({ type, data: Buffer.from(data) }),
      onClose: (c, err) => {
        cl.closes.push(err);
        cl.closeInfo = c.closeInfo === null ? null : { ...c.closeInfo };
        cl.resolveClosed(err);
      },
    }),
    5000,
    'dial()',
  );
  return cl;
}

/** Our client closes with 1000 'done'; ws answers; each end reports exactly one close. */
async function closeDialed(t, cl, rec) {
  cl.c.writeClose(1000, 'done');
  t.equal(await within(cl.closed, 5000, 'dial onClose'), null, 'our onClose(null)');
  t.same(cl.closeInfo, { code: 1000, reason: 'done', wasClean: true, initiator: 'local', error: null }, 'closeInfo: ws echoed 1000 done');
  await until(() => rec.closes.length > 0, 5000, "ws server's close event");
  await sleep(20);
  t.same(rec.closes, [[1000, 'done']], 'ws server: one close event, 1000 done');
  t.equal(cl.closes.length, 1, 'our onClose exactly once');
  t.same(rec.errors, [], 'ws server: no error');
}

t.test('dial() vs ws server: negotiation, compressible text and binary both ways, RSV1 on the wire', OPTS, async (t) => {
  const s = await startWsServer(t, true);
  const cl = await dialRecorded(s.tap.url);
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  t.equal(rec.offer, 'permessage-deflate; client_max_window_bits', 'our offer');
  t.same(s.responses, ['permessage-deflate'], "ws's answer");
  const text = utf8Text(100 * KiB);
  const bin = Buffer.concat(Array.from({ length: 64 }, () => pattern(KiB, 5))); // 64 KiB, repeats every KiB
  cl.c.writeMessage('text', text);
  cl.c.writeMessage('binary', bin);
  cl.c.writeMessage('text', 'hi');
  await until(() => cl.messages.length === 3, 5000, 'three echoes');
  t.same(
    rec.messages.map((m) => [m.isBinary, m.data.length]),
    [
      [false, Buffer.byteLength(text)],
      [true, bin.length],
      [false, 2],
    ],
  );
  t.ok(rec.messages[0].data.equals(Buffer.from(text)) && rec.messages[1].data.equals(bin), 'ws inflated our messages exactly');
  t.same(
    cl.messages.map((m) => m.type),
    ['text', 'binary', 'text'],
  );
  t.ok(cl.messages[0].data.equals(Buffer.from(text)), 'we inflated the 100 KiB text echo exactly');
  t.ok(cl.messages[1].data.equals(bin), 'and the 64 KiB binary echo');
  t.equal(cl.messages[2].data.toString(), 'hi');
  const w = s.tap.sessions[0].wire();
  t.equal(headerOf(w.request, 'Sec-WebSocket-Extensions'), 'permessage-deflate; client_max_window_bits');
  t.same(
    w.client.map((f) => [f.b0, f.masked]),
    [
      [0xc1, true],
      [0xc2, true],
      [0x81, true],
    ],
    'our frames: compressed text and binary (RSV1), "hi" under the threshold; all masked',
  );
  t.ok(w.client[0].payload.length < 5 * KiB && w.client[1].payload.length < 4 * KiB, `our payloads shrank: ${w.client[0].payload.length}, ${w.client[1].payload.length}`);
  t.ok(inflateMessages([w.client[0].payload, w.client[1].payload]).equals(Buffer.concat([Buffer.from(text), bin])), 'our payloads: one valid DEFLATE stream');
  // ws's threshold applies only without context takeover: it compresses "hi" too.
  t.same(
    w.server.map((f) => f.b0),
    [0xc1, 0xc2, 0xc1],
    'ws compressed its echoes (all three: its threshold applies only without context takeover)',
  );
  await closeDialed(t, cl, rec);
});

t.test('dial() vs ws server: context takeover both ways', OPTS, async (t) => {
  const s = await startWsServer(t, true);
  const cl = await dialRecorded(s.tap.url);
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  const msg = farRepeats(4000, 21);
  for (let i = 0; i < 5; i++) cl.c.writeMessage('text', msg);
  await until(() => cl.messages.length === 5, 5000, 'five echoes');
  t.ok(cl.messages.every((m) => m.type === 'text' && m.data.toString() === msg), 'echoes exact');
  t.ok(rec.messages.length === 5 && rec.messages.every((m) => m.data.toString() === msg), 'ws inflated each');
  const w = s.tap.sessions[0].wire();
  const cs = w.clientMessages.map((m) => m.payload.length);
  t.ok(w.clientMessages.every((m) => m.b0 === 0xc1), 'ours: 0xC1 each');
  t.ok(cs.slice(1).every((n) => n < cs[0] / 4), `our context kept: ${cs.join(', ')} bytes`);
  const ss = w.serverMessages.map((m) => m.payload.length);
  t.ok(ss.slice(1).every((n) => n < ss[0] / 4), `ws's context kept: ${ss.join(', ')} bytes`);
  t.equal(inflateMessages(w.clientMessages.map((m) => m.payload)).toString(), msg.repeat(5));
  await closeDialed(t, cl, rec);
});

t.test("dial() vs ws server with clientNoContextTakeover: our client honours it", OPTS, async (t) => {
  const s = await startWsServer(t, { clientNoContextTakeover: true });
  const cl = await dialRecorded(s.tap.url);
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  t.same(s.responses, ['permessage-deflate; client_no_context_takeover'], "ws's answer");
  const msg = farRepeats(4000, 22);
  for (let i = 0; i < 4; i++) cl.c.writeMessage('text', msg);
  await until(() => cl.messages.length === 4, 5000, 'four echoes');
  t.ok(cl.messages.every((m) => m.data.toString() === msg) && rec.messages.every((m) => m.data.toString() === msg), 'echoes exact');
  const w = s.tap.sessions[0].wire();
  const cp = w.clientMessages.map((m) => m.payload);
  t.ok(
    cp.length === 4 && cp.every((p) => p.equals(cp[0])),
    `our compressor was reset after each message: four identical ${cp[0]?.length}-byte payloads`,
  );
  t.equal(inflateMessages([cp[3]]).toString(), msg, 'each inflates alone');
  const ss = w.serverMessages.map((m) => m.payload.length);
  t.ok(ss.slice(1).every((n) => n < ss[0] / 4), `ws still keeps its own context: ${ss.join(', ')} bytes`);
  await closeDialed(t, cl, rec);
});

t.test('dial() vs ws server with serverMaxWindowBits 9 and clientMaxWindowBits 10', OPTS, async (t) => {
  const s = await startWsServer(t, { serverMaxWindowBits: 9, clientMaxWindowBits: 10 });
  const cl = await dialRecorded(s.tap.url);
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  t.same(s.responses, ['permessage-deflate; client_max_window_bits=10; server_max_window_bits=9'], "ws's answer (server_max_window_bits unasked, §7.1.2.1 allows it)");
  const msg = farRepeats(6000, 23);
  for (let i = 0; i < 3; i++) cl.c.writeMessage('text', msg);
  await until(() => cl.messages.length === 3, 5000, 'three echoes');
  t.ok(rec.messages.length === 3 && rec.messages.every((m) => m.data.toString() === msg), 'ws inflated ours with a 10-bit window');
  t.ok(cl.messages.every((m) => m.data.toString() === msg), 'we inflated ws\'s with a 9-bit window');
  const w = s.tap.sessions[0].wire();
  t.equal(
    inflateMessages(
      w.clientMessages.map((m) => m.payload),
      10,
    ).toString(),
    msg.repeat(3),
    'our payloads stay within 10 bits (public zlib)',
  );
  await closeDialed(t, cl, rec);
});

t.test('dial() vs ws server with 8-bit windows both ways', OPTS, async (t) => {
  const s = await startWsServer(t, { serverMaxWindowBits: 8, clientMaxWindowBits: 8 });
  const cl = await dialRecorded(s.tap.url);
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  t.same(s.responses, ['permessage-deflate; client_max_window_bits=8; server_max_window_bits=8'], "ws's answer");
  const msg = nearRepeats(4000, 90);
  for (let i = 0; i < 3; i++) cl.c.writeMessage('text', msg);
  await until(() => cl.messages.length === 3, 5000, 'three echoes');
  t.ok(rec.messages.length === 3 && rec.messages.every((m) => m.data.toString() === msg), 'ws inflated ours with an 8-bit window');
  t.ok(cl.messages.every((m) => m.data.toString() === msg), "we inflated ws's with an 8-bit window");
  const w = s.tap.sessions[0].wire();
  t.ok(w.clientMessages.every((m) => m.b0 === 0xc1), 'ours compressed');
  t.equal(
    inflateMessages(
      w.clientMessages.map((m) => m.payload),
      8,
    ).toString(),
    msg.repeat(3),
    'our payloads inflate with windowBits 8 (public zlib)',
  );
  await closeDialed(t, cl, rec);
});

t.test('dial(): a compressed message from ws in three fragments arrives as one', OPTS, async (t) => {
  const s = await startWsServer(t, true);
  const cl = await dialRecorded(s.tap.url);
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  cl.c.writeMessage('text', 'send fragments');
  await until(() => cl.messages.length === 1, 5000, 'the fragmented message');
  await sleep(20);
  t.same(
    cl.messages.map((m) => [m.type, m.data.toString()]),
    [['text', FRAGMENTS.join('')]],
    'one text message, inflated exactly',
  );
  const w = s.tap.sessions[0].wire();
  t.same(
    w.server.map((f) => f.b0),
    [0x41, 0x00, 0x80],
    'on the wire from ws: RSV1 on the first frame only',
  );
  await closeDialed(t, cl, rec);
});

t.test('dial() messageLengthLimit applies after inflation: 2 MiB of zeros from ws gets 1009', OPTS, async (t) => {
  const s = await startWsServer(t, true);
  const cl = await dialRecorded(s.tap.url, { messageLengthLimit: MiB });
  await until(() => s.conns.length === 1, 3000, 'ws server connection');
  const rec = s.conns[0];
  cl.c.writeMessage('text', 'send 2 MiB of zeros');
  const err = await within(cl.closed, 5000, 'dial onClose');
  assertError(t, err, ProtocolError, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', `compressed message inflates past the limit of ${MiB} bytes`, 'our onClose err');
  t.equal(err.closeCode, 1009);
  t.same(cl.closeInfo, { code: 1009, reason: '', wasClean: false, initiator: 'local', error: err });
  await until(() => rec.closes.length > 0, 5000, "ws server's close event");
  await sleep(20);
  t.same(rec.closes, [[1009, '']], 'ws server got close 1009');
  const w = s.tap.sessions[0].wire();
  t.equal(w.serverMessages.at(-1)?.b0, 0xc2, 'ws sent it compressed');
  t.ok(w.serverMessages.at(-1).payload.length < 8 * KiB, `${w.serverMessages.at(-1).payload.length} bytes on the wire`);
  t.equal(cl.messages.length, 0, 'nothing delivered');
  t.equal(cl.closes.length, 1);
});

// ===========================================================================
// 3. Headless Chromium

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>netloop deflate</title>
<script>
'use strict';
window.T = {
  socks: {},
  next: 0,
  pattern(n, seed) {
    const b = new Uint8Array(n);
    let x = (seed >>> 0) || 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  },
  open() {
    const id = ++T.next;
    const ws = new WebSocket('ws://' + location.host + '/ws');
    ws.binaryType = 'arraybuffer';
    const s = { ws, messages: [], errors: 0, closeEvents: [] };
    T.socks[id] = s;
    ws.onmessage = (ev) => s.messages.push(ev.data);
    ws.onerror = () => s.errors++;
    s.closed = new Promise((resolve) => {
      ws.onclose = (ev) => {
        s.closeEvents.push({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
        resolve(s.closeEvents[0]);
      };
    });
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve({ id, extensions: ws.extensions });
      s.closed.then((ev) => reject(new Error('closed before open: ' + JSON.stringify(ev))));
    });
  },
  async messages(id, n, ms = 8000) {
    const s = T.socks[id];
    const end = Date.now() + ms;
    while (s.messages.length < n) {
      if (Date.now() > end) throw new Error('timed out waiting for ' + n + ' messages, have ' + s.messages.length);
      await new Promise((r) => setTimeout(r, 5));
    }
    return s.messages.slice(0, n);
  },
  async closed(id, ms = 5000) {
    const s = T.socks[id];
    const ev = await Promise.race([s.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('timed out waiting for the close event')), ms))]);
    await new Promise((r) => setTimeout(r, 20));
    return { ...ev, closeEvents: s.closeEvents.length, errors: s.errors };
  },
};
</script>
`;

t.test('headless Chromium against Upgrader({ compression: true })', { timeout: 30000 }, async (t) => {
  if (!requireChromium(t)) return;
  const offers = [];
  const srv = await startServer(t, {
    compression: true,
    upgrader: {
      checkOrigin(_origin, head) {
        offers.push(head.get('sec-websocket-extensions'));
        return true;
      },
    },
    httpHandler(head) {
      if (head.method === 'GET' && head.target === '/') {
        return { status: 200, headers: [['Content-Type', 'text/html; charset=utf-8'], ['Cache-Control', 'no-store']], body: PAGE };
      }
      return { status: 404, headers: [['Content-Type', 'text/plain']], body: 'Not Found\n' };
    },
  });
  // The page is loaded through the tap too, so its WebSocket (same origin) is recorded.
  const tap = await startTap(t, srv.port);
  const wsSessions = () => tap.sessions.filter((s) => Buffer.concat(s.c2s).toString('latin1', 0, 8) === 'GET /ws ');

  const context = await launchChromium(t);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(8000);
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  const response = await page.goto(`http://${tap.addr}/`, { timeout: 8000 });
  t.equal(response?.status(), 200, 'the page came from netloop');

  // Negotiation, 100 KiB text and 1 MiB binary.
  const s = await page.evaluate(() => T.open());
  const rec = await srv.conn(0);
  t.match(offers[0], /^permessage-deflate\b/, `Chromium offered permessage-deflate (${offers[0]})`);
  t.equal(s.extensions, 'permessage-deflate', 'ws.extensions in the page');
  const n = MiB;
  const got = await page.evaluate(
    async ([id, n]) => {
      const ws = T.socks[id].ws;
      const text = 'aé€😀'.repeat(10240); // 100 KiB of UTF-8
      const bin = T.pattern(n, 42);
      ws.send(text);
      ws.send(bin);
      const [a, b] = await T.messages(id, 2);
      const echoed = new Uint8Array(b);
      let same = echoed.length === bin.length;
      for (let i = 0; same && i < bin.length; i++) same = echoed[i] === bin[i];
      return { textSame: a === text, binType: Object.prototype.toString.call(b), binLength: echoed.length, binSame: same };
    },
    [s.id, n],
  );
  t.same(got, { textSame: true, binType: '[object ArrayBuffer]', binLength: n, binSame: true }, 'the browser got both echoes exactly');
  t.same(
    rec.messages.map((m) => m.type),
    ['text', 'binary'],
  );
  t.ok(rec.messages[0].data.equals(Buffer.from(utf8Text(100 * KiB))), 'server: 100 KiB text exact');
  t.ok(rec.messages[1].data.equals(pattern(n, 42)), 'server: 1 MiB binary exact');
  const w = wsSessions()[0].wire();
  t.equal(headerOf(w.response, 'Sec-WebSocket-Extensions'), 'permessage-deflate', 'the 101 on the wire');
  t.equal(w.clientMessages[0]?.rsv1, true, `Chromium compressed the 100 KiB text (${w.clientMessages[0]?.payload.length} bytes)`);
  t.comment(`Chromium sent the 1 MiB binary with RSV1 ${w.clientMessages[1]?.rsv1 ? 'set' : 'clear'} (${w.clientMessages[1]?.payload.length} bytes)`);
  t.same(
    w.serverMessages.map((m) => m.b0),
    [0xc1, 0xc2],
    'our echoes: compressed text and binary',
  );
  t.ok(w.serverMessages[0].payload.length < 5 * KiB, `text echo ${w.serverMessages[0].payload.length} bytes on the wire`);

  // Closes still right with compression agreed.
  await page.evaluate((id) => T.socks[id].ws.close(1000, 'bye'), s.id);
  t.same(await page.evaluate((id) => T.closed(id), s.id), { code: 1000, reason: '', wasClean: true, closeEvents: 1, errors: 0 }, 'browser close(1000): clean');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1000, 'bye']]);
  t.same(rec.closeInfo, { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer', error: null });

  const s2 = await page.evaluate(() => T.open());
  const rec2 = await srv.conn(1);
  rec2.c.writeMessage('text', 'x'.repeat(5000));
  rec2.c.writeClose(4001, 'srv');
  const ev2 = await page.evaluate((id) => T.closed(id), s2.id);
  t.same(ev2, { code: 4001, reason: 'srv', wasClean: true, closeEvents: 1, errors: 0 }, "CloseEvent 4001 'srv'");
  t.same(await page.evaluate((id) => T.socks[id].messages.map((m) => m.length), s2.id), [5000], 'the compressed message before the close arrived');
  t.equal(await srv.closed(rec2), null);
  t.same(rec2.closeInfo, { code: 4001, reason: 'srv', wasClean: true, initiator: 'local', error: null });

  const s3 = await page.evaluate(() => T.open());
  const rec3 = await srv.conn(2);
  await page.evaluate((id) => T.socks[id].ws.close(4000), s3.id);
  t.equal((await page.evaluate((id) => T.closed(id), s3.id)).code, 4000);
  const err3 = await srv.closed(rec3);
  assertError(t, err3, CloseError, 'NETLOOP_WS_CLOSE', 'websocket: close 4000', 'onClose err');

  t.same(pageErrors, []);
  await within(context.close(), 10000, 'the browser to close');
  await srv.finish(t);
});

// ===========================================================================
// 4. undici's WebSocket

async function connectUndici(url) {
  const ws = new UndiciWebSocket(url);
  ws.binaryType = 'arraybuffer';
  const cl = { ws, messages: [], errors: [], closes: 0 };
  ws.addEventListener('message', (ev) => cl.messages.push(ev.data));
  ws.addEventListener('error', (ev) => cl.errors.push(ev));
  cl.closed = new Promise((resolve) => {
    ws.addEventListener('close', (ev) => {
      cl.closes++;
      resolve({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    });
  });
  await within(
    new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('error', (ev) => reject(ev.error ?? new Error('undici WebSocket error before open')), { once: true });
    }),
    5000,
    'undici WebSocket open',
  );
  return cl;
}

// undici 7 offers "permessage-deflate; client_max_window_bits" and inflates
// what the server compresses (lib/web/websocket/permessage-deflate.js), but
// its sender never compresses: its frames always have RSV1 clear.
t.test('undici: permessage-deflate agreed; the server compresses, undici inflates; undici sends uncompressed', OPTS, async (t) => {
  const { srv, tap, offers } = await compressedServer(t);
  const cl = await connectUndici(tap.url);
  const rec = await srv.conn(0);
  t.same(offers, ['permessage-deflate; client_max_window_bits'], "undici's offer");
  t.equal(cl.ws.extensions, 'permessage-deflate', 'ws.extensions (the response header value)');
  const text = utf8Text(100 * KiB);
  const msg = farRepeats(3000, 31);
  const bin = pattern(MiB, 33);
  cl.ws.send(text);
  cl.ws.send(msg);
  cl.ws.send(msg);
  cl.ws.send(new Uint8Array(bin));
  await until(() => cl.messages.length === 4, 10000, 'four echoes');
  t.equal(cl.messages[0], text, '100 KiB text echo exact');
  t.ok(cl.messages[1] === msg && cl.messages[2] === msg, 'repeated message echoed exactly (second inflated with the first one\'s window)');
  t.ok(Buffer.from(cl.messages[3]).equals(bin), '1 MiB binary echo exact');
  t.same(
    rec.messages.map((m) => m.type),
    ['text', 'text', 'text', 'binary'],
  );
  const w = tap.sessions[0].wire();
  t.same(
    w.clientMessages.map((m) => m.b0),
    [0x81, 0x81, 0x81, 0x82],
    'undici sent everything uncompressed',
  );
  t.same(
    w.serverMessages.map((m) => m.b0),
    [0xc1, 0xc1, 0xc1, 0xc2],
    'the server compressed every echo',
  );
  const sizes = w.serverMessages.map((m) => m.payload.length);
  t.ok(sizes[2] < sizes[1] / 4, `context takeover towards undici: ${sizes[1]} then ${sizes[2]} bytes`);
  cl.ws.close(1000);
  t.same(await within(cl.closed, 5000, 'undici close'), { code: 1000, reason: '', wasClean: true });
  t.equal(await srv.closed(rec), null);
  t.equal(cl.closes, 1);
  await srv.finish(t);
});

t.test('undici: a server window of 10 bits, answered unasked', OPTS, async (t) => {
  const { srv, tap } = await compressedServer(t, { serverMaxWindowBits: 10 });
  const cl = await connectUndici(tap.url);
  const rec = await srv.conn(0);
  t.equal(cl.ws.extensions, 'permessage-deflate; server_max_window_bits=10');
  const msg = farRepeats(6000, 35);
  cl.ws.send(msg);
  cl.ws.send(msg);
  await until(() => cl.messages.length === 2, 5000, 'two echoes');
  t.ok(cl.messages.every((m) => m === msg), 'undici inflated both with a 10-bit window');
  const w = tap.sessions[0].wire();
  t.equal(
    inflateMessages(
      w.serverMessages.map((m) => m.payload),
      10,
    ).toString(),
    msg + msg,
    'our payloads stay within 10 bits (public zlib)',
  );
  cl.ws.close(1000);
  await within(cl.closed, 5000, 'undici close');
  t.equal(await srv.closed(rec), null);
  await srv.finish(t);
});
