// TLS on the engine's own listeners (native/tls.cc, native/loop_tls.cc),
// against Node's tls and https clients and the ws client, in every I/O
// mode: echo of exact bytes, the close contract over TLS (close_notify is a
// clean EOF, FIN without it a truncation, a failed handshake its own error),
// handshake timeout and size limit, SNI, certificate reload, ALPN, session
// resumption and configuration errors that say what is wrong.
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import https from 'node:https';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { Engine, Upgrader, EOFError, TLSHandshakeError, TLSTruncationError } from '../dist/index.js';
import { certs } from './helpers/certs.js';
import { signal, until, sleep } from './helpers/engine.js';

t.setTimeout(60_000);

const C = certs();
const MODES = ['nonblocking', 'blocking', 'mixed'];

// A raw TCP echo engine with TLS; every callback recorded.
async function tlsEcho(t, { tls: tlsOptions = {}, ...extra } = {}) {
  const sig = signal();
  const s = { opened: [], closes: [], tlsErrors: [], sig };
  s.engine = new Engine({
    addrs: ['127.0.0.1:0'],
    tls: { cert: C.server.cert, key: C.server.key, ...tlsOptions },
    onOpen: (c) => {
      s.opened.push(c);
      sig.poke();
    },
    onData: (c, d) => c.write(d),
    onClose: (c, err) => {
      s.closes.push({ c, err });
      sig.poke();
    },
    onTLSError: (err, remote) => {
      s.tlsErrors.push({ err, remote });
      sig.poke();
    },
    ...extra,
  });
  await s.engine.start();
  t.teardown(() => s.engine.stop());
  s.port = Number(s.engine.addresses()[0].split(':').pop());
  return s;
}

function tlsConnect(port, options = {}) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: C.ca, ...options });
    sock.once('secureConnect', () => resolve(sock));
    sock.once('error', reject);
  });
}

function readN(sock, n) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let got = 0;
    const onData = (d) => {
      parts.push(d);
      got += d.length;
      if (got >= n) {
        sock.off('data', onData);
        resolve(Buffer.concat(parts));
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.once('close', () => got < n && reject(new Error(`closed after ${got} of ${n} bytes`)));
  });
}

for (const ioMode of MODES) {
  t.test(`${ioMode}: Node's tls client, exact bytes both ways, close_notify is a clean EOF`, async (t) => {
    const s = await tlsEcho(t, { ioMode });
    const sock = await tlsConnect(s.port);
    const payload = crypto.randomBytes(300_000); // several records, several slabs' worth of reads
    sock.write(payload);
    const back = await readN(sock, payload.length);
    t.ok(back.equals(payload), '300 KB echoed byte for byte');
    await s.sig.until(() => s.opened.length === 1);
    const info = s.opened[0].tls;
    t.equal(info.protocol, 'TLSv1.3', 'TLS 1.3 by default');
    t.equal(info.servername, 'localhost', 'the SNI name the client sent');
    t.equal(s.opened[0].ioMode, ioMode === 'nonblocking' ? 'nonblocking' : 'blocking');
    sock.end(); // close_notify, then FIN
    await s.sig.until(() => s.closes.length === 1);
    t.ok(s.closes[0].err instanceof EOFError, `close_notify + FIN: EOFError (got ${s.closes[0].err?.constructor.name})`);
    t.equal(s.engine.stats().tlsHandshakes, 1, 'one handshake counted');
  });

  t.test(`${ioMode}: FIN without close_notify is a TLSTruncationError`, async (t) => {
    const s = await tlsEcho(t, { ioMode });
    const raw = net.connect({ host: '127.0.0.1', port: s.port });
    await new Promise((resolve) => raw.once('connect', resolve));
    const sock = tls.connect({ socket: raw, servername: 'localhost', ca: C.ca });
    await new Promise((resolve) => sock.once('secureConnect', resolve));
    sock.write('ping');
    t.equal((await readN(sock, 4)).toString(), 'ping');
    raw.end(); // the TCP FIN under TLS's feet: no close_notify
    await s.sig.until(() => s.closes.length === 1);
    const err = s.closes[0].err;
    t.ok(err instanceof TLSTruncationError, `TLSTruncationError (got ${err?.constructor.name}: ${err?.message})`);
    t.equal(err.code, 'ERR_TLS_TRUNCATED');
    sock.destroy();
  });

  t.test(`${ioMode}: ws over wss, text and a 1 MiB binary message`, async (t) => {
    const up = new Upgrader({});
    up.onMessage((c, type, data) => c.writeMessage(type, data));
    const closes = [];
    up.onClose((c, err) => closes.push(err));
    const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, ioMode, tls: { cert: C.server.cert, key: C.server.key } });
    await engine.start();
    t.teardown(() => engine.stop());
    const ws = new WebSocket(`wss://localhost:${engine.addresses()[0].split(':').pop()}/`, { ca: C.ca });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const got = [];
    ws.on('message', (d, isBinary) => got.push({ d, isBinary }));
    const big = crypto.randomBytes(1 << 20);
    ws.send('héllo');
    ws.send(big);
    await until(() => got.length === 2, 10_000, 'two echoes');
    t.equal(got[0].d.toString(), 'héllo');
    t.ok(got[1].isBinary && got[1].d.equals(big), '1 MiB echoed');
    ws.close(1000, 'bye');
    const code = await new Promise((resolve) => ws.once('close', resolve));
    t.equal(code, 1000, 'closing handshake over TLS');
    await until(() => closes.length === 1, 5000, 'onClose');
  });
}

