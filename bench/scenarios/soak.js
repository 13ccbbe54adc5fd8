// soak: long churn at many connections, every close path mixed in, every echoed byte checked;
// the question is whether the server stays flat (RSS, descriptors, threads) while connections
// come and go by every path netloop must clean up after.
//
// The server (bench/servers/netloop-soak.js, its own process, one I/O mode) echoes, closes a
// silent client by its keepalive and answers "close please" with writeClose(1000). The
// generators (bench/harness/soak-generator.js, `ws` clients, in 2 or more child processes: one
// process holds at most 20,000 descriptors here) keep `conns` connections alive, each living
// one cycle (connect, `messages` echoes, one close path in turn) and reconnecting. Every
// `sample` seconds the harness reads the server's RSS, descriptors and threads from /proc and
// the counters of both sides. Flat or not: the Theil-Sen slope over the second half of the
// run (the first half is the ramp: connections, JIT, heap growth) of RSS, of the descriptors
// the online connections do not explain and of the threads the blocking connections do not,
// and how far that slope would move each over the half, against a tolerance.
//
// Not a loadgen scenario: run.js calls run() and writes what it returns (JSON, markdown, SVG).
import { fork } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from '../harness/report.js';
import { seriesChartSvg } from '../harness/svg.js';
import { benchDir } from '../harness/paths.js';
import { freePort, liveChildren, startServer, stopServer, waitReleased } from '../harness/proc.js';
import { int } from './common.js';

const generatorPath = path.join(benchDir, 'harness', 'soak-generator.js');
const serverPath = path.join(benchDir, 'servers', 'netloop-soak.js');
const MiB = 1048576;
// Connections per generator process at most: under the 20,000 descriptors with room to spare.
const PER_GENERATOR = 8000;
// How far the second half's slope may move a series over that half and still count as flat:
// RSS max(16 MiB, 5%), descriptors and threads the connections do not explain max(50, 2%) and
// max(4, 2%) of the half's mean. Churn swings the raw counts (connections end in waves); a leak
// moves what is left when the connections are taken out.
const TOLERANCE = { rss: [16 * MiB, 0.05], fds_excess: [50, 0.02], threads_excess: [4, 0.02] };
const LABEL = { rss: 'RSS', fds_excess: 'descriptors - online connections', threads_excess: 'threads - blocking connections' };
// Fewer samples than this in the second half: too short to judge (the smoke test's runs).
const MIN_SAMPLES_TO_JUDGE = 6;

function statusOf(pid, name) {
  try {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
function fdsOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}
function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Theil-Sen over [[t, v]]: the median of the slopes between every two samples (per second), the
 * median intercept, and the mean. Robust where least squares is not: a sample taken in the
 * middle of a wave of closes (a reader thread already gone, the engine's count not yet down)
 * is an outlier that would tilt a least-squares line; a leak moves every later sample.
 */
export function fit(points) {
  const n = points.length;
  if (n < 2) return { slope: null, intercept: null, mean: null };
  const slopes = [];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) if (points[j][0] !== points[i][0]) slopes.push((points[j][1] - points[i][1]) / (points[j][0] - points[i][0]));
  }
  const slope = median(slopes) ?? 0;
  return { slope, intercept: median(points.map(([t, v]) => v - slope * t)), mean: points.reduce((a, [, v]) => a + v, 0) / n };
}

// Sums the generators' latest counters (their ticks, or their final report).
function addUp(gens) {
  const sum = { online: 0, connects: 0, echoed: 0, echoedBytes: 0, errors: 0, verifyFailures: 0, cycles: {}, errorKinds: {}, errorSamples: [], loopDelayMaxMs: 0 };
  for (const g of gens) {
    const c = g.final ?? g.last;
    if (!c) continue;
    for (const k of ['online', 'connects', 'echoed', 'echoedBytes', 'errors', 'verifyFailures']) sum[k] += c[k];
    for (const [k, v] of Object.entries(c.cycles)) sum.cycles[k] = (sum.cycles[k] ?? 0) + v;
    for (const [k, v] of Object.entries(c.errorKinds)) sum.errorKinds[k] = (sum.errorKinds[k] ?? 0) + v;
    sum.errorSamples.push(...c.errorSamples);
    sum.loopDelayMaxMs = Math.max(sum.loopDelayMaxMs, c.loopDelayMaxMs);
  }
  return sum;
}

