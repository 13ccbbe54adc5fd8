// The node-stream transport: a connection whose bytes stay in a Node stream
// because its descriptor cannot be taken over (a TLS socket from `https`:
// the descriptor carries ciphertext that only Node's TLS state can read).
//
// It is the same Conn and the same protocol code (the WebSocket handshake,
// frames, the closing handshake, the close contract) over a different
// ConnEngine: writes go to stream.write() instead of the command array,
// deadlines are timers instead of the native heap, and the stream's events
// stand in for the poller's records. One adapter, not a second
// implementation; slower (every write and read crosses Node's stream
// machinery), and says so: conn.transport is 'node-stream'.
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { Conn, ConnState, type ConnEngine, type Deadline } from './conn.js';
import type { EngineStats } from './cluster.js';
import type { TopicHub } from './topics/hub.js';
import { formatAddress } from './address.js';
import { EOFError, HandlerError, OverflowError, SysError, TimeoutError } from './errors.js';

/** What the transport needs of the engine that owns it (Engine implements it). */
export interface StreamOwner {
  readonly options: { readonly maxWriteBufferSize: number; readonly closeTimeout: number };
  readonly running: boolean;
  addresses(): string[];
  stats(): EngineStats;
  stop(): Promise<void>;
  /** @internal */ readonly _receiveBudget: { hold(delta: number): boolean; readonly budget: number };
  /** @internal The connection ended: forget it (engine stop, keepalive sweeps). */
  _streamClosed(conn: Conn): void;
  /** @internal The engine's raw TCP topics. */
  readonly _topics: TopicHub<Conn>;
}

