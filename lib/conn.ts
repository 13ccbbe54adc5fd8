// Conn: one connection of an Engine, raw TCP or Unix stream.
//
// Writes are not system calls: they are appended to the engine's command
// array and flushed once per batch (or at the end of the current tick), so
// that each connection gets one corked sendmsg. Everything that closes a
// connection is ordered after the writes made before it.
import { Buffer } from 'node:buffer';
import { NetClosedError, OverflowError } from './errors.js';
import { checkInt, MAX_MS } from './options.js';
import { publishArgs } from './topics/hub.js';
import type { EngineStats } from './cluster.js';
import type { TlsInfo } from './tls.js';
import type { TopicHub } from './topics/hub.js';

/** Connection states as the JS side sees them. */
export const enum ConnState {
  Open = 0,
  Closing = 1, // close requested; onClose not yet called
  Closed = 2, // onClose called
}

/** An absolute time (a Date, or epoch ms: Date.now() + ms), or null (or 0) for none. */
export type Deadline = Date | number | null;

// Epoch milliseconds below this (1973) are not a time anyone means: such a
// number passed as a deadline is a duration (setReadDeadline(5000)), which
// would otherwise expire at once and close the connection.
const MIN_EPOCH_MS = 1e11;

function checkAbsolute(what: 'setReadDeadline' | 'setWriteDeadline', deadline: Deadline): void {
  if (typeof deadline === 'number' && deadline > 0 && deadline < MIN_EPOCH_MS) {
    const relative = what === 'setReadDeadline' ? 'setReadTimeout' : 'setWriteTimeout';
    throw new TypeError(`${what} takes an absolute time (Date or Date.now() + ms); use ${relative}(ms) for a duration`);
  }
}

/** A duration as the deadline it ends at: null (cleared) for 0. */
export function timeoutDeadline(what: string, ms: unknown): Deadline {
  return checkInt(`${what}(ms)`, ms, 0, MAX_MS) === 0 ? null : Date.now() + (ms as number);
}

// Writes larger than this are checked against maxWriteBufferSize when they
// are made. The check asks native for the connection's queue, which first
// flushes the batch's corked writes: too dear for every small write, nothing
// next to copying a MiB. Small writes can only overflow by piling up, and
// that closes the connection with OverflowError as before (the limit's policy).
const LARGE_WRITE = 1024 * 1024;

/**
 * @internal Throws OverflowError, so that nothing is queued, when `bytes`
 * more would take the connection's queue past maxWriteBufferSize (the bytes
 * queued now plus these, as if the kernel took none of them at once).
 * `units` is a lower bound of `bytes` (a string's length) that is cheap to
 * know: below the threshold, `bytes` is never computed.
 */
export function checkRoom(conn: Conn, what: string, units: number, bytes: () => number): void {
  const limit = conn.engine.options.maxWriteBufferSize;
  if (units <= LARGE_WRITE && units <= limit) return;
  const size = bytes();
  const queued = size > limit ? 0 : conn.bufferedAmount;
  if (size + queued <= limit) return;
  throw new OverflowError(
    limit,
    `${what}: ${size} bytes${queued > 0 ? ` with ${queued} already queued` : ''} would exceed maxWriteBufferSize (${limit}); nothing was queued and the connection is open`,
  );
}

function byteLengthOf(data: Uint8Array | string): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}

/**
 * The engine a connection belongs to, as the connection sees it: Engine
 * implements it. An interface rather than the Engine class, so that this
 * module does not import the engine that imports it.
 */
export interface ConnEngine {
  /** The engine's options, defaults filled in (Engine.options). */
  readonly options: {
    /** Bytes a connection may have queued (EngineOptions.maxWriteBufferSize). */
    readonly maxWriteBufferSize: number;
  };
  /** Whether the engine runs. */
  readonly running: boolean;
  /** The addresses the engine listens on. */
  addresses(): string[];
  /** The engine's connection counters. */
  stats(): EngineStats;
  /** Stops the engine, closing every connection (see Engine.stop). */
  stop(): Promise<void>;
  /** @internal */ readonly _now: number;
  /** @internal 'native': the engine's own descriptor; 'node-stream': a Node stream it could not take over (TLS). */
  readonly _transport: 'native' | 'node-stream';
  /** @internal */ readonly _online: number;
  /** @internal */ _write(c: Conn, data: Uint8Array | string): void;
  /** @internal */ _writeBytes(c: Conn, src: Uint8Array, start: number, end: number): void;
  /** @internal `data` shared by many connections' writes (a published message); dropped when the queue holds more than `skipMark` > 0 bytes. */
  _writeShared(c: Conn, data: Uint8Array, skipMark: number): void;
  /** @internal The raw TCP topics of the engine (Conn.subscribe). */
  readonly _topics: TopicHub<Conn>;
  /** @internal */ _close(c: Conn, err: Error | null, abortive: boolean, timeoutMs?: number): void;
  /** @internal */ _setDeadline(c: Conn, kind: 0 | 1, deadline: Deadline): void;
  /** @internal */ _bufferedAmount(c: Conn): number;
  /** @internal */ _address(c: Conn, peer: boolean): string | undefined;
  /** @internal A TLS connection's facts; absent on transports without native TLS. */
  _tlsInfo?(c: Conn): TlsInfo | undefined;
  /** @internal The memory budget that protocols' buffers count against (Engine._hold; websocket/receiver.ts ReceiveBudget). */
  readonly _receiveBudget: { hold(delta: number): boolean; readonly budget: number };
}

