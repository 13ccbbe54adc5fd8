// Interop with undici's WHATWG WebSocket client (v7), over loopback: text,
// binary as ArrayBuffer, a 1 MiB message, subprotocols, the declined
// permessage-deflate offer, and close codes both ways, checked on both ends
// against the close reporting contract (DESIGN.md, non-blocking column).
import t from 'tap';
import { WebSocket } from 'undici';
import { CloseError } from '../dist/index.js';
import { MiB, pattern, startServer, until, utf8Text, within } from './helpers/interop-server.js';

const OPTS = { timeout: 15000 };

/** Opens an undici WebSocket (binaryType arraybuffer) and records what it sees. */
async function connect(url, protocols) {
  const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
  ws.binaryType = 'arraybuffer';
  const cl = { ws, messages: [], errors: [], closes: 0 };
  ws.addEventListener('message', (ev) => cl.messages.push(ev.data));
  ws.addEventListener('error', (ev) => cl.errors.push(ev));
  cl.closed = new Promise((resolve) => {
    ws.addEventListener('close', (ev) => {
      cl.closes++;
      resolve({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    });
  });
  await within(
    new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('error', (ev) => reject(ev.error ?? new Error('undici WebSocket error before open')), { once: true });
    }),
    5000,
    'undici WebSocket open',
  );
  return cl;
}

const clientClosed = (cl, ms = 5000) => within(cl.closed, ms, 'undici close event');

t.test('text, binary (ArrayBuffer), empty', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  t.equal(cl.ws.extensions, '', 'permessage-deflate offered by undici, declined by the server');
  t.equal(cl.ws.protocol, '');
  const bin = pattern(777, 9);
  cl.ws.send('hello');
  cl.ws.send('héllo — 日本語 — 🎉');
  cl.ws.send(new Uint8Array(bin));
  cl.ws.send(bin.buffer.slice(bin.byteOffset, bin.byteOffset + 10));
  cl.ws.send('');
  cl.ws.send(new ArrayBuffer(0));
  await until(() => cl.messages.length === 6, 5000, 'six echoes');
  t.same(
    srv.conns[0].messages.map((m) => [m.type, m.data.toString('hex')]),
    [
      ['text', Buffer.from('hello').toString('hex')],
      ['text', Buffer.from('héllo — 日本語 — 🎉').toString('hex')],
      ['binary', bin.toString('hex')],
      ['binary', bin.subarray(0, 10).toString('hex')],
      ['text', ''],
      ['binary', ''],
    ],
    'the server got each message with its type, byte-exact',
  );
  const m = cl.messages;
  t.equal(m[0], 'hello');
  t.equal(m[1], 'héllo — 日本語 — 🎉');
  t.ok(m[2] instanceof ArrayBuffer, 'binary arrives as an ArrayBuffer');
  t.ok(Buffer.from(m[2]).equals(bin), 'binary echo byte-exact');
  t.ok(Buffer.from(m[3]).equals(bin.subarray(0, 10)));
  t.equal(m[4], '');
  t.ok(m[5] instanceof ArrayBuffer && m[5].byteLength === 0, 'empty binary');
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('1 MiB messages, binary and text', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const big = pattern(MiB, 13);
  const text = utf8Text(MiB - (MiB % 10));
  cl.ws.send(big);
  cl.ws.send(text);
  await until(() => cl.messages.length === 2, 10000, 'two 1 MiB echoes');
  const [s1, s2] = srv.conns[0].messages;
  t.equal(s1.type, 'binary');
  t.ok(s1.data.equals(big), 'server: 1 MiB binary byte-exact');
  t.equal(s2.type, 'text');
  t.ok(s2.data.equals(Buffer.from(text)), 'server: 1 MiB text byte-exact');
  t.ok(cl.messages[0] instanceof ArrayBuffer);
  t.ok(Buffer.from(cl.messages[0]).equals(big), 'undici: 1 MiB binary echo byte-exact');
  t.equal(typeof cl.messages[1], 'string');
  t.ok(cl.messages[1] === text, 'undici: 1 MiB text echo exact');
  cl.ws.close(1000);
  await clientClosed(cl);
  await srv.finish(t);
});

t.test('subprotocols', OPTS, async (t) => {
  const srv = await startServer(t);
  const a = await connect(srv.url, ['superchat', 'chat']);
  t.equal(a.ws.protocol, 'chat', 'the server preference wins');
  const b = await connect(srv.url, 'superchat');
  t.equal(b.ws.protocol, 'superchat');
  await srv.conn(1);
  t.same(
    srv.conns.map((r) => r.c.subprotocol),
    ['chat', 'superchat'],
  );
  a.ws.close(1000);
  b.ws.close(1000);
  await Promise.all([clientClosed(a), clientClosed(b)]);
  await srv.finish(t);
});

t.test("client close(1000, 'bye')", OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.close(1000, 'bye');
  t.same(await clientClosed(cl), { code: 1000, reason: '', wasClean: true }, 'undici: 1000, clean');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1000, 'bye']]);
  t.same(rec.closeInfo, { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer', error: null });
  t.equal(cl.errors.length, 0, 'no error event');
  t.equal(cl.closes, 1);
  await srv.finish(t);
});

t.test('client close(3000)', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  cl.ws.close(3000);
  t.same(await clientClosed(cl), { code: 3000, reason: '', wasClean: true }, 'undici: 3000 echoed, clean');
  const err = await srv.closed(rec);
  t.ok(err instanceof CloseError, `onClose err is a CloseError (${err?.constructor?.name})`);
  t.equal(err?.code, 'NETLOOP_WS_CLOSE');
  t.equal(err?.closeCode, 3000);
  t.equal(err?.reason, '');
  t.equal(err?.message, 'websocket: close 3000');
  t.same(rec.closeFrames, [[3000, '']]);
  t.same(rec.closeInfo, { code: 3000, reason: '', wasClean: true, initiator: 'peer', error: err });
  await srv.finish(t);
});

t.test('server writeClose(1000)', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url);
  const rec = await srv.conn(0);
  rec.c.writeMessage('text', 'bye now');
  rec.c.writeClose(1000);
  t.same(await clientClosed(cl), { code: 1000, reason: '', wasClean: true }, 'undici: 1000, clean');
  t.same(cl.messages, ['bye now'], 'the message before the close arrived');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1000, '']], "close handler: undici's answer");
  t.same(rec.closeInfo, { code: 1000, reason: '', wasClean: true, initiator: 'local', error: null });
  t.equal(cl.errors.length, 0);
  await srv.finish(t);
});

t.test('engine.stop(): undici gets 1001', OPTS, async (t) => {
  const srv = await startServer(t);
  const cl = await connect(srv.url, ['chat']);
  const rec = await srv.conn(0);
  const stopped = srv.engine.stop();
  t.same(await clientClosed(cl), { code: 1001, reason: '', wasClean: true }, 'undici: 1001, clean');
  await within(stopped, 6000, 'engine.stop()');
  t.equal(await srv.closed(rec), null, 'server onClose(null)');
  t.same(rec.closeFrames, [[1001, '']], "close handler: undici's answer");
  t.same(rec.closeInfo, { code: 1001, reason: '', wasClean: true, initiator: 'local', error: null });
  await srv.finish(t);
});
