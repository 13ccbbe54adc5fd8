// TLS on connections the engine dials: Engine.dial(addr, { tls }) against
// Node's tls.createServer, and dial('wss://...') against a `ws` server on
// Node's https, in every I/O mode. Verification is on by default and its
// failures carry Node's codes, checked against what Node's own tls client
// reports for the same server.
import t from 'tap';
import tls from 'node:tls';
import https from 'node:https';
import crypto from 'node:crypto';
import { WebSocketServer } from 'ws';
import { Engine, dial, EOFError, TLSHandshakeError } from '../dist/index.js';
import { certs } from './helpers/certs.js';
import { signal } from './helpers/engine.js';

t.setTimeout(60_000);

const C = certs();
const MODES = ['nonblocking', 'blocking', 'mixed'];

async function nodeTlsServer(t, { cert = C.server, alpn, onSocket } = {}) {
  const server = tls.createServer({ cert: cert.cert, key: cert.key, ALPNProtocols: alpn }, (sock) => {
    sock.on('error', () => {});
    if (onSocket) onSocket(sock);
    else sock.pipe(sock);
  });
  server.on('tlsClientError', () => {});
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  return server.address().port;
}

async function client(t, extra = {}) {
  const sig = signal();
  const s = { got: [], closes: [], sig };
  s.engine = new Engine({
    onData: (c, d) => {
      s.got.push(Buffer.from(d));
      sig.poke();
    },
    onClose: (c, err) => {
      s.closes.push(err);
      sig.poke();
    },
    ...extra,
  });
  await s.engine.start();
  t.teardown(() => s.engine.stop());
  return s;
}

// What Node's tls client says about the same server: the reference for our codes.
function nodeVerdict(port, options) {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port, ...options });
    sock.once('secureConnect', () => (sock.destroy(), resolve(null)));
    sock.once('error', (err) => resolve(err.code));
  });
}

for (const ioMode of MODES) {
  t.test(`${ioMode}: Engine.dial with tls: exact bytes, Conn.tls, the server's close_notify is a clean EOF`, async (t) => {
    const port = await nodeTlsServer(t, {
      alpn: ['http/1.1'],
      onSocket: (sock) => {
        let n = 0;
        sock.on('data', (d) => {
          n += d.length;
          sock.write(d);
          if (n >= 200_000) sock.end(); // close_notify, then FIN
        });
      },
    });
    const s = await client(t, { ioMode });
    const conn = await s.engine.dial(`127.0.0.1:${port}`, { tls: { ca: C.ca, servername: 'localhost', alpn: ['http/1.1'] } });
    t.equal(conn.tls.protocol, 'TLSv1.3');
    t.equal(conn.tls.alpn, 'http/1.1', 'ALPN offered and agreed');
    const payload = crypto.randomBytes(200_000);
    conn.write(payload);
    await s.sig.until(() => s.closes.length === 1);
    t.ok(Buffer.concat(s.got).equals(payload), '200 KB echoed byte for byte');
    t.ok(s.closes[0] instanceof EOFError, `close_notify: EOFError (got ${s.closes[0]?.constructor.name})`);
  });
}

