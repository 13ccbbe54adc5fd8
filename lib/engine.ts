// Engine: configuration, listening and dialing, the token -> Conn table, and
// the batch dispatch: native hands over one batch of records per loop
// iteration, JS answers with one command array (native.ts has the layout).
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { constants as osConstants, totalmem } from 'node:os';
import { Conn, ConnState, connClass, type ConnEngine, type ConnProtocol, type Deadline } from './conn.js';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseAddress, resolveHost, formatAddress, type ParsedAddress } from './address.js';
import { canServeAsStream, detach, release, whyNotAdoptable } from './adopt.js';
import { StreamTransport, type StreamOwner } from './stream-transport.js';
import { BurstWatcher, PEAK_THRESHOLD, PeakWatcher } from './memory.js';
import { boolOption, callbackOption, checkInt, checkKnownOptions } from './options.js';
import { clusterOptions, createCluster, type EngineCluster, type EngineStats, type SupervisorOptions, type WorkerStats } from './cluster.js';
import { clientContext, handshakeError, protocolError, serverContext, type TlsClientOptions, type TlsInfo, type TlsServerOptions } from './tls.js';
import { TopicHub, publishArgs, pubsubOption, topicsOption, type TopicsOptions } from './topics/hub.js';
import type { PubSubAdapter } from './pubsub/adapter.js';
import {
  BudgetError,
  EOFError,
  TLSTruncationError,
  type TLSHandshakeError,
  HandlerError,
  NetClosedError,
  OverflowError,
  SysError,
  TimeoutError,
} from './errors.js';
import {
  binding,
  CMD_CLOSE,
  CMD_DEADLINE,
  CMD_WRITE,
  CMD_WRITE_REF,
  REASON_EOF,
  REASON_ERRNO,
  REASON_LOCAL,
  REASON_STOP,
  REASON_OVERFLOW,
  REASON_BUDGET,
  REASON_TLS,
  REASON_TLS_TRUNCATED,
  REC_TLS_FAIL,
  REASON_READ_TIMEOUT,
  REASON_WRITE_TIMEOUT,
  RECORD_INTS,
  REC_CLOSE,
  REC_DATA,
  REC_DIAL_FAIL,
  REC_DRAIN,
  REC_OPEN,
  ADOPTED_LISTENER,
  IO_BLOCKING,
  IO_MIXED,
  IO_NONBLOCKING,
  STATS_LENGTH,
  METER_HELD,
  METER_LENGTH,
  METER_QUEUED,
  type EngineHandle,
  type NativeAddress,
  type NativeTlsContext,
} from './native.js';

/** Options of new Engine(); `S` is the type of each connection's session (Conn.setSession). */
export interface EngineOptions<S = unknown> {
  /**
   * Addresses to listen on: "127.0.0.1:8080", "[::1]:8080", ":8080",
   * "unix:/tmp/app.sock", or `{ addr, tls }` for an address with TLS
   * settings of its own (ListenAddress): a plain port and a TLS port, or two
   * certificates, in one engine.
   */
  addrs?: (string | ListenAddress)[];
  /** A connection opened (accepted, or dialed by this engine). */
  onOpen?: (conn: Conn<S>) => void;
  /**
   * Bytes arrived. `data` is a view of the engine's receive buffer, valid
   * until this callback returns: copy it (Buffer.from(data)) to keep it.
   */
  onData?: (conn: Conn<S>, data: Buffer) => void;
  /** The connection closed: called exactly once, with null or the reason (errors.ts). */
  onClose?: (conn: Conn<S>, err: Error | null) => void;
  /** A connection's write queue became empty. */
  onDrain?: (conn: Conn<S>) => void;
  /**
   * listen() backlog. Default: the system's limit (Linux: net.core.somaxconn,
   * read once), else 511. A burst of connects larger than the backlog has
   * SYNs dropped and retried a second later.
   */
  backlog?: number;
  /** SO_REUSEPORT on listeners, so that several engines can share a port. Default false. */
  reusePort?: boolean;
  /** TCP_NODELAY on every TCP connection. Default true. */
  noDelay?: boolean;
  /** Bytes a connection may have queued; past it the connection closes with OverflowError. Default 64 MiB. */
  maxWriteBufferSize?: number;
  /**
   * Backpressure: a connection whose write queue holds more than this many
   * bytes is no longer read (its peer sends faster than it takes the
   * answers) until the queue is down to writeLowWaterMark; TCP flow control
   * then slows the peer down. 0 disables pausing. Default 1 MiB.
   */
  writeHighWaterMark?: number;
  /** Where reading resumes (bytes queued). Default 256 KiB, at most writeHighWaterMark. */
  writeLowWaterMark?: number;
  /**
   * Bytes the whole engine may hold for its peers: every write queue plus
   * every unfinished WebSocket message. The connection that would take it
   * past this is failed with BudgetError (WebSocket close 1013); the others
   * are untouched. 0: no budget. Default: an eighth of the machine's
   * memory, at most 256 MiB.
   */
  memoryBudget?: number;
  /** Online connections; more are closed at accept. Default 1,000,000. */
  maxLoad?: number;
  /** A graceful close waits this long (ms) for the peer to take our data and close its side. Default 5000. */
  closeTimeout?: number;
  /** dial() gives up after this many ms. Default 10000. */
  dialTimeout?: number;
  /** The receive slab: bytes read per loop iteration at most. Default 1 MiB. */
  readBufferSize?: number;
  /** Bytes read from one connection per iteration, so one busy peer cannot starve the rest. Default 64 KiB. */
  readBudget?: number;
  /** Poller events handled per iteration (at most 1024). Default 1024. */
  maxEventsPerIteration?: number;
  /** Whether the running engine keeps the process alive. Default true. */
  ref?: boolean;
  /**
   * Who reads the connections (README, "I/O modes"):
   * - 'nonblocking': the engine's poller, on this thread (default);
   * - 'blocking': a native thread per connection, doing blocking reads;
   * - 'mixed': blocking while fewer than maxBlockingOnline connections have
   *   a thread, non-blocking beyond that.
   * The API is the same in every mode; what onClose receives differs where
   * DESIGN.md's close contract says so. Conn.ioMode tells which one a
   * connection got.
   */
  ioMode?: IoMode;
  /**
   * After this many connections opened in a burst and then a second without
   * one, ask V8 to give back the memory the burst grew (lib/memory.ts,
   * releaseMemory()): one incremental collection, a few ms. 0 disables it.
   * Default 1,000.
   */
  releaseMemoryAfterBurst?: number;
  /** 'mixed' mode: connections served by a thread of their own, at most. Default 1,000. */
  maxBlockingOnline?: number;
  /** Blocking mode: stack of each reader thread, bytes. Default 64 KiB. */
  readerStackSize?: number;
  /** Blocking mode: each reader thread's read buffer, bytes. Default 16 KiB. */
  readerBufferSize?: number;
  /**
   * Serve WebSocket (and plain HTTP) on the accepted connections with this
   * upgrader instead of onOpen/onData/onClose (which must then be left out).
   */
  upgrader?: EngineUpgrader;
  /**
   * Run the engine in this many supervised worker processes (workers.ts)
   * sharing the addresses with SO_REUSEPORT. 0 or absent: in this process.
   */
  workers?: number;
  /** With `workers`: what the workers run, timeouts, restart backoff, and the onWorkerExit/onWorkerListening reports. */
  supervisor?: SupervisorOptions;
  /**
   * Serve TLS on every address that has no `tls` of its own (docs/tls.md):
   * certificate, key, SNI certificates, ALPN, versions, client
   * certificates. Checked at once: a bad PEM, a wrong passphrase or a key
   * that is not the certificate's throws here, saying which.
   * Engine.setSecureContext replaces it live.
   */
  tls?: TlsServerOptions;
  /** A TLS handshake must complete within this many ms, or the connection is dropped (TLSHandshakeError). Default 10000. */
  tlsHandshakeTimeout?: number;
  /** Bytes a peer may send during a TLS handshake (a hostile ClientHello flood); past it the connection is dropped. Default 65536. */
  tlsMaxHandshakeSize?: number;
  /**
   * An accepted connection's TLS handshake failed (bad client, scanner,
   * timeout): the connection never reached onOpen. `remoteAddr` is the
   * peer. Default: ignored (stats().tlsFailed counts them).
   */
  onTLSError?: (err: TLSHandshakeError, remoteAddr: string | undefined) => void;
  /** Raw TCP topics (Conn.subscribe, Engine.publish): name limits and the slow-subscriber policy (docs/topics.md). */
  topics?: TopicsOptions;
  /**
   * Carries raw TCP publishes to other servers (a PubSubAdapter, e.g. on
   * Redis). Default: none; with `workers`, the primary relays between the
   * worker processes unless an adapter is given here.
   */
  pubsub?: PubSubAdapter;
}

