// RFC 6455 conformance of the WebSocket server, case by case, over real
// loopback sockets. The peer is Node's own `net` socket: it performs the
// opening handshake, writes hand-built frames masked with a fixed key (so
// every byte is known), and records every byte the server sends, so the
// assertions are on the exact bytes of the wire and on what the server's
// callbacks received (onClose counted: exactly once per connection).
//
// Covered: framing (7-, 16- and 64-bit lengths), frames split byte by byte
// and frames coalesced in one write, ping/pong, reserved bits and opcodes,
// fragmentation, UTF-8 (including fail-fast inside a frame), close codes,
// message length limits, and "a failure first delivers everything written
// before it".
import t from 'tap';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Engine, Upgrader, ProtocolError, CloseError } from '../dist/index.js';
import { frame } from '../dist/websocket/sender.js';

const MiB = 1024 * 1024;

// The whole file is bounded; each wait inside it is bounded much more tightly (until()).
t.setTimeout(60000);
import { sleep, until, hex, SAMPLE_KEY, KEY, maskBytes, cframe, cclose, sframe, sclose, parseFrames, upgradeRequest, Peer, startServer, closedOnce } from './helpers/ws-peer.js';

// ---------------------------------------------------------------------------

// The default server: echo, default limits.
const server = await startServer(t);

/**
 * Opens a connection, sends `bytes`, and expects exactly the close frame with
 * `closeCode` on the wire, then the server's FIN; onClose gets a
 * ProtocolError with that closeCode (and `code`), the close handler is not called.
 */
async function expectFailure(t, bytes, { closeCode, code, s = server, slowly = false }) {
  const peer = await Peer.open(t, s.addr);
  const rec = await s.rec(peer);
  if (slowly) await peer.writeSlowly(bytes);
  else peer.write(bytes);
  await peer.waitEnd();
  t.equal(hex(peer.rx), hex(sclose(closeCode)), `close ${closeCode} on the wire, then FIN`);
  const c = await closedOnce(t, rec);
  t.type(c.err, ProtocolError, 'onClose: ProtocolError');
  t.equal(c.err?.closeCode, closeCode, 'onClose: closeCode');
  if (code !== undefined) t.equal(c.err?.code, code, 'onClose: code');
  t.same(rec.handler, [], 'the close handler is not called');
  t.same(rec.messages, [], 'no message delivered');
  t.match(c.info, { code: closeCode, wasClean: false, initiator: 'local' }, 'closeInfo');
  return { peer, rec, c };
}

/** Opens a connection, sends a close frame and ends when the server has answered; returns what it saw. */
async function peerCloses(t, bytes, s = server) {
  const peer = await Peer.open(t, s.addr);
  const rec = await s.rec(peer);
  peer.write(bytes);
  await peer.waitEnd();
  const c = await closedOnce(t, rec);
  return { peer, rec, c };
}

t.test('the hand-built client frames are what the library frames with the same key', async (t) => {
  for (const [op, payload] of [[1, ''], [1, 'hello'], [2, Buffer.alloc(126, 7)], [2, Buffer.alloc(70000, 9)], [9, 'p']]) {
    t.equal(hex(cframe(op, payload)), hex(Buffer.concat(frame(op, payload, { mask: KEY }))), `opcode ${op}, ${payload.length} bytes`);
    t.equal(hex(sframe(op, payload)), hex(Buffer.concat(frame(op, payload))), `unmasked, opcode ${op}, ${payload.length} bytes`);
  }
});

// ---------------------------------------------------------------------------
// Framing

