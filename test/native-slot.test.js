// What the 64-byte connection slot (issue 13) must not change, on real
// loopback sockets:
// - peer addresses: IPv4 kept inline, IPv4-mapped IPv6 (a dual-stack "[::]"
//   listener's IPv4 clients) kept inline, other IPv6 kept out of line, unix
//   sockets none; reported while open and in onClose, for accepted, dialed
//   and adopted connections, across slot reuse (an out-of-line address freed
//   and the slot given to an inline one, and back);
// - the write queue, which exists only while bytes wait: filled against a
//   paused reader, drained (onDrain, bufferedAmount 0), filled and drained
//   again on the same connection, every byte checked;
// - deadlines (read deadlines, the close timeout) still fire in deadline order.
import t from 'tap';
import net from 'node:net';
import { Engine, EOFError, TimeoutError } from '../dist/index.js';
import { fdCount, sleep, until, pattern } from './helpers/engine.js';

const KiB = 1024;
const MiB = 1024 * 1024;

const V6 = { skip: (await canListen('::1')) ? false : 'IPv6 loopback is not available here' };

const portOf = (addr) => Number(addr.split(':').pop());

function canListen(host) {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(0, host, () => probe.close(() => resolve(true)));
  });
}

/** An engine recording remoteAddr at open and in onClose, per connection. */
async function recordingEngine(t, addrs, options = {}) {
  const rec = { opens: [], closes: [] };
  const engine = new Engine({
    addrs,
    ...options,
    onOpen: (c) => rec.opens.push({ c, remote: c.remoteAddr }),
    onData: (c, d) => c.write(d),
    onClose: (c, err) => rec.closes.push({ c, err, remote: c.remoteAddr }),
  });
  await engine.start();
  t.teardown(() => engine.stop());
  return { engine, rec };
}

function connect(port, host, options = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, ...options });
    s.on('error', () => {});  // the tests that reset a peer look at the engine's side
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

// One connection at a time, closed by the client before the next, so that
// the next one reuses the slot the last one had.
async function oneAtATime(t, rec, port, hosts) {
  for (const [i, { host, expect }] of hosts.entries()) {
    const s = await connect(port, host);
    await until(() => rec.opens.length === i + 1, 5000, `open ${i}`);
    const want = expect(s.localPort);
    t.equal(rec.opens[i].remote, want, `connection ${i} (${host}): remoteAddr while open`);
    s.write('x');
    await new Promise((resolve) => s.once('data', resolve));
    s.end();
    await until(() => rec.closes.length === i + 1, 5000, `close ${i}`);
    t.equal(rec.closes[i].remote, want, `connection ${i}: remoteAddr in onClose`);
    s.destroy();
    await sleep(5);  // a batch boundary: the closed slot is free for the next one
  }
}

t.test('IPv4 peers on an IPv4 listener, slot after slot', async (t) => {
  const fds = fdCount();
  const { engine, rec } = await recordingEngine(t, ['127.0.0.1:0']);
  const port = portOf(engine.addresses()[0]);
  const v4 = { host: '127.0.0.1', expect: (p) => `127.0.0.1:${p}` };
  await oneAtATime(t, rec, port, [v4, v4, v4]);
  for (const { err } of rec.closes) t.ok(err instanceof EOFError, 'EOFError: the client closed');
  await engine.stop();
  t.equal(fdCount(), fds, 'every descriptor closed');
});

t.test('dual-stack listener: IPv4-mapped and IPv6 peers share reused slots', V6, async (t) => {
  const fds = fdCount();
  const { engine, rec } = await recordingEngine(t, ['[::]:0']);
  const port = portOf(engine.addresses()[0]);
  const mapped = { host: '127.0.0.1', expect: (p) => `[::ffff:127.0.0.1]:${p}` };
  const v6 = { host: '::1', expect: (p) => `[::1]:${p}` };
  // out of line, inline, out of line, inline: each slot reuse swaps the kind
  await oneAtATime(t, rec, port, [v6, mapped, v6, mapped, mapped, v6]);
  t.equal(engine.stats().online, 0, 'nothing left online');
  await engine.stop();
  t.equal(fdCount(), fds, 'every descriptor closed');
});

t.test('IPv6 and IPv4 peers held at once, closed by the engine', V6, async (t) => {
  const { engine, rec } = await recordingEngine(t, ['[::]:0']);
  const port = portOf(engine.addresses()[0]);
  const clients = [];
  for (let i = 0; i < 8; i++) clients.push(await connect(port, i % 2 === 0 ? '::1' : '127.0.0.1'));
  await until(() => rec.opens.length === 8, 5000, '8 opens');
  const want = new Set(clients.map((s, i) => (i % 2 === 0 ? `[::1]:${s.localPort}` : `[::ffff:127.0.0.1]:${s.localPort}`)));
  t.same(new Set(rec.opens.map((o) => o.remote)), want, 'every peer reported as it connected');
  for (const { c } of rec.opens) c.closeAndClean(null);
  await until(() => rec.closes.length === 8, 5000, '8 closes');
  t.same(new Set(rec.closes.map((o) => o.remote)), want, 'and the same in onClose');
  for (const s of clients) s.destroy();
});

