// The bytes a topic message travels in through Redis, and back. Pure: no I/O,
// no state. A Redis channel is open to anyone with access to the server, so
// decoding treats every message as hostile: anything that is not exactly an
// envelope of this version is refused with a reason, never guessed at.
//
// Layout (all binary, the payload untouched: no base64, no JSON):
//
//   offset 0   1 byte   version (ENVELOPE_VERSION)
//   offset 1   1 byte   flags: bit 0 = binary message (else text),
//                              bit 1 = the origin already delivered it to its own subscribers
//   offset 2   8 bytes  origin: the id of the adapter that published it
//   offset 10  4 bytes  sequence: the publishing adapter's count of its publishes (big-endian,
//                       wrapping), so that it can find its own publish when it comes back
//   offset 14  ...      the payload, as the user gave it
import { randomBytes } from 'node:crypto';
import { Buffer, isUtf8 } from 'node:buffer';

/** The message type as the engine knows it (see websocket/opcodes.ts). */
export type EnvelopeType = 'text' | 'binary';

export const ENVELOPE_VERSION = 1;
export const ORIGIN_LENGTH = 8;
export const ENVELOPE_HEADER = 2 + ORIGIN_LENGTH + 4;

const FLAG_BINARY = 0x01;
const FLAG_DELIVERED_BY_ORIGIN = 0x02;
const KNOWN_FLAGS = FLAG_BINARY | FLAG_DELIVERED_BY_ORIGIN;

/** A fresh random origin id for one adapter instance (64 bits: collisions are not a concern). */
export function newOrigin(): Buffer {
  return randomBytes(ORIGIN_LENGTH);
}

/**
 * One copy of the payload into a buffer that starts with the header. Redis needs the message as
 * one argument, so this is the only copy a publish makes, whatever the number of subscribers.
 */
export function encodeEnvelope(origin: Buffer, seq: number, type: EnvelopeType, deliveredByOrigin: boolean, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(ENVELOPE_HEADER + payload.byteLength);
  out[0] = ENVELOPE_VERSION;
  out[1] = (type === 'binary' ? FLAG_BINARY : 0) | (deliveredByOrigin ? FLAG_DELIVERED_BY_ORIGIN : 0);
  origin.copy(out, 2, 0, ORIGIN_LENGTH);
  out.writeUInt32BE(seq >>> 0, 2 + ORIGIN_LENGTH);
  out.set(payload, ENVELOPE_HEADER);
  return out;
}

export interface DecodedEnvelope {
  type: EnvelopeType;
  /** The publishing adapter's id; compare with `equalsOrigin`. */
  origin: Buffer;
  seq: number;
  deliveredByOrigin: boolean;
  /** A view into the received buffer (not a copy). */
  payload: Buffer;
}

/** The envelope, or a string saying why the bytes are not one. Text payloads must be valid UTF-8. */
export function decodeEnvelope(message: Buffer): DecodedEnvelope | string {
  if (message.length < ENVELOPE_HEADER) return `message of ${message.length} bytes is shorter than the ${ENVELOPE_HEADER}-byte envelope header`;
  if (message[0] !== ENVELOPE_VERSION) return `unknown envelope version ${message[0]}`;
  const flags = message[1]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) return `unknown envelope flags 0x${flags.toString(16)}`;
  const type: EnvelopeType = flags & FLAG_BINARY ? 'binary' : 'text';
  const payload = message.subarray(ENVELOPE_HEADER);
  // The engine sends a text message as a text frame without validating it again (a local publish
  // is trusted); one coming over Redis is not.
  if (type === 'text' && !isUtf8(payload)) return 'text message is not valid UTF-8';
  return {
    type,
    origin: message.subarray(2, 2 + ORIGIN_LENGTH),
    seq: message.readUInt32BE(2 + ORIGIN_LENGTH),
    deliveredByOrigin: (flags & FLAG_DELIVERED_BY_ORIGIN) !== 0,
    payload,
  };
}

export function equalsOrigin(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && a.equals(b);
}
