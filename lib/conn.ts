// Conn: one connection of an Engine, raw TCP or Unix stream.
//
// Writes are not system calls: they are appended to the engine's command
// array and flushed once per batch (or at the end of the current tick), so
// that each connection gets one corked sendmsg. Everything that closes a
// connection is ordered after the writes made before it.
import { NetClosedError } from './errors.js';
import type { Engine } from './engine.js';

/** Connection states as the JS side sees them. */
export const enum ConnState {
  Open = 0,
  Closing = 1, // close requested; onClose not yet called
  Closed = 2, // onClose called
}

export type Deadline = Date | number | null;

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
}

export class Conn {
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
  /** @internal Served by a reader thread of its own (blocking I/O) rather than the poller. */
  _blocking = false;
  readonly engine: Engine;

  /** @internal */
  constructor(engine: Engine, slot: number, gen: number, local: string | undefined, remote: string | undefined) {
    this.engine = engine;
    this._slot = slot;
    this._gen = gen;
    if (local !== undefined) this._local = local;
    if (remote !== undefined) this._remote = remote;
  }

  /** @internal The error the user closed with (closeWithError, closeAndClean); undefined if none. */
  get _closeErr(): Error | null | undefined {
    return this._x?.closeErr;
  }
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
  set _local(addr: string | undefined) {
    (this._x ??= new ConnExtras()).local = addr;
  }

  /** @internal The peer's address, once known (kept past the close, for onClose). */
  get _remote(): string | undefined {
    return this._x?.remote;
  }
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

  /** True once close(), closeWithError() or closeAndClean() was called, or the connection closed. */
  get closed(): boolean {
    return this._state !== ConnState.Open;
  }

  /**
   * Queues bytes for sending. Strings are sent as UTF-8. Small writes are
   * copied at once; a buffer larger than 16 KiB is read when the batch is
   * flushed (the end of the current tick), so do not modify it before then.
   * Throws NetClosedError after the connection was closed.
   */
  write(data: Uint8Array | string): void {
    if (this._state !== ConnState.Open) throw new NetClosedError();
    this.engine._write(this, data);
  }

  /** Queues several buffers, in order, as one write. */
  writev(list: ReadonlyArray<Uint8Array | string>): void {
    if (this._state !== ConnState.Open) throw new NetClosedError();
    if (!Array.isArray(list)) throw new TypeError('writev(list): list must be an array of Buffers or strings');
    // All or nothing: a bad element must not leave the ones before it queued
    // (in a framed protocol that would corrupt the stream).
    for (let i = 0; i < list.length; i++) {
      const data: unknown = list[i];
      if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
        throw new TypeError(`writev(list): list[${i}] must be a Buffer, Uint8Array or string, got ${data === null ? 'null' : typeof data}`);
      }
    }
    for (const data of list) this.engine._write(this, data);
  }

  /** Bytes written but not yet taken by the kernel (queued in native memory or not yet flushed). */
  get bufferedAmount(): number {
    return this.engine._bufferedAmount(this);
  }

  /** Sets the function called each time this connection's write queue becomes empty. */
  onDrain(handler: ((conn: Conn) => void) | null): void {
    if (handler !== null && typeof handler !== 'function') throw new TypeError('onDrain(handler): handler must be a function or null');
    if (handler !== null || this._x !== undefined) (this._x ??= new ConnExtras()).drainHandler = handler ?? undefined;
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
   * open at `deadline` (a Date or epoch milliseconds, like Date.now()). null
   * or 0 clears it. Reading does not move it: set it again to extend it.
   */
  setReadDeadline(deadline: Deadline): void {
    this.engine._setDeadline(this, 0, deadline);
  }

  /**
   * Closes the connection with TimeoutError("write timeout") if, at
   * `deadline`, written data is still waiting for the peer. null or 0 clears it.
   */
  setWriteDeadline(deadline: Deadline): void {
    this.engine._setDeadline(this, 1, deadline);
  }

  /** Attaches any value to the connection. */
  setSession(session: unknown): void {
    (this._x ??= new ConnExtras()).session = session;
  }

  get session(): unknown {
    return this._x?.session;
  }

  /** "127.0.0.1:8080", "[::1]:8080" or "unix:/path". */
  get localAddr(): string {
    this._local ??= this.engine._address(this, false);
    return this._local ?? '';
  }

  /** The peer's address; for Unix sockets the peer is usually unnamed ("unix:"). */
  get remoteAddr(): string {
    this._remote ??= this.engine._address(this, true);
    return this._remote ?? '';
  }
}
