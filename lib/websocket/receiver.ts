// The WebSocket frame parser (RFC 6455 §5): a state machine without I/O.
//
// Feeding: push(chunk) with whatever bytes arrived, in any split, as often as
// needed. Each state needs a fixed number of bytes (header 2, extended length
// 2 or 8, mask key 4) and stops when fewer are buffered; the payload state
// takes whatever is there.
//
// Buffers: `chunk` is a view of the engine's receive buffer, reused after
// push() returns. Nothing here keeps a reference to it: every payload byte is
// copied exactly once, into a buffer the receiver allocated, unmasked on the
// way (one native pass for runs of 512 bytes and more) and UTF-8-checked
// right after the copy, piece by piece as it arrives.
// A message that arrives in one frame is copied into a buffer of exactly its
// length, which is handed to the user and is theirs to keep.
//
// Output: synchronous calls on the handlers object, in wire order, during
// push(). A handler may call stop() (for example because it closed the
// connection): push() then returns at once without parsing further.
//
// Errors fail the connection: onError receives a ProtocolError whose
// `closeCode` is the status to send and whose `code` names the violation,
// and the receiver ignores everything after it.
//
//   code                                     closeCode  violation
//   WS_ERR_EXPECTED_MASK                     1002       server receiver got an unmasked frame
//   WS_ERR_UNEXPECTED_MASK                   1002       client receiver got a masked frame
//   WS_ERR_UNEXPECTED_RSV_1                  1002       RSV1 without a negotiated extension, or on a
//                                                       continuation or control frame
//   WS_ERR_UNEXPECTED_RSV_2_3                1002       RSV2 or RSV3 set
//   WS_ERR_INVALID_OPCODE                    1002       reserved opcode 0x3-0x7, 0xB-0xF
//   WS_ERR_EXPECTED_FIN                      1002       fragmented control frame
//   WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH    1002       control payload > 125, or a 1-byte close
//   WS_ERR_UNEXPECTED_CONTINUATION           1002       continuation frame with no message open
//   WS_ERR_EXPECTED_CONTINUATION             1002       text/binary frame while a message is open
//   WS_ERR_INVALID_PAYLOAD_LENGTH            1002       64-bit length with the top bit set
//   WS_ERR_INVALID_CLOSE_CODE                1002       close code not allowed on the wire (close.ts)
//   WS_ERR_INVALID_UTF8                      1007       text message or close reason not UTF-8
//   WS_ERR_UNSUPPORTED_MESSAGE_LENGTH        1009       message longer than maxMessageLength
//   WS_ERR_BACKLOG_OVERFLOW                  1013       more bytes arrived while a message was
//                                                       inflating than the backlog holds
//   (the decompressor's own codes)           its own    see MessageDecompressor
//
// Inflating later. A decompressor may finish a large message in later loop
// turns (decompressLater, deflate-work.ts). Until it has, the receiver
// delivers nothing more of its connection: what arrives meanwhile (push())
// is copied into a backlog, unparsed, and parsed once the message has been
// delivered, so that everything (a ping, a close frame, the next message, an
// error in it) is reported in wire order. The engine cannot stop reading one
// connection, so the backlog is bounded instead: a message of the largest
// size allowed plus BACKLOG_SLACK; past it the connection fails with 1013
// (the peer sends faster than we can inflate).
import { Buffer, constants as bufferConstants } from 'node:buffer';
import { BudgetError, ProtocolError } from '../errors.js';
import { CloseCode, parseClosePayload } from './close.js';
import { copyMasked } from './mask.js';
import { MAX_CONTROL_PAYLOAD, Opcode, type MessageType } from './opcodes.js';
import { Utf8Validator, isValidUtf8 } from './utf8.js';

export const DEFAULT_MAX_MESSAGE_LENGTH = 16 * 1024 * 1024;

/**
 * The receiver's output. Every Buffer passed in is owned by the callee.
 * Only onError is required; missing handlers drop what they would receive.
 */
