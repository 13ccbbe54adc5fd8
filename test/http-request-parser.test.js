// The incremental request-head parser: heads fed whole, byte by byte and in
// seeded random chunkings must give identical results; the bytes after the
// head are reported exactly; every malformed line is a 400 with its code;
// both limits (head size, header count) give 431 and are configurable.
import t from 'tap';
import { RequestParser, RequestHead, DEFAULT_MAX_HEAD_SIZE, DEFAULT_MAX_HEADERS } from '../dist/http/request-parser.js';
import { HttpError } from '../dist/errors.js';

function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function chunkings(length, seeds = 8) {
  const out = [{ name: 'whole', cuts: [length] }];
  const ones = [];
  for (let i = 1; i <= length; i++) ones.push(i);
  out.push({ name: '1-byte', cuts: ones });
  for (let s = 1; s <= seeds; s++) {
    const rnd = prng(s * 31337);
    const maxStep = [2, 7, 40, 300][s % 4];
    const cuts = [];
    let p = 0;
    while (p < length) {
      p = Math.min(length, p + 1 + Math.floor(rnd() * maxStep));
      cuts.push(p);
    }
    out.push({ name: `seed ${s}`, cuts });
  }
  return out;
}

/**
 * Feeds `bytes` cut at `cuts` until the parser answers; every chunk is a
 * fresh copy overwritten after push(). Returns a plain summary, including the
 * bytes after the head as the parser reported them (taken before overwriting).
 */
function parse(bytes, cuts, options) {
  const p = new RequestParser(options);
  let start = 0;
  for (const end of cuts) {
    const chunk = Buffer.from(bytes.subarray(start, end));
    const r = p.push(chunk);
    const after = r !== 'need-more' && !(r instanceof HttpError) ? chunk.subarray(r.consumed).toString('latin1') : undefined;
    chunk.fill(0xee);
    if (r instanceof HttpError) return { error: r.code, status: r.status, at: end };
    if (r !== 'need-more') {
      const h = r.head;
      return { method: h.method, target: h.target, version: h.version, headers: h.headers.map((x) => [...x]), size: h.size, after, chunkEnd: end };
    }
    start = end;
  }
  return 'need-more';
}

/** Same answer for every chunking; returns it. */
function parseAll(t, name, input, options) {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input, 'latin1');
  let first;
  for (const { name: how, cuts } of chunkings(bytes.length)) {
    const r = parse(bytes, cuts, options);
    // `after` and `chunkEnd` depend on the chunking; what follows the head overall must not.
    const norm = typeof r === 'object' && 'after' in r ? { ...r, after: r.after + bytes.subarray(r.chunkEnd).toString('latin1'), chunkEnd: undefined } : r;
    if (typeof norm === 'object' && 'error' in norm) delete norm.at;
    if (first === undefined) first = norm;
    else t.same(norm, first, `${name} (${how})`);
  }
  return first;
}

const SAMPLE =
  'GET /chat HTTP/1.1\r\n' +
  'Host: server.example.com\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Origin: http://example.com\r\n' +
  'Sec-WebSocket-Protocol: chat, superchat\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  '\r\n';

t.test('the RFC 6455 sample handshake, any chunking', async (t) => {
  const r = parseAll(t, 'sample', SAMPLE);
  t.same(r, {
    method: 'GET',
    target: '/chat',
    version: '1.1',
    headers: [
      ['host', 'server.example.com'],
      ['upgrade', 'websocket'],
      ['connection', 'Upgrade'],
      ['sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='],
      ['origin', 'http://example.com'],
      ['sec-websocket-protocol', 'chat, superchat'],
      ['sec-websocket-version', '13'],
    ],
    size: SAMPLE.length,
    after: '',
    chunkEnd: undefined,
  });
  t.equal(DEFAULT_MAX_HEAD_SIZE, 8192);
  t.equal(DEFAULT_MAX_HEADERS, 40);
});

