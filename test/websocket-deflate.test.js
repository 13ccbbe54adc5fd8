// permessage-deflate (RFC 7692): negotiation tables for every parameter on
// both sides, the §7.2.3 examples byte for byte, interop with Node's public
// zlib, the 8-bit window, context takeover and its absence, bounded
// inflation (a deflate bomb), error codes, the Receiver hook, laziness and
// pooling of zlib state, and the fallback backend.
import t from 'tap';
import zlib from 'node:zlib';
import { randomBytes } from 'node:crypto';
import {
  PerMessageDeflate,
  negotiateServer,
  offerClient,
  acceptClientResponse,
  parseExtensions,
  deflateUpgradeHook,
  ExtensionNegotiationError,
  zlibBackend,
  setZlibBackend,
  zlibStats,
  drainZlibPool,
  DEFAULT_THRESHOLD,
} from '../dist/websocket/deflate.js';
import { Receiver, DEFAULT_MAX_MESSAGE_LENGTH } from '../dist/websocket/receiver.js';
import { frame } from '../dist/websocket/sender.js';
import { Opcode } from '../dist/websocket/opcodes.js';
import { ProtocolError } from '../dist/errors.js';
import { RequestParser } from '../dist/http/request-parser.js';
import { checkUpgrade } from '../dist/http/upgrade.js';
import { sleep, until } from './helpers/interop-server.js';
import { zlibWork } from '../dist/websocket/deflate-work.js';

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const TAIL = hex('0000ffff');
const { Z_SYNC_FLUSH } = zlib.constants;

const DEFAULTS = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
const params = (p = {}) => ({ ...DEFAULTS, ...p });

/** A server codec and a client codec over the same parameters. */
function pair(p = {}, options = {}) {
  const agreed = params(p);
  return { server: new PerMessageDeflate(agreed, 'server', options), client: new PerMessageDeflate(agreed, 'client', options) };
}

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

/** Sync-flushes `data` through a public zlib stream, collecting what it emits (keeps the stream's context). */
function streamFlush(stream, data) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const onData = (c) => chunks.push(c);
    stream.on('data', onData);
    stream.once('error', reject);
    stream.write(data);
    stream.flush(Z_SYNC_FLUSH, () => {
      stream.off('data', onData);
      stream.off('error', reject);
      resolve(Buffer.concat(chunks));
    });
  });
}

function protocolError(t, fn, code, closeCode, what) {
  try {
    fn();
    t.fail(`${what}: no error`);
  } catch (err) {
    t.ok(err instanceof ProtocolError, `${what}: a ProtocolError`);
    t.equal(err.code, code, `${what}: code`);
    t.equal(err.closeCode, closeCode, `${what}: close code`);
    return err;
  }
}

