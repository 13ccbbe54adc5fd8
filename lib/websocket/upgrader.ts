// Upgrader: the nbio-style server API. Given to an Engine ({ upgrader }), it
// takes over every accepted connection: reads the HTTP/1.1 request head,
// answers plain HTTP or upgrades to WebSocket, then parses frames and calls
// the user's handlers.
//
// Per connection it keeps as little as it can: no parser object until bytes
// arrive, no timers (deadlines are the engine's), and the receiver's
// handlers are one shared object per upgrader that is pointed at the
// connection being parsed (Receiver.push() is synchronous and not re-entrant).
import { Buffer } from 'node:buffer';
import type { Conn, ConnProtocol } from '../conn.js';
import type { Engine, EngineUpgrader } from '../engine.js';
import { HttpError, TimeoutError, type BudgetError, type ProtocolError } from '../errors.js';
import { checkKnownOptions, checkPathOption, compressionOption, intOption, msOption, stringsOption } from '../options.js';
import { RequestParser, type RequestHead } from '../http/request-parser.js';
import { httpResponse, responseHeadText, type HeaderList } from '../http/response.js';
import { checkUpgrade, isWebSocketUpgrade, rejectionResponse, type UpgradeAccepted, type UpgradeOptions, type UpgradeResult } from '../http/upgrade.js';
import { refuseOnNodeSocket, requestHeadOf } from '../adopt.js';
import { formatAddress } from '../address.js';
import { checkAnswer, upgradeRequest, type UpgradeAnswer, type UpgradeHook, type UpgradeRequest } from './upgrade-hook.js';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCode } from './close.js';
import { WebSocketConn, clock32, failForHandler, type ClosedWebSocketConn, type WsRoute } from './conn.js';
import type { MessageType } from './opcodes.js';
import { DEFAULT_MAX_MESSAGE_LENGTH, Receiver, type ReceiverHandlers } from './receiver.js';
import { TopicHub, publishArgs, pubsubOption, topicsOption, type TopicsOptions } from '../topics/hub.js';
import type { PubSubAdapter } from '../pubsub/adapter.js';
import { fanOutFrames } from './topics.js';
import { PerMessageDeflate, deflateUpgradeHook, inflationLimit, maxCompressedConnections, type DeflateOptions, type ServerNegotiation } from './deflate.js';

// Distinct (path, subprotocol) pairs whose route object connections share:
// more are possible (a path pattern, a client choosing paths), each then
// costs its connection one small object.
const MAX_SHARED_ROUTES = 256;
// Longer paths (a query string with a token, say) are not worth keeping.
const MAX_SHARED_ROUTE_KEY = 256;

/** A plain HTTP answer for a request that is not a WebSocket upgrade. */
export interface HttpAnswer {
  /** The HTTP status. */
  status: number;
  /** Response headers, [name, value] pairs (Content-Length and Connection are set by netloop). */
  headers?: HeaderList;
  /** The body; a string is sent as UTF-8. */
  body?: string | Uint8Array;
}