t.test('bytes after the head are reported exactly, whatever the chunking', async (t) => {
  const frame = Buffer.from('818537fa213d7f9f4d5158', 'hex');
  const bytes = Buffer.concat([Buffer.from(SAMPLE, 'latin1'), frame, frame]);
  for (const { name, cuts } of chunkings(bytes.length)) {
    const r = parse(bytes, cuts);
    // The chunk that ended the head: what the parser did not consume, then the later chunks.
    const rest = Buffer.concat([Buffer.from(r.after, 'latin1'), bytes.subarray(r.chunkEnd)]);
    t.equal(rest.toString('hex'), Buffer.concat([frame, frame]).toString('hex'), `${name}: nothing lost, nothing extra`);
    t.equal(r.size, SAMPLE.length);
  }
  // Whole: consumed is exactly the head's length.
  const p = new RequestParser();
  const r = p.push(bytes);
  t.equal(r.consumed, SAMPLE.length);
  t.equal(r.head.size, SAMPLE.length);
  // Byte by byte: the head ends in a chunk of its own, wholly consumed.
  const q = new RequestParser();
  let last;
  for (let i = 0; i < SAMPLE.length; i++) last = q.push(bytes.subarray(i, i + 1));
  t.equal(last.consumed, 1);
});

t.test('header details: case, order, duplicates, whitespace, empty and Latin-1 values', async (t) => {
  const r = parseAll(
    t,
    'details',
    'GET /a?b=c HTTP/1.1\r\nHOST: x\r\nX-Dup: one\r\nx-dup:two\r\nX-Spaces: \t a  b \t \r\nX-Empty:\r\nX-Blank:   \r\nX-Latin: caf\xe9\r\nX-Visible: !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~\r\n\r\n',
  );
  t.same(r.headers, [
    ['host', 'x'],
    ['x-dup', 'one'],
    ['x-dup', 'two'],
    ['x-spaces', 'a  b'],
    ['x-empty', ''],
    ['x-blank', ''],
    ['x-latin', 'café'],
    ['x-visible', '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'],
  ]);
  t.equal(r.target, '/a?b=c');
  const head = new RequestParser().push(Buffer.from('GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\na: 3\r\n\r\n')).head;
  t.ok(head instanceof RequestHead);
  t.equal(head.get('A'), '1, 3', 'get() joins repeated lines with ", "');
  t.same(head.getAll('a'), ['1', '3']);
  t.equal(head.count('a'), 2);
  t.equal(head.get('missing'), undefined);
  t.same(head.getAll('missing'), []);
});

t.test('accepted variations', async (t) => {
  t.equal(parseAll(t, 'HTTP/1.0', 'GET / HTTP/1.0\r\n\r\n').version, '1.0', 'HTTP/1.0 parses (the upgrade checks reject it)');
  t.same(parseAll(t, 'leading empty lines', '\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n').headers, [['host', 'x']], 'empty lines before the request line are skipped');
  t.equal(parseAll(t, 'no headers', 'OPTIONS * HTTP/1.1\r\n\r\n').target, '*');
  t.equal(parseAll(t, 'extension method', 'M-SEARCH * HTTP/1.1\r\n\r\n').method, 'M-SEARCH');
  t.equal(parseAll(t, 'absolute-form', 'GET ws://h:1/p?q HTTP/1.1\r\n\r\n').target, 'ws://h:1/p?q');
});

