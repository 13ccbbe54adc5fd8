// netloop/ws: the API of the `ws` package (version 8) over netloop's engine,
// so that code and libraries written for `ws` (Socket.IO's wsEngine,
// graphql-ws's useServer, Express or Fastify apps that upgrade through
// `{ server }`) run on netloop unchanged.
//
// A facade, not a second WebSocket: framing, compression, limits and the
// closing handshake are WebSocketConn's (../websocket/conn.ts). Each
// connection gets one EventEmitter (WebSocket below) that turns the
// Upgrader's or dial()'s handlers into ws's events, and ws's option names
// are mapped onto netloop's here, once. What differs from ws is said where it
// happens and in README.md ("netloop/ws").
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import type { Duplex as DuplexType } from 'node:stream';
import { Duplex } from 'node:stream';
import { Engine, type EngineOptions } from '../engine.js';
import { ProtocolError, BudgetError, TimeoutError } from '../errors.js';
import { Upgrader, type UpgraderOptions } from '../websocket/upgrader.js';
import type { UpgradeAnswer, UpgradeRequest } from '../websocket/upgrade-hook.js';
import { dial, HandshakeError, type DialOptions } from '../websocket/client.js';
import type { ClosedWebSocketConn, WebSocketConn } from '../websocket/conn.js';
import type { DeflateOptions } from '../websocket/deflate.js';
import type { MessageType } from '../websocket/opcodes.js';
import type { ResponseHead } from '../http/response-parser.js';
import { CloseCode, isValidCloseCode } from '../websocket/close.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const STATE_NAMES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'] as const;

/** ws's default maxPayload: 100 MiB (netloop's own default is 16 MiB). */
const WS_MAX_PAYLOAD = 100 * 1024 * 1024;

/** The forms of binaryType ws knows; netloop delivers a Buffer and converts it. */
export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob';

/** Data a message event carries, by binaryType. */
export type Data = Buffer | ArrayBuffer | Buffer[] | Blob;

/** ws's perMessageDeflate option. */
export interface PerMessageDeflateOptions {
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
  serverMaxWindowBits?: number;
  clientMaxWindowBits?: number | boolean;
  threshold?: number;
  zlibDeflateOptions?: { level?: number; memLevel?: number };
  /** Accepted and not used: netloop's inflater is bounded by maxPayload itself. */
  zlibInflateOptions?: object;
  /** Accepted and not used: netloop bounds the zlib work per connection and per loop turn itself. */
  concurrencyLimit?: number;
}

/** ws's perMessageDeflate option to netloop's compression option. */
function compressionOf(pmd: boolean | PerMessageDeflateOptions | undefined, dflt: boolean): boolean | DeflateOptions {
  if (pmd === undefined) return dflt;
  if (typeof pmd === 'boolean') return pmd;
  if (pmd === null || typeof pmd !== 'object') throw new TypeError('perMessageDeflate must be a boolean or an object');
  const o: DeflateOptions = {};
  if (pmd.serverNoContextTakeover !== undefined) o.serverNoContextTakeover = pmd.serverNoContextTakeover;
  if (pmd.clientNoContextTakeover !== undefined) o.clientNoContextTakeover = pmd.clientNoContextTakeover;
  if (pmd.serverMaxWindowBits !== undefined) o.serverMaxWindowBits = pmd.serverMaxWindowBits;
  // ws's `true` means "offer the parameter without a value", netloop's default already.
  if (typeof pmd.clientMaxWindowBits === 'number') o.clientMaxWindowBits = pmd.clientMaxWindowBits;
  if (pmd.threshold !== undefined) o.threshold = pmd.threshold;
  if (pmd.zlibDeflateOptions?.level !== undefined) o.level = pmd.zlibDeflateOptions.level;
  if (pmd.zlibDeflateOptions?.memLevel !== undefined) o.memLevel = pmd.zlibDeflateOptions.memLevel;
  return o;
}

/** ws option names with no counterpart: refused by name rather than silently ignored. */
function refuseOptions(what: string, options: object, known: ReadonlySet<string>): void {
  for (const name of Object.keys(options)) {
    if ((options as Record<string, unknown>)[name] === undefined) continue;
    if (!known.has(name)) throw new TypeError(`${what}: option "${name}" is not supported by netloop/ws`);
  }
}

// ---------------------------------------------------------------------------
// Event objects for addEventListener and the on* properties (the browser's
// shapes, as ws gives them).

/** The event of addEventListener listeners. */
export class WsEvent {
  readonly type: string;
  readonly target: WebSocket;
  constructor(type: string, target: WebSocket) {
    this.type = type;
    this.target = target;
  }
}
/** A 'message' event: text as a string, binary by binaryType. */
export class MessageEvent extends WsEvent {
  readonly data: string | Data;
  constructor(data: string | Data, target: WebSocket) {
    super('message', target);
    this.data = data;
  }
}
/** A 'close' event. */
export class CloseEvent extends WsEvent {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(code: number, reason: string, wasClean: boolean, target: WebSocket) {
    super('close', target);
    this.code = code;
    this.reason = reason;
    this.wasClean = wasClean;
  }
}
/** An 'error' event. */
export class ErrorEvent extends WsEvent {
  readonly error: Error;
  readonly message: string;
  constructor(error: Error, target: WebSocket) {
    super('error', target);
    this.error = error;
    this.message = error.message;
  }
}

