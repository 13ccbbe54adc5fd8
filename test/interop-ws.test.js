// Interop with the npm `ws` client (with bufferutil), over loopback: data in
// both directions (UTF-8 text, binary, empty, 4 MiB), fragmentation both
// ways, subprotocol negotiation, ping/pong both ways, and every close path
// of the close reporting contract (DESIGN.md, non-blocking column), checked
// on both ends: the server's close handler, onClose err (class, code,
// message), closeInfo, and the code/reason/errors the ws client saw.
import t from 'tap';
import WebSocket from 'ws';
import { CloseError, EOFError, ProtocolError, SysError, TLSTruncationError } from '../dist/index.js';
import { testTls } from './helpers/tls-env.js';
import { MiB, assertError, pattern, sleep, startServer, until, utf8Text, within } from './helpers/interop-server.js';

const OPTS = { timeout: 15000 };

/** Opens a ws client and records everything it sees. */
async function connect(url, protocols, options) {
  const ws = new WebSocket(url, protocols, options);
  const cl = { ws, messages: [], pings: [], pongs: [], errors: [] };
  ws.on('message', (data, isBinary) => cl.messages.push({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary }));
  ws.on('ping', (data) => cl.pings.push(Buffer.from(data)));
  ws.on('pong', (data) => cl.pongs.push(Buffer.from(data)));
  ws.on('error', (err) => cl.errors.push(err));
  let closes = 0;
  cl.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      closes++;
      resolve({ code, reason: reason.toString('utf8') });
    });
  });
  cl.closeCount = () => closes;
  await within(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    }),
    5000,
    'ws client open',
  );
  return cl;
}

const clientClosed = (cl, ms = 5000) => within(cl.closed, ms, 'ws client close event');

async function nextMessage(cl, n, ms = 5000) {
  await until(() => cl.messages.length >= n, ms, `ws client message #${n}`);
  return cl.messages[n - 1];
}

