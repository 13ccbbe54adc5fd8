// The benchmark harness end to end at a tiny size: every scenario runs (real servers, the native
// load generator, pinning as on a real run) and its JSON must be complete and sane: every
// server has figures, every figure is finite and positive, no run has an error. It checks that
// the harness works, never how fast anything is (benchmarks are not timed tests: the figures
// belong in bench/ reports and the README). The full runs are commands in bench/README.md.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadgenPath as loadgen, prepareNativePrograms } from '../bench/harness/paths.js';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const cli = path.join(root, 'dist', 'cli', 'main.js');

// The TLS cases (3 scenarios, netloop and a peer each) add about 15 s on a quiet machine.
t.setTimeout(240_000);

// Short runs: one run per server, 0.1 s warmup, 0.3 s measured.
const QUICK = ['--runs', '1', '--warmup', '0.1', '--duration', '0.3'];

function runBench(args, resultsDir, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(root, 'bench', 'run.js'), ...args], {
      // uWS.js takes part where a copy is installed (bench/.peers); a test never downloads it.
      env: { ...process.env, NETLOOP_BENCH_RESULTS_DIR: resultsDir, NETLOOP_BENCH_INSTALL_PEERS: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s) => (stderr += s));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const positive = (x) => typeof x === 'number' && Number.isFinite(x) && x > 0;

// What every result of a kind must carry, finite and positive.
const fields = {
  echo: ['rtt_per_sec', 'p50_us', 'p99_us', 'max_us', 'server_cpu_s'],
  latency: ['rtt_per_sec', 'target_per_sec', 'p50_us', 'p90_us', 'p99_us', 'p999_us', 'max_us'],
  hold: ['connect_time_s', 'connects_per_sec', 'rss_idle_bytes', 'pongs_received'],
  broadcast: ['deliveries_per_sec', 'broadcasts_per_sec', 'p50_us', 'p99_us', 'fanout_p99_us'],
  churn: ['cycles_per_sec', 'p50_us', 'p99_us', 'max_us'],
};

async function scenario(t, name, args, dir, env) {
  const r = await runBench([name, ...QUICK.filter((a, i) => !(name.includes('hold') && i >= 2)), ...args], dir, env);
  t.equal(r.code, 0, `${name} exits 0`, { stderr: r.stderr.slice(-3000) });
  const m = /results: (\S+\.json); chart: (\S+\.svg)/.exec(r.stderr);
  t.ok(m, `${name} names its results file`);
  if (!m) return;
  const file = path.isAbsolute(m[1]) ? m[1] : path.resolve(m[1]);
  const rec = JSON.parse(readFileSync(file, 'utf8'));
  t.equal(rec.scenario, name);
  t.equal(rec.ok, true, `${name}: no problems`, { problems: rec.problems });
  t.ok(rec.cases.length > 0, `${name}: has cases`);
  // Every run: a result, no error, nothing wrong with the echoed bytes.
  for (const run of rec.runs) {
    const j = run.result;
    t.ok(j, `${name} ${run.case} ${run.server}: result`);
    if (!j) continue;
    t.equal(j.errors, 0, `${name} ${run.case} ${run.server}: errors 0`);
    if ('verify_failures' in j) t.equal(j.verify_failures, 0, `${name} ${run.case} ${run.server}: verify failures 0`);
    t.equal(j.conns_ok, j.conns, `${name} ${run.case} ${run.server}: every connection healthy`);
    for (const f of fields[run.kind]) t.ok(positive(j[f]), `${name} ${run.case} ${run.server}: ${f} = ${j[f]}`);
    if (args.includes('--tls')) {
      t.match(j.tls_version, /^TLSv1\.[23]$/, `${name} ${run.case} ${run.server}: over TLS`);
      t.ok(positive(j.tls_handshakes), `${name} ${run.case} ${run.server}: TLS handshakes`);
      // Resumed cases: the server took at least one of the tickets offered.
      if (run.case.endsWith('-resumed')) t.ok(positive(j.tls_resumed), `${name} ${run.case} ${run.server}: resumed handshakes ${j.tls_resumed}`);
    }
  }
  // Every case: every server it was run with has a summary from clean runs and its figures.
  for (const c of rec.cases) {
    t.ok(c.servers.length > 0, `${name} ${c.id}: servers`);
    for (const s of c.servers) {
      const sum = c.summary[s];
      t.ok(sum && sum.ok_runs === sum.runs && sum.runs >= 1, `${name} ${c.id} ${s}: clean runs`);
      for (const f of c.figures) {
        const v = sum?.figures?.[f.key];
        const ok = [v?.median, v?.min, v?.max].every(positive);
        t.ok(ok, `${name} ${c.id} ${s}: ${f.key} ${JSON.stringify(v)}`);
      }
    }
  }
  // Every server the scenario ran appears in some case, the report and the chart.
  const chart = readFileSync(path.isAbsolute(m[2]) ? m[2] : path.join(root, m[2]), 'utf8');
  t.match(chart, /^<svg /, `${name}: chart is an SVG`);
  for (const s of rec.servers) {
    t.ok(rec.cases.some((c) => c.servers.includes(s)), `${name}: ${s} measured`);
    t.match(r.stdout, `| ${s} |`, `${name}: ${s} in the table`);
    t.match(chart, `>${s}<`, `${name}: ${s} in the chart`);
  }
  return { stdout: r.stdout, rec };
}