export interface ReceiverHandlers {
  /** A complete text or binary message (fragments joined, decompressed). Not called when onDataFrame is set. */
  onMessage?(type: MessageType, data: Buffer): void;
  /**
   * Frame-level delivery instead of onMessage: each data frame's payload as
   * it completes, `fin` on the last frame of the message. `type` is the
   * message's type on every frame (continuations included). Fragments are
   * not buffered; the length limit and UTF-8 validation still span the whole
   * message. A compressed message arrives as one frame with fin = true, since
   * it can only be inflated whole.
   */
  onDataFrame?(type: MessageType, fin: boolean, data: Buffer): void;
  onPing?(data: Buffer): void;
  onPong?(data: Buffer): void;
  /** The peer's close frame; 1005 and '' when it had no payload. Nothing is parsed after it. */
  onClose?(code: number, reason: string): void;
  /**
   * The peer broke the protocol, or its message did not fit the server's
   * memory budget (BudgetError): close with err.closeCode. Nothing is parsed
   * after it.
   */
  onError(err: ProtocolError | BudgetError): void;
  /**
   * Called before the receiver reports anything outside push() (a message
   * that finished inflating in a later loop turn, and what was parsed after
   * it), with the receiver's `owner`: handlers shared by many receivers
   * point themselves at that connection here.
   */
  onResume?(owner: unknown): void;
  /**
   * A handler threw while the receiver reported something outside push()
   * (see onResume): the receiver has stopped; the owner fails the
   * connection as it does for a handler that throws inside push(). Without
   * it the exception is thrown on (from a setImmediate callback).
   */
  onResumeError?(owner: unknown, err: unknown): void;
}

/**
 * Turns the payload of a message sent with RSV1 (permessage-deflate) into
 * the message. Called once per compressed message, with all its bytes.
 * Returns at most `maxLength` bytes (0 = no limit) or throws a ProtocolError
 * (1009 past the limit, 1007 for corrupt data); any other exception is
 * reported as 1007 WS_ERR_DECOMPRESS.
 */
export interface MessageDecompressor {
  decompress(data: Buffer, maxLength: number): Buffer;
  /**
   * Optional: decompress() that may finish in a later loop turn. Returns the
   * message, or throws, when it finished now; returns undefined otherwise,
   * and then calls done() once (err as decompress() would throw it), unless
   * the decompressor was closed first.
   */
  decompressLater?(data: Buffer, maxLength: number, done: (err: Error | null, message: Buffer | null) => void): Buffer | undefined;
}

export interface ReceiverOptions {
  /** 'server' expects masked frames from its clients (§5.1); 'client' expects unmasked frames. */
  role: 'server' | 'client';
  /** Bytes a message may have, whole, across fragments (after decompression). 0 = no limit. Default 16 MiB. */
  maxMessageLength?: number;
  /** Set when an extension (permessage-deflate) gave RSV1 a meaning; see setDecompressor(). */
  decompressor?: MessageDecompressor | null;
}

/**
 * The memory budget a receiver's buffers count against (Engine._hold): asked
 * before a message buffer grows by `delta` bytes (false: refused, nothing
 * counted), told when bytes are given back (negative delta). `budget` is
 * the limit, for the error message.
 */
export interface ReceiveBudget {
  hold(delta: number): boolean;
  readonly budget: number;
}

const enum State {
  Header, // 2 bytes: FIN, RSV, opcode, MASK, 7-bit length
  Length16, // 2 bytes of extended length
  Length64, // 8 bytes of extended length
  MaskKey, // 4 bytes
  Payload, // whatever has arrived, up to the frame's length
  Inflating, // a message is inflating in later loop turns; what arrives goes to the backlog
  Closed, // a close frame was received
  Failed, // a protocol error was reported
  Stopped, // the owner called stop()
}

const EMPTY = Buffer.alloc(0);

// Below this many bytes a byte loop copies an unmasked payload faster than
// a subarray for TypedArray.set.
const SMALL_COPY = 64;

// A frame declaring up to this many bytes gets its buffer at once; a longer
// one gets buffer as its bytes arrive (doubling, capped at the declared
// length, so a one-frame message still ends in a buffer of exactly its
// size). A header alone cannot make the server allocate 16 MiB: 60 stalled
// 16 MiB frames held 1 GiB before this.
const EAGER_SLACK = 256 * 1024;
const GROWTH_MIN = 64 * 1024;
const COMMIT_BYTES = 1024 * 1024;

// 2^53: lengths at or above it cannot be represented exactly as a number.
const MAX_SAFE_HIGH_WORD = 0x200000;

// Even without a limit, a message cannot be longer than the largest Buffer
// (4 GiB on 64-bit Node 20): past it, 1009 rather than a RangeError.
const MAX_BUFFER_LENGTH = bufferConstants.MAX_LENGTH;