/** Options of new Upgrader(): the handshake, the limits, compression. */
// S defaults to `any` so that options written without a session type (a
// const annotated UpgraderOptions) still fit an Upgrader<Session>; give S to
// have onUpgrade's session checked.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface UpgraderOptions<S = any> {
  /** Paths that upgrade (the query removed): one, a list, a RegExp or a predicate; others get 404. Default: any path. */
  path?: UpgradeOptions['path'];
  /** Subprotocols spoken, in order of preference. */
  subprotocols?: readonly string[];
  /** Decides whether a page from `origin` may connect. false: 403. Default: every origin. */
  checkOrigin?: (origin: string | undefined, head: RequestHead) => boolean;
  /** Bytes a message may have, after inflation; past it: close 1009. 0 = no limit. Default 16 MiB. */
  messageLengthLimit?: number;
  /** A connection silent for this long (ms) is closed (TimeoutError "read timeout"); pings go out at half of it. 0 disables. Default 120000. */
  keepaliveTime?: number;
  /**
   * A message (or frame) that started arriving must have arrived whole
   * within this many ms; otherwise close 1008 and onClose gets TimeoutError
   * "message timeout". Bounds what a peer sending a byte now and then can
   * hold (keepalive alone would not: every byte counts as activity). Checked
   * every second or so. 0 disables. Default 60000.
   */
  messageTimeout?: number;
  /** The request head must arrive within this many ms. Default 10000. */
  handshakeTimeout?: number;
  /** After sending a close frame, the peer's answer is awaited this long (ms). Default 5000. */
  closeTimeout?: number;
  /** Bytes a request head may have (431 past them). Default 8 KiB. */
  maxHeadSize?: number;
  /** Header lines a request head may have (431 past them). Default 40. */
  maxHeaders?: number;
  /** Online connections past which new ones get 503 before their handshake. Default 1,000,000. */
  maxLoad?: number;
  /**
   * permessage-deflate (RFC 7692): true for the defaults, or its options
   * (context takeover, window bits, threshold, level). Default false. zlib
   * state is created for a connection only when it first sends or receives a
   * compressed message, and freed when it closes. At most
   * `maxCompressedConnections` open connections have compression (default
   * 4,096); later ones are upgraded without it. Compression work is bounded
   * per loop turn (see deflate-work.ts).
   */
  compression?: boolean | DeflateOptions;
  /** Extra headers on every 101 response. */
  headers?: Readonly<Record<string, string>>;
  /** Answers requests that are not WebSocket upgrades; without it they get 404 (or 400 for a broken upgrade). */
  httpHandler?: (head: RequestHead, conn: Conn) => HttpAnswer;
  /**
   * The application's say on each upgrade that passed the protocol checks,
   * with the whole request (path, query, headers, cookies, peer address):
   * answer { accept: true, session } (the session is `c.session` from onOpen
   * on) or { accept: false, status, headers, body } (401, 403, 429...). May
   * be async: the connection waits, bounded by handshakeTimeout; a client
   * that leaves meanwhile is forgotten. Applies to the engine's listener and
   * to handleUpgrade() alike. A hook that throws gets the client a 500, and
   * the error is rethrown to the process.
   */
  onUpgrade?: UpgradeHook<S>;
  /** Topics (WebSocketConn.subscribe, Upgrader.publish): name limits and the slow-subscriber policy (docs/topics.md). */
  topics?: TopicsOptions;
  /**
   * Carries publishes to other servers: a PubSubAdapter (e.g. on Redis).
   * Default: none; in a worker process of an Engine with `workers`, the
   * primary relays publishes between the workers unless an adapter is given.
   */
  pubsub?: PubSubAdapter;
}

/** onOpen and onDrain handlers. */
export type OpenHandler<S = unknown> = (c: WebSocketConn<S>) => void;
/** onMessage handlers: a whole message, `data` is yours to keep. */
export type MessageHandler<S = unknown> = (c: WebSocketConn<S>, type: MessageType, data: Buffer) => void;
/** onDataFrame handlers: one frame of a message, `fin` on its last. */
export type DataFrameHandler<S = unknown> = (c: WebSocketConn<S>, type: MessageType, fin: boolean, data: Buffer) => void;
/** onClose handlers: the connection is closed and its closeInfo set. */
export type CloseHandler<S = unknown> = (c: ClosedWebSocketConn<S>, err: Error | null) => void;
/** setCloseHandler handlers: the peer's close frame. */
export type CloseFrameHandler<S = unknown> = (c: WebSocketConn<S>, code: number, reason: string) => void;
/** setPingHandler and setPongHandler handlers. */
export type PingHandler<S = unknown> = (c: WebSocketConn<S>, data: Buffer) => void;

/** A connection waiting for the upgrade hook's answer (the #waiting protocol). */
interface HookWait {
  early: Buffer[];
  earlyBytes: number;
  gone: boolean;
}

// Bytes a client may send while the hook decides, before its 101.
const MAX_EARLY_BYTES = 64 * 1024;