// First in the file, so that the process's peak RSS is still its start-up
// figure and a growth of the peak would show.
t.test('a 256 MiB deflate bomb through the Receiver: 1009, RSS bounded by the limit', async (t) => {
  const maker = pair({}, { threshold: 0, level: 9 }).client;
  const packed16 = Buffer.alloc(1 << 20);
  const parts = [];
  for (let i = 0; i < 256; i++) parts.push(maker.compress(packed16, false));
  parts.push(maker.compress('', true));
  maker.close();
  const bomb = Buffer.concat(parts);
  t.ok(bomb.length < 512 * 1024, `256 MiB of packed16 in ${bomb.length} bytes`);
  const wire = Buffer.concat(frame(Opcode.Binary, bomb, { rsv1: true, mask: true }));
  const errors = [];
  const r = new Receiver({ onError: (e) => errors.push(e), onMessage: () => t.fail('delivered') }, { role: 'server', decompressor: pair().server });
  const rssBefore = process.memoryUsage().rss;
  const peakBefore = process.resourceUsage().maxRSS * 1024;
  r.push(wire);
  // 16 MiB of inflation is more than one loop turn's budget of zlib work
  // (deflate-work.ts): the rest goes on in later turns, and the error comes then.
  t.equal(errors.length, 0, 'no error yet: inflating in later loop turns');
  t.ok(r.inflating, 'the receiver is inflating');
  await until(() => errors.length > 0, 10000, 'the 1009');
  const growth = process.memoryUsage().rss - rssBefore;
  const peakGrowth = process.resourceUsage().maxRSS * 1024 - peakBefore;
  t.equal(errors.length, 1);
  t.equal(errors[0].code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
  t.equal(errors[0].closeCode, 1009);
  const mib = (n) => (n / 1048576).toFixed(1);
  t.ok(growth < 64 * 1048576, `RSS grew by ${mib(growth)} MiB (limit ${mib(DEFAULT_MAX_MESSAGE_LENGTH)} MiB, bomb 256 MiB)`);
  t.ok(peakGrowth < 64 * 1048576, `peak RSS grew by ${mib(peakGrowth)} MiB`);
});

// ---------------------------------------------------------------------------
// Negotiation, server side

t.test('server: each parameter of an offer, the response header byte for byte', async (t) => {
  const table = [
    // [offer, server options, response, params]
    ['permessage-deflate', {}, 'permessage-deflate', {}],
    ['permessage-deflate; server_no_context_takeover', {}, 'permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }],
    ['permessage-deflate; client_no_context_takeover', {}, 'permessage-deflate; client_no_context_takeover', { clientNoContextTakeover: true }],
    ['permessage-deflate; server_max_window_bits=10', {}, 'permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits=8', {}, 'permessage-deflate; server_max_window_bits=8', { serverMaxWindowBits: 8 }],
    ['permessage-deflate; server_max_window_bits=15', {}, 'permessage-deflate; server_max_window_bits=15', {}],
    ['permessage-deflate; client_max_window_bits', {}, 'permessage-deflate', {}],
    ['permessage-deflate; client_max_window_bits=10', {}, 'permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 10 }],
    ['permessage-deflate; client_max_window_bits=8', {}, 'permessage-deflate; client_max_window_bits=8', { clientMaxWindowBits: 8 }],
    // Server options: limits and resets asked of or announced to the client.
    ['permessage-deflate', { serverNoContextTakeover: true }, 'permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }],
    ['permessage-deflate', { clientNoContextTakeover: true }, 'permessage-deflate; client_no_context_takeover', { clientNoContextTakeover: true }],
    ['permessage-deflate', { serverMaxWindowBits: 11 }, 'permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 11 }],
    ['permessage-deflate', { serverMaxWindowBits: 15 }, 'permessage-deflate', {}],
    ['permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 12 }, 'permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits=13', { serverMaxWindowBits: 11 }, 'permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 11 }],
    ['permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 12 }, 'permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 12 }],
    ['permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 12 }, 'permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 10 }],
    ['permessage-deflate; client_max_window_bits=13', { clientMaxWindowBits: 9 }, 'permessage-deflate; client_max_window_bits=9', { clientMaxWindowBits: 9 }],
    ['permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 15 }, 'permessage-deflate', {}],
    ['permessage-deflate', { clientMaxWindowBits: 15 }, 'permessage-deflate', {}],
    // Everything at once, in canonical order whatever the offer's order.
    [
      'permessage-deflate; client_max_window_bits=9; server_max_window_bits=12; client_no_context_takeover; server_no_context_takeover',
      {},
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=9',
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 12, clientMaxWindowBits: 9 },
    ],
    // Syntax freedom: case, whitespace, quoted-string values (unescaped).
    ['PerMessage-Deflate; Server_No_Context_Takeover', {}, 'permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }],
    ['permessage-deflate ;\tclient_max_window_bits = 10 ', {}, 'permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits="10"', {}, 'permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }],
    ['permessage-deflate; client_max_window_bits="1\\1"', {}, 'permessage-deflate; client_max_window_bits=11', { clientMaxWindowBits: 11 }],
  ];
  for (const [offer, options, response, p] of table) {
    const r = negotiateServer(offer, options);
    t.not(r, null, `${offer} ${JSON.stringify(options)}: accepted`);
    if (r === null) continue;
    t.equal(r.response, response, `${offer} ${JSON.stringify(options)}: response`);
    t.same(r.params, params(p), `${offer} ${JSON.stringify(options)}: params`);
  }
});

t.test('server: offers it must decline (§7), one by one', async (t) => {
  const declined = [
    'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
    'permessage-deflate; client_max_window_bits; client_max_window_bits=10',
    'permessage-deflate; server_max_window_bits=10; Server_Max_Window_Bits=10',
    'permessage-deflate; x-unknown',
    'permessage-deflate; max_window_bits=10',
    'permessage-deflate; server_no_context_takeover=1',
    'permessage-deflate; client_no_context_takeover="x"',
    'permessage-deflate; server_max_window_bits',
    'permessage-deflate; server_max_window_bits=7',
    'permessage-deflate; server_max_window_bits=16',
    'permessage-deflate; server_max_window_bits=08',
    'permessage-deflate; server_max_window_bits=010',
    'permessage-deflate; server_max_window_bits=abc',
    'permessage-deflate; server_max_window_bits=+9',
    'permessage-deflate; server_max_window_bits="1 0"',
    'permessage-deflate; server_max_window_bits=""',
    'permessage-deflate; client_max_window_bits=7',
    'permessage-deflate; client_max_window_bits=16',
    'permessage-deflate; client_max_window_bits=0',
    'permessage-deflate; client_max_window_bits=9.5',
  ];
  for (const offer of declined) t.equal(negotiateServer(offer, {}), null, offer);
  // A limit on the client's window cannot be told to a client that did not offer client_max_window_bits.
  t.equal(negotiateServer('permessage-deflate', { clientMaxWindowBits: 10 }), null, 'clientMaxWindowBits without client_max_window_bits in the offer');
  t.equal(negotiateServer('', {}), null, 'empty header');
  t.equal(negotiateServer(' , ,', {}), null, 'only empty elements');
  t.equal(negotiateServer('x-webkit-deflate-frame, deflate-frame', {}), null, 'other extensions only');
});

t.test('server: several offers, in the client preference order', async (t) => {
  let r = negotiateServer('permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate; client_max_window_bits');
  t.equal(r.response, 'permessage-deflate; server_max_window_bits=10', 'the first acceptable offer wins');
  r = negotiateServer('permessage-deflate; x=1, permessage-deflate; server_max_window_bits=99, permessage-deflate; client_max_window_bits');
  t.equal(r.response, 'permessage-deflate', 'declined offers are skipped');
  r = negotiateServer('x-foo; a="b, c"; d, permessage-deflate; server_no_context_takeover', {});
  t.equal(r.response, 'permessage-deflate; server_no_context_takeover', 'other extensions (with quoted commas) are ignored');
  r = negotiateServer('permessage-deflate, permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 10 });
  t.equal(r.response, 'permessage-deflate; client_max_window_bits=10', 'a server limit skips the offer without client_max_window_bits');
  t.same(r.params, params({ clientMaxWindowBits: 10 }));
});

t.test('malformed headers: a syntax error, not a declined offer', async (t) => {
  const malformed = [
    'permessage-deflate;',
    'permessage-deflate; ',
    'permessage-deflate;; server_no_context_takeover',
    'permessage-deflate server_no_context_takeover',
    'permessage-deflate; server_max_window_bits=',
    'permessage-deflate; =10',
    'permessage-deflate; a="unterminated',
    'permessage-deflate; a="bad \\',
    'permessage-deflate; a=b c',
    'permessage-deflate; a=1=2',
    '"permessage-deflate"',
    ';server_no_context_takeover',
    'permessage-deflate/1',
    'permessage-deflate; a="\x01"',
    'permessage-deflate; a=[b]',
  ];
  for (const h of malformed) {
    t.throws(() => negotiateServer(h, {}), { name: 'ExtensionNegotiationError', code: 'WS_ERR_INVALID_EXTENSIONS_SYNTAX' }, JSON.stringify(h));
  }
  t.same(parseExtensions('a; b="x\\"y" ,, c;d=e'), [
    { name: 'a', params: [['b', 'x"y']] },
    { name: 'c', params: [['d', 'e']] },
  ], 'parseExtensions: elements, parameters, unescaped values');
  t.throws(() => parseExtensions(1), TypeError);
});

t.test('options are validated', async (t) => {
  for (const bad of [{ serverMaxWindowBits: 7 }, { serverMaxWindowBits: 16 }, { clientMaxWindowBits: 10.5 }, { clientMaxWindowBits: '10' }]) {
    t.throws(() => negotiateServer('permessage-deflate', bad), RangeError, JSON.stringify(bad));
    t.throws(() => offerClient(bad), RangeError, `offer ${JSON.stringify(bad)}`);
  }
  t.throws(() => negotiateServer('permessage-deflate', { serverNoContextTakeover: 1 }), TypeError);
  t.throws(() => offerClient({ offerClientMaxWindowBits: 'yes' }), TypeError);
  t.throws(() => negotiateServer('permessage-deflate', null), TypeError);
});

/** Parses a handshake head with a Sec-WebSocket-Extensions value. */
function upgradeHead(extensions) {
  const lines = [
    'GET /chat HTTP/1.1',
    'Host: example.com',
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    ...(extensions === undefined ? [] : [`Sec-WebSocket-Extensions: ${extensions}`]),
  ];
  const r = new RequestParser().push(Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'));
  if (r === 'need-more' || r instanceof Error) throw new Error(`bad head: ${r}`);
  return r.head;
}

t.test("checkUpgrade's negotiateExtensions hook", async (t) => {
  let agreed = null;
  const hook = deflateUpgradeHook({ serverNoContextTakeover: true }, (n) => (agreed = n));
  let r = checkUpgrade(upgradeHead('permessage-deflate; client_max_window_bits=10'), { negotiateExtensions: hook });
  t.equal(r.accept, true);
  t.equal(r.extensions, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
  t.equal(r.rsv1Allowed, true);
  t.match(r.responseHead.toString(), /\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n/);
  t.same(agreed.params, params({ serverNoContextTakeover: true, clientMaxWindowBits: 10 }), 'the hook handed over the params');

  agreed = null;
  r = checkUpgrade(upgradeHead('permessage-deflate; x=1'), { negotiateExtensions: hook });
  t.equal(r.accept, true, 'declined: the handshake goes on');
  t.equal(r.extensions, '');
  t.equal(r.rsv1Allowed, false);
  t.notMatch(r.responseHead.toString(), /Sec-WebSocket-Extensions/);
  t.equal(agreed, null);

  r = checkUpgrade(upgradeHead('permessage-deflate; a="b'), { negotiateExtensions: hook });
  t.equal(r.accept, false, 'malformed: rejected');
  t.equal(r.status, 400);
  t.equal(r.code, 'WS_ERR_INVALID_EXTENSIONS');
  t.match(r.body, /unterminated quoted-string/);
});

// ---------------------------------------------------------------------------
// Negotiation, client side

t.test('client: the offer', async (t) => {
  t.equal(offerClient(), 'permessage-deflate; client_max_window_bits');
  t.equal(offerClient({ offerClientMaxWindowBits: false }), 'permessage-deflate');
  t.equal(offerClient({ clientMaxWindowBits: 10, offerClientMaxWindowBits: false }), 'permessage-deflate; client_max_window_bits=10');
  t.equal(offerClient({ serverMaxWindowBits: 15, clientMaxWindowBits: 15 }), 'permessage-deflate; client_max_window_bits');
  t.equal(
    offerClient({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 }),
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9',
  );
  // What a client offers, a server parses.
  t.same(parseExtensions(offerClient({ serverMaxWindowBits: 12 })), [
    { name: 'permessage-deflate', params: [['server_max_window_bits', '12'], ['client_max_window_bits', true]] },
  ]);
});

t.test('client: responses it accepts', async (t) => {
  const table = [
    // [response, client options, params]
    [undefined, {}, null],
    ['', {}, null],
    ['permessage-deflate', {}, {}],
    ['permessage-deflate; server_no_context_takeover', {}, { serverNoContextTakeover: true }],
    ['permessage-deflate; client_no_context_takeover', {}, { clientNoContextTakeover: true }],
    ['permessage-deflate', { clientNoContextTakeover: true }, { clientNoContextTakeover: true }],
    ['permessage-deflate; server_max_window_bits=10', {}, { serverMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits=9', { serverMaxWindowBits: 10 }, { serverMaxWindowBits: 9 }],
    ['permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }, { serverMaxWindowBits: 10 }],
    ['permessage-deflate; client_max_window_bits=8', {}, { clientMaxWindowBits: 8 }],
    ['permessage-deflate; client_max_window_bits=9', { clientMaxWindowBits: 10 }, { clientMaxWindowBits: 9 }],
    ['permessage-deflate', { clientMaxWindowBits: 10 }, { clientMaxWindowBits: 10 }],
    ['permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }, { serverNoContextTakeover: true }],
    ['Permessage-Deflate; Client_Max_Window_Bits="12"', {}, { clientMaxWindowBits: 12 }],
  ];
  for (const [response, options, p] of table) {
    t.same(acceptClientResponse(response, options), p === null ? null : params(p), `${response} ${JSON.stringify(options)}`);
  }
});

t.test('client: responses that fail the handshake', async (t) => {
  const table = [
    // [response, client options, code, message pattern]
    ['permessage-deflate; x=1', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /unknown parameter x/],
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /duplicate/],
    ['permessage-deflate; client_max_window_bits', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /needs a value/],
    ['permessage-deflate; client_max_window_bits=10', { offerClientMaxWindowBits: false }, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /not offered/],
    ['permessage-deflate; client_max_window_bits=11', { clientMaxWindowBits: 10 }, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /above the offered 10/],
    ['permessage-deflate; client_max_window_bits=16', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /8 to 15/],
    ['permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 10 }, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /above the requested 10/],
    ['permessage-deflate', { serverMaxWindowBits: 10 }, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /requested but not answered/],
    ['permessage-deflate; server_max_window_bits', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /needs a value/],
    ['permessage-deflate; server_max_window_bits=7', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /8 to 15/],
    ['permessage-deflate', { serverNoContextTakeover: true }, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /server_no_context_takeover was requested/],
    ['permessage-deflate; client_no_context_takeover=1', {}, 'WS_ERR_INVALID_DEFLATE_RESPONSE', /takes no value/],
    ['x-foo', {}, 'WS_ERR_UNEXPECTED_EXTENSION', /not offered.*x-foo/],
    ['permessage-deflate, permessage-deflate', {}, 'WS_ERR_UNEXPECTED_EXTENSION', /not offered/],
    ['permessage-deflate, x-foo', {}, 'WS_ERR_UNEXPECTED_EXTENSION', /not offered/],
    ['permessage-deflate; a="b', {}, 'WS_ERR_INVALID_EXTENSIONS_SYNTAX', /unterminated/],
  ];
  for (const [response, options, code, message] of table) {
    const r = acceptClientResponse(response, options);
    t.ok(r instanceof ExtensionNegotiationError, `${response}: an error`);
    t.equal(r.code, code, `${response}: code`);
    t.match(r.message, message, `${response}: message`);
  }
});

t.test('offer, answer, check: both ends agree on the same params', async (t) => {
  const clientOptions = [{}, { serverNoContextTakeover: true }, { clientNoContextTakeover: true }, { serverMaxWindowBits: 10 }, { clientMaxWindowBits: 9 }, { offerClientMaxWindowBits: false }];
  const serverOptions = [{}, { serverNoContextTakeover: true }, { clientNoContextTakeover: true }, { serverMaxWindowBits: 12 }, { clientMaxWindowBits: 11 }, { serverMaxWindowBits: 8, clientMaxWindowBits: 8 }];
  let agreedCount = 0;
  for (const c of clientOptions) {
    for (const s of serverOptions) {
      const n = negotiateServer(offerClient(c), s);
      if (n === null) {
        t.ok(c.offerClientMaxWindowBits === false && s.clientMaxWindowBits !== undefined, `declined only for a server limit without client_max_window_bits: ${JSON.stringify([c, s])}`);
        continue;
      }
      agreedCount++;
      t.same(acceptClientResponse(n.response, c), n.params, JSON.stringify([c, s]));
    }
  }
  t.equal(agreedCount, 34);
});

// ---------------------------------------------------------------------------
// The codec: RFC 7692 §7.2.3 examples

t.test('§7.2.3 examples, byte for byte', async (t) => {
  // §7.2.3.1: "Hello" in one compressed block, no context takeover: the same bytes every time.
  const nc = pair({ serverNoContextTakeover: true }, { threshold: 0, level: 6 });
  t.equal(nc.server.compress('Hello').toString('hex'), 'f248cdc9c90700');
  t.equal(nc.server.compress('Hello').toString('hex'), 'f248cdc9c90700', 'no context takeover: identical');
  t.equal(nc.client.decompress(hex('f248cdc9c90700')).toString(), 'Hello');
  // §7.2.3.2: the second "Hello" is a back-reference into the first.
  const ct = pair({}, { threshold: 0, level: 6 });
  t.equal(ct.server.compress('Hello').toString('hex'), 'f248cdc9c90700');
  t.equal(ct.server.compress('Hello').toString('hex'), 'f200110000', 'context takeover: f2 00 11 00 00');
  t.equal(ct.client.decompress(hex('f248cdc9c90700')).toString(), 'Hello');
  t.equal(ct.client.decompress(hex('f200110000')).toString(), 'Hello', 'decoded with the shared window');
  // Level 1 (the default) gives the same bytes for these.
  const l1 = pair({}, { threshold: 0 });
  t.equal(l1.server.compress('Hello').toString('hex'), 'f248cdc9c90700');
  t.equal(l1.server.compress('Hello').toString('hex'), 'f200110000');
  // §7.2.3.3: "Hello" in a stored block.
  t.equal(pair().client.decompress(hex('00 05 00 fa ff 48 65 6c 6c 6f 00')).toString(), 'Hello');
  // §7.2.3.4: a block with BFINAL set, then a byte that the tail turns into an empty stored block.
  const bf = pair().client;
  t.equal(bf.decompress(hex('f3 48 cd c9 c9 07 00 00')).toString(), 'Hello');
  t.equal(bf.decompress(hex('f3 48 cd c9 c9 07 00')).toString(), 'Hello', 'and without the extra byte; a new stream after it');
  t.equal(bf.decompress(hex('f248cdc9c90700')).toString(), 'Hello', 'then an ordinary message');
  // §7.2.3.5: two blocks in one message.
  t.equal(pair().client.decompress(hex('f2 48 05 00 00 00 ff ff ca c9 c9 07 00')).toString(), 'Hello');
  // §7.2.3.6: an empty last fragment is sent as the single byte 00.
  const fr = pair({}, { threshold: 0 });
  const first = fr.client.compress('Hel', false);
  const second = fr.client.compress('lo', false);
  const last = fr.client.compress(Buffer.alloc(0), true);
  t.equal(last.toString('hex'), '00', 'empty final fragment');
  t.ok(first.subarray(-4).equals(TAIL) && second.subarray(-4).equals(TAIL), 'non-final fragments keep their sync-flush tail');
  t.equal(fr.server.decompress(Buffer.concat([first, second, last])).toString(), 'Hello');
  t.equal(fr.client.compress('').toString('hex'), '00', 'an empty message is 00 too');
  t.equal(fr.server.decompress(hex('00')).length, 0);
  t.equal(fr.client.compress('').toString('hex'), '00', 'twice in a row (zlib flushes nothing the second time)');
  t.equal(fr.server.decompress(hex('00')).length, 0);
  // An empty payload with RSV1 (what a sender that strips a 4-byte tail from an
  // empty flush sends) is an empty message and leaves the context intact.
  t.equal(fr.server.decompress(Buffer.alloc(0)).length, 0, 'empty payload: empty message');
  t.equal(fr.server.decompress(fr.client.compress('after')).toString(), 'after', 'the context is intact after it');
});

t.test('interop with public zlib, both ways, with and without context', async (t) => {
  const texts = ['Hello', 'Hello', 'x'.repeat(5000), JSON.stringify({ a: [1, 2, 3], b: 'Hello'.repeat(300) }), randomBytes(3000).toString('base64'), ''];
  // zlib one-shot, no context -> ours.
  for (const s of texts) {
    const z = zlib.deflateRawSync(Buffer.from(s), { finishFlush: Z_SYNC_FLUSH });
    t.ok(z.subarray(-4).equals(TAIL));
    t.equal(pair({ clientNoContextTakeover: true }).server.decompress(z.subarray(0, -4)).toString(), s, `zlib -> ours ${s.length}`);
  }
  // ours -> zlib one-shot.
  for (const s of texts) {
    const ours = pair({ serverNoContextTakeover: true }, { threshold: 0, level: 9 }).server.compress(s);
    t.equal(zlib.inflateRawSync(Buffer.concat([ours, TAIL]), { finishFlush: Z_SYNC_FLUSH }).toString(), s, `ours -> zlib ${s.length}`);
  }
  // With context: a zlib stream flushed per message, both ways.
  const z2o = pair({}, { threshold: 0 });
  const deflater = zlib.createDeflateRaw();
  const inflater = zlib.createInflateRaw();
  for (let round = 0; round < 3; round++) {
    for (const s of texts) {
      const z = await streamFlush(deflater, Buffer.from(s));
      t.equal(z2o.server.decompress(z.subarray(0, -4)).toString(), s, `zlib stream -> ours, round ${round}`);
      const ours = z2o.server.compress(s);
      t.equal((await streamFlush(inflater, Buffer.concat([ours, TAIL]))).toString(), s, `ours -> zlib stream, round ${round}`);
    }
  }
  deflater.close();
  inflater.close();
});

t.test('context takeover: repeated messages shrink; without it they do not', async (t) => {
  // Text that compresses little on its own (random base64), so the gain is the shared window's.
  const msg = JSON.stringify({ token: randomBytes(1200).toString('base64'), user: 'someone' });
  for (const [role, p] of [['server', {}], ['client', {}]]) {
    const codecs = pair(p, { threshold: 0 });
    const me = codecs[role];
    const peer = codecs[role === 'server' ? 'client' : 'server'];
    const a = me.compress(msg);
    const b = me.compress(msg);
    t.ok(b.length * 10 < a.length, `${role}: second ${b.length} bytes, first ${a.length}`);
    t.equal(peer.decompress(a).toString(), msg);
    t.equal(peer.decompress(b).toString(), msg);
  }
  for (const [role, p] of [['server', { serverNoContextTakeover: true }], ['client', { clientNoContextTakeover: true }]]) {
    const codecs = pair(p, { threshold: 0 });
    const me = codecs[role];
    const peer = codecs[role === 'server' ? 'client' : 'server'];
    const a = me.compress(msg);
    const b = me.compress(msg);
    t.equal(b.length, a.length, `${role} no_context_takeover: equal sizes`);
    t.ok(a.equals(b), 'identical bytes');
    t.equal(peer.decompress(a).toString(), msg);
    t.equal(peer.decompress(b).toString(), msg);
    // The other direction still takes over its context.
    const other = role === 'server' ? codecs.client : codecs.server;
    const c = other.compress(msg);
    t.ok(other.compress(msg).length * 10 < c.length, 'the other direction keeps its context');
  }
});

t.test('threshold', async (t) => {
  t.equal(DEFAULT_THRESHOLD, 1024);
  const { server, client } = pair();
  t.equal(server.threshold, 1024);
  t.equal(server.compress('a'.repeat(1023)), null, 'below: null, send it uncompressed');
  const z = server.compress('a'.repeat(1024));
  t.ok(z.length < 20, 'at the threshold: compressed');
  t.equal(client.decompress(z).toString(), 'a'.repeat(1024));
  t.equal(server.compress(Buffer.alloc(10), false).length > 0, true, 'a first fragment is compressed whatever its size');
  t.equal(server.messageOpen, true);
  t.not(server.compress('b', true), null, 'and so is the rest of its message');
  t.equal(server.messageOpen, false);
  const s0 = new PerMessageDeflate(params(), 'server', { threshold: 0 });
  t.not(s0.compress(''), null, 'threshold 0: everything');
});

t.test('window bits: every size round-trips; 8 bits compressed with zlib 9 stays within 256 bytes', async (t) => {
  for (let bits = 8; bits <= 15; bits++) {
    const { server, client } = pair({ serverMaxWindowBits: bits, clientMaxWindowBits: bits }, { threshold: 0 });
    const rnd = prng(bits);
    let bad = 0;
    for (let i = 0; i < 20; i++) {
      const block = randomBytes(50 + Math.floor(rnd() * 600));
      const msg = Buffer.concat(Array.from({ length: 1 + (i % 4) }, () => block));
      if (!client.decompress(server.compress(msg)).equals(msg)) bad++;
      if (!server.decompress(client.compress(msg)).equals(msg)) bad++;
    }
    t.equal(bad, 0, `${bits}-bit windows: 40 messages`);
  }
  // Periods 251..511 tempt a 9-bit window to reach past 256 bytes; zlib's
  // deflate never does (MAX_DIST = 512 - 262). Inflated with an 8-bit window,
  // across messages (our inflater) and within one (zlib with 64-byte output
  // chunks, so that the window and not the output buffer holds history).
  let checked = 0;
  for (const level of [1, 2, 3, 4, 5, 6, 7, 8, 9]) {
    for (const period of [251, 256, 300, 400, 511]) {
      const { server, client } = pair({ serverMaxWindowBits: 8, clientMaxWindowBits: 8 }, { threshold: 0, level });
      const lone = pair({ serverMaxWindowBits: 8, serverNoContextTakeover: true }, { threshold: 0, level }).server;
      const block = randomBytes(period);
      for (let m = 0; m < 6; m++) {
        const msg = Buffer.concat(Array.from({ length: 1 + (m % 3) }, () => block));
        const z = server.compress(msg);
        if (!client.decompress(z).equals(msg)) t.fail(`level ${level} period ${period}: context`);
        const single = zlib.inflateRawSync(Buffer.concat([lone.compress(msg), TAIL]), { windowBits: 8, chunkSize: 64, finishFlush: Z_SYNC_FLUSH });
        if (!single.equals(msg)) t.fail(`level ${level} period ${period}: within a message`);
        checked++;
      }
    }
  }
  t.equal(checked, 270, 'all inflated with an 8-bit window');
  // The control: a 15-bit window with the same input is caught by the 8-bit inflater.
  const block = randomBytes(300);
  const wide = pair({ serverMaxWindowBits: 15 }, { threshold: 0 }).server;
  const narrow = pair({ serverMaxWindowBits: 8 }).client;
  narrow.decompress(wide.compress(block));
  protocolError(t, () => narrow.decompress(wide.compress(block)), 'WS_ERR_DECOMPRESS', 1007, 'a distance past the 8-bit window');
  t.throws(() => zlib.inflateRawSync(Buffer.concat([pair({ serverNoContextTakeover: true }, { threshold: 0 }).server.compress(Buffer.concat([block, block])), TAIL]), { windowBits: 8, chunkSize: 64, finishFlush: Z_SYNC_FLUSH }), /too far back/, 'control within a message');
});

// ---------------------------------------------------------------------------
// Bounded inflation and errors

t.test('a 10 MiB bomb against a 1 MiB limit, and the limits exactly', async (t) => {
  // 10 MiB of packed16, about 10 KiB compressed, against a 1 MiB limit.
  const small = pair({}, { threshold: 0, level: 9 }).client.compress(Buffer.alloc(10 << 20));
  t.ok(small.length < 16 * 1024, `10 MiB of packed16 in ${small.length} bytes`);
  protocolError(t, () => pair({}, { maxMessageLength: 1 << 20 }).server.decompress(small), 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009, '10 MiB against 1 MiB');
  protocolError(t, () => pair().server.decompress(small, 1 << 20), 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009, 'the maxLength argument');
  t.equal(pair().server.decompress(small).length, 10 << 20, 'within the default limit it inflates');
  t.equal(pair({}, { maxMessageLength: 10 << 20 }).server.decompress(small).length, 10 << 20, 'exactly at the limit');
  protocolError(t, () => pair({}, { maxMessageLength: (10 << 20) - 1 }).server.decompress(small), 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009, 'one byte over');
  t.equal(pair({}, { maxMessageLength: 0 }).server.decompress(small, 0).length, 10 << 20, 'no limit on either side');
});

t.test('invalid compressed data: 1007; the context is lost with takeover, not without', async (t) => {
  const { server, client } = pair({}, { threshold: 0 });
  t.equal(server.decompress(client.compress('first')).toString(), 'first');
  const err = protocolError(t, () => server.decompress(hex('ffffffff')), 'WS_ERR_DECOMPRESS', 1007, 'invalid block type');
  t.match(err.message, /invalid compressed data: invalid block type \(Z_DATA_ERROR\)/);
  protocolError(t, () => server.decompress(client.compress('second')), 'WS_ERR_DECOMPRESS', 1007, 'later messages: context lost');
  protocolError(t, () => pair().server.decompress(hex('00 05 00 00 00 48')), 'WS_ERR_DECOMPRESS', 1007, 'stored block length mismatch');
  protocolError(t, () => pair().server.decompress(hex('f2 00 11 00 00')), 'WS_ERR_DECOMPRESS', 1007, 'a back-reference with an empty window');
  const nc = pair({ clientNoContextTakeover: true }, { threshold: 0 });
  protocolError(t, () => nc.server.decompress(hex('ffffffff')), 'WS_ERR_DECOMPRESS', 1007, 'no context takeover');
  t.equal(nc.server.decompress(nc.client.compress('next')).toString(), 'next', 'no context takeover: the next message is fine');
});

// ---------------------------------------------------------------------------
// The Receiver hook

t.test('Receiver: compressed messages through setDecompressor()', async (t) => {
  // Messages are inflated at once while the loop turn's budget of zlib work
  // lasts, in later turns past it (deflate-work.ts): wait for them.
  const delivered = (events, n) => until(() => events.length >= n, 5000, `${n} events`);
  const { server, client } = pair({}, { threshold: 0 });
  const events = [];
  const r = new Receiver(
    { onMessage: (type, data) => events.push([type, data.toString()]), onError: (e) => events.push(['error', e.code, e.closeCode]) },
    { role: 'server' },
  );
  r.setDecompressor(server);
  t.equal(r.rsv1Allowed, true);
  const text = 'compressed κόσμε '.repeat(40);
  r.push(Buffer.concat(frame(Opcode.Text, client.compress(text), { rsv1: true, mask: true })));
  r.push(Buffer.concat(frame(Opcode.Text, client.compress(text), { rsv1: true, mask: true })));
  await delivered(events, 2);
  t.same(events, [['text', text], ['text', text]], 'masked frames with RSV1, context taken over');

  // Fragmented: RSV1 on the first frame only; an uncompressed message in between is fine.
  const whole = client.compress('fragmented ' + text);
  const cut = [0, 3, 40, whole.length];
  const frames = [];
  for (let i = 0; i < 3; i++) {
    frames.push(...frame(i === 0 ? Opcode.Text : Opcode.Continuation, whole.subarray(cut[i], cut[i + 1]), { rsv1: i === 0, fin: i === 2, mask: true }));
  }
  frames.push(...frame(Opcode.Binary, Buffer.from('plain'), { mask: true }));
  events.length = 0;
  r.push(Buffer.concat(frames));
  await delivered(events, 2);
  t.same(events, [['text', 'fragmented ' + text], ['binary', 'plain']]);

  // Fragments compressed one by one (compress(..., false)) arrive as one message too.
  const parts = [client.compress('one ', false), client.compress('two ', false), client.compress('three', true)];
  events.length = 0;
  r.push(Buffer.concat(parts.flatMap((p, i) => frame(i === 0 ? Opcode.Text : Opcode.Continuation, p, { rsv1: i === 0, fin: i === 2, mask: true }))));
  await delivered(events, 1);
  t.same(events, [['text', 'one two three']]);

  // RSV1 on a continuation: 1002.
  const bad = new Receiver({ onError: (e) => events.push(['error', e.code, e.closeCode]) }, { role: 'server', decompressor: pair().server });
  const w = pair({}, { threshold: 0 }).client.compress(text);
  events.length = 0;
  bad.push(Buffer.concat([...frame(Opcode.Text, w.subarray(0, 5), { rsv1: true, fin: false, mask: true }), ...frame(Opcode.Continuation, w.subarray(5), { rsv1: true, mask: true })]));
  await delivered(events, 1);
  t.same(events, [['error', 'WS_ERR_UNEXPECTED_RSV_1', 1002]]);

  // Invalid UTF-8 after inflating: 1007. Corrupt data: 1007.
  const u = new Receiver({ onError: (e) => events.push(['error', e.code, e.closeCode]) }, { role: 'server', decompressor: pair().server });
  events.length = 0;
  u.push(Buffer.concat(frame(Opcode.Text, pair({}, { threshold: 0 }).client.compress(hex('41ff')), { rsv1: true, mask: true })));
  await delivered(events, 1);
  t.same(events, [['error', 'WS_ERR_INVALID_UTF8', 1007]]);
  const c = new Receiver({ onError: (e) => events.push(['error', e.code, e.closeCode]) }, { role: 'server', decompressor: pair().server });
  events.length = 0;
  c.push(Buffer.concat(frame(Opcode.Binary, hex('ffffffff'), { rsv1: true, mask: true })));
  await delivered(events, 1);
  t.same(events, [['error', 'WS_ERR_DECOMPRESS', 1007]]);

  // The Receiver's own limit reaches the codec.
  const l = new Receiver({ onError: (e) => events.push(['error', e.code, e.closeCode]) }, { role: 'server', decompressor: pair().server, maxMessageLength: 1000 });
  events.length = 0;
  l.push(Buffer.concat(frame(Opcode.Binary, pair({}, { threshold: 0 }).client.compress(Buffer.alloc(1001)), { rsv1: true, mask: true })));
  await delivered(events, 1);
  t.same(events, [['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);

  // A client receiver: unmasked frames from the server.
  const cr = new Receiver({ onMessage: (type, data) => events.push([type, data.toString()]), onError: (e) => events.push(['error', e.code]) }, { role: 'client', decompressor: client });
  events.length = 0;
  cr.push(Buffer.concat(frame(Opcode.Text, server.compress(text), { rsv1: true })));
  cr.push(Buffer.concat(frame(Opcode.Text, server.compress(text), { rsv1: true })));
  await delivered(events, 2);
  t.same(events, [['text', text], ['text', text]]);
});

t.test('10,000 messages each way through one pair, context takeover both ways', async (t) => {
  const { server, client } = pair({}, { threshold: 64 });
  const rnd = prng(42);
  const words = ['alpha', 'beta', 'gamma', 'delta', 'κόσμε', '{"x":1}', 'lorem', 'ipsum', '\u{1f600}'];
  const message = () => {
    const kind = rnd();
    if (kind < 0.1) return randomBytes(Math.floor(rnd() * 3000));
    let s = '';
    const n = Math.floor(rnd() * (kind < 0.5 ? 20 : 600));
    for (let i = 0; i < n; i++) s += words[Math.floor(rnd() * words.length)] + ' ';
    return Buffer.from(s);
  };
  let mismatches = 0;
  let compressed = 0;
  let plain = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  for (let i = 0; i < 10000; i++) {
    for (const [from, to] of [[server, client], [client, server]]) {
      const msg = message();
      let got;
      if (rnd() < 0.05) {
        // Fragmented in three.
        const a = msg.subarray(0, msg.length / 3);
        const b = msg.subarray(msg.length / 3, (2 * msg.length) / 3);
        const c = msg.subarray((2 * msg.length) / 3);
        const wire = Buffer.concat([from.compress(a, false), from.compress(b, false), from.compress(c, true)]);
        got = to.decompress(wire);
        compressed++;
      } else {
        const z = from.compress(msg);
        if (z === null) {
          got = msg;
          plain++;
        } else {
          got = to.decompress(z);
          compressed++;
          bytesIn += msg.length;
          bytesOut += z.length;
        }
      }
      if (!got.equals(msg)) mismatches++;
    }
  }
  t.equal(mismatches, 0, `20,000 messages (${compressed} compressed, ${plain} below the threshold), ratio ${(bytesOut / bytesIn).toFixed(3)}`);
  server.close();
  client.close();
});

// ---------------------------------------------------------------------------
// zlib state: lazy, pooled, released

t.test('zlib state is created lazily, pooled without context takeover, released by close()', async (t) => {
  drainZlibPool();
  const base = zlibStats().live;
  t.equal(zlibStats().pooled, 0);
  const { server, client } = pair({}, { threshold: 100 });
  t.equal(zlibStats().live, base, 'no state after construction');
  t.equal(server.compress('small'), null);
  t.equal(zlibStats().live, base, 'none for a message below the threshold');
  const z = server.compress('x'.repeat(200));
  t.equal(zlibStats().live, base + 1, 'a compressor once a message is compressed');
  client.decompress(z);
  t.equal(zlibStats().live, base + 2, 'an inflater once a message is inflated');
  server.compress('x'.repeat(200));
  t.equal(zlibStats().live, base + 2, 'kept with context takeover');
  server.close();
  client.close();
  t.equal(zlibStats().pooled, 2, 'close() returns them (reset) to the pool');
  t.equal(zlibStats().live, base + 2);
  server.close();
  t.throws(() => server.compress('x'.repeat(200)), /closed/, 'compress after close');
  t.throws(() => client.decompress(z), /closed/, 'decompress after close');

  const nc = pair({ serverNoContextTakeover: true, clientNoContextTakeover: true }, { threshold: 0 });
  for (let i = 0; i < 100; i++) {
    nc.client.decompress(nc.server.compress(`message ${i}`));
    nc.server.decompress(nc.client.compress(`reply ${i}`));
  }
  t.equal(zlibStats().live, base + 2, 'no context takeover: one object per direction, reused through the pool');
  t.equal(zlibStats().pooled, 2, 'all back in the pool between messages');
  nc.server.compress('open', false);
  t.equal(zlibStats().pooled, 1, 'a fragmented message holds its compressor');
  nc.server.compress('ed', true);
  t.equal(zlibStats().pooled, 2);
  nc.server.close();
  nc.client.close();
  drainZlibPool();
  t.same(zlibStats(), { live: base, pooled: 0 }, 'drainZlibPool() frees them');
});

t.test('compressLater/decompressLater: small messages at once, large ones over several loop turns, the same bytes', async (t) => {
  drainZlibPool();
  const base = zlibStats().live;
  const { server, client } = pair({}, { threshold: 0 });
  // Small: finished in the caller's stack, like compress()/decompress(), when
  // the turn's budget has not been used up (a fresh turn: the first slice
  // always runs).
  await new Promise((resolve) => setImmediate(resolve));
  const small = Buffer.from('{"hello":"world"}'.repeat(50));
  const z = server.compressLater(small, () => t.fail('no callback for a message finished at once'));
  t.ok(Buffer.isBuffer(z), 'a small message is compressed at once');
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(client.decompressLater(z, 0, () => t.fail('no callback')).equals(small), 'and inflated at once');

  // Large: 8 MiB of a pattern is more than a loop turn's budget of zlib work.
  const big = Buffer.alloc(8 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >>> 12)) & 0xff;
  let compressed = null;
  t.equal(
    server.compressLater(big, (err, payload) => {
      t.equal(err, null);
      compressed = payload;
    }),
    undefined,
    'an 8 MiB message goes on in later turns',
  );
  t.ok(server.compressing, 'compressing');
  t.throws(() => server.compress('x'), /in progress/, 'one compression at a time');
  t.ok(zlibWork().running >= 1, 'a job is running');
  await until(() => compressed !== null, 20000, 'the compression');
  t.notOk(server.compressing);
  t.ok(zlib.inflateRawSync(Buffer.concat([compressed, TAIL]), { finishFlush: Z_SYNC_FLUSH }).equals(big), 'the slices make one DEFLATE stream (public zlib inflates it)');
  let inflated = null;
  t.equal(
    client.decompressLater(compressed, 0, (err, message) => {
      t.equal(err, null);
      inflated = message;
    }),
    undefined,
    'inflated in later turns',
  );
  t.throws(() => client.decompress(z), /in progress/, 'one inflation at a time');
  await until(() => inflated !== null, 20000, 'the inflation');
  t.ok(inflated.equals(big), 'the same 8 MiB back');
  // The context is kept across the slices: the next message refers to it.
  const again = server.compress(small);
  t.ok(client.decompress(again).equals(small), 'context takeover continues after a message in slices');
  server.close();
  client.close();
  drainZlibPool();
  t.same(zlibWork(), { running: 0, queued: 0 });
  t.equal(zlibStats().live, base);
});

t.test('decompressLater: 1009 and 1007 come through done(); close() cancels a job and frees its stream', async (t) => {
  drainZlibPool();
  const base = zlibStats().live;
  // 16 MiB of JSON-like text: packed16 would inflate too fast to need a second turn.
  let text = '';
  for (let i = 0; text.length < 16 << 20; i++) text += `{"id":${i},"name":"item-${i % 977}","v":${(i * 7) % 1000}},`;
  const packed16 = zlib.deflateRawSync(Buffer.from(text.slice(0, 16 << 20)), { finishFlush: Z_SYNC_FLUSH, level: 1 }).subarray(0, -4);
  const codec = () => new PerMessageDeflate(params(), 'server', {});
  const outcome = async (maxLength, data) => {
    const c = codec();
    let result = null;
    const now = c.decompressLater(data, maxLength, (err, m) => (result = { err, m }));
    t.equal(now, undefined, 'in later turns');
    await until(() => result !== null, 20000, 'done()');
    c.close();
    return result;
  };
  const over = await outcome(16 << 20 >> 1, packed16);
  t.ok(over.err instanceof ProtocolError && over.err.closeCode === 1009 && over.err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', '1009 past the limit');
  // 16 MiB of valid data, then a stored block whose LEN and NLEN disagree.
  const corrupt = Buffer.concat([packed16, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]);
  const bad = await outcome(0, corrupt);
  t.ok(bad.err instanceof ProtocolError && bad.err.closeCode === 1007 && bad.err.code === 'WS_ERR_DECOMPRESS', `1007 for corrupt data (${bad.err?.message})`);

  const c = codec();
  t.equal(c.decompressLater(packed16, 0, () => t.fail('no done() after close()')), undefined);
  t.equal(zlibWork().running, 1);
  c.close();
  t.same(zlibWork(), { running: 0, queued: 0 }, 'cancelled');
  await sleep(50);
  drainZlibPool();
  t.equal(zlibStats().live, base, 'its zlib stream freed');
});

t.test('Receiver: what arrives while a message inflates waits, bounded (1013 past a largest message + 64 KiB)', async (t) => {
  let text = '';
  for (let i = 0; text.length < 8 << 20; i++) text += `{"id":${i},"name":"item-${i % 977}","v":${(i * 7) % 1000}},`;
  const { server, client } = pair({}, { threshold: 0 });
  const packed = client.compress(text.slice(0, 8 << 20));
  const events = [];
  const r = new Receiver(
    { onMessage: (type, data) => events.push([type, data.length]), onPing: (d) => events.push(['ping', d.toString()]), onError: (e) => events.push(['error', e.code, e.closeCode]) },
    { role: 'server', decompressor: server, maxMessageLength: 16 << 20 },
  );
  await new Promise((resolve) => setImmediate(resolve)); // a fresh turn's budget
  r.push(Buffer.concat([...frame(Opcode.Binary, packed, { rsv1: true, mask: true }), ...frame(Opcode.Ping, Buffer.from('behind'), { mask: true })]));
  t.ok(r.inflating, 'inflating over several turns');
  t.same(events, [], 'the ping waits behind the message');
  // 16 MiB of a message that arrives meanwhile: kept, unparsed.
  const next = Buffer.concat(frame(Opcode.Binary, Buffer.alloc(16 << 20), { mask: true }));
  r.push(next.subarray(0, 8 << 20));
  r.push(next.subarray(8 << 20, 16 << 20));
  t.same(events, [], 'kept while the backlog holds a largest message and its frames');
  r.push(next.subarray(16 << 20));
  r.push(Buffer.alloc(64 << 10));
  t.same(events, [['error', 'WS_ERR_BACKLOG_OVERFLOW', 1013]], 'past it: 1013, at once');
  t.notOk(r.active);
  await sleep(200);
  t.equal(events.length, 1, 'the inflated message is not delivered after the error');
  server.close();
  client.close();
});

t.test('argument checks', async (t) => {
  t.throws(() => new PerMessageDeflate(null, 'server'), TypeError);
  t.throws(() => new PerMessageDeflate(params(), 'peer'), TypeError);
  t.throws(() => new PerMessageDeflate(params({ serverMaxWindowBits: 7 }), 'server'), RangeError);
  t.throws(() => new PerMessageDeflate(params({ clientMaxWindowBits: 16 }), 'server'), RangeError);
  t.throws(() => new PerMessageDeflate(params(), 'server', { threshold: -1 }), RangeError);
  t.throws(() => new PerMessageDeflate(params(), 'server', { level: 10 }), RangeError);
  t.throws(() => new PerMessageDeflate(params(), 'server', { memLevel: 0 }), RangeError);
  t.throws(() => new PerMessageDeflate(params(), 'server', { maxMessageLength: -1 }), RangeError);
  t.throws(() => new PerMessageDeflate(params(), 'server').compress(42), TypeError);
  t.throws(() => setZlibBackend('other'), TypeError);
  const p = new PerMessageDeflate(params(), 'client', { level: 9, memLevel: 9, threshold: 0 });
  t.equal(p.level, 9);
  t.equal(p.memLevel, 9);
  t.equal(p.maxMessageLength, DEFAULT_MAX_MESSAGE_LENGTH);
  t.same(p.params, params());
  t.ok(Object.isFrozen(p.params));
});

// ---------------------------------------------------------------------------
// The fallback backend (public zlib, context as a preset dictionary)

t.test('backends: the handle backend is chosen on Node 20; the dictionary fallback is correct', async (t) => {
  t.equal(zlibBackend(), 'handle', 'the synchronous handle works here');
  setZlibBackend('dictionary');
  t.teardown(() => setZlibBackend('auto'));
  const ct = pair({}, { threshold: 0, level: 6 });
  t.equal(ct.server.backend, 'dictionary');
  t.equal(ct.server.compress('Hello').toString('hex'), 'f248cdc9c90700');
  const second = ct.server.compress('Hello');
  t.equal(ct.client.decompress(hex('f248cdc9c90700')).toString(), 'Hello');
  t.equal(ct.client.decompress(second).toString(), 'Hello', `second message ${second.toString('hex')}`);
  t.equal(ct.client.decompress(hex('f200110000')).toString(), 'Hello', 'the RFC bytes decode with the dictionary');
  protocolError(t, () => pair({}, { maxMessageLength: 1 << 20 }).server.decompress(pair({}, { threshold: 0, level: 9 }).client.compress(Buffer.alloc(10 << 20))), 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009, 'dictionary: the bomb');
  protocolError(t, () => pair().server.decompress(hex('ffffffff')), 'WS_ERR_DECOMPRESS', 1007, 'dictionary: corrupt data');
  // Mixed: one end on each backend, context takeover, 8-bit windows, 1,000 messages each way.
  const dict = pair({ serverMaxWindowBits: 8, clientMaxWindowBits: 9 }, { threshold: 0 });
  setZlibBackend('auto');
  const handle = pair({ serverMaxWindowBits: 8, clientMaxWindowBits: 9 }, { threshold: 0 });
  t.equal(handle.server.backend, 'handle');
  const rnd = prng(7);
  let bad = 0;
  for (let i = 0; i < 1000; i++) {
    const msg = Buffer.from(`${'abcdefgh'.repeat(Math.floor(rnd() * 50))}${i}${randomBytes(Math.floor(rnd() * 40)).toString('hex')}`);
    if (!handle.client.decompress(dict.server.compress(msg)).equals(msg)) bad++;
    if (!dict.server.decompress(handle.client.compress(msg)).equals(msg)) bad++;
    if (!dict.client.decompress(handle.server.compress(msg)).equals(msg)) bad++;
    if (!handle.server.decompress(dict.client.compress(msg)).equals(msg)) bad++;
  }
  t.equal(bad, 0, 'handle and dictionary backends interoperate');
});