type EventHandler = ((event: WsEvent) => void) | { handleEvent(event: WsEvent): void };
const kListener = Symbol('netloop/ws listener');
type Wrapped = ((...args: unknown[]) => void) & { [kListener]?: EventHandler; onProperty?: boolean };

/** A response head as ws's 'upgrade' and 'unexpected-response' events give it (no body: see README). */
export interface ResponseInfo {
  statusCode: number;
  statusMessage: string;
  /** Lower-case names; repeated headers joined with ", " (set-cookie: an array). */
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
}

function responseInfo(head: ResponseHead): ResponseInfo {
  const headers: Record<string, string | string[]> = {};
  const rawHeaders: string[] = [];
  for (const [name, value] of head.headers) {
    rawHeaders.push(name, value);
    const prev = headers[name];
    if (name === 'set-cookie') headers[name] = [...((prev as string[] | undefined) ?? []), value];
    else headers[name] = prev === undefined ? value : `${prev as string}, ${value}`;
  }
  return { statusCode: head.status, statusMessage: head.reason, headers, rawHeaders };
}

/** ws's client options netloop honours (see WebSocket's constructor). */
export interface ClientOptions {
  headers?: Record<string, string>;
  origin?: string;
  handshakeTimeout?: number;
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  maxPayload?: number;
  autoPong?: boolean;
  protocolVersion?: 13;
  followRedirects?: false;
  /** Accepted: netloop always validates UTF-8 (RFC 6455 §8.1), so true changes nothing. */
  skipUTF8Validation?: boolean;
  /** Accepted: netloop emits events synchronously, in the engine's batch, as ws does by default. */
  allowSynchronousEvents?: boolean;
  /** netloop: the Engine to dial from (its I/O mode); default a shared client engine. */
  engine?: Engine;
  /** How long our close frame waits for the peer's (ms). Default 5000 (netloop's; ws: 30000). */
  closeTimeout?: number;
  maxBufferedChunks?: number;
  maxFragments?: number;
  maxPendingAutoPongs?: number;
}

/**
 * ws's counts of buffered chunks, fragments and unanswered pings: accepted,
 * and netloop's own bounds apply instead (fragments and partial messages
 * bounded by bytes: maxPayload and the engine's memoryBudget; pongs written
 * through the same bounded write queue).
 */
const WS_COUNT_LIMITS = ['maxBufferedChunks', 'maxFragments', 'maxPendingAutoPongs'];

const CLIENT_OPTIONS = new Set([
  'headers', 'origin', 'handshakeTimeout', 'perMessageDeflate', 'maxPayload', 'autoPong', 'protocolVersion', 'followRedirects',
  'skipUTF8Validation', 'allowSynchronousEvents', 'engine', 'closeTimeout', ...WS_COUNT_LIMITS,
]);

type SendCallback = (err?: Error) => void;

/**
 * One WebSocket connection with ws's API, server side (from a
 * WebSocketServer) or client side (`new WebSocket(url, protocols, options)`,
 * dialed by netloop's dial()).
 */
export class WebSocket extends EventEmitter {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;

  /** How binary messages are delivered; text comes as a Buffer ('message') or a string (onmessage, addEventListener). */
  binaryType: BinaryType = 'nodebuffer';
  #conn: WebSocketConn<WebSocket> | null = null;
  #state: number = CONNECTING;
  #url = '';
  #protocol = '';
  #autoPong = true;
  /** A message being sent in fragments (send with fin false): its type. */
  #fragmentType: MessageType | null = null;
  /** Send callbacks waiting for their bytes to leave (see #flushed). */
  #callbacks: SendCallback[] = [];
  #checkScheduled = false;
  /** @internal Server side: what to do once the connection opened (the server's callback). */
  _onOpen: (() => void) | undefined = undefined;

  /**
   * Client: dials `address` (ws:// or http://; wss:// is not supported by
   * netloop's client). Server side instances are made by WebSocketServer
   * (address null).
   */
  constructor(address: string | URL | null, protocols?: string | string[] | ClientOptions, options?: ClientOptions) {
    super();
    if (address === null) return;
    if (protocols !== undefined && !Array.isArray(protocols) && typeof protocols === 'object') {
      options = protocols;
      protocols = undefined;
    }
    this.#dial(address, protocols === undefined ? [] : typeof protocols === 'string' ? [protocols] : protocols, options ?? {});
  }