/** An `addrs` entry with settings of its own. */
export interface ListenAddress {
  /** The address, as in a string entry: "127.0.0.1:8443", "[::1]:8443", ":8443", "unix:/path". */
  addr: string;
  /**
   * This address's TLS: settings of its own (a certificate for this port),
   * or false for plain TCP even when EngineOptions.tls is set. Absent: the
   * engine's `tls`, as a string entry has.
   */
  tls?: TlsServerOptions | false;
}

/** Options of Engine.dial(). */
export interface EngineDialOptions {
  /** Give up after this many ms (TimeoutError "dial timeout"). Default: the engine's dialTimeout. */
  timeout?: number;
  /**
   * Speak TLS (true: the defaults): the server's certificate is verified
   * against Node's root certificates (or `ca`) and must be for `servername`
   * (default: the dialed host); the dial rejects with a TLSHandshakeError
   * that says why otherwise. onOpen runs once the handshake is done.
   */
  tls?: boolean | TlsClientOptions;
}

/**
 * What the Engine takes as its `upgrader`: an Upgrader
 * (websocket/upgrader.ts). Its members are internal: what the engine needs
 * of a protocol that takes over accepted connections.
 */
export interface EngineUpgrader {
  /** @internal Called once, when the engine is constructed with this upgrader. */
  attach(engine: Engine): void;
  /** @internal A connection was accepted: set conn._proto (and state) or handle it. */
  accept(conn: Conn): void;
  /** @internal The engine started (timers may start). */
  started(engine: Engine): void;
  /** @internal The engine is about to stop: say goodbye, then resolve. */
  stopping(engine: Engine): Promise<void> | void;
}

export type { EngineStats } from './cluster.js';

/** Who reads the connections: see EngineOptions.ioMode. */
export type IoMode = 'nonblocking' | 'blocking' | 'mixed';

const IO_MODES: Record<IoMode, number> = { nonblocking: IO_NONBLOCKING, blocking: IO_BLOCKING, mixed: IO_MIXED };

// Every option's name, checked against EngineOptions by the compiler, so
// that an unknown (misspelt, or another library's) name throws at the call.
const ENGINE_OPTIONS = {
  addrs: true, onOpen: true, onData: true, onClose: true, onDrain: true, backlog: true, reusePort: true, noDelay: true,
  maxWriteBufferSize: true, writeHighWaterMark: true, writeLowWaterMark: true, memoryBudget: true, maxLoad: true, closeTimeout: true, dialTimeout: true, readBufferSize: true, readBudget: true,
  maxEventsPerIteration: true, ref: true, ioMode: true, releaseMemoryAfterBurst: true, maxBlockingOnline: true,
  readerStackSize: true, readerBufferSize: true, upgrader: true, workers: true, supervisor: true,
  tls: true, tlsHandshakeTimeout: true, tlsMaxHandshakeSize: true, onTLSError: true, topics: true, pubsub: true,
} as const satisfies Record<keyof EngineOptions, true>;

const LISTEN_ADDRESS_OPTIONS = { addr: true, tls: true } as const satisfies Record<keyof ListenAddress, true>;

const DIAL_OPTIONS = { timeout: true, tls: true } as const satisfies Record<keyof EngineDialOptions, true>;

type EngineState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

interface PendingAdoption {
  gen: number;
  /** The connection's first input (what Node had read). */
  bytes: Buffer;
  open: ((conn: Conn) => void) | undefined;
  resolve: (conn: Conn) => void;
  reject: (err: Error) => void;
}

interface PendingDial {
  gen: number;
  remote: string;
  /** TLS: the name the certificate was checked against. */
  servername: string | undefined;
  proto: ConnProtocol | undefined;
  resolve: (conn: Conn) => void;
  reject: (err: Error) => void;
}

// Writes up to this size are copied into the out slab at once; larger ones
// are handed to native by reference when the batch is flushed.
const SMALL_WRITE = 16 * 1024;
const OUT_SLAB_SIZE = 1024 * 1024;
const CMD_CAPACITY = 8192;
// Records per JS call: enough for a full iteration (every event plus every
// accept of a few listeners); native splits larger batches.
const RECORD_CAPACITY = 8192;

const { ETIMEDOUT, ECANCELED } = osConstants.errno;

function noop(): void {}

let somaxconn: number | undefined;

// The kernel caps every backlog at somaxconn anyway; asking for it, as Go's
// net package does, lets a connect burst queue as deep as the system allows.
function systemBacklog(): number {
  if (somaxconn === undefined) {
    somaxconn = 511;
    try {
      const n = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
      if (Number.isInteger(n) && n >= 1) somaxconn = Math.min(n, 65535);
    } catch {
      // not Linux, or no /proc: Node's default
    }
  }
  return somaxconn;
}

// What a server may hold for its peers unless told otherwise: an eighth of
// the machine's memory, at most 256 MiB. Enough for many 16 MiB messages in
// flight at once and for every connection's queue up to the high-water mark
// on busy servers; small enough that 60 peers stalling almost whole 16 MiB
// messages (960 MiB) cannot take the process near the machine's limit.
function defaultMemoryBudget(): number {
  return Math.min(Math.floor(totalmem() / 8), 256 * 1024 * 1024);
}

/** An `addrs` entry's address string. */
function addrOf(entry: string | ListenAddress): string {
  return typeof entry === 'string' ? entry : entry.addr;
}

// One `addrs` entry, checked: its copy (a frozen object entry) and its TLS
// context: its own, false for plain TCP, undefined for the engine's `tls`.
// Entries that share one options object share one context.
function listenEntry(i: number, entry: unknown, contexts: Map<object, NativeTlsContext>): { entry: string | ListenAddress; tls: NativeTlsContext | false | undefined } {
  if (typeof entry === 'string') {
    parseAddress(entry);
    return { entry, tls: undefined };
  }
  const what = `addrs[${i}]`;
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    throw new TypeError(`${what} must be an address string or { addr, tls }, got ${entry === null ? 'null' : Array.isArray(entry) ? 'an array' : typeof entry}`);
  }
  for (const key of Object.keys(entry)) {
    // A certificate put on the entry itself: say where it goes.
    if (!Object.hasOwn(LISTEN_ADDRESS_OPTIONS, key) && ['cert', 'key', 'ca', 'passphrase', 'sni', 'alpn'].includes(key)) {
      throw new TypeError(`${what}: unknown option '${key}' (TLS settings go in ${what}.tls: { addr, tls: { cert, key } })`);
    }
  }
  checkKnownOptions(what, entry, LISTEN_ADDRESS_OPTIONS);
  const o = entry as ListenAddress;
  if (o.addr === undefined) throw new TypeError(`${what}.addr is required (an address string like "127.0.0.1:8443")`);
  try {
    parseAddress(o.addr);
  } catch (err) {
    throw new TypeError(`${what}.addr: ${(err as Error).message}`);
  }
  let tls: NativeTlsContext | false | undefined;
  if (o.tls === false || o.tls === undefined) {
    tls = o.tls;
  } else if (o.tls === null || typeof o.tls !== 'object') {
    throw new TypeError(`${what}.tls must be TLS options ({ cert, key, ... }) or false (plain TCP), got ${String(o.tls)}${o.tls === true ? ": leave it out to use the engine's tls" : ''}`);
  } else {
    tls = contexts.get(o.tls) ?? serverContext(`${what}.tls`, o.tls);
    contexts.set(o.tls, tls);
  }
  return { entry: Object.freeze({ ...o }), tls };
}

