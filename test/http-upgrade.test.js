// The RFC 6455 §4.2.1 handshake checks, the 101 response byte for byte, every
// rejection with its status, headers and code, and the plain responses of
// response.js.
import t from 'tap';
import { RequestParser } from '../dist/http/request-parser.js';
import { checkUpgrade, computeAccept, rejectionResponse, isWebSocketUpgrade, isUpgradeAttempt, targetPath, WEBSOCKET_GUID } from '../dist/http/upgrade.js';
import { httpResponse, responseHead } from '../dist/http/response.js';

const SAMPLE_HEADERS = [
  ['Host', 'server.example.com'],
  ['Upgrade', 'websocket'],
  ['Connection', 'Upgrade'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ['Origin', 'http://example.com'],
  ['Sec-WebSocket-Protocol', 'chat, superchat'],
  ['Sec-WebSocket-Version', '13'],
];

/** Parses a head built from a request line and headers ([name, value] pairs; null values drop the header). */
function head({ line = 'GET /chat HTTP/1.1', headers = SAMPLE_HEADERS, set = {}, add = [] } = {}) {
  const list = headers.filter(([n]) => !(n.toLowerCase() in lower(set))).concat(Object.entries(set).filter(([, v]) => v !== null), add);
  const text = `${line}\r\n${list.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
  const r = new RequestParser().push(Buffer.from(text, 'latin1'));
  if (r === 'need-more' || r instanceof Error) throw new Error(`bad test head: ${r}`);
  return r.head;
}
function lower(o) {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toLowerCase(), v]));
}

const rejected = (r) => ({ status: r.status, code: r.code, headers: r.headers });

t.test('the RFC sample: accept value and the 101, byte for byte', async (t) => {
  t.equal(WEBSOCKET_GUID, '258EAFA5-E914-47DA-95CA-C5AB0DC85B11');
  // RFC 6455 §1.3 (and §4.2.2): SHA-1 b37a4f2cc0624f1690f64606cf385945b2bec4ea, in base64.
  // (The value "s3pPLMBiTxaQ9kxK+xOo2pbsWzo=" sometimes quoted for this key is not this digest.)
  t.equal(computeAccept('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  t.equal(Buffer.from(computeAccept('dGhlIHNhbXBsZSBub25jZQ=='), 'base64').toString('hex'), 'b37a4f2cc0624f1690f64606cf385945b2bec4ea');
  const r = checkUpgrade(head());
  t.equal(r.accept, true);
  t.equal(
    r.responseHead.toString('latin1'),
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
    'no subprotocol configured: no Sec-WebSocket-Protocol header',
  );
  t.equal(r.protocol, '');
  t.equal(r.extensions, '');
  t.equal(r.rsv1Allowed, false);
  t.equal(r.path, '/chat');
  const p = checkUpgrade(head(), { subprotocols: ['chat'] });
  t.equal(
    p.responseHead.toString('latin1'),
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n',
  );
  t.equal(isWebSocketUpgrade(head()), true);
  t.equal(isWebSocketUpgrade(head({ set: { Upgrade: null } })), false);
});

t.test('token lists: Upgrade and Connection, any case, among other tokens', async (t) => {
  for (const v of ['Upgrade', 'upgrade', 'UPGRADE', 'keep-alive, Upgrade', 'keep-alive,upgrade', 'Upgrade , keep-alive', ', ,Upgrade,']) {
    t.equal(checkUpgrade(head({ set: { Connection: v } })).accept, true, `Connection: ${v}`);
  }
  t.equal(checkUpgrade(head({ set: { Connection: 'keep-alive' }, add: [['Connection', 'Upgrade']] })).accept, true, 'Connection on two lines');
  for (const v of ['keep-alive', 'upgraded', 'up grade', 'Upgrade-Insecure-Requests', '']) {
    t.same(rejected(checkUpgrade(head({ set: { Connection: v } }))), { status: 400, code: 'WS_ERR_INVALID_CONNECTION', headers: [] }, `Connection: ${v}`);
  }
  t.same(rejected(checkUpgrade(head({ set: { Connection: null } }))), { status: 400, code: 'WS_ERR_INVALID_CONNECTION', headers: [] }, 'no Connection');
  for (const v of ['websocket', 'WebSocket', 'h2c, websocket', 'websocket, foo']) {
    t.equal(checkUpgrade(head({ set: { Upgrade: v } })).accept, true, `Upgrade: ${v}`);
  }
  for (const v of ['websocket2', 'web socket', 'h2c', '']) {
    t.same(rejected(checkUpgrade(head({ set: { Upgrade: v } }))), { status: 400, code: 'WS_ERR_INVALID_UPGRADE', headers: [] }, `Upgrade: ${v}`);
  }
});

t.test('rejections: status, required headers, code, and the response bytes', async (t) => {
  const post = checkUpgrade(head({ line: 'POST /chat HTTP/1.1' }));
  t.same(rejected(post), { status: 405, code: 'WS_ERR_METHOD_NOT_ALLOWED', headers: [['Allow', 'GET']] });
  const body = post.body;
  t.equal(
    rejectionResponse(post).toString('latin1'),
    `HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  t.equal(checkUpgrade(head({ line: 'get /chat HTTP/1.1' })).status, 405, 'methods are case-sensitive');
  t.same(rejected(checkUpgrade(head({ line: 'GET /chat HTTP/1.0' }))), { status: 400, code: 'WS_ERR_HTTP_VERSION', headers: [] });
  t.same(rejected(checkUpgrade(head({ set: { Host: null } }))), { status: 400, code: 'WS_ERR_INVALID_HOST', headers: [] });
  t.same(rejected(checkUpgrade(head({ add: [['Host', 'other']] }))), { status: 400, code: 'WS_ERR_INVALID_HOST', headers: [] }, 'two Host lines');

  const badKeys = [
    null,
    '',
    'abc',
    'AAAAAAAAAAAAAAAAAAAA', // 15 bytes
    'AAAAAAAAAAAAAAAAAAAAAA==', // 16 bytes: valid, control
    'AAAAAAAAAAAAAAAAAAAAAAA=', // 17 bytes
    'AAAAAAAAAAAAAAAAAAAAAAAA', // 18 bytes
    'AAAAAAAAAAAAAAAAAAAA*A==', // not base64
    'dGhlIHNhbXBsZSBub25jZQ', // unpadded
  ];
  for (const k of badKeys) {
    const r = checkUpgrade(head({ set: { 'Sec-WebSocket-Key': k } }));
    if (k === 'AAAAAAAAAAAAAAAAAAAAAA==') t.equal(r.accept, true, '16 zero bytes are a valid key');
    else t.same(rejected(r), { status: 400, code: 'WS_ERR_INVALID_KEY', headers: [] }, `key ${JSON.stringify(k)}`);
  }
  t.same(rejected(checkUpgrade(head({ add: [['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']] }))), { status: 400, code: 'WS_ERR_INVALID_KEY', headers: [] }, 'two key lines');

  for (const v of [null, '8', '12', '14', '13, 8', 'thirteen']) {
    const r = checkUpgrade(head({ set: { 'Sec-WebSocket-Version': v } }));
    t.same(rejected(r), { status: 426, code: 'WS_ERR_UNSUPPORTED_VERSION', headers: [['Sec-WebSocket-Version', '13']] }, `version ${v}`);
    t.match(rejectionResponse(r).toString('latin1'), /^HTTP\/1\.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n/);
  }

  t.same(rejected(checkUpgrade(head(), { path: '/other' })), { status: 404, code: 'WS_ERR_NOT_FOUND', headers: [] });
  t.match(rejectionResponse(checkUpgrade(head(), { path: '/other' })).toString('latin1'), /^HTTP\/1\.1 404 Not Found\r\n/);
  t.same(rejected(checkUpgrade(head({ line: 'GET * HTTP/1.1' }))), { status: 400, code: 'WS_ERR_INVALID_TARGET', headers: [] });

  const seen = [];
  const deny = checkUpgrade(head(), { checkOrigin: (origin, h) => (seen.push([origin, h.target]), false) });
  t.same(rejected(deny), { status: 403, code: 'WS_ERR_FORBIDDEN_ORIGIN', headers: [] });
  t.match(rejectionResponse(deny).toString('latin1'), /^HTTP\/1\.1 403 Forbidden\r\n/);
  t.equal(checkUpgrade(head(), { checkOrigin: (o) => o === 'http://example.com' }).accept, true);
  checkUpgrade(head({ set: { Origin: null } }), { checkOrigin: (o) => (seen.push([o]), true) });
  t.same(seen, [['http://example.com', '/chat'], [undefined]], 'checkOrigin sees the origin, or undefined');
  t.throws(() => checkUpgrade(head(), { checkOrigin: () => { throw new Error('hook failed'); } }), /hook failed/, 'hook exceptions propagate');
});