t.test('dialed IPv6 peer and adopted IPv6 socket report [::1]', V6, async (t) => {
  const server = net.createServer();
  const accepted = [];
  server.on('connection', (s) => {
    s.on('error', () => {});  // reset by closeAndClean
    accepted.push(s);
  });
  await new Promise((resolve) => server.listen(0, '::1', resolve));
  t.teardown(() => server.close());
  const port = server.address().port;
  const { engine, rec } = await recordingEngine(t, []);
  const dialed = await engine.dial(`[::1]:${port}`);
  t.equal(dialed.remoteAddr, `[::1]:${port}`, 'dialed: the address dialed');
  await until(() => accepted.length === 1, 5000, 'the dial accepted');
  // Adopt the server side of a second connection: its peer is the client.
  const client = await connect(port, '::1');
  const clientPort = client.localPort;  // gone from the socket once it is reset
  await until(() => accepted.length === 2, 5000, 'the second accepted');
  const adopted = await engine.adopt(accepted[1]);
  t.equal(adopted.remoteAddr, `[::1]:${clientPort}`, "adopted: the client's address");
  dialed.closeAndClean(null);
  adopted.closeAndClean(null);
  await until(() => rec.closes.length === 2, 5000, 'both closed');
  t.same(
    rec.closes.map((o) => o.remote).sort(),
    [`[::1]:${clientPort}`, `[::1]:${port}`].sort(),
    'both still readable in onClose',
  );
  client.destroy();
  accepted[0].destroy();
});

t.test('write queue: fill, drain, fill again, drain; exact bytes', async (t) => {
  const fds = fdCount();
  const drains = [];
  const { engine, rec } = await recordingEngine(t, ['127.0.0.1:0'], {
    // No read pausing in the way: this test is about the queue itself.
    writeHighWaterMark: 0,
    onDrain: (c) => drains.push(c.bufferedAmount),
  });
  const port = portOf(engine.addresses()[0]);
  const client = await connect(port, '127.0.0.1');
  const got = [];
  let received = 0;
  client.on('data', (d) => {
    got.push(d);
    received += d.length;
  });
  client.pause();  // after on('data'), which would resume it
  await until(() => rec.opens.length === 1, 5000, 'open');
  const conn = rec.opens[0].c;
  t.equal(conn.bufferedAmount, 0, 'idle: nothing queued');

  let sent = 0;
  const ROUND = 8 * MiB;
  for (let round = 1; round <= 2; round++) {
    // 64 KiB writes until well past what the kernel buffers take.
    for (let n = 0; n < ROUND; n += 64 * KiB) {
      conn.write(pattern(sent, 64 * KiB));
      sent += 64 * KiB;
    }
    await sleep(20);
    t.ok(conn.bufferedAmount > 0, `round ${round}: bytes queued against the paused reader (${conn.bufferedAmount})`);
    t.equal(engine.stats().queuedBytes, conn.bufferedAmount, `round ${round}: the engine counts the same bytes`);
    const drainsBefore = drains.length;
    client.resume();
    await until(() => drains.length > drainsBefore, 10_000, `round ${round}: onDrain`);
    t.equal(drains.at(-1), 0, `round ${round}: bufferedAmount 0 in onDrain`);
    t.equal(engine.stats().queuedBytes, 0, `round ${round}: nothing queued in the engine`);
    await until(() => received === sent, 10_000, `round ${round}: every byte received`);
    client.pause();
  }
  const all = Buffer.concat(got);
  let exact = all.length === sent;
  for (let p = 0; exact && p < sent; p += MiB) exact = all.subarray(p, p + MiB).equals(pattern(p, MiB));
  t.ok(exact, `all ${sent} bytes in order, exact`);
  conn.close();
  await until(() => rec.closes.length === 1, 5000, 'close');
  t.equal(rec.closes[0].err, null, 'a graceful close with nothing lost');
  client.destroy();
  await engine.stop();
  t.equal(fdCount(), fds, 'every descriptor closed');
});

t.test('read deadlines and the close timeout fire in deadline order', async (t) => {
  const order = [];
  const { engine, rec } = await recordingEngine(t, ['127.0.0.1:0'], { closeTimeout: 150 });
  const port = portOf(engine.addresses()[0]);
  const clients = [];
  // allowHalfOpen: a client that does not answer our FIN with its own, so
  // that the graceful close below waits for closeTimeout.
  for (let i = 0; i < 5; i++) clients.push(await connect(port, '127.0.0.1', { allowHalfOpen: true }));
  await until(() => rec.opens.length === 5, 5000, '5 opens');
  const ports = clients.map((s) => s.localPort);  // kept: a socket forgets its port once closed
  const byPort = (c) => ports.findIndex((p) => c.remoteAddr === `127.0.0.1:${p}`);
  const conns = [0, 1, 2, 3, 4].map((i) => rec.opens.find((o) => byPort(o.c) === i).c);
  // Read timeouts set out of order (and one moved later, one cleared), plus
  // a graceful close whose peer never answers: it ends at closeTimeout.
  conns[0].setReadTimeout(250);
  conns[1].setReadTimeout(50);
  conns[2].setReadTimeout(20);
  conns[2].setReadTimeout(350);  // moved: now the last
  conns[3].setReadTimeout(100);
  conns[3].setReadTimeout(0);  // cleared: closed below instead
  conns[4].setReadTimeout(10_000);
  conns[4].close();  // FIN now; the client never closes: dropped at 150 ms
  const started = Date.now();
  await until(() => rec.closes.length === 4, 5000, '4 timed closes');
  for (const { c } of rec.closes) order.push(byPort(c));
  t.same(order, [1, 4, 0, 2], 'closed in deadline order: 50, 150 (close timeout), 250, 350 ms');
  t.ok(Date.now() - started >= 340, 'not before the last deadline');
  for (const { c, err } of rec.closes) {
    if (byPort(c) === 4) {
      t.equal(err, null, 'the close timeout: a local close');
    } else {
      t.ok(err instanceof TimeoutError, `read timeout: TimeoutError for ${byPort(c)}`);
    }
  }
  t.equal(rec.closes.filter(({ c }) => byPort(c) === 3).length, 0, 'the cleared deadline did not fire');
  conns[3].closeAndClean(null);
  await until(() => rec.closes.length === 5, 5000, 'the last close');
  for (const s of clients) s.destroy();
});
