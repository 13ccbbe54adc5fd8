// Attacks as tests (issue 8): peers that hold connections open by being
// slow or silent. Each case runs in every I/O mode against a server in its
// own process (helpers/attack-server.js) and checks the server's answer on
// the wire, its onClose reports, its descriptors, and that an honest `ws`
// client keeps its latency meanwhile.
import t from 'tap';
import { Peer } from './helpers/ws-peer.js';
import { MODES, checkHonest, fdsOf, honestClient, sleep, startAttackServer, until } from './helpers/attack.js';

t.setTimeout(120_000);

const SLOWLORIS_CONNS = 200;
const HANDSHAKE_TIMEOUT = 1500;
const HALF_OPEN_CONNS = 20;
const KEEPALIVE = 1500;

for (const mode of MODES) {
  t.test(`slowloris, ${mode}: ${SLOWLORIS_CONNS} heads at a byte every 200 ms are closed by the handshake timeout`, async (t) => {
    const s = await startAttackServer(t, mode, { upgrader: { handshakeTimeout: HANDSHAKE_TIMEOUT } });
    const honest = await honestClient(t, s.url);
    await sleep(100);
    const baseline = fdsOf(s.pid);
    const head = Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const peers = [];
    for (let i = 0; i < SLOWLORIS_CONNS; i++) peers.push(await Peer.connect(t, s.addr));
    const t0 = Date.now();
    // One timer for all of them: a byte each every 200 ms, the head never complete in time.
    let at = 0;
    const drip = setInterval(() => {
      for (const p of peers) if (!p.closed && !p.ended && at < head.length) p.write(head.subarray(at, at + 1));
      at++;
    }, 200);
    try {
      await until(() => peers.every((p) => p.ended || p.closed), HANDSHAKE_TIMEOUT + 5000, 'every slowloris connection closed by the server');
    } finally {
      clearInterval(drip);
    }
    const took = Date.now() - t0;
    t.ok(took >= HANDSHAKE_TIMEOUT - 300, `closed after the handshake timeout, not before (${took} ms)`);
    t.ok(at < head.length, `the heads were still incomplete (${at} of ${head.length} bytes sent)`);
    // No answer, or a 408: never a 101 nor another status.
    const answers = new Set(peers.map((p) => (p.total === 0 ? 'none' : p.raw.toString('latin1').split('\r\n')[0])));
    for (const a of answers) t.ok(a === 'none' || a.startsWith('HTTP/1.1 408'), `the server's answer: ${a}`);
    for (const p of peers) p.sock.destroy();
    await s.fdsBackTo(baseline);
    t.pass(`server descriptors back to ${baseline}`);
    checkHonest(t, await honest.stop(), 'slowloris');
    t.equal(s.opens.length, 1, 'only the honest client was upgraded');
    await s.stop();
    t.equal(s.exited.code, 0, 'the server exits cleanly');
  });

  t.test(`half-open, ${mode}: ${HALF_OPEN_CONNS} upgraded connections that go silent are closed by keepalive`, async (t) => {
    const s = await startAttackServer(t, mode, { upgrader: { keepaliveTime: KEEPALIVE } });
    const honest = await honestClient(t, s.url);
    await sleep(100);
    const baseline = fdsOf(s.pid);
    const peers = [];
    for (let i = 0; i < HALF_OPEN_CONNS; i++) {
      const p = await Peer.open(t, s.addr, { allowHalfOpen: true });
      p.sock.pause(); // never read again: the server's pings pile up unanswered
      peers.push(p);
    }
    const t0 = Date.now();
    await until(() => s.closes.length >= HALF_OPEN_CONNS, KEEPALIVE * 2 + 5000, `onClose for the ${HALF_OPEN_CONNS} silent connections`);
    const took = Date.now() - t0;
    t.ok(took >= KEEPALIVE - 300, `closed after the keepalive time, not before (${took} ms)`);
    for (const c of s.closes) {
      t.equal(c.err?.name, 'TimeoutError', `#${c.id} onClose err is a TimeoutError`);
      // The close contract: the poller reports its read deadline, a reader thread its i/o timeout.
      t.equal(c.err?.message, c.ioMode === 'blocking' ? 'i/o timeout' : 'read timeout', `#${c.id} (${c.ioMode}) message`);
    }
    // FIN (or a reset) from the server on every one of them.
    for (const p of peers) p.sock.resume();
    await until(() => peers.every((p) => p.ended || p.closed), 3000, 'the server closed every silent connection');
    t.pass('every silent connection saw the server close it');
    for (const p of peers) p.sock.destroy();
    await s.fdsBackTo(baseline);
    t.pass(`server descriptors back to ${baseline}`);
    checkHonest(t, await honest.stop(), 'half-open');
    await s.stop();
  });
}
