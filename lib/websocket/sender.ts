// Framing (RFC 6455 §5.2): pure functions from a payload to the bytes of a
// frame, ready for Conn.writev(). No queue and no state besides the pool of
// random bytes for mask keys.
//
// Server frames are not masked (§5.1), so frame() returns the header and the
// caller's payload untouched: [header, payload]. The same array can be
// written to many connections (broadcast encodes once). Client frames are
// masked with a fresh key per frame; masking needs a copy of the payload
// anyway, so the header and the masked copy share one buffer: [frame].
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { MAX_CLOSE_REASON_BYTES, isValidCloseCode } from './close.js';
import { maskInPlace } from './mask.js';
import { MAX_CONTROL_PAYLOAD, Opcode, isControlOpcode, isKnownOpcode } from './opcodes.js';

export interface FrameOptions {
  /** Last frame of the message. Default true; control frames must keep it. */
  fin?: boolean;
  /** RSV1: set by permessage-deflate on the first frame of a compressed message. Default false. */
  rsv1?: boolean;
  /** false (server, default), true (client: a fresh random key), or the 4-byte key to use. */
  mask?: boolean | Uint8Array;
}

export type Payload = Uint8Array | string;

const EMPTY = Buffer.alloc(0);
// Placeholder written by writeFrameHeader() where a random key goes next.
const ZERO_KEY = new Uint8Array(4);

// Mask keys come from a pool filled by one getrandom() call per 2,048 keys
// rather than one system call per frame. §5.3 asks for keys that cannot be
// predicted from earlier ones: a CSPRNG gives that, pooled or not.
const KEY_POOL_SIZE = 8192;
const keyPool = Buffer.allocUnsafeSlow(KEY_POOL_SIZE);
let keyPoolPos = KEY_POOL_SIZE;

function takeRandomKey(target: Uint8Array, offset: number): void {
  if (keyPoolPos === KEY_POOL_SIZE) {
    randomFillSync(keyPool);
    keyPoolPos = 0;
  }
  const p = keyPoolPos;
  target[offset] = keyPool[p]!;
  target[offset + 1] = keyPool[p + 1]!;
  target[offset + 2] = keyPool[p + 2]!;
  target[offset + 3] = keyPool[p + 3]!;
  keyPoolPos = p + 4;
}

/** Bytes of a frame header: 2, plus 2 or 8 of extended length, plus 4 of mask key. */
export function frameHeaderSize(payloadLength: number, masked: boolean): number {
  const base = payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10;
  return masked ? base + 4 : base;
}

/**
 * Writes a frame header at target[offset] and returns its size. With a
 * `key` the MASK bit is set and the key follows the length. Does not
 * validate (frame() does): for callers that build headers in place.
 */
export function writeFrameHeader(
  target: Uint8Array,
  offset: number,
  opcode: number,
  payloadLength: number,
  fin: boolean,
  rsv1: boolean,
  key: Uint8Array | null,
): number {
  let p = offset;
  target[p++] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const maskBit = key !== null ? 0x80 : 0;
  if (payloadLength < 126) {
    target[p++] = maskBit | payloadLength;
  } else if (payloadLength < 0x10000) {
    target[p++] = maskBit | 126;
    target[p++] = payloadLength >>> 8;
    target[p++] = payloadLength & 0xff;
  } else {
    target[p++] = maskBit | 127;
    const high = Math.floor(payloadLength / 0x100000000);
    const low = payloadLength >>> 0;
    target[p++] = high >>> 24;
    target[p++] = (high >>> 16) & 0xff;
    target[p++] = (high >>> 8) & 0xff;
    target[p++] = high & 0xff;
    target[p++] = low >>> 24;
    target[p++] = (low >>> 16) & 0xff;
    target[p++] = (low >>> 8) & 0xff;
    target[p++] = low & 0xff;
  }
  if (key !== null) {
    target[p++] = key[0]!;
    target[p++] = key[1]!;
    target[p++] = key[2]!;
    target[p++] = key[3]!;
  }
  return p - offset;
}

function toBuffer(payload: Payload, what: string): Buffer {
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload instanceof Uint8Array) {
    return Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  throw new TypeError(`${what}: payload must be a Buffer, Uint8Array or string`);
}

