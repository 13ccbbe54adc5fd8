// `netloop compare`: plays every row of the close-reporting contract
// (DESIGN.md) against each I/O mode, over loopback, with a real client (a
// Node `net` socket speaking WebSocket with hand-built frames, so that it
// can misbehave on purpose), and reports what it observed: the error onClose
// received, the close handler's call, the bytes the server put on the wire
// and how the TCP connection ended, and closeInfo. Every observed cell is
// compared with the contract; a cell that differs is marked. The TLS rows
// run the same WebSocket over netloop's TLS, the client speaking TLS with
// Node's tls module on top of a `net` socket it keeps, so that it can end the
// TCP connection under TLS's feet or write bytes that are no TLS record.
//
// The observations are made fresh on every run; the contract is only used to
// mark the cells that differ from it.
import { Buffer } from 'node:buffer';
import net from 'node:net';
import tls from 'node:tls';
import { Engine, type IoMode } from '../engine.js';
import type { TLSHandshakeError } from '../errors.js';
import type { TlsCertificate, TlsVersion } from '../tls.js';
import { selfSigned } from './self-signed.js';
import { formatError } from './close-report.js';
import { frame } from '../websocket/sender.js';
import { Opcode } from '../websocket/opcodes.js';
import { Upgrader } from '../websocket/upgrader.js';
import type { WebSocketConn } from '../websocket/conn.js';

/** A column of the table: an I/O mode, and for 'mixed' which side of maxBlockingOnline. */
export interface ModeColumn {
  name: string;
  ioMode: IoMode;
  /** Open one connection first, so that the tested one lands past maxBlockingOnline (1). */
  holder: boolean;
  /** The ioMode the tested connection must get. */
  conn: 'blocking' | 'nonblocking';
}

export const MODE_COLUMNS: readonly ModeColumn[] = [
  { name: 'non-blocking', ioMode: 'nonblocking', holder: false, conn: 'nonblocking' },
  { name: 'blocking', ioMode: 'blocking', holder: false, conn: 'blocking' },
  { name: 'mixed, under N', ioMode: 'mixed', holder: false, conn: 'blocking' },
  { name: 'mixed, over N', ioMode: 'mixed', holder: true, conn: 'nonblocking' },
];

/** What the contract says for one row. */
interface Expected {
  nonblocking: string;
  blocking: string;
  handler: string;
  wire: string;
  info: string;
}

interface Scenario {
  event: string;
  /**
   * Over TLS: 'open', a WebSocket over TLS; 'handshake', a peer that never
   * completes the TLS handshake (a bare `net` socket), so that the tested
   * connection never opens and onTLSError reports it.
   */
  tls?: 'open' | 'handshake';
  /** TLS rows: the engine's tlsHandshakeTimeout (ms). */
  handshakeTimeout?: number;
  /** TLS rows: the server's lowest protocol version. */
  serverMinVersion?: TlsVersion;
  /** Server side, when the connection opens. */
  onOpen?: (ws: WebSocketConn, engine: Engine) => void;
  /** The peer's side. */
  play: (peer: RawPeer) => Promise<void>;
  expect: Expected;
}

const NET_CLOSED = 'NetClosedError "use of closed network connection"';
const NEVER_OPENED = (code: string): string => `never opened: onTLSError(TLSHandshakeError ${code})`;
const APP_ERROR = 'Error "the application closed it"';

