// The WebSocket client: dial('ws://host:port/path', options) opens a TCP
// connection on an Engine, performs the opening handshake (RFC 6455 §4.1)
// and resolves to a WebSocketConn with the same API as the server's, with
// every frame masked.
import { randomBytes } from 'node:crypto';
import type { Conn, ConnProtocol } from '../conn.js';
import { CloseCode } from './close.js';
import { Engine } from '../engine.js';
import { HttpError, NetClosedError, NetloopError, ProtocolError, TimeoutError, type BudgetError } from '../errors.js';
import { ResponseParser, headerValue, type ResponseHead, type ResponseParser as Parser } from '../http/response-parser.js';
import { computeAccept } from '../http/upgrade.js';
import { listElements, listHasToken, trimOws } from '../http/chars.js';
import { WebSocketConn, failForHandler, type ClosedWebSocketConn, type WebSocketOwner } from './conn.js';
import type { MessageType } from './opcodes.js';
import type { TlsClientOptions } from '../tls.js';
import { DEFAULT_MAX_MESSAGE_LENGTH, Receiver, type ReceiverHandlers } from './receiver.js';
import { PerMessageDeflate, inflationLimit, acceptClientResponse, offerClient, type DeflateOptions } from './deflate.js';
import { checkKnownOptions, compressionOption, intOption, msOption } from '../options.js';

/** Options of dial(); `S` is the type of the connection's session (WebSocketConn.setSession). */
export interface DialOptions<S = unknown> {
  /** The engine to dial from. Default: a shared client engine, started on first use. */
  engine?: Engine;
  /** Subprotocols to offer, in order of preference. */
  subprotocols?: readonly string[];
  /** Offer permessage-deflate (RFC 7692): true for the defaults, or its options. Default false. */
  compression?: boolean | DeflateOptions;
  /** Extra request headers (Origin, Authorization, ...). */
  headers?: Readonly<Record<string, string>>;
  /** Connect plus handshake must finish within this many ms. Default 10000. */
  handshakeTimeout?: number;
  /** After sending a close frame, the server's answer is awaited this long (ms). Default 5000. */
  closeTimeout?: number;
  /** Bytes a received message may have; past it: close 1009. 0 = no limit. Default 16 MiB. */
  messageLengthLimit?: number;
  /** Called with each complete message; `data` is yours to keep. */
  onMessage?: (c: WebSocketConn<S>, type: MessageType, data: Buffer) => void;
  /** Frame-level delivery instead of onMessage. */
  onDataFrame?: (c: WebSocketConn<S>, type: MessageType, fin: boolean, data: Buffer) => void;
  /** Called exactly once, after the connection closed (its closeInfo set), with null or why (the close contract). */
  onClose?: (c: ClosedWebSocketConn<S>, err: Error | null) => void;
  /** The server's close frame. */
  closeHandler?: (c: WebSocketConn<S>, code: number, reason: string) => void;
  /** Replaces the automatic pong. */
  pingHandler?: (c: WebSocketConn<S>, data: Buffer) => void;
  /** Called with each pong's payload. */
  pongHandler?: (c: WebSocketConn<S>, data: Buffer) => void;
  /**
   * Called once the server's 101 was accepted, with the connection and that
   * response, before any message is delivered (dial()'s promise settles
   * later, in a microtask, after frames that came with the 101).
   */
  onOpen?: (c: WebSocketConn<S>, response: ResponseHead) => void;
  /** The connection's write queue became empty (bufferedAmount 0). */
  onDrain?: (c: WebSocketConn<S>) => void;
  /**
   * wss:// only: TLS options (trusted `ca`, `servername`, `rejectUnauthorized`,
   * a client certificate). The server's certificate is verified against
   * Node's root certificates by default, and must be for the URL's host; the
   * dial rejects with a TLSHandshakeError that says why otherwise.
   */
  tls?: TlsClientOptions;
}