/**
 * The bytes of one frame: [header, payload] unmasked (the payload is the
 * caller's, not copied, and must not change until written), [frame] masked.
 * Throws RangeError for an unknown opcode, a control frame that is
 * fragmented, has RSV1, or carries more than 125 bytes.
 */
export function frame(opcode: number, payload: Payload = EMPTY, options: FrameOptions = {}): Buffer[] {
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 0xf || !isKnownOpcode(opcode)) {
    throw new RangeError(`frame(): invalid opcode ${String(opcode)}`);
  }
  const data = toBuffer(payload, 'frame()');
  const fin = options.fin ?? true;
  const rsv1 = options.rsv1 ?? false;
  const mask = options.mask ?? false;
  if (isControlOpcode(opcode)) {
    if (data.length > MAX_CONTROL_PAYLOAD) throw new RangeError(`frame(): a control frame carries at most 125 bytes, got ${data.length}`);
    if (!fin) throw new RangeError('frame(): control frames cannot be fragmented');
    if (rsv1) throw new RangeError('frame(): control frames cannot have RSV1');
  }
  if (mask === false) {
    const header = Buffer.allocUnsafe(frameHeaderSize(data.length, false));
    writeFrameHeader(header, 0, opcode, data.length, fin, rsv1, null);
    return data.length === 0 ? [header] : [header, data];
  }
  let key: Uint8Array | null = null;
  if (mask !== true) {
    if (!(mask instanceof Uint8Array) || mask.length !== 4) throw new TypeError('frame(): options.mask must be a boolean or a 4-byte Uint8Array');
    key = mask;
  }
  const headerSize = frameHeaderSize(data.length, true);
  const out = Buffer.allocUnsafe(headerSize + data.length);
  // Write the header with a placeholder key, then put the real key in place.
  writeFrameHeader(out, 0, opcode, data.length, fin, rsv1, key ?? ZERO_KEY);
  if (key === null) takeRandomKey(out, headerSize - 4);
  if (data.length > 0) {
    out.set(data, headerSize);
    maskInPlace(out, headerSize, out.length, out.subarray(headerSize - 4, headerSize), 0);
  }
  return [out];
}

/**
 * The payload of a close frame: the 2-byte code then the UTF-8 reason.
 * Without a code the payload is empty (the peer will report 1005), and the
 * reason must be empty too. Throws RangeError for a code that may not be
 * sent (close.ts) or a reason longer than 123 bytes in UTF-8.
 */
export function closePayload(code?: number, reason = ''): Buffer {
  if (typeof reason !== 'string') throw new TypeError('closePayload(code, reason): reason must be a string');
  if (code === undefined) {
    if (reason !== '') throw new TypeError('closePayload(code, reason): a reason needs a code');
    return Buffer.alloc(0);
  }
  if (!isValidCloseCode(code)) throw new RangeError(`closePayload(): ${String(code)} is not a close code that may be sent`);
  const reasonBytes = Buffer.byteLength(reason, 'utf8');
  if (reasonBytes > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(`closePayload(): the reason is ${reasonBytes} bytes in UTF-8, at most ${MAX_CLOSE_REASON_BYTES} fit`);
  }
  const out = Buffer.allocUnsafe(2 + reasonBytes);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  if (reasonBytes > 0) out.write(reason, 2, 'utf8');
  return out;
}

/** A close frame; see closePayload() for `code` and `reason`. */
export function closeFrame(code?: number, reason = '', options: Pick<FrameOptions, 'mask'> = {}): Buffer[] {
  return frame(Opcode.Close, closePayload(code, reason), options);
}

/** A ping frame. Throws RangeError past 125 bytes. */
export function pingFrame(payload: Payload = EMPTY, options: Pick<FrameOptions, 'mask'> = {}): Buffer[] {
  return frame(Opcode.Ping, payload, options);
}

/** A pong frame (the answer to a ping carries the ping's payload, §5.5.3). Throws RangeError past 125 bytes. */
export function pongFrame(payload: Payload = EMPTY, options: Pick<FrameOptions, 'mask'> = {}): Buffer[] {
  return frame(Opcode.Pong, payload, options);
}