// The first connections are spread over this many seconds: 500 a second (a quarter of the
// duration at most), which the JS generators take without their event loops falling behind.
const rampOf = (o) => Math.min(o.duration / 4, o.conns / 500);

const mib = (b) => (b == null ? '-' : (b / MiB).toFixed(1));
const num = (x, d = 0) => (x == null ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d }));

async function run({ opts, host, log }) {
  const o = opts;
  const generators = o.generators || Math.max(2, Math.ceil(o.conns / PER_GENERATOR));
  const statsFile = path.join(os.tmpdir(), `netloop-soak-${process.pid}-${Date.now()}.json`);
  const port = await freePort(host);
  const args = [serverPath, '--host', host, '--port', String(port), '--mode', o.mode, '--keepalive', String(o.keepalive), '--stats-file', statsFile,
    ...(o['max-blocking'] ? ['--max-blocking', String(o['max-blocking'])] : [])];
  const problems = [];
  const server = await startServer({ file: process.execPath, args, cpu: null, host, port });
  const pid = server.child.pid;
  log(`soak: server pid ${pid} (${o.mode}) on ${host}:${port}; ${int(o.conns)} connections from ${generators} generator processes for ${o.duration} s`);

  const share = (i) => Math.floor(o.conns / generators) + (i < o.conns % generators ? 1 : 0);
  const gens = Array.from({ length: generators }, (_, i) => {
    const cfg = {
      host, port, id: i + 1, conns: share(i), durationS: o.duration, rampS: rampOf(o), intervalMs: o.interval, messages: o.messages, keepaliveMs: o.keepalive,
      // Each generator its own source addresses: every 127.x.y.z is local and has its own ports.
      sourceIps: Array.from({ length: 8 }, (_, k) => `127.0.${10 + i}.${k + 1}`),
    };
    const child = fork(generatorPath, [JSON.stringify(cfg)], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    liveChildren.add(child);
    const g = { child, last: null, final: null, stderr: '', exit: null };
    child.stderr.setEncoding('utf8').on('data', (s) => (g.stderr = (g.stderr + s).slice(-2000)));
    child.on('message', (m) => {
      if (m.type === 'tick') g.last = m;
      else if (m.type === 'done') g.final = m;
    });
    g.exit = new Promise((resolve) => child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal });
    }));
    return g;
  });

  const t0 = Date.now();
  const samples = [];
  const takeSample = () => {
    const st = readJson(statsFile);
    const g = addUp(gens);
    const s = {
      t: (Date.now() - t0) / 1000,
      rss: statusOf(pid, 'VmRSS') * 1024,
      fds: fdsOf(pid),
      threads: statusOf(pid, 'Threads'),
      server_online: st?.stats.online ?? null,
      // What the connections do not explain, from one instant of the server's (its stats file):
      // descriptors beyond one per connection, threads beyond one per blocking connection.
      fds_excess: st ? st.fds - st.stats.online : null,
      threads_excess: st ? st.threads - (st.stats.blockingOnline ?? 0) : null,
      clients_online: g.online,
      echoed: g.echoed,
      errors: g.errors,
      server_messages: st?.messages ?? null,
    };
    samples.push(s);
    log(`soak ${s.t.toFixed(0).padStart(5)} s: RSS ${mib(s.rss)} MiB, fds ${s.fds}, threads ${s.threads}, online ${s.server_online}, echoed ${int(s.echoed)}, errors ${s.errors}`);
  };
  takeSample();
  // Until every generator has finished (its connections end their cycle after the duration),
  // bounded: the longest cycle plus a margin.
  const allDone = Promise.all(gens.map((g) => g.exit));
  let finished = false;
  allDone.then(() => (finished = true));
  const hardEnd = t0 + (o.duration + (o.messages * o.interval) / 1000 + (o.keepalive * 2) / 1000 + 60) * 1000;
  while (!finished && Date.now() < hardEnd) {
    await Promise.race([sleep(o.sample * 1000), allDone]);
    if (server.child.exitCode !== null || server.child.signalCode !== null) break;
    takeSample();
  }
  for (const g of gens) if (g.exit && g.child.exitCode === null) g.child.kill('SIGKILL');
  await allDone;
  const died = server.child.exitCode !== null || server.child.signalCode !== null;
  if (died) problems.push(`the server exited during the soak (${server.child.exitCode ?? server.child.signalCode}): ${server.output().slice(-500)}`);
  const serverStats = readJson(statsFile);
  const stopped = await stopServer(server);
  const finalStats = readJson(statsFile) ?? serverStats;
  rmSync(statsFile, { force: true });
  rmSync(`${statsFile}.tmp`, { force: true });
  const released = await waitReleased(port);

  const total = addUp(gens);
  gens.forEach((g, i) => {
    if (!g.final) problems.push(`generator ${i + 1} gave no final report (${g.child.exitCode ?? g.child.signalCode}): ${g.stderr.trim().split('\n').pop() ?? ''}`);
  });
  if (total.errors > 0) problems.push(`${total.errors} connection error(s): ${Object.entries(total.errorKinds).map(([k, v]) => `${k} ${v}`).join(', ')}; first: ${total.errorSamples[0]}`);
  const paths = Object.keys(total.cycles);
  const missing = paths.filter((p) => !(total.cycles[p] > 0));
  if (missing.length) problems.push(`close paths never completed: ${missing.join(', ')}`);

  // Flat or not, over the second half of the duration (the wind-down after it is left out).
  const half = samples.filter((s) => s.t >= o.duration / 2 && s.t <= o.duration);
  const judged = half.length >= MIN_SAMPLES_TO_JUDGE;
  const trends = {};
  for (const key of Object.keys(TOLERANCE)) {
    const pts = half.filter((s) => s[key] != null).map((s) => [s.t, s[key]]);
    const f = fit(pts);
    const span = pts.length > 1 ? pts.at(-1)[0] - pts[0][0] : 0;
    const [abs, rel] = TOLERANCE[key];
    const tolerance = f.mean == null ? null : Math.max(abs, rel * f.mean);
    const change = f.slope == null ? null : f.slope * span;
    trends[key] = {
      slope_per_min: f.slope == null ? null : f.slope * 60, change_over_half: change, tolerance, mean: f.mean, samples: pts.length,
      flat: !judged || change == null ? null : Math.abs(change) <= tolerance,
      fit: { from: pts[0]?.[0] ?? 0, slope: f.slope, intercept: f.intercept },
    };
    if (trends[key].flat === false) problems.push(`${LABEL[key]} not flat: ${change > 0 ? '+' : ''}${num(key === 'rss' ? change / MiB : change, 1)}${key === 'rss' ? ' MiB' : ''} over the second half (tolerance ${num(key === 'rss' ? tolerance / MiB : tolerance, 1)})`);
  }
  const elapsed = samples.at(-1)?.t ?? 0;
  const cyclesTotal = Object.values(total.cycles).reduce((a, b) => a + b, 0);
  const summary = {
    conns: o.conns, mode: o.mode, duration_s: o.duration, elapsed_s: elapsed, generators,
    connects: total.connects, cycles: cyclesTotal, cycles_by_path: total.cycles, cycles_per_sec: cyclesTotal / Math.max(1, elapsed),
    messages_echoed: total.echoed, bytes_echoed: total.echoedBytes, echoes_per_sec: total.echoed / Math.max(1, elapsed),
    generator_loop_delay_max_ms: total.loopDelayMaxMs,
    errors: total.errors, verify_failures: total.verifyFailures, error_kinds: total.errorKinds, error_samples: total.errorSamples,
    server_onclose: finalStats?.closes ?? null, server_peer_close_codes: finalStats?.peerCodes ?? null, server_messages: finalStats?.messages ?? null,
    rss_start_bytes: samples[0]?.rss ?? null, rss_peak_bytes: Math.max(...samples.map((s) => s.rss ?? 0)), rss_end_bytes: half.at(-1)?.rss ?? samples.at(-1)?.rss ?? null,
    fds_start: samples[0]?.fds ?? null, fds_peak: Math.max(...samples.map((s) => s.fds ?? 0)),
    threads_start: samples[0]?.threads ?? null, threads_peak: Math.max(...samples.map((s) => s.threads ?? 0)),
    online_peak: Math.max(...samples.map((s) => s.server_online ?? 0)),
    judged, trends,
    server_exit: stopped, released_s: released.seconds,
  };
  const ok = problems.length === 0;
  const notes = [];
  if (!released.released) notes.push(`${released.left} socket(s) of port ${port} not released after ${released.seconds.toFixed(0)} s`);
  if (total.loopDelayMaxMs > o.keepalive / 2) {
    notes.push(`a generator's event loop stalled ${num(total.loopDelayMaxMs)} ms (the server pings at half the keepalive, ${o.keepalive / 2} ms): connections it closed early may be the generators' fault; try fewer --conns or a longer --interval`);
  }
  return { summary, samples, problems, ok, notes };
}