  /** One of CONNECTING, OPEN, CLOSING, CLOSED. */
  get readyState(): number {
    return this.#state;
  }
  /** The subprotocol agreed, '' when none. */
  get protocol(): string {
    return this.#protocol;
  }
  /** The extensions agreed: 'permessage-deflate' or ''. */
  get extensions(): string {
    return this.#conn !== null && this.#conn._pmd !== null ? 'permessage-deflate' : '';
  }
  /** Client side: the URL dialed; '' on the server side. */
  get url(): string {
    return this.#url;
  }
  /** Bytes written and not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.#conn?.bufferedAmount ?? 0;
  }
  /** netloop: the connection underneath (null while connecting). */
  get netloopConn(): WebSocketConn<WebSocket> | null {
    return this.#conn;
  }

  /**
   * Sends a message. `binary` defaults to "data is not a string"; `compress`
   * false sends it uncompressed; `fin` false starts or continues a
   * fragmented message. `cb` is called once the bytes were taken by the
   * kernel, or with the error that prevented it.
   */
  send(data: unknown, options?: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean } | SendCallback, cb?: SendCallback): void {
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    const o = options ?? {};
    if (this.#state === CONNECTING) throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    if (typeof data === 'number') data = String(data);
    const payload = toPayload(data);
    if (this.#state !== OPEN || this.#conn === null || this.#conn.closed) {
      this.#notOpen(cb);
      return;
    }
    const type: MessageType = this.#fragmentType ?? ((o.binary ?? typeof payload !== 'string') ? 'binary' : 'text');
    const fin = o.fin ?? true;
    try {
      if (!fin || this.#fragmentType !== null) {
        this.#conn.writeFrame(type, payload, fin); // fragments go out uncompressed (writeFrame)
        this.#fragmentType = fin ? null : type;
      } else if (o.compress === false) {
        this.#conn.writeFrame(type, payload, true); // one whole frame, never compressed
      } else {
        this.#conn.writeMessage(type, payload);
      }
    } catch (err) {
      if (cb === undefined) throw err;
      process.nextTick(cb, err as Error);
      return;
    }
    if (cb !== undefined) this.#afterWrite(cb);
  }

  /** Sends a ping (at most 125 bytes). `mask` is netloop's to decide (clients mask). */
  ping(data?: unknown, mask?: boolean | SendCallback, cb?: SendCallback): void {
    this.#control('ping', data, mask, cb);
  }

  /** Sends a pong (at most 125 bytes). */
  pong(data?: unknown, mask?: boolean | SendCallback, cb?: SendCallback): void {
    this.#control('pong', data, mask, cb);
  }

  /**
   * Starts the closing handshake: a close frame with `code` and `reason`
   * (none with no code), then the peer's answer is awaited (the close
   * timeout). While connecting: the handshake is abandoned ('error', then
   * 'close' 1006).
   */
  close(code?: number, reason?: string | Buffer): void {
    if (this.#state === CLOSED) return;
    if (this.#state === CONNECTING) {
      this.#abort('WebSocket was closed before the connection was established');
      return;
    }
    if (code !== undefined && (typeof code !== 'number' || !isValidCloseCode(code))) throw new TypeError('First argument must be a valid error code number');
    const text = reason === undefined ? '' : Buffer.isBuffer(reason) ? reason.toString() : String(reason);
    if (Buffer.byteLength(text) > 123) throw new RangeError('The message must not be greater than 123 bytes');
    this.#state = CLOSING;
    // ws sends an empty close frame when there is no code; 1005 asks netloop for the same.
    this.#conn?.writeClose(code ?? CloseCode.NoStatus, code === undefined ? '' : text);
  }

  /** Closes the connection now, without a close frame: queued bytes dropped (netloop's closeAndClean, RST). */
  terminate(): void {
    if (this.#state === CLOSED) return;
    if (this.#state === CONNECTING) {
      this.#abort('WebSocket was closed before the connection was established');
      return;
    }
    this.#state = CLOSING;
    this.#conn?.closeAndClean(null);
  }

  // --- the browser-style listeners ------------------------------------------

  /** Adds a listener that receives event objects (MessageEvent, CloseEvent, ErrorEvent, WsEvent). */
  addEventListener(type: string, handler: EventHandler, options: { once?: boolean } = {}): void {
    if (typeof handler !== 'function' && (handler === null || typeof handler !== 'object' || typeof handler.handleEvent !== 'function')) return;
    for (const l of this.listeners(type) as Wrapped[]) if (l[kListener] === handler && !l.onProperty) return; // added once, as EventTarget does
    const wrapped = this.#wrap(type, handler);
    if (options.once === true) this.once(type, wrapped);
    else this.on(type, wrapped);
  }

  /** Removes a listener added with addEventListener. */
  removeEventListener(type: string, handler: EventHandler): void {
    for (const l of this.listeners(type) as Wrapped[]) {
      if (l[kListener] === handler && !l.onProperty) {
        this.removeListener(type, l);
        return;
      }
    }
  }

  #wrap(type: string, handler: EventHandler): Wrapped {
    const call = (event: WsEvent): void => {
      if (typeof handler === 'function') handler.call(this, event);
      else handler.handleEvent(event);
    };
    let wrapped: Wrapped;
    switch (type) {
      case 'message':
        wrapped = (data: unknown, isBinary: unknown) => call(new MessageEvent(isBinary ? (data as Data) : String(data), this));
        break;
      case 'close':
        wrapped = (code: unknown, reason: unknown) => call(new CloseEvent(code as number, String(reason), code !== CloseCode.Abnormal, this));
        break;
      case 'error':
        wrapped = (err: unknown) => call(new ErrorEvent(err as Error, this));
        break;
      default:
        wrapped = () => call(new WsEvent(type, this));
    }
    wrapped[kListener] = handler;
    return wrapped;
  }

  #getOn(type: string): EventHandler | null {
    for (const l of this.listeners(type) as Wrapped[]) if (l.onProperty) return l[kListener]!;
    return null;
  }

  #setOn(type: string, handler: EventHandler | null): void {
    for (const l of this.listeners(type) as Wrapped[]) if (l.onProperty) this.removeListener(type, l);
    if (typeof handler !== 'function') return;
    const wrapped = this.#wrap(type, handler);
    wrapped.onProperty = true;
    this.on(type, wrapped);
  }

  declare onopen: EventHandler | null;
  declare onmessage: EventHandler | null;
  declare onclose: EventHandler | null;
  declare onerror: EventHandler | null;

  static {
    // onopen, onmessage, onclose, onerror: one listener each, set or replaced by assignment.
    for (const type of ['open', 'message', 'close', 'error']) {
      Object.defineProperty(this.prototype, `on${type}`, {
        get(this: WebSocket) {
          return this.#getOn(type);
        },
        set(this: WebSocket, handler: EventHandler | null) {
          this.#setOn(type, handler);
        },
        enumerable: true,
        configurable: true,
      });
    }
  }

  // --- events from the connection (server handlers or dial's) ---------------

  /** @internal Server side, in the upgrade hook: what was agreed, before the connection exists. */
  _prepare(protocol: string, autoPong: boolean): void {
    this.#protocol = protocol;
    this.#autoPong = autoPong;
  }

  /** @internal The connection is open: from the server's onOpen, or dial()'s. */
  _open(conn: WebSocketConn<WebSocket>): void {
    this.#conn = conn;
    this.#state = OPEN;
  }

  /** @internal */
  _message(type: MessageType, data: Buffer): void {
    // As in ws, binaryType shapes binary messages; text always comes as a Buffer.
    if (type === 'binary') this.emit('message', this.#convert(data), true);
    else this.emit('message', data, false);
  }

  /** @internal The peer's ping: answered first (autoPong), then reported. */
  _ping(data: Buffer): void {
    if (this.#autoPong && this.#conn !== null && !this.#conn.closed) this.#conn.pong(data);
    this.emit('ping', data);
  }

  /** @internal */
  _pong(data: Buffer): void {
    this.emit('pong', data);
  }

  /** @internal The peer's close frame: CLOSING until the TCP connection is gone. */
  _closeFrame(): void {
    if (this.#state === OPEN) this.#state = CLOSING;
  }

  /** @internal The send callbacks' bytes left (the connection's write queue drained). */
  _drain(): void {
    this.#flushed();
  }

  /**
   * @internal The connection closed (closeInfo final). ws's 'error' goes
   * before 'close' for what ws reports as an error: a protocol violation by
   * the peer (and netloop's own message timeout and memory budget, which ws
   * lacks); a reset or FIN without close frame is only a 1006 close.
   */
  _closed(c: ClosedWebSocketConn<WebSocket>, err: Error | null): void {
    this.#state = CLOSED;
    const pending = this.#callbacks;
    this.#callbacks = [];
    // A clean close means the peer read everything up to its close frame; otherwise nobody knows.
    for (const cb of pending) cb(err === null ? undefined : new Error('The socket was closed before the data was sent'));
    if (err instanceof ProtocolError || err instanceof BudgetError || (err instanceof TimeoutError && err.kind === 'message')) this.emit('error', err);
    this.emit('close', c.closeInfo.code, Buffer.from(c.closeInfo.reason));
  }

  #convert(data: Buffer): Data {
    switch (this.binaryType) {
      case 'arraybuffer':
        return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
      case 'fragments':
        return [data]; // netloop joins fragments: one piece
      case 'blob':
        return new Blob([data as Uint8Array<ArrayBuffer>]);
      default:
        return data;
    }
  }

  #control(what: 'ping' | 'pong', data: unknown, mask: boolean | SendCallback | undefined, cb: SendCallback | undefined): void {
    if (typeof data === 'function') {
      cb = data as SendCallback;
      data = undefined;
    } else if (typeof mask === 'function') cb = mask;
    if (this.#state === CONNECTING) throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    if (typeof data === 'number') data = String(data);
    const payload = data === undefined ? '' : toPayload(data);
    if (this.#state !== OPEN || this.#conn === null || this.#conn.closed) {
      this.#notOpen(cb);
      return;
    }
    if (what === 'ping') this.#conn.ping(payload);
    else this.#conn.pong(payload);
    if (cb !== undefined) this.#afterWrite(cb);
  }

  #notOpen(cb: SendCallback | undefined): void {
    // As ws: writing after the close is no exception, only the callback hears of it.
    if (cb !== undefined) process.nextTick(cb, new Error(`WebSocket is not open: readyState ${this.#state} (${STATE_NAMES[this.#state]})`));
  }

  // A callback waits until the kernel took everything written before it:
  // checked once writes made in this turn were flushed (netloop corks them
  // until the end of the engine's batch), then at each drain.
  #afterWrite(cb: SendCallback): void {
    this.#callbacks.push(cb);
    if (this.#checkScheduled) return;
    this.#checkScheduled = true;
    setImmediate(() => {
      this.#checkScheduled = false;
      if (this.bufferedAmount === 0) this.#flushed();
    });
  }

  #flushed(): void {
    if (this.#callbacks.length === 0) return;
    const done = this.#callbacks;
    this.#callbacks = [];
    for (const cb of done) cb();
  }

  // --- the client side -------------------------------------------------------

  #aborted = false;

  #abort(message: string): void {
    this.#aborted = true;
    this.#state = CLOSING;
    process.nextTick(() => {
      this.#state = CLOSED;
      this.emit('error', new Error(message));
      setImmediate(() => this.emit('close', CloseCode.Abnormal, Buffer.alloc(0))); // after what 'error' listeners awaited
    });
  }

  #dial(address: string | URL, protocols: string[], options: ClientOptions): void {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    refuseOptions('new WebSocket()', options, CLIENT_OPTIONS);
    if (options.protocolVersion !== undefined && options.protocolVersion !== 13) throw new RangeError(`Unsupported protocol version: ${String(options.protocolVersion)} (supported versions: 13)`);
    if ((options.followRedirects as boolean | undefined) === true) throw new TypeError('new WebSocket(): followRedirects is not supported by netloop/ws');
    const url = new URL(String(address)); // throws on an invalid URL, as ws does
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol !== 'ws:') throw new SyntaxError(`The URL's protocol must be "ws:" or "http:" here, got "${url.protocol}" (netloop's client has no TLS)`);
    if (url.hash !== '') throw new SyntaxError('The URL contains a fragment identifier');
    if (new Set(protocols).size !== protocols.length) throw new SyntaxError('An invalid or duplicated subprotocol was specified');
    this.#url = url.href;
    this.#autoPong = options.autoPong ?? true;
    const headers: Record<string, string> = { ...options.headers };
    if (options.origin !== undefined) headers['Origin'] = options.origin;
    const dialOptions: DialOptions<WebSocket> = {
      subprotocols: protocols,
      compression: compressionOf(options.perMessageDeflate, true), // ws's client offers permessage-deflate by default
      headers,
      messageLengthLimit: options.maxPayload ?? WS_MAX_PAYLOAD,
      ...(options.handshakeTimeout !== undefined ? { handshakeTimeout: options.handshakeTimeout } : {}),
      ...(options.closeTimeout !== undefined ? { closeTimeout: options.closeTimeout } : {}),
      ...(options.engine !== undefined ? { engine: options.engine } : {}),
      onOpen: (c, response) => {
        if (this.#aborted) {
          c.closeAndClean(null);
          return;
        }
        this.#protocol = c.subprotocol;
        this._open(c);
        this.emit('upgrade', responseInfo(response));
        this.emit('open');
      },
      onMessage: (_c, type, data) => this._message(type, data),
      pingHandler: (_c, data) => this._ping(data),
      pongHandler: (_c, data) => this._pong(data),
      closeHandler: () => this._closeFrame(),
      onDrain: () => this._drain(),
      onClose: (c, err) => {
        if (!this.#aborted) this._closed(c, err);
      },
    };
    dial(url.href, dialOptions).catch((err: Error) => {
      if (this.#aborted) return;
      this.#state = CLOSED;
      if (err instanceof HandshakeError && err.response !== undefined && err.status !== 101 && this.listenerCount('unexpected-response') > 0) {
        // No ClientRequest exists (netloop writes the request itself): the request is described.
        this.emit('unexpected-response', { method: 'GET', path: url.pathname + url.search, headers }, responseInfo(err.response));
      } else {
        this.emit('error', err);
      }
      // A tick later, as ws does: listeners added on 'error' hear the close.
      setImmediate(() => this.emit('close', CloseCode.Abnormal, Buffer.alloc(0))); // after what 'error' listeners awaited
    });
  }
}

