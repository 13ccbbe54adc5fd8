// permessage-deflate (RFC 7692): the per-connection codec. Negotiation is in
// deflate-negotiation.ts and re-exported here, so the WebSocket layer imports
// one module.
//
// On the JS thread, in bounded slices, and why. The engine handles a batch
// of reads in one call and flushes the writes made during it once, at the
// end (DESIGN.md). A codec that answers in the same call keeps that: a
// message is compressed inside writeMessage() and its frame corked with the
// others, a received message is inflated inside Receiver.push() and
// delivered in wire order. Async zlib (what ws does) costs a thread-pool
// round trip per message: measured on this machine with Node 20, a 2.8 KB
// JSON message compressed and inflated with context takeover took 3.7 us
// synchronously against 115 us through zlib streams. But a message that
// inflates to 16 MiB takes 15-25 ms, and 30 of them arriving together
// stalled every other connection for 3 s: so each operation runs in slices
// that share a budget per loop turn (deflate-work.ts, which also has the
// measurements against async zlib). What fits in the budget still finishes
// in the caller's stack, as above; the rest goes on in later turns, and the
// Receiver and the connection keep each direction in order around it
// (compressLater, decompressLater).
//
// Node's public zlib has no synchronous call that keeps a context between
// messages: deflateRawSync() and friends create a stream, run it once
// through _processChunk(chunk, flag) without a callback, and that path
// closes the native handle at the end (Node 20 lib/zlib.js,
// processChunkSync() ends with _close(); a second call throws). The step it
// takes, though, is `handle.writeSync(flush, in, inOff, inLen, out, outOff,
// outLen)` on the stream's native handle, with the counts left in
// `stream._writeState` ([availOut, availIn]). The "handle" backend below
// calls exactly that, on a handle it keeps: zlib's own streaming with
// Z_SYNC_FLUSH, a context kept across messages as long as we like, errors
// reported through the handle's `onerror` (replaced here, so that a corrupt
// message is an exception rather than a destroyed stream emitting 'error').
// These are internals, so they are checked once per thread before use (a
// round trip of the RFC 7692 §7.2.3.2 example, byte for byte, and a corrupt
// input that must report an error). Should a Node version change them, the
// "dictionary" backend takes over: public deflateRawSync()/inflateRawSync()
// per message, with the context carried as a preset dictionary of the last
// 2^windowBits bytes of plaintext. That is exactly what an LZ77 window
// holds, so it is correct, but it re-initialises zlib per message (about
// 60 us for the same round trip).
//
// Memory. No zlib state exists until a message is actually compressed or
// inflated. With context takeover in a direction the state lives as long as
// the connection (deflate about 2^(w+2) + 2^(memLevel+9) bytes: 256 KiB at
// the defaults w=15, memLevel=8; inflate about 2^w + 7 KiB); with
// no_context_takeover it is taken from a small per-thread pool for one
// message and returned reset (at most POOL_PER_CONFIG per configuration).
// close() gives everything back, and cancels an operation still going on.
// Work in flight is bounded per thread by the budget, not by a count: at
// most TURN_BUDGET_MS of slices per loop turn, and one operation per
// connection and direction. An operation that yields between slices moves
// its output out of the per-thread scratch buffer first. Inflation is
// bounded by the message length limit: zlib is never given room for more
// than limit + 1 bytes in all, and the first byte past the limit ends it with
// 1009, so a bomb costs at most the limit in memory, never its inflated size.
// The cost of this choice is CPU on the JS thread (async zlib would use other
// cores): scale with one engine per worker thread instead.
//
// Wire format (§7.2.1, §7.2.2): a message is compressed with Z_SYNC_FLUSH,
// which ends the output with an empty stored block, and its last 4 bytes
// (00 00 ff ff) are removed; the receiver appends them back before
// inflating. RSV1 goes on the first frame of a compressed message only.
import { Buffer, constants as bufferConstants } from 'node:buffer';
import zlib from 'node:zlib';
import { ProtocolError } from '../errors.js';
import { CloseCode } from './close.js';
import { DEFAULT_MAX_MESSAGE_LENGTH, type MessageDecompressor } from './receiver.js';
import { STEP_BYTES, cancel, submit, type ZlibJob } from './deflate-work.js';
import type { DeflateNegotiationOptions, DeflateParams } from './deflate-negotiation.js';

export * from './deflate-negotiation.js';

/** Options of the codec; read by PerMessageDeflate, ignored by negotiation. */
export interface DeflateCodecOptions {
  /** Whole messages shorter than this many bytes are sent uncompressed (RSV1 clear). Default 1024. */
  threshold?: number;
  /**
   * zlib level, 0..9 or -1 (zlib's default, 6). Default 1: measured here on
   * 400-byte JSON messages with context takeover, level 1 took 4.5 us per
   * message for a ratio of 0.31, level 6 10.3 us for 0.25. This engine's
   * users count CPU per message; gorilla/websocket defaults to 1 too.
   */
  level?: number;
  /** zlib memLevel 1..9 (memory of the compressor's hash tables: 2^(memLevel+9) bytes). Default 8. */
  memLevel?: number;
  /**
   * Bytes a message may inflate to; 0 = no limit of its own. Default 16 MiB.
   * decompress() applies the smaller of this and its maxLength argument
   * (the Receiver passes its own maxMessageLength), 0 meaning none.
   */
  maxMessageLength?: number;
}

