// WebSocketConn: one WebSocket connection (server or client side) on a raw
// Conn. It owns the receiver, writes frames through the raw connection's
// corked write path, runs the closing handshake, and decides what onClose
// reports (DESIGN.md, "Close reporting contract").
//
// What onClose receives, first match wins:
//   1. an error the user closed with (closeWithError, closeAndClean);
//   2. a protocol error we detected (ProtocolError, its close code sent);
//   3. the peer's close frame: a clean close for 1000 or when we started the
//      handshake, CloseError for any other code (1005 for an empty frame);
//      the engine stopping is a clean close too;
//   4. what the transport saw (EOFError, SysError, TimeoutError).
// A clean close is null on a non-blocking connection. On a blocking one it is
// what the reader thread saw end its reading: NetClosedError when our close
// came first, EOFError when the peer's FIN came with its close frame. That is
// the one difference between the modes; closeInfo is the same in both.
import { Buffer } from 'node:buffer';
import { checkRoom, type Conn, type Deadline } from '../conn.js';
import { BudgetError, CloseError, NetClosedError } from '../errors.js';
import type { ProtocolError } from '../errors.js';
import { CloseCode, MAX_CLOSE_REASON_BYTES, isValidCloseCode } from './close.js';
import { MAX_CONTROL_PAYLOAD, Opcode, type MessageType } from './opcodes.js';
import type { MessageDecompressor, Receiver } from './receiver.js';
import { frame, writeFrameHeader } from './sender.js';
import type { TopicHub } from '../topics/hub.js';
import type { TlsInfo } from '../tls.js';
import { publishArgs } from '../topics/hub.js';

/** Who started the close: we did, the peer did (close frame), or the connection just dropped. */
export type CloseInitiator = 'local' | 'peer' | 'network';

/** The protocol-level facts of a close; identical in every I/O mode. */
export interface CloseInfo {
  /** The close code received from the peer; the code we sent for a protocol error; 1006 when no close frame was exchanged. */
  code: number;
  /** The close reason ('' when none). */
  reason: string;
  /** True when both close frames were exchanged. */
  wasClean: boolean;
  /** Who started the close. */
  initiator: CloseInitiator;
  /** What onClose received. */
  error: Error | null;
}

/**
 * A WebSocketConn as onClose sees it: closed, its closeInfo always set. The
 * same object as the open connection's; only the type knows more.
 */
export type ClosedWebSocketConn<S = unknown> = WebSocketConn<S> & {
  /** The facts of the close, final. */
  readonly closeInfo: CloseInfo;
};

/**
 * @internal How a connection was opened: its owner, path and subprotocol.
 * One object for every connection of an owner that agreed the same path
 * and subprotocol (Upgrader interns them), so a connection holds one field
 * for the three (8 bytes per connection instead of 24).
 */
export interface WsRoute<S = unknown> {
  readonly owner: WebSocketOwner<S>;
  readonly path: string;
  readonly subprotocol: string;
}

/** @internal What a WebSocketConn needs of its owner (the Upgrader, or a client's handlers). */
export interface WebSocketOwner<S = unknown> {
  /** Close handshake timeout, ms. */
  readonly closeTimeout: number;
  /** Client side: every frame we send is masked (RFC 6455 §5.3). */
  readonly masked: boolean;
  /** Calls the user's onClose. */
  deliverClose(ws: WebSocketConn<S>, err: Error | null): void;
  /**
   * Calls the user's close handler (setCloseHandler), if any. A method, not
   * a property holding the handler: methods keep WebSocketConn<S>
   * assignable to WebSocketConn<unknown>.
   */
  deliverCloseFrame(ws: WebSocketConn<S>, code: number, reason: string): void;
  /** The topics of the owner's connections (an Upgrader's); undefined for a client's. */
  readonly _topics?: TopicHub<object>;
  /** The skip mark of published frames (topics.slowSubscriber 'skip'), 0 for none. */
  readonly _skipMark?: number;
}

