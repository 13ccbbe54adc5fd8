// Fuzz target: permessage-deflate inflation (PerMessageDeflate.decompress,
// lib/websocket/deflate.ts) with both zlib backends, every window size and
// several message limits.
//
// Input: byte 0: bits 0-2 the peer's window (8 + n bits), bit 3 no context
// takeover; byte 1: bits 0-1 the limit (none, 1, 100, 1000 bytes), bits 2-7
// where the input is cut into two messages; the rest the compressed bytes.
//
// Invariants: decompress() returns a Buffer or throws ProtocolError 1009
// WS_ERR_UNSUPPORTED_MESSAGE_LENGTH or 1007 WS_ERR_DECOMPRESS, nothing else;
// the first message equals zlib.inflateRawSync of the bytes and the tail
// 00 00 ff ff (the oracle: same window), within the limit, or is refused
// with 1009 exactly when the oracle's output is longer than the limit and
// 1007 when the oracle fails (either, for corrupt data that also passes the
// limit); both backends agree on it; no output, the second message's (with
// the context of the first) included, is longer than the limit.
//
// The second messages of the two backends are not compared: a first message
// that does not end on a DEFLATE block boundary (a peer breaking §7.2.1)
// leaves the handle backend's stream inside a block, which the dictionary
// backend (a fresh stream per message, primed with the history) cannot
// represent, so their outputs differ on such input. Both stay within the
// limit and throw only the documented errors, which is what is checked.
import zlib from 'node:zlib';
import { PerMessageDeflate, setZlibBackend } from '../../dist/websocket/deflate.js';
import { ProtocolError } from '../../dist/errors.js';
import { check, checkEqual } from './common.js';

export const maxLen = 2048;
export const dictionary = ['\x00\x00\xff\xff', '\x00', '\x01', '\x03\x00', '\xf2\x48\xcd\xc9\xc9\x07\x00', '\x4a\x4c\x4a\x06\x00', '\xcb\x48\xcd\xc9\xc9\x57\x28\xcf\x2f\xca\x49\x01\x00', '\xff\xff\xff\xff', '\xed\xc1\x01\x0d\x00\x00\x00\xc2\xa0\xf7\x4f\x6d\x0e\x37\xa0\x00\x00\x00\x00\x00\x00\x00\x00\x00\xbf\x0d'];

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const LIMITS = [0, 1, 100, 1000];

/** decompress() as [kind, bytes or code]. */
function inflate(pmd, data) {
  try {
    return ['ok', pmd.decompress(data, 0).toString('hex')];
  } catch (err) {
    check(
      err instanceof ProtocolError &&
        ((err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && err.closeCode === 1009) || (err.code === 'WS_ERR_DECOMPRESS' && err.closeCode === 1007)),
      'decompress throws only the documented ProtocolErrors',
      err,
    );
    return ['error', err.code];
  }
}

function oracle(data, bits, limit) {
  if (data.length === 0) return ['ok', ''];
  try {
    return ['ok', zlib.inflateRawSync(Buffer.concat([data, TAIL]), { windowBits: bits, finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: limit || 16 << 20 }).toString('hex')];
  } catch (err) {
    return ['error', err.code === 'ERR_BUFFER_TOO_LARGE' ? 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' : 'WS_ERR_DECOMPRESS'];
  }
}

function both(bits, noContext, limit, messages) {
  const params = { serverNoContextTakeover: false, clientNoContextTakeover: noContext, serverMaxWindowBits: 15, clientMaxWindowBits: bits };
  const results = {};
  for (const backend of ['handle', 'dictionary']) {
    setZlibBackend(backend);
    const pmd = new PerMessageDeflate(params, 'server', { maxMessageLength: limit });
    try {
      results[backend] = messages.map((m) => inflate(pmd, m));
    } finally {
      pmd.close();
      setZlibBackend('auto');
    }
  }
  return results;
}

export function fuzz(data) {
  if (data.length < 2) return 'short';
  const bits = 8 + (data[0] & 7);
  const noContext = (data[0] & 8) !== 0;
  const limit = LIMITS[data[1] & 3];
  const bytes = data.subarray(2);
  const cut = Math.min(bytes.length, (data[1] >> 2) * 8);
  const first = cut === 0 ? bytes : bytes.subarray(0, cut);
  const second = cut === 0 ? null : bytes.subarray(cut);
  const r = both(bits, noContext, limit, second === null ? [first] : [first, second]);
  const want = oracle(first, bits, limit);
  for (const backend of ['handle', 'dictionary']) {
    const got = r[backend][0];
    for (const [kind, v] of r[backend]) if (kind === 'ok') check(limit === 0 || v.length / 2 <= limit, 'output within the limit', { backend, limit });
    if (want[0] === 'ok' || want[1] === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') checkEqual(got, want, `${backend}: first message equals the oracle`);
    else check(got[0] === 'error', `${backend}: corrupt data is refused`, got);
  }
  // Data that is corrupt and also inflates past the limit may be refused for
  // either reason, depending on which the backend meets first.
  const kind = ([k, v]) => (k === 'ok' ? v : want[1] === 'WS_ERR_DECOMPRESS' ? k : v);
  checkEqual(kind(r.dictionary[0]), kind(r.handle[0]), 'both backends agree on the first message');
  return `${bits}:${limit}:${r.handle.map((x) => (x[0] === 'ok' ? (x[1].length > 0 ? 'data' : 'empty') : x[1])).join(',')}`;
}
