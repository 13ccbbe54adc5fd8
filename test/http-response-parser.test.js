// The client's response-head parser (lib/http/response-parser.ts) on its
// own: the status line forms it takes, header values trimmed of SP/HTAB
// only, every rejection (code and message), the size limit counted exactly,
// and the same result whether the head comes in one chunk or byte by byte,
// with `consumed` telling where the head ended in the last chunk.
import t from 'tap';
import { ResponseParser, headerValue } from '../dist/http/response-parser.js';
import { HttpError } from '../dist/index.js';

const bytes = (s) => Buffer.from(s, 'latin1');

/** Feeds `head` one byte at a time; returns the first result that is not 'need-more' and the index of the byte that gave it. */
function byteByByte(parser, head) {
  for (let i = 0; i < head.length; i++) {
    const r = parser.push(head.subarray(i, i + 1));
    if (r !== 'need-more') return { r, at: i };
  }
  return { r: 'need-more', at: head.length };
}

const OK_101 = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection:Upgrade\r\nX-Two: a\r\nX-Two:  b \t\r\n\r\n';

t.test('a 101: status, reason, headers in order, lower-case names, values trimmed of SP/HTAB', async (t) => {
  const r = new ResponseParser().push(bytes(OK_101));
  t.equal(r.consumed, OK_101.length);
  t.same(r.head, {
    status: 101,
    reason: 'Switching Protocols',
    headers: [
      ['upgrade', 'websocket'],
      ['connection', 'Upgrade'],
      ['x-two', 'a'],
      ['x-two', 'b'],
    ],
  });
  t.equal(headerValue(r.head, 'x-two'), 'a, b');
  t.equal(headerValue(r.head, 'absent'), undefined);
});

t.test('byte by byte: the same head, and consumed = 1 on the last byte', async (t) => {
  const { r, at } = byteByByte(new ResponseParser(), bytes(OK_101));
  t.equal(at, OK_101.length - 1);
  t.equal(r.consumed, 1);
  t.same(r.head, new ResponseParser().push(bytes(OK_101)).head);
});

t.test('bytes after the head are not consumed, whatever the split', async (t) => {
  const all = bytes(OK_101 + '\x81\x02hi');
  for (let split = 1; split < all.length; split++) {
    const p = new ResponseParser();
    const first = p.push(all.subarray(0, split));
    if (split >= OK_101.length) {
      t.equal(first.consumed, OK_101.length, `split ${split}: head in the first chunk`);
      continue;
    }
    t.equal(first, 'need-more');
    const second = p.push(all.subarray(split));
    t.equal(second.consumed, OK_101.length - split, `split ${split}`);
  }
});

t.test('status lines', async (t) => {
  const cases = [
    ['HTTP/1.1 101 Switching Protocols', 101, 'Switching Protocols'],
    ['HTTP/1.1 404 ', 404, ''],
    ['HTTP/1.1 200', 200, ''],
    ['HTTP/1.1 503 Busy  ', 503, 'Busy  '],
    ['HTTP/1.1 200 caf\xe9', 200, 'caf\xe9'],
  ];
  for (const [line, status, reason] of cases) {
    const r = new ResponseParser().push(bytes(`${line}\r\n\r\n`));
    t.same([r.head?.status, r.head?.reason], [status, reason], JSON.stringify(line));
  }
  for (const line of ['HTTP/1.0 101 OK', 'HTTP/1.1 10 OK', 'HTTP/1.1 1a1 OK', 'http/1.1 101 OK', 'HTTP/1.1  101 OK', ' HTTP/1.1 101 OK', 'HTTP/1.1 101 O\rK', 'HTTP/1.1 101 O\nK', '']) {
    const r = new ResponseParser().push(bytes(`${line}\r\n\r\n`));
    t.ok(r instanceof HttpError, JSON.stringify(line));
    t.equal(r.code, 'HTTP_ERR_INVALID_STATUS_LINE', JSON.stringify(line));
  }
});