/** @internal Compression of outgoing messages (permessage-deflate), when negotiated. */
export interface MessageCompressor {
  /** The compressed payload (RFC 7692 tail removed), or null to send this message uncompressed. */
  compress(data: Uint8Array | string): Buffer | null;
  /**
   * Optional: compress() that may finish in a later loop turn: returns what
   * compress() returns when it finished now, undefined otherwise, and then
   * calls done() once, unless close() came first. One at a time.
   */
  compressLater?(data: Uint8Array | string, done: (err: Error | null, payload: Buffer | null) => void): Buffer | null | undefined;
  /** True while a compressLater() goes on in later loop turns. */
  readonly compressing?: boolean;
  close(): void;
}

/**
 * @internal A handler threw outside the engine's onData (a message delivered once it
 * finished inflating in a later turn): fail the connection as the engine
 * does for one that throws inside it (the protocol's onHandlerError, 1011).
 */
export function failForHandler(conn: Conn, err: unknown): void {
  if (!conn.closed) conn._proto?.onHandlerError?.(conn, err instanceof Error ? err : new Error(String(err)));
}

const enum WsState {
  Open = 0,
  CloseSent = 1, // our close frame is out; waiting for the peer's
  Dropped = 2, // closeWithError / closeAndClean: TCP closing, no close frame, nothing more parsed
  Closed = 3, // onClose delivered
}

const CLOCK_BASE = Date.now();

/** _err for a clean close: resolved in _closed(), by the connection's I/O mode. */
const CLEAN: unique symbol = Symbol('clean close');

/**
 * Milliseconds since module load as a wrapping 32-bit integer (see
 * WebSocketConn._lastRead). Differences between two readings, taken with
 * `(a - b) | 0`, are exact for intervals under 24 days.
 */
export function clock32(nowMs: number): number {
  return (nowMs - CLOCK_BASE) | 0;
}

// Server frame headers are built here and copied into the engine's out slab.
const header = new Uint8Array(14);

function opcodeOf(type: unknown, what: string): number {
  if (type === 'text') return Opcode.Text;
  if (type === 'binary') return Opcode.Binary;
  throw new TypeError(`${what}: type must be 'text' or 'binary', got ${String(type)}`);
}

function checkPayload(data: unknown, what: string): asserts data is Uint8Array | string {
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
    throw new TypeError(`${what}: data must be a Buffer, Uint8Array or string, got ${data === null ? 'null' : typeof data}`);
  }
}

/**
 * Conn.write's maxWriteBufferSize check for a whole frame, made before any
 * of it is written: the frame's header (14 bytes at most) is counted, so
 * that the raw writes that follow (header, then payload) pass their own
 * check and a frame is never cut after its header.
 */
function checkFrameRoom(raw: Conn, what: string, data: Uint8Array | string, waiting = 0): void {
  checkRoom(raw, what, data.length + 14 + waiting, () => (typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength) + 14 + waiting);
}

/**
 * The fields an idle connection does not need, allocated on first use (see
 * ConnExtras in ../conn.ts: each field of a per-connection object is 8 bytes
 * per connection).
 */
class WsExtras {
  pmd: (MessageCompressor & MessageDecompressor) | null = null;
  closeInfo: CloseInfo | null = null;
  fragmentOpcode = 0;
  err: Error | null | typeof CLEAN | undefined = undefined;
  session: unknown = undefined;
  // While a message is being compressed in later loop turns: everything sent
  // after it (frames, and closing the TCP connection), in order.
  sendQueue: QueuedSend[] | null = null;
  // Payload bytes waiting in sendQueue: part of bufferedAmount, and counted
  // against the engine's memory budget until they are handed to the engine.
  queuedBytes = 0;
  // The topics this connection is subscribed to (websocket/topics.ts).
  topics: Set<string> | undefined = undefined;
  // Published frames that arrived while a message was being sent in
  // fragments (writeFrame): they follow its last frame. Counted against the
  // memory budget (not in queuedBytes, which the send queue releases).
  heldFrames: Buffer[] | null = null;
}

/** A send waiting behind a message being compressed, and the payload bytes it holds. */
interface QueuedSend {
  run: () => void;
  bytes: number;
}

function lengthOf(data: Uint8Array | string): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}

