// Writes the seed corpus of every fuzz target (test/fuzz/corpus/<target>/):
// a few small valid inputs each, from which the fuzzer mutates. Run once
// after changing a target's input format: node test/fuzz/make-corpus.js
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const b = (s) => Buffer.from(s, 'latin1');
const cat = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? b(p) : Buffer.from(p))));

const upgrade = (extra = '') =>
  'GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** A frame: fin, rsv1, opcode, payload, masked with key 37 fa 21 3d when `mask`. */
function frame(opcode, payload, { fin = true, rsv1 = false, mask = false } = {}) {
  const p = typeof payload === 'string' ? b(payload) : Buffer.from(payload);
  const len = p.length;
  const head = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else head.push(m | 127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff);
  if (!mask) return cat(head, p);
  const key = [0x37, 0xfa, 0x21, 0x3d];
  return cat(head, key, p.map((x, i) => x ^ key[i & 3]));
}
const deflated = (s) => zlib.deflateRawSync(b(s), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4);

const corpus = {
  'http-request-parser': {
    upgrade: cat([0], upgrade()),
    'upgrade-deflate': cat([4], upgrade('Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits="10"\r\n')),
    'plain-get': cat([8], 'GET /index.html HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n'),
    'absolute-form': cat([1], 'GET ws://h:1/chat?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
    'padded-value': cat([2], upgrade(`X-Pad: a${' '.repeat(200)}b\r\n`)),
    'whitespace-around-values': cat([3], upgrade('X-A:\t a \t\r\nX-B: \xa0b\xff\r\nX-C:\r\nX-D: c\t\r\n')),
  },
  'http-response-parser': {
    '101': cat([0], 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n'),
    '101-deflate': cat([5], 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x81\x02hi'),
    '404': cat([9], 'HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nNot Found\n'),
    'no-reason': cat([2], 'HTTP/1.1 200\r\nX: \t a \t\r\n\r\n'),
  },
  'websocket-receiver': {
    // byte 0: role (bit 0: 1 = server, masked frames), bits 1-4 options; byte 1: split
    'server-text': cat([1, 3], frame(1, 'Hello', { mask: true }), frame(9, 'p', { mask: true }), frame(8, cat([0x03, 0xe8], 'bye'), { mask: true })),
    'server-fragments': cat([1, 10], frame(1, 'H\xc3', { fin: false, mask: true }), frame(9, '', { mask: true }), frame(0, '\xa9llo', { mask: true })),
    'client-binary': cat([0, 5], frame(2, Buffer.alloc(300, 7)), frame(10, 'pong'), frame(8, [0x0f, 0xa0])),
    'client-deflate': cat([4, 2], frame(1, deflated('Hello Hello Hello'), { rsv1: true }), frame(2, deflated('\x00\x01\x02'), { rsv1: true, fin: false }), frame(0, [])),
    'server-deflate-frames': cat([7, 0], frame(1, deflated('abcabcabc'), { rsv1: true, mask: true }), frame(8, [], { mask: true })),
    'client-big-length': cat([0, 1], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
    // Text at the edges of UTF-8's ranges, where one bit flip makes it invalid (surrogates, overlongs, past U+10FFFF).
    'client-text-edges': cat([0, 4], frame(1, '\xed\x9f\xbf\xe0\xa0\x80\xf4\x8f\xbf\xbf\xc2\x80', { fin: false }), frame(0, '\xf0\x90\x80\x80')),
    'client-close-reason': cat([2, 6], frame(8, cat([0x03, 0xf3], '\xed\x9f\xbf'))),
  },
  utf8: {
    ascii: cat([0, 0], 'hello, world'),
    mixed: cat([3, 1], 'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf'),
    invalid: cat([5, 2], 'a\xed\xa0\x80b\xc0\xafc\xf4\x90\x80\x80'),
    long: cat([1, 9], 'x'.repeat(100), '\xe2\x82\xac'.repeat(30)),
  },
  'deflate-negotiation': {
    offer: cat([0], 'permessage-deflate; client_max_window_bits'),
    offers: cat([1], 'permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate, x-webkit-deflate-frame'),
    quoted: cat([2], 'permessage-deflate; client_max_window_bits="12"; server_no_context_takeover'),
    response: cat([3], 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9'),
    pair: cat([0x80, 0x23, 0x5a, 0x11], 'permessage-deflate'),
  },
  'deflate-inflate': {
    // byte 0: window bits (low 3 bits + 8), context; byte 1: limit choice
    text: cat([7, 0], deflated('Hello Hello Hello Hello')),
    bytes: cat([2, 1], deflated(Buffer.alloc(2000, 0x61).toString('latin1'))),
    stored: cat([7, 2], zlib.deflateRawSync(b('stored'), { level: 0, finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4)),
    final: cat([7, 0], zlib.deflateRawSync(b('final block'))),
    window8: cat([0, 3], zlib.deflateRawSync(b('abcdefgh'.repeat(40)), { windowBits: 9, finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4)),
  },
  'close-payload': {
    normal: cat([0x03, 0xe8], 'bye'),
    empty: Buffer.alloc(0),
    private: cat([0x0f, 0xa0], 'caf\xc3\xa9'),
    bad: cat([0x03, 0xed]),
  },
};

for (const [target, files] of Object.entries(corpus)) {
  const dir = path.join(HERE, 'corpus', target);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), bytes);
}
console.log(`wrote ${Object.values(corpus).reduce((n, f) => n + Object.keys(f).length, 0)} seed inputs`);
