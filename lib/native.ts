// Loads the addon and describes it: the typed binding and the batch layout
// (the numbers of native/batch.h; test/native.test.js checks they agree).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativeArrays {
  records: Int32Array;
  slab: Buffer;
  cmds: Int32Array;
  out: Buffer;
  /** [METER_QUEUED] bytes in every write queue (native writes it); [METER_HELD] bytes JS holds for unfinished messages (JS writes it). */
  meter: Float64Array;
}

export interface NativeConfig {
  maxEvents: number;
  readBudget: number;
  acceptBudget: number;
  maxWriteBufferSize: number;
  writeHighWaterMark: number;
  writeLowWaterMark: number;
  /** 0: none. */
  memoryBudget: number;
  closeTimeout: number;
  noDelay: boolean;
  maxLoad: number;
  /** IO_NONBLOCKING, IO_BLOCKING or IO_MIXED. */
  ioMode: number;
  maxBlockingOnline: number;
  readerStackSize: number;
  readerBufferSize: number;
  /** ms a TLS handshake may take. */
  tlsHandshakeTimeout: number;
  /** Bytes a peer may send during a TLS handshake. */
  tlsMaxHandshakeSize: number;
}

/** [family, host or path, port]; a negative number is -errno. */
export type NativeAddress = [family: 'IPv4' | 'IPv6' | 'unix', host: string, port: number];

export interface EngineHandle {
  listen(host: string, port: number, backlog: number, reusePort: boolean): number;
  listenUnix(path: string, backlog: number): number;
  listenerAddress(id: number): NativeAddress | number;
  /** tls: a context from createTlsContext (client side); the OPEN record then waits for the handshake, or REC_TLS_FAIL replaces it. */
  dial(host: string, port: number, timeoutMs: number, tls?: NativeTlsContext, servername?: string): [slot: number, gen: number] | number;
  dialUnix(path: string, timeoutMs: number, tls?: NativeTlsContext, servername?: string): [slot: number, gen: number] | number;
  /** Duplicates a connected socket's fd into the loop (its OPEN record has listener ADOPTED_LISTENER). */
  adopt(fd: number): [slot: number, gen: number] | number;
  start(): number;
  flush(count: number, refs?: Uint8Array[]): void;
  stop(onClosed?: () => void): boolean;
  queued(slot: number, gen: number): number;
  address(slot: number, gen: number, peer: boolean): NativeAddress | number;
  stats(out: Float64Array): void;
  setRef(on: boolean): void;
  /** Stops accepting; connections go on. */
  closeListeners(): void;
  /** Releases a handle that was never started. */
  destroy(): void;
  /** TLS for new connections on a listener (null: plain); live ones keep theirs. 0 or -errno. */
  setListenerTls(id: number, tls: NativeTlsContext | null): number;
  /** A TLS connection's negotiated facts or failure, until its slot is reused. */
  tlsInfo(slot: number, gen: number): NativeTlsInfo | undefined;
}

/** An OpenSSL context (SSL_CTX) made by createTlsContext; opaque to JS. */
export type NativeTlsContext = object & { readonly __tlsContext: unique symbol };

/** What lib/tls.ts hands createTlsContext: validated, in OpenSSL's terms. */
export interface NativeTlsConfig {
  server: boolean;
  cert?: string;
  key?: string;
  passphrase?: string;
  ca?: string;
  ciphers?: string;
  ciphersuites?: string;
  /** 0x0303 TLS 1.2, 0x0304 TLS 1.3; 0: OpenSSL's default. */
  minVersion?: number;
  maxVersion?: number;
  /** ALPN protocol names in wire format (length-prefixed). */
  alpn?: Buffer;
  requestCert?: boolean;
  rejectUnauthorized: boolean;
  /** Seconds a session ticket stays valid; ticket keys rotate at this interval. */
  sessionTimeout?: number;
  sni?: [name: string, context: NativeTlsContext][];
}

export interface NativeTlsInfo {
  protocol: string;
  cipher: string;
  alpn: string;
  servername: string;
  resumed: boolean;
  /** TLS_ERR_* (0: none). */
  error: number;
  errorText: string;
}