t.test('malformed heads: 400 (505 for other versions), with stable codes, any chunking', async (t) => {
  const cases = [
    ['bare LF ending the request line', 'GET / HTTP/1.1\nHost: x\r\n\r\n', 'HTTP_ERR_BARE_LF'],
    ['bare LF ending a header line', 'GET / HTTP/1.1\r\nHost: x\n\r\n', 'HTTP_ERR_BARE_LF'],
    ['bare LF as the blank line', 'GET / HTTP/1.1\r\nHost: x\r\n\n', 'HTTP_ERR_BARE_LF'],
    ['bare LF before the request line', '\nGET / HTTP/1.1\r\n\r\n', 'HTTP_ERR_BARE_LF'],
    ['bare LF in an empty value', 'GET / HTTP/1.1\r\nA:\n\r\n', 'HTTP_ERR_BARE_LF'],
    ['bare CR after the request line', 'GET / HTTP/1.1\rHost: x\r\n\r\n', 'HTTP_ERR_BARE_CR'],
    ['bare CR after a header', 'GET / HTTP/1.1\r\nHost: x\rY: 1\r\n\r\n', 'HTTP_ERR_BARE_CR'],
    ['bare CR as the blank line', 'GET / HTTP/1.1\r\nHost: x\r\n\rX', 'HTTP_ERR_BARE_CR'],
    ['obs-fold', 'GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n', 'HTTP_ERR_OBS_FOLD'],
    ['obs-fold with a tab', 'GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n', 'HTTP_ERR_OBS_FOLD'],
    ['whitespace before the first header', 'GET / HTTP/1.1\r\n Host: x\r\n\r\n', 'HTTP_ERR_OBS_FOLD'],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : x\r\n\r\n', 'HTTP_ERR_SPACE_BEFORE_COLON'],
    ['tab before the colon', 'GET / HTTP/1.1\r\nHost\t: x\r\n\r\n', 'HTTP_ERR_SPACE_BEFORE_COLON'],
    ['invalid character in a name', 'GET / HTTP/1.1\r\nX@Y: 1\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_NAME'],
    ['non-ASCII name', 'GET / HTTP/1.1\r\nX\xe9: 1\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_NAME'],
    ['empty name', 'GET / HTTP/1.1\r\n: x\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_NAME'],
    ['line without a colon', 'GET / HTTP/1.1\r\nHost\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_NAME'],
    ['NUL in a value', 'GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_VALUE'],
    ['control character in a value', 'GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_VALUE'],
    ['DEL in a value', 'GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_VALUE'],
    ['ESC first in a value', 'GET / HTTP/1.1\r\nX: \x1bb\r\n\r\n', 'HTTP_ERR_INVALID_HEADER_VALUE'],
    ['invalid character in the method', 'GE(T / HTTP/1.1\r\n\r\n', 'HTTP_ERR_INVALID_METHOD'],
    ['empty method', ' / HTTP/1.1\r\n\r\n', 'HTTP_ERR_INVALID_METHOD'],
    ['request line without spaces', 'GET\r\n\r\n', 'HTTP_ERR_INVALID_METHOD'],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\n\r\n', 'HTTP_ERR_INVALID_TARGET'],
    ['tab after the method', 'GET\t/ HTTP/1.1\r\n\r\n', 'HTTP_ERR_INVALID_METHOD'],
    ['no version', 'GET /\r\n\r\n', 'HTTP_ERR_INVALID_TARGET'],
    ['non-ASCII target', 'GET /caf\xe9 HTTP/1.1\r\n\r\n', 'HTTP_ERR_INVALID_TARGET'],
    ['control character in the target', 'GET /a\x01 HTTP/1.1\r\n\r\n', 'HTTP_ERR_INVALID_TARGET'],
    ['space after the version', 'GET / HTTP/1.1 \r\n\r\n', 'HTTP_ERR_INVALID_VERSION'],
    ['lower-case version', 'GET / http/1.1\r\n\r\n', 'HTTP_ERR_INVALID_VERSION'],
    ['version too long', 'GET / HTTP/1.10\r\n\r\n', 'HTTP_ERR_INVALID_VERSION'],
    ['version garbage', 'GET / HTTP/x\r\n\r\n', 'HTTP_ERR_INVALID_VERSION'],
    ['empty version', 'GET / \r\n\r\n', 'HTTP_ERR_INVALID_VERSION'],
  ];
  for (const [name, input, code] of cases) {
    t.same(parseAll(t, name, input), { error: code, status: 400 }, name);
  }
  t.same(parseAll(t, 'HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n'), { error: 'HTTP_ERR_VERSION_NOT_SUPPORTED', status: 505 });
  t.same(parseAll(t, 'HTTP/0.9', 'GET / HTTP/0.9\r\n\r\n'), { error: 'HTTP_ERR_VERSION_NOT_SUPPORTED', status: 505 });
  // The error is reported at the offending byte, not later.
  const bytes = Buffer.from('GET / HTTP/1.1\r\nX: a\x00' + 'b'.repeat(100));
  const r = parse(bytes, chunkings(bytes.length)[1].cuts);
  t.equal(r.at, 'GET / HTTP/1.1\r\nX: a\x00'.length, 'byte by byte: the NUL is the last byte read');
});

function headWithHeaders(n, valueLength = 1) {
  let s = 'GET / HTTP/1.1\r\n';
  for (let i = 0; i < n; i++) s += `h${i}: ${'v'.repeat(valueLength)}\r\n`;
  return s + '\r\n';
}

function headOfSize(size) {
  const base = 'GET / HTTP/1.1\r\nX: \r\n\r\n';
  return 'GET / HTTP/1.1\r\nX: ' + 'v'.repeat(size - base.length) + '\r\n\r\n';
}

