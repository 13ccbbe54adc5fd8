// One soak generator process (bench/scenarios/soak.js forks several: one process may hold at
// most 20,000 descriptors here). It keeps `conns` WebSocket connections alive with the `ws`
// client, each living one cycle: connect, `messages` messages (one every `intervalMs`, each
// echo checked byte for byte against a pattern of its own), then one of the close paths below,
// taken in turn, each with what the server must answer. Then the slot connects again, until
// the end. Correctness, not speed: a JS client is fine here.
//
//   close1000    close 1000 -> 1000 echoed
//   close1001    close 1001 -> 1001 echoed
//   protocol     an unmasked frame -> the server's close 1002
//   utf8         a text frame with invalid UTF-8 -> 1007
//   drop         FIN without a close frame -> the server's FIN
//   reset        RST (SO_LINGER 0)
//   silent       says nothing, answers no ping -> the server's keepalive closes it (FIN, no frame)
//   serverClose  "close please" -> the server's writeClose(1000), answered
//
// argv[2]: JSON { host, port, conns, durationS, rampS, intervalMs, messages, keepaliveMs, sourceIps, id }.
// IPC out: { type: 'tick', ...counters } every second and { type: 'done', ...counters } at the end.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const o = JSON.parse(process.argv[2]);
const PATHS = ['close1000', 'close1001', 'protocol', 'utf8', 'drop', 'reset', 'silent', 'serverClose'];

const c = {
  online: 0,
  connects: 0,
  echoed: 0,
  echoedBytes: 0,
  errors: 0,
  verifyFailures: 0,
  cycles: Object.fromEntries(PATHS.map((p) => [p, 0])),
  errorKinds: {},
  errorSamples: [],
  // This process's own event-loop delay, worst so far (ms): a generator too busy to answer the
  // server's pings in time makes the server's keepalive close healthy connections, which would
  // read as the server's fault without it.
  loopDelayMaxMs: 0,
};
const loopDelay = monitorEventLoopDelay({ resolution: 20 });
loopDelay.enable();
function error(kind, detail) {
  c.errors++;
  c.errorKinds[kind] = (c.errorKinds[kind] ?? 0) + 1;
  // The first 3 of each kind, so that a flood of one kind does not hide the others.
  if (c.errorKinds[kind] <= 3 && c.errorSamples.length < 20) c.errorSamples.push(`${kind}: ${detail}`);
}

// A message's bytes from (generator, connection serial, sequence): a xorshift stream, printable
// ASCII for text messages so that they stay valid UTF-8.
function payload(serial, seq, text) {
  const n = 16 + ((serial * 31 + seq * 17) % 1009);
  const b = Buffer.allocUnsafe(n);
  // mulberry32, seeded from the three: a different stream for every message.
  let a = (Math.imul(o.id, 0x9e3779b1) ^ Math.imul(serial, 0x85ebca6b) ^ Math.imul(seq + 1, 0xc2b2ae35)) >>> 0;
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let z = Math.imul(a ^ (a >>> 15), 1 | a);
    z = (z + Math.imul(z ^ (z >>> 7), 61 | z)) ^ z;
    z = (z ^ (z >>> 14)) >>> 0;
    b[i] = text ? 0x20 + (z % 95) : z & 0xff;
  }
  return b;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const endAt = performance.now() + o.durationS * 1000;
let stopping = false;
let serial = 0;

// What a close path expects: the close code the client's 'close' event reports (ws: 1006 when
// the TCP connection ended without a close frame) and how long it may take.
const EXPECT = {
  close1000: 1000, close1001: 1001, protocol: 1002, utf8: 1007, drop: 1006, reset: 1006, silent: 1006, serverClose: 1000,
};

