// Attacks as tests (issue 8): floods of headers, fragments, lengths and
// pings. Each case runs in every I/O mode against a server in its own
// process (helpers/attack-server.js): the server's answer on the wire, its
// onClose reports, its RSS, and an honest `ws` client's latency meanwhile.
import t from 'tap';
import { Peer, cframe, parseFrames, upgradeRequest } from './helpers/ws-peer.js';
import { MODES, MiB, checkHonest, honestClient, peakRss, pool, rssOf, sleep, startAttackServer, until } from './helpers/attack.js';

t.setTimeout(150_000);

const HEAD_LINES_LIMIT = 40; // the default maxHeaders
const PADDED_REQUESTS = 50;
const PADDED_CPU_MS = 5;
const FRAGMENTS = 65_536;
const STALLED_CONNS = 60;
const STALLED_RSS_LIMIT = 400 * MiB;
const PINGS = 10_000;

/** Sends a request head on a fresh connection; resolves to the peer once the server has closed it. */
async function answerTo(t, addr, head) {
  const p = await Peer.connect(t, addr);
  p.write(head);
  await p.waitEnd(5000);
  await p.waitClosed(5000).catch(() => {});
  p.sock.destroy();
  return p;
}
const statusLine = (p) => p.raw.toString('latin1').split('\r\n')[0];

/** The close frame the server sent (its code), from the bytes after the 101. */
function closeCodeOf(p) {
  const close = parseFrames(p.rx).frames.find((f) => f.opcode === 0x8);
  return close === undefined ? null : close.payload.length >= 2 ? close.payload.readUInt16BE(0) : 1005;
}

/** n one-byte frames of one binary message, masked with the zero key (valid, and cheap to build). */
function oneByteFragments(n, { last = true } = {}) {
  const b = Buffer.alloc(n * 7);
  for (let i = 0; i < n; i++) {
    const fin = last && i === n - 1 ? 0x80 : 0;
    b[i * 7] = fin | (i === 0 ? 0x2 : 0x0);
    b[i * 7 + 1] = 0x81; // masked, 1 byte; key 00 00 00 00
    b[i * 7 + 6] = i & 0xff;
  }
  return b;
}

