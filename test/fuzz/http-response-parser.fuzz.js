// Fuzz target: the client's HTTP response-head parser
// (lib/http/response-parser.ts) and what dial() reads from a head: the
// Upgrade and Connection lists, the extensions response.
//
// Input: byte 0 picks the limit (bit 0), the client's compression options
// (bits 1-2) and the chunk split (bits 3-7); the rest is what a server sends.
//
// Invariants: the same result whole, split, or byte by byte; errors are
// HttpError (400 or 431) and nothing else is thrown; a head fits the limit,
// ends with its blank line, has a three-digit status, a reason without CR or
// LF, lower-case token names and clean trimmed values; listElements and
// trimOws agree with the obvious split-and-trim (the oracle, on these small
// inputs); acceptClientResponse returns null, parameters in range, or an
// ExtensionNegotiationError, and never throws.
import { ResponseParser, headerValue } from '../../dist/http/response-parser.js';
import { listElements, listHasToken, trimOws } from '../../dist/http/chars.js';
import { acceptClientResponse, ExtensionNegotiationError } from '../../dist/websocket/deflate-negotiation.js';
import { HttpError } from '../../dist/errors.js';
import { check, checkEqual, split, pushHead, isTokenString, isCleanValue } from './common.js';

export const maxLen = 2048;
export const dictionary = [
  'HTTP/1.1 101 Switching Protocols\r\n', '\r\n', '\r\n\r\n', ': ', 'Upgrade: websocket\r\n', 'Connection: Upgrade\r\n',
  'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n', 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9\r\n',
  'server_no_context_takeover', 'server_max_window_bits=15', '"1"', ';', ',', '\t', '    ', '\r', '\n', '\x00', '\xa0',
];

const LIMITS = [8192, 100];
const CLIENT_OPTIONS = [{}, { serverNoContextTakeover: true }, { clientMaxWindowBits: 10, serverMaxWindowBits: 11 }, { offerClientMaxWindowBits: false }];
const CODES = ['WS_ERR_INVALID_EXTENSIONS_SYNTAX', 'WS_ERR_UNEXPECTED_EXTENSION', 'WS_ERR_INVALID_DEFLATE_RESPONSE'];

function parse(limit, chunks) {
  const p = new ResponseParser(limit);
  const { r, end } = pushHead((c) => p.push(c), chunks);
  return r === 'need-more' ? r : r instanceof HttpError ? [r.code, r.status, r.message] : [r.head, end];
}

/** The oracle for listElements: split at commas, trim SP/HTAB, drop empties. */
const referenceList = (v) => v.split(',').map(referenceTrim).filter((e) => e !== '');
function referenceTrim(s) {
  let a = 0;
  let b = s.length;
  while (a < b && (s[a] === ' ' || s[a] === '\t')) a++;
  while (b > a && (s[b - 1] === ' ' || s[b - 1] === '\t')) b--;
  return s.slice(a, b);
}

export function fuzz(data) {
  if (data.length < 1) return 'empty';
  const limit = LIMITS[data[0] & 1];
  const bytes = data.subarray(1);
  const whole = parse(limit, [bytes]);
  checkEqual(parse(limit, split(bytes, data[0] >> 3)), whole, 'split result equals whole result');
  checkEqual(parse(limit, split(bytes, 7)), whole, 'byte-by-byte result equals whole result');
  if (whole === 'need-more') {
    check(bytes.length < limit, 'need-more only below the limit');
    return 'need-more';
  }
  if (typeof whole[0] === 'string') {
    check(whole[1] === 400 || whole[1] === 431, 'documented HttpError', whole);
    return `error:${whole[0]}:${whole[2]}`;
  }
  const [head, end] = whole;
  check(end <= limit && bytes.subarray(end - 4, end).toString('latin1') === '\r\n\r\n', 'the head ends with its blank line within the limit', end);
  check(bytes.indexOf('\r\n\r\n') === end - 4, 'the head ends at the first blank line');
  check(Number.isInteger(head.status) && head.status >= 0 && head.status <= 999, 'three-digit status', head.status);
  check(!head.reason.includes('\r') && !head.reason.includes('\n'), 'reason without CR or LF', head.reason);
  for (const [name, value] of head.headers) {
    check(isTokenString(name) && name === name.toLowerCase(), 'header name is a lower-case token', name);
    check(isCleanValue(value), 'header value is clean and trimmed', value);
    checkEqual(listElements(value), referenceList(value), 'listElements equals split-and-trim');
    checkEqual(trimOws(` \t${value}\t `), value, 'trimOws removes what surrounds a clean value');
  }
  const upgrade = listHasToken(headerValue(head, 'upgrade'), 'websocket') && listHasToken(headerValue(head, 'connection'), 'upgrade');
  const extensions = headerValue(head, 'sec-websocket-extensions');
  let ext = 'none';
  if (extensions !== undefined) {
    const r = acceptClientResponse(extensions, CLIENT_OPTIONS[(data[0] >> 1) & 3]);
    if (r instanceof Error) {
      check(r instanceof ExtensionNegotiationError && CODES.includes(r.code), 'documented negotiation error', r);
      ext = r.code;
    } else if (r !== null) {
      for (const bits of [r.serverMaxWindowBits, r.clientMaxWindowBits]) check(Number.isInteger(bits) && bits >= 8 && bits <= 15, 'window bits 8..15', r);
      ext = 'pmd';
    }
  }
  return `head:${head.status}:${upgrade}:${ext}:${Math.min(head.headers.length, 10)}`;
}
