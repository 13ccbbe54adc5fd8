// The WebSocket client, dial(), against servers nobody here wrote: the npm
// `ws` WebSocketServer (echo in both types, subprotocol negotiation,
// server-initiated closes reported per the close contract, handshake
// refusals), and fake servers on Node's own `net` socket that answer the
// handshake by hand and read the client's raw bytes (every frame masked,
// exact headers; a wrong Sec-WebSocket-Accept and other bad 101s refused;
// protocol violations from the server answered with masked close frames).
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';
import { Engine, dial, HandshakeError, CloseError, EOFError, ProtocolError, NetClosedError } from '../dist/index.js';

// The whole file is bounded; each wait inside it is bounded much more tightly (until()).
t.setTimeout(60000);

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers (test/helpers/ws-peer.js: frames only)

import { sleep, until, hex, SAMPLE_KEY, KEY, maskBytes, cframe, cclose, sframe, sclose, parseFrames } from './helpers/ws-peer.js';


// ---------------------------------------------------------------------------

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const acceptOf = (key) => createHash('sha1').update(key + GUID).digest('base64');

// One client engine for the whole file (dial's default shared engine would work too).
const engine = new Engine();
await engine.start();
t.teardown(() => engine.stop());

/** A ws WebSocketServer on 127.0.0.1:0; closed (clients terminated) at the end of the test. */
async function wsServer(t, options = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  await once(wss, 'listening');
  t.teardown(
    () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  return { wss, url: `ws://127.0.0.1:${wss.address().port}` };
}

/** dial() with every callback recorded: { ws, messages, closes: [{ err, info, at }], handler, pongs }. */
async function dialRec(url, options = {}) {
  const rec = { messages: [], closes: [], handler: [], pongs: [] };
  rec.ws = await dial(url, {
    engine,
    handshakeTimeout: 3000,
    ...options,
    onMessage: (c, type, data) => rec.messages.push({ type, data }),
    onClose: (c, err) => {
      let write;
      try {
        c.writeMessage('text', 'from onClose');
        write = 'no exception';
      } catch (e) {
        write = e;
      }
      rec.closes.push({ err, info: c.closeInfo === null ? null : { ...c.closeInfo }, at: performance.now(), write });
    },
    closeHandler: (c, code, reason) => rec.handler.push([code, reason]),
    pongHandler: (c, data) => rec.pongs.push(Buffer.from(data)),
  });
  return rec;
}

/**
 * A fake server on Node's own socket: reads the request head, hands it to
 * respond(head, key, sock) which writes the answer; then records every
 * byte the client sends (`rx`) and how the connection ended.
 */
async function fakeServer(t, respond) {
  const st = { conns: [] };
  const srv = net.createServer((sock) => {
    const c = { sock, head: null, pre: Buffer.alloc(0), chunks: [], ended: false, closed: false, error: null };
    st.conns.push(c);
    sock.on('data', (d) => {
      if (c.head === null) {
        c.pre = Buffer.concat([c.pre, d]);
        const i = c.pre.indexOf('\r\n\r\n');
        if (i < 0) return;
        c.head = c.pre.toString('latin1', 0, i + 4);
        const key = /\r\nSec-WebSocket-Key: ([^\r]*)\r\n/i.exec(c.head)?.[1];
        const rest = c.pre.subarray(i + 4);
        if (rest.length) c.chunks.push(rest);
        respond(c.head, key, sock, c);
        return;
      }
      c.chunks.push(d);
    });
    sock.on('end', () => (c.ended = true));
    sock.on('close', () => (c.closed = true));
    sock.on('error', (err) => (c.error = err));
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.teardown(
    () =>
      new Promise((resolve) => {
        for (const c of st.conns) c.sock.destroy();
        srv.close(() => resolve());
      }),
  );
  st.url = `ws://127.0.0.1:${srv.address().port}`;
  st.rx = (c) => Buffer.concat(c.chunks);
  return st;
}

const good101 = (key, extra = '') => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(key)}\r\n${extra}\r\n`;

async function closedOnceC(t, rec, ms = 3000) {
  await until(() => rec.closes.length > 0, ms, 'the client onClose');
  await sleep(15);
  t.equal(rec.closes.length, 1, 'onClose called exactly once');
  const c = rec.closes[0];
  t.type(c.write, NetClosedError, 'writeMessage inside onClose throws NetClosedError');
  t.throws(() => rec.ws.writeMessage('text', 'late'), NetClosedError, 'writeMessage after onClose throws NetClosedError');
  return c;
}

// ---------------------------------------------------------------------------

t.test('echo against ws: text (UTF-8), binary, empty, 1 MiB; the client closes with 1000', async (t) => {
  let serverClose;
  const { wss, url } = await wsServer(t);
  wss.on('connection', (s) => {
    s.on('message', (data, isBinary) => s.send(data, { binary: isBinary }));
    s.on('close', (code, reason) => (serverClose = [code, reason.toString()]));
  });
  const rec = await dialRec(`${url}/echo?x=1`);
  t.equal(rec.ws.path, '/echo?x=1');
  t.equal(rec.ws.subprotocol, '');
  const big = Buffer.alloc(MiB);
  for (let i = 0; i < big.length; i++) big[i] = (i * 13) & 0xff;
  const sent = [
    ['text', 'héllo wörld € 😀'],
    ['binary', Buffer.from([0, 1, 2, 255])],
    ['text', ''],
    ['binary', Buffer.alloc(0)],
    ['binary', big],
    ['text', 'x'.repeat(70000)],
  ];
  for (const [type, data] of sent) rec.ws.writeMessage(type, data);
  await until(() => rec.messages.length === sent.length, 5000, 'the echoes');
  for (let i = 0; i < sent.length; i++) {
    const [type, data] = sent[i];
    t.equal(rec.messages[i].type, type, `#${i} type`);
    t.ok(rec.messages[i].data.equals(Buffer.from(data)), `#${i} data (${Buffer.from(data).length} bytes)`);
  }
  rec.ws.ping('are you there');
  await until(() => rec.pongs.length === 1, 3000, "ws's pong");
  t.equal(rec.pongs[0].toString(), 'are you there');
  rec.ws.writeClose(1000, 'done');
  const c = await closedOnceC(t, rec);
  t.equal(c.err, null);
  t.same(rec.handler, [[1000, 'done']], "ws's answer reaches the close handler");
  t.same(c.info, { code: 1000, reason: 'done', wasClean: true, initiator: 'local', error: null });
  await until(() => serverClose !== undefined, 3000, 'the ws close event');
  t.same(serverClose, [1000, 'done']);
});

