// Attacks as tests (issue 8): peers that make the server hold memory by
// sending and never reading. In every I/O mode, against a server in its own
// process (helpers/attack-server.js): its RSS during and after the attack,
// backpressure (reading paused above writeHighWaterMark), the server-wide
// memoryBudget, and an honest `ws` client's latency meanwhile.
import t from 'tap';
import { Peer, cframe } from './helpers/ws-peer.js';
import { MODES, MiB, checkHonest, honestClient, peakRss, rssOf, sleep, startAttackServer, until } from './helpers/attack.js';

t.setTimeout(150_000);

const DEAF_CONNS = 20;
const MESSAGE = 64 * 1024;
const ATTACK_MS = 3000;
const PEAK_LIMIT = 250 * MiB;
const AFTER_LIMIT = 120 * MiB;
const AFTER_MS = 8000;
const BUDGET = 8 * MiB;

// One masked 64 KiB binary frame, built once: the attackers send the same bytes again and again.
const FRAME = cframe(0x2, Buffer.alloc(MESSAGE, 0x5a));

/**
 * DEAF_CONNS clients that each send 64 KiB messages for ATTACK_MS and never
 * read (their socket paused after the 101). Each keeps at most 1 MiB waiting
 * in its own socket, so that the test process does not grow instead.
 * Stops early once the server holds twice PEAK_LIMIT.
 */
async function deafAttack(t, s) {
  const peers = [];
  for (let i = 0; i < DEAF_CONNS; i++) {
    const p = await Peer.open(t, s.addr);
    p.sock.pause();
    peers.push(p);
  }
  const end = Date.now() + ATTACK_MS;
  let sent = 0;
  // Past twice the peak allowed the case has failed anyway: stop there rather than let a server
  // without backpressure take gigabytes from a machine others share.
  while (Date.now() < end && rssOf(s.pid) < 2 * PEAK_LIMIT) {
    for (const p of peers) {
      while (!p.closed && !p.sock.destroyed && p.sock.writableLength < MiB) {
        p.write(FRAME);
        sent += FRAME.length;
      }
    }
    await sleep(10);
  }
  return { peers, sent };
}

for (const mode of MODES) {
  t.test(`never-reading, ${mode}: ${DEAF_CONNS} clients send 64 KiB messages and never read`, async (t) => {
    const s = await startAttackServer(t, mode);
    const honest = await honestClient(t, s.url);
    const rss0 = rssOf(s.pid);
    const peak = peakRss(s.pid);
    const { peers, sent } = await deafAttack(t, s);
    const st = (await s.sample()).stats;
    const top = peak.stop();
    t.ok(top < PEAK_LIMIT, `server RSS peak ${(top / MiB).toFixed(0)} MiB < ${PEAK_LIMIT / MiB} MiB (from ${(rss0 / MiB).toFixed(0)} MiB; ${(sent / MiB).toFixed(0)} MiB sent)`);
    t.ok(st.readPaused >= 1, `reading paused on the deaf connections (engine.stats().readPaused = ${st.readPaused})`);
    t.equal(peers.filter((p) => p.closed).length, 0, 'none of them was dropped: backpressure, not a close');
    checkHonest(t, await honest.stop(), 'never-reading');
    for (const p of peers) p.sock.destroy();
    const t0 = Date.now();
    await until(() => rssOf(s.pid) < AFTER_LIMIT, AFTER_MS, `server RSS under ${AFTER_LIMIT / MiB} MiB after they left`).catch((e) => t.fail(`${e.message}: ${(rssOf(s.pid) / MiB).toFixed(0)} MiB`));
    t.ok(rssOf(s.pid) < AFTER_LIMIT, `server RSS ${(rssOf(s.pid) / MiB).toFixed(0)} MiB < ${AFTER_LIMIT / MiB} MiB ${Date.now() - t0} ms after they disconnected`);
    await s.stop();
  });

  t.test(`memory budget, ${mode}: ${BUDGET / MiB} MiB against ${DEAF_CONNS} never-readers`, async (t) => {
    const s = await startAttackServer(t, mode, { engine: { memoryBudget: BUDGET } });
    const honest = await honestClient(t, s.url);
    const { peers } = await deafAttack(t, s);
    const budgetCloses = s.closes.filter((c) => c.err?.name === 'BudgetError');
    t.ok(budgetCloses.length >= 1, `some deaf connections were failed with BudgetError (${budgetCloses.length} of ${DEAF_CONNS})`);
    for (const c of budgetCloses) t.equal(c.err.closeCode, 1013, `#${c.id}: the error names close code 1013`);
    const st = (await s.sample()).stats;
    t.ok(st.queuedBytes <= BUDGET, `server write queues ${(st.queuedBytes / MiB).toFixed(1)} MiB within the budget`);
    checkHonest(t, await honest.stop(), 'memory budget');
    for (const p of peers) p.sock.destroy();
    t.equal(s.exited, null, 'the server lives');
    await s.stop();
  });
}