function textOf(n) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = 0x61 + ((i * 7 + (i >> 5)) % 26);
  return b;
}
function binaryOf(n) {
  const b = Buffer.allocUnsafe(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const SIZES = [
  [0, '00'],
  [1, '01'],
  [125, '7d'],
  [126, '7e007e'],
  [65535, '7effff'],
  [65536, '7f0000000000010000'],
  [MiB, '7f0000000000100000'],
];

for (const [type, opcode, make] of [['text', 1, textOf], ['binary', 2, binaryOf]]) {
  t.test(`framing: ${type} echo of 0 to 1 MiB bytes, exact server headers (FIN, unmasked, 7/16/64-bit lengths)`, async (t) => {
    const peer = await Peer.open(t, server.addr);
    const rec = await server.rec(peer);
    let at = 0;
    for (const [n, lenHex] of SIZES) {
      const payload = make(n);
      peer.write(cframe(opcode, payload));
      const headerHex = (0x80 | opcode).toString(16) + lenHex;
      const want = headerHex.length / 2 + n;
      await peer.waitRx(at + want, 5000);
      const got = peer.rx.subarray(at, at + want);
      t.equal(hex(got.subarray(0, headerHex.length / 2)), headerHex, `${n} bytes: header ${headerHex}`);
      t.ok(got.subarray(headerHex.length / 2).equals(payload), `${n} bytes: payload echoed intact`);
      const m = rec.messages.at(-1);
      t.equal(m.type, type);
      t.equal(m.data.length, n);
      at += want;
    }
    t.equal(peer.rxLen, at, 'nothing else on the wire');
    t.equal(rec.messages.length, SIZES.length);
    peer.write(cclose(1000));
    await peer.waitEnd();
    t.equal(hex(peer.rx.subarray(at)), hex(sclose(1000)));
    const c = await closedOnce(t, rec);
    t.equal(c.err, null);
  });
}

t.test('framing: every byte of several frames written separately still parses', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  const small = 'Hello, byte by byte';
  const mid = binaryOf(200); // 16-bit length
  const big = binaryOf(70000); // 64-bit length: header and key byte by byte, payload at once
  await peer.writeSlowly(cframe(1, small));
  await peer.writeSlowly(cframe(2, mid), 3, 1);
  const bigFrame = cframe(2, big);
  await peer.writeSlowly(bigFrame.subarray(0, 14), 1, 2);
  peer.write(bigFrame.subarray(14, 1000));
  await sleep(5);
  peer.write(bigFrame.subarray(1000));
  await peer.writeSlowly(cframe(9, 'ping!'), 1, 2);
  const want = Buffer.concat([sframe(1, small), sframe(2, mid), sframe(2, big), sframe(0xa, 'ping!')]);
  await peer.waitRx(want.length);
  t.ok(peer.rx.equals(want), 'three echoes and the pong, exactly');
  t.same(rec.messages.map((m) => [m.type, m.data.length]), [['text', small.length], ['binary', 200], ['binary', 70000]]);
  t.equal(rec.messages[0].data.toString(), small);
  await peer.writeSlowly(cclose(1000, 'slow bye'), 1, 2);
  await peer.waitEnd();
  t.equal(hex(peer.rx.subarray(want.length)), hex(sclose(1000)));
  const c = await closedOnce(t, rec);
  t.equal(c.err, null);
  t.same(rec.handler, [[1000, 'slow bye']]);
});

t.test('framing: several frames in one TCP write', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  peer.write(
    Buffer.concat([
      cframe(1, 'one'),
      cframe(2, Buffer.from([1, 2, 3])),
      cframe(9, 'p'),
      cframe(1, 'tw', { fin: false }),
      cframe(0, 'o', { fin: true }),
      cframe(0xa, 'unsolicited'),
      cframe(1, ''),
    ]),
  );
  const want = Buffer.concat([sframe(1, 'one'), sframe(2, [1, 2, 3]), sframe(0xa, 'p'), sframe(1, 'two'), sframe(1, '')]);
  await peer.waitRx(want.length);
  await sleep(20);
  t.equal(hex(peer.rx), hex(want));
  t.same(rec.messages.map((m) => [m.type, m.data.toString()]), [['text', 'one'], ['binary', '\x01\x02\x03'], ['text', 'two'], ['text', '']]);
  peer.sock.end();
  const c = await closedOnce(t, rec);
  t.equal(c.err?.code, 'NETLOOP_EOF');
});

// ---------------------------------------------------------------------------
// Ping and pong