function markdown(title, r, { machine, command }) {
  const s = r.summary;
  const t = s.trends;
  const verdict = (k) => (t[k].flat === null ? 'too short to judge' : t[k].flat ? 'flat' : '**not flat**');
  const trendRow = (k, label, scale = 1, unit = '') =>
    `| ${label} | ${num(t[k].mean == null ? null : t[k].mean / scale, 1)}${unit} | ${num(t[k].slope_per_min == null ? null : t[k].slope_per_min / scale, 2)}${unit} | ` +
    `${num(t[k].change_over_half == null ? null : t[k].change_over_half / scale, 1)}${unit} | ${num(t[k].tolerance == null ? null : t[k].tolerance / scale, 1)}${unit} | ${verdict(k)} |`;
  const lines = [
    `## ${title}`,
    '',
    '| figure | value |',
    '|---|---:|',
    `| elapsed (duration + the last cycles) | ${num(s.elapsed_s, 0)} s |`,
    `| connections completed (cycles) | ${int(s.cycles)} (${num(s.cycles_per_sec, 1)}/s) |`,
    `| messages echoed, every byte checked | ${int(s.messages_echoed)} (${num(s.echoes_per_sec, 0)}/s, ${mib(s.bytes_echoed)} MiB) |`,
    `| errors (verify failures) | ${s.errors} (${s.verify_failures}) |`,
    `| generators' worst event-loop delay (over the keepalive: their fault, not the server's) | ${num(s.generator_loop_delay_max_ms, 0)} ms |`,
    `| online, peak (server) | ${int(s.online_peak)} |`,
    `| server RSS MiB: start → peak → end of the duration | ${mib(s.rss_start_bytes)} → ${mib(s.rss_peak_bytes)} → ${mib(s.rss_end_bytes)} |`,
    `| server descriptors: start → peak | ${s.fds_start} → ${s.fds_peak} |`,
    `| server threads: start → peak | ${s.threads_start} → ${s.threads_peak} |`,
    '',
    'Second half of the run (Theil-Sen slope over its samples; flat when the fitted change over the half is within the tolerance):',
    '',
    '| series | mean | slope per minute | change over the half | tolerance | verdict |',
    '|---|---:|---:|---:|---:|---|',
    trendRow('rss', LABEL.rss, MiB, ' MiB'),
    trendRow('fds_excess', LABEL.fds_excess),
    trendRow('threads_excess', LABEL.threads_excess),
    '',
    `Cycles by close path: ${Object.entries(s.cycles_by_path).map(([k, v]) => `${k} ${int(v)}`).join(', ')}.`,
    '',
    `Server onClose by error: ${Object.entries(s.server_onclose ?? {}).map(([k, v]) => `${k} ${int(v)}`).join(', ') || '-'}.`,
    '',
    `- machine: ${machine.nproc} CPUs, ${machine.cpu}, node ${machine.node}, ${machine.kernel}`,
    `- placement: unpinned (the JS generators and the server share the CPUs: this is a correctness run, not a speed one)`,
    `- command: \`${command}\``,
  ];
  if (r.notes.length) lines.push('', 'Notes:', ...r.notes.map((n) => `- ${n}`));
  if (!r.ok) lines.push('', '**FAILED**:', ...r.problems.map((p) => `- ${p}`));
  return lines.join('\n');
}