for (const [i, name] of STATE_NAMES.entries()) Object.defineProperty(WebSocket.prototype, name, { value: i, enumerable: true });

function toPayload(data: unknown): Buffer | string {
  if (typeof data === 'string') return data;
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data) && data.every((d) => Buffer.isBuffer(d))) return Buffer.concat(data as Buffer[]);
  throw new TypeError('The data must be a string, a Buffer, an ArrayBuffer, a typed array or a number');
}

// ---------------------------------------------------------------------------
// The server

/** ws's verifyClient info. */
export interface VerifyClientInfo {
  origin: string | undefined;
  secure: boolean;
  req: IncomingMessage;
}
type VerifyClientSync = (info: VerifyClientInfo) => boolean;
type VerifyClientAsync = (info: VerifyClientInfo, cb: (result: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => void;

/** Options of new WebSocketServer(): ws's, plus `netloop` for the engine underneath. */
export interface ServerOptions {
  port?: number;
  host?: string;
  backlog?: number;
  server?: http.Server;
  noServer?: boolean;
  path?: string;
  verifyClient?: VerifyClientSync | VerifyClientAsync;
  handleProtocols?: (protocols: Set<string>, req: IncomingMessage) => string | false;
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  maxPayload?: number;
  clientTracking?: boolean;
  autoPong?: boolean;
  /** Accepted: netloop always validates UTF-8. */
  skipUTF8Validation?: boolean;
  /** Accepted: events are synchronous, as ws's default. */
  allowSynchronousEvents?: boolean;
  /** How long our close frame waits for the peer's (ms). Default 5000 (netloop's; ws: 30000). */
  closeTimeout?: number;
  maxBufferedChunks?: number;
  maxFragments?: number;
  maxPendingAutoPongs?: number;
  /**
   * netloop: the Engine's options (ioMode, maxBlockingOnline, limits...) and
   * the Upgrader's timeouts. keepaliveTime defaults to 0 here (ws sends no
   * pings of its own and never drops a silent connection).
   */
  netloop?: {
    engine?: Omit<EngineOptions, 'upgrader' | 'addrs' | 'onOpen' | 'onData' | 'onClose' | 'onDrain' | 'workers' | 'supervisor'>;
    upgrader?: Pick<UpgraderOptions, 'keepaliveTime' | 'messageTimeout' | 'handshakeTimeout' | 'closeTimeout' | 'maxHeadSize' | 'maxHeaders' | 'maxLoad'>;
  };
}

const SERVER_OPTIONS = new Set([
  'port', 'host', 'backlog', 'server', 'noServer', 'path', 'verifyClient', 'handleProtocols', 'perMessageDeflate', 'maxPayload', 'clientTracking',
  'autoPong', 'skipUTF8Validation', 'allowSynchronousEvents', 'closeTimeout', 'netloop', ...WS_COUNT_LIMITS,
]);

const RUNNING = 0;
const SERVER_CLOSING = 1;
const SERVER_CLOSED = 2;

/** ws's WebSocketServer over one netloop Engine and Upgrader. */
export class WebSocketServer extends EventEmitter {
  readonly options: ServerOptions;
  /** The connected clients (clientTracking, default true); undefined without tracking, as in ws. */
  readonly clients: Set<WebSocket> | undefined;
  readonly #engine: Engine;
  readonly #upgrader: Upgrader<WebSocket>;
  readonly #ready: Promise<void>;
  /** Every open connection, tracked or not: the engine stops when the server closed and this is empty. */
  readonly #live = new Set<WebSocket>();
  #server: http.Server | null = null;
  #removeListeners: (() => void) | null = null;
  #state = RUNNING;
  #emitCloseWhenEmpty = false;

  constructor(options: ServerOptions, callback?: () => void) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError('new WebSocketServer(options): options must be an object');
    refuseOptions('new WebSocketServer()', options, SERVER_OPTIONS);
    const modes = Number(options.port !== undefined && options.port !== null) + Number(options.server !== undefined) + Number(options.noServer === true);
    if (modes !== 1) throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified');
    this.options = { ...options };
    this.clients = options.clientTracking === false ? undefined : new Set();
    const autoPong = options.autoPong ?? true;
    // No path, no subprotocols: shouldHandle() and handleProtocols (through
    // the hook) decide them as ws does; the engine keeps the protocol checks.
    this.#upgrader = new Upgrader<WebSocket>({
      keepaliveTime: 0,
      ...(options.closeTimeout !== undefined ? { closeTimeout: options.closeTimeout } : {}),
      ...options.netloop?.upgrader,
      messageLengthLimit: options.maxPayload ?? WS_MAX_PAYLOAD,
      compression: compressionOf(options.perMessageDeflate, false),
      onUpgrade: (req) => this.#decide(req, autoPong),
    });
    const u = this.#upgrader;
    u.onOpen((c) => {
      const ws = c.session!;
      ws._open(c);
      this.#live.add(ws);
      ws._onOpen?.();
      ws._onOpen = undefined;
    });
    u.onMessage((c, type, data) => c.session!._message(type, data));
    u.setPingHandler((c, data) => c.session!._ping(data));
    u.setPongHandler((c, data) => c.session!._pong(data));
    u.setCloseHandler((c) => c.session!._closeFrame());
    u.onDrain((c) => c.session!._drain());
    u.onClose((c, err) => {
      const ws = c.session!;
      this.#live.delete(ws);
      ws._closed(c, err);
      if (this.clients?.delete(ws) === true && this.#emitCloseWhenEmpty && this.clients.size === 0) {
        this.#emitCloseWhenEmpty = false;
        process.nextTick(() => this.#emitClose());
      }
      if (this.#state !== RUNNING) this.#stopWhenIdle();
    });
    this.#engine = new Engine({ ...options.netloop?.engine, ref: false, upgrader: this.#upgrader });
    this.#ready = this.#engine.start();
    this.#ready.catch((err: unknown) => this.emit('error', err));

    if (options.port !== undefined && options.port !== null) {
      // An http.Server of our own, not the engine's listener: every ws API
      // that hands out `req` (verifyClient, handleProtocols, shouldHandle,
      // 'headers', 'connection') then gets Node's IncomingMessage, and a
      // request that is not an upgrade gets ws's 426 from Node's parser.
      // Node parses only the handshake; the connection is then the engine's.
      const server = http.createServer((_req, res) => {
        const body = http.STATUS_CODES[426]!;
        res.writeHead(426, { 'Content-Length': body.length, 'Content-Type': 'text/plain' });
        res.end(body);
      });
      server.listen(options.port, options.host, options.backlog, callback);
      this.#server = server;
    } else if (options.server !== undefined) {
      this.#server = options.server;
    }
    if (this.#server !== null) {
      const server = this.#server;
      const onListening = (): void => void this.emit('listening');
      const onError = (err: Error): void => void this.emit('error', err);
      const onUpgrade = (req: IncomingMessage, socket: DuplexType, head: Buffer): void => {
        this.handleUpgrade(req, socket, head, (ws) => this.emit('connection', ws, req));
      };
      server.on('listening', onListening);
      server.on('error', onError);
      server.on('upgrade', onUpgrade);
      this.#removeListeners = () => {
        server.off('listening', onListening);
        server.off('error', onError);
        server.off('upgrade', onUpgrade);
      };
    }
  }

  /** The engine underneath (its stats, its I/O mode). */
  get netloopEngine(): Engine {
    return this.#engine;
  }

  /** The bound address of the http server (`port` or `server`); throws in noServer mode. */
  address(): ReturnType<http.Server['address']> {
    if (this.options.noServer === true) throw new Error('The server is operating in "noServer" mode');
    return this.#server?.address() ?? null;
  }

  /** ws's path check: a request whose pathname is not `path` is answered 400. Overridable. */
  shouldHandle(req: IncomingMessage): boolean {
    if (this.options.path === undefined) return true;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    return (q >= 0 ? url.slice(0, q) : url) === this.options.path;
  }

  /**
   * Takes the upgrade over from Node (the server's 'upgrade' event): checks,
   * verifyClient, handleProtocols and 'headers' run, the socket's descriptor
   * moves into the engine, and `cb(ws, req)` is called before any message
   * of the connection is delivered.
   */
  handleUpgrade(req: IncomingMessage, socket: DuplexType, head: Buffer, cb: (ws: WebSocket, req: IncomingMessage) => void): void {
    socket.on('error', onSocketError);
    if (this.#state !== RUNNING || !this.shouldHandle(req)) {
      abortOnSocket(socket, this.#state !== RUNNING ? 503 : 400);
      return;
    }
    const ws = new WebSocket(null);
    ws._onOpen = () => {
      socket.off('error', onSocketError);
      if (this.clients !== undefined) this.clients.add(ws);
      cb(ws, req);
    };
    pendingSockets.set(req, ws);
    this.#ready
      .then(() => this.#upgrader.handleUpgrade(req, socket, head))
      .catch((err: unknown) => {
        socket.destroy();
        process.nextTick(() => {
          throw err;
        });
      })
      .finally(() => pendingSockets.delete(req));
  }

  /**
   * Stops taking connections; existing ones stay open (ws 8). 'close' is
   * emitted once the http server closed (`port`) or, with clientTracking,
   * once the last client is gone. The engine stops with the last connection.
   */
  close(cb?: (err?: Error) => void): void {
    if (this.#state === SERVER_CLOSED) {
      if (cb !== undefined) this.once('close', () => cb(new Error('The server is not running')));
      process.nextTick(() => this.#emitClose());
      return;
    }
    if (cb !== undefined) this.once('close', cb);
    if (this.#state === SERVER_CLOSING) return;
    this.#state = SERVER_CLOSING;
    this.#removeListeners?.();
    this.#removeListeners = null;
    if (this.options.port !== undefined && this.options.port !== null) {
      this.#server!.close(() => this.#emitClose());
    } else if (this.clients !== undefined && this.clients.size > 0) {
      this.#emitCloseWhenEmpty = true;
    } else {
      process.nextTick(() => this.#emitClose());
    }
    this.#server = null;
    this.#stopWhenIdle();
  }

  #emitClose(): void {
    this.#state = SERVER_CLOSED;
    this.emit('close');
  }

  #stopWhenIdle(): void {
    if (this.#live.size > 0) return;
    this.#ready.then(() => this.#engine.stop()).catch((err: unknown) => this.emit('error', err));
  }

  // The upgrade hook: verifyClient, handleProtocols and 'headers', in ws's order.
  async #decide(req: UpgradeRequest, autoPong: boolean): Promise<UpgradeAnswer<WebSocket>> {
    const nodeReq = req.nodeRequest!;
    const ws = pendingSockets.get(nodeReq)!;
    const verify = this.options.verifyClient;
    if (verify !== undefined) {
      const info: VerifyClientInfo = {
        origin: nodeReq.headers[nodeReq.headers['sec-websocket-version'] === '8' ? 'sec-websocket-origin' : 'origin'] as string | undefined,
        secure: Boolean((nodeReq.socket as { authorized?: boolean; encrypted?: boolean }).authorized || (nodeReq.socket as { encrypted?: boolean }).encrypted),
        req: nodeReq,
      };
      const verdict =
        verify.length === 2
          ? await new Promise<{ ok: boolean; code?: number; message?: string; headers?: Record<string, string> }>((resolve) =>
              (verify as VerifyClientAsync)(info, (ok, code, message, headers) => resolve({ ok, code, message, headers })),
            )
          : { ok: (verify as VerifyClientSync)(info) };
      if (!verdict.ok) {
        const status = verdict.code ?? 401;
        return { accept: false, status, headers: verdict.headers ?? {}, body: verdict.message ?? http.STATUS_CODES[status] ?? '' };
      }
    }
    const offered = new Set((nodeReq.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== ''));
    let protocol = '';
    if (offered.size > 0) {
      const chosen = this.options.handleProtocols !== undefined ? this.options.handleProtocols(offered, nodeReq) : offered.values().next().value;
      if (typeof chosen === 'string' && chosen !== '') protocol = chosen;
    }
    // ws's 'headers' event: the 101's lines, which listeners may append to.
    const lines = req.responseHead.split('\r\n').slice(0, -2);
    if (protocol !== '') lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
    const ours = lines.length;
    this.emit('headers', lines, nodeReq);
    const extra: Array<[string, string]> = protocol !== '' ? [['Sec-WebSocket-Protocol', protocol]] : [];
    for (const line of lines.slice(ours)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new TypeError(`a 'headers' listener added "${line}", which is not a header line`);
      extra.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
    }
    ws._prepare(protocol, autoPong);
    return { accept: true, session: ws, headers: extra };
  }
}

// The request handleUpgrade() is taking over -> its WebSocket, for the hook.
const pendingSockets = new WeakMap<IncomingMessage, WebSocket>();

function onSocketError(this: DuplexType): void {
  this.destroy();
}

/** ws's answer to an upgrade it will not take: status, text body, then the socket closed. */
function abortOnSocket(socket: DuplexType, status: number): void {
  const body = http.STATUS_CODES[status] ?? '';
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${body}\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * ws's createWebSocketStream(): a Duplex over a WebSocket; what is written
 * is sent as messages, what arrives is read. netloop has no per-connection
 * read pause, so the readable side does not push back on the peer (the
 * engine's memory budget bounds what it can hold).
 */
export function createWebSocketStream(ws: WebSocket, options: ConstructorParameters<typeof Duplex>[0] = {}): Duplex {
  const duplex = new Duplex({ ...options, autoDestroy: false, emitClose: false, objectMode: false, writableObjectMode: false });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    duplex.push(!isBinary && duplex.readableObjectMode ? data.toString() : data);
  });
  ws.once('error', (err: Error) => {
    if (!duplex.destroyed) duplex.destroy(err);
  });
  ws.once('close', () => {
    if (!duplex.destroyed) duplex.push(null);
  });
  duplex._read = () => {};
  duplex._write = (chunk: Buffer, _enc, callback) => {
    if (ws.readyState === CONNECTING) {
      ws.once('open', () => duplex._write(chunk, _enc, callback));
      return;
    }
    ws.send(chunk, callback);
  };
  duplex._final = (callback) => {
    if (ws.readyState === CONNECTING) {
      ws.once('open', () => duplex._final!(callback));
      return;
    }
    if (ws.readyState === CLOSED) {
      callback();
      return;
    }
    ws.once('close', () => callback());
    ws.close();
  };
  duplex._destroy = (err, callback) => {
    if (ws.readyState === CLOSED) {
      callback(err);
      process.nextTick(() => duplex.emit('close'));
      return;
    }
    ws.once('close', () => {
      callback(err);
      process.nextTick(() => duplex.emit('close'));
    });
    ws.terminate();
  };
  return duplex;
}

// ws's default export is the WebSocket class carrying the rest (require('ws').Server).
const statics = { Server: WebSocketServer, WebSocketServer, WebSocket, createWebSocketStream };
Object.assign(WebSocket, statics);

export { WebSocketServer as Server };
export default WebSocket as typeof WebSocket & typeof statics;