// The soak at a tiny size: 60 connections for 3 s, mixed, every close path completed at
// least once (a short keepalive, so that the silent clients are closed within the run), every
// echo checked, the record and chart complete. Too short to judge flatness (the report says so).
async function soak(t, dir, mode) {
  const r = await runBench(['soak', '--mode', mode, ...(mode === 'mixed' ? ['--max-blocking', '20'] : []), '--duration', '3', '--conns', '60', '--sample', '0.5', '--messages', '2', '--interval', '100', '--keepalive', '1000'], dir);
  t.equal(r.code, 0, `soak ${mode} exits 0`, { stderr: r.stderr.slice(-3000) });
  const m = /results: (\S+\.json); chart: (\S+\.svg)/.exec(r.stderr);
  t.ok(m, 'soak names its results file');
  if (!m) return;
  const rec = JSON.parse(readFileSync(path.resolve(m[1]), 'utf8'));
  t.equal(rec.scenario, 'soak');
  t.equal(rec.ok, true, 'soak: no problems', { problems: rec.problems });
  const s = rec.summary;
  t.equal(s.errors, 0, 'soak: no connection error');
  t.equal(s.mode, mode, 'soak: the mode asked for');
  for (const [p, n] of Object.entries(s.cycles_by_path)) t.ok(positive(n), `soak: close path ${p} completed (${n})`);
  t.equal(Object.keys(s.cycles_by_path).length, 8, 'soak: eight close paths');
  for (const f of ['messages_echoed', 'cycles', 'rss_peak_bytes', 'fds_peak', 'threads_peak', 'online_peak']) t.ok(positive(s[f]), `soak: ${f} = ${s[f]}`);
  t.ok(rec.samples.length >= 4, `soak: samples (${rec.samples.length})`);
  for (const k of ['rss', 'fds_excess', 'threads_excess']) t.ok(k in s.trends, `soak: trend of ${k}`);
  t.match(r.stdout, '| server RSS MiB', 'soak: the markdown report');
  t.match(readFileSync(path.resolve(m[2]), 'utf8'), /^<svg [^]*server RSS/, 'soak: the chart');
}

