// The upgrade hook (Upgrader onUpgrade), on the engine's own listener and on
// handleUpgrade() from a plain http.Server, in every I/O mode, with `ws`
// (from npm) as the client:
// - the hook sees method, path, query, headers, cookies and the peer;
// - an async refusal answers 401 with its headers and body;
// - an accepted upgrade carries the hook's session into onOpen and onMessage;
// - a hook slower than handshakeTimeout: the client gets no 101 and the
//   connection closes; a client that leaves while the hook awaits is
//   forgotten (no onOpen, nothing left open);
// - a hook that throws: 500, and the error reaches the process;
// - cookies are parsed in one pass (fixtures).
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { Engine, Upgrader } from '../dist/index.js';
import { parseCookies } from '../dist/websocket/upgrade-hook.js';
import { upgradeRequest } from './helpers/ws-peer.js';
import { sleep, until } from './helpers/engine.js';

const MODES = {
  nonblocking: { ioMode: 'nonblocking' },
  blocking: { ioMode: 'blocking' },
  mixed: { ioMode: 'mixed', maxBlockingOnline: 1 },
};

/** A server on the engine's own listener, or behind a plain http.Server through handleUpgrade(). */
async function serve(t, how, engineOptions, upgraderOptions) {
  const upgrader = new Upgrader(upgraderOptions);
  const log = { opens: [], messages: [], closes: [] };
  upgrader.onOpen((c) => log.opens.push(c.session));
  upgrader.onMessage((c, type, data) => {
    log.messages.push([c.session, data.toString()]);
    c.writeMessage(type, `${c.session?.user ?? '?'}: ${data}`);
  });
  upgrader.onClose((c, err) => log.closes.push(err));
  if (how === 'listener') {
    const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader, ...engineOptions });
    await engine.start();
    t.teardown(() => engine.stop());
    return { port: Number(engine.addresses()[0].split(':').pop()), log, engine };
  }
  const engine = new Engine({ upgrader, ...engineOptions });
  await engine.start();
  const server = http.createServer((req, res) => res.end('ok'));
  server.on('upgrade', (req, socket, head) => {
    upgrader.handleUpgrade(req, socket, head).catch(() => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    server.close();
    await engine.stop();
  });
  return { port: server.address().port, log, engine };
}

function connectWs(url, options) {
  const ws = new WebSocket(url, options);
  const res = { ws, messages: [], status: 0, body: '', headers: {}, open: false, closed: false, error: null };
  ws.on('message', (d) => res.messages.push(d.toString()));
  ws.on('unexpected-response', (req, r) => {
    res.status = r.statusCode;
    res.headers = r.headers;
    r.on('data', (d) => (res.body += d));
    r.on('end', () => (res.closed = true));
  });
  ws.on('open', () => (res.open = true));
  ws.on('close', () => (res.closed = true));
  ws.on('error', (e) => (res.error = e));
  return res;
}

