// setSecureContext in the primary of an engine with `workers`: checked in
// the primary, then applied by every worker process (engine-wide and per
// address, SNI certificates included), and by a worker that restarts later.
// Real worker processes, real TLS clients (node:tls); which worker served a
// handshake is told by its greeting (the fixture writes its pid).
import t from 'tap';
import tls from 'node:tls';
import v8 from 'node:v8';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Engine } from '../dist/index.js';
import { serverOptionsCopy } from '../dist/tls.js';
import { selfSigned } from '../dist/cli/self-signed.js';
import { certs } from './helpers/certs.js';
import { until } from './helpers/engine.js';

t.setTimeout(60_000);

const C = certs();
const SERVER = { cert: C.server.cert, key: C.server.key };
const RENEWED = selfSigned(['localhost', '127.0.0.1']);
const OWN = selfSigned(['localhost', '127.0.0.1']);
const SNI = selfSigned(['sni.test']);
const fingerprint = (pem) => new X509Certificate(pem).fingerprint256;
const port = (addr) => Number(addr.split(':').pop());
const HANDSHAKES = 20; // SO_REUSEPORT hashes each source port to a worker: 20 reach both but with odds of 2^-19

function supervised(t, script) {
  const listening = [];
  const exits = [];
  const engine = new Engine({
    addrs: ['127.0.0.1:0', { addr: '127.0.0.1:0', tls: SERVER }],
    tls: SERVER,
    workers: 2,
    supervisor: {
      script: fileURLToPath(new URL(`./fixtures/${script}`, import.meta.url)),
      execArgv: [],
      env: { ...process.env, NETLOOP_TEST_TLS_DIR: C.dir },
      restartDelay: 20,
      onWorkerListening: (w) => listening.push(w),
      onWorkerExit: (e) => exits.push(e),
    },
  });
  t.teardown(() => engine.stop());
  return { engine, listening, exits };
}

