// netloop/ws against the clients nobody here wrote (the npm `ws` client,
// undici's WebSocket), and netloop/ws's client against a real `ws` server:
// the API of ws 8 (options, events, readyState, callbacks, binaryType,
// verifyClient, handleProtocols, 'headers', path, 426, noServer) and the
// close mapping of README.md ("netloop/ws"), in every I/O mode.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import WS, { WebSocketServer as WsServer } from 'ws';
import { WebSocket as UndiciWebSocket } from 'undici';
import netloopWs, { WebSocketServer, WebSocket, createWebSocketStream } from 'netloop/ws';
import { ProtocolError } from '../dist/index.js';
import { MODES, closeHttp, closeNetloopWss, closeWss, next, portOf, until } from './helpers/compat.js';
import { cframe } from './helpers/ws-peer.js';

const OPTS = { timeout: 30000 };

/** A netloop/ws server on its own port, echoing, recording what it sees. */
async function echoServer(t, mode, options = {}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options, netloop: { engine: mode.engine } });
  const seen = { connections: [], closes: [], errors: [], pings: [], pongs: [] };
  wss.on('connection', (ws, req) => {
    seen.connections.push({ ws, url: req.url, protocol: ws.protocol });
    ws.on('message', (data, isBinary) => {
      if (ws.readyState === ws.OPEN) ws.send(data, { binary: isBinary });
    });
    ws.on('ping', (d) => seen.pings.push(d.toString()));
    ws.on('pong', (d) => seen.pongs.push(d.toString()));
    ws.on('error', (err) => seen.errors.push(err));
    ws.on('close', (code, reason) => seen.closes.push({ code, reason: reason.toString() }));
  });
  await next(wss, 'listening');
  t.teardown(() => closeNetloopWss(wss));
  return { wss, seen, url: `ws://127.0.0.1:${portOf(wss)}` };
}

/** An npm `ws` client, open. */
async function wsClient(url, protocols, options) {
  const c = new WS(url, protocols, options);
  await next(c, 'open');
  return c;
}

t.test('the default export is ws-shaped', async (t) => {
  t.equal(netloopWs, WebSocket);
  t.equal(netloopWs.Server, WebSocketServer);
  t.equal(netloopWs.WebSocketServer, WebSocketServer);
  t.equal(netloopWs.createWebSocketStream, createWebSocketStream);
  t.same([WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED], [0, 1, 2, 3]);
  t.throws(() => new WebSocketServer({}), { name: 'TypeError', message: /One and only one/ });
  t.throws(() => new WebSocketServer({ noServer: true, port: 1 }), { name: 'TypeError' });
  t.throws(() => new WebSocketServer({ noServer: true, WebSocket: class {} }), { name: 'TypeError', message: /"WebSocket" is not supported/ });
  t.throws(() => new WebSocket('wss://127.0.0.1:1/'), { name: 'SyntaxError' });
  t.throws(() => new WebSocket('ws://127.0.0.1:1/', { agent: {} }), { message: /"agent" is not supported/ });
});

