#!/usr/bin/env node
// How much permessage-deflate stalls the server's event loop, and what its
// zlib state leaves in RSS. `node bench/micro/deflate-stall.js [--conns 2000]
// [--big 30] [--waves 3]`.
//
// The server (this process) is an Engine with `compression: true` echoing
// every message; it measures its own event-loop delay
// (perf_hooks.monitorEventLoopDelay, 1 ms resolution) over each phase. The
// peers run in a child process (the npm `ws` client, perMessageDeflate with
// threshold 0 so that every message is compressed), and so does a probe: one
// uncompressed connection sending a 16-byte message every 5 ms, whose round
// trips (p50/p99/max) show what other connections feel.
//
// Phases:
//   idle     2 s of the probe alone: what the machine's own noise looks like.
//   first    --conns compressed connections open, then each sends its first
//            compressed message (1 KiB of JSON) at once; all echoes awaited;
//            all close: the server's RSS once they have (and 1 s of quiet).
//   waves    --waves times more: --conns compressed connections open, send
//            one message each, all close; the server's RSS after each.
//   big      --big new connections each send one message of 16 KiB on the
//            wire that inflates to 16 MiB - 1 KiB (under the 16 MiB limit);
//            echoed, so the server inflates and compresses each.
// Not a timed test: figures go to the README (DESIGN.md, "Performance rules").
import { fork } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    conns: { type: 'string', default: '2000' },
    big: { type: 'string', default: '30' },
    waves: { type: 'string', default: '3' },
    child: { type: 'string' },
  },
});
const CONNS = Number(args.conns);
const BIG = Number(args.big);
const WAVES = Number(args.waves);
const LIMIT = 16 * 1024 * 1024;

if (args.child !== undefined) await peers(args.child);
else await server();

// ---------------------------------------------------------------------------

async function server() {
  const { Engine, Upgrader } = await import('../../dist/index.js');
  const up = new Upgrader({ compression: true, messageLengthLimit: LIMIT });
  up.onMessage((c, type, data) => {
    if (!c.closed) c.writeMessage(type, data);
  });
  let closed = 0;
  up.onClose(() => closed++);
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up });
  await engine.start();
  const [addr] = engine.addresses();
  const h = monitorEventLoopDelay({ resolution: 1 });
  const child = fork(new URL(import.meta.url), ['--child', addr, '--conns', String(CONNS), '--big', String(BIG), '--waves', String(WAVES)], {
    stdio: 'inherit',
  });
  const rows = [];
  const mib = (n) => (n / 1048576).toFixed(0);
  await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`peers exited with ${code}`))));
    child.on('message', async (m) => {
      if (m.op === 'start') {
        h.reset();
        h.enable();
        child.send({ op: 'started' });
      } else if (m.op === 'end') {
        h.disable();
        rows.push({ phase: m.phase, ...m.stats, loopP99: h.percentile(99) / 1e6, loopMax: h.max / 1e6 });
        child.send({ op: 'ended' });
      } else if (m.op === 'closed') {
        // Every connection of the wave closed on the server too, then 1 s of quiet.
        while (closed < m.total) await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => setTimeout(r, 1000));
        rows.push({ phase: `wave ${m.wave}: RSS after close`, rss: process.memoryUsage().rss });
        child.send({ op: 'measured' });
      }
    });
  });
  await engine.stop();
  // The process's peak: with the 16 MiB messages last, the peak of that phase when it is the largest.
  rows.push({ phase: 'peak RSS of the run (maxRSS)', rss: process.resourceUsage().maxRSS * 1024 });
  console.log(`node ${process.version}, ${CONNS} compressed connections, ${BIG} big messages`);
  console.log('| phase | messages | wall ms | probe p50 ms | probe p99 ms | probe max ms | loop delay p99 ms | loop delay max ms |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    if (r.rss !== undefined) console.log(`| ${r.phase} | | | | | | RSS ${mib(r.rss)} MiB | |`);
    else console.log(`| ${r.phase} | ${r.messages} | ${r.wall.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.max.toFixed(2)} | ${r.loopP99.toFixed(1)} | ${r.loopMax.toFixed(1)} |`);
  }
}

// ---------------------------------------------------------------------------
// The peers (child process)

async function peers(addr) {
  const { default: WebSocket } = await import('ws');
  const url = `ws://${addr}/`;
  const ask = (msg, reply) =>
    new Promise((resolve) => {
      const on = (m) => {
        if (m.op === reply) {
          process.off('message', on);
          resolve();
        }
      };
      process.on('message', on);
      process.send(msg);
    });
  const open = (compress) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: compress ? { threshold: 0 } : false, maxPayload: 2 * LIMIT });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  const openMany = async (n) => {
    const out = [];
    // In groups, so that the listen backlog is not the thing measured.
    for (let i = 0; i < n; i += 200) out.push(...(await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => open(true)))));
    return out;
  };
  const echoOf = (ws) => new Promise((resolve) => ws.once('message', resolve));

  // The probe: an uncompressed round trip every 5 ms.
  const probe = await open(false);
  let rtts = [];
  let sentAt = 0;
  let waiting = false;
  probe.on('message', () => {
    rtts.push(performance.now() - sentAt);
    waiting = false;
  });
  // One probe in flight at a time: a stalled server shows as one long round trip.
  const timer = setInterval(() => {
    if (waiting) return;
    waiting = true;
    sentAt = performance.now();
    probe.send('probe-0123456789');
  }, 5);
  const phase = async (name, messages, run) => {
    await ask({ op: 'start' }, 'started');
    rtts = [];
    const t0 = performance.now();
    await run();
    const wall = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
    const s = rtts.slice().sort((a, b) => a - b);
    const q = (p) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
    await ask({ op: 'end', phase: name, stats: { messages, wall, p50: q(50), p99: q(99), max: s[s.length - 1] ?? NaN } }, 'ended');
  };

  const json = Buffer.from(JSON.stringify(Array.from({ length: 16 }, (_, i) => ({ id: i, name: `item-${i}`, tags: ['a', 'b', 'c'], v: i * 3.25 })))).subarray(0, 1024);
  // The same measurements with nothing else going on: this machine's own noise.
  await phase('idle: the probe alone for 2 s', 0, () => new Promise((r) => setTimeout(r, 2000)));
  let conns = await openMany(CONNS);
  await phase(`first: ${CONNS} x first compressed message`, CONNS, () => Promise.all(conns.map((ws) => (ws.send(json), echoOf(ws)))));
  let total = conns.length;
  await closeAll(conns);
  await ask({ op: 'closed', wave: 0, total }, 'measured');
  for (let w = 1; w <= WAVES; w++) {
    conns = await openMany(CONNS);
    await Promise.all(conns.map((ws) => (ws.send(json), echoOf(ws))));
    total += conns.length;
    await closeAll(conns);
    await ask({ op: 'closed', wave: w, total }, 'measured');
  }

  // Last, so that the memory it takes does not count in the waves' RSS.
  const big = Buffer.alloc(LIMIT - 1024, 0x61); // 16 KiB on the wire with zlib's defaults
  conns = await openMany(BIG);
  await phase(`big: ${BIG} x 16 KiB -> 16 MiB`, BIG, () => Promise.all(conns.map((ws) => (ws.send(big), echoOf(ws)))));
  await closeAll(conns);
  clearInterval(timer);
  probe.close();
  await new Promise((r) => probe.once('close', r));
  process.exit(0);
}

function closeAll(conns) {
  return Promise.all(
    conns.map(
      (ws) =>
        new Promise((resolve) => {
          ws.once('close', resolve);
          ws.close(1000);
        }),
    ),
  );
}