t.test('text, UTF-8 of every width, echoed exactly', OPTS, async (t) => {
  let offered;
  const srv = await startServer(t, {
    upgrader: {
      checkOrigin(_origin, head) {
        offered = head.get('sec-websocket-extensions');
        return true;
      },
    },
  });
  const cl = await connect(srv.url);
  t.match(offered, /^permessage-deflate\b/, `ws offered permessage-deflate (${offered})`);
  t.equal(cl.ws.extensions, '', 'and the server declined it');
  const texts = ['hello', 'héllo wörld — 日本語 — 🎉🚀', utf8Text(1000), '\u{10FFFF}\u0000\u007f\u0080\u07ff\u0800\uffff'];
  for (const s of texts) cl.ws.send(s);
  await until(() => cl.messages.length === texts.length, 5000, 'all echoes');
  const rec = srv.conns[0];
  t.same(
    rec.messages.map((m) => [m.type, m.data.toString('utf8')]),
    texts.map((s) => ['text', s]),
    'the server got each message as text, byte-exact',
  );
  t.same(
    cl.messages.map((m) => [m.isBinary, m.data.toString('utf8')]),
    texts.map((s) => [false, s]),
    'ws got each echo as text',
  );
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('binary and empty messages', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const bin = pattern(1000, 7);
  cl.ws.send(bin);
  cl.ws.send('');
  cl.ws.send(Buffer.alloc(0));
  cl.ws.send(Buffer.from([0, 255, 0]));
  await until(() => cl.messages.length === 4, 5000, 'four echoes');
  t.same(
    srv.conns[0].messages.map((m) => [m.type, m.data.toString('hex')]),
    [
      ['binary', bin.toString('hex')],
      ['text', ''],
      ['binary', ''],
      ['binary', '00ff00'],
    ],
    'the server got binary, empty text, empty binary, binary',
  );
  t.same(
    cl.messages.map((m) => [m.isBinary, m.data.toString('hex')]),
    [
      [true, bin.toString('hex')],
      [false, ''],
      [true, ''],
      [true, '00ff00'],
    ],
    'ws got the same types and bytes back',
  );
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('4 MiB messages, binary and text, both ways', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const big = pattern(4 * MiB, 11);
  const bigText = utf8Text(4 * MiB - (4 * MiB) % 10);
  cl.ws.send(big);
  cl.ws.send(bigText);
  await until(() => cl.messages.length === 2, 10000, 'two 4 MiB echoes');
  const [m1, m2] = srv.conns[0].messages;
  t.equal(m1.type, 'binary');
  t.equal(m1.data.length, big.length, 'server: binary length');
  t.ok(m1.data.equals(big), 'server: 4 MiB binary byte-exact');
  t.equal(m2.type, 'text');
  t.ok(m2.data.equals(Buffer.from(bigText)), 'server: 4 MiB text byte-exact');
  t.equal(cl.messages[0].isBinary, true);
  t.ok(cl.messages[0].data.equals(big), 'ws: 4 MiB binary echo byte-exact');
  t.equal(cl.messages[1].isBinary, false);
  t.ok(cl.messages[1].data.equals(Buffer.from(bigText)), 'ws: 4 MiB text echo byte-exact');
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('a message fragmented by ws arrives as one message', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const ws = cl.ws;
  // Text in three fragments, a 2-byte character split between two of them,
  // and a ping between fragments (control frames may be interleaved).
  const e = Buffer.from('é');
  ws.send(Buffer.concat([Buffer.from('frag-'), e.subarray(0, 1)]), { binary: false, fin: false });
  ws.send(e.subarray(1), { binary: false, fin: false });
  ws.ping('mid');
  ws.send(Buffer.from('-end'), { binary: false, fin: true });
  // Binary in two fragments, the last one empty.
  ws.send(Buffer.from([1, 2, 3]), { binary: true, fin: false });
  ws.send(Buffer.alloc(0), { binary: true, fin: true });
  await until(() => cl.messages.length === 2 && cl.pongs.length === 1, 5000, 'two echoes and a pong');
  t.same(
    srv.conns[0].messages.map((m) => [m.type, m.data.toString('hex')]),
    [
      ['text', Buffer.from('frag-é-end').toString('hex')],
      ['binary', '010203'],
    ],
    'onMessage called once per fragmented message, with the whole message',
  );
  t.same(cl.pongs.map(String), ['mid'], 'the ping between fragments was answered');
  t.same(
    cl.messages.map((m) => [m.isBinary, m.data.toString('hex')]),
    [
      [false, Buffer.from('frag-é-end').toString('hex')],
      [true, '010203'],
    ],
  );
  ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('server-side fragmentation with writeFrame arrives at ws as one message', OPTS, async (t) => {
  const big = pattern(300 * 1024, 3);
  const srv = await startServer(t, {
    onMessage(c, type, data) {
      if (data.toString() !== 'go') return;
      const e = Buffer.from('€'); // 3 bytes, split across two frames
      c.writeFrame('text', 'part one, ', false);
      c.writeFrame('text', Buffer.concat([Buffer.from('part two '), e.subarray(0, 2)]), false);
      c.writeFrame('text', Buffer.concat([e.subarray(2), Buffer.from(', end')]), true);
      c.writeFrame('binary', big.subarray(0, 100 * 1024), false);
      c.writeFrame('binary', big.subarray(100 * 1024, 200 * 1024), false);
      c.writeFrame('binary', big.subarray(200 * 1024), false);
      c.writeFrame('binary', Buffer.alloc(0), true);
      c.writeMessage('text', 'after');
    },
  });
  const cl = await connect(srv.url);
  cl.ws.send('go');
  await nextMessage(cl, 3);
  await sleep(20);
  t.equal(cl.messages.length, 3, 'ws got exactly three messages');
  t.same([cl.messages[0].isBinary, cl.messages[0].data.toString()], [false, 'part one, part two €, end']);
  t.equal(cl.messages[1].isBinary, true);
  t.ok(cl.messages[1].data.equals(big), '300 KiB binary in four frames, byte-exact');
  t.same([cl.messages[2].isBinary, cl.messages[2].data.toString()], [false, 'after']);
  t.same(cl.errors, [], 'no client error');
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('subprotocol negotiation: the server preference wins', OPTS, async (t) => {
  const srv = await startServer(t);
  const a = await connect(srv.url, ['superchat', 'chat']);
  t.equal(a.ws.protocol, 'chat', "ws: offered ['superchat','chat'], the server prefers 'chat'");
  const b = await connect(srv.url, ['superchat', 'other']);
  t.equal(b.ws.protocol, 'superchat');
  const c = await connect(srv.url);
  t.equal(c.ws.protocol, '', 'nothing offered, nothing chosen');
  await srv.conn(2);
  t.same(
    srv.conns.map((r) => r.c.subprotocol),
    ['chat', 'superchat', ''],
    'c.subprotocol on the server',
  );
  t.same(
    srv.conns.map((r) => r.c.path),
    ['/ws', '/ws', '/ws'],
  );
  // Offering only unknown protocols: the server answers without the header;
  // ws (per RFC 6455 §4.1) then fails the connection with "Server sent no subprotocol".
  const ws = new WebSocket(srv.url, ['nope']);
  const err = await within(new Promise((resolve) => ws.once('error', resolve)), 5000, 'ws error');
  t.match(err.message, /Server sent no subprotocol/, 'ws fails the handshake itself');
  await within(new Promise((resolve) => ws.once('close', resolve)), 5000, 'ws close');
  for (const x of [a, b, c]) x.ws.close(1000);
  await Promise.all([a, b, c].map((x) => clientClosed(x)));
  await srv.finish(t);
});

t.test('ping/pong both ways', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.ping('from ws');
  cl.ws.ping();
  await until(() => cl.pongs.length === 2, 5000, 'two pongs at ws');
  t.same(cl.pongs.map(String), ['from ws', ''], 'the server answered each ping with its payload');
  rec.c.ping('from server');
  rec.c.ping(Buffer.alloc(125, 0x61));
  await until(() => cl.pings.length === 2 && rec.pongs.length === 2, 5000, 'pings at ws and pongs back at the server');
  t.same(cl.pings.map(String), ['from server', 'a'.repeat(125)], "ws emitted 'ping' with each payload");
  t.same(rec.pongs.map(String), ['from server', 'a'.repeat(125)], "ws's automatic pongs reached the server's pong handler");
  t.same(rec.messages, [], 'no control frame surfaced as a message');
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

// ---------------------------------------------------------------------------
// Close paths

t.test("client close(1000, 'bye')", OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.close(1000, 'bye');
  const got = await clientClosed(cl);
  t.equal(got.code, 1000, 'ws: the server echoed 1000');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1000, 'bye']], 'close handler (1000, bye)');
  t.same(rec.closeInfo, { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer', error: null });
  t.same(cl.errors, []);
  await srv.finish(t);
});

t.test("client close(4000, 'x')", OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.close(4000, 'x');
  const got = await clientClosed(cl);
  t.equal(got.code, 4000, 'ws: the server echoed 4000');
  const err = await srv.closed(rec);
  assertError(t, err, CloseError, 'NETLOOP_WS_CLOSE', 'websocket: close 4000 x', 'onClose err');
  t.equal(err.closeCode, 4000);
  t.equal(err.reason, 'x');
  t.same(rec.closeFrames, [[4000, 'x']]);
  t.same(rec.closeInfo, { code: 4000, reason: 'x', wasClean: true, initiator: 'peer', error: err });
  t.equal(rec.closeInfo.error, err, 'closeInfo.error is the err onClose got');
  await srv.finish(t);
});

t.test('client close() without a code: 1005', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.close();
  const got = await clientClosed(cl);
  t.same(got, { code: 1005, reason: '' }, 'ws: an empty close was echoed as an empty close');
  const err = await srv.closed(rec);
  assertError(t, err, CloseError, 'NETLOOP_WS_CLOSE', 'websocket: close 1005', 'onClose err');
  t.equal(err.closeCode, 1005);
  t.same(rec.closeFrames, [[1005, '']]);
  t.same(rec.closeInfo, { code: 1005, reason: '', wasClean: true, initiator: 'peer', error: err });
  await srv.finish(t);
});

t.test("server writeClose(1000, 'done')", OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.send('before');
  await nextMessage(cl, 1);
  rec.c.writeMessage('text', 'last words');
  rec.c.writeClose(1000, 'done');
  t.equal(rec.c.closed, true, 'closed once the close frame is queued');
  const got = await clientClosed(cl);
  t.same(got, { code: 1000, reason: 'done' }, "ws: close 1000 'done'");
  t.same(cl.messages.map((m) => m.data.toString()), ['before', 'last words'], 'data written before the close arrived first');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1000, 'done']], "close handler: ws's answer (it echoes code and reason)");
  t.same(rec.closeInfo, { code: 1000, reason: 'done', wasClean: true, initiator: 'local', error: null });
  await srv.finish(t);
});