/** Everything permessage-deflate takes, negotiation and codec. */
export interface DeflateOptions extends DeflateNegotiationOptions, DeflateCodecOptions {
  /**
   * Server only (the Upgrader): connections of this server that may have
   * compression at once. Each may hold zlib state (created on its first
   * compressed message, freed when it closes): about 256 KiB to compress
   * at the defaults (windowBits 15, memLevel 8; less with a smaller
   * serverMaxWindowBits or memLevel) and 40 KiB to inflate. Past the cap a
   * new connection is upgraded without compression (the extension is
   * declined in the handshake), not refused. Default
   * DEFAULT_MAX_COMPRESSED_CONNECTIONS (4,096: at most about 1.2 GiB of zlib
   * state at the defaults).
   */
  maxCompressedConnections?: number;
}

export const DEFAULT_MAX_COMPRESSED_CONNECTIONS = 4096;

/** options.maxCompressedConnections, checked, or its default. */
export function maxCompressedConnections(options: DeflateOptions): number {
  const v = options.maxCompressedConnections;
  if (v === undefined) return DEFAULT_MAX_COMPRESSED_CONNECTIONS;
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`permessage-deflate: maxCompressedConnections must be an integer >= 0, got ${String(v)}`);
  return v;
}

export const DEFAULT_THRESHOLD = 1024;

/**
 * The inflation limit of a connection: the smaller of the message length
 * limit and the compression options' own maxMessageLength, 0 meaning "none"
 * on either side.
 */
export function inflationLimit(messageLengthLimit: number, options: DeflateCodecOptions): number {
  const own = options.maxMessageLength ?? 0;
  if (own === 0) return messageLengthLimit;
  if (messageLengthLimit === 0) return own;
  return Math.min(own, messageLengthLimit);
}
export const DEFAULT_LEVEL = 1;
export const DEFAULT_MEM_LEVEL = 8;

/** §7.2.1: the 4 bytes a sync flush ends with, removed by the sender and appended by the receiver. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * §7.2.3.6: a message whose compressed form is empty is sent as this byte,
 * the header of a stored block that the appended tail completes.
 */
const EMPTY_BLOCK_HEADER = 0x00;

const { Z_SYNC_FLUSH, Z_NO_FLUSH } = zlib.constants;

// Node 20's zlib rejects chunkSize below 64. The stream's own output buffer
// is never used here (we pass ours to writeSync), so keep it minimal.
const MIN_CHUNK_SIZE = 64;

// Output goes first into one scratch buffer per thread (each operation runs to
// completion before the next, so one suffices), then into chunks that double
// up to MAX_OUTPUT_CHUNK. The result is copied once into a buffer of exactly
// its size, which the caller keeps.
const SCRATCH_SIZE = 64 * 1024;
const MAX_OUTPUT_CHUNK = 4 * 1024 * 1024;
let scratch: Buffer | null = null;

/** Idle zlib objects kept per configuration (kind, window, level, memLevel) for no_context_takeover. */
const POOL_PER_CONFIG = 4;

const MAX_BUFFER_LENGTH = bufferConstants.MAX_LENGTH;

// ---------------------------------------------------------------------------
// Errors inside the engines, turned into ProtocolErrors by the codec.

/** The peer's data is not a valid DEFLATE stream (or zlib failed). */
class ZlibDataError extends Error {}

/** Inflation went past the limit; nothing more was produced. */
class LimitError extends Error {}

// ---------------------------------------------------------------------------
// Output collection with a limit

class Output {
  total = 0;
  buf: Buffer;
  offset = 0;
  readonly #full: Buffer[] = [];
  #nextSize = SCRATCH_SIZE;

  /** `limit`: the most bytes allowed; producing one more throws LimitError. */
  constructor(readonly limit: number) {
    this.buf = scratch ??= Buffer.allocUnsafeSlow(SCRATCH_SIZE);
  }

