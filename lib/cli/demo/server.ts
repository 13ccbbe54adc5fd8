// `netloop demo`: one Node http server that serves a page and hands its WebSocket upgrades to a
// netloop engine (Upgrader.handleUpgrade), so the page and its socket share origin and port.
// With tls, netloop serves both itself on its own TLS listener (https:// page through the
// Upgrader's httpHandler, wss:// socket): Node's http server is not involved, since a socket
// Node has decrypted cannot be handed over.
// Over that socket the page gets a chat room, the engine's figures every second, and the close
// lab (lab.ts). The protocol is JSON text messages, one object each, with a `type`:
//
//   page → server   {type:'chat', text}  {type:'name', name}  {type:'lab', id, events, modes}
//   server → page   hello, chat, joined, renamed, left, stats, lab-queued, lab-row, lab-done,
//                   lab-error, error (see the sends below for their fields)
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { Engine, type IoMode } from '../../engine.js';
import { Upgrader } from '../../websocket/upgrader.js';
import type { WebSocketConn } from '../../websocket/conn.js';
import { formatError } from '../close-report.js';
import { CLOSE_EVENTS, MODE_COLUMNS, type ComparisonRow } from '../compare.js';
import { CloseLab, FEATURED_EVENTS, parseLabRequest } from './lab.js';
import { PAGE } from './page.js';
import type { RequestHead } from '../../http/request-parser.js';

export interface DemoOptions {
  host: string;
  /** 0 lets the OS choose (see Demo.url). */
  port: number;
  ioMode: IoMode;
  maxBlockingOnline: number;
  /** Serve https:// and wss:// with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface Demo {
  /** The page: http://host:port/ (https:// with tls) */
  readonly url: string;
  /** Where the page's WebSocket connects. */
  readonly wsUrl: string;
  readonly engine: Engine;
  /** Says 1001 to every page, then closes the http server. */
  stop(): Promise<void>;
}

interface Member {
  name: string;
}

interface ChatLine {
  from: string;
  text: string;
  at: number;
}

// Bounds on what one page can make the server hold or repeat to everyone.
const MAX_NAME = 24;
const MAX_TEXT = 500;
const HISTORY = 50; // chat lines a newcomer gets
const MESSAGE_LIMIT = 16 * 1024; // a lab request with every row is about 1 KiB

// Names are shown with textContent, so markup is harmless; control characters (newlines,
// bidi overrides) are not, in a one-line name.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function cleanName(name: unknown): string {
  return typeof name === 'string' ? name.replace(CONTROL, '').trim().slice(0, MAX_NAME) : '';
}

// A page elsewhere on the web must not drive a visitor's browser into this server (the browser
// sends its Origin; non-browser clients send none).
function sameOrigin(scheme: 'http' | 'https'): (origin: string | undefined, head: { get(name: string): string | undefined }) => boolean {
  return (origin, head) => origin === undefined || origin === `${scheme}://${head.get('host') ?? ''}`;
}

// What a plain request gets: the page at /, 404 elsewhere, 405 for other methods.
function pageAnswer(method: string, path: string): { status: number; headers: Record<string, string>; body: string } {
  const text = { 'content-type': 'text/plain; charset=utf-8' };
  if (method !== 'GET' && method !== 'HEAD') return { status: 405, headers: { allow: 'GET, HEAD', ...text }, body: 'GET the page, or upgrade on /ws\n' };
  if (path !== '/') return { status: 404, headers: text, body: 'Not found: the demo is at /\n' };
  return {
    status: 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      // The page loads nothing but itself (the machine may be offline) and talks only to its own origin.
      'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'",
    },
    body: PAGE,
  };
}