function chart(title, r, { machine, command, startedAt }) {
  const pts = (key, scale = 1) => r.samples.map((s) => [s.t, s[key] == null ? null : s[key] / scale]);
  const rate = r.samples.map((s, i) => [s.t, i === 0 ? null : (s.echoed - r.samples[i - 1].echoed) / Math.max(1e-3, s.t - r.samples[i - 1].t)]);
  const fitOf = (key, scale = 1) => {
    const f = r.summary.trends[key].fit;
    return f.slope == null ? undefined : { from: f.from, slope: f.slope / scale, intercept: f.intercept / scale };
  };
  return seriesChartSvg({
    title,
    panels: [
      { title: 'server RSS', unit: 'MiB; dashed: the fit over the second half', points: pts('rss', MiB), fit: fitOf('rss', MiB) },
      { title: 'server descriptors', unit: 'open fds', points: pts('fds') },
      { title: 'server descriptors - online connections', unit: 'fds; dashed: the fit', points: pts('fds_excess'), fit: fitOf('fds_excess') },
      { title: 'server threads', unit: 'threads', points: pts('threads') },
      { title: 'server threads - blocking connections', unit: 'threads; dashed: the fit', points: pts('threads_excess'), fit: fitOf('threads_excess') },
      { title: 'connections online (server)', unit: 'connections', points: pts('server_online') },
      { title: 'messages echoed per second (checked by the generators)', unit: '/s', points: rate },
    ],
    subtitle: [
      `${machine.nproc} CPUs, ${machine.cpu}, node ${machine.node}, ${machine.kernel}; ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      `made by: ${command}`,
    ],
  });
}

export default {
  name: 'soak',
  summary: 'long churn at many connections mixing every close path, every byte checked: does RSS/fds/threads stay flat?',
  defaultServers: ['netloop'],
  commonDefaults: { runs: 1 },
  options: {
    duration: { default: 1800, min: 1, help: 'seconds of churn (new connections stop after it; the last cycles then finish)' },
    conns: { default: 10000, min: 1, integer: true, help: `connections kept alive at once (generator processes: 2, or one per ${int(PER_GENERATOR)})` },
    mode: { type: 'string', default: 'nonblocking', choices: ['nonblocking', 'blocking', 'mixed'], help: "the server's I/O mode" },
    'max-blocking': { default: 0, min: 0, integer: true, help: "mixed: the server's maxBlockingOnline (0: the engine's default)" },
    sample: { default: 10, min: 0.2, help: 'seconds between samples' },
    // 5 s: 2,000 echoes a second at 10,000 connections, which two JS generator processes keep up
    // with on a shared 2-CPU machine; at 1 s (10,000/s) their event loops fell 5 s behind and
    // the server's keepalive rightly closed connections whose pongs came too late.
    interval: { default: 5000, min: 0, integer: true, help: 'ms between the messages of one connection' },
    messages: { default: 10, min: 1, integer: true, help: 'messages (echoed and checked) per connection before its close path' },
    // 10 s: the server pings at half of it, and a JS generator holding 5,000 connections on a
    // busy shared machine (load average 15 on 2 CPUs) stalled 3 s once: with 5 s its late pongs
    // got healthy connections closed (60 of 25,000), which is the generator's fault.
    keepalive: { default: 10000, min: 100, integer: true, help: "the server's keepaliveTime, ms (how long a silent client lives)" },
    generators: { default: 0, min: 0, integer: true, help: 'generator processes (0: 2, or more past 8,000 connections each)' },
  },
  title: (o) => `soak (${o.mode}): ${int(o.conns)} connections churning for ${o.duration} s, every close path`,
  cases: (o) => [{ id: 'soak', label: 'soak', kind: 'soak', proto: 'ws', role: 'echo', conns: o.conns, loadgenArgs: [], timeoutS: o.duration + 120 }],
  run,
  markdown,
  chart,
};
