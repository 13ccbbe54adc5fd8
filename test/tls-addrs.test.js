// TLS per address (EngineOptions.addrs entries { addr, tls }): a plain
// port and a TLS port in one engine, in every I/O mode, with the ws client
// over ws:// and wss://; two TLS ports with certificates from different
// issuers; `tls: false` against the engine-wide tls; bad entries; and what
// setSecureContext changes with and without an address.
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Engine, Upgrader } from '../dist/index.js';
import { selfSigned } from '../dist/cli/self-signed.js';
import { certs } from './helpers/certs.js';
import { until } from './helpers/engine.js';

t.setTimeout(60_000);

const C = certs();
const SERVER = { cert: C.server.cert, key: C.server.key };
// Another issuer: a self-signed certificate, its own root.
const OTHER = selfSigned(['second.test', '127.0.0.1']);
const port = (addr) => Number(addr.split(':').pop());

async function wsOpen(url, options = {}) {
  const ws = new WebSocket(url, options);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

async function echoOnce(ws, text) {
  const reply = new Promise((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send(text);
  return reply;
}

function tlsConnect(p, options) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port: p, ...options });
    sock.once('secureConnect', () => resolve(sock));
    sock.once('error', reject);
  });
}

// The subject CN a new handshake on `p` presents (no verification: which certificate, not whether trusted).
async function certOn(p) {
  const sock = await tlsConnect(p, { rejectUnauthorized: false, servername: 'localhost' });
  const cn = sock.getPeerCertificate().subject.CN;
  sock.destroy();
  return cn;
}

function rawEcho(p, bytes) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(p, '127.0.0.1', () => sock.write(bytes));
    const got = [];
    sock.on('data', (d) => {
      got.push(d);
      if (Buffer.concat(got).length >= bytes.length) sock.end();
    });
    sock.once('close', () => resolve(Buffer.concat(got)));
    sock.once('error', reject);
  });
}

for (const ioMode of ['nonblocking', 'blocking', 'mixed']) {
  t.test(`${ioMode}: a plain and a TLS address in one engine, ws:// and wss:// at once`, async (t) => {
    const up = new Upgrader({});
    const opened = [];
    up.onOpen((c) => opened.push(c));
    up.onMessage((c, type, data) => c.writeMessage(type, Buffer.concat([Buffer.from(c.tls ? 'tls:' : 'plain:'), data])));
    const closes = [];
    up.onClose((c, err) => closes.push(err));
    const engine = new Engine({ addrs: ['127.0.0.1:0', { addr: '127.0.0.1:0', tls: SERVER }], upgrader: up, ioMode, maxBlockingOnline: 1 });
    await engine.start();
    t.teardown(() => engine.stop());
    const [plainAddr, tlsAddr] = engine.addresses();
    t.not(plainAddr, tlsAddr, 'two listeners');
    const plain = await wsOpen(`ws://${plainAddr}/`);
    const secure = await wsOpen(`wss://localhost:${port(tlsAddr)}/`, { ca: C.ca });
    const [a, b] = await Promise.all([echoOnce(plain, 'one'), echoOnce(secure, 'two')]);
    t.equal(a, 'plain:one', 'the plain address serves plain TCP');
    t.equal(b, 'tls:two', 'the TLS address serves TLS');
    t.equal(opened[1].tls.protocol, 'TLSv1.3');
    t.equal(opened[0].tls, undefined, 'no TLS facts on the plain connection');
    if (ioMode === 'mixed') t.same(opened.map((c) => c.ioMode), ['blocking', 'nonblocking'], 'one on a thread, one on the poller');
    else t.same(opened.map((c) => c.ioMode), [ioMode, ioMode]);
    plain.close(1000);
    secure.close(1000);
    await until(() => closes.length === 2, 5000, 'both closes');
  });
}