t.test('paths', async (t) => {
  t.equal(checkUpgrade(head({ line: 'GET /chat?room=1 HTTP/1.1' }), { path: '/chat' }).path, '/chat', 'the query is not part of the path');
  t.equal(checkUpgrade(head(), { path: ['/a', '/chat'] }).accept, true, 'a list');
  t.equal(checkUpgrade(head({ line: 'GET /b HTTP/1.1' }), { path: ['/a', '/chat'] }).status, 404);
  t.equal(checkUpgrade(head({ line: 'GET /room/7 HTTP/1.1' }), { path: (p) => p.startsWith('/room/') }).accept, true, 'a predicate');
  t.equal(checkUpgrade(head({ line: 'GET /Chat HTTP/1.1' }), { path: '/chat' }).status, 404, 'paths are case-sensitive');
  t.equal(checkUpgrade(head({ line: 'GET ws://server.example.com/chat?x HTTP/1.1' }), { path: '/chat' }).accept, true, 'absolute-form');
  t.equal(targetPath('/a/b?c#d'), '/a/b');
  t.equal(targetPath('ws://h'), '/');
  t.equal(targetPath('http://h:80?q'), '/');
  t.equal(targetPath('*'), undefined);
  t.equal(targetPath('example.com:443'), undefined);
});