t.test('https client: ALPN http/1.1 is agreed, a plain HTTP answer comes back over TLS', async (t) => {
  const up = new Upgrader({ httpHandler: () => ({ status: 200, body: 'over tls\n' }) });
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, tls: { cert: C.server.cert, key: C.server.key, alpn: ['http/1.1'] } });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = Number(engine.addresses()[0].split(':').pop());
  const { status, body, alpn } = await new Promise((resolve, reject) => {
    const req = https.get({ host: 'localhost', port, path: '/', ca: C.ca, ALPNProtocols: ['http/1.1'], agent: false }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode, body: b, alpn: res.socket.alpnProtocol }));
    });
    req.on('error', reject);
  });
  t.equal(status, 200);
  t.equal(body, 'over tls\n');
  t.equal(alpn, 'http/1.1', 'ALPN agreed on http/1.1');
});

t.test('ALPN: a client offering no protocol the server speaks is refused', async (t) => {
  const s = await tlsEcho(t, { tls: { alpn: ['http/1.1'] } });
  const err = await tlsConnect(s.port, { ALPNProtocols: ['h2'] }).then(
    (sock) => (sock.destroy(), null),
    (e) => e,
  );
  t.ok(err instanceof Error, `the client's handshake failed (${err?.code})`);
  await s.sig.until(() => s.tlsErrors.length === 1);
  t.ok(s.tlsErrors[0].err instanceof TLSHandshakeError, 'onTLSError got a TLSHandshakeError');
  t.equal(s.opened.length, 0, 'onOpen never ran');
});

t.test('a failed handshake: onTLSError with the reason and the peer, onOpen never runs, nothing leaks', async (t) => {
  const s = await tlsEcho(t);
  const raw = net.connect({ host: '127.0.0.1', port: s.port });
  await new Promise((resolve) => raw.once('connect', resolve));
  raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // plain HTTP to a TLS port
  await s.sig.until(() => s.tlsErrors.length === 1);
  const { err, remote } = s.tlsErrors[0];
  t.ok(err instanceof TLSHandshakeError);
  t.equal(err.code, 'ERR_TLS_HANDSHAKE');
  t.match(err.message, /TLS handshake failed: .+/, `says why: ${err.message}`);
  t.equal(remote, `127.0.0.1:${raw.localPort}`, 'the peer address');
  await new Promise((resolve) => raw.once('close', resolve));
  t.equal(s.opened.length, 0);
  t.equal(s.engine.stats().tlsFailed, 1, 'stats().tlsFailed');
  t.equal(s.engine.stats().online, 0, 'no connection left');
});