t.test("server writeClose(4321, 'r')", OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  rec.c.writeClose(4321, 'r');
  const got = await clientClosed(cl);
  t.same(got, { code: 4321, reason: 'r' }, "ws: close 4321 'r'");
  t.equal(await srv.closed(rec), null, 'server onClose(null): we started the handshake and the peer answered');
  t.same(rec.closeFrames, [[4321, 'r']]);
  t.same(rec.closeInfo, { code: 4321, reason: 'r', wasClean: true, initiator: 'local', error: null });
  await srv.finish(t);
});

t.test('server closeWithError(e): ws sees 1006', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  const e = new Error('kicked');
  rec.c.closeWithError(e);
  const got = await clientClosed(cl);
  t.same(got, { code: 1006, reason: '' }, 'ws: 1006, no close frame');
  t.equal(await srv.closed(rec), e, 'server onClose got e itself');
  t.same(rec.closeFrames, [], 'close handler not called');
  t.same(rec.closeInfo, { code: 1006, reason: '', wasClean: false, initiator: 'local', error: e });
  t.same(cl.errors, [], 'ws reported no error (a FIN, not a reset)');
  await srv.finish(t);
});

t.test('server closeAndClean(e): ws sees 1006 (reset)', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  const e = new Error('dropped');
  rec.c.closeAndClean(e);
  const got = await clientClosed(cl);
  t.same(got, { code: 1006, reason: '' }, 'ws: 1006, no close frame');
  t.ok(
    cl.errors.every((x) => x.code === 'ECONNRESET'),
    `ws errors, if any, are ECONNRESET (${cl.errors.map((x) => x.code).join(',') || 'none'})`,
  );
  t.equal(await srv.closed(rec), e, 'server onClose got e itself');
  t.same(rec.closeFrames, []);
  t.same(rec.closeInfo, { code: 1006, reason: '', wasClean: false, initiator: 'local', error: e });
  await srv.finish(t);
});

