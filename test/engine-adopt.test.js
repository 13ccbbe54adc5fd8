// Connections taken over from Node, in every I/O mode, on real loopback
// sockets:
// - Engine.adopt(): a net.Server's connection (bytes the client sent before
//   the hand-over included) becomes an engine connection: onOpen, every byte
//   in order, echo, the peer address, the close contract;
// - Upgrader.handleUpgrade(): a plain http.Server keeps answering its own
//   routes on the same port while its WebSocket upgrades are served by the
//   engine, against `ws` and undici clients (from npm); the frames a client
//   sends right behind its request (Node's `head`) arrive first; a refused
//   upgrade is answered on Node's socket.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { WebSocket as UndiciWebSocket } from 'undici';
import { Engine, Upgrader, EOFError } from '../dist/index.js';
import { fdCount, sleep, until, pattern } from './helpers/engine.js';
import { cframe, parseFrames, upgradeRequest } from './helpers/ws-peer.js';

const MODES = {
  nonblocking: { ioMode: 'nonblocking' },
  blocking: { ioMode: 'blocking' },
  mixed: { ioMode: 'mixed', maxBlockingOnline: 1 },
};

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

for (const [mode, modeOptions] of Object.entries(MODES)) {
  t.test(`${mode}: Engine.adopt() takes a net.Server's connection over, with the bytes Node read`, async (t) => {
    const fds = fdCount();
    const opens = [];
    const closes = [];
    const engine = new Engine({
      ...modeOptions,
      onOpen: (c) => opens.push(c),
      onData: (c, data) => c.write(data),
      onClose: (c, err) => closes.push({ c, err, remote: c.remoteAddr }),
    });
    await engine.start();
    const adopted = [];
    const server = net.createServer({ pauseOnConnect: false }, (socket) => {
      // Let Node read the first bytes before the hand-over.
      socket.once('readable', () => adopted.push(engine.adopt(socket)));
    });
    const port = await listen(server);
    const client = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    let got = Buffer.alloc(0);
    client.on('data', (d) => (got = Buffer.concat([got, d])));
    client.write('before the hand-over;');
    await until(() => adopted.length === 1, 5000, 'the adoption');
    const conn = await adopted[0];
    t.equal(opens.length, 1, 'onOpen once');
    t.equal(opens[0], conn, 'adopt() resolves the Conn onOpen saw');
    t.equal(conn.ioMode, mode === 'nonblocking' ? 'nonblocking' : 'blocking', 'served in the engine I/O mode');
    t.equal(conn.remoteAddr, `127.0.0.1:${client.localPort}`, "the peer address is the client's");
    await until(() => got.toString() === 'before the hand-over;', 5000, 'the bytes Node had read, echoed');
    const big = pattern(0, 3 * 1024 * 1024);
    client.write(big);
    await until(() => got.length === 21 + big.length, 10_000, 'a large echo');
    t.ok(got.subarray(21).equals(big), 'every byte, in order');
    const nodeCount = await new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    t.equal(nodeCount, 0, 'Node no longer holds the connection');
    client.end();
    await until(() => closes.length === 1, 5000, 'onClose');
    t.type(closes[0].err, EOFError, 'the close contract holds: EOFError for a FIN');
    server.close();
    await engine.stop();
    await until(() => fdCount() <= fds, 3000, 'no descriptor left: Node closed its copy, the engine its own');
  });

  t.test(`${mode}: handleUpgrade() on a plain http.Server: its routes answer, its WebSockets are the engine's`, async (t) => {
    const upgrader = new Upgrader({ path: '/ws' });
    const seen = [];
    const closes = [];
    upgrader.onOpen((c) => seen.push({ path: c.path, remote: c.remoteAddr, ioMode: c.ioMode }));
    upgrader.onMessage((c, type, data) => c.writeMessage(type, data));
    upgrader.onClose((c, err) => closes.push(err));
    const engine = new Engine({ upgrader, ...modeOptions });
    await engine.start();
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`route ${req.url}`);
    });
    server.on('upgrade', (req, socket, head) => {
      upgrader.handleUpgrade(req, socket, head).catch((err) => t.fail(String(err)));
    });
    const port = await listen(server);
    t.teardown(async () => {
      server.close();
      await engine.stop();
    });

    // The http server's own route, on the same port.
    const page = await new Promise((resolve, reject) => {
      http.get(`http://127.0.0.1:${port}/hello`, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      }).on('error', reject);
    });
    t.same(page, { status: 200, body: 'route /hello' }, 'the http server still answers its routes');

    // ws from npm.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const wsGot = [];
    ws.on('message', (d, isBinary) => wsGot.push([d.toString(), isBinary]));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('hello from ws');
    ws.send(Buffer.from([1, 2, 3]));
    await until(() => wsGot.length === 2, 5000, 'the ws echoes');
    t.same(wsGot, [['hello from ws', false], ['\u0001\u0002\u0003', true]], 'ws: text and binary echoed');
    t.equal(seen[0].remote, `127.0.0.1:${ws._socket.localPort}`, "the engine sees the client's address");
    t.equal(seen[0].ioMode, mode === 'nonblocking' ? 'nonblocking' : 'blocking');
    const wsClosed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(1000, 'bye');
    t.equal(await wsClosed, 1000, 'ws: clean close');

    // undici's WebSocket.
    const u = new UndiciWebSocket(`ws://127.0.0.1:${port}/ws`);
    const uGot = [];
    u.addEventListener('message', (e) => uGot.push(e.data));
    await new Promise((resolve, reject) => {
      u.addEventListener('open', resolve);
      u.addEventListener('error', reject);
    });
    u.send('hello from undici');
    await until(() => uGot.length === 1, 5000, 'the undici echo');
    t.equal(uGot[0], 'hello from undici', 'undici: echoed');
    u.close(1000);
    await until(() => closes.length === 2, 5000, 'both onClose');
    // A clean close: null on the poller, what the reader saw on a blocking
    // connection (the close contract).
    for (const err of closes) {
      if (mode === 'nonblocking') t.equal(err, null, 'clean close: null');
      else t.ok(err === null || err.name === 'NetClosedError' || err.name === 'EOFError', `clean close as a reader sees it: ${err?.name ?? null}`);
    }

    // A client that sends a frame in the same write as its request: Node
    // hands it over as `head`, and it is the first thing the engine parses.
    const raw = net.connect(port, '127.0.0.1');
    let rx = Buffer.alloc(0);
    raw.on('data', (d) => (rx = Buffer.concat([rx, d])));
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write(Buffer.concat([upgradeRequest({ path: '/ws' }), cframe(1, 'in the head')]));
    await until(() => rx.includes('\r\n\r\n') && parseFrames(rx.subarray(rx.indexOf('\r\n\r\n') + 4)).frames.length === 1, 5000, 'the echo of the head frame');
    t.match(rx.toString('latin1'), /^HTTP\/1\.1 101 /, '101 from the engine');
    const [frame] = parseFrames(rx.subarray(rx.indexOf('\r\n\r\n') + 4)).frames;
    t.equal(frame.payload.toString(), 'in the head', 'the frame behind the request head is echoed');
    raw.destroy();

    // A refused upgrade is answered on Node's socket.
    const refused = net.connect(port, '127.0.0.1');
    let ans = '';
    refused.on('data', (d) => (ans += d));
    await new Promise((resolve) => refused.once('connect', resolve));
    refused.write(upgradeRequest({ path: '/elsewhere' }));
    await new Promise((resolve) => refused.once('close', resolve));
    t.match(ans, /^HTTP\/1\.1 404 /, 'a path that does not upgrade: 404, then the socket closes');
  });
}

t.test('adopt() refuses what it cannot take over', async (t) => {
  const engine = new Engine({});
  await engine.start();
  t.teardown(() => engine.stop());
  await t.rejects(engine.adopt({}), { name: 'TypeError', message: /not a net\.Socket/ });
  const s = new net.Socket();
  await t.rejects(engine.adopt(s), { name: 'TypeError', message: /no descriptor/ });
  const upgrader = new Upgrader();
  await t.rejects(upgrader.handleUpgrade({}, s, Buffer.alloc(0)), /give this upgrader to an Engine first/);
  const stopped = new Engine({});
  const server = net.createServer((sock) => {
    stopped.adopt(sock).then(
      () => t.fail('adopted by a stopped engine'),
      (err) => t.match(err, { name: 'NetClosedError' }, 'a stopped engine refuses, and the socket is closed'),
    );
  });
  const port = await listen(server);
  const c = net.connect(port, '127.0.0.1');
  c.on('error', () => {});
  await new Promise((resolve) => c.once('close', resolve));
  server.close();
  await sleep(10);
});