t.test('subprotocols against ws: the one the server picks, or none', async (t) => {
  const offeredSeen = [];
  const { wss, url } = await wsServer(t, {
    handleProtocols: (protocols) => {
      offeredSeen.push([...protocols]);
      for (const p of ['b', 'a']) if (protocols.has(p)) return p;
      return false;
    },
  });
  wss.on('connection', (s) => s.on('message', (d, b) => s.send(d, { binary: b })));
  const one = await dialRec(url, { subprotocols: ['a', 'b'] });
  t.equal(one.ws.subprotocol, 'b', "the server's choice");
  const two = await dialRec(url, { subprotocols: ['a'] });
  t.equal(two.ws.subprotocol, 'a');
  const none = await dialRec(url, { subprotocols: ['c'] });
  t.equal(none.ws.subprotocol, '', 'no match: no subprotocol');
  t.same(offeredSeen, [['a', 'b'], ['a'], ['c']]);
  for (const r of [one, two, none]) {
    r.ws.writeClose(1000);
    const c = await closedOnceC(t, r);
    t.equal(c.err, null);
  }
});

t.test('server-initiated closes (ws) are reported per the close contract', async (t) => {
  const serverSaw = new Map();
  const { wss, url } = await wsServer(t);
  wss.on('connection', (s, req) => {
    const [, what, code, reason] = req.url.split('/');
    s.on('close', (c, r) => serverSaw.set(req.url, [c, r.toString()]));
    if (what === 'close') s.close(code === 'none' ? undefined : Number(code), reason === undefined ? undefined : decodeURIComponent(reason));
    else if (what === 'terminate') setTimeout(() => s.terminate(), 20);
  });
  const rows = [
    { path: '/close/1000/bye', err: null, handler: [[1000, 'bye']], info: { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer' }, echoed: 1000 },
    { path: '/close/1001/away', err: [CloseError, 1001, 'away'], handler: [[1001, 'away']], info: { code: 1001, reason: 'away', wasClean: true, initiator: 'peer' }, echoed: 1001 },
    { path: '/close/4000/custom', err: [CloseError, 4000, 'custom'], handler: [[4000, 'custom']], info: { code: 4000, reason: 'custom', wasClean: true, initiator: 'peer' }, echoed: 4000 },
    { path: '/close/none', err: [CloseError, 1005, ''], handler: [[1005, '']], info: { code: 1005, reason: '', wasClean: true, initiator: 'peer' }, echoed: 1005 },
    { path: '/terminate', err: [EOFError], handler: [], info: { code: 1006, reason: '', wasClean: false, initiator: 'network' } },
  ];
  for (const row of rows) {
    await t.test(row.path, async (t) => {
      const rec = await dialRec(url + row.path);
      const c = await closedOnceC(t, rec);
      if (row.err === null) t.equal(c.err, null, 'onClose null');
      else {
        t.type(c.err, row.err[0]);
        if (row.err.length > 1) {
          t.equal(c.err?.closeCode, row.err[1]);
          t.equal(c.err?.reason, row.err[2]);
        }
      }
      t.same(rec.handler, row.handler);
      t.same(c.info, { ...row.info, error: c.err });
      if (row.echoed !== undefined) {
        await until(() => serverSaw.has(row.path), 3000, 'the ws close event');
        t.equal(serverSaw.get(row.path)[0], row.echoed, `ws got the code echoed (${row.echoed})`);
      }
    });
  }
});

t.test('handshake errors', async (t) => {
  await t.test('ws answers 404: HandshakeError, status 404', async (t) => {
    const { url } = await wsServer(t, { verifyClient: (info, cb) => cb(false, 404, 'Not Found') });
    const err = await dial(url + '/nowhere', { engine, handshakeTimeout: 3000 }).then(
      () => null,
      (e) => e,
    );
    t.type(err, HandshakeError);
    t.equal(err?.status, 404);
    t.equal(err?.code, 'WS_ERR_HANDSHAKE_STATUS');
  });
  const cases = [
    ['a wrong Sec-WebSocket-Accept', (key) => good101((key[0] === 'x' ? 'y' : 'x') + key.slice(1)), 'WS_ERR_HANDSHAKE_ACCEPT', 101],
    ['no Sec-WebSocket-Accept', () => 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 'WS_ERR_HANDSHAKE_ACCEPT', 101],
    ['no Upgrade header', (key) => `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(key)}\r\n\r\n`, 'WS_ERR_HANDSHAKE', 101],
    ['a subprotocol that was not offered', (key) => good101(key, 'Sec-WebSocket-Protocol: other\r\n'), 'WS_ERR_HANDSHAKE_PROTOCOL', 101],
    ['an extension that was not offered', (key) => good101(key, 'Sec-WebSocket-Extensions: permessage-deflate\r\n'), 'WS_ERR_HANDSHAKE_EXTENSION', 101],
    ['a 200', () => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'WS_ERR_HANDSHAKE_STATUS', 200],
  ];
  for (const [name, answer, code, status] of cases) {
    await t.test(`fake server, ${name}: HandshakeError ${code}`, async (t) => {
      const fake = await fakeServer(t, (head, key, sock) => sock.write(answer(key)));
      const err = await dial(fake.url, { engine, subprotocols: ['chat'], handshakeTimeout: 3000 }).then(
        () => null,
        (e) => e,
      );
      t.type(err, HandshakeError);
      t.equal(err?.code, code);
      t.equal(err?.status, status);
      await until(() => fake.conns[0]?.closed, 3000, 'the client to drop the connection');
      t.equal(fake.rx(fake.conns[0]).length, 0, 'the client sent nothing after its request');
    });
  }
  await t.test('a server that never answers: the handshake times out', async (t) => {
    const fake = await fakeServer(t, () => {});
    const t0 = performance.now();
    const err = await dial(fake.url, { engine, handshakeTimeout: 300 }).then(
      () => null,
      (e) => e,
    );
    const took = performance.now() - t0;
    t.equal(err?.code, 'NETLOOP_TIMEOUT');
    t.ok(took >= 250 && took < 1500, `gave up after ${took.toFixed(0)} ms`);
    await until(() => fake.conns[0]?.closed, 3000, 'the client to drop the connection');
  });
});

t.test('frames from the client are masked (read raw by a fake server)', async (t) => {
  const fake = await fakeServer(t, (head, key, sock) => sock.write(good101(key)));
  const rec = await dialRec(`${fake.url}/raw?q=1`, { headers: { Origin: 'http://example.com' } });
  const c0 = fake.conns[0];
  // The request head.
  const lines = c0.head.split('\r\n');
  t.equal(lines[0], 'GET /raw?q=1 HTTP/1.1');
  const h = new Map(lines.slice(1, -2).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  t.equal(h.get('host'), new URL(fake.url).host);
  t.equal(h.get('upgrade'), 'websocket');
  t.match(h.get('connection'), /upgrade/i);
  t.equal(h.get('sec-websocket-version'), '13');
  t.equal(h.get('origin'), 'http://example.com');
  t.equal(Buffer.from(h.get('sec-websocket-key'), 'base64').length, 16, 'a 16-byte key');

  const bin = Buffer.alloc(300, 0xab);
  rec.ws.writeMessage('text', 'hello');
  rec.ws.writeMessage('binary', bin);
  rec.ws.ping('p');
  rec.ws.writeFrame('text', 'frag', false);
  rec.ws.writeFrame('text', 'ment', true);
  rec.ws.writeMessage('binary', Buffer.alloc(70000, 1));
  rec.ws.writeClose(1000, 'bye');
  const wantLen = 6 + 5 + (8 + 300) + (6 + 1) + (6 + 4) * 2 + (14 + 70000) + (6 + 5);
  await until(() => fake.rx(c0).length >= wantLen, 3000, 'the client frames');
  const { frames, rest } = parseFrames(fake.rx(c0));
  t.equal(rest, 0);
  t.same(
    frames.map((f) => [hex(f.header.subarray(0, f.header.length - 4)), f.masked, f.payload.toString('latin1')]),
    [
      ['8185', true, 'hello'],
      ['82fe012c', true, bin.toString('latin1')],
      ['8981', true, 'p'],
      ['0184', true, 'frag'],
      ['8084', true, 'ment'],
      ['82ff0000000000011170', true, Buffer.alloc(70000, 1).toString('latin1')],
      ['8885', true, '\x03\xe8bye'],
    ],
    'every frame masked, exact headers, payloads as sent',
  );
  const keys = new Set(frames.map((f) => hex(f.header.subarray(-4))));
  t.ok(keys.size >= frames.length - 1, `a fresh mask key per frame (${keys.size} distinct of ${frames.length})`);
  // The server answers the close and ends the connection.
  c0.sock.end(Buffer.from('880203e8', 'hex'));
  const c = await closedOnceC(t, rec);
  t.equal(c.err, null);
  t.same(rec.handler, [[1000, '']]);
  t.same(c.info, { code: 1000, reason: '', wasClean: true, initiator: 'local', error: null });
});

t.test('frames from a fake server: right behind the 101, pings answered with masked pongs, the server closing', async (t) => {
  const fake = await fakeServer(t, (head, key, sock) => sock.write(Buffer.concat([Buffer.from(good101(key)), sframe(1, 'eager'), sframe(9, 'ping')])));
  const rec = await dialRec(fake.url);
  await until(() => rec.messages.length === 1, 3000, 'the message behind the 101');
  t.equal(rec.messages[0].data.toString(), 'eager');
  const c0 = fake.conns[0];
  await until(() => fake.rx(c0).length >= 10, 3000, 'the pong');
  const { frames } = parseFrames(fake.rx(c0));
  t.equal(frames[0].opcode, 0xa);
  t.equal(frames[0].masked, true);
  t.equal(frames[0].payload.toString(), 'ping');
  c0.sock.write(sclose(1000));
  const c = await closedOnceC(t, rec);
  t.equal(c.err, null);
  const all = parseFrames(fake.rx(c0));
  t.same(all.frames.map((f) => [f.opcode, f.masked, hex(f.payload)]), [[0xa, true, hex('ping')], [8, true, '03e8']], 'the close echoed, masked');
  await until(() => c0.ended, 3000, 'the client FIN');
});

t.test('protocol violations by the server: masked close 1002 / 1007 from the client, ProtocolError', async (t) => {
  const cases = [
    ['a masked frame', cframe(1, 'masked'), 1002, 'WS_ERR_UNEXPECTED_MASK'],
    ['invalid UTF-8', sframe(1, Buffer.from([0xff])), 1007, 'WS_ERR_INVALID_UTF8'],
    ['a reserved opcode', sframe(3, 'x'), 1002, 'WS_ERR_INVALID_OPCODE'],
    ['RSV1 without an extension', Buffer.concat([Buffer.from([0xc1, 0x01]), Buffer.from('x')]), 1002, 'WS_ERR_UNEXPECTED_RSV_1'],
  ];
  for (const [name, bytes, closeCode, code] of cases) {
    await t.test(name, async (t) => {
      const fake = await fakeServer(t, (head, key, sock) => sock.write(good101(key)));
      const rec = await dialRec(fake.url);
      const c0 = fake.conns[0];
      c0.sock.write(bytes);
      const c = await closedOnceC(t, rec);
      t.type(c.err, ProtocolError);
      t.equal(c.err?.closeCode, closeCode);
      t.equal(c.err?.code, code);
      t.same(rec.handler, []);
      t.same(rec.messages, []);
      t.match(c.info, { code: closeCode, wasClean: false, initiator: 'local' });
      await until(() => c0.ended || c0.closed, 3000, 'the client FIN');
      const { frames, rest } = parseFrames(fake.rx(c0));
      t.equal(rest, 0);
      t.same(frames.map((f) => [f.opcode, f.masked, hex(f.payload)]), [[8, true, closeCode.toString(16).padStart(4, '0')]], `a masked close ${closeCode}`);
    });
  }
});

t.test('the client engine has no connection left', async (t) => {
  await until(() => engine.stats().online === 0, 3000, 'every client connection closed');
  t.equal(engine.stats().online, 0);
});