  /** Bytes the next write may put at buf[offset]: never more than one past the limit in all. */
  room(): number {
    if (this.offset === this.buf.length) {
      this.#full.push(this.buf);
      this.#nextSize = Math.min(this.#nextSize * 2, MAX_OUTPUT_CHUNK);
      this.buf = Buffer.allocUnsafe(Math.min(this.#nextSize, this.limit + 1 - this.total));
      this.offset = 0;
    }
    return Math.min(this.buf.length - this.offset, this.limit + 1 - this.total);
  }

  commit(n: number): void {
    this.offset += n;
    this.total += n;
    if (this.total > this.limit) throw new LimitError();
  }

  /** Whether the output so far ends with 00 00 ff ff. */
  endsWithTail(): boolean {
    if (this.total < 4) return false;
    let k = 3; // index into TAIL, from its end
    const chunks = [...this.#full, this.buf.subarray(0, this.offset)];
    for (let c = chunks.length - 1; c >= 0; c--) {
      const chunk = chunks[c]!;
      for (let i = chunk.length - 1; i >= 0; i--) {
        if (chunk[i] !== TAIL[k]) return false;
        if (k-- === 0) return true;
      }
    }
    return false;
  }

  /**
   * Called before an operation yields between slices: other operations will
   * use the per-thread scratch buffer in the meantime, so what this one
   * keeps there is moved into a buffer of its own. The next room() starts a
   * new chunk after it.
   */
  detach(): void {
    // The scratch is always the first chunk: in #full once it filled up.
    if (this.#full[0] === scratch) this.#full[0] = Buffer.from(scratch);
    else if (this.buf === scratch) {
      const own = Buffer.allocUnsafe(this.offset);
      own.set(this.buf.subarray(0, this.offset));
      this.buf = own;
    }
  }

  // take() in slices: the target and how much of it is filled.
  #target: Buffer | null = null;
  #copied = 0;

  /**
   * The first `length` bytes, copied into a new buffer of exactly that
   * size, a slice at a time: copies at most `max` more bytes and returns the
   * buffer once all `length` bytes are in it, null before (detach() before
   * yielding, as in the other phases). A new buffer of 16 MiB costs 15-40 ms
   * to fill here (its pages are faulted in as they are written): in one go,
   * that alone would stall the loop.
   */
  takeSome(length: number, max: number): Buffer | null {
    const target = (this.#target ??= Buffer.allocUnsafe(length));
    const end = Math.min(length, this.#copied + max);
    let chunkStart = 0;
    for (const chunk of [...this.#full, this.buf.subarray(0, this.offset)]) {
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd > this.#copied && chunkStart < end) {
        const from = this.#copied - chunkStart;
        const to = Math.min(chunk.length, end - chunkStart);
        target.set(chunk.subarray(from, to), this.#copied);
        this.#copied += to - from;
      }
      chunkStart = chunkEnd;
      if (chunkStart >= end) break;
    }
    if (this.#copied < length) return null;
    this.#target = null;
    return target;
  }
}

/**
 * §7.2.1: how much of what a sync flush produced goes in the frame: all of
 * it but the tail. (Empty output, which a sync flush with no new input after
 * an earlier one produces, is sent as EMPTY_BLOCK_HEADER: see HandleOp.)
 */
function compressedLength(out: Output, fin: boolean): number {
  if (!fin || out.total === 0) return out.total;
  if (!out.endsWithTail()) throw new Error('permessage-deflate: zlib output does not end with a sync flush block');
  return out.total - TAIL.length;
}

// ---------------------------------------------------------------------------
// Backends: one zlib stream for one direction. Both are synchronous; the
// handle backend can also stop between slices of an operation.

type Kind = 'deflate' | 'inflate';

/** An operation run a bounded slice at a time. */
interface Op {
  /** Runs one slice; the result once the operation has finished, null before. Throws LimitError, ZlibDataError. */
  step(): Buffer | null;
}

/** Runs `op` to its end in one go. */
function runOp(op: Op): Buffer {
  for (;;) {
    const out = op.step();
    if (out !== null) return out;
  }
}

interface Engine {
  readonly kind: Kind;
  readonly key: string;
  /** Inflate only: a final block ended the DEFLATE stream; the object must be reset before reuse. */
  readonly ended: boolean;
  /** Compresses `data` with Z_SYNC_FLUSH; `fin` strips the tail (§7.2.1). */
  deflate(data: Uint8Array, fin: boolean): Buffer;
  /** Inflates `data` then the tail; throws LimitError past `limit` bytes, ZlibDataError for bad data. */
  inflate(data: Uint8Array, limit: number): Buffer;
  /** deflate() a slice at a time (deflate-work.ts). Nothing else may use this engine until the operation ends. */
  deflateOp(data: Uint8Array, fin: boolean): Op;
  /** inflate() a slice at a time. */
  inflateOp(data: Uint8Array, limit: number): Op;
  /** Forgets the context (deflateReset / inflateReset). */
  reset(): void;
  /** Frees the zlib memory now. */
  close(): void;
}

/** The native handle of a Node zlib stream (node_zlib.cc), the part processChunkSync() uses. */
interface NativeZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  reset(): void;
  close(): void;
  onerror: (message: string, errno: number, code: string) => void;
}

interface ZlibStreamInternals {
  _handle?: NativeZlibHandle | null;
  _writeState?: Uint32Array;
}

let liveEngines = 0;

function engineKey(kind: Kind, windowBits: number, level: number, memLevel: number): string {
  return kind === 'deflate' ? `deflate/${windowBits}/${level}/${memLevel}` : `inflate/${windowBits}`;
}

class HandleEngine implements Engine {
  readonly key: string;
  ended = false;
  // The handle refers to its stream object (Node's owner_symbol), so holding
  // the handle keeps both alive.
  #handle: NativeZlibHandle | null;
  readonly #state: Uint32Array;
  #error: string | null = null;
  // Inside writeSync(). Node asserts (and aborts the process) if a handle is
  // written while a write is in progress, which code run from onerror could
  // otherwise do; see the constructor.
  #busy = false;

  constructor(
    readonly kind: Kind,
    windowBits: number,
    level: number,
    memLevel: number,
  ) {
    this.key = engineKey(kind, windowBits, level, memLevel);
    const stream =
      kind === 'deflate'
        ? zlib.createDeflateRaw({ windowBits, level, memLevel, chunkSize: MIN_CHUNK_SIZE })
        : zlib.createInflateRaw({ windowBits, chunkSize: MIN_CHUNK_SIZE });
    const internals = stream as unknown as ZlibStreamInternals;
    const handle = internals._handle;
    const state = internals._writeState;
    if (handle == null || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array) || state.length < 2) {
      throw new Error('permessage-deflate: this Node version has no synchronous zlib handle');
    }
    // Called synchronously from inside writeSync() when zlib reports an
    // error. Node's own handler would destroy the stream and emit 'error'
    // later; we only record it and throw once writeSync() returns. (Node
    // calls it through MakeCallback: from outside any callback scope, as in
    // a script's top-level code, queued microtasks may run right there, while
    // the handle is still marked busy. #busy makes them fail cleanly rather
    // than abort if they touch this stream.)
    handle.onerror = (message: string, _errno: number, code: string) => {
      this.#error = `${message} (${code})`;
    };
    this.#handle = handle;
    this.#state = state;
    liveEngines++;
  }

  /** After pump(): whether zlib stopped on its own (input consumed and flushed, or the stream ended) rather than at the cap. */
  stopped = false;

  /**
   * Runs input[inOff, inOff + inLen) through zlib with `flush` into `out`,
   * until zlib stops (all input consumed and flushed, or the DEFLATE stream
   * ended) or `cap` bytes were produced. Returns the input bytes consumed;
   * `stopped` says which of the two ended it.
   */
  pump(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Output, cap: number): number {
    const handle = this.#handle;
    if (handle === null) throw new Error('permessage-deflate: zlib stream used after close');
    if (this.#busy) throw new Error('permessage-deflate: zlib stream used re-entrantly');
    const state = this.#state;
    const start = inOff;
    let produced = 0;
    for (;;) {
      const room = Math.min(out.room(), cap - produced);
      if (room === 0) {
        this.stopped = false;
        return inOff - start;
      }
      this.#error = null;
      this.#busy = true;
      try {
        handle.writeSync(flush, input, inOff, inLen, out.buf, out.offset, room);
      } finally {
        this.#busy = false;
      }
      if (this.#error !== null) throw new ZlibDataError(this.#error);
      const availOut = state[0]!;
      const availIn = state[1]!;
      out.commit(room - availOut);
      produced += room - availOut;
      inOff += inLen - availIn;
      inLen = availIn;
      // Output space used up: zlib may have more to give.
      if (availOut === 0) continue;
      // Room left and input left: only the end of the DEFLATE stream (a
      // block with BFINAL set) stops zlib there. What follows is ignored.
      if (inLen > 0) this.ended = true;
      this.stopped = true;
      return inOff - start;
    }
  }

  deflate(data: Uint8Array, fin: boolean): Buffer {
    return runOp(this.deflateOp(data, fin));
  }

  inflate(data: Uint8Array, limit: number): Buffer {
    return runOp(this.inflateOp(data, limit));
  }

  deflateOp(data: Uint8Array, fin: boolean): Op {
    return new HandleOp(this, true, data, fin, MAX_BUFFER_LENGTH);
  }

  inflateOp(data: Uint8Array, limit: number): Op {
    return new HandleOp(this, false, data, true, limit);
  }

  reset(): void {
    if (this.#handle === null) return;
    if (this.#busy) throw new Error('permessage-deflate: zlib stream reset re-entrantly');
    this.#error = null;
    this.#handle.reset();
    this.ended = false;
    if (this.#error !== null) throw new ZlibDataError(this.#error);
  }

  close(): void {
    if (this.#handle === null) return;
    // The stream object is dropped with the handle: it was never written
    // to, so it has no pending work, buffers or listeners.
    this.#handle.close();
    this.#handle = null;
    liveEngines--;
  }
}

const enum Phase {
  Data, // the message's bytes through zlib
  Tail, // inflating: the 4 bytes of §7.2.2 after them
  Copy, // the result into a buffer of its own
}

/**
 * One compression or inflation on a HandleEngine, in slices of at most
 * STEP_BYTES: of input when compressing (a message of any size becomes
 * several zlib calls with Z_NO_FLUSH, then one Z_SYNC_FLUSH: the same DEFLATE
 * stream as one call), of output when inflating (the input is at most a
 * message, the output may be 1,000 times more), and of copying at the end.
 */
class HandleOp implements Op {
  #phase = Phase.Data;
  #input: Uint8Array;
  #inOff = 0;
  readonly #out: Output;
  #length = -1; // of the result, once known

  constructor(
    readonly engine: HandleEngine,
    readonly deflating: boolean,
    input: Uint8Array,
    readonly fin: boolean,
    limit: number,
  ) {
    this.#input = input;
    this.#out = new Output(limit);
  }

  step(): Buffer | null {
    const e = this.engine;
    const out = this.#out;
    const startTotal = out.total;
    while (this.#phase !== Phase.Copy) {
      const input = this.#input;
      if (this.deflating) {
        const len = Math.min(input.length - this.#inOff, STEP_BYTES);
        const last = this.#inOff + len === input.length;
        this.#inOff += e.pump(last ? Z_SYNC_FLUSH : Z_NO_FLUSH, input, this.#inOff, len, out, MAX_BUFFER_LENGTH);
        if (!last) return this.#yield();
        this.#length = compressedLength(out, this.fin);
        this.#phase = Phase.Copy;
        // A full slice of input was compressed: copying waits for the next slice.
        if (len === STEP_BYTES) return this.#yield();
      } else {
        const cap = STEP_BYTES - (out.total - startTotal);
        this.#inOff += e.pump(Z_SYNC_FLUSH, input, this.#inOff, input.length - this.#inOff, out, cap);
        if (!e.stopped) return this.#yield();
        if (this.#phase === Phase.Data && !e.ended) {
          this.#phase = Phase.Tail;
          this.#input = TAIL;
          this.#inOff = 0;
        } else {
          this.#length = out.total;
          this.#phase = Phase.Copy;
        }
      }
    }
    if (this.deflating && this.fin && out.total === 0) return Buffer.from([EMPTY_BLOCK_HEADER]);
    return out.takeSome(this.#length, STEP_BYTES) ?? this.#yield();
  }

  #yield(): null {
    this.#out.detach();
    return null;
  }
}

/** The last `size` bytes of history followed by `data`, in a new buffer. */
function appendHistory(history: Buffer, data: Uint8Array, size: number): Buffer {
  if (data.length >= size) return Buffer.from(data.subarray(data.length - size));
  const keep = Math.min(history.length, size - data.length);
  const out = Buffer.allocUnsafe(keep + data.length);
  out.set(history.subarray(history.length - keep), 0);
  out.set(data, keep);
  return out;
}

const EMPTY = Buffer.alloc(0);

class DictionaryEngine implements Engine {
  readonly key: string;
  readonly ended = false;
  // The context: the plaintext an LZ77 window of this size would hold.
  #history: Buffer = EMPTY;
  #closed = false;

  constructor(
    readonly kind: Kind,
    readonly windowBits: number,
    readonly level: number,
    readonly memLevel: number,
  ) {
    this.key = engineKey(kind, windowBits, level, memLevel);
    liveEngines++;
  }

  #dictionary(): { dictionary?: Buffer } {
    return this.#history.length > 0 ? { dictionary: this.#history } : {};
  }

  deflate(data: Uint8Array, fin: boolean): Buffer {
    this.#check();
    const raw = zlib.deflateRawSync(data, {
      windowBits: this.windowBits,
      level: this.level,
      memLevel: this.memLevel,
      finishFlush: Z_SYNC_FLUSH,
      ...this.#dictionary(),
    });
    this.#history = appendHistory(this.#history, data, 1 << this.windowBits);
    if (!fin) return raw;
    if (raw.length === 0) return Buffer.from([EMPTY_BLOCK_HEADER]);
    return raw.subarray(0, raw.length - TAIL.length);
  }

  inflate(data: Uint8Array, limit: number): Buffer {
    this.#check();
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(Buffer.concat([data, TAIL]), {
        windowBits: this.windowBits,
        finishFlush: Z_SYNC_FLUSH,
        maxOutputLength: Math.max(1, Math.min(limit, MAX_BUFFER_LENGTH)),
        ...this.#dictionary(),
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException)?.code === 'ERR_BUFFER_TOO_LARGE') throw new LimitError();
      throw new ZlibDataError(`${(err as Error)?.message} (${(err as NodeJS.ErrnoException)?.code})`);
    }
    if (out.length > limit) throw new LimitError();
    this.#history = appendHistory(this.#history, out, 1 << this.windowBits);
    return out;
  }

  // The fallback runs an operation in one slice: public zlib has no way to stop in the middle.
  deflateOp(data: Uint8Array, fin: boolean): Op {
    return { step: () => this.deflate(data, fin) };
  }

  inflateOp(data: Uint8Array, limit: number): Op {
    return { step: () => this.inflate(data, limit) };
  }

  reset(): void {
    this.#history = EMPTY;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#history = EMPTY;
    liveEngines--;
  }

  #check(): void {
    if (this.#closed) throw new Error('permessage-deflate: zlib stream used after close');
  }
}

// ---------------------------------------------------------------------------
// Backend choice, made once per thread

export type ZlibBackend = 'handle' | 'dictionary';

let backend: ZlibBackend | null = null;

const hex = (b: Buffer): string => b.toString('hex');

/** Whether the handle backend works on this Node: the §7.2.3.2 example both ways, and a corrupt input reported. */
function handleBackendWorks(): boolean {
  let d: HandleEngine | null = null;
  let i: HandleEngine | null = null;
  try {
    d = new HandleEngine('deflate', 15, 6, 8);
    i = new HandleEngine('inflate', 15, 0, 0);
    const hello = Buffer.from('Hello');
    const a = d.deflate(hello, true);
    const b = d.deflate(hello, true);
    if (hex(a) !== 'f248cdc9c90700' || hex(b) !== 'f200110000') return false;
    if (hex(i.inflate(a, 100)) !== hex(hello) || hex(i.inflate(b, 100)) !== hex(hello)) return false;
    try {
      i.inflate(Buffer.from([0xff, 0xff, 0xff, 0xff]), 100);
      return false;
    } catch (err) {
      return err instanceof ZlibDataError;
    }
  } catch {
    return false;
  } finally {
    d?.close();
    i?.close();
  }
}

/** The backend in use on this thread: 'handle' (zlib's native handle, kept per connection) or 'dictionary' (the fallback). */
export function zlibBackend(): ZlibBackend {
  backend ??= handleBackendWorks() ? 'handle' : 'dictionary';
  return backend;
}

/**
 * For tests and diagnostics: forces a backend for codecs created from now on
 * ('auto' probes again). Codecs already created keep theirs. Empties the pool.
 */
export function setZlibBackend(name: ZlibBackend | 'auto'): void {
  if (name !== 'auto' && name !== 'handle' && name !== 'dictionary') {
    throw new TypeError(`setZlibBackend(name): name must be 'handle', 'dictionary' or 'auto', got ${String(name)}`);
  }
  drainZlibPool();
  backend = name === 'auto' ? null : name;
}

// ---------------------------------------------------------------------------
// The pool of reset zlib objects for no_context_takeover

const pool = new Map<string, Engine[]>();
let pooled = 0;

/** A zlib object for one message (no_context_takeover) or for the connection; `key` is engineKey() of the rest. */
function acquire(key: string, kind: Kind, which: ZlibBackend, windowBits: number, level: number, memLevel: number): Engine {
  if (which === 'handle') {
    const free = pool.get(key);
    const engine = free?.pop();
    if (engine !== undefined) {
      pooled--;
      return engine;
    }
    return new HandleEngine(kind, windowBits, level, memLevel);
  }
  return new DictionaryEngine(kind, windowBits, level, memLevel);
}

/** Resets `engine` and keeps it for the next message with the same configuration, or frees it. */
function release(engine: Engine): void {
  if (engine instanceof HandleEngine) {
    let free = pool.get(engine.key);
    if (free === undefined) pool.set(engine.key, (free = []));
    if (free.length < POOL_PER_CONFIG) {
      try {
        engine.reset();
        free.push(engine);
        pooled++;
        return;
      } catch {
        // A stream that cannot be reset is not reused.
      }
    }
  }
  engine.close();
}

/** Frees the zlib objects kept for reuse (when the engine stops, or to return memory). */
export function drainZlibPool(): void {
  for (const free of pool.values()) for (const engine of free) engine.close();
  pool.clear();
  pooled = 0;
}

/** zlib objects alive on this thread (in use or pooled) and, of those, pooled. For tests and monitoring. */
export function zlibStats(): { live: number; pooled: number } {
  return { live: liveEngines, pooled };
}

// ---------------------------------------------------------------------------
// The codec

/** An Op run by deflate-work.ts; `onDone` is set once it did not finish at once. */
class CodecJob implements ZlibJob {
  cancelled = false;
  result: Buffer | null = null;
  error: unknown = undefined;
  onDone: ((err: unknown, out: Buffer | null) => void) | null = null;

  #op: Op | null = null;

  /** `start`: called in the first slice, makes the operation. */
  constructor(
    readonly compressing: boolean,
    readonly start: () => Op,
  ) {}

  step(): boolean {
    this.#op ??= this.start();
    this.result = this.#op.step();
    return this.result !== null;
  }

  done(err: unknown): void {
    this.error = err;
    this.onDone?.(err, this.result);
  }
}

function intOption(options: DeflateCodecOptions, key: keyof DeflateCodecOptions, min: number, max: number, fallback: number): number {
  const v = options[key];
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new RangeError(`permessage-deflate: ${key} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

function checkWindowBits(params: DeflateParams, key: 'serverMaxWindowBits' | 'clientMaxWindowBits'): number {
  const v = params[key];
  if (!Number.isInteger(v) || v < 8 || v > 15) throw new RangeError(`PerMessageDeflate: params.${key} must be an integer from 8 to 15, got ${String(v)}`);
  return v;
}

function toBytes(data: Uint8Array | string): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new TypeError('PerMessageDeflate.compress(data): data must be a Buffer, Uint8Array or string');
}

/**
 * Submits `job` (deflate-work.ts). Finished now: what `end` makes of it (or
 * throws). Otherwise undefined; `pending` holds the job until it ends, then
 * done() gets what `end` makes of it, or what `end` throws.
 */
function runJob(
  job: CodecJob,
  done: (err: Error | null, out: Buffer | null) => void,
  pending: (job: CodecJob | null) => void,
  end: (err: unknown, out: Buffer | null) => Buffer,
): Buffer | undefined {
  if (submit(job)) return end(job.error, job.result);
  pending(job);
  job.onDone = (err, out) => {
    pending(null);
    let result: Buffer;
    try {
      result = end(err, out);
    } catch (e) {
      done(e as Error, null);
      return;
    }
    done(null, result);
  };
  return undefined;
}

/**
 * One connection's permessage-deflate, after negotiation. `role` is this
 * end: a server compresses with the server_* parameters and inflates with
 * the client_* ones, a client the other way round. Synchronous, not
 * re-entrant, one per connection. It is the Receiver's MessageDecompressor:
 * `receiver.setDecompressor(pmd)`.
 */
export class PerMessageDeflate implements MessageDecompressor {
  readonly role: 'server' | 'client';
  readonly params: Readonly<DeflateParams>;
  readonly threshold: number;
  readonly maxMessageLength: number;
  readonly level: number;
  readonly memLevel: number;
  readonly backend: ZlibBackend;

  // Compressing: our own window. zlib cannot compress raw DEFLATE with an
  // 8-bit window (deflateInit2 refuses windowBits 8 for raw streams since
  // 1.2.9, Node turns 8 into 9), so a limit of 8 compresses with 9. That
  // still keeps the promise: zlib never emits a distance above
  // w_size - MIN_LOOKAHEAD (deflate.c MAX_DIST), 512 - 262 = 250 for 9 bits,
  // so every match stays inside the 256 bytes the peer keeps. The tests
  // inflate such output with an 8-bit window, on inputs that repeat at
  // distances 251..511, at every level and strategy.
  readonly #deflateBits: number;
  readonly #deflateNoContext: boolean;
  readonly #deflateKey: string;
  // Inflating: the peer's window (raw inflate accepts 8).
  readonly #inflateBits: number;
  readonly #inflateNoContext: boolean;
  readonly #inflateKey: string;

  #deflater: Engine | null = null;
  #inflater: Engine | null = null;
  // Operations going on in later loop turns (compressLater, decompressLater), one per direction at most.
  #deflating: CodecJob | null = null;
  #inflating: CodecJob | null = null;
  // A compressed message is being sent in fragments (compress(..., false) was called).
  #messageOpen = false;
  // An error lost the inflate context: later messages cannot be decoded.
  #inflateBroken = false;
  #closed = false;

  constructor(params: DeflateParams, role: 'server' | 'client', options: DeflateCodecOptions = {}) {
    if (params === null || typeof params !== 'object') throw new TypeError('new PerMessageDeflate(params, role, options): params must be an object');
    if (role !== 'server' && role !== 'client') throw new TypeError("new PerMessageDeflate(params, role, options): role must be 'server' or 'client'");
    if (options === null || typeof options !== 'object') throw new TypeError('new PerMessageDeflate(params, role, options): options must be an object');
    const serverBits = checkWindowBits(params, 'serverMaxWindowBits');
    const clientBits = checkWindowBits(params, 'clientMaxWindowBits');
    this.role = role;
    this.params = Object.freeze({
      serverNoContextTakeover: params.serverNoContextTakeover === true,
      clientNoContextTakeover: params.clientNoContextTakeover === true,
      serverMaxWindowBits: serverBits,
      clientMaxWindowBits: clientBits,
    });
    this.threshold = intOption(options, 'threshold', 0, Number.MAX_SAFE_INTEGER, DEFAULT_THRESHOLD);
    this.level = intOption(options, 'level', -1, 9, DEFAULT_LEVEL);
    this.memLevel = intOption(options, 'memLevel', 1, 9, DEFAULT_MEM_LEVEL);
    this.maxMessageLength = intOption(options, 'maxMessageLength', 0, Number.MAX_SAFE_INTEGER, DEFAULT_MAX_MESSAGE_LENGTH);
    const server = role === 'server';
    this.#deflateBits = Math.max(9, server ? serverBits : clientBits);
    this.#deflateNoContext = server ? this.params.serverNoContextTakeover : this.params.clientNoContextTakeover;
    this.#inflateBits = server ? clientBits : serverBits;
    this.#inflateNoContext = server ? this.params.clientNoContextTakeover : this.params.serverNoContextTakeover;
    this.#deflateKey = engineKey('deflate', this.#deflateBits, this.level, this.memLevel);
    this.#inflateKey = engineKey('inflate', this.#inflateBits, 0, 0);
    this.backend = zlibBackend();
  }

  /** True while a message compressed in fragments is open (the last compress() had fin = false). */
  get messageOpen(): boolean {
    return this.#messageOpen;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The payload for the next frame of an outgoing message, compressed.
   * Returns null for a whole message (fin, no fragmented message open)
   * shorter than `threshold` bytes: send it uncompressed, RSV1 clear.
   * Otherwise the result goes in a frame whose RSV1 is set if it is the
   * first frame of the message (§6.1): compress(data, false) starts or
   * continues a fragmented message whatever its size, compress(data, true)
   * ends it. Throws Error after close() or if zlib fails.
   */
  compress(data: Uint8Array | string, fin = true): Buffer | null {
    if (this.#closed) throw new Error('PerMessageDeflate.compress(): the codec is closed');
    if (this.#deflating !== null) throw new Error('PerMessageDeflate.compress(): a compression is in progress (compressLater)');
    const bytes = toBytes(data);
    if (!this.#messageOpen && fin && bytes.length < this.threshold) return null;
    const z = this.#takeDeflater();
    let out: Buffer;
    try {
      out = z.deflate(bytes, fin);
    } catch (err) {
      return this.#endDeflate(z, fin, err, null);
    }
    return this.#endDeflate(z, fin, undefined, out);
  }

  /**
   * compress(data) of a whole message, in slices that share the thread's
   * budget of zlib work per loop turn (deflate-work.ts). Returns what
   * compress() returns when it finished now (always for a message under the
   * threshold, usually for one of ordinary size); undefined when it goes on
   * in later loop turns: `done(err, payload)` is then called once it has,
   * unless close() came first. Until then nothing else may be compressed:
   * the caller queues what it sends behind this message. Throws as
   * compress() does when it fails now.
   */
  compressLater(data: Uint8Array | string, done: (err: Error | null, payload: Buffer | null) => void): Buffer | null | undefined {
    if (this.#closed) throw new Error('PerMessageDeflate.compressLater(): the codec is closed');
    if (this.#deflating !== null) throw new Error('PerMessageDeflate.compressLater(): a compression is in progress');
    const bytes = toBytes(data);
    if (!this.#messageOpen && bytes.length < this.threshold) return null;
    // The zlib stream is created (or taken from the pool) in the first
    // slice, within the budget: 2,000 connections' first messages in one
    // batch would otherwise create 2,000 streams in one go.
    let z: Engine | null = null;
    const job = new CodecJob(true, () => (z = this.#takeDeflater()).deflateOp(bytes, true));
    return runJob(job, done, (j) => (this.#deflating = j), (err, out) => this.#endDeflate(z, true, err, out));
  }

  /** True while a compressLater() goes on in later loop turns. */
  get compressing(): boolean {
    return this.#deflating !== null;
  }

  #takeDeflater(): Engine {
    const z = this.#deflater ?? acquire(this.#deflateKey, 'deflate', this.backend, this.#deflateBits, this.level, this.memLevel);
    this.#deflater = z;
    return z;
  }

  /** The end of a compression: the payload, or `err` thrown once the engine is dropped. */
  #endDeflate(z: Engine | null, fin: boolean, err: unknown, out: Buffer | null): Buffer {
    if (err !== undefined) {
      this.#deflater = null;
      this.#messageOpen = false;
      z?.close();
      throw err;
    }
    this.#messageOpen = !fin;
    if (fin && this.#deflateNoContext) {
      this.#deflater = null;
      release(z!);
    }
    return out!;
  }

  /**
   * The Receiver's hook: inflates the whole payload of a message received
   * with RSV1 (the tail appended, §7.2.2). At most the smaller of
   * `maxLength` and maxMessageLength bytes (0: no limit from that side);
   * past it ProtocolError 1009 WS_ERR_UNSUPPORTED_MESSAGE_LENGTH, stopping
   * as soon as the limit is passed. Invalid DEFLATE data: ProtocolError 1007
   * WS_ERR_DECOMPRESS (as ws, and the Receiver for other failures). After
   * such an error, with context takeover, every later call fails the same
   * way: the context is lost. A DEFLATE block with BFINAL set (§7.2.3.4)
   * ends the stream: bytes after it are ignored and the next message starts
   * a new stream with an empty window, as ws does.
   */
  decompress(data: Uint8Array, maxLength = 0): Buffer {
    const limit = this.#startInflate(data, maxLength, 'decompress');
    if (limit === 0) return Buffer.alloc(0);
    const z = this.#takeInflater();
    let out: Buffer;
    try {
      out = z.inflate(data, limit);
    } catch (err) {
      return this.#endInflate(z, limit, err, null);
    }
    return this.#endInflate(z, limit, undefined, out);
  }

  /**
   * decompress() in slices that share the thread's budget of zlib work per
   * loop turn (deflate-work.ts). Returns the message when it finished now,
   * throws as decompress() does when it failed now; returns undefined when
   * it goes on in later loop turns: `done(err, message)` is then called once
   * it has (err a ProtocolError as decompress() throws), unless close() came
   * first. Until then nothing else may be inflated: the receiver delivers
   * nothing of its connection in the meantime.
   */
  decompressLater(data: Uint8Array, maxLength: number, done: (err: Error | null, message: Buffer | null) => void): Buffer | undefined {
    const limit = this.#startInflate(data, maxLength, 'decompressLater');
    if (limit === 0) return Buffer.alloc(0);
    let z: Engine | null = null; // created in the first slice, as in compressLater()
    const job = new CodecJob(false, () => (z = this.#takeInflater()).inflateOp(data, limit));
    return runJob(job, done, (j) => (this.#inflating = j), (err, out) => this.#endInflate(z, limit, err, out));
  }

  /** Checks before an inflation; its limit, or 0 for an empty payload (an empty message). */
  #startInflate(data: Uint8Array, maxLength: number, what: string): number {
    if (this.#closed) throw new Error(`PerMessageDeflate.${what}(): the codec is closed`);
    if (this.#inflating !== null) throw new Error(`PerMessageDeflate.${what}(): an inflation is in progress`);
    if (this.#inflateBroken) {
      throw new ProtocolError('WS_ERR_DECOMPRESS', CloseCode.InvalidPayload, 'cannot decompress: an earlier error lost the compression context');
    }
    // An empty payload is what a compressor that had nothing to flush
    // produces (a second sync flush in a row); it is an empty message. The
    // tail must not go into zlib alone: it would leave the inflater inside
    // a stored block header and corrupt the next message.
    if (data.length === 0) return 0;
    return effectiveLimit(maxLength, this.maxMessageLength);
  }

  #takeInflater(): Engine {
    const z = this.#inflater ?? acquire(this.#inflateKey, 'inflate', this.backend, this.#inflateBits, 0, 0);
    this.#inflater = z;
    return z;
  }

  /** The end of an inflation: the message, or the ProtocolError for `err` thrown once the engine is dropped. */
  #endInflate(z: Engine | null, limit: number, err: unknown, out: Buffer | null): Buffer {
    if (err !== undefined) {
      this.#inflater = null;
      z?.close();
      if (!this.#inflateNoContext) this.#inflateBroken = true;
      if (err instanceof LimitError) {
        throw new ProtocolError(
          'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
          CloseCode.MessageTooBig,
          `compressed message inflates past the limit of ${limit} bytes`,
        );
      }
      throw new ProtocolError('WS_ERR_DECOMPRESS', CloseCode.InvalidPayload, `invalid compressed data: ${(err as Error)?.message ?? String(err)}`);
    }
    if (this.#inflateNoContext || z!.ended) {
      this.#inflater = null;
      release(z!);
    }
    return out!;
  }

  /** Releases the zlib state of both directions (to the pool when reusable). Idempotent; the codec is unusable after. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const d = this.#deflater;
    const i = this.#inflater;
    this.#deflater = null;
    this.#inflater = null;
    this.#messageOpen = false;
    // An engine stopped in the middle of an operation is freed, not pooled.
    const deflating = this.#dropDeflating();
    const inflating = this.#dropInflating();
    if (d !== null) {
      if (deflating) d.close();
      else release(d);
    }
    if (i !== null) {
      if (inflating) i.close();
      else release(i);
    }
  }

  /** Cancels the compression going on in later turns, if any; whether there was one. */
  #dropDeflating(): boolean {
    const job = this.#deflating;
    if (job === null) return false;
    this.#deflating = null;
    cancel(job);
    return true;
  }

  #dropInflating(): boolean {
    const job = this.#inflating;
    if (job === null) return false;
    this.#inflating = null;
    cancel(job);
    return true;
  }
}

/** The smaller of two limits where 0 means none; none at all is the largest Buffer. */
function effectiveLimit(a: number, b: number): number {
  const x = Number.isSafeInteger(a) && a > 0 ? a : 0;
  const y = b > 0 ? b : 0;
  const m = x === 0 ? y : y === 0 ? x : Math.min(x, y);
  return m === 0 || m > MAX_BUFFER_LENGTH ? MAX_BUFFER_LENGTH : m;
}