// One handshake (no verification: which certificate, not whether trusted):
// the certificate's fingerprint and the pid of the worker that served it.
async function handshake(p, servername) {
  const sock = tls.connect({ host: '127.0.0.1', port: p, servername, rejectUnauthorized: false });
  try {
    const greeting = new Promise((resolve, reject) => {
      sock.once('data', (d) => resolve(d.toString()));
      sock.once('error', reject);
    });
    await new Promise((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    const served = sock.getPeerCertificate().fingerprint256;
    const pid = Number(/^pid (\d+)\n$/.exec(await greeting)?.[1]);
    return { fingerprint: served, pid };
  } finally {
    sock.destroy();
  }
}

// HANDSHAKES new connections, one after the other (each from a new source
// port): the fingerprints served and the set of workers that served them.
async function survey(p, servername = 'localhost') {
  const all = [];
  for (let i = 0; i < HANDSHAKES; i++) all.push(await handshake(p, servername));
  return { fingerprints: [...new Set(all.map((h) => h.fingerprint))], pids: [...new Set(all.map((h) => h.pid))].sort() };
}

// Every worker has handled the primary's messages sent before this: the
// stats request travels behind them on each worker's channel.
const delivered = (engine) => engine.workerStats();

t.test('the TLS options a primary sends survive the structured clone, field by field', async (t) => {
  const all = {
    cert: Buffer.from(RENEWED.cert),
    key: [Buffer.from(RENEWED.key)],
    passphrase: 'not needed',
    ca: [C.ca, Buffer.from(C.ca)],
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    ciphersuites: 'TLS_AES_128_GCM_SHA256',
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    alpn: ['http/1.1'],
    requestCert: true,
    rejectUnauthorized: false,
    sni: { 'sni.test': { cert: SNI.cert, key: Buffer.from(SNI.key), passphrase: 'x' } },
    sessionTimeout: 60,
  };
  const back = v8.deserialize(v8.serialize(serverOptionsCopy(all)));
  t.same(back, all, 'every field, with its value');
  t.ok(Buffer.isBuffer(back.cert) && Buffer.isBuffer(back.key[0]) && Buffer.isBuffer(back.sni['sni.test'].key), 'Buffers arrive as Buffers');
  // Fields the options do not own (inherited) would not cross a clone as they are.
  const inherited = serverOptionsCopy(Object.create(SERVER));
  t.same(v8.deserialize(v8.serialize(inherited)), SERVER, 'inherited fields are copied into the message');
});

t.test('workers: setSecureContext in the primary reaches every worker, and a restarted one', async (t) => {
  const { engine, listening, exits } = supervised(t, 'tls-reload-worker.js');
  await engine.start();
  const [inherit, own] = engine.addresses();
  const pids = listening.map((w) => w.pid).sort();
  t.same(await survey(port(inherit)), { fingerprints: [fingerprint(SERVER.cert)], pids }, 'both workers serve the certificate of the options');

  t.throws(() => engine.setSecureContext({ cert: SNI.cert, key: RENEWED.key }), /does not match/, 'a bad certificate throws in the primary');
  // Buffers and an SNI certificate: what must cross the IPC channel intact.
  engine.setSecureContext({ cert: Buffer.from(RENEWED.cert), key: [Buffer.from(RENEWED.key)], sni: { 'sni.test': SNI }, sessionTimeout: 60 });
  await delivered(engine);
  t.same(await survey(port(inherit)), { fingerprints: [fingerprint(RENEWED.cert)], pids }, 'engine-wide: every new handshake in both workers gets the renewed certificate');
  t.same(await survey(port(inherit), 'sni.test'), { fingerprints: [fingerprint(SNI.cert)], pids }, 'and its SNI certificate');
  t.same((await survey(port(own))).fingerprints, [fingerprint(SERVER.cert)], 'the address with its own certificate keeps it');

  engine.setSecureContext(OWN, own);
  await delivered(engine);
  t.same(await survey(port(own)), { fingerprints: [fingerprint(OWN.cert)], pids }, 'per address: both workers serve the new one there');
  t.same((await survey(port(inherit))).fingerprints, [fingerprint(RENEWED.cert)], 'and the engine-wide one elsewhere');
  t.throws(() => engine.setSecureContext(OWN, '127.0.0.1:1'), { name: 'TypeError', message: /not one of this engine's addresses/ });

  const victim = listening[0].pid;
  process.kill(victim, 'SIGKILL');
  await until(() => listening.length === 3, 10_000, 'the restarted worker');
  t.same(exits.map((e) => [e.pid, e.reason]), [[victim, 'crashed']], 'the killed worker was reported and restarted');
  t.equal(listening[2].restarts, 1);
  await delivered(engine);
  const now = [listening[1].pid, listening[2].pid].sort();
  t.same(await survey(port(inherit)), { fingerprints: [fingerprint(RENEWED.cert)], pids: now }, 'the restarted worker serves the renewed engine-wide certificate too');
  t.same(await survey(port(own)), { fingerprints: [fingerprint(OWN.cert)], pids: now }, 'and the renewed per-address one');
  await engine.stop();
  t.same(exits.slice(1).map((e) => e.reason), ['stopped', 'stopped']);
});

t.test('workers: a worker that cannot apply the settings is reported as a warning and keeps its own', async (t) => {
  // The primary has an engine-wide tls; the workers' script (tls-addrs-worker.js) has none.
  const { engine } = supervised(t, 'tls-addrs-worker.js');
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  await engine.start();
  const own = engine.addresses()[1];
  engine.setSecureContext(RENEWED);
  await delivered(engine);
  await until(() => warnings.length === 2, 5000, 'a warning per worker');
  t.same(warnings.map((w) => w.workerId).sort(), [1, 2], 'each names its worker');
  for (const w of warnings) t.match(w.message, /^worker [12] kept its previous TLS settings: setSecureContext\(\): this engine was started without tls for all its addresses/);
  t.same((await survey(port(own))).fingerprints, [fingerprint(SERVER.cert)], 'the workers serve what they had');
  await engine.stop();
});

t.test('a primary without an engine-wide tls refuses an engine-wide reload, before and after start', async (t) => {
  const engine = new Engine({
    addrs: [{ addr: '127.0.0.1:0', tls: SERVER }],
    workers: 1,
    supervisor: { script: fileURLToPath(new URL('./fixtures/tls-reload-worker.js', import.meta.url)) },
  });
  t.throws(() => engine.setSecureContext(RENEWED), { message: 'setSecureContext(): this engine has no tls for all its addresses: name the address, setSecureContext(tls, addr)' });
  t.throws(() => engine.setSecureContext(RENEWED, '127.0.0.1:1'), { name: 'TypeError', message: /not one of this engine's addresses/ });
  await engine.stop();
});
