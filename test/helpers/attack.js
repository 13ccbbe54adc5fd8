// What the attack tests (test/attacks-*.test.js) share: the server under
// attack in its own process (attack-server.js), its RSS and descriptors read
// from /proc/<pid>, a peak-RSS sampler, and the honest client whose latency
// must hold while an attack runs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { until, sleep } from './ws-peer.js';

export const MiB = 1024 * 1024;
export const MODES = ['nonblocking', 'blocking', 'mixed'];

const here = path.dirname(fileURLToPath(import.meta.url));
// The children run plain: tap's process-info loader rides along to every child it sees
// spawned (NODE_OPTIONS="--import=...", put back into the environment of any spawn or fork),
// and made the server 27 MiB bigger (80 MiB idle instead of 53). env -u drops it between the
// spawn and the exec of node; the IPC channel passes through (NODE_CHANNEL_FD).
function forkPlain(script, args) {
  return spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, script, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}
const serverScript = path.join(here, 'attack-server.js');
const honestScript = path.join(here, 'honest-client.js');

// Mixed mode with a few blocking places, so that an attack of dozens of
// connections lands on both kinds of reader.
const modeConfig = (mode) => (mode === 'mixed' ? { ioMode: 'mixed', maxBlockingOnline: 8 } : { ioMode: mode });

function statusOf(pid, name) {
  try {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export const rssOf = (pid) => statusOf(pid, 'VmRSS') * 1024;
export const fdsOf = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;

/**
 * Forks the server under attack in `mode` with config { upgrader, engine,
 * throwOn } and waits for its port. Returns { pid, port, addr, url, opens,
 * closes (their IPC records), sample(), stop(), exit }. Teardown kills it
 * if the test did not stop it.
 */
export async function startAttackServer(t, mode, config = {}) {
  const child = forkPlain(serverScript, [JSON.stringify({ ...modeConfig(mode), ...config })]);
  const s = { child, pid: child.pid, opens: [], closes: [], exited: null };
  s.exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve((s.exited = { code, signal }))));
  const replies = new Map();
  let seq = 0;
  let listening;
  const ready = new Promise((resolve) => (listening = resolve));
  child.on('message', (m) => {
    if (m.type === 'listening') listening(m.port);
    else if (m.type === 'open') s.opens.push(m);
    else if (m.type === 'close') s.closes.push(m);
    else if (m.type === 'reply') replies.get(m.seq)?.(m);
  });
  const ask = (cmd) =>
    new Promise((resolve, reject) => {
      const n = seq++;
      const timer = setTimeout(() => reject(new Error(`attack server: no answer to ${cmd} in 10 s`)), 10_000);
      replies.set(n, (m) => {
        clearTimeout(timer);
        replies.delete(n);
        resolve(m);
      });
      child.send({ seq: n, cmd });
    });
  t.teardown(async () => {
    if (s.exited === null) {
      child.kill('SIGKILL');
      await s.exit;
    }
  });
  const port = await Promise.race([ready, s.exit.then((e) => Promise.reject(new Error(`attack server exited at start: ${JSON.stringify(e)}`)))]);
  Object.assign(s, { port, addr: `127.0.0.1:${port}`, url: `ws://127.0.0.1:${port}/` });
  /** rss, threads, fds, cpu (process.cpuUsage()), stats (engine.stats()), opens, closes, uncaught. */
  s.sample = () => ask('sample');
  /** Stops the engine; resolves once the process has exited. */
  s.stop = async () => {
    if (s.exited === null) await ask('stop');
    return s.exit;
  };
  /** Waits until the server's descriptors are back to `n` (its baseline), at most ms. */
  s.fdsBackTo = (n, ms = 10_000) => until(() => fdsOf(s.pid) <= n, ms, `server descriptors back to ${n} (now ${fdsOf(s.pid)})`);
  return s;
}

/** Samples a pid's RSS every 20 ms until stop(), which resolves to the peak in bytes. */
export function peakRss(pid) {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 20);
  return {
    get now() {
      return peak;
    },
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssOf(pid));
    },
  };
}

/**
 * The honest connection (helpers/honest-client.js, in its own process): a
 * `ws` client that sends a 32-byte message every `everyMs`, one at a time,
 * and checks each echo byte for byte. stop() closes it (1000) and resolves
 * to { count, p50, p99, max, errors, closed, closeCode } (latencies in ms;
 * `closed` says whether it closed before stop()).
 */
export async function honestClient(t, url, everyMs = 5) {
  const child = forkPlain(honestScript, [url, String(everyMs)]);
  const exit = new Promise((resolve) => child.once('exit', resolve));
  t.teardown(() => child.kill('SIGKILL'));
  const first = await new Promise((resolve) => {
    child.once('message', resolve);
    exit.then(() => resolve({ type: 'error', message: 'exited' }));
  });
  if (first.type !== 'open') throw new Error(`honest client did not connect: ${first.message}`);
  return {
    async stop() {
      const result = new Promise((resolve, reject) => {
        child.on('message', (m) => m.type === 'result' && resolve(m));
        exit.then(() => reject(new Error('honest client exited without a result')));
      });
      child.send({ cmd: 'stop' });
      const r = await result;
      const sorted = [...r.lat].sort((a, b) => a - b);
      const q = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : Infinity);
      return { count: r.count, p50: q(0.5), p99: q(0.99), max: sorted.at(-1) ?? Infinity, errors: r.errors, closed: r.closed, closeCode: r.closeCode };
    },
  };
}

// The honest client's bound: generous, since this machine is shared and two
// cores run the server, the attackers and other engineers' work.
export const HONEST_P99_MS = 250;

/** Checks what the honest client saw: echoes during the attack, none wrong, p99 under the bound, still open. */
export function checkHonest(t, h, what) {
  t.ok(h.count >= 5, `${what}: the honest client kept echoing (${h.count} echoes)`);
  t.same(h.errors, [], `${what}: every honest echo was right`);
  t.equal(h.closed, false, `${what}: the honest connection stayed open`);
  t.ok(h.p99 < HONEST_P99_MS, `${what}: honest p99 ${h.p99.toFixed(1)} ms < ${HONEST_P99_MS} ms (p50 ${h.p50.toFixed(1)}, max ${h.max.toFixed(1)})`);
}

/** Runs fn(i) for i in [0, n) with at most `width` running at once. */
export async function pool(n, width, fn) {
  let next = 0;
  const lanes = Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  });
  await Promise.all(lanes);
}

export { until, sleep };