for (const [mode, engineOptions] of Object.entries(MODES)) {
  for (const how of ['listener', 'handleUpgrade']) {
    t.test(`${mode}, ${how}: the hook sees the request, refuses with 401 or accepts with a session`, async (t) => {
      const seen = [];
      const s = await serve(t, how, engineOptions, {
        subprotocols: ['chat'],
        async onUpgrade(req) {
          seen.push(req);
          await sleep(20); // an asynchronous check (a session store, a token service)
          if (req.cookies.sid !== 'good') {
            return { accept: false, status: 401, headers: { 'WWW-Authenticate': 'Cookie' }, body: 'who are you?' };
          }
          return { accept: true, session: { user: req.query.get('name'), room: req.path } };
        },
      });
      const bad = connectWs(`ws://127.0.0.1:${s.port}/room/1?name=eve`, { headers: { Cookie: 'sid=bad' } });
      await until(() => bad.closed, 5000, 'the refusal');
      t.equal(bad.status, 401, '401 from the async hook');
      t.equal(bad.headers['www-authenticate'], 'Cookie', 'with its headers');
      t.equal(bad.body, 'who are you?', 'and its body');
      t.notOk(bad.open);

      const good = connectWs(`ws://127.0.0.1:${s.port}/room/7?name=ann`, { headers: { Cookie: 'theme=dark; sid=good' } }, 'chat');
      await until(() => good.open, 5000, 'the upgrade');
      good.ws.send('hi');
      await until(() => good.messages.length === 1, 5000, 'the echo');
      t.same(good.messages, ['ann: hi'], 'onMessage sees the session the hook gave');
      t.same(s.log.opens, [{ user: 'ann', room: '/room/7' }], 'onOpen sees it too');
      const req = seen[1];
      t.equal(req.method, 'GET');
      t.equal(req.url, '/room/7?name=ann');
      t.equal(req.path, '/room/7');
      t.equal(req.query.get('name'), 'ann');
      t.same({ ...req.cookies }, { theme: 'dark', sid: 'good' }, 'cookies');
      t.equal(req.header('COOKIE'), 'theme=dark; sid=good', 'headers by any case');
      t.ok(req.headers.some(([n]) => n === 'sec-websocket-key'), 'every header line');
      t.equal(req.remoteAddr, `127.0.0.1:${good.ws._socket.localPort}`, "the client's address");
      good.ws.close(1000);
      await until(() => s.log.closes.length === 1, 5000, 'onClose');
      t.equal(s.log.opens.length, 1, 'the refused client never opened');
    });

    t.test(`${mode}, ${how}: a slow hook is bounded by handshakeTimeout; a client that leaves is forgotten`, async (t) => {
      let calls = 0;
      let release;
      const s = await serve(t, how, engineOptions, {
        handshakeTimeout: 300,
        onUpgrade() {
          calls++;
          return new Promise((resolve) => (release = () => resolve({ accept: true, session: { user: 'late' } })));
        },
      });
      const slow = connectWs(`ws://127.0.0.1:${s.port}/`);
      await until(() => slow.closed, 3000, 'the timeout');
      t.notOk(slow.open, 'no 101 after the handshake timeout');
      release();
      await sleep(50);
      t.equal(s.log.opens.length, 0, 'the late answer opens nothing');

      // A client that leaves while the hook awaits.
      const sock = net.connect(s.port, '127.0.0.1');
      await new Promise((resolve) => sock.once('connect', resolve));
      sock.write(upgradeRequest({ path: '/' }));
      await until(() => calls === 2, 3000, 'the hook asked');
      sock.destroy();
      await sleep(50);
      release();
      await sleep(100);
      t.equal(s.log.opens.length, 0, 'nothing opens for a client that left');
      t.equal(s.engine.stats().online, 0, 'nothing left open');
    });

    t.test(`${mode}, ${how}: a hook that throws answers 500 and reaches the process`, async (t) => {
      const caught = [];
      const on = (err) => caught.push(err);
      process.on('uncaughtException', on);
      process.on('unhandledRejection', on);
      t.teardown(() => {
        process.off('uncaughtException', on);
        process.off('unhandledRejection', on);
      });
      const boom = new Error('hook failed');
      const s = await serve(t, how, engineOptions, {
        onUpgrade() {
          throw boom;
        },
      });
      const c = connectWs(`ws://127.0.0.1:${s.port}/`);
      await until(() => c.closed, 3000, 'the answer');
      t.equal(c.status, 500, '500');
      if (how === 'listener') {
        await until(() => caught.length === 1, 3000, 'the error reaches the process');
        t.equal(caught[0], boom);
      }
    });
  }
}

t.test('cookies: one pass, fixtures', async (t) => {
  t.same({ ...parseCookies('a=1; b=2') }, { a: '1', b: '2' });
  t.same({ ...parseCookies(' a = 1 ;b="x y";c') }, { a: '1', b: 'x y' }, 'spaces, quotes, a pair without =');
  t.same({ ...parseCookies('a=1; a=2') }, { a: '1' }, 'the first of a repeated name');
  t.same({ ...parseCookies('=x; ;; b=') }, { b: '' }, 'empty names ignored, empty values kept');
  t.same({ ...parseCookies(undefined) }, {});
  t.same({ ...parseCookies('__proto__=x') }, { ['__proto__']: 'x' }, 'no prototype pollution');
  // Linear time on hostile input: 8 KiB of separators costs far under a millisecond.
  const start = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) parseCookies(';'.repeat(8000) + ' '.repeat(8000) + '=');
  t.ok(Number(process.hrtime.bigint() - start) / 1e6 < 500, '100 hostile headers parse in well under 500 ms');
});
