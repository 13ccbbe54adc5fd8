// Fuzz target: the UTF-8 validator (lib/websocket/utf8.ts), with
// TextDecoder's fatal mode as the oracle (the WHATWG decoder, which also
// reports an error at the first byte that cannot be part of valid text).
//
// Input: byte 0 the chunk split, byte 1 a sub-range offset; the rest the text.
//
// Invariants: isValidUtf8 (whole and on a sub-range, both the JavaScript loop
// and the native path past its threshold) equals the oracle; fed in chunks,
// Utf8Validator.feed() returns false first on the chunk holding the first
// byte the oracle rejects (never earlier, never later), end() is true exactly
// for valid text, and midSequence is true exactly when the bytes so far end
// inside a character.
import { Utf8Validator, isValidUtf8 } from '../../dist/websocket/utf8.js';
import { check, split } from './common.js';

export const maxLen = 1024;
export const dictionary = ['\xc2\x80', '\xdf\xbf', '\xe0\xa0\x80', '\xed\x9f\xbf', '\xed\xa0\x80', '\xef\xbf\xbf', '\xf0\x90\x80\x80', '\xf4\x8f\xbf\xbf', '\xf4\x90\x80\x80', '\xc0\x80', '\xe0\x80\x80', '\xf5', '\x80', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'];

function oracleValid(bytes) {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Whether bytes can still be the beginning of valid text (an unfinished last character is fine). */
function oraclePrefixOk(bytes) {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** Index of the first byte after which no continuation can make the text valid; bytes.length if none. */
function firstBadByte(bytes) {
  if (oraclePrefixOk(bytes)) return bytes.length;
  // Failing is monotone in the prefix length: binary search for the shortest failing prefix.
  let lo = 0; // prefix of length lo is fine
  let hi = bytes.length; // prefix of length hi fails
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (oraclePrefixOk(bytes.subarray(0, mid))) lo = mid;
    else hi = mid;
  }
  return hi - 1;
}

export function fuzz(data) {
  if (data.length < 2) return 'short';
  const bytes = data.subarray(2);
  const valid = oracleValid(bytes);
  check(isValidUtf8(bytes) === valid, 'isValidUtf8 equals the oracle', bytes.toString('hex'));
  const from = Math.min(data[1], bytes.length);
  check(isValidUtf8(bytes, from) === oracleValid(bytes.subarray(from)), 'isValidUtf8 on a sub-range equals the oracle');
  const bad = firstBadByte(bytes);
  const v = new Utf8Validator();
  let offset = 0;
  let failedAt = -1;
  for (const chunk of split(bytes, data[0])) {
    const ok = v.feed(chunk);
    if (!ok && failedAt < 0) failedAt = offset;
    if (failedAt < 0) {
      const end = offset + chunk.length;
      check(bad >= end, 'feed() did not fail although the chunk holds a bad byte', { bad, offset, end });
      check(v.midSequence === !oracleValid(bytes.subarray(0, end)), 'midSequence says whether a character is unfinished');
    } else {
      check(bad >= offset && bad < offset + chunk.length, 'feed() failed on the chunk holding the first bad byte', { bad, offset, len: chunk.length });
      break;
    }
    offset += chunk.length;
  }
  check(v.end() === valid, 'end() equals the oracle');
  return `${valid}:${bad === bytes.length ? 'none' : bytes[bad].toString(16)}:${bytes.length >= 128}`;
}