/**
 * @internal A protocol layered on raw connections (lib/websocket). The engine
 * calls it instead of its own onData/onClose/onDrain for connections whose
 * _proto is set.
 */
export interface ConnProtocol {
  onData(conn: Conn, data: Buffer): void;
  onClose(conn: Conn, err: Error | null): void;
  onDrain(conn: Conn): void;
  /** An application handler called from onData (or at open) threw `err`: fail the connection the protocol's way. */
  onHandlerError?(conn: Conn, err: Error): void;
}

/**
 * What most connections never need: kept out of Conn itself and allocated on
 * first use, because every field of an object that lives as long as its
 * connection costs 8 bytes per connection (for 100,000 idle connections, a
 * field is 800 KB of heap and more of young generation while they arrive).
 */
class ConnExtras {
  closeErr: Error | null | undefined = undefined;
  drainHandler: ((conn: Conn) => void) | undefined = undefined;
  local: string | undefined = undefined;
  remote: string | undefined = undefined;
  session: unknown = undefined;
  topics: Set<string> | undefined = undefined;
  blocking = false;
}

/**
 * One connection of an Engine (raw TCP or a Unix stream socket). `S` is
 * the type of the value attached with setSession().
 */
export class Conn<S = unknown> {
  /** @internal */ _slot: number;
  /** @internal */ _gen: number;
  /** @internal */ _state: ConnState = ConnState.Open;
  /** @internal The rarely used fields (ConnExtras), or undefined while none was set. */
  _x: ConnExtras | undefined = undefined;
  /**
   * @internal The protocol running on this connection (the WebSocket
   * handshake, then the WebSocket itself), or undefined for raw bytes given
   * to the engine's onData. One shared handler object per protocol; the
   * per-connection state lives in _protoState.
   */
  _proto: ConnProtocol | undefined = undefined;
  /** @internal */ _protoState: unknown = undefined;
  /**
   * The engine this connection belongs to. Not a field of each connection:
   * it lives on the prototype of the engine's own Conn class (connClass),
   * 8 bytes less per connection.
   */
  declare readonly engine: ConnEngine;

  /** @internal */
  constructor(slot: number, gen: number, local: string | undefined, remote: string | undefined) {
    this._slot = slot;
    this._gen = gen;
    if (local !== undefined) this._local = local;
    if (remote !== undefined) this._remote = remote;
  }

  /**
   * @internal Served by a reader thread of its own (blocking I/O) rather than
   * the poller. In ConnExtras: a blocking connection has a thread, next to
   * which the extras are nothing, and the others save the field.
   */
  get _blocking(): boolean {
    return this._x?.blocking ?? false;
  }
  /** @internal */
  set _blocking(blocking: boolean) {
    if (blocking || this._x !== undefined) (this._x ??= new ConnExtras()).blocking = blocking;
  }

  /** @internal The error the user closed with (closeWithError, closeAndClean); undefined if none. */
  get _closeErr(): Error | null | undefined {
    return this._x?.closeErr;
  }
  /** @internal */
  set _closeErr(err: Error | null | undefined) {
    (this._x ??= new ConnExtras()).closeErr = err;
  }

  /** @internal */
  get _drainHandler(): ((conn: Conn) => void) | undefined {
    return this._x?.drainHandler;
  }

  /** @internal The local address, once known. */
  get _local(): string | undefined {
    return this._x?.local;
  }
  /** @internal */
  set _local(addr: string | undefined) {
    (this._x ??= new ConnExtras()).local = addr;
  }

  /** @internal The peer's address, once known (kept past the close, for onClose). */
  get _remote(): string | undefined {
    return this._x?.remote;
  }
  /** @internal */
  set _remote(addr: string | undefined) {
    (this._x ??= new ConnExtras()).remote = addr;
  }