t.test('handshake timeout: a silent peer is dropped after tlsHandshakeTimeout', async (t) => {
  const s = await tlsEcho(t, { tlsHandshakeTimeout: 150 });
  const raw = net.connect({ host: '127.0.0.1', port: s.port });
  const start = Date.now();
  await new Promise((resolve) => raw.once('close', resolve).resume());
  const ms = Date.now() - start;
  t.ok(ms >= 120 && ms < 3000, `dropped after ${ms} ms`);
  await s.sig.until(() => s.tlsErrors.length === 1);
  t.equal(s.tlsErrors[0].err.code, 'ERR_TLS_HANDSHAKE_TIMEOUT');
});

t.test('handshake size limit: a peer that floods its handshake is dropped', async (t) => {
  const s = await tlsEcho(t, { tlsMaxHandshakeSize: 4096 });
  const raw = net.connect({ host: '127.0.0.1', port: s.port });
  raw.on('error', () => {});
  await new Promise((resolve) => raw.once('connect', resolve));
  // A handshake record header announcing 16 KiB, then its body slowly:
  // OpenSSL waits for the whole record, the engine stops counting at 4 KiB.
  raw.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]));
  for (let i = 0; i < 8 && !raw.destroyed; i++) {
    raw.write(Buffer.alloc(1024, 1));
    await sleep(5);
  }
  await s.sig.until(() => s.tlsErrors.length === 1);
  t.equal(s.tlsErrors[0].err.code, 'ERR_TLS_HANDSHAKE_TOO_LARGE');
  raw.destroy();
});

t.test('SNI: the certificate for the name asked, the default one otherwise', async (t) => {
  const s = await tlsEcho(t, { tls: { sni: { 'second.test': { cert: C.sni.cert, key: C.sni.key } } } });
  const a = await tlsConnect(s.port, { servername: 'second.test' });
  t.equal(a.getPeerCertificate().subject.CN, 'second.test', 'SNI second.test: its own certificate');
  a.destroy();
  const b = await tlsConnect(s.port);
  t.equal(b.getPeerCertificate().subject.CN, 'localhost', 'SNI localhost: the default certificate');
  b.destroy();
});

t.test('setSecureContext: new handshakes get the new certificate, live connections keep working', async (t) => {
  const s = await tlsEcho(t);
  const live = await tlsConnect(s.port);
  t.equal(live.getPeerCertificate().subject.CN, 'localhost');
  s.engine.setSecureContext({ cert: C.sni.cert, key: C.sni.key });
  const fresh = await tlsConnect(s.port, { servername: 'second.test' });
  t.equal(fresh.getPeerCertificate().subject.CN, 'second.test', 'a new handshake: the new certificate');
  fresh.destroy();
  live.write('still here');
  t.equal((await readN(live, 10)).toString(), 'still here', 'the live connection is untouched');
  live.destroy();
  t.throws(() => s.engine.setSecureContext({ cert: C.sni.cert, key: C.server.key }), /tls.key does not match tls.cert/, 'a bad reload throws and changes nothing');
  const again = await tlsConnect(s.port, { servername: 'second.test' });
  t.equal(again.getPeerCertificate().subject.CN, 'second.test');
  again.destroy();
});

t.test('session tickets: a second connection resumes', async (t) => {
  const s = await tlsEcho(t);
  const first = await tlsConnect(s.port);
  const session = await new Promise((resolve) => first.once('session', resolve));
  first.end();
  const second = await tlsConnect(s.port, { session });
  t.ok(second.isSessionReused(), 'the session was resumed');
  second.write('x');
  await readN(second, 1);
  await s.sig.until(() => s.opened.length === 2);
  t.equal(s.opened[1].tls.resumed, true, 'Conn.tls.resumed');
  second.end();
});