/**
 * One WebSocket connection, server or client side. `S` is the type of the
 * value attached with setSession() (Upgrader<S>, dial<S>).
 */
export class WebSocketConn<S = unknown> {
  /** @internal */ readonly _raw: Conn;
  /** @internal Owner, path and subprotocol (shared: see WsRoute). */ readonly _route: WsRoute<S>;
  /** @internal */ _receiver: Receiver | null = null;
  /** @internal The rarely needed fields (WsExtras), once one was set. */
  _x: WsExtras | undefined = undefined;
  /**
   * @internal When bytes last arrived (keepalive): clock32() at that time.
   * A 32-bit integer is kept in the object itself; a Date.now() value would
   * make V8 box the field in a separate heap number per connection.
   */
  _lastRead = 0;
  #state = WsState.Open;

  /** @internal */
  constructor(raw: Conn, route: WsRoute<S>) {
    this._raw = raw;
    this._route = route;
  }

  /** The subprotocol agreed in the handshake, '' when none. */
  get subprotocol(): string {
    return this._route.subprotocol;
  }

  /** The request path (server side) or the dialed path (client side). */
  get path(): string {
    return this._route.path;
  }

  /** @internal The Upgrader, or a client's handlers. */
  get _owner(): WebSocketOwner<S> {
    return this._route.owner;
  }

  /**
   * @internal permessage-deflate for this connection, both directions, when
   * negotiated (receivers are pooled and get it back from here, see upgrader.ts).
   */
  get _pmd(): (MessageCompressor & MessageDecompressor) | null {
    return this._x?.pmd ?? null;
  }
  /** @internal */
  set _pmd(pmd: (MessageCompressor & MessageDecompressor) | null) {
    if (pmd !== null || this._x !== undefined) (this._x ??= new WsExtras()).pmd = pmd;
  }

  /** The facts of the close: set as the close begins (a close frame, a protocol error, a local close), final in onClose; null before. */
  get closeInfo(): CloseInfo | null {
    return this._x?.closeInfo ?? null;
  }
  /** @internal Set by the close paths; read-only to users. */
  set closeInfo(info: CloseInfo | null) {
    (this._x ??= new WsExtras()).closeInfo = info;
  }

  /** @internal The opcode of a message being sent in fragments, 0 when none. */
  get _fragmentOpcode(): number {
    return this._x?.fragmentOpcode ?? 0;
  }
  /** @internal */
  set _fragmentOpcode(opcode: number) {
    if (opcode !== 0 || this._x !== undefined) (this._x ??= new WsExtras()).fragmentOpcode = opcode;
  }

  /** @internal What onClose will receive, once decided (CLEAN: by the I/O mode); undefined before. */
  get _err(): Error | null | typeof CLEAN | undefined {
    return this._x?.err;
  }
  /** @internal */
  set _err(err: Error | null | typeof CLEAN | undefined) {
    (this._x ??= new WsExtras()).err = err;
  }

  /** @internal Sends waiting behind a message being compressed; null when none is. */
  get _sendQueue(): QueuedSend[] | null {
    return this._x?.sendQueue ?? null;
  }
  /** @internal */
  set _sendQueue(q: QueuedSend[] | null) {
    if (q === null && this._x !== undefined && this._x.queuedBytes > 0) {
      // Dropped (a close, a failure): what it held is released.
      this._raw.engine._receiveBudget.hold(-this._x.queuedBytes);
      this._x.queuedBytes = 0;
    }
    if (q !== null || this._x !== undefined) (this._x ??= new WsExtras()).sendQueue = q;
  }

  /** @internal
   * Puts a send behind the message being compressed. Its payload counts as
   * queued (bufferedAmount) and against the engine's memory budget: a
   * connection whose waiting sends would take the server past the budget is
   * failed with BudgetError, as a write the engine could not queue would be.
   */
  _enqueue(queue: QueuedSend[], run: () => void, bytes: number): void {
    if (bytes > 0) {
      const budget = this._raw.engine._receiveBudget;
      if (!budget.hold(bytes)) {
        this.closeAndClean(new BudgetError(budget.budget));
        return;
      }
      this._x!.queuedBytes += bytes;
    }
    queue.push({ run, bytes });
  }