for (const mode of MODES) {
  t.test(`ws client <-> netloop/ws server (${mode.name})`, OPTS, async (t) => {
    const { wss, seen, url } = await echoServer(t, mode);
    const c = await wsClient(`${url}/echo?x=1`, ['chat', 'other']);
    t.equal(c.protocol, 'chat', 'the first offered subprotocol, as ws chooses without handleProtocols');
    await until(() => seen.connections.length === 1, 5000, 'connection');
    t.equal(seen.connections[0].url, '/echo?x=1', "'connection' gets Node's request");
    t.equal(seen.connections[0].protocol, 'chat');
    t.equal(wss.clients.size, 1, 'clientTracking');
    const sws = seen.connections[0].ws;
    t.equal(sws.readyState, WebSocket.OPEN);
    t.equal(sws.extensions, '', 'no permessage-deflate unless asked (ws server default)');

    c.send('héllo');
    let [data, isBinary] = await next(c, 'message');
    t.same([data.toString(), isBinary], ['héllo', false]);
    c.send(Buffer.from([1, 2, 3]));
    [data, isBinary] = await next(c, 'message');
    t.same([[...data], isBinary], [[1, 2, 3], true]);
    // Fragments from the server side (fin false), joined by the client.
    const got = next(c, 'message');
    sws.send('ab', { fin: false });
    sws.send('cd', { fin: false });
    sws.send('ef', { fin: true });
    [data, isBinary] = await got;
    t.same([data.toString(), isBinary], ['abcdef', false], 'send({ fin: false }) fragments a message');

    // Callbacks: after the bytes left; bufferedAmount back to 0.
    const sent = await new Promise((resolve) => sws.send(Buffer.alloc(256 * 1024, 7), (err) => resolve(err ?? null)));
    t.equal(sent, null, 'send callback without error');
    t.equal(sws.bufferedAmount, 0);
    await next(c, 'message');

    // ping/pong both ways, with the events.
    const pong = next(c, 'pong');
    c.ping('p1');
    t.equal((await pong)[0].toString(), 'p1', 'netloop/ws answered the ping');
    await until(() => seen.pings.length === 1, 5000, 'server ping event');
    t.same(seen.pings, ['p1']);
    const ping = next(c, 'ping');
    sws.ping('p2');
    t.equal((await ping)[0].toString(), 'p2');
    await until(() => seen.pongs.length === 1, 5000, 'server pong event');
    t.same(seen.pongs, ['p2']);

    // The client closes 4000: both sides see it; the server's socket leaves clients.
    const closed = next(c, 'close');
    c.close(4000, 'bye');
    const [code, reason] = await closed;
    t.same([code, reason.toString()], [4000, ''], 'netloop echoes the code');
    await until(() => seen.closes.length === 1, 5000, 'server close');
    t.same(seen.closes, [{ code: 4000, reason: 'bye' }]);
    t.equal(sws.readyState, WebSocket.CLOSED);
    t.equal(wss.clients.size, 0);
    t.same(seen.errors, []);
    // Writing after the close: the callback hears of it, nothing throws.
    const late = await new Promise((resolve) => sws.send('late', resolve));
    t.match(late.message, /not open: readyState 3 \(CLOSED\)/);
  });

  t.test(`close mapping, server side (${mode.name})`, OPTS, async (t) => {
    const { seen, url } = await echoServer(t, mode, { maxPayload: 1000 });
    // close() without a code: an empty close frame, 1005 on both sides.
    let c = await wsClient(url);
    await until(() => seen.connections.length === 1, 5000, 'connection');
    let closed = next(c, 'close');
    seen.connections[0].ws.close();
    t.equal(seen.connections[0].ws.readyState, WebSocket.CLOSING);
    t.same((await closed).map(String), ['1005', '']);
    await until(() => seen.closes.length === 1, 5000, 'server close');
    t.same(seen.closes[0], { code: 1005, reason: '' });

    // close(code, reason): the peer's answer is what 'close' reports, as in ws.
    c = await wsClient(url);
    await until(() => seen.connections.length === 2, 5000, 'connection');
    closed = next(c, 'close');
    seen.connections[1].ws.close(4001, 'go');
    t.same((await closed).map(String), ['4001', 'go']);
    await until(() => seen.closes.length === 2, 5000, 'server close');
    t.same(seen.closes[1], { code: 4001, reason: 'go' }, 'ws echoes the reason too');

    // terminate(): no close frame, 1006 on both sides.
    c = await wsClient(url);
    await until(() => seen.connections.length === 3, 5000, 'connection');
    closed = next(c, 'close');
    seen.connections[2].ws.terminate();
    t.equal((await closed)[0], 1006);
    await until(() => seen.closes.length === 3, 5000, 'server close');
    t.same(seen.closes[2], { code: 1006, reason: '' });

    // Over maxPayload: 'error' (ProtocolError, 1009) then 'close' 1009.
    c = await wsClient(url);
    await until(() => seen.connections.length === 4, 5000, 'connection');
    closed = next(c, 'close');
    c.send(Buffer.alloc(1001));
    t.equal((await closed)[0], 1009);
    await until(() => seen.closes.length === 4, 5000, 'server close');
    t.same(seen.closes[3], { code: 1009, reason: '' });
    t.equal(seen.errors.length, 1);
    t.ok(seen.errors[0] instanceof ProtocolError);
    t.equal(seen.errors[0].closeCode, 1009);

    // The client just leaves (FIN, no close frame): 1006, no 'error'.
    c = await wsClient(url);
    await until(() => seen.connections.length === 5, 5000, 'connection');
    c._socket.end();
    await until(() => seen.closes.length === 5, 5000, 'server close');
    t.same(seen.closes[4], { code: 1006, reason: '' });
    t.equal(seen.errors.length, 1, 'a FIN is no error');
    c.terminate();
  });

  t.test(`verifyClient, handleProtocols, 'headers', path, 426 (${mode.name})`, OPTS, async (t) => {
    const asked = [];
    const { wss, seen, url } = await echoServer(t, mode, {
      path: '/ws',
      verifyClient(info, cb) {
        asked.push({ origin: info.origin, secure: info.secure, url: info.req.url });
        setTimeout(() => (info.req.headers.authorization === 'ok' ? cb(true) : cb(false, 403, 'no entry', { 'X-Why': 'auth' })), 5);
      },
      handleProtocols: (protocols, req) => (req.url.endsWith('none') ? false : [...protocols].at(-1)),
    });
    wss.on('headers', (lines, req) => {
      if (req.url.includes('cookie')) lines.push('Set-Cookie: sid=1');
    });

    // Refused by the async verifyClient: status, message, headers.
    const refused = new WS(`${url}/ws`, { headers: { origin: 'http://o.example' } });
    const [, res] = await next(refused, 'unexpected-response');
    t.equal(res.statusCode, 403);
    t.equal(res.headers['x-why'], 'auth');
    let body = '';
    for await (const chunk of res) body += chunk;
    t.equal(body, 'no entry');
    refused.on('error', () => {});
    refused.terminate();
    t.same(asked[0], { origin: 'http://o.example', secure: false, url: '/ws' });

    // handleProtocols picks the last; 'headers' adds a cookie to the 101.
    const c = new WS(`${url}/ws?cookie`, ['a', 'b'], { headers: { authorization: 'ok' } });
    const [[upgradeRes]] = await Promise.all([next(c, 'upgrade'), next(c, 'open')]);
    t.equal(c.protocol, 'b');
    t.same(upgradeRes.headers['set-cookie'], ['sid=1']);
    // handleProtocols answering false: no subprotocol in the 101, which the
    // ws client refuses when it offered some (as against a ws server).
    const c2 = new WS(`${url}/ws?none`, ['a'], { headers: { authorization: 'ok' } });
    const [noProtocol] = await next(c2, 'error');
    t.equal(noProtocol.message, 'Server sent no subprotocol');
    await until(() => seen.connections.length === 2, 5000, 'connections');
    await until(() => seen.closes.length === 1, 5000, 'the refused one closed');

    // Another path: 400, as ws's shouldHandle answers; a plain request: 426.
    const other = new WS(`${url}/other`);
    const [, res400] = await next(other, 'unexpected-response');
    t.equal(res400.statusCode, 400);
    other.on('error', () => {});
    other.terminate();
    const plain = await fetch(`http://127.0.0.1:${portOf(wss)}/ws`);
    t.equal(plain.status, 426);
    t.equal(await plain.text(), 'Upgrade Required');
    c.close();
    await next(c, 'close');
  });

  t.test(`undici's WebSocket <-> netloop/ws server (${mode.name})`, OPTS, async (t) => {
    const { seen, url } = await echoServer(t, mode, { perMessageDeflate: true });
    const u = new UndiciWebSocket(`${url}/u`, ['x']);
    u.binaryType = 'arraybuffer';
    await new Promise((resolve, reject) => {
      u.onopen = resolve;
      u.onerror = reject;
    });
    t.equal(u.protocol, 'x');
    t.match(u.extensions, /permessage-deflate/);
    const msg = new Promise((resolve) => (u.onmessage = (e) => resolve(e.data)));
    u.send('x'.repeat(5000)); // over the threshold: compressed both ways
    t.equal(await msg, 'x'.repeat(5000));
    await until(() => seen.connections.length === 1, 5000, 'connection');
    t.equal(seen.connections[0].ws.extensions, 'permessage-deflate');
    const closed = new Promise((resolve) => (u.onclose = (e) => resolve([e.code, e.reason, e.wasClean])));
    u.close(3001, 'done');
    t.same(await closed, [3001, '', true]);
    await until(() => seen.closes.length === 1, 5000, 'server close');
    t.same(seen.closes[0], { code: 3001, reason: 'done' });
  });

  t.test(`noServer: handleUpgrade on the application's http server (${mode.name})`, OPTS, async (t) => {
    const wss = new WebSocketServer({ noServer: true, netloop: { engine: mode.engine } });
    t.throws(() => wss.address(), /noServer/);
    const server = http.createServer((req, res) => res.end('app'));
    server.on('upgrade', (req, socket, head) => {
      if (req.url !== '/live') return socket.destroy();
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    wss.on('connection', (ws) => {
      ws.binaryType = 'fragments';
      ws.on('message', (data, isBinary) => ws.send(Buffer.from(JSON.stringify({ fragments: Array.isArray(data), isBinary }))));
    });
    server.listen(0, '127.0.0.1');
    await next(server, 'listening');
    const c = await wsClient(`ws://127.0.0.1:${portOf(server)}/live`);
    t.equal(await (await fetch(`http://127.0.0.1:${portOf(server)}/`)).text(), 'app');
    c.send(Buffer.from('z'));
    const [reply] = await next(c, 'message');
    t.same(JSON.parse(reply.toString()), { fragments: true, isBinary: true });
    // close(): 'close' waits for the tracked client to go (ws 8).
    let serverClosed = false;
    wss.close(() => (serverClosed = true));
    await new Promise((r) => setTimeout(r, 50));
    t.notOk(serverClosed, "'close' waits for the clients");
    c.close(1000);
    await until(() => serverClosed, 5000, 'server close');
    await until(() => !wss.netloopEngine.running, 5000, 'engine stopped');
    await closeHttp(server);
  });
}

t.test('a protocol violation from a raw peer: error then close 1002', OPTS, async (t) => {
  const { seen, wss } = await echoServer(t, MODES[0]);
  const s = net.connect(portOf(wss), '127.0.0.1');
  await next(s, 'connect');
  s.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await until(() => seen.connections.length === 1, 5000, 'connection');
  s.end(cframe(0x1, Buffer.from([0xff]))); // invalid UTF-8, then FIN: the server need not wait for our close frame
  await until(() => seen.closes.length === 1, 5000, 'server close');
  t.same(seen.closes[0], { code: 1007, reason: '' });
  t.equal(seen.errors[0].code, 'WS_ERR_INVALID_UTF8');
  s.destroy();
});

t.test("netloop/ws's client <-> a real ws server", OPTS, async (t) => {
  const server = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: true, handleProtocols: (p) => (p.has('two') ? 'two' : false) });
  await next(server, 'listening');
  t.teardown(() => closeWss(server));
  const seen = [];
  server.on('connection', (ws, req) => {
    ws.on('message', (data, isBinary) => {
      seen.push(data.toString());
      if (data.toString() === 'close me') ws.close(4002, 'as asked');
      else ws.send(data, { binary: isBinary });
    });
    if (req.url === '/slow-ping') ws.ping('hello');
  });
  const url = `ws://127.0.0.1:${portOf(server)}`;

  const c = new WebSocket(`${url}/x`, ['one', 'two']);
  t.equal(c.readyState, WebSocket.CONNECTING);
  t.throws(() => c.send('early'), /readyState 0 \(CONNECTING\)/);
  const events = [];
  c.on('upgrade', (res) => events.push(`upgrade ${res.statusCode}`));
  c.on('open', () => events.push('open'));
  await next(c, 'open');
  t.same(events, ['upgrade 101', 'open']);
  t.equal(c.readyState, WebSocket.OPEN);
  t.equal(c.protocol, 'two');
  t.equal(c.extensions, 'permessage-deflate', 'offered by default, as ws does');
  t.equal(c.url, `${url}/x`);

  // The browser-style API over the same events.
  const viaProperty = [];
  const viaListener = [];
  c.onmessage = (e) => viaProperty.push(e.data);
  const listener = (e) => viaListener.push([typeof e.data, e.type]);
  c.addEventListener('message', listener);
  c.addEventListener('message', listener); // once only
  c.binaryType = 'arraybuffer';
  const [ab, isBinary] = await (async () => {
    const p = next(c, 'message');
    c.send(new Uint8Array([9, 8]));
    return p;
  })();
  t.ok(ab instanceof ArrayBuffer);
  t.same([[...new Uint8Array(ab)], isBinary], [[9, 8], true]);
  const p = next(c, 'message');
  c.send('text');
  await p;
  t.equal(viaProperty.at(-1), 'text', 'onmessage gets text as a string');
  t.same(viaListener, [['object', 'message'], ['string', 'message']]);
  c.removeEventListener('message', listener);
  c.onmessage = null;
  t.equal(c.listenerCount('message'), 0);

  // createWebSocketStream: a Duplex over the same WebSocket.
  c.binaryType = 'nodebuffer';
  const duplex = createWebSocketStream(c);
  const echoed = [];
  duplex.write('stream-a');
  const [chunk] = await next(duplex, 'data');
  echoed.push(chunk.toString());
  t.same(echoed, ['stream-a']);
  duplex.pause();

  // The server closes 4002: close (code, reason), readyState CLOSED, the stream ends.
  const closing = next(c, 'close');
  c.send('close me');
  const [code, reason] = await closing;
  t.same([code, reason.toString()], [4002, 'as asked']);
  t.equal(c.readyState, WebSocket.CLOSED);
  duplex.resume();
  await next(duplex, 'end');

  // A refusal: 'unexpected-response' with the status when listened for...
  const refuser = http.createServer();
  refuser.on('upgrade', (req, socket) => socket.on('error', () => {}).end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n'));
  refuser.listen(0, '127.0.0.1');
  await next(refuser, 'listening');
  const r1 = new WebSocket(`ws://127.0.0.1:${portOf(refuser)}/`);
  const [, res] = await next(r1, 'unexpected-response');
  t.equal(res.statusCode, 401);
  t.equal(res.headers['www-authenticate'], 'Basic');
  t.equal((await next(r1, 'close'))[0], 1006);
  // ...else 'error' then 'close' 1006.
  const r2 = new WebSocket(`ws://127.0.0.1:${portOf(refuser)}/`);
  const [err] = await next(r2, 'error');
  t.equal(err.status, 401);
  t.equal((await next(r2, 'close'))[0], 1006);
  await closeHttp(refuser);

  // close() while connecting: 'error', then 'close' 1006, nothing opens.
  const r3 = new WebSocket(`${url}/x`);
  r3.close();
  const [abortErr] = await next(r3, 'error');
  t.match(abortErr.message, /closed before the connection was established/);
  t.equal((await next(r3, 'close'))[0], 1006);
  t.equal(r3.readyState, WebSocket.CLOSED);

  // Pings from ws are answered and reported.
  const pinged = new WebSocket(`${url}/slow-ping`);
  const [pingData] = await next(pinged, 'ping');
  t.equal(pingData.toString(), 'hello');
  pinged.close(1000);
  await next(pinged, 'close');
  await until(() => server.clients.size === 0, 5000, 'ws clients gone');
});

t.test('a pipeline through createWebSocketStream, both ends netloop/ws', OPTS, async (t) => {
  const { url } = await echoServer(t, MODES[0]);
  const c = new WebSocket(url);
  const duplex = createWebSocketStream(c);
  const parts = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      parts.push(chunk.toString());
      if (parts.join('').length === 9) duplex.end(); // everything echoed: close
      cb();
    },
  });
  await Promise.all([pipeline(Readable.from(['abc', 'def', 'ghi']), duplex, sink).catch(() => {}), next(c, 'close', 8000)]);
  t.equal(parts.join(''), 'abcdefghi');
});