t.test('subprotocols: the server’s first preference the client offered', async (t) => {
  t.equal(checkUpgrade(head(), { subprotocols: ['superchat', 'chat'] }).protocol, 'superchat', 'server order wins');
  t.equal(checkUpgrade(head(), { subprotocols: ['chat', 'superchat'] }).protocol, 'chat');
  t.equal(checkUpgrade(head(), { subprotocols: ['mqtt', 'superchat'] }).protocol, 'superchat');
  const none = checkUpgrade(head(), { subprotocols: ['mqtt'] });
  t.equal(none.protocol, '', 'no common protocol: accepted without one');
  t.notMatch(none.responseHead.toString(), /Sec-WebSocket-Protocol/);
  t.equal(checkUpgrade(head(), { subprotocols: ['Chat'] }).protocol, '', 'names compare exactly');
  t.equal(checkUpgrade(head({ set: { 'Sec-WebSocket-Protocol': 'a' }, add: [['Sec-WebSocket-Protocol', 'b,  chat']] }), { subprotocols: ['chat'] }).protocol, 'chat', 'offers on several lines');
  t.equal(checkUpgrade(head({ set: { 'Sec-WebSocket-Protocol': null } }), { subprotocols: ['chat'] }).protocol, '', 'no offer');
  for (const v of ['chat, super chat', 'chat;v=1', ',', 'chat, "x"']) {
    t.same(rejected(checkUpgrade(head({ set: { 'Sec-WebSocket-Protocol': v } }), { subprotocols: ['chat'] })), { status: 400, code: 'WS_ERR_INVALID_PROTOCOL', headers: [] }, `offer ${JSON.stringify(v)}`);
  }
});