t.test('ws.terminate(): EOFError or SysError ECONNRESET', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.send('x');
  await nextMessage(cl, 1);
  cl.ws.terminate();
  await clientClosed(cl);
  const err = await srv.closed(rec);
  if (err instanceof SysError) {
    assertError(t, err, SysError, 'ECONNRESET', 'connection reset by peer', 'onClose err');
  } else if (testTls() !== undefined) {
    // Over TLS the socket ends without close_notify: a truncation, by the close contract.
    assertError(t, err, TLSTruncationError, 'ERR_TLS_TRUNCATED', undefined, 'onClose err');
  } else {
    assertError(t, err, EOFError, 'NETLOOP_EOF', 'EOF', 'onClose err');
  }
  t.same(rec.closeFrames, [], 'close handler not called');
  t.same(rec.closeInfo, { code: 1006, reason: '', wasClean: false, initiator: 'network', error: err });
  await srv.finish(t);
});

t.test('engine.stop(): ws gets 1001', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const cl2 = await connect(srv.url, ['chat']);
  await srv.conn(1);
  const stopped = srv.engine.stop();
  const [got, got2] = await Promise.all([clientClosed(cl), clientClosed(cl2)]);
  t.same(got, { code: 1001, reason: '' }, 'ws: 1001');
  t.same(got2, { code: 1001, reason: '' }, 'second client: 1001');
  await within(stopped, 6000, 'engine.stop()');
  for (const rec of srv.conns) {
    t.equal(await srv.closed(rec), null, 'server onClose(null)');
    t.same(rec.closeFrames, [[1001, '']], "close handler: ws's answer");
    t.same(rec.closeInfo, { code: 1001, reason: '', wasClean: true, initiator: 'local', error: null });
  }
  await srv.finish(t);
});

