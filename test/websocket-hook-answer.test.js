// The pieces netloop/ws needs from the core, tested on netloop's own API: the upgrade hook's
// accepting answer adds headers to the 101 (on the engine's listener as through
// handleUpgrade), the request carries the 101 it would get (responseHead), a header the 101
// must not carry is refused; writeClose(1005) sends a close frame without payload; dial()'s
// onOpen sees the 101 before any message, onDrain fires, and a refusal's HandshakeError
// carries the response head.
import t from 'tap';
import WS, { WebSocketServer as WsServer } from 'ws';
import { Engine, Upgrader, dial, HandshakeError } from '../dist/index.js';
import { checkAnswer } from '../dist/websocket/upgrade-hook.js';
import { next, portOf } from './helpers/compat.js';

const OPTS = { timeout: 20000 };

t.test('hook headers on the engine listener; a framing header answers 500', OPTS, async (t) => {
  const seen = [];
  const upgrader = new Upgrader({
    onUpgrade(req) {
      seen.push(req.responseHead);
      return { accept: true, headers: [['Set-Cookie', 'sid=2'], ['X-Room', req.query.get('room')]] };
    },
  });
  const closes = [];
  upgrader.onMessage((c, type, data) => c.writeMessage(type, data));
  upgrader.onClose((c) => closes.push(c.closeInfo.code));
  upgrader.setCloseHandler(() => {});
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader });
  await engine.start();
  t.teardown(() => engine.stop());
  const url = `ws://${engine.addresses()[0]}`;

  const c = new WS(`${url}/chat?room=7`);
  const [[res]] = await Promise.all([next(c, 'upgrade'), next(c, 'open')]);
  t.same(res.headers['set-cookie'], ['sid=2']);
  t.equal(res.headers['x-room'], '7');
  t.match(seen[0], /^HTTP\/1\.1 101 Switching Protocols\r\n[^]*Sec-WebSocket-Accept: [^\r]+\r\n\r\n$/, 'responseHead is the 101 to be sent');

  t.throws(() => checkAnswer({ accept: true, headers: [['Content-Length', '5']] }), TypeError, 'a framing header is refused');
  t.throws(() => checkAnswer({ accept: true, headers: { Upgrade: 'h2c' } }), TypeError, 'a handshake header is refused');
  t.throws(() => checkAnswer({ accept: true, headers: [['Bad Name', 'x']] }), TypeError, 'an invalid name is refused');
  t.same(checkAnswer({ accept: true, headers: { 'X-Ok': '1' } }).headers, { 'X-Ok': '1' });

  // writeClose(1005): an empty close frame, seen by ws as 1005.
  const closed = next(c, 'close');
  c.send('x');
  await next(c, 'message');
  upgrader.onMessage((w) => {
    t.throws(() => w.writeClose(1005, 'reason'), RangeError, 'no reason without a code');
    w.writeClose(1005);
  });
  c.send('close me');
  t.equal((await closed)[0], 1005);
});

t.test("dial(): onOpen before messages, onDrain, a refusal's response head", OPTS, async (t) => {
  const server = new WsServer({
    port: 0,
    host: '127.0.0.1',
    verifyClient: (info, cb) => (info.req.url === '/no' ? cb(false, 403, 'no', { 'X-Why': 'test' }) : cb(true)),
  });
  await next(server, 'listening');
  t.teardown(() => new Promise((r) => server.close(r)));
  server.on('connection', (ws) => ws.send('first')); // sent right with the 101
  const url = `ws://127.0.0.1:${portOf(server)}`;

  const order = [];
  let drains = 0;
  const c = await dial(`${url}/`, {
    onOpen: (_c, response) => order.push(`open ${response.status}`),
    onMessage: (_c, _type, data) => order.push(`message ${data}`),
    onDrain: () => drains++,
  });
  await new Promise((r) => setTimeout(r, 50));
  t.same(order, ['open 101', 'message first'], 'onOpen before the first message');
  c.writeMessage('binary', Buffer.alloc(4 << 20)); // more than the kernel takes at once
  const start = Date.now();
  while (drains === 0 && Date.now() - start < 5000) await new Promise((r) => setTimeout(r, 5));
  t.ok(drains >= 1, 'onDrain once the queue emptied');
  t.equal(c.bufferedAmount, 0);
  c.writeClose(1000);

  const err = await dial(`${url}/no`).catch((e) => e);
  t.ok(err instanceof HandshakeError);
  t.equal(err.status, 403);
  t.same(err.response.headers.find(([n]) => n === 'x-why'), ['x-why', 'test'], 'the response head is kept');
});