t.test('header lines: every rejection', async (t) => {
  const cases = [
    ['no colon', 'Upgrade websocket', 'invalid header line'],
    ['empty name', ': x', 'invalid header line'],
    ['space before the colon', 'Upgrade : websocket', 'invalid header name'],
    ['non-token name', 'X@Y: 1', 'invalid header name'],
    ['bare LF in a value', 'X: a\nY: b', 'bare CR or LF'],
    ['bare CR in a value', 'X: a\rb', 'bare CR or LF'],
    ['NUL in a value', 'X: a\x00b', 'control character in a header value'],
    ['DEL in a value', 'X: a\x7fb', 'control character in a header value'],
    ['vertical tab in a value', 'X: \x0ba', 'control character in a header value'],
  ];
  for (const [name, line, message] of cases) {
    const r = new ResponseParser().push(bytes(`HTTP/1.1 101 OK\r\nA: 1\r\n${line}\r\n\r\n`));
    t.ok(r instanceof HttpError, name);
    t.same([r.code, r.status, r.message], ['HTTP_ERR_INVALID_HEADER', 400, message], name);
  }
  const r = new ResponseParser().push(bytes('HTTP/1.1 101 OK\r\nX: \xa0a\xa0\r\n\r\n'));
  t.equal(headerValue(r.head, 'x'), '\xa0a\xa0', 'obs-text is kept, NBSP included: only SP and HTAB are whitespace');
});

t.test('size limit: a head of exactly maxHeadSize passes, one byte more is 431, in one chunk or byte by byte', async (t) => {
  const sized = (n) => {
    const base = 'HTTP/1.1 101 OK\r\nX-Pad: \r\n\r\n';
    return bytes(`HTTP/1.1 101 OK\r\nX-Pad: ${'p'.repeat(n - base.length)}\r\n\r\n`);
  };
  for (const max of [64, 8192]) {
    t.equal(new ResponseParser(max).push(sized(max)).consumed, max, `${max} bytes pass`);
    t.equal(byteByByte(new ResponseParser(max), sized(max)).r.consumed, 1, `${max} bytes byte by byte pass`);
    const over = new ResponseParser(max).push(sized(max + 1));
    t.same([over.code, over.status], ['HTTP_ERR_HEAD_TOO_LARGE', 431], `${max + 1} bytes -> 431`);
    const { r, at } = byteByByte(new ResponseParser(max), sized(max + 1));
    t.equal(r.code, 'HTTP_ERR_HEAD_TOO_LARGE');
    t.equal(at, max - 1, `${max + 1} bytes byte by byte: 431 at byte ${max}, as soon as the head cannot end within the limit`);
  }
  // The default is 8 KiB; a megabyte without a blank line is refused after reading 8 KiB of it.
  const p = new ResponseParser();
  t.equal(p.push(Buffer.alloc(4096, 0x61)), 'need-more');
  t.equal(p.push(Buffer.alloc(1 << 20, 0x61)).code, 'HTTP_ERR_HEAD_TOO_LARGE');
});

t.test('a blank line split across chunks in every way, CRs inside it included', async (t) => {
  const head = 'HTTP/1.1 101 OK\r\nX: \r\r\n\r\n';
  // "X: \r" is a bare CR: the parser must still find the real end, then reject the line.
  const r = new ResponseParser().push(bytes(head));
  t.equal(r.message, 'bare CR or LF');
  const ok = bytes('HTTP/1.1 101 OK\r\n\r\n');
  for (let a = 1; a < ok.length; a++) {
    const p = new ResponseParser();
    t.equal(p.push(ok.subarray(0, a)), 'need-more');
    t.equal(p.push(ok.subarray(a)).consumed, ok.length - a);
  }
});

t.test('after a head or an error the parser starts over', async (t) => {
  const p = new ResponseParser();
  t.equal(p.push(bytes('HTTP/1.1 999 X\r\nbad\r\n\r\n')).code, 'HTTP_ERR_INVALID_HEADER');
  t.equal(p.push(bytes(OK_101)).head.status, 101);
  t.equal(p.push(bytes('HTTP/1.1 200 OK\r\n\r\n')).head.status, 200);
});
