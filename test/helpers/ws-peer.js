// A WebSocket peer built on Node's own `net` socket, for tests that must
// control (and see) every byte on the wire, and a server whose callbacks are
// recorded per connection. Used by test/websocket-*.test.js.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Engine, Upgrader } from '../../dist/index.js';

// ---------------------------------------------------------------------------
// Helpers shared by the websocket-*.test.js files: a raw `net` peer that
// speaks the handshake and hand-built frames, and a recording server.

/**
 * The I/O mode the WebSocket test servers run in: NETLOOP_TEST_IO_MODE=blocking
 * or =mixed (two blocking places, the rest non-blocking) reruns a suite in
 * that mode (test/websocket-modes.test.js does); the default is the engine's.
 */
export function testIoMode() {
  const mode = process.env.NETLOOP_TEST_IO_MODE;
  if (mode === undefined || mode === '' || mode === 'nonblocking') return {};
  if (mode === 'blocking') return { ioMode: 'blocking' };
  if (mode === 'mixed') return { ioMode: 'mixed', maxBlockingOnline: 2 };
  throw new Error(`NETLOOP_TEST_IO_MODE=${mode}: expected nonblocking, blocking or mixed`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls cond() every 2 ms; rejects after ms with a message naming what it waited for. */
export async function until(cond, ms, what) {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

export const hex = (b) => Buffer.from(b).toString('hex');
export const SAMPLE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
/** The mask key of every frame the peer sends (RFC 6455 §5.7's example key). */
export const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

export function maskBytes(payload, key) {
  const out = Buffer.allocUnsafe(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = payload[i] ^ key[i & 3];
  return out;
}

/**
 * A frame as a client sends it, built by hand: FIN, the RSV bits (0x40, 0x20,
 * 0x10), the opcode, the length (7, 16 or 64 bits; `len` may announce more
 * than `payload` holds, to send a header and only the start of a payload),
 * the mask key and the masked payload. `masked: false` leaves it unmasked.
 */
export function cframe(opcode, payload = '', { fin = true, rsv = 0, len, masked = true, key = KEY } = {}) {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  const n = len ?? p.length;
  const b0 = (fin ? 0x80 : 0) | rsv | opcode;
  const m = masked ? 0x80 : 0;
  let head;
  if (n < 126) head = Buffer.from([b0, m | n]);
  else if (n < 0x10000) head = Buffer.from([b0, m | 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return masked ? Buffer.concat([head, key, maskBytes(p, key)]) : Buffer.concat([head, p]);
}

/** A close frame from the client: code (or none), reason as a string or raw bytes. */
export function cclose(code, reason = '') {
  if (code === undefined) return cframe(0x8, '');
  const r = typeof reason === 'string' ? Buffer.from(reason, 'utf8') : Buffer.from(reason);
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return cframe(0x8, p);
}

/** The bytes of an unmasked server frame with a payload, built independently of lib/. */
export function sframe(opcode, payload = '') {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  return Buffer.concat([cframe(opcode, '', { masked: false, len: p.length }), p]);
}

/** The server's close frame: 88 02 + code (no reason), or 88 00. */
export function sclose(code) {
  if (code === undefined) return Buffer.from([0x88, 0x00]);
  return Buffer.from([0x88, 0x02, code >> 8, code & 0xff]);
}

/** Splits unmasked server bytes into frames; `rest` counts the bytes of an incomplete frame at the end. */
export function parseFrames(buf) {
  const frames = [];
  let p = 0;
  for (;;) {
    if (p + 2 > buf.length) break;
    const b0 = buf[p];
    const b1 = buf[p + 1];
    let len = b1 & 0x7f;
    let h = 2;
    if (len === 126) {
      if (p + 4 > buf.length) break;
      len = buf.readUInt16BE(p + 2);
      h = 4;
    } else if (len === 127) {
      if (p + 10 > buf.length) break;
      len = Number(buf.readBigUInt64BE(p + 2));
      h = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const keyAt = p + h;
    if (masked) h += 4;
    if (p + h + len > buf.length) break;
    let payload = buf.subarray(p + h, p + h + len);
    if (masked) payload = maskBytes(payload, buf.subarray(keyAt, keyAt + 4));
    frames.push({ b0, fin: (b0 & 0x80) !== 0, rsv: b0 & 0x70, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, masked, len, header: buf.subarray(p, p + h), payload });
    p += h + len;
  }
  return { frames, rest: buf.length - p };
}

export function upgradeRequest({ path = '/', key = SAMPLE_KEY, headers = [] } = {}) {
  const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13'];
  for (const [n, v] of headers) lines.push(`${n}: ${v}`);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}

/**
 * A raw TCP peer: Node's own socket. Keeps every byte received (`raw`), the
 * response head when there is one (`head`) and what followed it (`rx`);
 * notes the server's FIN (`ended`) and the socket's close.
 */
export class Peer {
  /** allowHalfOpen: keep our side open after the server's FIN (Node's default ends it at once). */
  static async connect(t, addr, { allowHalfOpen = false } = {}) {
    const i = addr.lastIndexOf(':');
    const sock = net.connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)), noDelay: true, allowHalfOpen });
    const peer = new Peer(sock);
    t.teardown(() => sock.destroy());
    await new Promise((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return peer;
  }

  /** Connects and upgrades; `extra` is written right behind the request head, in the same write. */
  static async open(t, addr, { extra, allowHalfOpen, ...req } = {}) {
    const peer = await Peer.connect(t, addr, { allowHalfOpen });
    const head = upgradeRequest(req);
    peer.write(extra === undefined ? head : Buffer.concat([head, extra]));
    await until(() => peer.headLen >= 0 || peer.closed, 3000, 'the 101 response');
    if (!peer.head?.startsWith('HTTP/1.1 101 ')) throw new Error(`handshake failed: ${JSON.stringify(peer.raw.toString('latin1'))}`);
    return peer;
  }

  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.total = 0;
    this.headLen = -1;
    this.pre = Buffer.alloc(0);
    this.ended = false;
    this.closed = false;
    this.error = null;
    this.endAt = 0;
    this.closeAt = 0;
    sock.on('data', (d) => {
      this.chunks.push(d);
      this.total += d.length;
      if (this.headLen < 0) {
        this.pre = Buffer.concat([this.pre, d]);
        const i = this.pre.indexOf('\r\n\r\n');
        if (i >= 0) {
          this.headLen = i + 4;
          this.pre = null;
        }
      }
    });
    sock.on('end', () => {
      this.ended = true;
      this.endAt = performance.now();
    });
    sock.on('close', () => {
      this.closed = true;
      this.closeAt = performance.now();
    });
    sock.on('error', (err) => {
      this.error = err;
    });
  }

  get raw() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  get head() {
    return this.headLen < 0 ? null : this.raw.toString('latin1', 0, this.headLen);
  }

  /** Bytes after the response head. */
  get rx() {
    return this.headLen < 0 ? Buffer.alloc(0) : this.raw.subarray(this.headLen);
  }

  get rxLen() {
    return this.headLen < 0 ? 0 : this.total - this.headLen;
  }

  write(buf) {
    this.sock.write(buf);
  }

  /** Writes one byte per write(), pausing `delay` ms every `every` bytes so that they arrive apart. */
  async writeSlowly(buf, every = 2, delay = 2) {
    for (let i = 0; i < buf.length; i++) {
      this.sock.write(buf.subarray(i, i + 1));
      if ((i + 1) % every === 0) await sleep(delay);
    }
  }

  waitRx(n, ms = 3000) {
    return until(() => this.rxLen >= n || this.closed, ms, `${n} bytes from the server`).then(() => {
      if (this.rxLen < n) throw new Error(`connection closed after ${this.rxLen} of ${n} expected bytes: ${hex(this.rx)}`);
    });
  }

  waitEnd(ms = 3000) {
    return until(() => this.ended || this.closed, ms, "the server's FIN");
  }

  waitClosed(ms = 3000) {
    return until(() => this.closed, ms, 'the socket to close');
  }
}

/**
 * An Engine with an Upgrader whose callbacks are recorded per connection:
 * rec = { conn, messages, closes: [{ err, info, at }], handler: [[code, reason]], pongs }.
 * onMessage echoes unless hooks.onMessage is given.
 */
export async function startServer(t, options = {}, hooks = {}) {
  const up = new Upgrader(options);
  const s = { up, recs: [], byAddr: new Map(), byConn: new Map() };
  up.onOpen((c) => {
    const rec = { conn: c, openAt: performance.now(), messages: [], closes: [], handler: [], pongs: [] };
    s.recs.push(rec);
    s.byAddr.set(c.remoteAddr, rec);
    s.byConn.set(c, rec);
    hooks.onOpen?.(c, rec);
  });
  up.onMessage((c, type, data) => {
    const rec = s.byConn.get(c);
    rec.messages.push({ type, data });
    if (hooks.onMessage) hooks.onMessage(c, type, data, rec);
    else if (!c.closed) c.writeMessage(type, data);
  });
  up.onClose((c, err) => {
    const rec = s.byConn.get(c);
    rec.closes.push({ err, info: c.closeInfo === null ? null : { ...c.closeInfo }, at: performance.now() });
    hooks.onClose?.(c, err, rec);
  });
  up.setCloseHandler((c, code, reason) => s.byConn.get(c).handler.push([code, reason]));
  up.setPongHandler((c, data) => s.byConn.get(c).pongs.push(Buffer.from(data)));
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, ...testIoMode(), ...hooks.engine });
  await engine.start();
  s.engine = engine;
  s.addr = engine.addresses()[0];
  s.rec = async (peer) => {
    const key = `127.0.0.1:${peer.sock.localPort}`;
    await until(() => s.byAddr.has(key), 3000, `onOpen for ${key}`);
    return s.byAddr.get(key);
  };
  t.teardown(() => engine.stop());
  return s;
}

/** Waits for onClose, then a little longer, and checks that it came exactly once. Returns its record. */
export async function closedOnce(t, rec, ms = 3000) {
  await until(() => rec.closes.length > 0, ms, 'onClose');
  await sleep(15);
  t.equal(rec.closes.length, 1, 'onClose called exactly once');
  const c = rec.closes[0];
  const err = asNonBlocking(c.err, rec.conn);
  return err === c.err ? c : { ...c, err, info: c.info === null ? null : { ...c.info, error: err } };
}

/**
 * When a suite written for the non-blocking column reruns in another mode
 * (NETLOOP_TEST_IO_MODE): a clean close (both close frames exchanged) is
 * reported on a blocking connection as the reader saw it, NetClosedError or
 * EOFError, where the non-blocking column says null (DESIGN.md). Maps exactly
 * that, and nothing else, to null; the contract tests check those errors
 * themselves and never go through this.
 */
export function asNonBlocking(err, conn) {
  if (process.env.NETLOOP_TEST_IO_MODE === undefined || conn?.ioMode !== 'blocking') return err;
  if (conn.closeInfo?.wasClean !== true) return err;
  return err?.code === 'NETLOOP_CLOSED' || err?.code === 'NETLOOP_EOF' ? null : err;
}