/** Reports an error of the application to the process, as an exception in an event handler would be. */
function rethrow(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

// Spare receivers kept for reuse; connections in the middle of a frame hold
// their own, so this only bounds the idle spares.
const RECEIVER_POOL_SIZE = 64;

// Every option's name, checked against UpgraderOptions by the compiler.
const UPGRADER_OPTIONS = {
  path: true, subprotocols: true, checkOrigin: true, messageLengthLimit: true, keepaliveTime: true, messageTimeout: true, handshakeTimeout: true,
  closeTimeout: true, maxHeadSize: true, maxHeaders: true, maxLoad: true, compression: true, headers: true, httpHandler: true,
  onUpgrade: true, topics: true, pubsub: true,
} as const satisfies Record<keyof UpgraderOptions, true>;

const checkCount = (name: string, v: unknown, dflt: number, min: number): number => intOption(name, v, dflt, min, Number.MAX_SAFE_INTEGER);

function fn<T>(name: string, f: T): T {
  if (typeof f !== 'function') throw new TypeError(`${name}(handler): handler must be a function`);
  return f;
}

/**
 * The shared receiver handlers: `ws` is the connection whose bytes are
 * being pushed. Two classes, because the receiver chooses frame-level or
 * message-level delivery by whether onDataFrame exists.
 */
class MessageSink<S> implements ReceiverHandlers {
  ws!: WebSocketConn<S>;
  constructor(readonly owner: Upgrader<S>) {}
  onMessage(type: MessageType, data: Buffer): void {
    this.owner._onMessage(this.ws, type, data);
  }
  onPing(data: Buffer): void {
    this.owner._onPing(this.ws, data);
  }
  onPong(data: Buffer): void {
    this.owner._onPong?.(this.ws, data);
  }
  onClose(code: number, reason: string): void {
    this.ws._peerClose(code, reason);
  }
  onError(err: ProtocolError | BudgetError): void {
    this.ws._protocolError(err);
  }
  onResume(owner: unknown): void {
    this.ws = owner as WebSocketConn<S>;
  }
  onResumeError(owner: unknown, err: unknown): void {
    failForHandler((owner as WebSocketConn<S>)._raw, err);
  }
}

class FrameSink<S> extends MessageSink<S> {
  onDataFrame(type: MessageType, fin: boolean, data: Buffer): void {
    this.owner._onDataFrame!(this.ws, type, fin, data);
  }
}

// WebSocketOwner is internal, so it is not named in `implements` (the
// published .d.ts would name a type it leaves out); WebSocketConn's
// constructor checks it where `this` is passed.
/**
 * The WebSocket server: given to an Engine ({ upgrader }), it answers the
 * HTTP upgrade and runs the connections. `S` is the type of each
 * connection's session (WebSocketConn.setSession).
 */
export class Upgrader<S = unknown> implements EngineUpgrader {
  /** The options given (a copy). */
  readonly options: Readonly<UpgraderOptions>;
  /** The close handshake timeout in effect, ms. */
  readonly closeTimeout: number;
  /** @internal Server frames are not masked. */
  readonly masked = false;
  /** The keepalive time in effect, ms (0: off). */
  readonly keepaliveTime: number;
  /** The message timeout in effect, ms (0: off). */
  readonly messageTimeout: number;
  /** The handshake timeout in effect, ms. */
  readonly handshakeTimeout: number;
  /** The message length limit in effect, bytes (0: none). */
  readonly messageLengthLimit: number;
  /** Online connections past which newcomers get 503. */
  readonly maxLoad: number;
  #onOpen: OpenHandler<S> | undefined;
  /** @internal */ _onMessage: MessageHandler<S> = () => {};
  /** @internal */ _onDataFrame: DataFrameHandler<S> | undefined;
  #onClose: CloseHandler<S> | undefined;
  #closeHandler: CloseFrameHandler<S> | undefined;
  #pingHandler: PingHandler<S> | undefined;
  /** @internal */ _onPong: PingHandler<S> | undefined;
  #sink: MessageSink<S> | undefined;
  readonly #compression: DeflateOptions | null;
  // Open connections that negotiated compression, and how many may (compression.maxCompressedConnections).
  #compressed = 0;
  #maxCompressed = 0;
  readonly #receivers: Receiver[] = [];
  readonly #keepalive = new Map<Engine, ReturnType<typeof setInterval>>();
  readonly #messageTimers = new Map<Engine, ReturnType<typeof setInterval>>();
  /**
   * Connections in the middle of a frame or message (they hold a receiver),
   * for the message timeout: only these are swept, not every connection.
   */
  readonly #pending = new Set<WebSocketConn<S>>();
  readonly #hook: UpgradeHook<S> | undefined;
  // A connection whose upgrade the hook is deciding: bytes that arrive are
  // kept for after the 101 (bounded), and a close makes the answer moot.
  readonly #waiting: ConnProtocol;
  /** The engine this upgrader serves (attach()): where handleUpgrade() puts its connections. */
  #engine: Engine | undefined = undefined;
  // The routes its connections share (#route), by subprotocol and path.
  // Paths come from clients: bounded, past which a connection gets a route
  // of its own.
  readonly #routes = new Map<string, WsRoute<S>>();
  /** @internal The topics of this upgrader's connections. */
  readonly _topics: TopicHub<object>;
  /** @internal The skip mark of published frames: 0, or the bytes above which a subscriber misses them ('skip'). */
  _skipMark = 0;

  // The protocol objects the engine calls for our connections.
  readonly #handshake: ConnProtocol;
  readonly #websocket: ConnProtocol;

  /** Checks every option (TypeError naming a wrong or unknown one); set the handlers, then give it to an Engine. */
  constructor(options: UpgraderOptions<S> = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('new Upgrader(options): options must be an object');
    checkKnownOptions('Upgrader', options, UPGRADER_OPTIONS);
    this.options = { ...options };
    this.closeTimeout = msOption('closeTimeout', options.closeTimeout, 5000);
    this.keepaliveTime = msOption('keepaliveTime', options.keepaliveTime, 120_000);
    this.messageTimeout = msOption('messageTimeout', options.messageTimeout, 60_000);
    this.handshakeTimeout = msOption('handshakeTimeout', options.handshakeTimeout, 10_000);
    this.messageLengthLimit = checkCount('messageLengthLimit', options.messageLengthLimit, DEFAULT_MAX_MESSAGE_LENGTH, 0);
    this.maxLoad = checkCount('maxLoad', options.maxLoad, 1_000_000, 1);
    checkCount('maxHeadSize', options.maxHeadSize, 8192, 64);
    checkCount('maxHeaders', options.maxHeaders, 40, 1);
    stringsOption('subprotocols', options.subprotocols);
    checkPathOption('Upgrader', options.path);
    if (options.checkOrigin !== undefined) fn('checkOrigin', options.checkOrigin);
    if (options.httpHandler !== undefined) fn('httpHandler', options.httpHandler);
    if (options.headers !== undefined) {
      if (options.headers === null || typeof options.headers !== 'object') throw new TypeError('headers must be an object of header names to values');
      responseHeadText(101, options.headers); // the check every 101 makes (names, values, no framing headers): now, not at the first request
    }
    this.#compression = compressionOption('Upgrader', options.compression);
    this._topics = new TopicHub<object>(topicsOption('Upgrader', options.topics), pubsubOption('Upgrader', options.pubsub), (subs, data, type, exclude) =>
      fanOutFrames(subs as ReadonlySet<WebSocketConn<S>>, data, type, exclude as WebSocketConn<S> | undefined, this._skipMark),
    );
    if (this.#compression !== null) this.#maxCompressed = maxCompressedConnections(this.#compression);

    const self = this;
    this.#handshake = {
      onData: (conn, data) => self.#handshakeData(conn, data),
      onClose: () => {}, // never upgraded: the user never saw it
      onDrain: () => {},
    };
    if (options.onUpgrade !== undefined && typeof options.onUpgrade !== 'function') throw new TypeError('onUpgrade must be a function');
    this.#hook = options.onUpgrade;
    this.#waiting = {
      onData(conn, data) {
        const wait = conn._protoState as HookWait;
        wait.earlyBytes += data.length;
        // A client sends frames only after the 101; a few may be in flight
        // (pipelined), a flood is not: it is dropped with the connection.
        if (wait.earlyBytes > MAX_EARLY_BYTES) {
          wait.gone = true;
          conn.closeAndClean();
          return;
        }
        wait.early.push(Buffer.from(data));
      },
      onClose(conn) {
        (conn._protoState as HookWait).gone = true;
      },
      onDrain() {},
    };
    this.#websocket = {
      onData(conn, data) {
        const ws = conn._protoState as WebSocketConn<S>;
        const now32 = clock32(conn.engine._now);
        ws._lastRead = now32;
        let r = ws._receiver;
        if (r === null) {
          r = self.#receivers.pop() ?? new Receiver(self.#sinkFor(), { role: 'server', maxMessageLength: self.messageLengthLimit });
          if (ws._pmd !== null) r.setDecompressor(ws._pmd);
          r.setBudget(conn.engine._receiveBudget);
          r.owner = ws; // for onResume: a message inflated in a later turn is delivered outside onData
          ws._receiver = r;
        }
        self.#sink!.ws = ws;
        r.push(data, now32);
        if (ws._receiver !== r) return; // closed meanwhile
        if (!r.idle) {
          self.#pending.add(ws); // a frame or message is on its way: the message timeout watches it
          return;
        }
        // Per message on the hot path: a hash lookup only while some
        // connection has a frame pending at all.
        if (self.#pending.size !== 0) self.#pending.delete(ws);
        // Between frames a receiver holds nothing of its connection: give it
        // back, so that idle connections (most of them, on a busy server)
        // carry no parser at all.
        if (self.#receivers.length < RECEIVER_POOL_SIZE) {
          ws._receiver = null;
          r.reset();
          self.#receivers.push(r);
        }
      },
      onClose(conn, err) {
        const ws = conn._protoState as WebSocketConn<S>;
        self.#pending.delete(ws);
        if (ws._pmd !== null) self.#compressed--; // _closed() drops it
        ws._closed(err);
      },
      onHandlerError(conn, err) {
        // onOpen, onMessage, onDataFrame or a ping, pong or close handler
        // threw: the connection cannot be trusted to be in a state its
        // application expects. Close 1011 (internal error, RFC 6455 §7.4.1).
        const ws = conn._protoState as WebSocketConn<S>;
        self.#pending.delete(ws);
        ws._fail(err, CloseCode.InternalError);
      },
      onDrain(conn) {
        const ws = conn._protoState as WebSocketConn<S>;
        self.#onDrain?.(ws);
      },
    };
  }

  #onDrain: OpenHandler<S> | undefined;

  /** Called when a connection has upgraded. */
  onOpen(handler: OpenHandler<S>): this {
    this.#onOpen = fn('onOpen', handler);
    return this;
  }

  /** Called with each complete message. `data` is yours to keep. */
  onMessage(handler: MessageHandler<S>): this {
    this._onMessage = fn('onMessage', handler);
    return this;
  }

  /** Frame-level delivery instead of onMessage (fragments are not buffered). Set it before connections arrive. */
  onDataFrame(handler: DataFrameHandler<S>): this {
    this._onDataFrame = fn('onDataFrame', handler);
    return this;
  }

  /** Called exactly once per upgraded connection, with null or why it closed (see the close contract). */
  onClose(handler: CloseHandler<S>): this {
    this.#onClose = fn('onClose', handler);
    return this;
  }

  /** Called when a connection's write queue becomes empty. */
  onDrain(handler: OpenHandler<S>): this {
    this.#onDrain = fn('onDrain', handler);
    return this;
  }

  /** Called with the peer's close frame (code, reason); 1005 and '' for an empty one. */
  setCloseHandler(handler: CloseFrameHandler<S> | null): this {
    this.#closeHandler = handler === null ? undefined : fn('setCloseHandler', handler);
    return this;
  }

  /** Replaces the default ping handling (a pong with the same payload). */
  setPingHandler(handler: PingHandler<S> | null): this {
    this.#pingHandler = handler === null ? undefined : fn('setPingHandler', handler);
    return this;
  }

  /** Called with each pong's payload. */
  setPongHandler(handler: PingHandler<S> | null): this {
    this._onPong = handler === null ? undefined : fn('setPongHandler', handler);
    return this;
  }

  /** @internal */
  deliverCloseFrame(ws: WebSocketConn<S>, code: number, reason: string): void {
    this.#closeHandler?.(ws, code, reason);
  }

  /** @internal */
  deliverClose(ws: WebSocketConn<S>, err: Error | null): void {
    this.#onClose?.(ws as ClosedWebSocketConn<S>, err); // _closed() set closeInfo just before
  }

  /** @internal */
  _onPing(ws: WebSocketConn<S>, data: Buffer): void {
    if (this.#pingHandler !== undefined) this.#pingHandler(ws, data);
    else ws._autoPong(data);
  }

  // -------------------------------------------------------------------------
  // EngineUpgrader

  /** @internal */
  attach(engine: Engine): void {
    // handleUpgrade() hands its sockets to this engine; an upgrader serves one.
    if (this.#engine !== undefined && this.#engine !== engine) throw new TypeError('an Upgrader belongs to one Engine: create one per engine');
    this.#engine = engine;
  }

  /**
   * Sends a message to every connection subscribed to `topic`
   * (WebSocketConn.subscribe), framed once (and compressed once for the
   * subscribers that agreed server_no_context_takeover; the others get it
   * uncompressed), and through the `pubsub` adapter (or the workers' relay)
   * to the other servers. `type` defaults to 'text' for a string, 'binary'
   * for bytes. Bytes are not copied: do not change them until the end of the
   * tick. Returns the local subscribers it was queued for now.
   */
  publish(topic: string, data: Uint8Array | string, type?: MessageType): number {
    this._topics.check('Upgrader.publish', topic);
    const a = publishArgs('Upgrader.publish', topic, data, type);
    return this._topics.publish(topic, a.bytes, a.type, undefined);
  }

  /** This server's connections subscribed to `topic` (this process only). */
  numSubscribers(topic: string): number {
    return this._topics.count(topic);
  }

  /** @internal */
  started(engine: Engine): void {
    this._skipMark = engine._skipMark(this._topics.config);
    this._topics.start(engine._clusterPubSub('ws'));
    if (this.messageTimeout !== 0) {
      const every = Math.max(1, Math.min(1000, Math.floor(this.messageTimeout / 2)));
      const timer = setInterval(() => this.#sweepPending(), every);
      timer.unref();
      this.#messageTimers.set(engine, timer);
    }
    if (this.keepaliveTime === 0) return;
    const period = Math.max(1, Math.floor(this.keepaliveTime / 2));
    const timer = setInterval(() => this.#sweep(engine, period), period);
    timer.unref();
    this.#keepalive.set(engine, timer);
  }

  /** @internal Engine stop: close 1001 to every WebSocket, wait for the answers (closeTimeout at most). */
  stopping(engine: Engine): Promise<void> | void {
    const timer = this.#keepalive.get(engine);
    if (timer !== undefined) clearInterval(timer);
    this.#keepalive.delete(engine);
    const messageTimer = this.#messageTimers.get(engine);
    if (messageTimer !== undefined) clearInterval(messageTimer);
    this.#messageTimers.delete(engine);
    const waiting: WebSocketConn<S>[] = [];
    engine._forEachConn((conn) => {
      if (conn._proto !== this.#websocket) {
        conn.close(); // still in its handshake
        return;
      }
      const ws = conn._protoState as WebSocketConn<S>;
      ws._goingAway();
      waiting.push(ws);
    });
    if (waiting.length === 0) return this._topics.stop();
    return new Promise<void>((resolve) => {
      // A safety net only: each connection's own close timeout (the read
      // deadline writeClose set) closes it first and reports it as such.
      const deadline = Date.now() + this.closeTimeout + 250;
      const poll = (): void => {
        if (waiting.every((ws) => ws._done) || Date.now() >= deadline) {
          resolve();
          return;
        }
        setTimeout(poll, 10);
      };
      poll();
    }).then(() => this._topics.stop());
  }

  /** @internal A connection was accepted. */
  accept(conn: Conn): void {
    if (conn.engine._online > this.maxLoad) {
      conn.write(httpResponse(503, [['Retry-After', '1']], 'Too many connections\n'));
      conn.close();
      return;
    }
    conn._proto = this.#handshake;
    conn.setReadDeadline(Date.now() + this.handshakeTimeout);
  }

  // Keepalive: one timer per engine, not per connection. Connections that
  // were silent for half the keepalive time get a ping; each connection's
  // read deadline (the engine's timer heap) is moved to its last activity
  // plus the keepalive time plus one sweep period, so a connection is
  // closed after keepaliveTime to 1.5 x keepaliveTime of silence.
  #sweep(engine: Engine, period: number): void {
    const now = Date.now();
    const now32 = clock32(now);
    engine._forEachConn((conn) => {
      if (conn._proto !== this.#websocket) return;
      const ws = conn._protoState as WebSocketConn<S>;
      if (ws.closed) return;
      // Ping anything silent for half a period, so that a peer answering
      // every ping keeps moving its deadline each sweep; the deadline is a
      // full period past the next sweep, so a late timer cannot drop a
      // healthy connection.
      const silent = (now32 - ws._lastRead) | 0;
      if (silent >= period / 2) ws.ping();
      conn.setReadDeadline(now - silent + this.keepaliveTime + period);
    });
  }

  // The message timeout: a connection whose pending frame or message began
  // longer ago than messageTimeout is failed with 1008 (policy violation).
  #sweepPending(): void {
    if (this.#pending.size === 0) return;
    const now32 = clock32(Date.now());
    for (const ws of this.#pending) {
      const r = ws._receiver;
      if (r === null || r.idle || ws.closed) {
        this.#pending.delete(ws);
        continue;
      }
      if (((now32 - r.busySince) | 0) >= this.messageTimeout) {
        this.#pending.delete(ws);
        ws._fail(new TimeoutError('message'), CloseCode.PolicyViolation);
      }
    }
  }

  // -------------------------------------------------------------------------
  // The handshake

  #handshakeData(conn: Conn, data: Buffer): void {
    let parser = conn._protoState as RequestParser | undefined;
    if (parser === undefined) {
      parser = new RequestParser({ maxHeadSize: this.options.maxHeadSize ?? 8192, maxHeaders: this.options.maxHeaders ?? 40 });
      conn._protoState = parser;
    }
    const r = parser.push(data);
    if (r === 'need-more') return;
    conn._protoState = undefined;
    if (r instanceof HttpError) {
      this.#refuse(conn, httpResponse(r.status, [], `${r.message}\n`));
      return;
    }
    const head = r.head;
    if (!isWebSocketUpgrade(head) && this.options.httpHandler !== undefined) {
      let answer: HttpAnswer;
      try {
        answer = this.options.httpHandler(head, conn);
      } catch (err) {
        this.#refuse(conn, httpResponse(500, [], 'Internal Server Error\n'));
        throw err;
      }
      this.#refuse(conn, httpResponse(answer.status, answer.headers ?? [], answer.body ?? '', { omitBody: head.method === 'HEAD' }));
      return;
    }
    const checked = this.#check(head);
    if (!checked.result.accept) {
      this.#refuse(conn, rejectionResponse(checked.result, { omitBody: head.method === 'HEAD' }));
      return;
    }
    if (this.#hook !== undefined) {
      this.#askHook(conn, head, checked.result, checked.agreed, r.consumed < data.length ? Buffer.from(data.subarray(r.consumed)) : undefined);
      return;
    }
    const ws = this.#open(conn, checked.result, checked.agreed);
    // Frames the client sent right behind its request head.
    if (r.consumed < data.length && !ws.closed) this.#websocket.onData(conn, data.subarray(r.consumed));
  }

  // The engine's own listener: the connection waits in the #waiting protocol
  // (its handshake deadline still runs) while the hook decides.
  #askHook(conn: Conn, head: RequestHead, result: UpgradeAccepted, agreed: ServerNegotiation | null, early: Buffer | undefined): void {
    const wait: HookWait = { early: early === undefined ? [] : [early], earlyBytes: early?.length ?? 0, gone: false };
    conn._proto = this.#waiting;
    conn._protoState = wait;
    const req = upgradeRequest(head, conn.remoteAddr, result.protocol, result.responseText);
    Promise.resolve()
      .then(() => this.#hook!(req))
      .then(
        (answer) => {
          if (wait.gone || conn.closed) return;
          let a: UpgradeAnswer<S>;
          let refusal: Buffer | undefined;
          try {
            a = checkAnswer<S>(answer);
            if (!a.accept) refusal = httpResponse(a.status, a.headers ?? [], a.body ?? '');
          } catch (err) {
            this.#refuse(conn, httpResponse(500, [], 'Internal Server Error\n'));
            throw err;
          }
          if (!a.accept) {
            this.#refuse(conn, refusal!);
            return;
          }
          this.#runHandlers(conn, () => {
            const ws = this.#open(conn, result, agreed, a.session, a.headers);
            for (const b of wait.early) if (!ws.closed) this.#websocket.onData(conn, b);
          });
        },
        (err: unknown) => {
          if (!wait.gone && !conn.closed) this.#refuse(conn, httpResponse(500, [], 'Internal Server Error\n'));
          rethrow(err);
        },
      )
      .catch(rethrow);
  }

  // Handlers run outside the engine's batch (after an async hook): a throw
  // fails the connection as it would inside a batch, then reaches the process.
  #runHandlers(conn: Conn, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (conn._proto === this.#websocket && !conn.closed) this.#websocket.onHandlerError!(conn, err instanceof Error ? err : new Error(String(err)));
      else conn.closeAndClean(err instanceof Error ? err : null);
      rethrow(err);
    }
  }

  // The upgrade checks of RFC 6455 §4.2.1 and the options, and the
  // permessage-deflate parameters agreed on the way.
  #check(head: RequestHead): { result: UpgradeResult; agreed: ServerNegotiation | null } {
    let agreed: ServerNegotiation | null = null;
    // Past the cap of connections with compression, the offer is not
    // considered: the connection upgrades without the extension.
    const compression = this.#compressed < this.#maxCompressed ? this.#compression : null;
    const result = checkUpgrade(head, {
      ...(compression !== null ? { negotiateExtensions: deflateUpgradeHook(compression, (n) => (agreed = n)) } : {}),
      ...(this.options.path !== undefined ? { path: this.options.path } : {}),
      ...(this.options.subprotocols !== undefined ? { subprotocols: this.options.subprotocols } : {}),
      ...(this.options.checkOrigin !== undefined ? { checkOrigin: this.options.checkOrigin } : {}),
      ...(this.options.headers !== undefined ? { headers: this.options.headers } : {}),
    });
    return { result, agreed };
  }

  // An accepted upgrade: the 101 answer, the WebSocketConn, onOpen.
  /** The shared route (owner, path, subprotocol) of a connection opened with these. */
  #route(path: string, subprotocol: string): WsRoute<S> {
    const key = subprotocol === '' ? path : `${subprotocol}\n${path}`;
    let route = this.#routes.get(key);
    if (route === undefined) {
      route = { owner: this, path, subprotocol };
      if (key.length <= MAX_SHARED_ROUTE_KEY) {
        // Full: start over (connections keep their routes), so that the map
        // follows the paths in use and keeps no old one for long.
        if (this.#routes.size >= MAX_SHARED_ROUTES) this.#routes.clear();
        this.#routes.set(key, route);
      }
    }
    return route;
  }

  #open(conn: Conn, result: UpgradeAccepted, agreed: ServerNegotiation | null, session?: S, extra?: HeaderList): WebSocketConn<S> {
    const compression = this.#compression;
    if (extra === undefined) conn.write(result.ascii ? result.responseText : result.responseHead);
    else {
      // The hook's headers (checked by checkAnswer) go after ours, before the blank line.
      const more = responseHeadText(101, extra);
      conn.write(Buffer.from(result.responseText.slice(0, -2) + more.slice(more.indexOf('\r\n') + 2), 'latin1'));
    }
    const ws = new WebSocketConn<S>(conn, this.#route(result.path, result.protocol));
    if (session !== undefined) ws.setSession(session);
    ws._lastRead = clock32(Date.now());
    if (agreed !== null) {
      const pmd = new PerMessageDeflate(agreed.params, 'server', { ...compression, maxMessageLength: inflationLimit(this.messageLengthLimit, compression!) });
      ws._pmd = pmd;
      this.#compressed++;
    }
    conn._proto = this.#websocket;
    conn._protoState = ws;
    conn.setReadDeadline(this.keepaliveTime > 0 ? Date.now() + this.keepaliveTime + Math.floor(this.keepaliveTime / 2) : null);
    this.#onOpen?.(ws);
    return ws;
  }

  /**
   * Takes a WebSocket upgrade over from Node's http server (its 'upgrade'
   * event, so Express, Fastify, Koa and the rest): the request Node parsed
   * is checked as the engine's own listener checks it; a refusal is answered
   * on Node's socket (404, 400, 403, 426...) and resolves null; an accepted
   * upgrade takes the socket's descriptor over from Node (duplicated, Node's
   * copy closed), with `head` and anything Node had buffered handed in first,
   * and resolves the WebSocketConn once onOpen has run. From then on the
   * connection is served exactly like an accepted one, in the engine's I/O
   * mode. The upgrader must belong to one running Engine (new Engine({
   * upgrader }), with or without addresses of its own). Rejects (and
   * destroys the socket) when the socket cannot be taken over: a TLS socket
   * (https) is not supported yet.
   */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer = Buffer.alloc(0)): Promise<WebSocketConn<S> | null> {
    const engine = this.#engine;
    if (engine === undefined) throw new Error('handleUpgrade: give this upgrader to an Engine first (new Engine({ upgrader }))');
    if (!engine.running) throw new Error('handleUpgrade: the engine is not running (await engine.start())');
    const request = requestHeadOf(req);
    const { result, agreed } = this.#check(request);
    if (!result.accept) {
      refuseOnNodeSocket(socket, rejectionResponse(result, { omitBody: request.method === 'HEAD' }));
      return null;
    }
    let session: S | undefined;
    let extra: HeaderList | undefined;
    if (this.#hook !== undefined) {
      const s = socket as Duplex & { remoteAddress?: string; remotePort?: number; remoteFamily?: string };
      const remote = s.remoteAddress !== undefined ? formatAddress(s.remoteFamily ?? 'IPv4', s.remoteAddress, s.remotePort ?? 0) : '';
      const early: Buffer[] = [];
      const answer = await this.#hookWithin(upgradeRequest(request, remote, result.protocol, result.responseText, req), socket, early);
      if (early.length > 0) head = Buffer.concat([head, ...early]);
      if (answer === null) return null; // the client left, or the handshake timed out: the socket is gone
      if (!answer.accept) {
        let refusal: Buffer;
        try {
          refusal = httpResponse(answer.status, answer.headers ?? [], answer.body ?? '');
        } catch (err) {
          refuseOnNodeSocket(socket, httpResponse(500, [], 'Internal Server Error\n'));
          throw err;
        }
        refuseOnNodeSocket(socket, refusal);
        return null;
      }
      session = answer.session;
      extra = answer.headers;
    }
    const conn = await engine._adopt(socket, head, (c) => {
      this.#open(c, result, agreed, session, extra);
    });
    return conn._protoState as WebSocketConn<S>;
  }

  // handleUpgrade(): the hook, bounded by the handshake timeout and by the
  // client's patience; null when the socket went away meanwhile.
  // Node's socket is read meanwhile (into `early`, bounded), so that a
  // client that leaves is noticed: an unread socket never learns of a FIN.
  async #hookWithin(req: UpgradeRequest, socket: Duplex, early: Buffer[]): Promise<UpgradeAnswer<S> | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onClose: (() => void) | undefined;
    let earlyBytes = 0;
    const onData = (d: Buffer): void => {
      earlyBytes += d.length;
      if (earlyBytes > MAX_EARLY_BYTES) socket.destroy();
      else early.push(d);
    };
    const gone = new Promise<null>((resolve) => {
      onClose = () => resolve(null);
      // http.Server sockets allow half-open connections: a client that
      // leaves shows as 'end' (its FIN), not 'close'.
      socket.once('close', onClose);
      socket.once('end', onClose);
      socket.on('error', () => {});
      socket.on('data', onData);
      socket.resume(); // an upgrade socket may have been left paused by the http server
      if (this.handshakeTimeout > 0) {
        timer = setTimeout(() => {
          socket.destroy();
          resolve(null);
        }, this.handshakeTimeout);
      }
    });
    try {
      const answer = await Promise.race([Promise.resolve().then(() => this.#hook!(req)), gone]);
      if (answer === null || socket.destroyed || socket.readableEnded) {
        socket.destroy();
        return null;
      }
      return checkAnswer<S>(answer);
    } catch (err) {
      refuseOnNodeSocket(socket, httpResponse(500, [], 'Internal Server Error\n'));
      throw err;
    } finally {
      clearTimeout(timer);
      socket.off('close', onClose!);
      socket.off('end', onClose!);
      socket.off('data', onData);
      socket.pause(); // what arrives from now on waits for adopt() (detach() takes it)
    }
  }

  #refuse(conn: Conn, response: Buffer): void {
    conn.write(response);
    conn.close();
  }

  #sinkFor(): MessageSink<S> {
    this.#sink ??= this._onDataFrame !== undefined ? new FrameSink(this) : new MessageSink(this);
    return this.#sink;
  }
}