t.test('bench harness smoke', async (t) => {
  // The bench builds its own native programs (bench/native/build.js), here as in bench/run.js:
  // a fresh clone's test run needs no build step of its own for them.
  try {
    prepareNativePrograms((line) => t.comment(line));
  } catch (err) {
    t.fail(err.message);
    return;
  }
  if (!existsSync(loadgen)) {
    t.fail(`${loadgen} not found (NETLOOP_BENCH_BIN_DIR names a directory without it)`);
    return;
  }
  const help = spawnSync(loadgen, ['--help'], { encoding: 'utf8' }).stdout ?? '';
  if (!help.includes('--churn')) {
    t.fail(`${loadgen} predates --churn/--broadcast/--rate: rebuild it (node bench/native/build.js --force)`);
    return;
  }
  t.equal(spawnSync(loadgen, ['--self-test'], { encoding: 'utf8' }).status, 0, 'netloop-loadgen --self-test');
  if (!existsSync(cli)) {
    t.fail(`${cli} not found: npm run build`);
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'netloop-bench-smoke-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  await t.test('echo', (t) => scenario(t, 'echo', ['--conns', '4', '--inflight', '2', '--size', '64,65536', '--msg-type', 'binary,text'], dir));
  await t.test('latency, uWS.js unavailable: left out with a note, the run still clean', async (t) => {
    const noPeers = mkdtempSync(path.join(os.tmpdir(), 'netloop-no-peers-'));
    const out = await scenario(t, 'latency', ['--conns', '4', '--rate', '200'], dir, { NETLOOP_BENCH_PEERS_DIR: noPeers });
    rmSync(noPeers, { recursive: true, force: true });
    t.match(out?.stdout ?? '', /Skipped \(optional peers that cannot run here\):\n- uws: /, 'the report names uws and why');
    t.notOk(out?.rec.servers.includes('uws'), 'uws not among the servers run');
  });
  // Enough connections that each server's RSS grows by megabytes: with a few hundred, a garbage
  // collection between the two samples can make the difference negative (ws: -2.7 MB once).
  // A ping every second, each answered before the next: a pong may be late by most of a second
  // while the machine runs other tests beside this one (a 0.2 s interval failed under load).
  await t.test('hold', (t) => scenario(t, 'hold', ['--conns', '2000', '--settle', '0.3', '--duration', '2.2', '--ping-interval', '1'], dir));
  // The path past one process's open files (harness/hold-levels.js), with the per-process share
  // lowered to 1,000: netloop as 3 worker processes, 3 generator processes.
  await t.test('hold past one process', async (t) => {
    await scenario(t, 'hold', ['--conns', '2500', '--settle', '0.5', '--duration', '2.2', '--ping-interval', '1'], dir, { NETLOOP_BENCH_PER_PROCESS: '1000' });
  });
  await t.test('broadcast', (t) => scenario(t, 'broadcast', ['--conns', '20', '--threads', '1'], dir));
  // Topics across worker processes and servers sharing a Redis, past "one process" (lowered to 20
  // connections here): the generator forks a subscriber-only process (one engine's topics are
  // the broadcast case's netloop server; uWS.js left out: it installs 114 MB on demand).
  await t.test('fanout', (t) => scenario(t, 'fanout', ['--conns', '30', '--threads', '1', '--servers', 'netloop-workers,netloop-redis', '--server-workers', '2', '--redis-servers', '2'], dir, { NETLOOP_BENCH_PER_PROCESS: '20' }).then((r) => {
    for (const run of r?.rec?.runs ?? []) t.equal(run.result?.generator_processes, 2, `fanout ${run.server}: the subscribers in 2 generator processes`);
  }));
  // Socket.IO rooms beside netloop in one fanout run: one process, and 3 Socket.IO servers sharing
  // a Redis through @socket.io/redis-adapter (its own redis-server), bench/socketio-broadcast-loadgen.js.
  await t.test('fanout with Socket.IO', (t) => scenario(t, 'fanout', ['--conns', '20', '--threads', '1', '--servers', 'netloop,socketio-rooms,socketio-redis'], dir).then((r) => {
    const ran = new Set((r?.rec?.runs ?? []).map((run) => `${run.case} ${run.server}`));
    for (const k of ['fanout netloop', 'fanout-socketio socketio-rooms', 'fanout-socketio socketio-redis']) t.ok(ran.has(k), `fanout: ${k} ran`);
  }));
  await t.test('churn ws', (t) => scenario(t, 'churn', ['--conns', '4'], dir));
  await t.test('churn tcp', (t) => scenario(t, 'churn', ['--conns', '4', '--proto', 'tcp'], dir));
  // Over TLS (the generator's OpenSSL, a certificate the harness makes): wss echo, netloop's TLS
  // and ws on https; raw TCP, netloop's TLS and Node's tls; churn with full and resumed handshakes.
  await t.test('echo wss', (t) => scenario(t, 'echo', ['--tls', '--servers', 'netloop,ws', '--conns', '4', '--inflight', '2', '--size', '64,16384', '--msg-type', 'binary'], dir));
  await t.test('echo tls tcp', (t) => scenario(t, 'echo', ['--tls', '--proto', 'tcp', '--servers', 'netloop,net', '--conns', '4', '--inflight', '2', '--size', '1024'], dir));
  await t.test('churn wss', (t) => scenario(t, 'churn', ['--tls', '--servers', 'netloop,ws', '--conns', '4'], dir));
  await t.test('ws-api', (t) => scenario(t, 'ws-api', ['--conns', '4', '--inflight', '2', '--size', '64', '--msg-type', 'binary'], dir));
  await t.test('socketio', (t) => scenario(t, 'socketio', ['--conns', '4', '--inflight', '2', '--size', '64'], dir));
  await t.test('tcp-echo (the earlier name)', (t) => scenario(t, 'tcp-echo', ['--conns', '4', '--inflight', '2'], dir));
  await t.test('modes', async (t) => {
    await scenario(t, 'modes', ['--conns', '1,10', '--hold-conns', '50', '--hold-settle', '0.2', '--hold-duration', '0.4'], dir);
  });
  // One run, in mixed mode with 20 blocking places so that both kinds of reader churn: the file
  // has one timeout for every scenario, and a loaded machine took it past it with three.
  await t.test('soak mixed', (t) => soak(t, dir, 'mixed'));
});
