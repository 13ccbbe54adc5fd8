// `netloop compare`: plays every row of the close-reporting contract
// (DESIGN.md) against each I/O mode, over loopback, with a real client (a
// Node `net` socket speaking WebSocket with hand-built frames, so that it
// can misbehave on purpose), and reports what it observed: the error onClose
// received, the close handler's call, the bytes the server put on the wire
// and how the TCP connection ended, and closeInfo. Every observed cell is
// compared with the contract; a cell that differs is marked.
//
// The observations are made fresh on every run; the contract is only used to
// mark the cells that differ from it.
import net from 'node:net';
import { Engine, type IoMode } from '../engine.js';
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
  /** Server side, when the connection opens. */
  onOpen?: (ws: WebSocketConn, engine: Engine) => void;
  /** The peer's side. */
  play: (peer: RawPeer) => Promise<void>;
  expect: Expected;
}

const NET_CLOSED = 'NetClosedError "use of closed network connection"';
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

/** The client: a `net` socket that speaks just enough WebSocket, byte by byte. */
class RawPeer {
  readonly sock: net.Socket;
  #rx: Buffer = Buffer.alloc(0);
  #ended = false;
  #error: NodeJS.ErrnoException | null = null;
  #closed: Promise<void>;
  #onData: (() => void) | null = null;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.#rx = Buffer.concat([this.#rx, d]);
      this.#onData?.();
    });
    sock.on('end', () => (this.#ended = true));
    sock.on('error', (err: NodeJS.ErrnoException) => (this.#error = err));
    this.#closed = new Promise((resolve) => sock.on('close', () => resolve()));
  }

  static async open(port: number): Promise<RawPeer> {
    const sock = net.connect(port, '127.0.0.1');
    const p = new RawPeer(sock);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    sock.write(
      'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await p.#until(() => p.#rx.indexOf('\r\n\r\n') >= 0, 'the 101 response');
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
    await this.#until(() => this.frames().some((f) => f.opcode === Opcode.Close), "the server's close frame");
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
    const parts = this.frames().map((f) => {
      if (f.opcode !== Opcode.Close) return `opcode ${f.opcode}`;
      return f.payload.length >= 2 ? `close ${f.payload.readUInt16BE(0)}` : 'close (empty)';
    });
    if (this.sock.destroyed && this.#error === null && !this.#ended) return parts.length > 0 ? parts.join(', ') : '-'; // we reset it
    parts.push(this.#error?.code === 'ECONNRESET' ? 'RST' : this.#ended ? 'FIN' : 'still open');
    return parts.join(', ');
  }

  destroy(): void {
    this.sock.destroy();
  }

  async #until(cond: () => boolean, what: string): Promise<void> {
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
  /** Events of CLOSE_EVENTS; played in CLOSE_EVENTS order. */
  events?: readonly string[];
  /** I/O modes whose columns are played ('mixed' has two: under and over maxBlockingOnline). */
  modes?: readonly IoMode[];
}

function cell(observed: string[], expected: string): Cell {
  const same = observed.every((o) => o === observed[0]);
  return { observed: same ? observed[0]! : observed.join(' | '), expected, ok: same && observed[0] === expected };
}

async function observe(s: Scenario, col: ModeColumn): Promise<{ err: string; handler: string; wire: string; info: string }> {
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
  engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, ioMode: col.ioMode, maxBlockingOnline: 1 });
  await engine.start();
  const port = Number(engine.addresses()[0]!.split(':').pop());
  const peers: RawPeer[] = [];
  try {
    if (col.holder) peers.push(await RawPeer.open(port));
    const peer = await RawPeer.open(port);
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
  const rows: ComparisonRow[] = [];
  for (const s of scenarios) {
    const seen = [];
    for (const col of columns) seen.push(await observe(s, col));
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