/** Reports an error of the application to the process, as an exception in a 'data' handler would be. */
function rethrow(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

function errnoOf(err: unknown): number | undefined {
  const e = err as { errno?: unknown };
  return typeof e?.errno === 'number' ? Math.abs(e.errno) : undefined;
}

// The one connection of a transport. Each transport is its own ConnEngine,
// so `engine` is held by the connection itself (an engine's own connections
// find it on their class's prototype instead: connClass in conn.ts).
class StreamConn extends Conn {
  constructor(transport: ConnEngine) {
    super(0, 0, undefined, undefined);
    Object.defineProperty(this, 'engine', { value: transport, enumerable: false, writable: false, configurable: false });
  }
}

export class StreamTransport implements ConnEngine {
  readonly #owner: StreamOwner;
  readonly #socket: Socket;
  readonly #onData: (conn: Conn, data: Buffer) => void;
  readonly #onClose: (conn: Conn, err: Error | null) => void;
  #conn: Conn | undefined = undefined;
  #readTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #writeTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  // What ended the stream as the transport saw it, when we did not close first.
  #transportErr: Error | null = null;
  #reported = false;
  /** @internal */ _now = Date.now();
  /** @internal */ readonly _transport = 'node-stream' as const;

  /**
   * `onData`/`onClose` are the owner's raw-connection handlers, used when the
   * Conn has no protocol (_proto) of its own.
   */
  constructor(owner: StreamOwner, socket: Socket, onData: (conn: Conn, data: Buffer) => void, onClose: (conn: Conn, err: Error | null) => void) {
    this.#owner = owner;
    this.#socket = socket;
    this.#onData = onData;
    this.#onClose = onClose;
  }

  /** The Conn over the stream; `open` sets it up (onOpen, or a protocol's handshake) before the first bytes. */
  open(open: (conn: Conn) => void, first: Buffer): Conn {
    const c = new StreamConn(this);
    this.#conn = c;
    const s = this.#socket;
    s.setNoDelay?.(true);
    s.on('data', (d: Buffer) => this.#data(d));
    s.on('end', () => {
      // A peer's FIN with nothing of ours in flight ends the connection, as
      // the poller reports it (EOFError); our own close waits for 'close'.
      if (c._state === ConnState.Open) {
        this.#transportErr = new EOFError();
        s.end();
      }
    });
    s.on('error', (err: Error) => {
      const errno = errnoOf(err);
      this.#transportErr ??= errno !== undefined ? new SysError(errno) : err;
    });
    s.on('close', () => this.#closed());
    open(c);
    if (first.length > 0) this.#data(first);
    return c;
  }

  #data(d: Buffer): void {
    const c = this.#conn!;
    if (c._state !== ConnState.Open) return; // input after a local close is discarded, as natively
    this._now = Date.now();
    try {
      if (c._proto !== undefined) c._proto.onData(c, d);
      else this.#onData(c, d);
    } catch (thrown) {
      const err = thrown instanceof Error ? thrown : new HandlerError(thrown);
      if ((c._state as ConnState) !== ConnState.Closed) {
        if (c._proto?.onHandlerError !== undefined) c._proto.onHandlerError(c, err);
        else c.closeWithError(err);
      }
      rethrow(thrown);
    }
  }

  #closed(): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#clearTimers();
    const c = this.#conn!;
    c._state = ConnState.Closed;
    this.#owner._streamClosed(c);
    // An error the user closed with wins; a plain close() is null unless it
    // lost data (the transport failed first).
    const err = c._closeErr ?? this.#transportErr;
    if (c._proto !== undefined) c._proto.onClose(c, err);
    else this.#onClose(c, err);
  }

  #clearTimers(): void {
    clearTimeout(this.#readTimer);
    clearTimeout(this.#writeTimer);
    clearTimeout(this.#closeTimer);
  }

  // -------------------------------------------------------------------------
  // ConnEngine

  get options(): { readonly maxWriteBufferSize: number } {
    return this.#owner.options;
  }
  get running(): boolean {
    return this.#owner.running;
  }
  addresses(): string[] {
    return this.#owner.addresses();
  }
  stats(): EngineStats {
    return this.#owner.stats();
  }
  stop(): Promise<void> {
    return this.#owner.stop();
  }
  /** @internal */
  get _online(): number {
    return this.#owner.stats().online;
  }
  /** @internal */
  get _receiveBudget(): { hold(delta: number): boolean; readonly budget: number } {
    return this.#owner._receiveBudget;
  }

  /** @internal */
  _write(c: Conn, data: Uint8Array | string): void {
    const s = this.#socket;
    if (s.destroyed || !s.writable) return; // the close is being reported
    s.write(data);
    if (s.writableLength > this.#owner.options.maxWriteBufferSize) {
      // The engine's stated policy: past the limit the connection closes and its queue is dropped.
      this._close(c, new OverflowError(this.#owner.options.maxWriteBufferSize), true);
    }
  }

  /** @internal A published message: Node's stream keeps a reference, no copy; skipped past the mark like the engine's. */
  _writeShared(c: Conn, data: Uint8Array, skipMark: number): void {
    if (skipMark > 0 && this.#socket.writableLength > skipMark) return;
    this._write(c, data);
  }

  /** @internal */
  get _topics(): TopicHub<Conn> {
    return this.#owner._topics;
  }

  /** @internal */
  _writeBytes(c: Conn, src: Uint8Array, start: number, end: number): void {
    if (end > start) this._write(c, Buffer.from(src.subarray(start, end))); // src is reused by the caller: copy
  }

  /** @internal */
  _close(c: Conn, err: Error | null, abortive: boolean, timeoutMs = 0): void {
    if (c._state === ConnState.Open) c._closeErr = err;
    else if (abortive && err !== null) c._closeErr = err;
    if (c._state === ConnState.Closed) return;
    c._state = ConnState.Closing;
    const s = this.#socket;
    if (abortive) {
      if (typeof s.resetAndDestroy === 'function' && (s as { encrypted?: boolean }).encrypted !== true) s.resetAndDestroy();
      else s.destroy();
      return;
    }
    // Graceful: what was written goes first, then FIN (end); released when
    // the peer closes its side, or after the close timeout.
    s.end();
    if (this.#closeTimer === undefined) {
      const ms = timeoutMs > 0 ? timeoutMs : this.#owner.options.closeTimeout;
      this.#closeTimer = setTimeout(() => {
        if (s.writableLength > 0 && c._closeErr == null) c._closeErr = new TimeoutError('write'); // our last bytes are lost
        s.destroy();
      }, ms);
      this.#closeTimer.unref();
    }
  }

  /** @internal */
  _setDeadline(c: Conn, kind: 0 | 1, deadline: Deadline): void {
    if (c._state === ConnState.Closed) return;
    const at = deadline === null || deadline === 0 ? null : deadline instanceof Date ? deadline.getTime() : deadline;
    if (kind === 0) {
      clearTimeout(this.#readTimer);
      this.#readTimer = undefined;
      if (at === null) return;
      this.#readTimer = setTimeout(() => {
        if (c._state !== ConnState.Open) return;
        this.#transportErr = new TimeoutError('read');
        this._close(c, null, true);
      }, Math.max(0, at - Date.now()));
      this.#readTimer.unref();
      return;
    }
    clearTimeout(this.#writeTimer);
    this.#writeTimer = undefined;
    if (at === null) return;
    this.#writeTimer = setTimeout(() => {
      if (c._state === ConnState.Closed || this.#socket.writableLength === 0) return;
      this.#transportErr = new TimeoutError('write');
      this._close(c, null, true);
    }, Math.max(0, at - Date.now()));
    this.#writeTimer.unref();
  }

  /** @internal */
  _bufferedAmount(_c: Conn): number {
    return this.#socket.writableLength;
  }

  /** @internal */
  _address(_c: Conn, peer: boolean): string | undefined {
    const s = this.#socket;
    const host = peer ? s.remoteAddress : s.localAddress;
    if (host === undefined) return undefined;
    const family = (peer ? s.remoteFamily : host.includes(':') ? 'IPv6' : 'IPv4') ?? 'IPv4';
    return formatAddress(family, host, (peer ? s.remotePort : s.localPort) ?? 0);
  }
}