t.test('extension negotiation hook', async (t) => {
  const offers = [];
  const negotiateExtensions = (offer) => {
    offers.push(offer);
    return offer.includes('permessage-deflate') ? { responseHeaderValue: 'permessage-deflate; server_no_context_takeover', rsv1Allowed: true } : null;
  };
  const r = checkUpgrade(head({ add: [['Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits'], ['Sec-WebSocket-Extensions', 'x-foo']] }), { negotiateExtensions });
  t.same(offers, ['permessage-deflate; client_max_window_bits, x-foo'], 'one call with every line joined');
  t.equal(r.rsv1Allowed, true);
  t.equal(r.extensions, 'permessage-deflate; server_no_context_takeover');
  t.match(r.responseHead.toString(), /\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n$/);
  const declined = checkUpgrade(head({ add: [['Sec-WebSocket-Extensions', 'x-foo']] }), { negotiateExtensions });
  t.equal(declined.rsv1Allowed, false);
  t.notMatch(declined.responseHead.toString(), /Extensions/);
  checkUpgrade(head(), { negotiateExtensions });
  t.equal(offers.length, 2, 'not called without an offer');
  t.equal(checkUpgrade(head({ add: [['Sec-WebSocket-Extensions', 'permessage-deflate']] })).rsv1Allowed, false, 'no hook: no extension');
  const bad = checkUpgrade(head({ add: [['Sec-WebSocket-Extensions', 'permessage-deflate; x=']] }), {
    negotiateExtensions: () => {
      throw new Error('bad parameter');
    },
  });
  t.same(rejected(bad), { status: 400, code: 'WS_ERR_INVALID_EXTENSIONS', headers: [] });
  t.match(bad.body, /bad parameter/);
});

t.test('extra 101 headers', async (t) => {
  const r = checkUpgrade(head(), { headers: [['X-Server', 'netloop'], ['Set-Cookie', 'a=1']] });
  t.match(r.responseHead.toString(), /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\nX-Server: netloop\r\nSet-Cookie: a=1\r\n\r\n$/);
  t.match(checkUpgrade(head(), { headers: { 'X-A': 'b' } }).responseHead.toString(), /X-A: b\r\n\r\n$/);
  t.throws(() => checkUpgrade(head(), { headers: [['X-Evil', 'a\r\nSet-Cookie: x']] }), TypeError, 'no response splitting');
});