/** The handshake failed: the server answered something other than a valid 101. */
export class HandshakeError extends NetloopError {
  /** The HTTP status the server answered (101 when the 101 itself was wrong; 0 when unreadable). */
  readonly status: number;
  /** The server's response head (status, reason, header lines), when it was readable. */
  readonly response: ResponseHead | undefined;
  /** @param code the stable `code`; @param status the server's status; @param message what was wrong; @param response the head read. */
  constructor(code: string, status: number, message: string, response?: ResponseHead) {
    super(code, message);
    this.status = status;
    this.response = response;
  }
}

// Every option's name, checked against DialOptions by the compiler.
const DIAL_OPTIONS = {
  engine: true, subprotocols: true, compression: true, headers: true, handshakeTimeout: true, closeTimeout: true,
  messageLengthLimit: true, onMessage: true, onDataFrame: true, onClose: true, closeHandler: true, pingHandler: true, pongHandler: true, onOpen: true, onDrain: true,
  tls: true,
} as const satisfies Record<keyof DialOptions, true>;

let sharedEngine: Engine | undefined;
let sharedStarting: Promise<Engine> | undefined;
let sharedOpen = 0;

// The shared engine keeps the process alive only while it has a dial
// pending or a connection open, like a Node socket would: counted from the
// start of dial() (a script whose only work is `await dial(...)` must not
// exit with its promise unsettled) to the connection's onClose, or to the
// dial's failure.
function sharedRef(delta: number): void {
  sharedOpen += delta;
  sharedEngine?._setRef(sharedOpen > 0);
}

async function defaultEngine(): Promise<Engine> {
  if (sharedEngine !== undefined) return sharedEngine;
  sharedStarting ??= (async () => {
    const e = new Engine({ ref: false });
    await e.start();
    sharedEngine = e;
    e._setRef(sharedOpen > 0); // the dial that started it is counted already
    return e;
  })();
  return sharedStarting;
}

function parseUrl(url: string): { host: string; port: number; path: string; hostHeader: string; secure: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`dial: "${url}" is not a URL`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`dial: the URL must start with ws:// or wss://, got ${u.protocol}`);
  if (u.hash !== '') throw new TypeError('dial: a WebSocket URL has no fragment (#...)');
  const secure = u.protocol === 'wss:';
  const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port, path: (u.pathname || '/') + u.search, hostHeader: u.host, secure };
}

class ClientSession<S> implements ReceiverHandlers, WebSocketOwner<S> {
  readonly closeTimeout: number;
  readonly masked = true;
  ws!: WebSocketConn<S>;
  constructor(readonly o: DialOptions<S>) {
    this.closeTimeout = o.closeTimeout ?? 5000;
  }
  deliverCloseFrame(ws: WebSocketConn<S>, code: number, reason: string): void {
    this.o.closeHandler?.(ws, code, reason);
  }
  deliverClose(ws: WebSocketConn<S>, err: Error | null): void {
    sharedRefIfShared(ws, -1);
    this.o.onClose?.(ws as ClosedWebSocketConn<S>, err); // _closed() set closeInfo just before
  }
  onMessage(type: MessageType, data: Buffer): void {
    this.o.onMessage?.(this.ws, type, data);
  }
  onPing(data: Buffer): void {
    if (this.o.pingHandler !== undefined) this.o.pingHandler(this.ws, data);
    else this.ws._autoPong(data);
  }
  onPong(data: Buffer): void {
    this.o.pongHandler?.(this.ws, data);
  }
  onClose(code: number, reason: string): void {
    this.ws._peerClose(code, reason);
  }
  onError(err: ProtocolError | BudgetError): void {
    this.ws._protocolError(err);
  }
  onResumeError(_owner: unknown, err: unknown): void {
    failForHandler(this.ws._raw, err);
  }
}

class FrameClientSession<S> extends ClientSession<S> {
  onDataFrame(type: MessageType, fin: boolean, data: Buffer): void {
    this.o.onDataFrame!(this.ws, type, fin, data);
  }
}

function sharedRefIfShared(ws: WebSocketConn<unknown>, delta: number): void {
  if (ws._raw.engine === sharedEngine) sharedRef(delta);
}