  /**
   * How this connection is read: 'blocking' (a native thread of its own) or
   * 'nonblocking' (the engine's poller). Fixed at accept or connect; in the
   * engine's 'mixed' mode it depends on how many were online then.
   */
  get ioMode(): 'blocking' | 'nonblocking' {
    return this._blocking ? 'blocking' : 'nonblocking';
  }

  /**
   * 'native': served on the engine's own descriptor (accepted, dialed or
   * adopted from Node). 'node-stream': a socket whose descriptor could not be
   * taken over (a TLS socket from `https`), served through Node's stream with
   * the same API and close contract, at Node's speed.
   */
  get transport(): 'native' | 'node-stream' {
    return this.engine._transport;
  }

  /** True once close(), closeWithError() or closeAndClean() was called, or the connection closed. */
  get closed(): boolean {
    return this._state !== ConnState.Open;
  }

  /**
   * Queues bytes for sending. Strings are sent as UTF-8. Small writes are
   * copied at once; a buffer larger than 16 KiB is read when the batch is
   * flushed (the end of the current tick), so do not modify it before then.
   * Throws NetClosedError after the connection was closed, and OverflowError
   * (nothing queued, the connection stays open) when the data alone, or
   * with what is queued already, is more than maxWriteBufferSize; that is
   * checked for writes over 1 MiB (or over the limit), smaller ones that
   * pile up past it close the connection with OverflowError.
   */
  write(data: Uint8Array | string): void {
    if (this._state !== ConnState.Open) throw new NetClosedError();
    if (typeof data === 'string' || data instanceof Uint8Array) checkRoom(this, 'write', data.length, () => byteLengthOf(data));
    this.engine._write(this, data);
  }

