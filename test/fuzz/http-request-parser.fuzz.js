// Fuzz target: the HTTP request-head parser (lib/http/request-parser.ts) and
// what the server does with a head (checkUpgrade with permessage-deflate,
// the rejection it writes).
//
// Input: byte 0 picks the limits (bits 0-1) and the chunk split (bits 2-7);
// the rest is the bytes a client sends.
//
// Invariants: the result is the same whole, split, or byte by byte (kind,
// error code and status, head, consumed bytes); errors are HttpError with
// status 400, 431 or 505 and nothing else is thrown; a head ends with its
// blank line inside the limits, has lower-case token names and clean
// trimmed values; written back and parsed again it gives itself; checkUpgrade
// never throws, answers a 101 whose Sec-WebSocket-Accept is the key's and
// which the client's parser reads back, or a rejection with a documented
// status whose bytes the client's parser reads back with that status.
import { RequestParser } from '../../dist/http/request-parser.js';
import { ResponseParser, headerValue } from '../../dist/http/response-parser.js';
import { checkUpgrade, computeAccept, rejectionResponse } from '../../dist/http/upgrade.js';
import { deflateUpgradeHook } from '../../dist/websocket/deflate-negotiation.js';
import { HttpError } from '../../dist/errors.js';
import { check, checkEqual, split, pushHead, isTokenString, isCleanValue } from './common.js';

export const maxLen = 2048;
export const dictionary = [
  'GET / HTTP/1.1\r\n', '\r\n', '\r\n\r\n', ': ', 'Host: a\r\n', 'Upgrade: websocket\r\n', 'Connection: Upgrade\r\n',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n', 'Sec-WebSocket-Version: 13\r\n', 'Sec-WebSocket-Protocol: chat, x\r\n',
  'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n', 'server_max_window_bits=10', '"', ';', ',',
  'HTTP/1.0', 'HTTP/2.0', 'ws://h/p?q', '\t', '    ', '\xff', 'Origin: http://o\r\n', '\t\r\n', ' \r\n', ': \t',
];

const LIMITS = [{}, { maxHeadSize: 128 }, { maxHeaders: 3 }, { maxHeadSize: 300, maxHeaders: 6 }];
const STATUSES = new Set([400, 431, 505]);
const UPGRADE_STATUSES = new Set([400, 403, 404, 405, 426]);

function parse(limits, chunks) {
  const p = new RequestParser(limits);
  return pushHead((c) => p.push(c), chunks);
}

const summary = ({ r, end }) =>
  r === 'need-more' ? 'need-more' : r instanceof HttpError ? [r.code, r.status] : [r.head.method, r.head.target, r.head.version, r.head.headers, r.head.size, end];

export function fuzz(data) {
  if (data.length < 1) return 'empty';
  const limits = LIMITS[data[0] & 3];
  const bytes = data.subarray(1);
  const whole = parse(limits, [bytes]);
  checkEqual(summary(parse(limits, split(bytes, data[0] >> 2))), summary(whole), 'split result equals whole result');
  checkEqual(summary(parse(limits, split(bytes, 7))), summary(whole), 'byte-by-byte result equals whole result');
  const { r, end } = whole;
  if (r === 'need-more') {
    check(bytes.length < (limits.maxHeadSize ?? 8192), 'need-more only below the head limit');
    return 'need-more';
  }
  if (r instanceof HttpError) {
    check(STATUSES.has(r.status) && r.code.startsWith('HTTP_ERR_'), 'documented HttpError', r);
    return `error:${r.code}:${bytes.length >> 6}`;
  }
  const head = r.head;
  check(head.size === end && head.size <= (limits.maxHeadSize ?? 8192), 'head size within the limit', head.size);
  check(bytes.subarray(head.size - 4, head.size).toString('latin1') === '\r\n\r\n', 'the head ends with its blank line');
  check(head.headers.length <= (limits.maxHeaders ?? 40), 'header count within the limit');
  check(isTokenString(head.method), 'method is a token', head.method);
  check(head.target.length > 0 && /^[\x21-\x7e]+$/.test(head.target), 'target is visible ASCII', head.target);
  for (const [name, value] of head.headers) {
    check(isTokenString(name) && name === name.toLowerCase(), 'header name is a lower-case token', name);
    check(isCleanValue(value), 'header value is clean and trimmed', value);
  }
  // Written back in canonical form and parsed again: the same head.
  const again = `${head.method} ${head.target} HTTP/${head.version}\r\n${head.headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
  const reparsed = new RequestParser({ maxHeadSize: 1 << 20, maxHeaders: 1000 }).push(Buffer.from(again, 'latin1'));
  checkEqual(reparsed instanceof HttpError ? reparsed.code : reparsed.head.headers, head.headers, 'the canonical form parses to the same headers');

  let agreed = null;
  const u = checkUpgrade(head, {
    path: ['/', '/chat'],
    subprotocols: ['chat', 'superchat'],
    negotiateExtensions: deflateUpgradeHook({ clientMaxWindowBits: data[0] & 4 ? 10 : undefined }, (a) => (agreed = a)),
  });
  const response = new ResponseParser(1 << 16).push(u.accept ? Buffer.from(u.responseText, 'latin1') : rejectionResponse(u));
  check(!(response instanceof HttpError) && response !== 'need-more', 'our own response parses', response);
  if (u.accept) {
    check(response.head.status === 101, '101');
    checkEqual(headerValue(response.head, 'sec-websocket-accept'), computeAccept(head.get('sec-websocket-key')), 'accept matches the key');
    check(u.extensions === '' || (agreed !== null && u.extensions === agreed.response), 'extensions response is the agreement');
    return `101:${u.protocol}:${u.extensions === '' ? '' : 'pmd'}`;
  }
  check(UPGRADE_STATUSES.has(u.status) && response.head.status === u.status, 'documented rejection status', u);
  return `reject:${u.code}:${Math.min(head.headers.length, 12)}`;
}
