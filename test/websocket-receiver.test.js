// The frame parser: RFC 6455 §5.7 fixtures and every §5 violation with its
// exact close code and error code. Every input is fed whole, byte by byte
// and in seeded random chunkings, and each chunk is overwritten right after
// push() (the engine reuses its receive buffer): results must be identical,
// which also proves that nothing delivered aliases the input.
import t from 'tap';
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { Receiver, DEFAULT_MAX_MESSAGE_LENGTH } from '../dist/websocket/receiver.js';
import { ProtocolError } from '../dist/errors.js';

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KEY = hex('37fa213d');

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

/** Cut points: whole, 1-byte (for inputs up to `maxOneByte`), random chunkings with varied sizes. */
function chunkings(length, { seeds = 6, maxOneByte = 4096 } = {}) {
  const out = [{ name: 'whole', cuts: [length] }];
  if (length <= maxOneByte) {
    const ones = [];
    for (let i = 1; i <= length; i++) ones.push(i);
    out.push({ name: '1-byte', cuts: ones });
  }
  for (let s = 1; s <= seeds; s++) {
    const rnd = prng(s * 7919);
    const maxStep = [3, 17, 200, 5000][s % 4];
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

/** A frame built independently of sender.js. `len7`/`ext` override the length encoding. */
function frame({ fin = true, rsv = 0, opcode, payload = Buffer.alloc(0), key = null, len = undefined, lenForm = undefined }) {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const n = len ?? data.length;
  const form = lenForm ?? (n < 126 ? 7 : n < 65536 ? 16 : 64);
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = key ? 0x80 : 0;
  if (form === 7) head.push(m | n);
  else if (form === 16) head.push(m | 126, n >>> 8, n & 0xff);
  else {
    const hi = Math.floor(n / 2 ** 32);
    head.push(m | 127, hi >>> 24, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  }
  const body = Buffer.from(data);
  if (key) {
    head.push(...key);
    for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  }
  return Buffer.concat([Buffer.from(head), body]);
}
const masked = (f) => frame({ key: KEY, ...f });

function summary(b) {
  return b.length <= 64 ? b.toString('hex') : `${b.length}:${createHash('sha1').update(b).digest('hex').slice(0, 16)}`;
}

/**
 * Feeds `bytes` cut at `cuts` into a new Receiver; every chunk is a fresh
 * copy, overwritten with 0xEE after push() returns. Returns the events with
 * payloads summarised only at the end (so aliasing the chunk would show),
 * and how many pushes returned false.
 */
function feed(bytes, cuts, options = { role: 'server' }, handlerOverrides = handlersNone) {
  const raw = [];
  const handlers = {
    onMessage: (type, data) => raw.push(['message', type, data]),
    onPing: (data) => raw.push(['ping', data]),
    onPong: (data) => raw.push(['pong', data]),
    onClose: (code, reason) => raw.push(['close', code, reason]),
    onError: (err) => raw.push(['error', err.code, err.closeCode, err instanceof ProtocolError]),
    ...handlerOverrides(raw),
  };
  const r = new Receiver(handlers, options);
  let start = 0;
  let inactive = 0;
  for (const end of cuts) {
    const chunk = Buffer.from(bytes.subarray(start, end));
    if (!r.push(chunk)) inactive++;
    chunk.fill(0xee);
    start = end;
  }
  const events = raw.map((e) => e.map((x) => (Buffer.isBuffer(x) ? summary(x) : x)));
  return { events, active: r.active, inactive };
}
function handlersNone() {
  return {};
}

/** Asserts that every chunking of `bytes` gives `expected` events. */
function expectEvents(t, name, bytes, expected, options = { role: 'server' }, opts = {}) {
  for (const { name: how, cuts } of chunkings(bytes.length, opts)) {
    const { events } = feed(bytes, cuts, options, opts.handlers ?? handlersNone);
    t.same(events, expected, `${name} (${how})`);
  }
}

const err = (code, closeCode) => ['error', code, closeCode, true];

t.test('RFC 6455 §5.7 examples', async (t) => {
  const client = { role: 'client' };
  expectEvents(t, 'single-frame unmasked text', hex('810548656c6c6f'), [['message', 'text', '48656c6c6f']], client);
  expectEvents(t, 'single-frame masked text', hex('818537fa213d7f9f4d5158'), [['message', 'text', '48656c6c6f']]);
  expectEvents(t, 'fragmented unmasked text', hex('010348656c 80026c6f'), [['message', 'text', '48656c6c6f']], client);
  expectEvents(t, 'unmasked ping', hex('890548656c6c6f'), [['ping', '48656c6c6f']], client);
  expectEvents(t, 'masked pong', hex('8a8537fa213d7f9f4d5158'), [['pong', '48656c6c6f']]);
  const b256 = Buffer.alloc(256, 0xab);
  expectEvents(t, '256-byte binary, 16-bit length', Buffer.concat([hex('827e0100'), b256]), [['message', 'binary', summary(b256)]], client);
  const b64k = Buffer.alloc(65536);
  for (let i = 0; i < b64k.length; i++) b64k[i] = (i * 31) & 0xff;
  expectEvents(t, '64 KiB binary, 64-bit length', Buffer.concat([hex('827f0000000000010000'), b64k]), [['message', 'binary', summary(b64k)]], client, {
    maxOneByte: 70000,
  });
});

t.test('length encodings at their boundaries, masked, across chunkings', async (t) => {
  for (const n of [0, 1, 3, 4, 5, 31, 32, 33, 125, 126, 127, 1000, 65535, 65536, 70001]) {
    const payload = Buffer.alloc(n);
    for (let i = 0; i < n; i++) payload[i] = (i * 7 + n) & 0xff;
    const bytes = masked({ opcode: 2, payload });
    expectEvents(t, `${n} bytes`, bytes, [['message', 'binary', summary(payload)]], { role: 'server' }, { maxOneByte: 2000, seeds: 3 });
  }
  // Non-minimal length encodings are accepted (§5.2 obliges the sender only).
  expectEvents(t, '5 bytes in a 16-bit length', masked({ opcode: 1, payload: 'Hello', lenForm: 16 }), [['message', 'text', '48656c6c6f']]);
  expectEvents(t, '5 bytes in a 64-bit length', masked({ opcode: 1, payload: 'Hello', lenForm: 64 }), [['message', 'text', '48656c6c6f']]);
});

t.test('unmasking: random payloads, keys and chunkings', async (t) => {
  const rnd = prng(99);
  let bad = 0;
  for (let n = 0; n < 200; n++) {
    const len = n < 150 ? Math.floor(rnd() * 300) : Math.floor(rnd() * 20000);
    const payload = Buffer.alloc(len);
    for (let i = 0; i < len; i++) payload[i] = Math.floor(rnd() * 256);
    const key = Buffer.from([0, 0, 0, 0].map(() => Math.floor(rnd() * 256)));
    // Several frames in a row so payloads start at every alignment.
    const bytes = Buffer.concat([frame({ opcode: 2, payload: payload.subarray(0, n % 7), key }), frame({ opcode: 2, payload, key })]);
    const expected = [
      ['message', 'binary', summary(payload.subarray(0, n % 7))],
      ['message', 'binary', summary(payload)],
    ];
    for (const { cuts } of chunkings(bytes.length, { seeds: 3, maxOneByte: 400 })) {
      const { events } = feed(bytes, cuts);
      if (JSON.stringify(events) !== JSON.stringify(expected)) bad++;
    }
  }
  t.equal(bad, 0, '200 payloads, every chunking unmasked correctly');
});

t.test('fragmentation, control frames between fragments, empty messages', async (t) => {
  const bytes = Buffer.concat([
    masked({ fin: false, opcode: 1, payload: 'Hel' }),
    masked({ opcode: 9, payload: 'p1' }),
    masked({ fin: false, opcode: 0, payload: '' }),
    masked({ opcode: 10, payload: '' }),
    masked({ opcode: 0, payload: 'lo' }),
    masked({ opcode: 1, payload: '' }),
    masked({ opcode: 2, payload: '' }),
    masked({ fin: false, opcode: 2, payload: '' }),
    masked({ opcode: 0, payload: '' }),
    masked({ fin: false, opcode: 2, payload: hex('0102') }),
    masked({ opcode: 0, payload: hex('03') }),
  ]);
  expectEvents(t, 'mixed', bytes, [
    ['ping', '7031'],
    ['pong', ''],
    ['message', 'text', '48656c6c6f'],
    ['message', 'text', ''],
    ['message', 'binary', ''],
    ['message', 'binary', ''],
    ['message', 'binary', '010203'],
  ]);
});

t.test('65,536 one-byte fragments of one message are accepted with default settings', async (t) => {
  const count = 65536;
  const frames = [];
  for (let i = 0; i < count; i++) frames.push(masked({ fin: i === count - 1, opcode: i === 0 ? 1 : 0, payload: 'a' }));
  const bytes = Buffer.concat(frames);
  const expected = [['message', 'text', summary(Buffer.alloc(count, 'a'))]];
  const started = process.hrtime.bigint();
  t.same(feed(bytes, [bytes.length]).events, expected, 'whole');
  const cuts = [];
  for (let p = 4093; p < bytes.length; p += 4093) cuts.push(p);
  cuts.push(bytes.length);
  t.same(feed(bytes, cuts).events, expected, 'in 4093-byte chunks');
  t.same(feed(bytes, chunkings(bytes.length, { seeds: 1, maxOneByte: 0 })[1].cuts).events, expected, 'random chunks');
  t.comment(`3 runs of ${bytes.length} bytes: ${Number(process.hrtime.bigint() - started) / 1e6} ms`);
  // Frame-level delivery sees each fragment.
  let frames2 = 0;
  let lastFin = false;
  const r = new Receiver(
    {
      onDataFrame: (type, fin, data) => {
        frames2++;
        lastFin = fin;
        if (type !== 'text' || data.length !== 1) t.fail('unexpected frame');
      },
      onError: (e) => t.fail(e.message),
    },
    { role: 'server' },
  );
  r.push(bytes);
  t.equal(frames2, count, 'onDataFrame called per fragment');
  t.equal(lastFin, true);
});

t.test('close frames', async (t) => {
  expectEvents(t, 'empty close', masked({ opcode: 8 }), [['close', 1005, '']]);
  expectEvents(t, 'close 1000', masked({ opcode: 8, payload: hex('03e8') }), [['close', 1000, '']]);
  expectEvents(t, 'close 1001 with reason', masked({ opcode: 8, payload: Buffer.concat([hex('03e9'), Buffer.from('bye ✓')]) }), [['close', 1001, 'bye ✓']]);
  const reason = 'r'.repeat(123);
  expectEvents(t, 'close with a 123-byte reason', masked({ opcode: 8, payload: Buffer.concat([hex('0bb8'), Buffer.from(reason)]) }), [['close', 3000, reason]]);
  for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
    const { events } = feed(masked({ opcode: 8, payload: Buffer.from([code >> 8, code & 0xff]) }), [4 + 2 + 2]);
    t.same(events, [['close', code, '']], `valid code ${code}`);
  }
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
    expectEvents(t, `invalid code ${code}`, masked({ opcode: 8, payload: Buffer.from([code >> 8, code & 0xff]) }), [err('WS_ERR_INVALID_CLOSE_CODE', 1002)], undefined, { seeds: 1 });
  }
  expectEvents(t, '1-byte close payload', masked({ opcode: 8, payload: hex('03') }), [err('WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 1002)]);
  expectEvents(t, 'close reason not UTF-8', masked({ opcode: 8, payload: hex('03e8 cebae1bdb9 eda080') }), [err('WS_ERR_INVALID_UTF8', 1007)]);
  expectEvents(t, 'close reason cut inside a character', masked({ opcode: 8, payload: hex('03e8 41e282') }), [err('WS_ERR_INVALID_UTF8', 1007)]);

  // Nothing after a close frame is parsed; push() reports the receiver inactive.
  const bytes = Buffer.concat([masked({ opcode: 8, payload: hex('03e8') }), masked({ opcode: 1, payload: 'late' }), hex('ff')]);
  for (const { name, cuts } of chunkings(bytes.length)) {
    const r = feed(bytes, cuts);
    t.same(r.events, [['close', 1000, '']], `${name}: data after close ignored`);
    t.equal(r.active, false);
  }
  // A close frame between fragments ends everything; the open message is dropped.
  expectEvents(t, 'close between fragments', Buffer.concat([masked({ fin: false, opcode: 1, payload: 'a' }), masked({ opcode: 8 }), masked({ opcode: 0, payload: 'b' })]), [
    ['close', 1005, ''],
  ]);
});

t.test('protocol violations: exact closeCode and code, reported once, nothing after', async (t) => {
  const cases = [
    ['server receives an unmasked frame', frame({ opcode: 1, payload: 'Hello' }), 'WS_ERR_EXPECTED_MASK', 1002],
    ['client receives a masked frame', masked({ opcode: 1, payload: 'Hello' }), 'WS_ERR_UNEXPECTED_MASK', 1002, { role: 'client' }],
    ['RSV1 without an extension', masked({ rsv: 4, opcode: 1, payload: 'x' }), 'WS_ERR_UNEXPECTED_RSV_1', 1002],
    ['RSV2', masked({ rsv: 2, opcode: 1, payload: 'x' }), 'WS_ERR_UNEXPECTED_RSV_2_3', 1002],
    ['RSV3', masked({ rsv: 1, opcode: 2, payload: 'x' }), 'WS_ERR_UNEXPECTED_RSV_2_3', 1002],
    ['RSV2 on a ping', masked({ rsv: 2, opcode: 9 }), 'WS_ERR_UNEXPECTED_RSV_2_3', 1002],
    ['RSV1 on a ping', masked({ rsv: 4, opcode: 9 }), 'WS_ERR_UNEXPECTED_RSV_1', 1002],
    ['fragmented ping', masked({ fin: false, opcode: 9, payload: 'x' }), 'WS_ERR_EXPECTED_FIN', 1002],
    ['fragmented close', masked({ fin: false, opcode: 8 }), 'WS_ERR_EXPECTED_FIN', 1002],
    ['ping of 126 bytes', masked({ opcode: 9, payload: Buffer.alloc(126) }), 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 1002],
    ['pong with a 16-bit length of 5', masked({ opcode: 10, payload: 'Hello', lenForm: 16 }), 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 1002],
    ['close with a 64-bit length', masked({ opcode: 8, payload: hex('03e8'), lenForm: 64 }), 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 1002],
    ['continuation without a message', masked({ opcode: 0, payload: 'x' }), 'WS_ERR_UNEXPECTED_CONTINUATION', 1002],
    ['final continuation without a message', Buffer.concat([masked({ opcode: 1, payload: 'a' }), masked({ opcode: 0, payload: 'x' })]), 'WS_ERR_UNEXPECTED_CONTINUATION', 1002, undefined, [['message', 'text', '61']]],
    ['text while a message is open', Buffer.concat([masked({ fin: false, opcode: 1, payload: 'a' }), masked({ opcode: 1, payload: 'b' })]), 'WS_ERR_EXPECTED_CONTINUATION', 1002],
    ['binary while a message is open', Buffer.concat([masked({ fin: false, opcode: 2, payload: 'a' }), masked({ fin: false, opcode: 2, payload: 'b' })]), 'WS_ERR_EXPECTED_CONTINUATION', 1002],
    ['64-bit length with the top bit set', hex('82ff 8000000000000001'), 'WS_ERR_INVALID_PAYLOAD_LENGTH', 1002],
    ['64-bit length of 2^53', hex('82ff 0020000000000000'), 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009],
    ['text not UTF-8', masked({ opcode: 1, payload: hex('48c0af') }), 'WS_ERR_INVALID_UTF8', 1007],
    ['text ends inside a character', masked({ opcode: 1, payload: hex('48e282') }), 'WS_ERR_INVALID_UTF8', 1007],
    ['fragmented text ends inside a character', Buffer.concat([masked({ fin: false, opcode: 1, payload: hex('48') }), masked({ opcode: 0, payload: hex('e282') })]), 'WS_ERR_INVALID_UTF8', 1007],
    ['surrogate split across fragments', Buffer.concat([masked({ fin: false, opcode: 1, payload: hex('ed') }), masked({ opcode: 0, payload: hex('a080') })]), 'WS_ERR_INVALID_UTF8', 1007],
  ];
  for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) cases.push([`reserved opcode ${op}`, masked({ opcode: op }), 'WS_ERR_INVALID_OPCODE', 1002]);
  for (const [name, bytes, code, closeCode, options, before = []] of cases) {
    // Trailing valid bytes must not produce events after the error.
    const input = Buffer.concat([bytes, masked({ opcode: 9, payload: 'after' })]);
    for (const { name: how, cuts } of chunkings(input.length, { seeds: 3 })) {
      const r = feed(input, cuts, options ?? { role: 'server' });
      t.same(r.events, [...before, err(code, closeCode)], `${name} (${how})`);
      t.equal(r.active, false, `${name} (${how}): inactive`);
    }
  }
});

t.test('message length limit (1009): from the header, before the payload arrives', async (t) => {
  const events = [];
  const handlers = { onMessage: (type, d) => events.push(['message', d.length]), onError: (e) => events.push(['error', e.code, e.closeCode]) };
  // maxMessageLength 100: a masked binary header announcing 101 bytes. Only the 4 header bytes are pushed.
  let r = new Receiver(handlers, { role: 'server', maxMessageLength: 100 });
  t.equal(r.push(hex('82fe0065')), false);
  t.same(events.splice(0), [['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]], 'reported from the header');
  // Exactly the limit is fine.
  r = new Receiver(handlers, { role: 'server', maxMessageLength: 100 });
  r.push(masked({ opcode: 2, payload: Buffer.alloc(100) }));
  t.same(events.splice(0), [['message', 100]], '100 bytes accepted');
  // Default limit: 16 MiB + 1 announced by a 64-bit length, nothing else sent.
  t.equal(DEFAULT_MAX_MESSAGE_LENGTH, 16 * 1024 * 1024);
  r = new Receiver(handlers, { role: 'server' });
  t.equal(r.push(hex('82ff 0000000001000001')), false);
  t.same(events.splice(0), [['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]], 'default limit from the header');
  r = new Receiver(handlers, { role: 'server' });
  t.equal(r.push(hex('82ff 0000000001000000')), true, 'exactly 16 MiB announced: waiting for it');
  t.same(events, []);
  // The limit counts the whole message across fragments: 60 + 41 > 100 fails at the second header.
  r = new Receiver(handlers, { role: 'server', maxMessageLength: 100 });
  r.push(masked({ fin: false, opcode: 2, payload: Buffer.alloc(60) }));
  r.push(masked({ opcode: 9 }).subarray(0, 2));
  r.push(masked({ opcode: 9 }).subarray(2));
  t.same(events, [], 'first fragment and a ping: no error');
  t.equal(r.push(hex('80fe0029')), false);
  t.same(events.splice(0), [['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]], 'second fragment header exceeds the total');
  r = new Receiver(handlers, { role: 'server', maxMessageLength: 100 });
  r.push(Buffer.concat([masked({ fin: false, opcode: 2, payload: Buffer.alloc(60) }), masked({ opcode: 0, payload: Buffer.alloc(40) })]));
  t.same(events.splice(0), [['message', 100]], '60 + 40 accepted');
  // Control frames do not count.
  r = new Receiver(handlers, { role: 'server', maxMessageLength: 1 });
  r.push(Buffer.concat([masked({ opcode: 9, payload: Buffer.alloc(125) }), masked({ opcode: 2, payload: 'a' })]));
  t.same(events.splice(0), [['message', 1]]);
  // 0: no limit (up to the largest Buffer).
  r = new Receiver(handlers, { role: 'server', maxMessageLength: 0 });
  t.equal(r.push(hex('82ff 0000000002000000')), true, '32 MiB announced without a limit: fine');
  r = new Receiver(handlers, { role: 'server', maxMessageLength: 0 });
  t.equal(r.push(hex('82ff 0000010000000000')), false, '1 TiB is past any Buffer');
  t.same(events.splice(0), [['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
  // Frame-level delivery enforces the same limit across frames.
  const frameEvents = [];
  r = new Receiver({ onDataFrame: (type, fin, d) => frameEvents.push([fin, d.length]), onError: (e) => frameEvents.push([e.code]) }, { role: 'server', maxMessageLength: 10 });
  r.push(Buffer.concat([masked({ fin: false, opcode: 2, payload: Buffer.alloc(6) }), masked({ opcode: 0, payload: Buffer.alloc(5) })]));
  t.same(frameEvents, [[false, 6], ['WS_ERR_UNSUPPORTED_MESSAGE_LENGTH']]);
  t.throws(() => new Receiver(handlers, { role: 'server', maxMessageLength: -1 }), TypeError);
  t.throws(() => new Receiver(handlers, { role: 'server', maxMessageLength: 1.5 }), TypeError);
});

t.test('UTF-8 fails fast inside a frame, and splits are accepted', async (t) => {
  const events = [];
  const handlers = { onMessage: (type, d) => events.push(['message', type, d.toString()]), onError: (e) => events.push(['error', e.code, e.closeCode]) };
  // A 1000-byte text frame; the first chunk carries the header and 10 payload bytes, the 6th invalid.
  const payload = Buffer.alloc(1000, 0x61);
  payload[5] = 0xff;
  const bytes = masked({ opcode: 1, payload });
  let r = new Receiver(handlers, { role: 'server' });
  t.equal(r.push(bytes.subarray(0, 8 + 10)), false, 'first chunk');
  t.same(events.splice(0), [['error', 'WS_ERR_INVALID_UTF8', 1007]], 'reported before the other 990 bytes arrive');
  t.equal(r.push(bytes.subarray(18)), false);
  t.same(events, [], 'nothing more');
  // A truncated sequence that is already provably invalid (F4 90: above U+10FFFF).
  payload.fill(0x61);
  payload[3] = 0xf4;
  payload[4] = 0x90;
  r = new Receiver(handlers, { role: 'server' });
  r.push(masked({ opcode: 1, payload }).subarray(0, 8 + 5));
  t.same(events.splice(0), [['error', 'WS_ERR_INVALID_UTF8', 1007]], 'F4 90 rejected at once');
  // Invalid bytes in the first fragment: reported before the next fragment exists.
  r = new Receiver(handlers, { role: 'server' });
  r.push(masked({ fin: false, opcode: 1, payload: hex('61eda0') }));
  t.same(events.splice(0), [['error', 'WS_ERR_INVALID_UTF8', 1007]], 'surrogate in the first fragment');
  // Binary is never checked.
  r = new Receiver(handlers, { role: 'server' });
  r.push(masked({ opcode: 2, payload: hex('ff') }));
  t.same(events.splice(0), [['message', 'binary', '\ufffd']]);

  // A valid character split across fragments and chunks: € (e2 82 ac) and 😀 (f0 9f 98 80).
  const split = Buffer.concat([
    masked({ fin: false, opcode: 1, payload: hex('41e2') }),
    masked({ opcode: 9, payload: 'x' }),
    masked({ fin: false, opcode: 0, payload: hex('82') }),
    masked({ fin: false, opcode: 0, payload: hex('acf0') }),
    masked({ fin: false, opcode: 0, payload: hex('9f98') }),
    masked({ opcode: 0, payload: hex('8042') }),
  ]);
  expectEvents(t, 'split characters', split, [
    ['ping', '78'],
    ['message', 'text', Buffer.from('A€😀B').toString('hex')],
  ]);
  // The same across fragments with frame-level delivery.
  const frames = [];
  r = new Receiver({ onDataFrame: (type, fin, d) => frames.push([type, fin, d.toString('hex')]), onError: (e) => frames.push([e.code]) }, { role: 'server' });
  for (let i = 0; i < split.length; i++) r.push(split.subarray(i, i + 1));
  t.same(frames, [
    ['text', false, '41e2'],
    ['text', false, '82'],
    ['text', false, 'acf0'],
    ['text', false, '9f98'],
    ['text', true, '8042'],
  ]);
  // Long valid text in random chunks (exercises the native path).
  const long = Buffer.from('κόσμε 😀 '.repeat(2000));
  expectEvents(t, 'long text', masked({ opcode: 1, payload: long }), [['message', 'text', summary(long)]], undefined, { seeds: 4, maxOneByte: 0 });
});

t.test('frame-level delivery (onDataFrame)', async (t) => {
  const bytes = Buffer.concat([
    masked({ fin: false, opcode: 1, payload: 'Hel' }),
    masked({ opcode: 9, payload: 'p' }),
    masked({ opcode: 0, payload: 'lo' }),
    masked({ opcode: 2, payload: hex('00ff') }),
    masked({ fin: false, opcode: 2, payload: '' }),
    masked({ opcode: 0, payload: hex('01') }),
  ]);
  const handlers = (raw) => ({ onDataFrame: (type, fin, data) => raw.push(['frame', type, fin, data]) });
  expectEvents(
    t,
    'frames',
    bytes,
    [
      ['frame', 'text', false, '48656c'],
      ['ping', '70'],
      ['frame', 'text', true, '6c6f'],
      ['frame', 'binary', true, '00ff'],
      ['frame', 'binary', false, ''],
      ['frame', 'binary', true, '01'],
    ],
    undefined,
    { handlers },
  );
});

t.test('decompressor hook: RSV1 messages (permessage-deflate shape)', async (t) => {
  const decompressor = {
    calls: [],
    decompress(data, maxLength) {
      this.calls.push([data.length, maxLength]);
      const out = inflateRawSync(data);
      if (maxLength !== 0 && out.length > maxLength) throw new ProtocolError('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009, 'too big');
      return out;
    },
  };
  const text = Buffer.from('compressed κόσμε '.repeat(20));
  const z = deflateRawSync(text);
  const one = masked({ rsv: 4, opcode: 1, payload: z });
  const handlers = () => ({});
  expectEvents(t, 'one compressed frame', one, [['message', 'text', summary(text)]], { role: 'server', decompressor }, { handlers });
  t.same(decompressor.calls.at(-1), [z.length, DEFAULT_MAX_MESSAGE_LENGTH], 'called with the whole payload and the limit');
  const fragmented = Buffer.concat([
    masked({ fin: false, rsv: 4, opcode: 1, payload: z.subarray(0, 5) }),
    masked({ opcode: 10 }),
    masked({ opcode: 0, payload: z.subarray(5) }),
    masked({ opcode: 1, payload: 'plain' }),
  ]);
  expectEvents(t, 'fragmented compressed, then uncompressed', fragmented, [
    ['pong', ''],
    ['message', 'text', summary(text)],
    ['message', 'text', '706c61696e'],
  ], { role: 'server', decompressor });
  expectEvents(t, 'RSV1 on a continuation', Buffer.concat([masked({ fin: false, rsv: 4, opcode: 1, payload: z.subarray(0, 5) }), masked({ rsv: 4, opcode: 0, payload: z.subarray(5) })]), [err('WS_ERR_UNEXPECTED_RSV_1', 1002)], { role: 'server', decompressor });
  expectEvents(t, 'RSV1 on a ping', masked({ rsv: 4, opcode: 9 }), [err('WS_ERR_UNEXPECTED_RSV_1', 1002)], { role: 'server', decompressor });
  expectEvents(t, 'invalid UTF-8 after inflating', masked({ rsv: 4, opcode: 1, payload: deflateRawSync(hex('41ff')) }), [err('WS_ERR_INVALID_UTF8', 1007)], { role: 'server', decompressor });
  expectEvents(t, 'corrupt data', masked({ rsv: 4, opcode: 2, payload: hex('ffffffff') }), [err('WS_ERR_DECOMPRESS', 1007)], { role: 'server', decompressor });
  expectEvents(t, 'inflated past the limit', masked({ rsv: 4, opcode: 2, payload: deflateRawSync(Buffer.alloc(1000)) }), [err('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009)], {
    role: 'server',
    decompressor,
    maxMessageLength: 999,
  });
  // In frame mode a compressed message arrives as one final frame.
  const frames = [];
  const r = new Receiver({ onDataFrame: (type, fin, d) => frames.push([type, fin, d.toString()]), onError: (e) => frames.push([e.code]) }, { role: 'server', decompressor });
  r.push(fragmented);
  t.same(frames, [
    ['text', true, text.toString()],
    ['text', true, 'plain'],
  ]);
  // setDecompressor(null): RSV1 is an error again.
  const r2 = new Receiver({ onError: (e) => frames.push([e.code]) }, { role: 'server', decompressor });
  t.equal(r2.rsv1Allowed, true);
  r2.setDecompressor(null);
  t.equal(r2.rsv1Allowed, false);
  r2.push(one);
  t.same(frames.at(-1), ['WS_ERR_UNEXPECTED_RSV_1']);
  t.throws(() => r2.setDecompressor({}), TypeError);
});

t.test('owner control: stop() from a handler, throwing handlers, argument checks', async (t) => {
  const bytes = Buffer.concat([masked({ opcode: 1, payload: 'one' }), masked({ opcode: 1, payload: 'two' })]);
  const seen = [];
  const r = new Receiver(
    {
      onMessage(type, d) {
        seen.push(d.toString());
        r.stop();
      },
      onError: () => t.fail('no error'),
    },
    { role: 'server' },
  );
  t.equal(r.push(bytes), false, 'push() returns false once stopped');
  t.same(seen, ['one'], 'nothing parsed after stop()');
  t.equal(r.push(bytes), false);
  t.same(seen, ['one']);

  const r2 = new Receiver(
    {
      onMessage() {
        throw new Error('boom');
      },
      onError: () => t.fail('no error'),
    },
    { role: 'server' },
  );
  t.throws(() => r2.push(bytes), /boom/, 'the exception propagates');
  t.equal(r2.active, false, 'and the receiver stops');

  // Handlers are called as methods of the handlers object.
  const owner = {
    got: null,
    onMessage(type, d) {
      this.got = d.toString();
    },
    onError() {},
  };
  new Receiver(owner, { role: 'server' }).push(bytes.subarray(0, 9));
  t.equal(owner.got, 'one');

  t.throws(() => new Receiver({}, { role: 'server' }), TypeError);
  t.throws(() => new Receiver({ onError() {} }, { role: 'peer' }), TypeError);
  t.throws(() => new Receiver({ onError() {} }), TypeError);
});

t.test('delivered payloads are exact-size copies that the receiver no longer touches', async (t) => {
  const got = [];
  const r = new Receiver({ onMessage: (type, d) => got.push(d), onError: () => t.fail('no error') }, { role: 'server' });
  const chunk = Buffer.concat([masked({ opcode: 2, payload: Buffer.alloc(5000, 7) }), masked({ opcode: 2, payload: Buffer.alloc(300, 9) })]);
  r.push(chunk);
  chunk.fill(0);
  r.push(masked({ opcode: 2, payload: Buffer.alloc(5000, 1) }));
  t.equal(got[0].length, 5000);
  t.equal(got[0].buffer.byteLength, 5000, 'a one-frame message owns a buffer of exactly its size');
  t.ok(got[0].every((b) => b === 7), 'first message intact after the chunk was overwritten and more was parsed');
  t.ok(got[1].every((b) => b === 9), 'second message intact');
});