// One connection's life. Resolves when it is over, whatever happened.
async function life(slot) {
  const me = serial++;
  const path = PATHS[me % PATHS.length];
  const ws = new WebSocket(`ws://${o.host}:${o.port}/`, {
    perMessageDeflate: false,
    autoPong: false, // answered below, until a silent connection's silent phase
    handshakeTimeout: 20_000,
    localAddress: o.sourceIps.length ? o.sourceIps[me % o.sourceIps.length] : undefined,
  });
  let closed = null;
  let closeWaiter = null;
  let pending = null; // { want, resolve }
  let failed = false;
  const fail = (kind, detail) => {
    if (failed) return;
    failed = true;
    error(kind, `${path} #${me}: ${detail}`);
    ws.terminate();
  };
  ws.on('error', (e) => {
    // A reset we made ourselves is expected; anything else before the close path is an error.
    if (!(path === 'reset' && pending === 'closing')) fail('socket', e.message);
  });
  ws.on('close', (code) => {
    closed = { code, at: performance.now() };
    closeWaiter?.();
    if (pending && pending !== 'closing') pending.resolve(false);
  });
  // Every connection answers the server's keepalive pings while it talks (a message every
  // `intervalMs` may be as far apart as the keepalive); the silent one stops at its close path.
  ws.on('ping', (data) => {
    if (!(path === 'silent' && pending === 'closing')) ws.pong(data);
  });
  ws.on('message', (data, isBinary) => {
    if (!pending || pending === 'closing') return fail('verify', 'a message nobody sent');
    const ok = Buffer.isBuffer(data) && data.equals(pending.want) && isBinary === pending.binary;
    if (!ok) {
      c.verifyFailures++;
      fail('verify', `echo of message ${pending.seq} differs (${data.length} bytes, want ${pending.want.length})`);
      pending.resolve(false);
      return;
    }
    c.echoed++;
    c.echoedBytes += data.length;
    pending.resolve(true);
  });
  const opened = await new Promise((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('close', () => resolve(false));
  });
  if (!opened) {
    if (!failed) error('connect', `${path} #${me}: closed before open`);
    return;
  }
  const openedAt = performance.now();
  c.connects++;
  c.online++;
  try {
    // Spread the slots' messages over the interval.
    await sleep(((slot * 7919) % Math.max(1, o.intervalMs)) | 0);
    for (let seq = 0; seq < o.messages && !failed && closed === null; seq++) {
      const text = seq % 3 === 2;
      const want = payload(me, seq, text);
      const got = await new Promise((resolve) => {
        pending = { want, seq, binary: !text, resolve };
        ws.send(text ? want.toString('latin1') : want, { binary: !text });
        setTimeout(() => resolve(null), 15_000).unref?.();
      });
      pending = null;
      if (got === null) fail('timeout', `no echo of message ${seq} in 15 s`);
      if (!got) break;
      if (seq + 1 < o.messages) await sleep(o.intervalMs);
    }
    if (failed || closed !== null) {
      if (!failed) error('closed', `${path} #${me}: closed early (${closed.code}) ${Math.round(closed.at - openedAt)} ms after open`);
      return;
    }
    // The close path, and what the server must do.
    pending = 'closing';
    const startedAt = performance.now();
    const sock = ws._socket;
    switch (path) {
      case 'close1000': ws.close(1000, 'bye'); break;
      case 'close1001': ws.close(1001, 'going'); break;
      case 'protocol': sock.write(Buffer.from([0x82, 0x02, 0x01, 0x02])); break; // unmasked
      case 'utf8': sock.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])); break; // zero mask key
      case 'drop': sock.end(); break;
      case 'reset': sock.resetAndDestroy(); break;
      case 'silent': break;
      case 'serverClose': ws.send('close please'); break;
    }
    const limit = path === 'silent' ? o.keepaliveMs * 2 + 10_000 : 10_000;
    if (closed === null) {
      await new Promise((resolve) => {
        closeWaiter = resolve;
        setTimeout(resolve, limit).unref?.();
      });
    }
    if (closed === null) return fail('close', `not closed ${limit} ms into the close path`);
    if (closed.code !== EXPECT[path]) return fail('close', `close code ${closed.code}, want ${EXPECT[path]}`);
    if (path === 'silent' && closed.at - startedAt < o.keepaliveMs * 0.9) return fail('close', `silent connection closed after ${Math.round(closed.at - startedAt)} ms, before the keepalive time`);
    c.cycles[path]++;
  } finally {
    c.online--;
    if (closed === null && !failed) ws.terminate();
  }
}

async function slotLoop(slot) {
  // Stagger the first connects (o.rampS for all of them): a burst of thousands of `ws`
  // handshakes at once starves this process's event loop for seconds.
  await sleep((slot / o.conns) * o.rampS * 1000);
  while (!stopping && performance.now() < endAt) {
    const errorsBefore = c.errors;
    await life(slot);
    if (c.errors > errorsBefore) await sleep(10); // a failing server is not hammered in a tight loop
  }
}

// The harness went away: start no new connection (the lives in progress end on their own).
process.on('disconnect', () => {
  stopping = true;
});
const tick = setInterval(() => {
  c.loopDelayMaxMs = Math.max(c.loopDelayMaxMs, loopDelay.max / 1e6);
  if (process.connected) process.send({ type: 'tick', ...c });
}, 1000);
await Promise.all(Array.from({ length: o.conns }, (_, i) => slotLoop(i)));
clearInterval(tick);
c.loopDelayMaxMs = Math.max(c.loopDelayMaxMs, loopDelay.max / 1e6);
if (process.connected) process.send({ type: 'done', ...c }, () => process.exit(0));