const SCENARIOS: readonly Scenario[] = [
  {
    event: 'peer sends close 1000',
    play: (p) => p.sendClose(1000, 'bye'),
    expect: { nonblocking: 'null', blocking: NET_CLOSED, handler: '(1000, "bye")', wire: 'close 1000, FIN', info: '1000 clean peer' },
  },
  {
    event: 'peer sends close 1000 and FIN at once',
    play: async (p) => {
      p.sock.write(clientFrame(Opcode.Close, closePayload(1000, 'bye')));
      p.sock.end();
    },
    expect: { nonblocking: 'null', blocking: 'EOFError "EOF"', handler: '(1000, "bye")', wire: 'close 1000, FIN', info: '1000 clean peer' },
  },
  ...[1001, 3000, 4000].map((code) => ({
    event: `peer sends close ${code}`,
    play: (p: RawPeer) => p.sendClose(code, 'why'),
    expect: { nonblocking: `CloseError ${code}`, blocking: `CloseError ${code}`, handler: `(${code}, "why")`, wire: `close ${code}, FIN`, info: `${code} clean peer` },
  })),
  {
    event: 'peer sends an empty close',
    play: (p) => p.send(Opcode.Close, Buffer.alloc(0)),
    expect: { nonblocking: 'CloseError 1005', blocking: 'CloseError 1005', handler: '(1005, "")', wire: 'close (empty), FIN', info: '1005 clean peer' },
  },
  {
    event: 'invalid close code (999)',
    play: (p) => p.sendClose(999, 'x'),
    expect: protocolError(1002),
  },
  {
    event: '1-byte close payload',
    play: (p) => p.send(Opcode.Close, Buffer.from([0x03])),
    expect: protocolError(1002),
  },
  {
    event: 'invalid UTF-8 in a text message',
    play: (p) => p.send(Opcode.Text, Buffer.from([0x68, 0x69, 0xf8])),
    expect: protocolError(1007),
  },
  {
    event: 'invalid UTF-8 in a close reason',
    play: (p) => p.send(Opcode.Close, Buffer.from([0x03, 0xe8, 0xc3, 0x28])),
    expect: protocolError(1007),
  },
  {
    event: 'other protocol violation (unmasked frame)',
    play: async (p) => {
      p.sock.write(Buffer.concat(frame(Opcode.Text, 'not masked', { mask: false })));
    },
    expect: protocolError(1002),
  },
  {
    event: 'message over the limit (1 KiB here)',
    play: (p) => p.send(Opcode.Binary, Buffer.alloc(2048)),
    expect: protocolError(1009),
  },
  {
    event: 'TCP FIN without close frame',
    play: async (p) => {
      p.sock.end();
    },
    expect: { nonblocking: 'EOFError "EOF"', blocking: 'EOFError "EOF"', handler: 'not called', wire: 'FIN', info: '1006 network' },
  },
  {
    event: 'TCP reset',
    play: async (p) => {
      p.sock.resetAndDestroy();
    },
    expect: { nonblocking: 'SysError ECONNRESET', blocking: 'SysError ECONNRESET', handler: 'not called', wire: '-', info: '1006 network' },
  },
  {
    event: 'TLS: peer sends close 1000, then close_notify',
    tls: 'open',
    play: async (p) => {
      await p.sendClose(1000, 'bye');
      await p.until(() => p.frames().some((f) => f.opcode === Opcode.Close), "the server's close frame");
      p.sock.end(); // close_notify, then FIN
    },
    expect: { nonblocking: 'null', blocking: NET_CLOSED, handler: '(1000, "bye")', wire: 'close 1000, FIN', info: '1000 clean peer' },
  },
  {
    event: 'TLS: FIN without close_notify (truncation)',
    tls: 'open',
    play: async (p) => {
      p.raw.end(); // the TCP connection under TLS: no close_notify
    },
    expect: { nonblocking: 'TLSTruncationError ERR_TLS_TRUNCATED', blocking: 'TLSTruncationError ERR_TLS_TRUNCATED', handler: 'not called', wire: 'FIN', info: '1006 network' },
  },
  {
    event: 'TLS: a bad record after the handshake',
    tls: 'open',
    play: async (p) => {
      // An application-data record whose bytes are no ciphertext of this session.
      p.raw.write(Buffer.from('1703030010' + '00'.repeat(16), 'hex'));
    },
    expect: { nonblocking: 'TLSError ERR_TLS_PROTOCOL', blocking: 'TLSError ERR_TLS_PROTOCOL', handler: 'not called', wire: 'alert, FIN', info: '1006 network' },
  },
  {
    event: 'TLS: the handshake fails (no common version)',
    tls: 'handshake',
    serverMinVersion: 'TLSv1.3',
    play: async (p) => p.handshake({ maxVersion: 'TLSv1.2' }),
    expect: { nonblocking: NEVER_OPENED('ERR_TLS_HANDSHAKE'), blocking: NEVER_OPENED('ERR_TLS_HANDSHAKE'), handler: 'not called', wire: 'alert', info: '-' },
  },
  {
    event: 'TLS: not TLS at all (plain HTTP)',
    tls: 'handshake',
    play: async (p) => {
      p.raw.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    },
    // OpenSSL sends no alert to what is not a TLS record.
    expect: { nonblocking: NEVER_OPENED('ERR_TLS_HANDSHAKE'), blocking: NEVER_OPENED('ERR_TLS_HANDSHAKE'), handler: 'not called', wire: 'FIN', info: '-' },
  },
  {
    event: 'TLS: the handshake times out (200 ms here)',
    tls: 'handshake',
    handshakeTimeout: 200,
    play: async () => {},
    expect: { nonblocking: NEVER_OPENED('ERR_TLS_HANDSHAKE_TIMEOUT'), blocking: NEVER_OPENED('ERR_TLS_HANDSHAKE_TIMEOUT'), handler: 'not called', wire: 'FIN', info: '-' },
  },
  {
    event: 'read deadline expired',
    onOpen: (ws) => ws.setReadDeadline(Date.now() + 200),
    play: async () => {},
    expect: { nonblocking: 'TimeoutError "read timeout"', blocking: 'TimeoutError "i/o timeout"', handler: 'not called', wire: 'FIN', info: '1006 network' },
  },
  {
    event: 'server writeClose(1000), peer answers',
    onOpen: (ws) => ws.writeClose(1000, 'done'),
    play: (p) => p.answerClose(),
    expect: { nonblocking: 'null', blocking: NET_CLOSED, handler: '(1000, "")', wire: 'close 1000, FIN', info: '1000 clean local' },
  },
  {
    event: 'server closeWithError(e)',
    // A moment after the open, so that the peer has read the 101 first: a
    // reset right behind data can reach a Linux reader as a plain EOF.
    onOpen: (ws) => void setTimeout(() => ws.closeWithError(new Error('the application closed it')), 20),
    play: async () => {},
    expect: { nonblocking: APP_ERROR, blocking: APP_ERROR, handler: 'not called', wire: 'FIN', info: '1006 local' },
  },
  {
    event: 'server closeAndClean(e)',
    onOpen: (ws) => void setTimeout(() => ws.closeAndClean(new Error('the application closed it')), 20),
    play: async () => {},
    expect: { nonblocking: APP_ERROR, blocking: APP_ERROR, handler: 'not called', wire: 'RST', info: '1006 local' },
  },
  {
    event: 'engine stops',
    onOpen: (_ws, engine) => void engine.stop(),
    play: (p) => p.answerClose(),
    expect: { nonblocking: 'null', blocking: NET_CLOSED, handler: '(1001, "")', wire: 'close 1001, FIN', info: '1001 clean local' },
  },
];

