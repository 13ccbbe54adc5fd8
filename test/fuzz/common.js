// What the fuzz targets share: chunk splits derived from the input itself
// (so that a saved input replays exactly, with Jazzer.js too), and the
// checks that an exception is one of the documented errors.
import { isDeepStrictEqual, inspect } from 'node:util';

/** A finding: the target saw something its module's contract rules out. */
export function check(ok, message, detail) {
  if (!ok) throw new Error(`invariant broken: ${message}${detail === undefined ? '' : `\n${inspect(detail, { depth: 6, maxStringLength: 400 })}`}`);
}

export function checkEqual(actual, expected, message) {
  if (!isDeepStrictEqual(actual, expected)) throw new Error(`invariant broken: ${message}\n${inspect({ actual, expected }, { depth: 6, maxStringLength: 400 })}`);
}

/**
 * Cuts `bytes` into chunks at points chosen by a small PRNG seeded with
 * `seed` (a byte or two of the input): 1 to 8 cuts, or every byte when
 * `seed` says so.
 */
export function split(bytes, seed) {
  if (bytes.length <= 1) return [bytes];
  if (seed % 7 === 0) {
    const out = [];
    for (let i = 0; i < bytes.length; i++) out.push(bytes.subarray(i, i + 1));
    return out;
  }
  let s = (seed * 2654435761 + 1) >>> 0;
  const cuts = new Set();
  const n = 1 + (seed % 8);
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    cuts.add(1 + (s % (bytes.length - 1)));
  }
  const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  const out = [];
  for (let i = 1; i < points.length; i++) out.push(bytes.subarray(points[i - 1], points[i]));
  return out;
}

/** Copies a chunk into a fresh buffer and scribbles over the original after use, as the engine reuses its receive buffer. */
export function feedReused(chunk, push) {
  const copy = Buffer.from(chunk);
  const r = push(copy);
  copy.fill(0xa5);
  return r;
}

/**
 * Pushes `chunks` into an HTTP head parser (`push`, each chunk from a buffer
 * scribbled over after use) until it answers. Returns the answer and, for a
 * head, the absolute offset where it ended; checks `consumed` is within its chunk.
 */
export function pushHead(push, chunks) {
  let offset = 0;
  for (const chunk of chunks) {
    const r = feedReused(chunk, push);
    if (r !== 'need-more') {
      if (r instanceof Error) return { r, end: -1 };
      check(r.consumed >= 1 && r.consumed <= chunk.length, 'consumed is within the chunk', r);
      return { r, end: offset + r.consumed };
    }
    offset += chunk.length;
  }
  return { r: 'need-more', end: -1 };
}

/** Rethrows `err` unless it is an instance of `Class` whose `code` is in `codes`. */
export function expectError(err, Class, codes, what) {
  if (!(err instanceof Class) || !codes.includes(err.code)) {
    throw new Error(`${what}: undocumented exception ${err?.name}: ${err?.code} ${err?.message}`, { cause: err });
  }
}

const SP = 0x20;
const HTAB = 0x09;

/** No SP or HTAB at either end. */
export function isTrimmed(s) {
  if (s.length === 0) return true;
  const a = s.charCodeAt(0);
  const b = s.charCodeAt(s.length - 1);
  return a !== SP && a !== HTAB && b !== SP && b !== HTAB;
}

/** Every character a tchar (RFC 9110 §5.6.2), at least one. */
export function isTokenString(s) {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".includes(s[i]);
    if (!ok) return false;
  }
  return true;
}

/** A field value as the parsers must hand it out: HTAB, SP, VCHAR and obs-text only, trimmed. */
export function isCleanValue(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (c < 0x20 && c !== HTAB) || c === 0x7f) return false;
  }
  return isTrimmed(s);
}
