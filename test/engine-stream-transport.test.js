// Sockets whose descriptor cannot be taken over (TLS from Node's https and
// tls servers) are served through Node's stream with the same API and close
// contract (conn.transport === 'node-stream'), whatever the engine's I/O
// mode. Certificates are made by the test with Debian's openssl command;
// the peers are `ws` (from npm) over wss and Node's own tls client.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { Engine, Upgrader, EOFError, TimeoutError } from '../dist/index.js';
import { until } from './helpers/engine.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-tls-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
], { stdio: 'ignore' });
const key = fs.readFileSync(path.join(dir, 'key.pem'));
const cert = fs.readFileSync(path.join(dir, 'cert.pem'));

const MODES = ['nonblocking', 'blocking', 'mixed'];

for (const ioMode of MODES) {
  t.test(`${ioMode}: handleUpgrade() on an https server serves wss through Node's stream`, async (t) => {
    const upgrader = new Upgrader({ keepaliveTime: 0 });
    const opens = [];
    const closes = [];
    upgrader.onOpen((c) => opens.push(c));
    upgrader.onMessage((c, type, data) => c.writeMessage(type, data));
    upgrader.onClose((c, err) => closes.push({ err, info: { ...c.closeInfo } }));
    const engine = new Engine({ upgrader, ioMode });
    await engine.start();
    const server = https.createServer({ key, cert }, (req, res) => res.end('page'));
    const upgraded = [];
    server.on('upgrade', (req, socket, head) => upgraded.push(upgrader.handleUpgrade(req, socket, head)));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    t.teardown(async () => {
      server.close();
      await engine.stop();
    });
    const ws = new WebSocket(`wss://127.0.0.1:${port}/`, { ca: cert });
    const got = [];
    ws.on('message', (d, isBinary) => got.push([d.toString(), isBinary]));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const conn = await upgraded[0];
    t.equal(conn.transport, 'node-stream', "transport 'node-stream'");
    t.equal(conn.remoteAddr, `127.0.0.1:${ws._socket.localPort}`, "the client's address");
    ws.send('over tls');
    const big = Buffer.alloc(200_000, 7);
    ws.send(big);
    await until(() => got.length === 2, 5000, 'the echoes');
    t.same(got[0], ['over tls', false], 'text echoed');
    t.equal(got[1][0].length, big.length, 'a 200 KB binary message echoed');
    t.ok(conn.bufferedAmount >= 0, 'bufferedAmount answers');
    const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString()])));
    ws.close(4000, 'bye');
    t.same(await closed, [4000, ''], 'the close code echoed (RFC 6455 §5.5.1)');
    await until(() => closes.length === 1, 5000, 'onClose');
    t.match(closes[0].err, { name: 'CloseError', closeCode: 4000, reason: 'bye' }, 'onClose: CloseError 4000, as on the engine\'s own descriptors');
    t.match(closes[0].info, { code: 4000, reason: 'bye', wasClean: true, initiator: 'peer' });
  });
}

t.test('raw TCP: adopt() of a tls.Server connection: echo, deadlines, EOF', async (t) => {
  const closes = [];
  const engine = new Engine({
    onData: (c, d) => c.write(d),
    onClose: (c, err) => closes.push(err),
  });
  await engine.start();
  const adopted = [];
  const server = tls.createServer({ key, cert }, (socket) => adopted.push(engine.adopt(socket)));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    server.close();
    await engine.stop();
  });
  const port = server.address().port;

  const client = tls.connect({ port, host: '127.0.0.1', ca: cert });
  await new Promise((resolve) => client.once('secureConnect', resolve));
  let got = '';
  client.on('data', (d) => (got += d));
  client.write('hello over tls');
  await until(() => adopted.length === 1, 3000, 'the adoption');
  const conn = await adopted[0];
  t.equal(conn.transport, 'node-stream');
  await until(() => got === 'hello over tls', 3000, 'the echo');
  client.end();
  await until(() => closes.length === 1, 3000, 'onClose');
  t.type(closes[0], EOFError, "the peer's close: EOFError, as natively");

  // A read deadline on a silent peer.
  const silent = tls.connect({ port, host: '127.0.0.1', ca: cert });
  silent.on('error', () => {});
  await new Promise((resolve) => silent.once('secureConnect', resolve));
  await until(() => adopted.length === 2, 3000, 'the second adoption');
  const c2 = await adopted[1];
  c2.setReadTimeout(100);
  await until(() => closes.length === 2, 3000, 'the deadline');
  t.type(closes[1], TimeoutError, 'read deadline: TimeoutError');
  t.equal(closes[1].message, 'read timeout');
  silent.destroy();
});