function protocolError(code: number): Expected {
  return { nonblocking: `ProtocolError ${code}`, blocking: `ProtocolError ${code}`, handler: 'not called', wire: `close ${code}, FIN`, info: `${code} local` };
}

function closePayload(code: number, reason: string): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

function clientFrame(opcode: number, payload: Buffer): Buffer {
  return Buffer.concat(frame(opcode, payload, { mask: true }));
}

// Node's tls reports the server's fatal alert as an error named after it (ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION).
const ALERT_ERROR = /^ERR_SSL_.*ALERT/;

/**
 * The client: a `net` socket that speaks just enough WebSocket, byte by
 * byte; over TLS, Node's tls on top of that socket (`raw`), which the peer
 * keeps so that it can misbehave under TLS.
 */
class RawPeer {
  /** What the WebSocket is spoken on: the net socket, or the TLS socket over it. */
  readonly sock: net.Socket;
  /** The TCP connection. */
  readonly raw: net.Socket;
  /** A peer that never speaks TLS (a handshake row): what it receives are TLS records, not frames. */
  readonly #bare: boolean;
  #rx: Buffer = Buffer.alloc(0);
  #ended = false;
  #error: NodeJS.ErrnoException | null = null;
  #closed: Promise<void>;
  #onData: (() => void) | null = null;