// One lab row as the page draws it: the per-column cells only (the merged ones are for the CLI).
function labRow(row: ComparisonRow): object {
  return { event: row.event, columns: row.columns };
}

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const members = new Set<WebSocketConn<Member>>();
  const history: ChatLine[] = [];
  const lab = new CloseLab();
  let guests = 0;
  let messagesIn = 0;
  let messagesOut = 0;

  // A page that does not read (its queue past maxWriteBufferSize: OverflowError) is closed
  // alone: the others still get the message, and the figures' timer does not throw.
  const deliver = (ws: WebSocketConn<Member>, text: string): void => {
    if (ws.closed) return;
    try {
      ws.writeMessage('text', text);
      messagesOut++;
    } catch (err) {
      ws.closeWithError(err as Error);
    }
  };
  const send = (ws: WebSocketConn<Member>, msg: object): void => deliver(ws, JSON.stringify(msg));
  // Encoded once for everyone.
  const broadcast = (msg: object): void => {
    const text = JSON.stringify(msg);
    for (const ws of members) deliver(ws, text);
  };

  const upgrader = new Upgrader<Member>({
    path: '/ws',
    messageLengthLimit: MESSAGE_LIMIT,
    checkOrigin: sameOrigin(options.tls ? 'https' : 'http'),
    // With tls the engine's own listener also answers the page's plain requests.
    ...(options.tls ? { httpHandler: (head: RequestHead) => pageAnswer(head.method, head.target.split('?')[0] ?? '/') } : {}),
    // The nickname comes with the upgrade (?name=), so the connection has it from onOpen on.
    onUpgrade: (req) => ({ accept: true, session: { name: cleanName(req.query.get('name')) || `guest-${++guests}` } }),
  });
  const listenOn = options.host.includes(':') ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
  const engine = new Engine({
    addrs: options.tls ? [listenOn] : [],
    ...(options.tls ? { tls: options.tls } : {}),
    upgrader,
    ioMode: options.ioMode,
    maxBlockingOnline: options.maxBlockingOnline,
  });

  upgrader.onOpen((ws) => {
    members.add(ws);
    send(ws, {
      type: 'hello',
      name: ws.session!.name,
      ioMode: options.ioMode,
      maxBlockingOnline: options.maxBlockingOnline,
      conn: ws.ioMode,
      history,
      events: CLOSE_EVENTS,
      featured: FEATURED_EVENTS,
      columns: MODE_COLUMNS.map((c) => ({ name: c.name, ioMode: c.ioMode, conn: c.conn })),
    });
    broadcast({ type: 'joined', name: ws.session!.name, conn: ws.ioMode, online: members.size });
  });

  upgrader.onMessage((ws, type, data) => {
    messagesIn++;
    let msg: { type?: unknown; [k: string]: unknown };
    try {
      if (type !== 'text') throw new Error('binary');
      msg = JSON.parse(data.toString('utf8')) as typeof msg;
      if (msg === null || typeof msg !== 'object') throw new Error('not an object');
    } catch {
      send(ws, { type: 'error', message: 'expected a JSON object with a type' });
      return;
    }
    if (msg.type === 'chat') {
      const text = typeof msg.text === 'string' ? msg.text.trim().slice(0, MAX_TEXT) : '';
      if (text === '') return;
      const line: ChatLine = { from: ws.session!.name, text, at: Date.now() };
      history.push(line);
      if (history.length > HISTORY) history.shift();
      broadcast({ type: 'chat', ...line });
    } else if (msg.type === 'name') {
      const name = cleanName(msg.name);
      const from = ws.session!.name;
      if (name === '' || name === from) return;
      ws.setSession({ name });
      broadcast({ type: 'renamed', from, to: name });
    } else if (msg.type === 'lab') {
      const id = typeof msg.id === 'number' ? msg.id : 0;
      const req = parseLabRequest(msg);
      if (typeof req === 'string') {
        send(ws, { type: 'lab-error', id, message: req });
        return;
      }
      const started = Date.now();
      const queued = lab.run(req, (row) => send(ws, { type: 'lab-row', id, row: labRow(row) }));
      if (queued === null) {
        send(ws, { type: 'lab-error', id, message: 'the lab is busy: try again in a few seconds' });
        return;
      }
      send(ws, { type: 'lab-queued', id, ahead: queued.ahead });
      queued.done.then(
        () => send(ws, { type: 'lab-done', id, ms: Date.now() - started }),
        (err: Error) => send(ws, { type: 'lab-error', id, message: err.message }),
      );
    } else {
      send(ws, { type: 'error', message: `unknown type ${JSON.stringify(msg.type)}` });
    }
  });

  // What onClose received is shown to the others: the close contract, live.
  upgrader.onClose((ws, err) => {
    if (!members.delete(ws)) return;
    broadcast({ type: 'left', name: ws.session!.name, conn: ws.ioMode, online: members.size, onClose: formatError(err), closeInfo: ws.closeInfo === null ? null : { code: ws.closeInfo.code, wasClean: ws.closeInfo.wasClean, initiator: ws.closeInfo.initiator } });
  });

  // The figures, once a second to every page, as rates over the time that really passed.
  let last = { at: Date.now(), messagesIn: 0, messagesOut: 0 };
  const ticker = setInterval(() => {
    const now = Date.now();
    const seconds = Math.max(0.001, (now - last.at) / 1000);
    const s = engine.stats();
    const mem = process.memoryUsage();
    const figures = {
      type: 'stats',
      at: now,
      online: s.online,
      blocking: s.blockingOnline,
      nonblocking: s.online - s.blockingOnline,
      messagesInPerSec: Math.round((messagesIn - last.messagesIn) / seconds),
      messagesOutPerSec: Math.round((messagesOut - last.messagesOut) / seconds),
      queuedBytes: s.queuedBytes,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      labRuns: lab.runs,
      labPending: lab.pending,
    };
    last = { at: now, messagesIn, messagesOut };
    if (members.size > 0) broadcast(figures);
  }, 1000);
  ticker.unref(); // the http server keeps the process alive, not the figures

  if (options.tls) return serveTls(engine, lab, ticker);

  const server = http.createServer((req, res) => {
    const a = pageAnswer(req.method ?? 'GET', (req.url ?? '/').split('?')[0] ?? '/');
    res.writeHead(a.status, a.headers).end(req.method === 'HEAD' ? undefined : a.body);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Refusals (404, 403...) are answered on Node's socket and resolve null; a rejection means
    // the socket could not be taken over, and handleUpgrade has destroyed it.
    upgrader.handleUpgrade(req, socket, head).catch((err: Error) => process.stderr.write(`netloop demo: upgrade failed: ${err.message}\n`));
  });

  await engine.start(); // handleUpgrade needs a running engine
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    clearInterval(ticker);
    await engine.stop();
    throw err;
  }
  const address = server.address() as { address: string; port: number };
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const authority = `${host}:${address.port}`;

  return {
    url: `http://${authority}/`,
    wsUrl: `ws://${authority}/ws`,
    engine,
    async stop() {
      clearInterval(ticker);
      const closed = new Promise<void>((resolve) => server.close(() => resolve())); // no new page or upgrade from now on
      await engine.stop(); // 1001 to every page, answers awaited (closeTimeout at most)
      await lab.stop();
      server.closeAllConnections(); // keep-alive page requests
      await closed;
    },
  };
}

// With tls: the engine listens itself (page and socket on one TLS port).
async function serveTls(engine: Engine, lab: CloseLab, ticker: NodeJS.Timeout): Promise<Demo> {
  try {
    await engine.start();
  } catch (err) {
    clearInterval(ticker);
    throw err;
  }
  const authority = engine.addresses()[0] ?? '';
  return {
    url: `https://${authority}/`,
    wsUrl: `wss://${authority}/ws`,
    engine,
    async stop() {
      clearInterval(ticker);
      await engine.stop(); // 1001 to every page, answers awaited (closeTimeout at most)
      await lab.stop();
    },
  };
}