function checkIoMode(mode: unknown): IoMode {
  if (mode === undefined) return 'nonblocking';
  if (typeof mode !== 'string' || !Object.hasOwn(IO_MODES, mode)) {
    throw new TypeError(`ioMode must be 'nonblocking', 'blocking' or 'mixed', got ${String(mode)}`);
  }
  return mode as IoMode;
}

/**
 * The event-loop engine: listeners, dialed and accepted connections, and
 * the batch dispatch between the native poller and JS. `S` is the type of
 * each connection's session (Conn.setSession).
 */
export class Engine<S = unknown> implements ConnEngine, StreamOwner {
  /** The options in effect, every default filled in. */
  readonly options: Readonly<Required<Omit<EngineOptions, 'onOpen' | 'onData' | 'onClose' | 'onDrain' | 'upgrader' | 'workers' | 'supervisor' | 'tls' | 'onTLSError' | 'topics' | 'pubsub'>>>;
  readonly #upgrader: EngineUpgrader | undefined;
  // This engine's connections: `engine` on their prototype (connClass).
  readonly #Conn = connClass(this);
  /** With `workers`: the supervisor (in the primary) or the worker's link to it. */
  readonly #cluster: EngineCluster | undefined;
  #online = 0;
  #onOpen: (conn: Conn) => void;
  #onData: (conn: Conn, data: Buffer) => void;
  #onClose: (conn: Conn, err: Error | null) => void;
  #onDrain: ((conn: Conn) => void) | undefined;
  #onTLSError: ((err: TLSHandshakeError, remoteAddr: string | undefined) => void) | undefined;
  /** The engine-wide TLS context (EngineOptions.tls, setSecureContext), or none. */
  #tls: NativeTlsContext | undefined;
  /** Per `addrs` entry: its own context, false (plain TCP), or undefined (the engine-wide one). */
  #addrTls: (NativeTlsContext | false | undefined)[] = [];
  /** Client contexts: the default one, and one per TlsClientOptions object given to dial. */
  #clientTls: NativeTlsContext | undefined;
  readonly #clientTlsByOptions = new WeakMap<object, NativeTlsContext>();