  private constructor(sock: net.Socket, raw: net.Socket, bare: boolean) {
    this.sock = sock;
    this.raw = raw;
    this.#bare = bare;
    sock.on('data', (d: Buffer) => {
      this.#rx = Buffer.concat([this.#rx, d]);
      this.#onData?.();
    });
    sock.on('end', () => (this.#ended = true));
    sock.on('error', (err: NodeJS.ErrnoException) => (this.#error ??= err));
    if (raw !== sock) raw.on('error', (err: NodeJS.ErrnoException) => (this.#error ??= err));
    this.#closed = new Promise((resolve) => sock.on('close', () => resolve()));
  }

  static async #connect(port: number): Promise<net.Socket> {
    const raw = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', reject);
    });
    return raw;
  }

  /** A TCP connection that says nothing yet (the TLS handshake rows). */
  static async bare(port: number): Promise<RawPeer> {
    const raw = await RawPeer.#connect(port);
    return new RawPeer(raw, raw, true);
  }

  /** A bare peer's TLS handshake with these client settings, not waited for: its failure is the wire's. */
  handshake(options: tls.ConnectionOptions): void {
    const t = tls.connect({ socket: this.raw, servername: 'localhost', rejectUnauthorized: false, ...options });
    t.on('error', (err: NodeJS.ErrnoException) => (this.#error ??= err));
    t.on('end', () => (this.#ended = true));
    t.on('close', () => this.raw.destroy());
  }

  /** A WebSocket, over TLS if `secure` (any certificate accepted: the rows are about closing, not trust). */
  static async open(port: number, secure: boolean): Promise<RawPeer> {
    const raw = await RawPeer.#connect(port);
    let sock: net.Socket = raw;
    if (secure) {
      const t = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => {
        t.once('secureConnect', resolve);
        t.once('error', reject);
      });
      sock = t;
    }
    const p = new RawPeer(sock, raw, false);
    sock.write(
      'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await p.until(() => p.#rx.indexOf('\r\n\r\n') >= 0, 'the 101 response');
    const end = p.#rx.indexOf('\r\n\r\n') + 4;
    const head = p.#rx.toString('latin1', 0, end);
    if (!head.startsWith('HTTP/1.1 101 ')) throw new Error(`compare: the server answered ${head.split('\r\n')[0]}`);
    p.#rx = p.#rx.subarray(end);
    return p;
  }

  async send(opcode: number, payload: Buffer): Promise<void> {
    this.sock.write(clientFrame(opcode, payload));
  }

  sendClose(code: number, reason: string): Promise<void> {
    return this.send(Opcode.Close, closePayload(code, reason));
  }

  /** Waits for the server's close frame and answers it with the same code. */
  async answerClose(): Promise<void> {
    await this.until(() => this.frames().some((f) => f.opcode === Opcode.Close), "the server's close frame");
    const close = this.frames().find((f) => f.opcode === Opcode.Close)!;
    await this.send(Opcode.Close, close.payload.subarray(0, 2));
  }

  frames(): { opcode: number; payload: Buffer }[] {
    const out = [];
    let b = this.#rx;
    while (b.length >= 2) {
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) break;
      out.push({ opcode: b[0]! & 0x0f, payload: b.subarray(off, off + len) });
      b = b.subarray(off + len);
    }
    return out;
  }

  /** What the server sent after the handshake, and how the connection ended for us. */
  async wire(timeoutMs: number): Promise<string> {
    await Promise.race([this.#closed, new Promise((r) => setTimeout(r, timeoutMs))]);
    if (this.#bare) {
      // TLS records: an alert (content type 21) is all a refused handshake gets.
      const parts = this.#rx.length === 0 ? [] : [this.#rx[0] === 21 ? 'alert' : `${this.#rx.length} bytes`];
      // Node's tls client drops the connection at a fatal alert: how TCP would have ended is not seen.
      if (ALERT_ERROR.test(this.#error?.code ?? '')) return [...parts, 'alert'].join(', ');
      parts.push(this.#error?.code === 'ECONNRESET' ? 'RST' : this.#ended ? 'FIN' : 'still open');
      return parts.join(', ');
    }
    const parts = this.frames().map((f) => {
      if (f.opcode !== Opcode.Close) return `opcode ${f.opcode}`;
      return f.payload.length >= 2 ? `close ${f.payload.readUInt16BE(0)}` : 'close (empty)';
    });
    if (this.sock.destroyed && this.#error === null && !this.#ended) return parts.length > 0 ? parts.join(', ') : '-'; // we reset it
    if (ALERT_ERROR.test(this.#error?.code ?? '')) parts.push('alert');
    parts.push(this.#error?.code === 'ECONNRESET' ? 'RST' : this.#ended || this.raw.readableEnded ? 'FIN' : 'still open');
    return parts.join(', ');
  }

  destroy(): void {
    this.sock.destroy();
    this.raw.destroy();
  }

  async until(cond: () => boolean, what: string): Promise<void> {
    const end = Date.now() + 3000;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`compare: timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        this.#onData = resolve;
        setTimeout(resolve, 20);
      });
      this.#onData = null;
    }
  }
}

/** One observed cell, and whether it is what the contract says. */
export interface Cell {
  observed: string;
  expected: string;
  ok: boolean;
}

/** What one mode column observed for one row, each cell checked against the contract. */
export interface ColumnCells {
  /** The column's name (MODE_COLUMNS). */
  column: string;
  /** The ioMode the tested connection had. */
  conn: 'blocking' | 'nonblocking';
  onClose: Cell;
  handler: Cell;
  wire: Cell;
  info: Cell;
}

export interface ComparisonRow {
  event: string;
  /** onClose per mode column played, in MODE_COLUMNS order (every column unless `modes` chose some). */
  onClose: Cell[];
  /** The close handler, the wire and closeInfo must be the same in every mode: one cell each. */
  handler: Cell;
  wire: Cell;
  info: Cell;
  /** Every cell of every column played, for a view that puts the modes side by side. */
  columns: ColumnCells[];
}

/** The rows of the contract, by event name, in the order compareModes plays them. */
export const CLOSE_EVENTS: readonly string[] = SCENARIOS.map((s) => s.event);

/** Which rows and mode columns compareModes plays; every one of both by default. */
export interface CompareOptions {
  /** The certificate and key the TLS rows' server uses. Default: a self-signed one made for the run (node:crypto, no openssl needed). */
  tls?: TlsCertificate;
  /** Events of CLOSE_EVENTS; played in CLOSE_EVENTS order. */
  events?: readonly string[];
  /** I/O modes whose columns are played ('mixed' has two: under and over maxBlockingOnline). */
  modes?: readonly IoMode[];
}

function cell(observed: string[], expected: string): Cell {
  const same = observed.every((o) => o === observed[0]);
  return { observed: same ? observed[0]! : observed.join(' | '), expected, ok: same && observed[0] === expected };
}

async function observe(s: Scenario, col: ModeColumn, cert: TlsCertificate | undefined): Promise<{ err: string; handler: string; wire: string; info: string }> {
  const up = new Upgrader({ closeTimeout: 1000, messageLengthLimit: 1024 });
  let engine!: Engine;
  let closed: { err: Error | null; ws: WebSocketConn } | null = null;
  let handler = 'not called';
  let tested: WebSocketConn | null = null;
  let opened = 0;
  up.onOpen((ws) => {
    if (col.holder && opened++ === 0) return; // the holder: takes the only blocking place
    tested = ws;
    s.onOpen?.(ws, engine);
  });
  up.onClose((ws, err) => {
    if (ws === tested) closed = { err, ws };
  });
  up.setCloseHandler((ws, code, reason) => {
    if (ws === tested) handler = `(${code}, ${JSON.stringify(reason)})`;
  });
  let refused: TLSHandshakeError | null = null;
  const secure = s.tls !== undefined && cert !== undefined;
  engine = new Engine({
    addrs: ['127.0.0.1:0'],
    upgrader: up,
    ioMode: col.ioMode,
    maxBlockingOnline: 1,
    ...(secure ? { tls: { ...cert, minVersion: s.serverMinVersion }, tlsHandshakeTimeout: s.handshakeTimeout ?? 10_000, onTLSError: (err: TLSHandshakeError) => (refused = err) } : {}),
  });
  await engine.start();
  const port = Number(engine.addresses()[0]!.split(':').pop());
  const peers: RawPeer[] = [];
  try {
    if (col.holder) peers.push(await RawPeer.open(port, secure));
    if (s.tls === 'handshake') {
      // The tested connection never opens: what the server says is onTLSError's, and the wire.
      const peer = await RawPeer.bare(port);
      peers.push(peer);
      await s.play(peer);
      await waitFor(() => refused !== null, 5000);
      const wire = await peer.wire(2000);
      const err = tested !== null ? 'opened' : refused === null ? 'onTLSError not called' : `never opened: onTLSError(${formatError(refused)})`;
      return { err, handler, wire, info: '-' };
    }
    const peer = await RawPeer.open(port, secure);
    peers.push(peer);
    await waitFor(() => tested !== null, 3000);
    const ws = tested as WebSocketConn | null;
    if (ws !== null && ws.ioMode !== col.conn) throw new Error(`compare: the connection got ${ws.ioMode}, expected ${col.conn}`);
    await s.play(peer);
    await waitFor(() => closed !== null, 5000);
    const wire = await peer.wire(2000);
    const c = closed as { err: Error | null; ws: WebSocketConn } | null;
    if (c === null) return { err: 'onClose not called', handler, wire, info: '-' };
    const i = c.ws.closeInfo;
    const info = i === null ? 'null' : `${i.code}${i.wasClean ? ' clean' : ''} ${i.initiator}`;
    return { err: formatError(c.err), handler, wire, info };
  } finally {
    for (const p of peers) p.destroy();
    await engine.stop();
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
}

/** Plays the rows in the mode columns `options` chose (every one by default); onRow is called as each row is done. */
export async function compareModes(onRow?: (row: ComparisonRow) => void, options: CompareOptions = {}): Promise<ComparisonRow[]> {
  const unknown = (options.events ?? []).filter((e) => !CLOSE_EVENTS.includes(e));
  if (unknown.length > 0) throw new TypeError(`compareModes: unknown event ${JSON.stringify(unknown[0])} (see CLOSE_EVENTS)`);
  const modes = options.modes ?? ['nonblocking', 'blocking', 'mixed'];
  const columns = MODE_COLUMNS.filter((c) => modes.includes(c.ioMode));
  const scenarios = options.events === undefined ? SCENARIOS : SCENARIOS.filter((s) => options.events!.includes(s.event));
  const cert = scenarios.some((s) => s.tls !== undefined) ? (options.tls ?? selfSigned(['localhost', '127.0.0.1'])) : undefined;
  const rows: ComparisonRow[] = [];
  for (const s of scenarios) {
    const seen = [];
    for (const col of columns) seen.push(await observe(s, col, cert));
    const byColumn = seen.map((o, i): ColumnCells => {
      const col = columns[i]!;
      const expected = col.conn === 'blocking' ? s.expect.blocking : s.expect.nonblocking;
      return {
        column: col.name,
        conn: col.conn,
        onClose: { observed: o.err, expected, ok: o.err === expected },
        handler: cell([o.handler], s.expect.handler),
        wire: cell([o.wire], s.expect.wire),
        info: cell([o.info], s.expect.info),
      };
    });
    const row: ComparisonRow = {
      event: s.event,
      onClose: byColumn.map((c) => c.onClose),
      handler: cell(seen.map((o) => o.handler), s.expect.handler),
      wire: cell(seen.map((o) => o.wire), s.expect.wire),
      info: cell(seen.map((o) => o.info), s.expect.info),
      columns: byColumn,
    };
    rows.push(row);
    onRow?.(row);
  }
  return rows;
}

/** A cell as printed: what was observed; a differing one is marked ✗ and shows the contract's value. */
function show(c: Cell): string {
  return c.ok ? c.observed : `✗ ${c.observed} (contract: ${c.expected})`;
}

/** The observed table as markdown, and how many cells differ from the contract. */
export function formatComparison(rows: readonly ComparisonRow[]): { table: string; marked: number } {
  // Rows built by hand before `columns` existed have every column.
  const names = rows[0]?.columns?.map((c) => c.column) ?? MODE_COLUMNS.map((c) => c.name);
  const head = ['event', ...names.map((n) => `onClose: ${n}`), 'close handler', 'wire (server → peer)', 'closeInfo'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  let marked = 0;
  for (const r of rows) {
    const cells = [...r.onClose, r.handler, r.wire, r.info];
    marked += cells.filter((c) => !c.ok).length;
    lines.push(`| ${[r.event, ...cells.map(show)].join(' | ')} |`);
  }
  return { table: lines.join('\n'), marked };
}