t.test('TLS 1.2 only (maxVersion) with a cipher list', async (t) => {
  const s = await tlsEcho(t, { tls: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' } });
  const sock = await tlsConnect(s.port);
  t.equal(sock.getProtocol(), 'TLSv1.2');
  t.equal(sock.getCipher().name, 'ECDHE-ECDSA-AES128-GCM-SHA256');
  sock.write('tls12');
  t.equal((await readN(sock, 5)).toString(), 'tls12');
  sock.end();
});

t.test('client certificates: requestCert with the CA, refused without one', async (t) => {
  const s = await tlsEcho(t, { tls: { requestCert: true, ca: C.ca } });
  const ok = await tlsConnect(s.port, { cert: C.client.cert, key: C.client.key });
  ok.write('mtls');
  t.equal((await readN(ok, 4)).toString(), 'mtls', 'a client with a certificate from the CA');
  ok.end();
  const noCert = await tlsConnect(s.port).then(
    (sock) => new Promise((resolve) => {
      sock.on('error', resolve); // TLS 1.3: the refusal comes after the client's Finished
      sock.on('close', () => resolve(null));
      sock.write('x');
    }),
    (e) => e,
  );
  t.ok(noCert instanceof Error, `a client without one is refused (${noCert?.code})`);
  await s.sig.until(() => s.tlsErrors.length === 1);
  t.equal(s.opened.length, 1, 'only the first one opened');
});

t.test('configuration errors say what is wrong, at construction', async (t) => {
  const mk = (tlsOptions) => () => new Engine({ addrs: ['127.0.0.1:0'], onData() {}, tls: tlsOptions });
  t.throws(mk({ cert: 'not pem', key: C.server.key }), /tls\.cert is not PEM text/);
  t.throws(mk({ cert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', key: C.server.key }), /tls\.cert: no PEM certificate found/);
  t.throws(mk({ cert: C.server.cert }), /tls\.key is required/);
  t.throws(mk({ cert: C.server.cert, key: C.sni.key }), /tls\.key does not match tls\.cert/);
  t.throws(mk({ cert: C.server.cert, key: C.encryptedKey }), /tls\.key is encrypted: tls\.passphrase is required/);
  t.throws(mk({ cert: C.server.cert, key: C.encryptedKey, passphrase: 'wrong' }), /tls\.key: wrong passphrase/);
  t.throws(mk({ cert: C.server.cert, key: C.server.key, ciphers: 'NOPE-NOTHING' }), /tls\.ciphers: no cipher/);
  t.throws(mk({ cert: C.server.cert, key: C.server.key, minVersion: 'TLSv1.0' }), /tls\.minVersion must be 'TLSv1\.2' or 'TLSv1\.3'/);
  t.throws(mk({ cert: C.server.cert, key: C.server.key, crt: 'x' }), /unknown option 'crt' \(did you mean 'cert'\?\)/);
  t.throws(mk({ cert: C.server.cert, key: C.server.key, sni: { 'bad name!': { cert: C.sni.cert, key: C.sni.key } } }), /is not a host name/);
  // The right passphrase works.
  const s = await tlsEcho(t, { tls: { key: C.encryptedKey, passphrase: C.passphrase } });
  const sock = await tlsConnect(s.port);
  sock.write('enc');
  t.equal((await readN(sock, 3)).toString(), 'enc', 'an encrypted key with its passphrase');
  sock.end();
});

for (const ioMode of MODES) {
  t.test(`${ioMode}: resets mid-handshake and a stop with handshakes pending leave nothing behind`, async (t) => {
    const s = await tlsEcho(t, { ioMode });
    const raws = [];
    for (let i = 0; i < 10; i++) {
      const raw = net.connect({ host: '127.0.0.1', port: s.port });
      raw.on('error', () => {});
      raws.push(raw);
    }
    await Promise.all(raws.map((r) => new Promise((resolve) => r.once('connect', resolve))));
    // Half of them start a handshake and reset; the rest stay silent until the stop.
    const hello = await new Promise((resolve) => {
      const probe = net.createServer((sock) => sock.once('data', (d) => (resolve(d), sock.destroy(), probe.close())));
      probe.listen(0, '127.0.0.1', () => {
        const c = tls.connect({ port: probe.address().port, host: '127.0.0.1', servername: 'localhost' });
        c.on('error', () => {});
      });
    });
    for (let i = 0; i < 5; i++) {
      raws[i].write(hello);
      raws[i].resetAndDestroy();
    }
    await until(() => s.engine.stats().tlsFailed >= 5, 5000, 'five failed handshakes');
    const live = await tlsConnect(s.port);
    live.write('ok');
    t.equal((await readN(live, 2)).toString(), 'ok', 'the engine still serves');
    await s.engine.stop();
    t.equal(s.closes.length, 1, 'only the opened connection got onClose');
    for (const r of raws) r.destroy();
    live.destroy();
  });
}