const REFUSALS = [
  ['an expired certificate', { cert: C.expired }, { ca: C.ca, servername: 'localhost' }, 'CERT_HAS_EXPIRED'],
  ['a certificate for another host', { cert: C.wrongHost }, { ca: C.ca, servername: 'localhost' }, 'ERR_TLS_CERT_ALTNAME_INVALID'],
  ['an address the certificate does not name', { cert: C.wrongHost }, { ca: C.ca }, 'ERR_TLS_CERT_ALTNAME_INVALID'],
  ['an unknown issuer', {}, { servername: 'localhost' }, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
];
for (const [what, serverOptions, tlsOptions, code] of REFUSALS) {
  t.test(`verification refuses ${what}: TLSHandshakeError ${code}, as Node's tls says`, async (t) => {
    const port = await nodeTlsServer(t, serverOptions);
    const s = await client(t);
    const err = await s.engine.dial(`127.0.0.1:${port}`, { tls: tlsOptions }).then(
      (c) => (c.closeAndClean(), null),
      (e) => e,
    );
    t.ok(err instanceof TLSHandshakeError, `TLSHandshakeError (got ${err?.constructor.name}: ${err?.message})`);
    t.equal(err.code, code);
    t.match(err.message, /certificate refused/);
    if (code !== 'ERR_TLS_CERT_ALTNAME_INVALID') {
      // Node checks the host name after the handshake, with its own wording; the verify codes are OpenSSL's in both.
      t.equal(await nodeVerdict(port, tlsOptions), code, "Node's tls client reports the same code");
    }
    t.equal(s.engine.stats().online, 0, 'nothing left open');
  });
}

t.test('rejectUnauthorized: false connects to a server nobody vouches for', async (t) => {
  const port = await nodeTlsServer(t, { cert: C.expired });
  const s = await client(t);
  const conn = await s.engine.dial(`127.0.0.1:${port}`, { tls: { rejectUnauthorized: false } });
  conn.write('anyway');
  await s.sig.until(() => Buffer.concat(s.got).length === 6);
  t.equal(Buffer.concat(s.got).toString(), 'anyway');
  conn.close();
});

t.test('a server that is not TLS: the dial rejects with a handshake error', async (t) => {
  const net = await import('node:net');
  const socks = [];
  const plain = net.createServer((sock) => socks.push(sock.on('error', () => {}).end('HTTP/1.1 400 Bad Request\r\n\r\n')));
  await new Promise((resolve) => plain.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const sock of socks) sock.destroy();
    plain.close();
  });
  const s = await client(t);
  const err = await s.engine.dial(`127.0.0.1:${plain.address().port}`, { tls: { ca: C.ca } }).then(() => null, (e) => e);
  t.ok(err instanceof TLSHandshakeError, `TLSHandshakeError (got ${err?.message})`);
  t.match(err.code, /^ERR_TLS_HANDSHAKE/);
});

for (const ioMode of MODES) {
  t.test(`${ioMode}: dial('wss://...') to ws on Node's https: messages both ways, closing handshake`, async (t) => {
    const server = https.createServer({ cert: C.server.cert, key: C.server.key });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary })));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise((resolve) => (wss.close(), server.close(resolve))));
    const engine = new Engine({ ioMode });
    await engine.start();
    t.teardown(() => engine.stop());
    const got = [];
    let closed;
    const done = new Promise((resolve) => (closed = resolve));
    const ws = await dial(`wss://localhost:${server.address().port}/`, {
      engine,
      tls: { ca: C.ca },
      onMessage: (c, type, data) => got.push({ type, data }),
      onClose: (c, err) => closed({ err, info: c.closeInfo }),
    });
    const big = crypto.randomBytes(256 * 1024);
    ws.writeMessage('text', 'over wss');
    ws.writeMessage('binary', big);
    const until = Date.now() + 10_000;
    while (got.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    t.equal(got[0]?.data.toString(), 'over wss');
    t.ok(got[1]?.data.equals(big), '256 KiB echoed');
    ws.writeClose(1000, 'done');
    const { info } = await done;
    t.equal(info.code, 1000, 'the server answered our close');
    t.equal(info.wasClean, true);
  });
}

t.test("dial('wss://...') refuses a server whose certificate is for another host", async (t) => {
  const server = https.createServer({ cert: C.wrongHost.cert, key: C.wrongHost.key });
  const wss = new WebSocketServer({ server });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => (wss.close(), server.close(resolve))));
  const err = await dial(`wss://localhost:${server.address().port}/`, { tls: { ca: C.ca } }).then(() => null, (e) => e);
  t.ok(err instanceof TLSHandshakeError);
  t.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  t.match(err.message, /not for localhost/, err.message);
});