t.test('plain responses', async (t) => {
  t.equal(
    httpResponse(200, [['X-A', '1']], 'hi é').toString('latin1'),
    'HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhi \xc3\xa9',
  );
  t.equal(
    httpResponse(503, { 'Retry-After': 5, 'Content-Type': 'application/json' }, '{}').toString('latin1'),
    'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
  );
  t.equal(httpResponse(404).toString('latin1'), 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  t.equal(httpResponse(200, [], Buffer.from([0, 1]), { omitBody: true }).toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n', 'HEAD');
  t.equal(httpResponse(200, [], new Uint8Array([0x41])).toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nA', 'binary body: no Content-Type added');
  t.equal(httpResponse(204).toString('latin1'), 'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
  t.equal(httpResponse(299).toString('latin1'), 'HTTP/1.1 299 Unknown\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  t.equal(httpResponse(431).toString('latin1').split('\r\n')[0], 'HTTP/1.1 431 Request Header Fields Too Large');
  t.equal(responseHead(101, [['Upgrade', 'websocket']]).toString(), 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n');
  t.throws(() => httpResponse(200, [['Content-Length', '1']]), TypeError);
  t.throws(() => httpResponse(200, [['Connection', 'keep-alive']]), TypeError);
  t.throws(() => httpResponse(200, [['Bad Name', 'x']]), TypeError);
  t.throws(() => httpResponse(200, [['X', 'a\nb']]), TypeError);
  t.throws(() => httpResponse(200, [['X', 'snow ☃']]), TypeError, 'values are Latin-1');
  t.throws(() => httpResponse(204, [], 'body'), TypeError);
  t.throws(() => httpResponse(99), RangeError);
  t.throws(() => httpResponse(1000), RangeError);
  t.throws(() => httpResponse(200, [], 42), TypeError);
});

t.test('from bytes to 101: parser and checks together', async (t) => {
  const bytes = Buffer.from(
    'GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n',
  );
  const p = new RequestParser();
  let r;
  for (let i = 0; i < bytes.length; i++) r = p.push(bytes.subarray(i, i + 1));
  const u = checkUpgrade(r.head, { path: '/ws' });
  t.equal(u.accept, true);
  t.match(u.responseHead.toString(), /Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n/, 'the widely quoted example pair (x3JJHMbDL1EzLkh9GBhXDw==)');
});

t.test('plain HTTP is 404, a broken upgrade attempt 400 (or its own status)', async (t) => {
  const plain = [
    ['Host', 'example.com'],
    ['Accept', 'text/html'],
    ['Connection', 'keep-alive'],
  ];
  for (const line of ['GET /chat HTTP/1.1', 'HEAD / HTTP/1.1', 'POST /chat HTTP/1.1', 'GET /chat HTTP/1.0']) {
    const h = head({ line, headers: plain });
    t.equal(isUpgradeAttempt(h), false, line);
    t.same(rejected(checkUpgrade(h)), { status: 404, code: 'WS_ERR_NOT_UPGRADE', headers: [] }, `${line} without upgrade headers`);
  }
  t.equal(
    rejectionResponse(checkUpgrade(head({ headers: plain }))).toString('latin1'),
    'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nConnection: close\r\n\r\nNot Found\n',
  );
  t.equal(
    rejectionResponse(checkUpgrade(head({ line: 'HEAD / HTTP/1.1', headers: plain })), { omitBody: true }).toString('latin1'),
    'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nConnection: close\r\n\r\n',
    'HEAD: the head only',
  );
  // Any one sign of a handshake makes it an attempt, judged by the usual checks.
  const attempts = [
    [[['Upgrade', 'websocket']], 400, 'WS_ERR_INVALID_CONNECTION'],
    [[['Upgrade', 'h2c']], 400, 'WS_ERR_INVALID_UPGRADE'],
    [[['Upgrade', '']], 400, 'WS_ERR_INVALID_UPGRADE'],
    [[['Connection', 'keep-alive, Upgrade']], 400, 'WS_ERR_INVALID_UPGRADE'],
    [[['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']], 400, 'WS_ERR_INVALID_UPGRADE'],
    [[['Sec-WebSocket-Version', '13']], 400, 'WS_ERR_INVALID_UPGRADE'],
    [[['Sec-WebSocket-Protocol', 'chat']], 400, 'WS_ERR_INVALID_UPGRADE'],
  ];
  for (const [add, status, code] of attempts) {
    const h = head({ headers: plain.filter(([n]) => n !== 'Connection'), add });
    t.equal(isUpgradeAttempt(h), true, JSON.stringify(add));
    t.same(rejected(checkUpgrade(h)), { status, code, headers: [] }, JSON.stringify(add));
  }
  t.same(rejected(checkUpgrade(head({ set: { 'Sec-WebSocket-Key': 'short' } }))), { status: 400, code: 'WS_ERR_INVALID_KEY', headers: [] }, 'a wrong key: 400');
  t.equal(checkUpgrade(head({ set: { 'Sec-WebSocket-Version': '8' } })).status, 426, 'a wrong version: 426 with the version we speak');
  t.equal(checkUpgrade(head({ line: 'POST /chat HTTP/1.1' })).status, 405, 'an upgrade attempt with POST: 405');
});