t.test('two TLS addresses with certificates from different issuers: each client verifies its own', async (t) => {
  const engine = new Engine({
    addrs: [{ addr: '127.0.0.1:0', tls: SERVER }, { addr: '127.0.0.1:0', tls: OTHER }],
    onData: (c, d) => c.write(d),
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const [a, b] = engine.addresses().map(port);
  const first = await tlsConnect(a, { ca: C.ca, servername: 'localhost' });
  t.equal(first.getPeerCertificate().subject.CN, 'localhost');
  const second = await tlsConnect(b, { ca: OTHER.cert, servername: 'second.test' });
  t.equal(second.getPeerCertificate().subject.CN, 'second.test');
  for (const [sock, text] of [[first, 'first'], [second, 'second']]) {
    const got = new Promise((resolve) => sock.once('data', (d) => resolve(d.toString())));
    sock.write(text);
    t.equal(await got, text, `echo over ${text}`);
    sock.end();
  }
  await t.rejects(tlsConnect(b, { ca: C.ca, servername: 'second.test' }), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, "the test CA does not vouch for the other address's certificate");
  await t.rejects(tlsConnect(a, { ca: OTHER.cert, servername: 'localhost' }), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'nor the other way round');
});

t.test('tls: false serves plain TCP on that address beside the engine-wide tls', async (t) => {
  const engine = new Engine({ addrs: [{ addr: '127.0.0.1:0', tls: false }, '127.0.0.1:0'], tls: SERVER, onData: (c, d) => c.write(d) });
  await engine.start();
  t.teardown(() => engine.stop());
  const [plain, secure] = engine.addresses().map(port);
  const bytes = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]); // even what looks like a TLS record is echoed
  t.same(await rawEcho(plain, bytes), bytes, 'exact bytes back, no TLS');
  const sock = await tlsConnect(secure, { ca: C.ca, servername: 'localhost' });
  t.equal(sock.getPeerCertificate().subject.CN, 'localhost', 'the string entry uses the engine-wide tls');
  sock.destroy();
  t.same(engine.options.addrs, [{ addr: '127.0.0.1:0', tls: false }, '127.0.0.1:0'], 'options.addrs: the entries as given');
  t.ok(Object.isFrozen(engine.options.addrs[0]), 'an object entry is a frozen copy');
});