interface Binding {
  EngineHandle: new (config: NativeConfig, arrays: NativeArrays, onBatch: (count: number) => void) => EngineHandle;
  constants: Record<string, number>;
  backend: 'epoll' | 'kqueue';
  /** V8 MemoryPressureNotification: true critical, false moderate (lib/memory.ts). */
  releaseMemory(critical: boolean): void;
  /** malloc_trim(0) where the C library is glibc: true if memory went back to the system. */
  trimMemory(): boolean;
  /** XORs buf[start, end) with the WebSocket masking key, in place; returns the key index at end (lib/websocket/mask.ts). */
  mask(buf: Uint8Array, start: number, end: number, key: Uint8Array, keyIndex: number): number;
  /** An OpenSSL context on Node's own OpenSSL (native/tls.cc); throws an Error saying what is wrong with the config. */
  createTlsContext(config: NativeTlsConfig): NativeTlsContext;
  /** dst[dstStart + i] = src[srcStart + i] ^ key[(keyIndex + i) % 4] for i < n, in one pass; returns the key index after the last byte (lib/websocket/mask.ts). */
  maskCopy(src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number, key: Uint8Array, keyIndex: number): number;
}

const require = createRequire(import.meta.url);
// NETLOOP_BUILD=Debug loads the AddressSanitizer build (npm run test:asan) and nothing else.
// Otherwise node-gyp-build picks, from the package root: build/Release (built from source: a
// checkout, or an install where no prebuild fits), then the prebuild for this platform, arch
// and libc that the package ships (prebuilds/, written at pack time by .ci/prebuild.js).
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
export const binding: Binding =
  process.env.NETLOOP_BUILD === 'Debug'
    ? require('../build/Debug/netloop.node')
    : (require('node-gyp-build') as (dir: string) => Binding)(packageRoot);

// Batch layout: records and commands are runs of RECORD_INTS int32 values,
// [type, slot, gen, a, b].
export const RECORD_INTS = 5;

export const REC_OPEN = 1; // a: listener id, -1 when dialed, ADOPTED_LISTENER when adopted; b: 1 when a reader thread serves it (blocking)
export const REC_DATA = 2; // a: slab offset, b: length
export const REC_CLOSE = 3; // a: reason, b: errno
export const REC_DRAIN = 4;
export const REC_DIAL_FAIL = 5; // a: errno
export const REC_TLS_FAIL = 6; // a: TLS_ERR_* (0: the engine stopped), b: errno; the TLS handshake never completed

export const REASON_EOF = 1;
export const REASON_ERRNO = 2;
export const REASON_READ_TIMEOUT = 3;
export const REASON_WRITE_TIMEOUT = 4;
export const REASON_OVERFLOW = 5;
export const REASON_LOCAL = 6;
export const REASON_STOP = 7;
export const REASON_BUDGET = 8;
export const REASON_TLS_TRUNCATED = 9;
export const REASON_TLS = 10; // b: TLS_ERR_*

// Why TLS failed (native/tls.h, TlsError).
export const TLS_ERR_HANDSHAKE = 1;
export const TLS_ERR_TIMEOUT = 2;
export const TLS_ERR_TOO_LARGE = 3;
export const TLS_ERR_EOF = 4;
export const TLS_ERR_PROTOCOL = 5;
/** TLS_ERR_VERIFY + X509_V_ERR_*: the peer's certificate was refused. */
export const TLS_ERR_VERIFY = 100;

/** REC_OPEN's listener id of a connection taken over from Node (Engine.adopt). */
export const ADOPTED_LISTENER = -2;

export const CMD_WRITE = 1; // a: out offset, b: length
export const CMD_WRITE_REF = 2; // a: refs index; b: skip mark (0: none; else dropped while the queue holds more bytes)
export const CMD_CLOSE = 3; // a: 0 graceful, 1 abortive; b: graceful close timeout ms (0: the engine's)
export const CMD_DEADLINE = 4; // a: 0 read, 1 write; b: ms from now, -1 clears

export const IO_NONBLOCKING = 0;
export const IO_BLOCKING = 1;
export const IO_MIXED = 2;

/** Length of the Float64Array that EngineHandle.stats() fills. */
export const STATS_LENGTH = 15;

// The memory meter shared with native (native/loop.h, kMeter*).
export const METER_QUEUED = 0;
export const METER_HELD = 1;
export const METER_LENGTH = 2;