  /** Queues several buffers, in order, as one write; all or nothing, with write()'s checks on their total size. */
  writev(list: ReadonlyArray<Uint8Array | string>): void {
    if (this._state !== ConnState.Open) throw new NetClosedError();
    if (!Array.isArray(list)) throw new TypeError('writev(list): list must be an array of Buffers or strings');
    // All or nothing: a bad element must not leave the ones before it queued
    // (in a framed protocol that would corrupt the stream).
    let units = 0;
    for (let i = 0; i < list.length; i++) {
      const data: unknown = list[i];
      if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
        throw new TypeError(`writev(list): list[${i}] must be a Buffer, Uint8Array or string, got ${data === null ? 'null' : typeof data}`);
      }
      units += data.length;
    }
    checkRoom(this, 'writev', units, () => list.reduce((sum: number, data) => sum + byteLengthOf(data), 0));
    for (const data of list) this.engine._write(this, data);
  }

  /** Bytes written but not yet taken by the kernel (queued in native memory or not yet flushed). */
  get bufferedAmount(): number {
    return this.engine._bufferedAmount(this);
  }

  /** Sets the function called each time this connection's write queue becomes empty. */
  onDrain(handler: ((conn: Conn<S>) => void) | null): void {
    if (handler !== null && typeof handler !== 'function') throw new TypeError('onDrain(handler): handler must be a function or null');
    if (handler !== null || this._x !== undefined) (this._x ??= new ConnExtras()).drainHandler = (handler as ((conn: Conn) => void) | null) ?? undefined;
  }

  /**
   * Closes gracefully: what was written is delivered first, then FIN; the
   * connection is released when the peer closes its side (or after
   * `closeTimeout`). onClose receives null, or the error that lost data;
   * a blocking connection's reader reports the close it ran into
   * (NetClosedError), or the peer's FIN if that came first (EOFError).
   */
  close(): void {
    if (this._state !== ConnState.Open) return;
    this.engine._close(this, null, false);
  }

  /** @internal close() bounded by `timeoutMs` instead of the engine's closeTimeout (a WebSocket's own close timeout). */
  _closeWithin(timeoutMs: number): void {
    if (this._state !== ConnState.Open) return;
    this.engine._close(this, null, false, timeoutMs);
  }

  /** Closes like close(), and onClose receives `err`. */
  closeWithError(err: Error | null): void {
    if (err !== null && !(err instanceof Error)) throw new TypeError('closeWithError(err): err must be an Error or null');
    if (this._state !== ConnState.Open) return;
    this.engine._close(this, err, false);
  }

  /**
   * Closes at once and releases everything: queued data is dropped and the
   * peer gets a reset (RST). onClose receives `err`.
   */
  closeAndClean(err: Error | null = null): void {
    if (err !== null && !(err instanceof Error)) throw new TypeError('closeAndClean(err): err must be an Error or null');
    if (this._state === ConnState.Closed) return;
    this.engine._close(this, err, true);
  }

  /**
   * Closes the connection with TimeoutError("read timeout"; "i/o timeout"
   * for a blocking connection, whose blocked read times out) if it is still
   * open at `deadline` (a Date or epoch milliseconds, like Date.now() + ms).
   * null or 0 clears it. Reading does not move it: set it again to extend
   * it. A small number (a duration, not a time) throws TypeError: use
   * setReadTimeout(ms) for that.
   */
  setReadDeadline(deadline: Deadline): void {
    checkAbsolute('setReadDeadline', deadline);
    this.engine._setDeadline(this, 0, deadline);
  }

  /**
   * Closes the connection with TimeoutError("write timeout") if, at
   * `deadline`, written data is still waiting for the peer. null or 0 clears
   * it. A small number throws TypeError: use setWriteTimeout(ms).
   */
  setWriteDeadline(deadline: Deadline): void {
    checkAbsolute('setWriteDeadline', deadline);
    this.engine._setDeadline(this, 1, deadline);
  }

  /** setReadDeadline(Date.now() + ms): the connection is closed if still open `ms` from now. 0 clears. */
  setReadTimeout(ms: number): void {
    this.engine._setDeadline(this, 0, timeoutDeadline('setReadTimeout', ms));
  }

  /** setWriteDeadline(Date.now() + ms): written data must be taken by the peer within `ms`. 0 clears. */
  setWriteTimeout(ms: number): void {
    this.engine._setDeadline(this, 1, timeoutDeadline('setWriteTimeout', ms));
  }

  /** Attaches a value to the connection (read back with `session`). */
  setSession(session: S): void {
    (this._x ??= new ConnExtras()).session = session;
  }

  /** @internal This connection's topics, once it subscribed to one. */
  get _topicSet(): Set<string> | undefined {
    return this._x?.topics;
  }

  /**
   * Subscribes this connection to `topic` (a string of 1 to
   * topics.maxTopicLength characters): Engine.publish(topic) and other
   * connections' publish(topic) send to it from now on, until
   * unsubscribe() or its close. Returns false if it was subscribed already.
   * Throws RangeError past topics.maxTopicsPerConnection.
   */
  subscribe(topic: string): boolean {
    const hub = this.engine._topics;
    hub.check('subscribe', topic);
    if (this._state !== ConnState.Open) throw new NetClosedError();
    return hub.subscribe(this, ((this._x ??= new ConnExtras()).topics ??= new Set()), topic);
  }

  /** Unsubscribes this connection from `topic`; false if it was not subscribed. */
  unsubscribe(topic: string): boolean {
    const own = this._x?.topics;
    this.engine._topics.check('unsubscribe', topic);
    return own !== undefined && this.engine._topics.unsubscribe(this, own, topic);
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
   * Engine.publish() from this connection: every subscriber of `topic`
   * receives `data` but this connection (subscribed or not). Returns the
   * local subscribers it was queued for now.
   */
  publish(topic: string, data: Uint8Array | string, type?: 'text' | 'binary'): number {
    const hub = this.engine._topics;
    hub.check('publish', topic);
    const a = publishArgs('publish', topic, data, type);
    return hub.publish(topic, a.bytes, a.type, this);
  }

  /** The value given to setSession(); undefined before. */
  get session(): S | undefined {
    return this._x?.session as S | undefined;
  }

  /** "127.0.0.1:8080", "[::1]:8080" or "unix:/path". */
  get localAddr(): string {
    this._local ??= this.engine._address(this, false);
    return this._local ?? '';
  }

  /** TLS facts (protocol, cipher, ALPN, SNI name, resumed) of a TLS connection; undefined for a plain one. */
  get tls(): TlsInfo | undefined {
    return this.engine._tlsInfo?.(this);
  }

  /** The peer's address; for Unix sockets the peer is usually unnamed ("unix:"). */
  get remoteAddr(): string {
    this._remote ??= this.engine._address(this, true);
    return this._remote ?? '';
  }
}

/** @internal A Conn class whose connections belong to one engine (connClass). */
export type ConnClass = new (slot: number, gen: number, local: string | undefined, remote: string | undefined) => Conn;

/**
 * @internal The Conn class of one engine: `engine` is a property of its
 * prototype, shared by every connection instead of held by each. Made once
 * per engine (a class per engine, not per connection: all of an engine's
 * connections keep one hidden class).
 */
export function connClass(engine: ConnEngine): ConnClass {
  class EngineConn extends Conn {}
  Object.defineProperty(EngineConn.prototype, 'engine', { value: engine, enumerable: false, writable: false, configurable: false });
  return EngineConn;
}