for (const mode of MODES) {
  t.test(`header flood, ${mode}`, async (t) => {
    const s = await startAttackServer(t, mode);
    const honest = await honestClient(t, s.url);
    const extra = (n) => Array.from({ length: n }, (_, i) => [`X-H${i}`, 'v']);
    // upgradeRequest() has 5 header lines of its own.
    const atLimit = await Peer.open(t, s.addr, { headers: extra(HEAD_LINES_LIMIT - 5) });
    t.match(atLimit.head, /^HTTP\/1\.1 101 /, `${HEAD_LINES_LIMIT} header lines upgrade`);
    atLimit.sock.destroy();
    const tooMany = await answerTo(t, s.addr, upgradeRequest({ headers: extra(HEAD_LINES_LIMIT - 4) }));
    t.match(statusLine(tooMany), /^HTTP\/1\.1 431 /, `${HEAD_LINES_LIMIT + 1} header lines: 431`);
    const tooBig = await answerTo(t, s.addr, upgradeRequest({ headers: [['X-Big', 'x'.repeat(8200)]] }));
    t.match(statusLine(tooBig), /^HTTP\/1\.1 431 /, 'a head over 8 KiB: 431');
    // The padded value: whitespace that a naive trim scans again and again.
    const padded = upgradeRequest({ headers: [['X-A', `a${' '.repeat(8100)}b`]] });
    const before = await s.sample();
    const answers = new Set();
    await pool(PADDED_REQUESTS, 5, async () => answers.add(statusLine(await answerTo(t, s.addr, padded))));
    const after = await s.sample();
    const cpuMs = (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1000;
    t.same([...answers], ['HTTP/1.1 431 Request Header Fields Too Large'], `the padded heads (${padded.length} bytes) are answered 431`);
    t.ok(cpuMs / PADDED_REQUESTS < PADDED_CPU_MS, `server CPU per padded request ${(cpuMs / PADDED_REQUESTS).toFixed(2)} ms < ${PADDED_CPU_MS} ms (${PADDED_REQUESTS} requests, the honest client included)`);
    checkHonest(t, await honest.stop(), 'header flood');
    await s.stop();
  });

  t.test(`fragment flood, ${mode}`, async (t) => {
    const s = await startAttackServer(t, mode, { upgrader: { messageLengthLimit: FRAGMENTS } });
    const honest = await honestClient(t, s.url);
    // 65,536 one-byte fragments (Autobahn 9.x's count): one message at the limit, echoed whole.
    const ok = await Peer.open(t, s.addr);
    ok.write(oneByteFragments(FRAGMENTS));
    await ok.waitRx(FRAGMENTS + 10, 20_000);
    const { frames } = parseFrames(ok.rx);
    t.equal(frames.length, 1, 'one message back');
    t.equal(frames[0]?.opcode, 0x2, 'binary');
    const want = Buffer.alloc(FRAGMENTS);
    for (let i = 0; i < FRAGMENTS; i++) want[i] = i & 0xff;
    t.ok(frames[0]?.payload.equals(want), `its ${FRAGMENTS} bytes in order`);
    ok.sock.destroy();
    // One byte past the limit, still unfinished: 1009 as soon as the byte arrives.
    const over = await Peer.open(t, s.addr);
    const key = `127.0.0.1:${over.sock.localPort}`; // asked now: a closed socket has no address
    over.write(oneByteFragments(FRAGMENTS + 1, { last: false }));
    await over.waitEnd(20_000);
    t.equal(closeCodeOf(over), 1009, 'past messageLengthLimit: close 1009 on the wire');
    await until(() => s.closes.some((c) => c.remote === key), 5000, 'onClose of the flooder');
    const c = s.closes.find((x) => x.remote === key);
    t.equal(c.err?.name, 'ProtocolError', 'onClose: ProtocolError');
    t.equal(c.err?.closeCode, 1009, 'onClose: closeCode 1009');
    over.sock.destroy();
    checkHonest(t, await honest.stop(), 'fragment flood');
    await s.stop();
  });

  t.test(`huge length, ${mode}: 2^62 announced, and ${STALLED_CONNS} stalled 16 MiB - 1 headers`, async (t) => {
    const s = await startAttackServer(t, mode);
    const honest = await honestClient(t, s.url);
    const huge = await Peer.open(t, s.addr);
    const t0 = Date.now();
    huge.write(cframe(0x2, 'x', { len: 2 ** 62 }));
    await huge.waitEnd(3000);
    t.equal(closeCodeOf(huge), 1009, `2^62 announced: close 1009 at once (${Date.now() - t0} ms)`);
    huge.sock.destroy();
    // The declared length is no reason to allocate it: RSS grows with the bytes that arrive.
    const rss0 = rssOf(s.pid);
    const peak = peakRss(s.pid);
    const stalled = [];
    for (let i = 0; i < STALLED_CONNS; i++) {
      const p = await Peer.open(t, s.addr);
      p.write(cframe(0x2, Buffer.alloc(4096, 7), { len: 16 * MiB - 1 }));
      stalled.push(p);
    }
    await sleep(1500);
    const top = peak.stop();
    t.ok(top < STALLED_RSS_LIMIT, `server RSS peak ${(top / MiB).toFixed(0)} MiB < ${STALLED_RSS_LIMIT / MiB} MiB (from ${(rss0 / MiB).toFixed(0)} MiB)`);
    t.ok(stalled.every((p) => !p.closed && !p.ended), 'the stalled connections are still open (no message timeout set)');
    for (const p of stalled) p.sock.destroy();
    checkHonest(t, await honest.stop(), 'huge length');
    await s.stop();
  });

  t.test(`message timeout, ${mode}: a message that stalls is closed with 1008 after messageTimeout`, async (t) => {
    const s = await startAttackServer(t, mode, { upgrader: { messageTimeout: 1000 } });
    const honest = await honestClient(t, s.url);
    const peers = [];
    for (let i = 0; i < 10; i++) {
      const p = await Peer.open(t, s.addr);
      p.write(cframe(0x2, Buffer.alloc(4096, 7), { len: 16 * MiB - 1 }));
      peers.push(p);
    }
    const t0 = Date.now();
    await until(() => peers.every((p) => p.ended || p.closed), 5000, 'the server to close the stalled messages').catch((e) => t.fail(e.message));
    const took = Date.now() - t0;
    t.ok(took >= 900, `not before messageTimeout (${took} ms)`);
    peers.forEach((p, i) => t.equal(closeCodeOf(p), 1008, `stalled #${i}: close 1008 on the wire`));
    await until(() => s.closes.length >= peers.length, 3000, 'onClose of the stalled connections').catch((e) => t.fail(e.message));
    for (const c of s.closes) {
      t.equal(c.err?.name, 'TimeoutError', `#${c.id}: onClose gets a TimeoutError`);
      t.equal(c.err?.message, 'message timeout', `#${c.id}: "message timeout"`);
    }
    for (const p of peers) p.sock.destroy();
    checkHonest(t, await honest.stop(), 'message timeout');
    await s.stop();
  });

  t.test(`ping flood, ${mode}`, async (t) => {
    const s = await startAttackServer(t, mode);
    const honest = await honestClient(t, s.url);
    // A client that reads: 10,000 pings in one burst.
    const reader = await Peer.open(t, s.addr);
    const pings = [];
    for (let i = 0; i < PINGS; i++) {
      const seq = Buffer.alloc(4);
      seq.writeUInt32BE(i);
      pings.push(cframe(0x9, seq));
    }
    const peak = peakRss(s.pid);
    reader.write(Buffer.concat(pings));
    reader.write(cframe(0x1, 'after the pings'));
    await until(() => parseFrames(reader.rx).frames.some((f) => f.opcode === 0x1) || reader.closed, 20_000, 'the echo behind the pings');
    const frames = parseFrames(reader.rx).frames;
    const pongs = frames.filter((f) => f.opcode === 0xa).map((f) => f.payload.readUInt32BE(0));
    t.ok(pongs.every((v, i) => i === 0 || v > pongs[i - 1]), `pongs in order (${pongs.length} of ${PINGS})`);
    t.equal(pongs.at(-1), PINGS - 1, 'the last ping answered');
    t.equal(pongs.length, PINGS, 'every ping answered');
    t.equal(frames.at(-1)?.payload.toString(), 'after the pings', 'the connection survives: the message behind them is echoed');
    reader.sock.destroy();
    // A client that never reads: the server must stop reading it rather than queue its pongs.
    const deaf = await Peer.open(t, s.addr);
    deaf.sock.pause();
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => cframe(0x9, Buffer.alloc(125, 1))));
    const end = Date.now() + 10_000;
    let sent = 0;
    while (deaf.sock.writableLength < 8 * MiB && !deaf.closed && Date.now() < end) {
      deaf.write(batch);
      sent += batch.length;
      await sleep(deaf.sock.writableLength > MiB ? 20 : 0);
    }
    const st = (await s.sample()).stats;
    const top = peak.stop();
    t.ok(deaf.sock.writableLength >= 8 * MiB, `the deaf client's pings back up: the server stopped reading it (${(sent / MiB).toFixed(0)} MiB sent, ${(deaf.sock.writableLength / MiB).toFixed(1)} MiB waiting)`);
    t.equal(deaf.closed, false, 'the deaf client is paused, not dropped');
    t.ok(st.queuedBytes <= 4 * MiB, `server write queues ${(st.queuedBytes / MiB).toFixed(1)} MiB <= 4 MiB`);
    t.ok(st.readPaused >= 1, `engine.stats().readPaused = ${st.readPaused}`);
    t.ok(top < 250 * MiB, `server RSS peak ${(top / MiB).toFixed(0)} MiB < 250 MiB`);
    deaf.sock.destroy();
    checkHonest(t, await honest.stop(), 'ping flood');
    await s.stop();
  });
}