t.test('bad addrs entries throw TypeErrors that name the entry', async (t) => {
  const make = (addrs, extra = {}) => () => new Engine({ addrs, ...extra });
  const cases = [
    ['127.0.0.1:0', /^addrs must be an array of addresses/],
    [[42], /^addrs\[0\] must be an address string or \{ addr, tls \}, got number$/],
    [['127.0.0.1:0', null], /^addrs\[1\] must be an address string or \{ addr, tls \}, got null$/],
    [[{ addr: '127.0.0.1:0', port: 1 }], /^addrs\[0\]: unknown option 'port'/],
    [[{ addr: '127.0.0.1:0', cert: SERVER.cert }], /^addrs\[0\]: unknown option 'cert' \(TLS settings go in addrs\[0\]\.tls/],
    [[{ tls: false }], /^addrs\[0\]\.addr is required/],
    [[{ addr: 'ws://localhost:8080' }], /^addrs\[0\]\.addr: address "ws:\/\/localhost:8080"/],
    [[{ addr: '127.0.0.1' }], /^addrs\[0\]\.addr: address "127\.0\.0\.1": missing ":port"/],
    [[{ addr: '127.0.0.1:0', tls: true }], /^addrs\[0\]\.tls must be TLS options .* or false \(plain TCP\), got true: leave it out to use the engine's tls$/],
    [[{ addr: '127.0.0.1:0', tls: { ...SERVER, bogus: 1 } }], /^addrs\[0\]\.tls: unknown option 'bogus'/],
    [[{ addr: '127.0.0.1:0', tls: { cert: SERVER.cert } }], /^addrs\[0\]\.tls\.key is required/],
    [[{ addr: '127.0.0.1:0', tls: { cert: C.sni.cert, key: C.server.key } }], /^addrs\[0\]\.tls: .*does not match/],
  ];
  for (const [addrs, message] of cases) t.throws(make(addrs), { name: 'TypeError', message }, JSON.stringify(addrs).slice(0, 80));
});

t.test('setSecureContext: without an address the engine-wide settings, with one that address only', async (t) => {
  const third = selfSigned(['third.test']);
  const fourth = selfSigned(['fourth.test']);
  const engine = new Engine({
    addrs: ['127.0.0.1:0', { addr: '127.0.0.1:0', tls: OTHER }, { addr: '127.0.0.1:0', tls: false }],
    tls: SERVER,
    onData: (c, d) => c.write(d),
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const [inherit, own, plain] = engine.addresses();
  t.same([await certOn(port(inherit)), await certOn(port(own))], ['localhost', 'second.test']);

  engine.setSecureContext({ cert: C.sni.cert, key: C.sni.key });
  t.same([await certOn(port(inherit)), await certOn(port(own))], ['second.test', 'second.test'], 'engine-wide: the inheriting address only');
  t.equal((await tlsConnect(port(own), { ca: OTHER.cert, servername: 'second.test' }).then((s) => (s.destroy(), 'verified'))), 'verified', 'the own address kept its own certificate');

  engine.setSecureContext(third, own);
  t.equal(await certOn(port(own)), 'third.test', 'named by its bound address: that address');
  t.equal(await certOn(port(inherit)), 'second.test', 'the others untouched');

  engine.setSecureContext(fourth, inherit);
  t.equal(await certOn(port(inherit)), 'fourth.test', 'an inheriting address named: its own settings from now on');
  engine.setSecureContext(SERVER);
  t.same([await certOn(port(inherit)), await certOn(port(own))], ['fourth.test', 'third.test'], 'so an engine-wide reload no longer touches it');

  t.throws(() => engine.setSecureContext(SERVER, plain), { message: `setSecureContext(tls, '${plain}'): that address serves plain TCP` });
  t.throws(() => engine.setSecureContext(SERVER, '127.0.0.1:0'), { name: 'TypeError', message: /several addresses are written so/ });
  t.throws(() => engine.setSecureContext(SERVER, '10.0.0.1:1'), { name: 'TypeError', message: /not one of this engine's addresses/ });
  t.throws(() => engine.setSecureContext({ cert: C.sni.cert, key: C.server.key }, own), /does not match/, 'a bad reload throws');
  t.equal(await certOn(port(own)), 'third.test', 'and changes nothing');
  t.same(await rawEcho(port(plain), Buffer.from('plain still')), Buffer.from('plain still'));
});

t.test('setSecureContext without an address on an engine whose TLS is all per address', async (t) => {
  const engine = new Engine({ addrs: [{ addr: '127.0.0.1:0', tls: SERVER }, '127.0.0.1:0'] });
  await engine.start();
  t.teardown(() => engine.stop());
  t.throws(() => engine.setSecureContext(OTHER), { message: /started without tls for all its addresses: name the address, setSecureContext\(tls, addr\)/ });
  engine.setSecureContext(OTHER, '127.0.0.1:0'.replace(/0$/, String(port(engine.addresses()[0]))));
  t.equal(await certOn(port(engine.addresses()[0])), 'second.test');
  t.throws(() => engine.setSecureContext(OTHER, engine.addresses()[1]), /serves plain TCP/, 'the string entry: plain (no engine-wide tls)');
});

t.test('workers: each worker serves the plain and the TLS address on the ports the first one got', async (t) => {
  const engine = new Engine({
    addrs: ['127.0.0.1:0', { addr: '127.0.0.1:0', tls: SERVER }],
    workers: 2,
    supervisor: {
      script: fileURLToPath(new URL('./fixtures/tls-addrs-worker.js', import.meta.url)),
      execArgv: [],
      env: { ...process.env, NETLOOP_TEST_TLS_DIR: C.dir },
    },
  });
  t.teardown(() => engine.stop());
  await engine.start();
  const [plain, secure] = engine.addresses().map(port);
  t.ok(plain > 0 && secure > 0 && plain !== secure, `two ports: ${engine.addresses().join(', ')}`);
  const greeting = (sock) => new Promise((resolve) => sock.once('data', (d) => resolve(d.toString())));
  const raw = net.connect(plain, '127.0.0.1');
  t.match(await greeting(raw), /^pid \d+\n$/, 'plain: greeted by a worker');
  raw.destroy();
  const sock = await tlsConnect(secure, { ca: C.ca, servername: 'localhost' });
  t.match(await greeting(sock), /^pid \d+\n$/, 'TLS, verified: greeted by a worker');
  sock.destroy();
  await engine.stop();
});