t.test('ping: answered with a pong carrying the same payload (0, 5 and 125 bytes)', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  const p125 = binaryOf(125);
  peer.write(Buffer.concat([cframe(9, ''), cframe(9, 'hello'), cframe(9, p125)]));
  const want = Buffer.concat([Buffer.from('8a00', 'hex'), Buffer.from('8a0568656c6c6f', 'hex'), Buffer.from([0x8a, 0x7d]), p125]);
  await peer.waitRx(want.length);
  await sleep(20);
  t.equal(hex(peer.rx), hex(want), '8A 00, 8A 05 "hello", 8A 7D + the 125 bytes');
  t.equal(rec.closes.length, 0, 'still open');
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

t.test('pong: an unsolicited pong from the peer is accepted silently', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  peer.write(cframe(0xa, 'pong payload'));
  peer.write(cframe(1, 'after'));
  await peer.waitRx(sframe(1, 'after').length);
  await sleep(20);
  t.equal(hex(peer.rx), hex(sframe(1, 'after')), 'nothing answers the pong; the next message is echoed');
  t.same(rec.pongs.map(String), ['pong payload'], 'the pong handler saw it');
  t.equal(rec.closes.length, 0);
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

t.test('ping: 126 bytes of payload is a protocol error (1002)', async (t) => {
  await expectFailure(t, cframe(9, binaryOf(126)), { closeCode: 1002, code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH' });
});

// ---------------------------------------------------------------------------
// Reserved bits and opcodes

for (const [name, rsv, code] of [['RSV1', 0x40, 'WS_ERR_UNEXPECTED_RSV_1'], ['RSV2', 0x20, 'WS_ERR_UNEXPECTED_RSV_2_3'], ['RSV3', 0x10, 'WS_ERR_UNEXPECTED_RSV_2_3']]) {
  t.test(`reserved bits: ${name} set without an extension -> 1002 (88 02 03 EA)`, async (t) => {
    await expectFailure(t, cframe(1, 'rsv', { rsv }), { closeCode: 1002, code });
  });
}

t.test('reserved opcodes 0x3-0x7 and 0xB-0xF -> 1002', async (t) => {
  for (const op of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    await t.test(`opcode 0x${op.toString(16)}`, async (t) => {
      await expectFailure(t, cframe(op, 'x'), { closeCode: 1002, code: 'WS_ERR_INVALID_OPCODE' });
    });
  }
});

// ---------------------------------------------------------------------------
// Fragmentation

t.test('fragmentation: a text message in 3 frames is delivered as one message', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  peer.write(cframe(1, 'frag', { fin: false }));
  await sleep(10);
  peer.write(cframe(0, 'ment', { fin: false }));
  await sleep(10);
  peer.write(cframe(0, 'ed', { fin: true }));
  await peer.waitRx(sframe(1, 'fragmented').length);
  t.equal(hex(peer.rx), hex(sframe(1, 'fragmented')), 'one unfragmented echo: 81 0A "fragmented"');
  t.same(rec.messages.map((m) => [m.type, m.data.toString()]), [['text', 'fragmented']]);
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

t.test('fragmentation: pings between the fragments are answered at once', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  peer.write(cframe(2, [1, 2], { fin: false }));
  peer.write(cframe(9, 'a'));
  await peer.waitRx(3);
  t.equal(hex(peer.rx), '8a0161', 'the pong comes before the message has ended');
  peer.write(Buffer.concat([cframe(0, [3], { fin: false }), cframe(9, 'b'), cframe(0, [4, 5], { fin: true })]));
  const want = Buffer.concat([sframe(0xa, 'a'), sframe(0xa, 'b'), sframe(2, [1, 2, 3, 4, 5])]);
  await peer.waitRx(want.length);
  t.equal(hex(peer.rx), hex(want));
  t.equal(rec.messages.length, 1);
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

t.test('fragmentation: a continuation frame without a message to continue -> 1002', async (t) => {
  await expectFailure(t, cframe(0, 'orphan', { fin: true }), { closeCode: 1002, code: 'WS_ERR_UNEXPECTED_CONTINUATION' });
  await expectFailure(t, cframe(0, 'orphan', { fin: false }), { closeCode: 1002, code: 'WS_ERR_UNEXPECTED_CONTINUATION' });
});

t.test('fragmentation: a new data frame while a message is open -> 1002', async (t) => {
  await expectFailure(t, Buffer.concat([cframe(1, 'open', { fin: false }), cframe(1, 'again')]), { closeCode: 1002, code: 'WS_ERR_EXPECTED_CONTINUATION' });
  await expectFailure(t, Buffer.concat([cframe(2, 'open', { fin: false }), cframe(0, 'more', { fin: false }), cframe(2, 'again', { fin: false })]), {
    closeCode: 1002,
    code: 'WS_ERR_EXPECTED_CONTINUATION',
  });
});

t.test('fragmentation: a fragmented control frame -> 1002', async (t) => {
  await expectFailure(t, cframe(9, 'ping', { fin: false }), { closeCode: 1002, code: 'WS_ERR_EXPECTED_FIN' });
  await expectFailure(t, cframe(0xa, 'pong', { fin: false }), { closeCode: 1002, code: 'WS_ERR_EXPECTED_FIN' });
  await expectFailure(t, cframe(8, [0x03, 0xe8], { fin: false }), { closeCode: 1002, code: 'WS_ERR_EXPECTED_FIN' });
});

// ---------------------------------------------------------------------------
// UTF-8

t.test('UTF-8: invalid text -> 1007 (88 02 03 EF)', async (t) => {
  for (const [name, bytes] of [
    ['0xFF', [0x61, 0xff, 0x62]],
    ['overlong "/"', [0xc0, 0xaf]],
    ['UTF-16 surrogate', [0xed, 0xa0, 0x80]],
    ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['lone continuation byte', [0x80]],
    ['truncated at the end of the message', [0x61, 0xe2, 0x82]],
  ]) {
    await t.test(name, async (t) => {
      await expectFailure(t, cframe(1, bytes), { closeCode: 1007, code: 'WS_ERR_INVALID_UTF8' });
    });
  }
  await t.test('invalid in the last fragment of a message', async (t) => {
    await expectFailure(t, Buffer.concat([cframe(1, 'ok', { fin: false }), cframe(0, [0xff], { fin: true })]), { closeCode: 1007, code: 'WS_ERR_INVALID_UTF8' });
  });
  await t.test('a message ending inside a sequence begun in an earlier fragment', async (t) => {
    await expectFailure(t, Buffer.concat([cframe(1, [0x61, 0xf0, 0x9f], { fin: false }), cframe(0, [0x98], { fin: true })]), {
      closeCode: 1007,
      code: 'WS_ERR_INVALID_UTF8',
    });
  });
});

t.test('UTF-8 fail-fast: 1007 arrives after the first 100 bytes of a 1 MiB text frame', async (t) => {
  const first = textOf(100);
  first[50] = 0xff;
  // The header announces 1 MiB; only 100 payload bytes follow, and the peer sends nothing more.
  const { peer } = await expectFailure(t, cframe(1, first, { len: MiB }), { closeCode: 1007, code: 'WS_ERR_INVALID_UTF8' });
  t.ok(peer.ended || peer.closed);
});

t.test('UTF-8 fail-fast inside a 64 KiB frame sent byte by byte: no byte after the bad one is needed', async (t) => {
  const first = textOf(10);
  first[9] = 0xc0; // 0xC0 can never start a sequence: invalid as soon as it is seen
  await expectFailure(t, cframe(1, first, { len: 65536 }), { closeCode: 1007, code: 'WS_ERR_INVALID_UTF8', slowly: true });
});

t.test('UTF-8: a valid multi-byte sequence split across fragments and across TCP writes is accepted', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  // "a€b😀c": € = E2 82 AC, 😀 = F0 9F 98 80
  const text = 'a€b😀c';
  // Fragments: [a E2 82] [AC b F0] [9F 98 80 c]
  peer.write(cframe(1, [0x61, 0xe2, 0x82], { fin: false }));
  peer.write(cframe(0, [0xac, 0x62, 0xf0], { fin: false }));
  peer.write(cframe(0, [0x9f, 0x98, 0x80, 0x63], { fin: true }));
  await peer.waitRx(sframe(1, text).length);
  t.equal(hex(peer.rx), hex(sframe(1, text)), 'echoed whole');
  // One frame, split inside the 4-byte sequence across TCP writes.
  const f = cframe(1, '😀😀');
  const split = 2 + 4 + 2; // header, key, then 2 bytes of the first emoji
  peer.write(f.subarray(0, split));
  await sleep(20);
  peer.write(f.subarray(split, split + 3));
  await sleep(20);
  peer.write(f.subarray(split + 3));
  const want = Buffer.concat([sframe(1, text), sframe(1, '😀😀')]);
  await peer.waitRx(want.length);
  t.equal(hex(peer.rx), hex(want));
  t.same(rec.messages.map((m) => m.data.toString()), [text, '😀😀']);
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

t.test('UTF-8: an invalid close reason -> 1007', async (t) => {
  await expectFailure(t, cclose(1000, Buffer.from([0x62, 0x79, 0xff])), { closeCode: 1007, code: 'WS_ERR_INVALID_UTF8' });
  await expectFailure(t, cclose(1001, Buffer.from([0xe2, 0x82])), { closeCode: 1007, code: 'WS_ERR_INVALID_UTF8' });
});

// ---------------------------------------------------------------------------
// Close codes

t.test('close: 1000 with a reason is echoed (88 02 03 E8), then FIN; handler (1000, reason); onClose null', async (t) => {
  const { peer, rec, c } = await peerCloses(t, cclose(1000, 'see you'));
  t.equal(hex(peer.rx), '880203e8');
  t.ok(peer.ended, 'FIN after the echo');
  t.same(rec.handler, [[1000, 'see you']]);
  t.equal(c.err, null);
  t.same(c.info, { code: 1000, reason: 'see you', wasClean: true, initiator: 'peer', error: null });
});

t.test('close: 1001, 1011, 1014, 3000, 4999 are echoed; onClose CloseError with closeCode and reason', async (t) => {
  for (const code of [1001, 1011, 1014, 3000, 4999]) {
    await t.test(String(code), async (t) => {
      const { peer, rec, c } = await peerCloses(t, cclose(code, `r${code}`));
      t.equal(hex(peer.rx), hex(sclose(code)), 'the code echoed');
      t.same(rec.handler, [[code, `r${code}`]]);
      t.type(c.err, CloseError);
      t.equal(c.err?.closeCode, code);
      t.equal(c.err?.reason, `r${code}`);
      t.same(c.info, { code, reason: `r${code}`, wasClean: true, initiator: 'peer', error: c.err });
    });
  }
});

t.test('close: an empty close frame is echoed empty (88 00); CloseError 1005', async (t) => {
  const { peer, rec, c } = await peerCloses(t, cclose(undefined));
  t.equal(hex(peer.rx), '8800');
  t.same(rec.handler, [[1005, '']]);
  t.type(c.err, CloseError);
  t.equal(c.err?.closeCode, 1005);
  t.equal(c.err?.reason, '');
  t.match(c.info, { code: 1005, reason: '', wasClean: true, initiator: 'peer' });
});

t.test('close: the largest close payload (125 bytes: code + 123-byte reason) is accepted; 126 bytes -> 1002', async (t) => {
  const reason = 'r'.repeat(123);
  const { peer, rec, c } = await peerCloses(t, cclose(1000, reason));
  t.equal(hex(peer.rx), '880203e8');
  t.same(rec.handler, [[1000, reason]]);
  t.equal(c.err, null);
  await expectFailure(t, cclose(1000, reason + 'r'), { closeCode: 1002, code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH' });
});

t.test('close: a 1-byte close payload -> 1002', async (t) => {
  await expectFailure(t, cframe(8, [0x03]), { closeCode: 1002, code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH' });
});

t.test('close: invalid codes 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000 -> 1002', async (t) => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
    await t.test(String(code), async (t) => {
      await expectFailure(t, cclose(code, 'x'), { closeCode: 1002, code: 'WS_ERR_INVALID_CLOSE_CODE' });
    });
  }
});

// ---------------------------------------------------------------------------
// Limits

t.test('limits: a message of exactly 16 MiB passes with the defaults', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  const payload = binaryOf(16 * MiB);
  peer.write(cframe(2, payload));
  await peer.waitRx(10 + 16 * MiB, 10000);
  t.equal(hex(peer.rx.subarray(0, 10)), '827f0000000001000000');
  t.ok(peer.rx.subarray(10).equals(payload), '16 MiB echoed intact');
  t.equal(rec.messages[0].data.length, 16 * MiB);
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

t.test('limits: 16 MiB + 1 gets 1009 (88 02 03 F1) from the header alone', async (t) => {
  // Only the header and the mask key are sent: the limit is enforced before any payload arrives.
  await expectFailure(t, cframe(2, '', { len: 16 * MiB + 1 }), { closeCode: 1009, code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' });
  await expectFailure(t, cframe(1, '', { len: 2 ** 40 }), { closeCode: 1009, code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' });
});

t.test('limits: a 64-bit length with the top bit set -> 1002', async (t) => {
  const bad = Buffer.concat([Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1]), KEY]);
  await expectFailure(t, bad, { closeCode: 1002, code: 'WS_ERR_INVALID_PAYLOAD_LENGTH' });
});

t.test('limits: messageLengthLimit 1000', async (t) => {
  const small = await startServer(t, { messageLengthLimit: 1000 });
  await t.test('1000 bytes pass', async (t) => {
    const peer = await Peer.open(t, small.addr);
    const rec = await small.rec(peer);
    peer.write(cframe(2, binaryOf(1000)));
    peer.write(Buffer.concat([cframe(1, textOf(600), { fin: false }), cframe(0, textOf(400), { fin: true })]));
    const want = Buffer.concat([sframe(2, binaryOf(1000)), sframe(1, Buffer.concat([textOf(600), textOf(400)]))]);
    await peer.waitRx(want.length);
    t.ok(peer.rx.equals(want), 'both echoed');
    peer.write(cclose(1000));
    await peer.waitEnd();
    t.equal((await closedOnce(t, rec)).err, null);
  });
  await t.test('1001 bytes -> 1009', async (t) => {
    await expectFailure(t, cframe(2, binaryOf(1001)), { s: small, closeCode: 1009, code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' });
  });
  await t.test('1001 bytes across fragments (600 + 401) -> 1009 at the second header', async (t) => {
    await expectFailure(t, Buffer.concat([cframe(1, textOf(600), { fin: false }), cframe(0, '', { fin: true, len: 401 })]), {
      s: small,
      closeCode: 1009,
      code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
    });
  });
  await t.test('control frames do not count against the limit', async (t) => {
    const peer = await Peer.open(t, small.addr);
    const rec = await small.rec(peer);
    peer.write(Buffer.concat([cframe(2, binaryOf(900), { fin: false }), cframe(9, binaryOf(125)), cframe(0, binaryOf(100), { fin: true })]));
    const want = Buffer.concat([Buffer.from([0x8a, 0x7d]), binaryOf(125), sframe(2, Buffer.concat([binaryOf(900), binaryOf(100)]))]);
    await peer.waitRx(want.length);
    t.ok(peer.rx.equals(want));
    peer.write(cclose(1000));
    await peer.waitEnd();
    t.equal((await closedOnce(t, rec)).err, null);
  });
});

t.test('limits: 65,536 one-byte fragments of one message pass with the default settings', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  const n = 65536;
  const parts = [];
  const payload = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    payload[i] = (i * 31) & 0xff;
    parts.push(cframe(i === 0 ? 2 : 0, [payload[i]], { fin: i === n - 1 }));
  }
  peer.write(Buffer.concat(parts));
  await peer.waitRx(10 + n, 10000);
  t.equal(hex(peer.rx.subarray(0, 10)), '827f0000000000010000', 'one 64 KiB message: 64-bit length');
  t.ok(peer.rx.subarray(10).equals(payload), 'bytes in order');
  t.equal(rec.messages.length, 1);
  peer.write(cclose(1000));
  await peer.waitEnd();
  t.equal((await closedOnce(t, rec)).err, null);
});

// ---------------------------------------------------------------------------
// Order around a failure

t.test('a failure first delivers everything written before it: 3 echoes, then 1002, then FIN', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  peer.write(
    Buffer.concat([
      cframe(1, 'first'),
      cframe(1, 'second'),
      cframe(2, binaryOf(300)),
      cframe(1, 'bad', { rsv: 0x20 }),
      cframe(1, 'after the violation'),
      cframe(9, 'ignored ping'),
    ]),
  );
  await peer.waitEnd();
  const want = Buffer.concat([sframe(1, 'first'), sframe(1, 'second'), sframe(2, binaryOf(300)), sclose(1002)]);
  t.equal(hex(peer.rx), hex(want), 'echoes in order, then 88 02 03 EA, and nothing after it');
  t.ok(peer.ended, 'then FIN');
  t.equal(rec.messages.length, 3, 'nothing after the violation is delivered');
  const c = await closedOnce(t, rec);
  t.type(c.err, ProtocolError);
  t.equal(c.err?.closeCode, 1002);
});

t.test('data after the peer\'s close frame is ignored', async (t) => {
  const peer = await Peer.open(t, server.addr);
  const rec = await server.rec(peer);
  peer.write(Buffer.concat([cframe(1, 'before'), cclose(1000, 'bye'), cframe(1, 'after'), cframe(9, 'ping after'), Buffer.from('garbage')]));
  await peer.waitEnd();
  t.equal(hex(peer.rx), hex(Buffer.concat([sframe(1, 'before'), sclose(1000)])));
  t.same(rec.messages.map((m) => m.data.toString()), ['before']);
  t.same(rec.handler, [[1000, 'bye']]);
  t.equal((await closedOnce(t, rec)).err, null);
});

// ---------------------------------------------------------------------------

t.test('every connection of the default server: one onOpen, exactly one onClose', async (t) => {
  await until(() => server.recs.every((r) => r.closes.length > 0), 5000, 'every onClose');
  await sleep(20);
  t.ok(server.recs.length > 40, `${server.recs.length} connections`);
  t.same(
    server.recs.filter((r) => r.closes.length !== 1).map((r) => r.closes.length),
    [],
    'onClose exactly once per connection',
  );
  t.equal(server.engine.stats().online, 0, 'no connection left online');
});