t.test('a message over messageLengthLimit: ws gets 1009', OPTS, async (t) => {
  const srv = await startServer(t, { upgrader: { messageLengthLimit: 1024 } });
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.send(pattern(1024, 5));
  await nextMessage(cl, 1);
  t.equal(cl.messages[0].data.length, 1024, 'exactly the limit is accepted');
  cl.ws.send(pattern(1025, 5));
  const got = await clientClosed(cl);
  t.same(got, { code: 1009, reason: '' }, 'ws: 1009');
  const err = await srv.closed(rec);
  assertError(t, err, ProtocolError, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', undefined, 'onClose err');
  t.equal(err.closeCode, 1009);
  t.same(rec.closeFrames, [], 'close handler not called');
  t.match(rec.closeInfo, { code: 1009, reason: '', initiator: 'local', error: err });
  t.equal(rec.messages.length, 1, 'the long message was not delivered');

  // The limit counts a fragmented message as a whole.
  const cl2 = await connect(srv.url);
  const rec2 = await srv.conn(1);
  cl2.ws.send(pattern(600, 1), { fin: false });
  cl2.ws.send(pattern(600, 2), { fin: true });
  t.same(await clientClosed(cl2), { code: 1009, reason: '' }, 'ws: 1009 for 600 + 600 bytes');
  const err2 = await srv.closed(rec2);
  assertError(t, err2, ProtocolError, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', undefined, 'onClose err (fragments)');
  t.equal(rec2.messages.length, 0);
  await srv.finish(t);
});

// ---------------------------------------------------------------------------
// Ordering and edge cases of the closing handshake

t.test('messages sent right before ws.close() are delivered and echoed before the close', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.send('one');
  cl.ws.send(pattern(100 * 1024, 4));
  cl.ws.close(1000, 'after two');
  const got = await clientClosed(cl);
  t.same(got, { code: 1000, reason: '' });
  t.same(rec.messages.map((m) => m.type), ['text', 'binary'], 'the server got both messages');
  t.same(rec.closeFrames, [[1000, 'after two']]);
  t.equal(await srv.closed(rec), null);
  t.equal(cl.messages.length, 2, 'ws got both echoes before the echoed close frame');
  t.equal(cl.messages[0]?.data.toString(), 'one');
  t.ok(cl.messages[1]?.data.equals(pattern(100 * 1024, 4)));
  await srv.finish(t);
});

t.test('close reasons in UTF-8, up to 123 bytes, both ways', OPTS, async (t) => {
  const srv = await startServer(t);
  const reason = 'ключ-€-😀-'.padEnd(40, 'x'); // multi-byte
  const long = 'é'.repeat(61) + 'x'; // 123 bytes
  t.equal(Buffer.byteLength(long), 123);
  const a = await connect(srv.url);
  const ra = await srv.conn(0);
  a.ws.close(4100, reason);
  t.same(await clientClosed(a), { code: 4100, reason: '' });
  const errA = await srv.closed(ra);
  t.ok(errA instanceof CloseError);
  t.equal(errA?.reason, reason, 'CloseError.reason decoded from UTF-8');
  t.same(ra.closeFrames, [[4100, reason]]);
  const b = await connect(srv.url);
  const rb = await srv.conn(1);
  rb.c.writeClose(1000, long);
  t.same(await clientClosed(b), { code: 1000, reason: long }, 'ws: a 123-byte UTF-8 reason');
  t.equal(await srv.closed(rb), null);
  t.same(rb.closeFrames, [[1000, long]], 'ws echoed it');
  await srv.finish(t);
});

t.test('closeWithError(e) after a message: the message first, then 1006', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  const big = pattern(2 * MiB, 8);
  rec.c.writeMessage('text', 'last');
  rec.c.writeMessage('binary', big);
  const e = new Error('bye');
  rec.c.closeWithError(e);
  t.same(await clientClosed(cl), { code: 1006, reason: '' });
  t.equal(cl.messages.length, 2, 'both messages arrived before the FIN');
  t.equal(cl.messages[0]?.data.toString(), 'last');
  t.ok(cl.messages[1]?.data.equals(big), '2 MiB written before closeWithError, delivered byte-exact');
  t.equal(await srv.closed(rec), e);
  await srv.finish(t);
});

t.test('simultaneous close: writeClose and ws.close() cross', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  // Both close frames are sent before either end reads the other's.
  rec.c.writeClose(1000, 'server');
  cl.ws.close(1000, 'client');
  const got = await clientClosed(cl);
  t.same(got, { code: 1000, reason: 'server' }, "ws: the server's close frame");
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1000, 'client']], "close handler: the client's close frame");
  t.same(rec.closeInfo, { code: 1000, reason: 'client', wasClean: true, initiator: 'local', error: null });
  await srv.finish(t);
});
