// WebSocket topics: a published message is framed once per compression
// setting and the same bytes are written to every subscriber.
//
// permessage-deflate and context takeover: a message compressed once is a
// valid payload only for peers whose inflater expects no history, i.e.
// connections that agreed server_no_context_takeover, and whose window
// (server_max_window_bits) is at least the one it was compressed with.
// Those get one compressed frame per window size. Every other subscriber
// gets the plain frame (RSV1 clear is always legal, RFC 7692 §6.1, and does
// not touch the compression context): compressing per connection would cost
// one deflate per subscriber, the very cost topics exist to avoid.
// Under the threshold (DeflateOptions.threshold) nothing is compressed.
import { Buffer } from 'node:buffer';
import zlib from 'node:zlib';
import type { MessageType } from './opcodes.js';
import { Opcode } from './opcodes.js';
import { frameHeaderSize, writeFrameHeader } from './sender.js';
import { PerMessageDeflate } from './deflate.js';
import type { WebSocketConn } from './conn.js';

/** One whole frame (header and payload in one buffer) carrying `payload`. */
function wholeFrame(opcode: number, payload: Uint8Array, rsv1: boolean): Buffer {
  const h = frameHeaderSize(payload.byteLength, false);
  const out = Buffer.allocUnsafe(h + payload.byteLength);
  writeFrameHeader(out, 0, opcode, payload.byteLength, true, rsv1, null);
  out.set(payload, h);
  return out;
}

// The tail a sync flush ends with, removed from the payload (RFC 7692 §7.2.1).
const TAIL_LENGTH = 4;

/** `data` deflated without history, as a connection with no context takeover would (its window, level, memLevel). */
function deflatedOnce(data: Uint8Array, pmd: PerMessageDeflate): Buffer {
  // zlib refuses an 8-bit raw window; 9 keeps every match within 256 bytes
  // (see PerMessageDeflate's #deflateBits).
  const out = zlib.deflateRawSync(data, {
    windowBits: Math.max(9, pmd.params.serverMaxWindowBits),
    level: pmd.level,
    memLevel: pmd.memLevel,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  return out.subarray(0, out.length - TAIL_LENGTH);
}

/**
 * Writes a published message to `subscribers` but `exclude`: the frame (or
 * the compressed frame) is built once, on first need, and shared. Returns
 * how many connections it was queued for.
 */
export function fanOutFrames<S>(subscribers: ReadonlySet<WebSocketConn<S>>, data: Uint8Array, type: MessageType, exclude: WebSocketConn<S> | undefined, skipMark: number): number {
  const opcode = type === 'text' ? Opcode.Text : Opcode.Binary;
  let plain: Buffer | undefined;
  // Compressed frames by the key of the deflate parameters they were made with.
  let packed: Map<string, Buffer> | undefined;
  let n = 0;
  for (const ws of subscribers) {
    if (ws === exclude || ws.closed) continue;
    const pmd = ws._pmd;
    let frame: Buffer;
    if (pmd instanceof PerMessageDeflate && pmd.params.serverNoContextTakeover && data.byteLength >= pmd.threshold && data.byteLength > 0) {
      const key = `${pmd.params.serverMaxWindowBits}/${pmd.level}/${pmd.memLevel}`;
      packed ??= new Map();
      let f = packed.get(key);
      if (f === undefined) {
        f = wholeFrame(opcode, deflatedOnce(data, pmd), true);
        packed.set(key, f);
      }
      frame = f;
    } else {
      frame = plain ??= wholeFrame(opcode, data, false);
    }
    ws._sendShared(frame, skipMark);
    n++;
  }
  return n;
}