t.test('431: too many header lines (default 40, configurable)', async (t) => {
  t.equal(parseAll(t, '40 headers', headWithHeaders(40)).headers.length, 40);
  t.same(parseAll(t, '41 headers', headWithHeaders(41)), { error: 'HTTP_ERR_TOO_MANY_HEADERS', status: 431 });
  t.equal(parseAll(t, '3 of 3', headWithHeaders(3), { maxHeaders: 3 }).headers.length, 3);
  t.same(parseAll(t, '4 of 3', headWithHeaders(4), { maxHeaders: 3 }), { error: 'HTTP_ERR_TOO_MANY_HEADERS', status: 431 });
  t.equal(parseAll(t, '100 of 100', headWithHeaders(100), { maxHeaders: 100 }).headers.length, 100);
  // Reported when the 41st line starts, before it ends.
  const bytes = Buffer.from(headWithHeaders(41));
  const at = headWithHeaders(40).length - 2 + 1; // the first byte of the 41st header line
  t.equal(parse(bytes, chunkings(bytes.length)[1].cuts).at, at);
});

t.test('431: head too large (default 8 KiB, configurable), reported as the limit is reached', async (t) => {
  t.equal(headOfSize(8192).length, 8192);
  t.equal(parseAll(t, '8192 bytes', headOfSize(8192)).size, 8192);
  t.same(parseAll(t, '8193 bytes', headOfSize(8193)), { error: 'HTTP_ERR_HEAD_TOO_LARGE', status: 431 });
  t.equal(parseAll(t, '200 of 200', headOfSize(200), { maxHeadSize: 200 }).size, 200);
  t.same(parseAll(t, '201 of 200', headOfSize(201), { maxHeadSize: 200 }), { error: 'HTTP_ERR_HEAD_TOO_LARGE', status: 431 });
  t.same(parseAll(t, 'a long request line', `GET /${'a'.repeat(300)} HTTP/1.1\r\n\r\n`, { maxHeadSize: 200 }), { error: 'HTTP_ERR_HEAD_TOO_LARGE', status: 431 });
  // A head that never ends: byte by byte the error comes with byte 200, not later.
  const endless = Buffer.from('GET / HTTP/1.1\r\nX: ' + 'v'.repeat(1000));
  t.equal(parse(endless, chunkings(endless.length)[1].cuts, { maxHeadSize: 200 }).at, 200);
  // In one chunk of 1000 bytes, after reading no more than the limit.
  t.same(parse(endless, [endless.length], { maxHeadSize: 200 }), { error: 'HTTP_ERR_HEAD_TOO_LARGE', status: 431, at: 1019 });
  // A complete head followed by much more data in the same chunk is not "too large".
  const big = Buffer.concat([Buffer.from(SAMPLE), Buffer.alloc(100000, 0x81)]);
  const r = new RequestParser({ maxHeadSize: SAMPLE.length }).push(big);
  t.equal(r.consumed, SAMPLE.length, 'a head of exactly the limit, followed by frame bytes');
});

t.test('lifecycle and options', async (t) => {
  const p = new RequestParser();
  t.equal(p.push(Buffer.from('GET / HTTP/1.1\r\n')), 'need-more');
  t.equal(p.push(Buffer.alloc(0)), 'need-more', 'an empty chunk changes nothing');
  t.equal(p.push(Buffer.from('\r\n')).head.method, 'GET');
  t.throws(() => p.push(Buffer.from('x')), /reset/, 'push() after the head throws');
  p.reset();
  t.equal(p.push(new Uint8Array(Buffer.from('PUT /x HTTP/1.1\r\n\r\n'))).head.method, 'PUT', 'reset() parses another head; Uint8Array input');
  const q = new RequestParser();
  t.ok(q.push(Buffer.from('BAD\x01')) instanceof HttpError);
  t.throws(() => q.push(Buffer.from('x')), /reset/);
  t.throws(() => new RequestParser({ maxHeadSize: 0 }), TypeError);
  t.throws(() => new RequestParser({ maxHeaders: 1.5 }), TypeError);
  const e = new RequestParser().push(Buffer.from('GET / HTTP/1.1\r\nA : b\r\n'));
  t.equal(e.name, 'HttpError');
  t.equal(e.status, 400);
  t.equal(e.code, 'HTTP_ERR_SPACE_BEFORE_COLON');
  t.type(e.message, 'string');
});