// The backlog (bytes received while a message inflates) holds a message of
// the largest size allowed plus this, for the frames around it: pings, a
// close frame, the next message's header.
const BACKLOG_SLACK = 64 * 1024;
// ... and with no message length limit, this much.
const BACKLOG_NO_LIMIT = 64 * 1024 * 1024;

export class Receiver {
  readonly role: 'server' | 'client';
  readonly maxMessageLength: number;
  readonly #h: ReceiverHandlers;
  readonly #frameMode: boolean;
  #decompressor: MessageDecompressor | null;
  /** Whatever the owner wants onResume() to receive (the connection, for a shared handlers object). */
  owner: unknown = undefined;

  #state = State.Header;

  // Received while a message is inflating (State.Inflating), not parsed yet:
  // buffers owned by the receiver, in wire order.
  #backlog: Buffer[] = [];
  #backlogBytes = 0;
  // The message being inflated: its type, for delivery.
  #inflatingType: MessageType = 'binary';

  // The chunk being parsed, only during push().
  #chunk: Uint8Array = EMPTY;
  #pos = 0;

  // Fixed-size fields that straddle chunks are gathered here.
  readonly #scratch = new Uint8Array(8);
  #scratchLen = 0;
  // Where #take() made the requested bytes readable.
  #src: Uint8Array = EMPTY;
  #srcPos = 0;

  // The frame being parsed.
  #fin = false;
  #opcode = 0;
  #masked = false;
  #payloadLength = 0;
  #payloadDone = 0;
  readonly #key = new Uint8Array(4);
  #keyIndex = 0;
  // Where its payload goes: a control frame's own buffer, a frame-mode frame's
  // own buffer, or the message buffer at offset #dstOffset.
  #dst: Buffer = EMPTY;
  #dstOffset = 0;
  // Bytes of #dst / #message counted against the budget (their capacity).
  #held = 0;
  #budget: ReceiveBudget | null = null;
  // When the receiver last left the idle state (a frame header began with no
  // message open), in the clock the owner passes to push(); see busySince.
  #busySince = 0;
  #now = 0;

  // The data message being received (possibly across fragments).
  #messageOpen = false;
  #messageType: MessageType = 'binary';
  #compressed = false;
  #checkText = false; // text and not compressed: validate as it streams
  #messageLength = 0; // bytes so far, all fragments
  #message: Buffer | null = null; // message mode: the fragments so far, capacity may exceed #messageLength
  readonly #utf8 = new Utf8Validator();