  /** @internal Runs the next waiting send, its bytes handed over to the engine. */
  _runQueued(queue: QueuedSend[]): void {
    const q = queue.shift()!;
    if (q.bytes > 0) {
      this._x!.queuedBytes -= q.bytes;
      this._raw.engine._receiveBudget.hold(-q.bytes);
    }
    q.run();
  }

  /** @internal True once onClose has been delivered. */
  get _done(): boolean {
    return this.#state === WsState.Closed;
  }

  /** True once a close frame was sent or the connection closed: no more messages may be written. */
  get closed(): boolean {
    return this.#state !== WsState.Open;
  }

  /**
   * Sends a whole message. Text is sent as UTF-8 (give a string, or bytes you
   * know are valid UTF-8). Throws NetClosedError once the closing handshake
   * has started, and OverflowError (nothing sent, the connection stays
   * open) when the message (its size before compression) alone, or with
   * what is queued already, is more than the engine's maxWriteBufferSize:
   * see Conn.write. With permessage-deflate a large message may be
   * compressed over several loop turns (bounded work per turn,
   * deflate-work.ts): whatever is sent after it waits for it, so the peer
   * receives everything in the order it was written. As with every write,
   * `data` must not change until it has been sent.
   */
  writeMessage(type: MessageType, data: Uint8Array | string): void {
    const opcode = opcodeOf(type, 'writeMessage');
    checkPayload(data, 'writeMessage');
    if (this.#state !== WsState.Open) throw new NetClosedError();
    if (this._fragmentOpcode !== 0) throw new Error('writeMessage: a fragmented message is being sent with writeFrame(); finish it first');
    // Before compressing: a compressor with context takeover that compressed
    // a message it then could not send would leave the peer's inflater behind.
    checkFrameRoom(this._raw, 'writeMessage', data, this._x?.queuedBytes ?? 0);
    const queue = this._sendQueue;
    if (queue !== null) this._enqueue(queue, () => this._writeMessageNow(opcode, data), lengthOf(data));
    else this._writeMessageNow(opcode, data);
  }

  /** @internal */
  _writeMessageNow(opcode: number, data: Uint8Array | string): void {
    const pmd = this._pmd;
    if (pmd === null) {
      this._sendNow(opcode, data, true, false);
      return;
    }
    // permessage-deflate, when negotiated: messages under its threshold go
    // out as they are (RSV1 clear).
    const packed =
      pmd.compressLater !== undefined ? pmd.compressLater(data, (err, payload) => this._compressed(opcode, err, payload)) : pmd.compress(data);
    if (packed === undefined) this._sendQueue ??= [];
    else if (packed !== null) this._sendNow(opcode, packed, true, true);
    else this._sendNow(opcode, data, true, false);
  }

  /** @internal A message compressed in later loop turns: send it, then what waited behind it. */
  _compressed(opcode: number, err: Error | null, payload: Buffer | null): void {
    if (err !== null) {
      // zlib failed to compress (out of memory): nothing queued can follow in order.
      this._sendQueue = null;
      this.closeAndClean(err);
      return;
    }
    try {
      this._sendNow(opcode, payload!, true, true);
      const queue = this._sendQueue;
      if (queue === null) return;
      while (queue.length > 0) {
        this._runQueued(queue);
        // That was a message that compresses in later turns too: the rest waits for it.
        if (this._sendQueue === null || this._pmd?.compressing === true) return;
      }
      this._sendQueue = null;
    } catch (e) {
      // The engine refused the write (it is stopping): what waited cannot go out in order.
      this._sendQueue = null;
      if (!this._raw.closed) this.closeAndClean(e as Error);
    }
  }

  /** @internal Runs `action` (a frame, closing the TCP connection) now, or after what waits behind a message being compressed. */
  _inOrder(action: () => void): void {
    const queue = this._sendQueue;
    if (queue !== null) this._enqueue(queue, action, 0);
    else action();
  }

  /**
   * Sends one frame of a message, for manual fragmentation: the first call
   * starts a message of `type`, the following ones continue it, the one with
   * `fin` true ends it. Fragments are never compressed.
   */
  writeFrame(type: MessageType, data: Uint8Array | string, fin = true): void {
    const opcode = opcodeOf(type, 'writeFrame');
    checkPayload(data, 'writeFrame');
    if (typeof fin !== 'boolean') throw new TypeError('writeFrame: fin must be a boolean');
    if (this.#state !== WsState.Open) throw new NetClosedError();
    checkFrameRoom(this._raw, 'writeFrame', data);
    let sendOpcode = opcode;
    if (this._fragmentOpcode !== 0) {
      if (this._fragmentOpcode !== opcode) throw new Error(`writeFrame: a ${this._fragmentOpcode === Opcode.Text ? 'text' : 'binary'} message is being sent`);
      sendOpcode = Opcode.Continuation;
    }
    this._fragmentOpcode = fin ? 0 : opcode;
    this._send(sendOpcode, data, fin, false);
    if (fin) this._releaseHeld();
  }

  // -------------------------------------------------------------------------
  // Topics (websocket/topics.ts frames a publish once for all subscribers)

  /** @internal */
  _hub(what: string, topic: unknown): TopicHub<object> {
    const hub = this._owner._topics;
    if (hub === undefined) throw new TypeError(`${what}: topics are a server's: this connection was dialed by a client`);
    hub.check(what, topic);
    return hub;
  }

  /**
   * Subscribes this connection to `topic` (a string of 1 to
   * topics.maxTopicLength characters): Upgrader.publish(topic) and other
   * connections' publish(topic) send to it from now on, until
   * unsubscribe() or its close (every close path unsubscribes it). Returns
   * false if it was subscribed already. Throws RangeError past
   * topics.maxTopicsPerConnection, NetClosedError once it is closing.
   */
  subscribe(topic: string): boolean {
    const hub = this._hub('subscribe', topic);
    if (this.#state !== WsState.Open) throw new NetClosedError();
    return hub.subscribe(this, ((this._x ??= new WsExtras()).topics ??= new Set()), topic);
  }

  /** Unsubscribes this connection from `topic`; false if it was not subscribed. */
  unsubscribe(topic: string): boolean {
    const hub = this._hub('unsubscribe', topic);
    const own = this._x?.topics;
    return own !== undefined && hub.unsubscribe(this, own, topic);
  }

  /** Whether this connection is subscribed to `topic`. */
  isSubscribed(topic: string): boolean {
    return this._x?.topics?.has(topic) === true;
  }

  /** The topics this connection is subscribed to (a copy); still readable in onClose. */
  get topics(): string[] {
    return this._x?.topics === undefined ? [] : [...this._x.topics];
  }

  /**
   * Upgrader.publish() from this connection: every subscriber of `topic`
   * receives the message but this connection (subscribed or not). `type`
   * defaults to 'text' for a string, 'binary' for bytes. Returns the local
   * subscribers it was queued for now.
   */
  publish(topic: string, data: Uint8Array | string, type?: MessageType): number {
    const hub = this._hub('publish', topic);
    const a = publishArgs('publish', topic, data, type);
    return hub.publish(topic, a.bytes, a.type, this);
  }

  /**
   * @internal A published frame (header and payload, shared with the other
   * subscribers): sent after everything written before it, a message being
   * compressed or sent in fragments included; never in the middle of one.
   */
  _sendShared(bytes: Buffer, skipMark: number): void {
    if (this.#state !== WsState.Open) return;
    if (this._fragmentOpcode !== 0) {
      const x = this._x!;
      if (!this._raw.engine._receiveBudget.hold(bytes.length)) {
        this.closeAndClean(new BudgetError(this._raw.engine._receiveBudget.budget));
        return;
      }
      (x.heldFrames ??= []).push(bytes);
      return;
    }
    const queue = this._sendQueue;
    if (queue !== null) this._enqueue(queue, () => this._sendSharedNow(bytes, skipMark), bytes.length);
    else this._sendSharedNow(bytes, skipMark);
  }

  /** @internal */
  _sendSharedNow(bytes: Buffer, skipMark: number): void {
    const raw = this._raw;
    if (raw.closed) return;
    raw.engine._writeShared(raw, bytes, skipMark);
  }

  /** @internal A fragmented message ended: the frames published meanwhile follow it. */
  _releaseHeld(): void {
    const x = this._x;
    const held = x?.heldFrames;
    if (held === null || held === undefined) return;
    x!.heldFrames = null;
    let bytes = 0;
    for (const f of held) bytes += f.length;
    this._raw.engine._receiveBudget.hold(-bytes);
    const mark = this._owner._skipMark ?? 0;
    for (const f of held) this._sendShared(f, mark);
  }

  /** Sends a ping (at most 125 bytes of payload). */
  ping(data: Uint8Array | string = ''): void {
    this._control(Opcode.Ping, data, 'ping');
  }

  /** Sends a pong (at most 125 bytes); pings are answered automatically unless a ping handler is set. */
  pong(data: Uint8Array | string = ''): void {
    this._control(Opcode.Pong, data, 'pong');
  }

  /**
   * Starts the closing handshake: sends a close frame with `code` and
   * `reason` (at most 123 bytes of UTF-8), then waits for the peer's close
   * frame (at most the close timeout) and closes the TCP connection.
   * Everything written before is delivered first. onClose receives null if
   * the peer answers. Code 1005 (no status) sends a close frame without a
   * payload, as a close() without a code does in the WebSocket API.
   */
  writeClose(code: number = CloseCode.Normal, reason = ''): void {
    if (code === CloseCode.NoStatus) {
      if (reason !== '') throw new RangeError('writeClose: a close without a code (1005) has no reason');
    } else if (!isValidCloseCode(code)) throw new RangeError(`writeClose: ${String(code)} is not a close code that may be sent`);
    if (typeof reason !== 'string') throw new TypeError('writeClose: reason must be a string');
    if (Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) throw new RangeError(`writeClose: the reason is longer than ${MAX_CLOSE_REASON_BYTES} bytes`);
    if (this.#state !== WsState.Open) return;
    this._sendClose(code, reason);
    this._raw.setReadDeadline(Date.now() + this._owner.closeTimeout);
  }

  /** Closes the TCP connection now, without a close frame (what was written is still flushed); onClose receives `err`. */
  closeWithError(err: Error | null): void {
    if (err !== null && !(err instanceof Error)) throw new TypeError('closeWithError(err): err must be an Error or null');
    if (this.#state === WsState.Closed) return;
    this._localClose(err);
    // What was written is flushed first, a message still being compressed included.
    this._inOrder(() => this._raw.closeWithError(err));
  }

  /** Closes now and releases everything: queued data dropped, RST sent; onClose receives `err`. */
  closeAndClean(err: Error | null = null): void {
    if (err !== null && !(err instanceof Error)) throw new TypeError('closeAndClean(err): err must be an Error or null');
    if (this.#state === WsState.Closed) return;
    this._localClose(err);
    // Nothing waits: a message being compressed is dropped with its zlib state.
    this._sendQueue = null;
    this._pmd?.close();
    this._raw.closeAndClean(err);
  }

  /**
   * Closes the connection with TimeoutError("read timeout") if still open
   * at `deadline` (a Date or Date.now() + ms); null or 0 clears it. With
   * keepalive on (the Upgrader's keepaliveTime), the keepalive sweep moves
   * this deadline. A small number throws TypeError: use setReadTimeout(ms).
   */
  setReadDeadline(deadline: Deadline): void {
    this._raw.setReadDeadline(deadline);
  }

  /** Closes the connection with TimeoutError("write timeout") if written data is still waiting at `deadline`; null or 0 clears it. */
  setWriteDeadline(deadline: Deadline): void {
    this._raw.setWriteDeadline(deadline);
  }

  /** setReadDeadline(Date.now() + ms); 0 clears. */
  setReadTimeout(ms: number): void {
    this._raw.setReadTimeout(ms);
  }

  /** setWriteDeadline(Date.now() + ms); 0 clears. */
  setWriteTimeout(ms: number): void {
    this._raw.setWriteTimeout(ms);
  }

  /** Attaches a value to the connection (read back with `session`). */
  setSession(session: S): void {
    (this._x ??= new WsExtras()).session = session;
  }

  /** The value given to setSession(); undefined before. */
  get session(): S | undefined {
    return this._x?.session as S | undefined;
  }

  /** Bytes written but not yet taken by the kernel (see Conn.bufferedAmount). */
  /** Bytes written but not yet taken by the kernel, including messages waiting behind one being compressed. */
  get bufferedAmount(): number {
    return this._raw.bufferedAmount + (this._x?.queuedBytes ?? 0);
  }

  /** The peer's address, "127.0.0.1:50000"; still readable in onClose. */
  get remoteAddr(): string {
    return this._raw.remoteAddr;
  }

  /** 'native' (the engine's own descriptor) or 'node-stream' (a TLS socket from Node served through its stream); see Conn.transport. */
  get transport(): 'native' | 'node-stream' {
    return this._raw.transport;
  }

  /** 'blocking' (a reader thread of its own) or 'nonblocking' (the poller); see Engine's ioMode. */
  get ioMode(): 'blocking' | 'nonblocking' {
    return this._raw.ioMode;
  }

  /** This side's address, "127.0.0.1:8080". */
  get localAddr(): string {
    return this._raw.localAddr;
  }

  /** TLS facts of a wss:// connection (see Conn.tls); undefined over plain TCP (an engine may serve both: per-address tls). */
  get tls(): TlsInfo | undefined {
    return this._raw.tls;
  }

  // -------------------------------------------------------------------------
  // Writing frames

  /** @internal */
  _send(opcode: number, data: Uint8Array | string, fin: boolean, rsv1: boolean): void {
    const queue = this._sendQueue;
    if (queue !== null) this._enqueue(queue, () => this._sendNow(opcode, data, fin, rsv1), lengthOf(data));
    else this._sendNow(opcode, data, fin, rsv1);
  }

  /** @internal */
  _sendNow(opcode: number, data: Uint8Array | string, fin: boolean, rsv1: boolean): void {
    const raw = this._raw;
    // Run from the queue after the connection closed: nothing more goes out.
    if (raw.closed) return;
    if (this._owner.masked) {
      raw.writev(frame(opcode, data, { fin, rsv1, mask: true }));
      return;
    }
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    const n = writeFrameHeader(header, 0, opcode, len, fin, rsv1, null);
    raw.engine._writeBytes(raw, header, 0, n);
    if (len > 0) raw.write(data);
  }

  /** @internal */
  _control(opcode: number, data: Uint8Array | string, what: string): void {
    checkPayload(data, what);
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (len > MAX_CONTROL_PAYLOAD) throw new RangeError(`${what}: a control frame carries at most ${MAX_CONTROL_PAYLOAD} bytes`);
    if (this.#state !== WsState.Open) throw new NetClosedError();
    this._send(opcode, data, true, false);
  }

  /** @internal */
  _sendClose(code: number, reason: string): void {
    this.#state = WsState.CloseSent;
    if (code === CloseCode.NoStatus) {
      this._send(Opcode.Close, '', true, false); // echo an empty close as an empty close
      return;
    }
    const payload = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2, 'utf8');
    this._send(Opcode.Close, payload, true, false);
  }

  /** @internal */
  _localClose(err: Error | null): void {
    if (this._err === undefined) this._err = err;
    if (this.closeInfo === null) this.closeInfo = { code: CloseCode.Abnormal, reason: '', wasClean: false, initiator: 'local', error: err };
    this.#state = WsState.Dropped;
    // Nothing more is delivered, not even the rest of the bytes being parsed
    // now (this may be called from onMessage).
    this._receiver?.stop();
  }

  /** @internal The engine is stopping: close 1001, and whatever happens next counts as a clean close (the contract). */
  _goingAway(): void {
    if (this._err === undefined) this._err = CLEAN;
    if (this.#state === WsState.Open) this.writeClose(CloseCode.GoingAway, '');
  }

  // -------------------------------------------------------------------------
  // Events from the receiver and the raw connection (websocket/upgrader.ts)

  /** @internal The peer's ping: answered with a pong unless the owner handles pings itself. */
  _autoPong(data: Buffer): void {
    if (this.#state === WsState.Open) this._send(Opcode.Pong, data, true, false);
  }

  /** @internal The peer's close frame. */
  _peerClose(code: number, reason: string): void {
    if (this.#state >= WsState.Dropped) return;
    const weStarted = this.#state === WsState.CloseSent;
    if (this._err === undefined) {
      // A normal close, or the answer to ours, is no error; anything else is.
      this._err = weStarted || code === CloseCode.Normal ? CLEAN : new CloseError(code, reason);
    }
    if (this.closeInfo === null || weStarted) {
      // error is provisional until _closed(): a clean close depends on the transport in blocking mode.
      this.closeInfo = { code, reason, wasClean: true, initiator: weStarted ? 'local' : 'peer', error: this._err === CLEAN ? null : this._err };
    }
    if (!weStarted) this._sendClose(code, ''); // echo the code (RFC 6455 §5.5.1)
    // The server closes the TCP connection first (§7.1.1); a client would
    // wait for it, but waiting gains nothing here: our FIN follows our close
    // frame and the peer's close frame has been read. The close timeout
    // bounds the wait for the peer's FIN.
    this._inOrder(() => this._raw._closeWithin(this._owner.closeTimeout));
    this._owner.deliverCloseFrame(this, code, reason);
  }

  /** @internal A protocol violation by the peer, or its message over the memory budget: send its close code, deliver what was written, close. */
  _protocolError(err: ProtocolError | BudgetError): void {
    this._fail(err, err.closeCode);
  }

  /**
   * @internal Fails the connection from our side with `closeCode` (1011 for
   * a handler that threw, 1008 for a message timeout): the close frame goes
   * out after what was written (unless one went out already), then FIN;
   * nothing more is parsed or delivered, and onClose receives `err`.
   */
  _fail(err: Error, closeCode: number): void {
    if (this.#state >= WsState.Dropped) return;
    // A handler that threw while a clean close was under way (the close
    // handler itself) still makes that close a failure: onClose says so.
    if (this._err === undefined || (this._err === CLEAN && closeCode === CloseCode.InternalError)) this._err = err;
    if (this.closeInfo === null) this.closeInfo = { code: closeCode, reason: '', wasClean: false, initiator: 'local', error: err };
    this._receiver?.stop();
    if (this.#state === WsState.Open) this._sendClose(closeCode, '');
    this._inOrder(() => this._raw._closeWithin(this._owner.closeTimeout));
  }

  /** @internal The raw connection closed: report once. */
  _closed(transportErr: Error | null): void {
    if (this.#state === WsState.Closed) return;
    const weStarted = this.#state === WsState.CloseSent || this.#state === WsState.Dropped;
    this.#state = WsState.Closed;
    const err = this._err === CLEAN ? (this._raw._blocking ? transportErr : null) : this._err !== undefined ? this._err : transportErr;
    if (this.closeInfo === null) {
      // No close frame came back: our writeClose went unanswered, or the
      // connection just dropped.
      this.closeInfo = { code: CloseCode.Abnormal, reason: '', wasClean: false, initiator: weStarted ? 'local' : 'network', error: err };
    } else {
      this.closeInfo.error = err;
    }
    this._receiver?.stop();
    this._receiver = null;
    this._sendQueue = null;
    this._pmd?.close(); // cancels a compression or inflation still going on
    this._pmd = null;
    this._dropHeld();
    try {
      this._owner.deliverClose(this, err);
    } finally {
      // After onClose, which may still read `topics`.
      const own = this._x?.topics;
      if (own !== undefined) this._owner._topics?.leaveAll(this, own);
    }
  }

  /** @internal Frames held behind a fragmented message that will never end: released from the budget. */
  _dropHeld(): void {
    const x = this._x;
    if (x?.heldFrames == null) return;
    let bytes = 0;
    for (const f of x.heldFrames) bytes += f.length;
    x.heldFrames = null;
    this._raw.engine._receiveBudget.hold(-bytes);
  }
}