  #state: EngineState = 'new';
  #handle: EngineHandle | undefined;
  #conns: (Conn | undefined)[] = [];
  #dials = new Map<number, PendingDial>();
  #adoptions = new Map<number, PendingAdoption>();
  /** Connections served through Node streams (stream-transport.ts): sockets that cannot be adopted. */
  readonly #streamConns = new Set<Conn>();
  /** Listener id -> its address, as bound, and the index of its `addrs` entry. */
  #listeners = new Map<number, ParsedAddress & { bound: string; entry: number }>();
  #records = new Int32Array(RECORD_CAPACITY * RECORD_INTS);
  #slab: Buffer = Buffer.alloc(0);
  #cmds = new Int32Array(CMD_CAPACITY * RECORD_INTS);
  #out = Buffer.allocUnsafeSlow(OUT_SLAB_SIZE);
  #ncmds = 0;
  #outUsed = 0;
  #refs: Uint8Array[] = [];
  #inBatch = false;
  #flushScheduled = false;
  #statsArray = new Float64Array(STATS_LENGTH);
  /** Shared with native: queued bytes (native) and held bytes (JS), for memoryBudget. */
  readonly #meter = new Float64Array(METER_LENGTH);
  #burst: BurstWatcher | undefined;
  #peak: PeakWatcher | undefined;
  #stopped: Promise<void> | undefined;
  /** Raw TCP topics (Conn.subscribe). */
  readonly #topics: TopicHub<Conn>;
  readonly #flushTask = (): void => {
    this.#flushScheduled = false;
    this.#flush();
  };

  /** Checks every option (TypeError naming a wrong or unknown one); start() opens the listeners. */
  constructor(options: EngineOptions<S> = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('new Engine(options): options must be an object');
    checkKnownOptions('Engine', options, ENGINE_OPTIONS);
    options = clusterOptions(options); // in a worker process: the primary's addresses, reusePort on
    if (options.addrs !== undefined && !Array.isArray(options.addrs)) throw new TypeError('addrs must be an array of addresses: strings ("127.0.0.1:8080") or { addr, tls } objects');
    const contexts = new Map<object, NativeTlsContext>();
    const entries = (options.addrs ?? []).map((a, i) => listenEntry(i, a, contexts));
    this.#addrTls = entries.map((e) => e.tls);
    // Connections are Conn<S> to the user; inside they are plain Conns.
    const raw = options as EngineOptions;
    this.#onOpen = callbackOption('onOpen', raw.onOpen) ?? noop;
    this.#onData = callbackOption('onData', raw.onData) ?? noop;
    this.#onClose = callbackOption('onClose', raw.onClose) ?? noop;
    this.#onDrain = callbackOption('onDrain', raw.onDrain);
    this.#onTLSError = callbackOption('onTLSError', raw.onTLSError);
    if (options.tls !== undefined) this.#tls = serverContext('tls', options.tls);
    if (options.upgrader !== undefined) {
      const u = options.upgrader as Partial<EngineUpgrader> | null;
      if (u === null || typeof u !== 'object' || typeof u.attach !== 'function' || typeof u.accept !== 'function') {
        throw new TypeError('upgrader must be an Upgrader (new Upgrader(...))');
      }
      if (options.onOpen !== undefined || options.onData !== undefined || options.onClose !== undefined) {
        throw new TypeError('with an upgrader, set onOpen/onMessage/onClose on the upgrader, not on the engine');
      }
      this.#upgrader = options.upgrader;
    }
    const high = checkInt('writeHighWaterMark', options.writeHighWaterMark ?? 1024 * 1024, 0, 2 ** 32 - 1);
    const low = checkInt('writeLowWaterMark', options.writeLowWaterMark ?? Math.min(256 * 1024, high), 0, 2 ** 32 - 1);
    if (low > high) throw new TypeError(`writeLowWaterMark (${low}) must not be above writeHighWaterMark (${high})`);
    this.options = Object.freeze({
      addrs: entries.map((e) => e.entry),
      backlog: checkInt('backlog', options.backlog ?? systemBacklog(), 1, 65535),
      reusePort: boolOption('reusePort', options.reusePort, false),
      noDelay: boolOption('noDelay', options.noDelay, true),
      maxWriteBufferSize: checkInt('maxWriteBufferSize', options.maxWriteBufferSize ?? 64 * 1024 * 1024, 1, 2 ** 32 - 1),
      writeHighWaterMark: high,
      writeLowWaterMark: low,
      memoryBudget: checkInt('memoryBudget', options.memoryBudget ?? defaultMemoryBudget(), 0, Number.MAX_SAFE_INTEGER),
      maxLoad: checkInt('maxLoad', options.maxLoad ?? 1_000_000, 1, 2 ** 32 - 1),
      closeTimeout: checkInt('closeTimeout', options.closeTimeout ?? 5000, 0, 2 ** 31 - 1),
      dialTimeout: checkInt('dialTimeout', options.dialTimeout ?? 10_000, 0, 2 ** 31 - 1),
      readBufferSize: checkInt('readBufferSize', options.readBufferSize ?? 1024 * 1024, 4096, 2 ** 30),
      readBudget: checkInt('readBudget', options.readBudget ?? 64 * 1024, 1, 2 ** 30),
      maxEventsPerIteration: checkInt('maxEventsPerIteration', options.maxEventsPerIteration ?? 1024, 1, binding.constants.MAX_EVENTS ?? 1024),
      ref: boolOption('ref', options.ref, true),
      ioMode: checkIoMode(options.ioMode),
      releaseMemoryAfterBurst: checkInt('releaseMemoryAfterBurst', options.releaseMemoryAfterBurst ?? 1000, 0, 2 ** 32 - 1),
      maxBlockingOnline: checkInt('maxBlockingOnline', options.maxBlockingOnline ?? 1000, 0, 2 ** 32 - 1),
      readerStackSize: checkInt('readerStackSize', options.readerStackSize ?? 64 * 1024, 16 * 1024, 2 ** 30),
      readerBufferSize: checkInt('readerBufferSize', options.readerBufferSize ?? 16 * 1024, 1024, 2 ** 30),
      tlsHandshakeTimeout: checkInt('tlsHandshakeTimeout', options.tlsHandshakeTimeout ?? 10_000, 1, 2 ** 31 - 1),
      tlsMaxHandshakeSize: checkInt('tlsMaxHandshakeSize', options.tlsMaxHandshakeSize ?? 64 * 1024, 1024, 2 ** 32 - 1),
    });
    this._receiveBudget.budget = this.options.memoryBudget;
    this.#topics = new TopicHub<Conn>(topicsOption('Engine', options.topics), pubsubOption('Engine', options.pubsub), (subs, data, _type, exclude) =>
      this.#fanOut(subs, data, exclude),
    );
    this.#upgrader?.attach(this);
    if (this.options.releaseMemoryAfterBurst > 0) this.#burst = new BurstWatcher(this.options.releaseMemoryAfterBurst);
    this.#cluster = createCluster(this, options);
  }

  /** 'epoll' or 'kqueue'. */
  static get backend(): string {
    return binding.backend;
  }

  /** True between a resolved start() and stop(). */
  get running(): boolean {
    return this.#cluster?.running ?? this.#state === 'running';
  }

  /** Opens the poller and every listener. Rejects (and releases everything) if any address cannot be listened on. */
  async start(): Promise<void> {
    if (this.#cluster !== undefined) return this.#cluster.start(() => this.#start());
    return this.#start();
  }

  async #start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`Engine.start(): the engine is already ${this.#state}`);
    this.#state = 'starting';
    const o = this.options;
    const given = o.addrs.map(addrOf);
    const parsed = given.map(parseAddress);
    let hosts: string[];
    try {
      hosts = await Promise.all(parsed.map((p) => (p.kind === 'inet' ? resolveHost(p.host) : Promise.resolve(''))));
    } catch (err) {
      this.#state = 'new';
      throw err;
    }
    this.#slab = Buffer.allocUnsafeSlow(o.readBufferSize);
    const handle = new binding.EngineHandle(
      {
        maxEvents: o.maxEventsPerIteration,
        readBudget: o.readBudget,
        acceptBudget: 256,
        maxWriteBufferSize: o.maxWriteBufferSize,
        writeHighWaterMark: o.writeHighWaterMark,
        writeLowWaterMark: o.writeLowWaterMark,
        memoryBudget: o.memoryBudget,
        closeTimeout: o.closeTimeout,
        noDelay: o.noDelay,
        maxLoad: o.maxLoad,
        ioMode: IO_MODES[o.ioMode],
        maxBlockingOnline: o.maxBlockingOnline,
        readerStackSize: o.readerStackSize,
        readerBufferSize: o.readerBufferSize,
        tlsHandshakeTimeout: o.tlsHandshakeTimeout,
        tlsMaxHandshakeSize: o.tlsMaxHandshakeSize,
      },
      { records: this.#records, slab: this.#slab, cmds: this.#cmds, out: this.#out, meter: this.#meter },
      (count) => this.#onBatch(count),
    );
    for (let i = 0; i < parsed.length; i++) {
      const p = parsed[i]!;
      const id = p.kind === 'unix' ? handle.listenUnix(p.path, o.backlog) : handle.listen(hosts[i]!, p.port, o.backlog, o.reusePort);
      if (id < 0) {
        handle.destroy(); // the poller and the listeners opened so far, now
        this.#state = 'new';
        this.#listeners.clear();
        throw new SysError(-id, 'listen', given[i]);
      }
      const tls = this.#listenerTls(i);
      if (tls !== undefined) handle.setListenerTls(id, tls);
      const a = handle.listenerAddress(id);
      const bound = typeof a === 'number' ? given[i]! : formatAddress(...a);
      this.#listeners.set(id, { ...p, bound, entry: i });
    }
    const r = handle.start();
    if (r < 0) {
      handle.destroy();
      this.#listeners.clear();
      this.#state = 'new';
      throw new SysError(-r, 'uv_poll_init');
    }
    if (!o.ref) handle.setRef(false);
    this.#handle = handle;
    this.#state = 'running';
    this.#peak = new PeakWatcher(() => this.#meter[METER_QUEUED]! + this.#meter[METER_HELD]!);
    this.#topics.start(this._clusterPubSub('raw'));
    this.#upgrader?.started(this);
  }

  // The context the listener of `addrs` entry i serves with, or undefined for plain TCP.
  #listenerTls(i: number): NativeTlsContext | undefined {
    const own = this.#addrTls[i];
    return own === false ? undefined : (own ?? this.#tls);
  }

  /**
   * Replaces TLS settings (a renewed certificate) without a restart:
   * handshakes that start from now on use them, connections already open
   * keep theirs. Without `addr`: the engine-wide settings (EngineOptions.tls),
   * used by every address that has no `tls` of its own. With `addr` (as
   * written in `addrs`, or as addresses() reports it): that address's
   * settings only, which are its own from then on. Checked like
   * EngineOptions.tls (throws saying what is wrong, and then nothing changes).
   *
   * In the primary of an engine with `workers`: checked here, then sent to
   * every worker, which applies it when the message arrives (milliseconds
   * later, for the handshakes that start from then on); a worker that
   * (re)starts later gets it as soon as it listens. In a worker: that
   * worker only.
   */
  setSecureContext(tls: TlsServerOptions, addr?: string): void {
    if (addr !== undefined) {
      const i = this.#entryIndex(addr);
      if (this.#listenerTls(i) === undefined) throw new Error(`setSecureContext(tls, '${addr}'): that address serves plain TCP`);
      const ctx = serverContext('setSecureContext', tls);
      this.#addrTls[i] = ctx;
      if (this.#handle !== undefined) for (const [id, l] of this.#listeners) if (l.entry === i) this.#handle.setListenerTls(id, ctx);
      this.#cluster?.setSecureContext?.(tls, i);
      return;
    }
    const ctx = serverContext('setSecureContext', tls);
    // A primary's workers build their listeners from the options, started or not.
    const built = this.#state !== 'new' || this.#cluster?.role === 'primary';
    if (this.#tls === undefined && built) {
      const own = this.#addrTls.some((t) => t !== undefined && t !== false);
      const was = this.#state === 'new' ? 'has no' : 'was started without';
      throw new Error(`setSecureContext(): this engine ${was} tls${own ? ' for all its addresses: name the address, setSecureContext(tls, addr)' : ''}`);
    }
    this.#tls = ctx;
    if (this.#handle !== undefined) for (const [id, l] of this.#listeners) if (this.#addrTls[l.entry] === undefined) this.#handle.setListenerTls(id, ctx);
    this.#cluster?.setSecureContext?.(tls, undefined);
  }

  // The `addrs` entry `addr` names: as written in `addrs` (once only), or as bound (addresses()).
  #entryIndex(addr: string): number {
    if (typeof addr !== 'string') throw new TypeError(`setSecureContext(tls, addr): addr must be an address string, got ${typeof addr}`);
    for (const l of this.#listeners.values()) if (l.bound === addr) return l.entry;
    // A primary listens nowhere: its workers' addresses, in entry order.
    if (this.#cluster?.role === 'primary') {
      const bound = this.addresses();
      const i = bound.indexOf(addr);
      if (i >= 0 && bound.lastIndexOf(addr) === i) return i;
    }
    const given = this.options.addrs.map(addrOf);
    const i = given.indexOf(addr);
    if (i < 0) throw new TypeError(`setSecureContext(tls, '${addr}'): not one of this engine's addresses (${[...new Set([...given, ...this.addresses()])].join(', ')})`);
    if (given.indexOf(addr, i + 1) >= 0) throw new TypeError(`setSecureContext(tls, '${addr}'): several addresses are written so; name it as addresses() reports it`);
    return i;
  }

  /** The addresses actually listened on (port 0 replaced by the port the OS chose). */
  addresses(): string[] {
    return this.#cluster?.addresses() ?? [...this.#listeners.values()].map((l) => l.bound);
  }

  /**
   * Closes every connection (queued data gets one last non-blocking write,
   * then FIN; onClose receives null) and every listener, and releases every
   * descriptor. Resolves when the native side is fully closed.
   */
  stop(): Promise<void> {
    if (this.#cluster !== undefined) return this.#cluster.stop(() => this.#stop());
    return this.#stop();
  }

  #stop(): Promise<void> {
    if (this.#stopped !== undefined) return this.#stopped;
    if (this.#state !== 'running') {
      this.#state = 'stopped';
      this.#stopped = Promise.resolve();
      return this.#stopped;
    }
    if (this.#upgrader !== undefined) this.#handle?.closeListeners(); // no newcomers during the goodbyes
    const goodbye = this.#upgrader?.stopping(this);
    if (goodbye !== undefined) {
      // The upgrader says goodbye to its peers (WebSocket close 1001) while
      // the engine still runs, then the engine stops as usual.
      this.#stopped = Promise.resolve(goodbye).then(() => this.#stopNative());
      return this.#stopped;
    }
    this.#stopped = this.#stopNative();
    return this.#stopped;
  }

  #stopNative(): Promise<void> {
    if (this.#state !== 'running') return Promise.resolve();
    this.#state = 'stopping';
    this.#burst?.stop();
    this.#peak?.stop();
    const handle = this.#handle!;
    this.#flush();
    // Connections on Node streams (not adoptable) close like the others:
    // what was written goes out, then FIN; onClose(null).
    for (const c of this.#streamConns) c.close();
    return new Promise<void>((resolve) => {
      handle.stop(() => {
        handle.stats(this.#statsArray); // stats() keeps answering with the final counts
        this.#state = 'stopped';
        this.#handle = undefined;
        resolve();
      });
    }).then(() => this.#topics.stop());
  }

  /**
   * Raw TCP topics: sends `data` (bytes, or a string as UTF-8) to every
   * connection subscribed to `topic` (Conn.subscribe), and through the
   * `pubsub` adapter (or the workers' relay) to the other servers. The
   * bytes are queued once and shared by every subscriber's write: do not
   * change them until the end of the tick. A subscriber that cannot keep
   * up follows `topics.slowSubscriber`. Returns the local subscribers it
   * was queued for now. `type` only matters to an adapter that passes it on.
   */
  publish(topic: string, data: Uint8Array | string, type?: 'text' | 'binary'): number {
    this.#topics.check('Engine.publish', topic);
    const a = publishArgs('Engine.publish', topic, data, type);
    return this.#topics.publish(topic, a.bytes, a.type, undefined);
  }

  /** Connections of this engine subscribed to `topic` (this process only). */
  numSubscribers(topic: string): number {
    return this.#topics.count(topic);
  }

  /** @internal The raw topics (Conn.subscribe). */
  get _topics(): TopicHub<Conn> {
    return this.#topics;
  }

  /** @internal The relay between worker processes for topics of `channel` ('raw', 'ws'), in a worker; undefined elsewhere. */
  _clusterPubSub(channel: string): PubSubAdapter | undefined {
    return this.#cluster?.pubsub?.(channel);
  }

  // Writes one published message to each subscriber: the same bytes by
  // reference (one WRITE_REF command each), never a copy per subscriber.
  #fanOut(subs: ReadonlySet<Conn>, data: Uint8Array, exclude: Conn | undefined): number {
    if (this.#state !== 'running' || data.byteLength === 0) return 0;
    const mark = this._skipMark(this.#topics.config);
    let n = 0;
    for (const c of subs) {
      if (c === exclude || c._state !== ConnState.Open) continue;
      this._writeShared(c, data, mark);
      n++;
    }
    return n;
  }

  /** @internal The skip mark WRITE_REF carries for a topics policy: 0 for 'close'. */
  _skipMark(config: { readonly slowSubscriber: 'close' | 'skip'; readonly skipAbove: number }): number {
    if (config.slowSubscriber !== 'skip') return 0;
    return config.skipAbove > 0 ? config.skipAbove : Math.max(1, this.options.writeHighWaterMark);
  }

  /** Connects to "host:port", "[v6]:port" or "unix:/path". The Conn also goes through onOpen. */
  dial(addr: string, options: EngineDialOptions = {}): Promise<Conn<S>> {
    return this._dial(addr, options, undefined) as Promise<Conn<S>>;
  }

  /**
   * Takes a connected socket over from Node (a net.Socket, e.g. from an
   * http.Server's 'upgrade' or 'connection' event): libuv stops reading
   * it, its descriptor is duplicated into this engine and Node's copy
   * closed, and from then on it is served exactly like an accepted
   * connection, in the engine's I/O mode: onOpen (or the upgrader's
   * handshake), then `head` and whatever Node had already read, as if just
   * read, then onData. Resolves once onOpen has run. The socket is consumed
   * either way: on failure it is destroyed and the promise rejects
   * (SysError, or a TypeError for a socket that cannot be taken over, such
   * as a TLS socket).
   */
  adopt(socket: Socket, head: Buffer = Buffer.alloc(0)): Promise<Conn<S>> {
    return this._adopt(socket, head, undefined) as Promise<Conn<S>>;
  }

  /**
   * @internal adopt(); `open`, when given, takes the connection over at its
   * OPEN record instead of onOpen or the upgrader (Upgrader.handleUpgrade
   * answers the upgrade Node parsed).
   */
  async _adopt(socket: Socket | Duplex, head: Buffer, open: ((conn: Conn) => void) | undefined): Promise<Conn> {
    if (!(head instanceof Uint8Array)) throw new TypeError('adopt(socket, head): head must be a Buffer');
    if (this.#cluster?.role === 'primary' || this.#state !== 'running') {
      (socket as Duplex).destroy?.();
      throw new NetClosedError();
    }
    const why = whyNotAdoptable(socket);
    if (why !== undefined) {
      if (!canServeAsStream(socket)) {
        (socket as Duplex).destroy?.();
        throw new TypeError(`adopt(socket): ${why}`);
      }
      return this.#serveStream(socket as Socket, Buffer.from(head.buffer, head.byteOffset, head.byteLength), open);
    }
    const { fd, bytes } = detach(socket as Socket, Buffer.from(head.buffer, head.byteOffset, head.byteLength));
    const r = this.#handle!.adopt(fd);
    release(socket as Socket); // Node's copy of the descriptor: ours is a duplicate
    if (typeof r === 'number') throw new SysError(-r, 'adopt');
    const [slot, gen] = r;
    return new Promise<Conn>((resolve, reject) => {
      this.#adoptions.set(slot, { gen, bytes, open, resolve, reject });
    });
  }

  /** @internal dial(), for a protocol's own connection (the WebSocket client): `proto` takes it over, onOpen is not called. */
  async _dial(addr: string, options: EngineDialOptions, proto: ConnProtocol | undefined): Promise<Conn> {
    if (this.#cluster?.role === 'primary') throw new Error('Engine.dial(): the primary of an engine with `workers` has no connections: dial from the workers');
    if (options === null || typeof options !== 'object') throw new TypeError('Engine.dial(addr, options): options must be an object');
    checkKnownOptions('Engine.dial', options, DIAL_OPTIONS);
    const p = parseAddress(addr);
    const timeout = checkInt('timeout', options.timeout ?? this.options.dialTimeout, 0, 2 ** 31 - 1);
    const tls = this.#dialTls(options.tls);
    const servername = tls === undefined ? undefined : (typeof options.tls === 'object' ? options.tls.servername : undefined) ?? (p.kind === 'inet' ? p.host : undefined);
    const host = p.kind === 'inet' ? await resolveHost(p.host) : '';
    if (this.#state !== 'running') throw new NetClosedError();
    const handle = this.#handle!;
    const r = p.kind === 'unix' ? handle.dialUnix(p.path, timeout, tls, servername) : handle.dial(host, p.port, timeout, tls, servername);
    if (typeof r === 'number') throw new SysError(-r, 'dial', addr);
    const [slot, gen] = r;
    const remote = p.kind === 'unix' ? `unix:${p.path}` : formatAddress(host.includes(':') ? 'IPv6' : 'IPv4', host, p.port);
    return new Promise<Conn>((resolve, reject) => {
      this.#dials.set(slot, { gen, remote, proto, resolve, reject, servername });
    });
  }

  // The client context of a dial's `tls` option: the default one (Node's
  // root certificates) is made once per engine, others once per options object.
  #dialTls(tls: EngineDialOptions['tls']): NativeTlsContext | undefined {
    if (tls === undefined || tls === false) return undefined;
    if (tls === true) return (this.#clientTls ??= clientContext('dial tls', {}));
    if (tls === null || typeof tls !== 'object') throw new TypeError('Engine.dial: tls must be a boolean or an options object');
    let ctx = this.#clientTlsByOptions.get(tls);
    if (ctx === undefined) {
      const { servername: _, ...rest } = tls;
      ctx = Object.keys(rest).length === 0 ? (this.#clientTls ??= clientContext('dial tls', {})) : clientContext('dial tls', tls);
      this.#clientTlsByOptions.set(tls, ctx);
    }
    return ctx;
  }

  /**
   * The connection counters. In the primary of an engine with `workers`: the
   * sum over the workers as last reported (every statsInterval, and at their
   * exit); workerStats() asks them now.
   */
  stats(): EngineStats {
    const c = this.#cluster?.stats();
    if (c !== undefined) return c;
    const s = this.#statsArray;
    if (this.#handle !== undefined) this.#handle.stats(s);
    return {
      online: s[0]!,
      accepted: s[1]!,
      dialed: s[2]!,
      closed: s[3]!,
      rejected: s[4]!,
      bytesIn: s[5]!,
      bytesOut: s[6]!,
      queuedBytes: s[7]!,
      blockingOnline: s[8]!,
      readerThreadsStarted: s[9]!,
      readerThreadBytes: s[8]! * s[10]!,
      readPaused: s[11]!,
      tlsHandshakes: s[12]!,
      tlsFailed: s[13]!,
      writesSkipped: s[14]!,
      heldBytes: this.#meter[METER_HELD]!,
    };
  }

  /**
   * 'standalone': a plain engine; 'primary': the supervisor of an engine
   * with `workers` (no listener, no connection of its own); 'worker': the
   * engine in one of its worker processes.
   */
  get role(): 'standalone' | 'primary' | 'worker' {
    return this.#cluster?.role ?? 'standalone';
  }

  /** In a worker process: its id, 1..workers (kept across restarts). Otherwise undefined. */
  get workerId(): number | undefined {
    return this.#cluster?.workerId;
  }

  /**
   * Each worker's stats() (with its id, pid and restart count), asked over
   * IPC now. Outside a primary: this engine's own, as one entry.
   */
  workerStats(): Promise<WorkerStats[]> {
    if (this.#cluster !== undefined) return this.#cluster.workerStats();
    return Promise.resolve([{ id: 0, pid: process.pid, restarts: 0, ...this.stats() }]);
  }

  // -------------------------------------------------------------------------
  // Batch dispatch

  #onBatch(count: number): void {
    this._now = Date.now();
    const rec = this.#records;
    const conns = this.#conns;
    let failed = false;
    let failure: unknown;
    this.#inBatch = true;
    for (let i = 0, p = 0; i < count; i++, p += RECORD_INTS) {
      const type = rec[p]!;
      const slot = rec[p + 1]!;
      const gen = rec[p + 2]!;
      try {
        if (type === REC_DATA) {
          const c = conns[slot];
          // A callback earlier in this batch may have closed the connection,
          // or stopped the engine (whose close records come later in the batch).
          if (c === undefined || c._gen !== gen || c._state !== ConnState.Open || this.#state !== 'running') continue;
          const off = rec[p + 3]!;
          const data = this.#slab.subarray(off, off + rec[p + 4]!);
          if (c._proto !== undefined) c._proto.onData(c, data);
          else this.#onData(c, data);
        } else if (type === REC_OPEN) {
          this.#opened(slot, gen, rec[p + 3]!, rec[p + 4]! === 1);
        } else if (type === REC_CLOSE) {
          this.#closed(slot, gen, rec[p + 3]!, rec[p + 4]!);
        } else if (type === REC_DRAIN) {
          const c = conns[slot];
          if (c === undefined || c._gen !== gen || this.#state !== 'running') continue;
          if (c._proto !== undefined) {
            c._proto.onDrain(c);
            continue;
          }
          c._drainHandler?.(c);
          this.#onDrain?.(c);
        } else if (type === REC_TLS_FAIL) {
          this.#tlsFailed(slot, gen, rec[p + 3]!, rec[p + 4]!);
        } else if (type === REC_DIAL_FAIL) {
          const d = this.#dials.get(slot);
          if (d !== undefined && d.gen === gen) {
            this.#dials.delete(slot);
            const errno = rec[p + 3]!;
            d.reject(
              errno === ETIMEDOUT
                ? new TimeoutError('dial')
                : errno === ECANCELED // the engine stopped while dialing
                  ? new NetClosedError()
                  : new SysError(errno, 'dial', d.remote),
            );
          }
        }
      } catch (err) {
        // A throwing handler fails its own connection at once (a zombie
        // that reads nothing and answers nothing would be worse), and must
        // not cost the other connections their data: finish the batch, then
        // rethrow the first error, as Node does with an exception in a
        // socket's 'data' handler.
        const c = conns[slot];
        if (c !== undefined && c._gen === gen && c._state !== ConnState.Closed) this.#handlerFailed(c, err);
        if (!failed) {
          failed = true;
          failure = err;
        }
      }
    }
    this.#inBatch = false;
    this.#flush();
    if (this.#meter[METER_QUEUED]! + this.#meter[METER_HELD]! >= PEAK_THRESHOLD) this.#peak?.grew();
    if (failed) throw failure;
  }

  // The connection's protocol reports the failure its own way (a WebSocket
  // sends 1011); a raw connection is closed like closeWithError(): what was
  // written is still delivered, then FIN, and onClose receives the error.
  #handlerFailed(c: Conn, thrown: unknown): void {
    const err = thrown instanceof Error ? thrown : new HandlerError(thrown);
    try {
      if (c._proto?.onHandlerError !== undefined) c._proto.onHandlerError(c, err);
      else c.closeWithError(err);
    } catch {
      c.closeAndClean(err); // never leave it open
    }
  }

  #opened(slot: number, gen: number, listener: number, blocking: boolean): void {
    let c: Conn;
    if (listener === ADOPTED_LISTENER) {
      this.#adopted(slot, gen, blocking);
      return;
    }
    if (listener === -1) {
      const d = this.#dials.get(slot);
      if (d === undefined || d.gen !== gen) return;
      this.#dials.delete(slot);
      c = new this.#Conn(slot, gen, undefined, d.remote);
      c._blocking = blocking;
      this.#conns[slot] = c;
      this.#online++;
      this.#burst?.opened(this._now);
      if (d.proto !== undefined) {
        c._proto = d.proto; // a protocol's own dial (a WebSocket client): its caller is told
        d.resolve(c);
        return;
      }
      try {
        this.#onOpen(c);
      } finally {
        d.resolve(c);
      }
      return;
    }
    const l = this.#listeners.get(listener);
    const local = l?.kind === 'unix' ? `unix:${l.path}` : undefined;
    c = new this.#Conn(slot, gen, local, l?.kind === 'unix' ? 'unix:' : undefined);
    c._blocking = blocking;
    this.#conns[slot] = c;
    this.#online++;
    this.#burst?.opened(this._now);
    if (this.#upgrader !== undefined) this.#upgrader.accept(c);
    else this.#onOpen(c);
  }

  // A socket whose descriptor cannot be taken over (TLS): the same Conn and
  // protocol code over Node's stream (stream-transport.ts).
  #serveStream(socket: Socket, head: Buffer, open: ((conn: Conn) => void) | undefined): Conn {
    const transport = new StreamTransport(this, socket, (c, d) => this.#onData(c, d), (c, err) => this.#deliverClose(c, err));
    let conn: Conn | undefined;
    try {
      conn = transport.open((c) => {
        this.#streamConns.add(c);
        if (open !== undefined) open(c);
        else if (this.#upgrader !== undefined) this.#upgrader.accept(c);
        else this.#onOpen(c);
      }, head);
    } catch (err) {
      if (conn !== undefined && conn._state !== ConnState.Closed) conn.closeAndClean(err instanceof Error ? err : null);
      else socket.destroy();
      throw err;
    }
    return conn;
  }

  // An adopted connection's OPEN: set up like an accepted one, then its first
  // input, as if just read (a callback may have closed it meanwhile).
  #adopted(slot: number, gen: number, blocking: boolean): void {
    const a = this.#adoptions.get(slot);
    if (a === undefined || a.gen !== gen) return;
    this.#adoptions.delete(slot);
    if (this.#state !== 'running') {
      a.reject(new NetClosedError()); // stopped before the connection was set up: its CLOSE follows
      return;
    }
    const c = new this.#Conn(slot, gen, undefined, undefined);
    c._blocking = blocking;
    this.#conns[slot] = c;
    this.#online++;
    this.#burst?.opened(this._now);
    try {
      if (a.open !== undefined) a.open(c);
      else if (this.#upgrader !== undefined) this.#upgrader.accept(c);
      else this.#onOpen(c);
      if (a.bytes.length > 0 && c._state === ConnState.Open && this.#state === 'running') {
        if (c._proto !== undefined) c._proto.onData(c, a.bytes);
        else this.#onData(c, a.bytes);
      }
    } finally {
      a.resolve(c);
    }
  }

  // A TLS handshake that never completed: a dial rejects, an accepted
  // connection (never seen by onOpen) is reported to onTLSError.
  #tlsFailed(slot: number, gen: number, code: number, errno: number): void {
    const info = this.#handle?.tlsInfo(slot, gen);
    const d = this.#dials.get(slot);
    if (d !== undefined && d.gen === gen) {
      this.#dials.delete(slot);
      d.reject(code === 0 ? new NetClosedError() : errno !== 0 ? new SysError(errno, 'dial', d.remote) : handshakeError(code, info?.errorText ?? '', d.servername));
      return;
    }
    if (this.#onTLSError === undefined || code === 0) return;
    const a = this.#handle?.address(slot, gen, true);
    this.#onTLSError(handshakeError(code, errno !== 0 ? new SysError(errno).message : (info?.errorText ?? '')), typeof a === 'object' ? formatAddress(...a) : undefined);
  }

  #closed(slot: number, gen: number, reason: number, errno: number): void {
    const c = this.#conns[slot];
    if (c === undefined || c._gen !== gen) return;
    // The peer address must be read before the slot is reused; it is kept
    // natively until this record has been delivered.
    if (c._remote === undefined) c._remote = this._address(c, true);
    this.#conns[slot] = undefined;
    this.#online--;
    c._state = ConnState.Closed;
    // An error the user closed with wins. A plain close() reports null unless
    // the close lost data (reset or timeout while flushing): that is not silent.
    const err = c._closeErr ?? (reason === REASON_TLS ? protocolError(errno, this.#handle?.tlsInfo(slot, gen)?.errorText ?? '') : this.#closeError(reason, errno, c._blocking));
    if (c._proto !== undefined) c._proto.onClose(c, err);
    else this.#deliverClose(c, err);
  }

  // A raw connection's onClose; its topics are left after it (onClose may still read conn.topics).
  #deliverClose(c: Conn, err: Error | null): void {
    try {
      this.#onClose(c, err);
    } finally {
      const own = c._topicSet;
      if (own !== undefined) this.#topics.leaveAll(c, own);
    }
  }

  // The transport's account of a close (DESIGN.md, close contract). A
  // blocking connection's reader thread learns of a local close or a
  // deadline from its failed read, the way Go's blocking reads do: "use of
  // closed network connection", "i/o timeout". The poller does not read
  // after a local close, so it has no error to report.
  #closeError(reason: number, errno: number, blocking: boolean): Error | null {
    switch (reason) {
      case REASON_EOF:
        return new EOFError();
      case REASON_ERRNO:
        return new SysError(errno);
      case REASON_READ_TIMEOUT:
        return new TimeoutError(blocking ? 'io' : 'read');
      case REASON_WRITE_TIMEOUT:
        return new TimeoutError(blocking ? 'io' : 'write');
      case REASON_OVERFLOW:
        return new OverflowError(this.options.maxWriteBufferSize);
      case REASON_BUDGET:
        return new BudgetError(this.options.memoryBudget);
      case REASON_TLS_TRUNCATED:
        return new TLSTruncationError();
      case REASON_LOCAL:
      case REASON_STOP:
        return blocking ? new NetClosedError() : null;
      default:
        return new Error(`netloop: unknown close reason ${reason}`);
    }
  }

  // -------------------------------------------------------------------------
  // Commands (called by Conn)

  // A small write that lands in the out slab right behind the previous
  // command's bytes for the same connection extends that command instead of
  // adding one: a frame header and its payload, or many small writes, become
  // one iovec in native.
  #pushWrite(c: Conn, off: number, len: number): void {
    const n = this.#ncmds;
    if (n > 0) {
      const q = (n - 1) * RECORD_INTS;
      const cmds = this.#cmds;
      if (cmds[q] === CMD_WRITE && cmds[q + 1] === c._slot && cmds[q + 2] === c._gen && cmds[q + 3]! + cmds[q + 4]! === off) {
        cmds[q + 4] = cmds[q + 4]! + len;
        return;
      }
    }
    this.#pushCmd(CMD_WRITE, c, off, len);
  }

  #pushCmd(op: number, c: Conn, a: number, b: number): void {
    if (this.#ncmds === CMD_CAPACITY) this.#flush(); // _write checks before it copies into the out slab
    const q = this.#ncmds * RECORD_INTS;
    const cmds = this.#cmds;
    cmds[q] = op;
    cmds[q + 1] = c._slot;
    cmds[q + 2] = c._gen;
    cmds[q + 3] = a;
    cmds[q + 4] = b;
    this.#ncmds++;
    if (!this.#inBatch && !this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /** @internal */
  _write(c: Conn, data: Uint8Array | string): void {
    if (this.#state !== 'running') throw new NetClosedError();
    if (typeof data === 'string') {
      if (data.length === 0) return;
      if (data.length * 3 <= SMALL_WRITE) {
        if (this.#outUsed + data.length * 3 > OUT_SLAB_SIZE || this.#ncmds === CMD_CAPACITY) this.#flush();
        const n = this.#out.write(data, this.#outUsed, 'utf8');
        this.#pushWrite(c, this.#outUsed, n);
        this.#outUsed += n;
        return;
      }
      data = Buffer.from(data, 'utf8');
    } else if (!(data instanceof Uint8Array)) {
      throw new TypeError(`write(data): data must be a Buffer, Uint8Array or string, got ${data === null ? 'null' : typeof data}`);
    }
    const len = data.byteLength;
    if (len === 0) return;
    if (len <= SMALL_WRITE) {
      if (this.#outUsed + len > OUT_SLAB_SIZE || this.#ncmds === CMD_CAPACITY) this.#flush();
      this.#out.set(data, this.#outUsed);
      this.#pushWrite(c, this.#outUsed, len);
      this.#outUsed += len;
      return;
    }
    if (this.#ncmds === CMD_CAPACITY) this.#flush();
    this.#refs.push(data);
    this.#pushCmd(CMD_WRITE_REF, c, this.#refs.length - 1, 0);
  }

  /** @internal Copies src[start, end) into the outgoing slab for `c` (no subarray allocated). */
  _writeBytes(c: Conn, src: Uint8Array, start: number, end: number): void {
    if (this.#state !== 'running') throw new NetClosedError();
    const len = end - start;
    if (len <= 0) return;
    if (len > SMALL_WRITE) {
      this._write(c, src.subarray(start, end));
      return;
    }
    if (this.#outUsed + len > OUT_SLAB_SIZE || this.#ncmds === CMD_CAPACITY) this.#flush();
    const out = this.#out;
    let o = this.#outUsed;
    if (len <= 16) {
      for (let i = start; i < end; i++) out[o++] = src[i]!;
    } else {
      out.set(src.subarray(start, end), o);
    }
    this.#pushWrite(c, this.#outUsed, len);
    this.#outUsed += len;
  }

  /**
   * @internal Queues `data` for `c` by reference: many connections' writes
   * share one buffer (a published frame). With `skipMark` > 0 the write is
   * dropped for a connection whose queue holds more than that (topics' 'skip').
   */
  _writeShared(c: Conn, data: Uint8Array, skipMark: number): void {
    if (this.#state !== 'running') throw new NetClosedError();
    if (this.#ncmds === CMD_CAPACITY) this.#flush();
    const refs = this.#refs;
    let i = refs.length - 1;
    if (i < 0 || refs[i] !== data) {
      refs.push(data);
      i++;
    }
    this.#pushCmd(CMD_WRITE_REF, c, i, skipMark);
  }

  /** @internal Whether the running engine keeps the process alive (the shared client engine: while it has connections). */
  _setRef(on: boolean): void {
    this.#handle?.setRef(on);
  }

  /**
   * @internal Date.now() at the start of the current batch: protocols that
   * note the time of every read (keepalive) use it instead of calling
   * Date.now() per event.
   */
  _now = Date.now();

  /** @internal Connections are the engine's own descriptors (a StreamTransport says 'node-stream'). */
  readonly _transport = 'native' as const;

  /** @internal A node-stream connection ended (stream-transport.ts). */
  _streamClosed(conn: Conn): void {
    this.#streamConns.delete(conn);
  }

  /**
   * @internal Bytes a protocol holds for a peer (a WebSocket message still
   * arriving), counted with the write queues against memoryBudget. `delta`
   * may be negative (released). Returns false, counting nothing, when
   * holding `delta` more would exceed the budget.
   */
  _hold(delta: number): boolean {
    const m = this.#meter;
    const held = m[METER_HELD]! + delta;
    if (delta > 0) {
      const budget = this.options.memoryBudget;
      if (budget !== 0 && held + m[METER_QUEUED]! > budget) return false;
      this.#peak?.grew();
    }
    m[METER_HELD] = held;
    return true;
  }

  /** @internal The memory budget as receivers see it (websocket/receiver.ts). */
  readonly _receiveBudget = { hold: (delta: number): boolean => this._hold(delta), budget: 0 };

  /** @internal Online connections as JS sees them (accepted or dialed, not yet closed). */
  get _online(): number {
    return this.#online;
  }

  /** @internal Calls fn for every open connection. */
  _forEachConn(fn: (conn: Conn) => void): void {
    for (const c of this.#conns) if (c !== undefined && c._state !== ConnState.Closed) fn(c);
    for (const c of this.#streamConns) if (c._state !== ConnState.Closed) fn(c);
  }

  /** @internal */
  _close(c: Conn, err: Error | null, abortive: boolean, timeoutMs = 0): void {
    if (c._state === ConnState.Open) c._closeErr = err;
    else if (abortive && err !== null) c._closeErr = err;
    c._state = ConnState.Closing;
    if (this.#state !== 'running') return;
    this.#pushCmd(CMD_CLOSE, c, abortive ? 1 : 0, timeoutMs);
  }

  /** @internal */
  _setDeadline(c: Conn, kind: 0 | 1, deadline: Deadline): void {
    let ms: number;
    if (deadline === null || deadline === 0) {
      ms = -1;
    } else {
      const at = deadline instanceof Date ? deadline.getTime() : deadline;
      if (typeof at !== 'number' || !Number.isFinite(at)) {
        throw new TypeError('deadline must be a Date, epoch milliseconds (Date.now() + ms), or null');
      }
      ms = Math.min(Math.max(0, Math.ceil(at - Date.now())), 2 ** 31 - 1);
    }
    if (c._state === ConnState.Closed || this.#state !== 'running') return;
    this.#pushCmd(CMD_DEADLINE, c, kind, ms);
  }

  /** @internal */
  _bufferedAmount(c: Conn): number {
    if (c._state === ConnState.Closed || this.#handle === undefined) return 0;
    this.#flush();
    return Math.max(0, this.#handle.queued(c._slot, c._gen));
  }

  /** @internal A TLS connection's negotiated facts (Conn.tls). */
  _tlsInfo(c: Conn): TlsInfo | undefined {
    const i = this.#handle?.tlsInfo(c._slot, c._gen);
    if (i === undefined) return undefined;
    return { protocol: i.protocol, cipher: i.cipher, alpn: i.alpn, servername: i.servername, resumed: i.resumed };
  }

  /** @internal */
  _address(c: Conn, peer: boolean): string | undefined {
    if (this.#handle === undefined) return undefined;
    const a: NativeAddress | number = this.#handle.address(c._slot, c._gen, peer);
    if (typeof a === 'number') return undefined;
    return formatAddress(...a);
  }

  #flush(): void {
    if (this.#ncmds === 0 || this.#handle === undefined) return;
    const n = this.#ncmds;
    const refs = this.#refs;
    this.#ncmds = 0;
    this.#outUsed = 0;
    if (refs.length > 0) {
      this.#refs = [];
      this.#handle.flush(n, refs);
    } else {
      this.#handle.flush(n);
    }
  }
}