  constructor(handlers: ReceiverHandlers, options: ReceiverOptions) {
    if (handlers === null || typeof handlers !== 'object' || typeof handlers.onError !== 'function') {
      throw new TypeError('new Receiver(handlers, options): handlers must be an object with an onError method');
    }
    if (options === null || typeof options !== 'object' || (options.role !== 'server' && options.role !== 'client')) {
      throw new TypeError("new Receiver(handlers, options): options.role must be 'server' or 'client'");
    }
    const max = options.maxMessageLength ?? DEFAULT_MAX_MESSAGE_LENGTH;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new TypeError(`maxMessageLength must be an integer from 0 (no limit) to 2^53 - 1, got ${String(max)}`);
    }
    this.#h = handlers;
    this.#frameMode = typeof handlers.onDataFrame === 'function';
    this.role = options.role;
    this.maxMessageLength = max;
    this.#decompressor = null;
    this.setDecompressor(options.decompressor ?? null);
  }

  /**
   * Enables RSV1 on the first frame of data messages (the negotiated
   * extension gave it a meaning) with the decompressor for such messages,
   * or disables it (null): RSV1 is then a protocol error.
   */
  setDecompressor(decompressor: MessageDecompressor | null): void {
    if (decompressor !== null && (typeof decompressor !== 'object' || typeof decompressor.decompress !== 'function')) {
      throw new TypeError('setDecompressor(d): d must be null or an object with a decompress(data, maxLength) method');
    }
    this.#decompressor = decompressor;
  }

  /** Counts the receiver's buffers against `budget` (null: nothing counted). */
  setBudget(budget: ReceiveBudget | null): void {
    if (this.#held > 0) throw new Error('setBudget: the receiver holds a message; set the budget between messages');
    this.#budget = budget;
  }

  /**
   * The `now` of the push() during which the frame (or message) now pending
   * began: the owner bounds how long a started message may take to finish
   * arriving (a peer sending one byte a minute defeats an idle timeout).
   * Meaningful only while !idle.
   */
  get busySince(): number {
    return this.#busySince;
  }

  /** Whether RSV1 is currently allowed (a decompressor is set). */
  get rsv1Allowed(): boolean {
    return this.#decompressor !== null;
  }

  /** False once a close frame or an error was reported, or stop() was called. */
  get active(): boolean {
    return this.#state < State.Closed;
  }

  /**
   * True between frames with nothing buffered and no message open: the
   * receiver then holds nothing of its connection, and an owner may reset()
   * it and reuse it for another connection (idle connections need none).
   */
  get idle(): boolean {
    return this.#state === State.Header && this.#scratchLen === 0 && !this.#messageOpen && this.#backlogBytes === 0;
  }

  /** Makes the receiver as new (same handlers and options, no decompressor), for reuse from a pool. */
  reset(): void {
    this.#state = State.Header;
    this.#scratchLen = 0;
    this.#keyIndex = 0;
    this.#compressed = false;
    this.#checkText = false;
    this.#decompressor = null;
    this.owner = undefined;
    this.#utf8.reset();
    this.#release();
  }

  /** Stops parsing for good and releases what is buffered. Safe to call from a handler. */
  stop(): void {
    if (this.#state < State.Closed) this.#state = State.Stopped;
    this.#release();
  }

  /**
   * Parses `chunk`. Returns false when the receiver is no longer active
   * (close frame seen, error reported, or stopped), true otherwise. `chunk`
   * is not referenced after the call returns. Not re-entrant: do not call
   * push() from a handler. Handlers should not throw: an exception leaves
   * push() at once, the rest of the chunk is dropped, and the receiver
   * stops (the owner should close the connection). `now` is the owner's
   * clock (busySince).
   */
  push(chunk: Uint8Array, now = 0): boolean {
    if (this.#state >= State.Closed) return false;
    this.#now = now;
    if (this.#state === State.Inflating) {
      this.#stash(chunk, 0, false);
    } else {
      this.#parse(chunk, false);
    }
    return this.#state < State.Closed;
  }

  /** True while a message is inflating in later loop turns (nothing of this connection is delivered meanwhile). */
  get inflating(): boolean {
    return this.#state === State.Inflating;
  }

  /** Parses `chunk` (`owned`: a backlog buffer, which may be kept as it is). */
  #parse(chunk: Uint8Array, owned: boolean): void {
    this.#chunk = chunk;
    this.#pos = 0;
    let completed = false;
    try {
      let more = true;
      while (more) {
        switch (this.#state) {
          case State.Header:
            more = this.#readHeader();
            break;
          case State.Length16:
            more = this.#readLength16();
            break;
          case State.Length64:
            more = this.#readLength64();
            break;
          case State.MaskKey:
            more = this.#readMaskKey();
            break;
          case State.Payload:
            more = this.#readPayload();
            break;
          default:
            more = false;
        }
      }
      completed = true;
      this.#account();
      // A message went on inflating: the rest waits in the backlog, ahead of what arrives next.
      if (this.#state === State.Inflating && this.#pos < chunk.length) this.#stash(chunk, this.#pos, owned, true);
    } finally {
      this.#chunk = EMPTY;
      this.#src = EMPTY;
      // A throwing handler left a frame half parsed: there is no resuming it.
      if (!completed) this.stop();
    }
  }

  /** Keeps chunk[from..] in the backlog (copied unless `owned`), at its end or, for the rest of the chunk being parsed, its front. */
  #stash(chunk: Uint8Array, from: number, owned: boolean, front = false): void {
    const n = chunk.length - from;
    if (n === 0) return;
    const limit = (this.maxMessageLength === 0 ? BACKLOG_NO_LIMIT : this.maxMessageLength) + BACKLOG_SLACK;
    if (this.#backlogBytes + n > limit) {
      // The inflation's result, when it comes, is dropped: the receiver has failed.
      this.#fail('WS_ERR_BACKLOG_OVERFLOW', CloseCode.TryAgainLater, `more than ${limit} bytes arrived while a message was inflating`);
      return;
    }
    // The backlog counts against the server's memory budget like a message
    // buffer does (a buffer leaves the count when it is taken out to parse).
    if (this.#budget !== null && !this.#budget.hold(n)) {
      this.#report(new BudgetError(this.#budget.budget));
      return;
    }
    const view = chunk.subarray(from);
    const buf = owned && Buffer.isBuffer(view) ? view : Buffer.from(view);
    if (front) this.#backlog.unshift(buf);
    else this.#backlog.push(buf);
    this.#backlogBytes += n;
  }

  /** A message finished inflating in a later turn: deliver it, then parse the backlog until done or the next inflation. */
  #inflated(err: Error | null, message: Buffer | null): void {
    if (this.#state !== State.Inflating) return; // stopped or failed meanwhile: nothing more is delivered
    this.#state = State.Header;
    this.#h.onResume?.(this.owner);
    try {
      if (!this.#deliverInflated(this.#inflatingType, err, message)) return;
      while (this.#backlog.length > 0 && this.#state < State.Inflating) {
        const buf = this.#backlog.shift()!;
        this.#backlogBytes -= buf.length;
        this.#budget?.hold(-buf.length);
        this.#parse(buf, true);
      }
    } catch (e) {
      // As in push(): a handler that threw stops the receiver.
      this.stop();
      if (this.#h.onResumeError === undefined) throw e;
      this.#h.onResumeError(this.owner, e);
    }
  }

  // -------------------------------------------------------------------------
  // States. Each returns true to go on with the next state, false to stop
  // (too few bytes buffered, or the receiver is no longer active).

  /**
   * Makes `n` bytes readable at this.#src[this.#srcPos]: straight from the
   * chunk when they are all in it, else gathered in #scratch across calls.
   * Returns false when they have not all arrived yet.
   */
  #take(n: number): boolean {
    const chunk = this.#chunk;
    const avail = chunk.length - this.#pos;
    if (this.#scratchLen === 0 && avail >= n) {
      this.#src = chunk;
      this.#srcPos = this.#pos;
      this.#pos += n;
      return true;
    }
    const scratch = this.#scratch;
    let have = this.#scratchLen;
    let p = this.#pos;
    const stop = Math.min(n - have, avail) + p;
    while (p < stop) scratch[have++] = chunk[p++]!;
    this.#pos = p;
    if (have < n) {
      this.#scratchLen = have;
      return false;
    }
    this.#scratchLen = 0;
    this.#src = scratch;
    this.#srcPos = 0;
    return true;
  }

  #readHeader(): boolean {
    if (this.#scratchLen === 0 && !this.#messageOpen) this.#busySince = this.#now;
    if (!this.#take(2)) return false;
    const b0 = this.#src[this.#srcPos]!;
    const b1 = this.#src[this.#srcPos + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    const length7 = b1 & 0x7f;

    if ((b0 & 0x30) !== 0) return this.#fail('WS_ERR_UNEXPECTED_RSV_2_3', CloseCode.ProtocolError, 'RSV2 and RSV3 must be clear');
    if (opcode >= Opcode.Close) {
      if (opcode > Opcode.Pong) return this.#fail('WS_ERR_INVALID_OPCODE', CloseCode.ProtocolError, `invalid opcode ${opcode}`);
      if (!fin) return this.#fail('WS_ERR_EXPECTED_FIN', CloseCode.ProtocolError, 'control frames must not be fragmented');
      if (length7 > MAX_CONTROL_PAYLOAD) {
        return this.#fail('WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', CloseCode.ProtocolError, 'control frame payload longer than 125 bytes');
      }
      if (rsv1) return this.#fail('WS_ERR_UNEXPECTED_RSV_1', CloseCode.ProtocolError, 'RSV1 must be clear on control frames');
    } else if (opcode === Opcode.Continuation) {
      if (!this.#messageOpen) {
        return this.#fail('WS_ERR_UNEXPECTED_CONTINUATION', CloseCode.ProtocolError, 'continuation frame without a message to continue');
      }
      // RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
      if (rsv1) return this.#fail('WS_ERR_UNEXPECTED_RSV_1', CloseCode.ProtocolError, 'RSV1 must be clear on continuation frames');
    } else if (opcode <= Opcode.Binary) {
      if (this.#messageOpen) {
        return this.#fail('WS_ERR_EXPECTED_CONTINUATION', CloseCode.ProtocolError, 'new data frame while a fragmented message is open');
      }
      if (rsv1 && this.#decompressor === null) {
        return this.#fail('WS_ERR_UNEXPECTED_RSV_1', CloseCode.ProtocolError, 'RSV1 must be clear: no extension was negotiated');
      }
    } else {
      return this.#fail('WS_ERR_INVALID_OPCODE', CloseCode.ProtocolError, `invalid opcode ${opcode}`);
    }
    if (masked !== (this.role === 'server')) {
      return masked
        ? this.#fail('WS_ERR_UNEXPECTED_MASK', CloseCode.ProtocolError, 'frames from a server must not be masked')
        : this.#fail('WS_ERR_EXPECTED_MASK', CloseCode.ProtocolError, 'frames from a client must be masked');
    }

    this.#fin = fin;
    this.#opcode = opcode;
    this.#masked = masked;
    if (opcode === Opcode.Text || opcode === Opcode.Binary) {
      this.#messageOpen = true;
      this.#messageType = opcode === Opcode.Text ? 'text' : 'binary';
      this.#compressed = rsv1;
      this.#checkText = opcode === Opcode.Text && !rsv1;
      this.#messageLength = 0;
      if (this.#checkText) this.#utf8.reset();
    }
    if (length7 === 126) {
      this.#state = State.Length16;
      return true;
    }
    if (length7 === 127) {
      this.#state = State.Length64;
      return true;
    }
    return this.#haveLength(length7);
  }

  #readLength16(): boolean {
    if (!this.#take(2)) return false;
    const s = this.#src;
    const p = this.#srcPos;
    return this.#haveLength((s[p]! << 8) | s[p + 1]!);
  }

  #readLength64(): boolean {
    if (!this.#take(8)) return false;
    const s = this.#src;
    const p = this.#srcPos;
    const high = ((s[p]! << 24) | (s[p + 1]! << 16) | (s[p + 2]! << 8) | s[p + 3]!) >>> 0;
    const low = ((s[p + 4]! << 24) | (s[p + 5]! << 16) | (s[p + 6]! << 8) | s[p + 7]!) >>> 0;
    // §5.2: "the most significant bit MUST be 0".
    if (high >= 0x80000000) {
      return this.#fail('WS_ERR_INVALID_PAYLOAD_LENGTH', CloseCode.ProtocolError, 'payload length with the most significant bit set');
    }
    // Lengths a number cannot hold exactly are above any limit we accept.
    if (high >= MAX_SAFE_HIGH_WORD) {
      return this.#fail('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', CloseCode.MessageTooBig, 'payload length of 2^53 bytes or more');
    }
    return this.#haveLength(high * 0x100000000 + low);
  }

  #haveLength(length: number): boolean {
    // The limit is checked here, from the header alone, before any payload is buffered.
    if (this.#opcode < Opcode.Close) {
      const total = this.#messageLength + length;
      if ((this.maxMessageLength !== 0 && total > this.maxMessageLength) || total > MAX_BUFFER_LENGTH) {
        return this.#fail(
          'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
          CloseCode.MessageTooBig,
          `message of ${total}${this.#fin ? '' : '+'} bytes exceeds the limit of ${this.maxMessageLength || MAX_BUFFER_LENGTH}`,
        );
      }
    }
    this.#payloadLength = length;
    if (this.#masked) {
      this.#state = State.MaskKey;
      return true;
    }
    return this.#startPayload();
  }

  #readMaskKey(): boolean {
    if (!this.#take(4)) return false;
    const s = this.#src;
    const p = this.#srcPos;
    const key = this.#key;
    key[0] = s[p]!;
    key[1] = s[p + 1]!;
    key[2] = s[p + 2]!;
    key[3] = s[p + 3]!;
    return this.#startPayload();
  }

  #startPayload(): boolean {
    const length = this.#payloadLength;
    this.#payloadDone = 0;
    this.#keyIndex = 0;
    if (length === 0) {
      this.#dst = EMPTY;
      this.#dstOffset = 0;
      return this.#endFrame();
    }
    if (this.#opcode >= Opcode.Close) {
      // At most 125 bytes, a buffer of its own: handed over as is.
      this.#dst = Buffer.allocUnsafe(length);
      this.#dstOffset = 0;
    } else if (this.#frameMode && !this.#compressed) {
      // A buffer of its own, grown to exactly the payload's size (#grow).
      this.#dst = EMPTY;
      this.#dstOffset = 0;
    } else {
      // The message buffer, grown as the bytes arrive (#grow).
      this.#dst = this.#message ?? EMPTY;
      this.#dstOffset = this.#messageLength;
    }
    this.#state = State.Payload;
    return true;
  }

  /**
   * Makes #dst hold at least `end` bytes. What this frame will need in the
   * end is reserved at once when that is at most EAGER_SLACK more than
   * `end`; otherwise the buffer doubles as the bytes arrive, never past the
   * frame's end, so a one-frame message is delivered without slack and a
   * header alone allocates nothing large. Later fragments of a message
   * double its buffer at least, so that many small fragments cost linear
   * time, never past maxMessageLength. The budget counts received bytes,
   * not this capacity (#account).
   */
  #grow(end: number): void {
    const old = this.#dst;
    const frameEnd = this.#dstOffset + this.#payloadLength;
    let want = frameEnd;
    if (this.#dstOffset > 0) {
      want = Math.max(frameEnd, old.length * 2);
      if (this.maxMessageLength !== 0 && want > this.maxMessageLength) want = Math.max(frameEnd, this.maxMessageLength);
    }
    let capacity = want;
    // Doubling until the peer has sent COMMIT_BYTES of it, then the whole
    // frame at once: every copy leaves the old buffer to the garbage
    // collector, resident until it runs, so the doublings stop early (a
    // buffer's untouched pages cost no memory).
    if (want - end > EAGER_SLACK && end < COMMIT_BYTES) capacity = Math.max(end, Math.min(want, Math.max(old.length * 2, GROWTH_MIN)));
    const next = Buffer.allocUnsafe(capacity);
    if (this.#dstOffset + this.#payloadDone > 0) next.set(old.subarray(0, this.#dstOffset + this.#payloadDone));
    this.#dst = next;
    if (!(this.#frameMode && !this.#compressed)) this.#message = next;
  }

  /**
   * Counts what the pending frame or message holds once a chunk is parsed
   * (the bytes received, not the capacity reserved: untouched pages are not
   * resident) against the budget. A message that completes within one
   * push() is handed over before it returns and never counted: the hot path
   * pays nothing. False when refused (the receiver has failed, 1013).
   */
  #account(): boolean {
    if (this.#budget === null || this.#state >= State.Closed) return true;
    let pending = this.#state === State.Payload && this.#opcode < Opcode.Close ? this.#payloadDone : 0;
    if (this.#messageOpen && !(this.#frameMode && !this.#compressed)) pending += this.#messageLength;
    const delta = pending - this.#held;
    if (delta === 0) return true;
    if (delta > 0 && !this.#budget.hold(delta)) {
      this.#report(new BudgetError(this.#budget.budget));
      return false;
    }
    if (delta < 0) this.#budget.hold(delta);
    this.#held = pending;
    return true;
  }

  /** The buffers counted against the budget were handed over or dropped. */
  #unhold(): void {
    if (this.#held === 0) return;
    this.#budget?.hold(-this.#held);
    this.#held = 0;
  }

  #readPayload(): boolean {
    const chunk = this.#chunk;
    const pos = this.#pos;
    const want = this.#payloadLength - this.#payloadDone;
    const avail = chunk.length - pos;
    const n = avail < want ? avail : want;
    if (n === 0) return false;
    const at = this.#dstOffset + this.#payloadDone;
    if (at + n > this.#dst.length) this.#grow(at + n);
    const dst = this.#dst;
    // The one copy out of the engine's buffer, unmasking on the way
    // (copyMasked: a JavaScript loop for a few bytes, one native pass for many).
    if (this.#masked) {
      this.#keyIndex = copyMasked(chunk, pos, dst, at, n, this.#key, this.#keyIndex);
    } else if (n < SMALL_COPY) {
      for (let i = 0; i < n; i++) dst[at + i] = chunk[pos + i]!;
    } else {
      dst.set(chunk.subarray(pos, pos + n), at);
    }
    this.#pos = pos + n;
    this.#payloadDone += n;
    // Text is checked as it arrives: invalid bytes fail the connection now,
    // not when the rest of the frame or message has come.
    if (this.#checkText && this.#opcode < Opcode.Close && !this.#utf8.feed(dst, at, at + n)) {
      return this.#fail('WS_ERR_INVALID_UTF8', CloseCode.InvalidPayload, 'invalid UTF-8 in a text message');
    }
    if (this.#payloadDone < this.#payloadLength) return false;
    return this.#endFrame();
  }

  // -------------------------------------------------------------------------
  // Frame and message completion

  #endFrame(): boolean {
    this.#state = State.Header;
    if (this.#opcode >= Opcode.Close) return this.#endControlFrame();
    const fin = this.#fin;
    if (this.#frameMode && !this.#compressed) {
      const data = this.#dst;
      this.#dst = EMPTY;
      this.#unhold(); // the payload is the handler's now
      this.#messageLength += this.#payloadLength;
      if (fin) {
        this.#messageOpen = false;
        this.#messageLength = 0;
        if (this.#checkText && !this.#utf8.end()) return this.#failUtf8Truncated();
      }
      this.#h.onDataFrame!(this.#messageType, fin, data);
      return this.#state === State.Header;
    }
    this.#messageLength += this.#payloadLength;
    if (!fin) return true;

    const message = this.#message;
    const length = this.#messageLength;
    let data = message === null ? EMPTY : message.length === length ? message : message.subarray(0, length);
    const type = this.#messageType;
    const compressed = this.#compressed;
    this.#messageOpen = false;
    this.#message = null;
    this.#messageLength = 0;
    this.#dst = EMPTY;
    this.#unhold(); // the message is the handler's now
    if (compressed) {
      const d = this.#decompressor!;
      let out: Buffer | undefined;
      try {
        out =
          d.decompressLater !== undefined
            ? d.decompressLater(data, this.maxMessageLength, (e, m) => this.#inflated(e, m))
            : d.decompress(data, this.maxMessageLength);
      } catch (err) {
        return this.#deliverInflated(type, err as Error, null);
      }
      if (out === undefined) {
        this.#state = State.Inflating;
        this.#inflatingType = type;
        return false;
      }
      return this.#deliverInflated(type, null, out);
    } else if (this.#checkText && !this.#utf8.end()) {
      return this.#failUtf8Truncated();
    }
    return this.#deliver(type, data);
  }

  /** An inflated message, or why it could not be inflated. */
  #deliverInflated(type: MessageType, err: Error | null, data: Buffer | null): boolean {
    if (err !== null) {
      if (err instanceof ProtocolError) return this.#report(err);
      return this.#fail('WS_ERR_DECOMPRESS', CloseCode.InvalidPayload, `cannot decompress the message: ${err?.message ?? String(err)}`);
    }
    if (type === 'text' && !isValidUtf8(data!)) {
      return this.#fail('WS_ERR_INVALID_UTF8', CloseCode.InvalidPayload, 'invalid UTF-8 in a text message');
    }
    return this.#deliver(type, data!);
  }

  #deliver(type: MessageType, data: Buffer): boolean {
    if (this.#frameMode) this.#h.onDataFrame!(type, true, data);
    else this.#h.onMessage?.(type, data);
    return this.#state === State.Header;
  }

  #endControlFrame(): boolean {
    const data = this.#dst;
    this.#dst = EMPTY;
    switch (this.#opcode) {
      case Opcode.Ping:
        this.#h.onPing?.(data);
        break;
      case Opcode.Pong:
        this.#h.onPong?.(data);
        break;
      default: {
        const info = parseClosePayload(data);
        if (info instanceof ProtocolError) return this.#report(info);
        this.#state = State.Closed;
        this.#release();
        this.#h.onClose?.(info.code, info.reason);
        return false;
      }
    }
    return this.#state === State.Header;
  }

  #failUtf8Truncated(): false {
    return this.#fail('WS_ERR_INVALID_UTF8', CloseCode.InvalidPayload, 'text message ends inside a UTF-8 sequence');
  }

  #fail(code: string, closeCode: number, message: string): false {
    return this.#report(new ProtocolError(code, closeCode, message));
  }

  #report(err: ProtocolError | BudgetError): false {
    this.#state = State.Failed;
    this.#release();
    this.#h.onError(err);
    return false;
  }

  #release(): void {
    if (this.#backlogBytes > 0) this.#budget?.hold(-this.#backlogBytes);
    this.#backlog = [];
    this.#backlogBytes = 0;
    this.#unhold();
    this.#message = null;
    this.#dst = EMPTY;
    this.#messageLength = 0;
    this.#messageOpen = false;
  }
}