interface Handshake<S> {
  key: string;
  parser: Parser;
  path: string;
  offered: readonly string[];
  compression: DeflateOptions | null;
  session: ClientSession<S>;
  resolve: (ws: WebSocketConn<S>) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const websocketProto: ConnProtocol = {
  onData(conn, data) {
    (conn._protoState as WebSocketConn)._receiver?.push(data);
  },
  onClose(conn, err) {
    (conn._protoState as WebSocketConn)._closed(err);
  },
  onDrain(conn) {
    const ws = conn._protoState as WebSocketConn;
    (ws._owner as ClientSession<unknown>).o.onDrain?.(ws);
  },
  onHandlerError(conn, err) {
    // A handler of the dialer's threw: close 1011, as the server side does.
    (conn._protoState as WebSocketConn)._fail(err, CloseCode.InternalError);
  },
};

const handshakeProto: ConnProtocol = {
  onData(conn, data) {
    const h = conn._protoState as Handshake<unknown>;
    const r = h.parser.push(data);
    if (r === 'need-more') return;
    if (r instanceof HttpError) {
      fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE', 0, `invalid handshake response: ${r.message}`));
      return;
    }
    const head = r.head;
    if (head.status !== 101) {
      // The reason is the server's text: trimmed by index like every value from it.
      const reason = trimOws(head.reason);
      fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE_STATUS', head.status, `the server answered ${head.status}${reason === '' ? '' : ` ${reason}`}`, head));
      return;
    }
    if (!listHasToken(headerValue(head, 'upgrade'), 'websocket') || !listHasToken(headerValue(head, 'connection'), 'upgrade')) {
      fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE', 101, 'the 101 response lacks Upgrade: websocket or Connection: upgrade'));
      return;
    }
    if (headerValue(head, 'sec-websocket-accept') !== computeAccept(h.key)) {
      fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE_ACCEPT', 101, 'Sec-WebSocket-Accept does not match the key'));
      return;
    }
    const protocol = headerValue(head, 'sec-websocket-protocol') ?? '';
    if (protocol !== '' && !h.offered.includes(protocol)) {
      fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE_PROTOCOL', 101, `the server chose subprotocol "${protocol}", which was not offered`));
      return;
    }
    const extensions = headerValue(head, 'sec-websocket-extensions');
    let pmd: PerMessageDeflate | null = null;
    if (extensions !== undefined) {
      if (h.compression === null) {
        const names = listElements(extensions);
        fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE_EXTENSION', 101, `the server accepted extensions that were not offered: ${names.join(', ')}`));
        return;
      }
      const params = acceptClientResponse(extensions, h.compression);
      if (params instanceof Error) {
        fail(conn, h, new HandshakeError('WS_ERR_HANDSHAKE_EXTENSION', 101, params.message));
        return;
      }
      const limit = h.session.o.messageLengthLimit ?? DEFAULT_MAX_MESSAGE_LENGTH;
      if (params !== null) pmd = new PerMessageDeflate(params, 'client', { ...h.compression, maxMessageLength: inflationLimit(limit, h.compression) });
    }
    clearTimeout(h.timer);
    const s = h.session;
    const ws = new WebSocketConn(conn, { owner: s, path: h.path, subprotocol: protocol });
    s.ws = ws;
    ws._receiver = new Receiver(s, { role: 'client', maxMessageLength: s.o.messageLengthLimit ?? DEFAULT_MAX_MESSAGE_LENGTH, decompressor: pmd });
    ws._receiver.setBudget(conn.engine._receiveBudget);
    ws._pmd = pmd;
    conn._proto = websocketProto;
    conn._protoState = ws;
    h.resolve(ws);
    // After the switch to websocketProto: a throw here is a handler's (1011).
    s.o.onOpen?.(ws, head);
    if (r.consumed < data.length) websocketProto.onData(conn, data.subarray(r.consumed));
  },
  onClose(conn, err) {
    const h = conn._protoState as Handshake<unknown>;
    fail(conn, h, err ?? new NetClosedError());
  },
  onDrain() {},
};

function fail<S>(conn: Conn, h: Handshake<S>, err: Error): void {
  clearTimeout(h.timer);
  conn._protoState = undefined;
  conn._proto = undefined;
  conn.closeAndClean(err);
  h.reject(err);
}

/**
 * Opens a WebSocket connection to a ws:// URL: resolves once the server
 * accepted the handshake. `S` is the type of the connection's session.
 */
export async function dial<S = unknown>(url: string, options: DialOptions<S> = {}): Promise<WebSocketConn<S>> {
  if (typeof url !== 'string') throw new TypeError('dial(url, options): url must be a string');
  if (options === null || typeof options !== 'object') throw new TypeError('dial(url, options): options must be an object');
  checkKnownOptions('dial', options, DIAL_OPTIONS);
  const target = parseUrl(url);
  const offered = options.subprotocols ?? [];
  if (!Array.isArray(offered) || !offered.every((p) => typeof p === 'string' && /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p))) {
    throw new TypeError('dial: subprotocols must be an array of tokens');
  }
  for (const name of ['onMessage', 'onDataFrame', 'onClose', 'closeHandler', 'pingHandler', 'pongHandler', 'onOpen', 'onDrain'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') throw new TypeError(`dial: ${name} must be a function`);
  }
  const timeout = msOption('handshakeTimeout', options.handshakeTimeout, 10_000);
  msOption('closeTimeout', options.closeTimeout, 5000);
  intOption('messageLengthLimit', options.messageLengthLimit, 0, 0, Number.MAX_SAFE_INTEGER);
  if (options.engine !== undefined && !(options.engine instanceof Engine)) throw new TypeError('dial: engine must be an Engine');
  if (options.headers !== undefined && (options.headers === null || typeof options.headers !== 'object')) throw new TypeError('dial: headers must be an object of header names to values');
  const compression = compressionOption('dial', options.compression);
  const headers = Object.entries(options.headers ?? {});
  for (const [name, value] of headers) {
    // Checked before dialing: a connection must not be opened for a request that cannot be sent.
    if (typeof value !== 'string') throw new TypeError(`dial: header ${name} must be a string`);
    if (/[\r\n]/.test(name + value)) throw new TypeError('dial: header names and values must not contain CR or LF');
  }
  if (options.engine !== undefined) return handshake(options.engine, target, offered, compression, headers, timeout, options);
  sharedRef(+1); // until the connection closes (ClientSession.deliverClose) or the dial fails (below)
  try {
    return await handshake(await defaultEngine(), target, offered, compression, headers, timeout, options);
  } catch (err) {
    sharedRef(-1);
    throw err;
  }
}

async function handshake<S>(
  engine: Engine,
  target: ReturnType<typeof parseUrl>,
  offered: readonly string[],
  compression: DeflateOptions | null,
  headers: Array<[string, string]>,
  timeout: number,
  options: DialOptions<S>,
): Promise<WebSocketConn<S>> {
  const addr = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
  const started = Date.now();
  // The engine checks the certificate against the URL's host unless tls.servername says otherwise.
  const conn = await engine._dial(addr, { timeout, ...(target.secure ? { tls: options.tls ?? true } : {}) }, handshakeProto);
  const key = randomBytes(16).toString('base64');
  const lines = [
    `GET ${target.path} HTTP/1.1`,
    `Host: ${target.hostHeader}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
  ];
  if (offered.length > 0) lines.push(`Sec-WebSocket-Protocol: ${offered.join(', ')}`);
  if (compression !== null) {
    lines.push(`Sec-WebSocket-Extensions: ${offerClient(compression)}`);
  }
  for (const [name, value] of headers) lines.push(`${name}: ${value}`);
  return new Promise<WebSocketConn<S>>((resolve, reject) => {
    const session = options.onDataFrame !== undefined ? new FrameClientSession(options) : new ClientSession(options);
    const left = Math.max(1, timeout - (Date.now() - started));
    const h: Handshake<S> = {
      key,
      parser: new ResponseParser(),
      path: target.path,
      offered,
      compression,
      session,
      resolve,
      reject,
      timer: setTimeout(() => fail(conn, h, new TimeoutError('read')), left),
    };
    conn._protoState = h;
    conn.write(lines.join('\r\n') + '\r\n\r\n');
  });
}
