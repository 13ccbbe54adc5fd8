// The run loop shared by the echo scenarios: every run starts each server in turn, drives it with
// the native load generator and stops it. The order rotates by one server per run (run 1: a b c,
// run 2: b c a, ...) so no server always goes first on a cold or a warm machine.
import { servers } from '../servers/index.js';
import { loadgenPath } from './paths.js';
import { commOf, freePort, runLoadgen, startServer, stopServer } from './proc.js';

export function rotation(names, run) {
  const k = run % names.length;
  return [...names.slice(k), ...names.slice(0, k)];
}

// What makes a run count as failed (the harness then exits non-zero).
export function runProblems(rec, conns) {
  const p = [];
  if (rec.error) p.push(rec.error.split('\n')[0]);
  const j = rec.result;
  if (j) {
    if (j.verify_failures > 0) p.push(`${j.verify_failures} verify failure(s)`);
    if (j.conns_ok < conns) p.push(`only ${j.conns_ok} of ${conns} connections healthy`);
  }
  return p;
}

function progressLine(rec, runs) {
  const head = `[run ${rec.run}/${runs}] ${rec.server.padEnd(8)}`;
  const j = rec.result;
  if (!j) return `${head} FAILED: ${rec.error}`;
  const n = (x, d = 0) => (x == null ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d }));
  const share = (x) => (x == null ? '-' : `${Math.round((x / j.duration_s) * 100)}%`);
  return (
    `${head} ${n(j.rtt_per_sec).padStart(11)} rtt/s  p50 ${n(j.p50_us)} us  p99 ${n(j.p99_us)} us  ` +
    `server ${n(j.server_cpu_us_per_msg, 3)} us/msg (${share(j.server_cpu_s)} CPU)  ` +
    `loadgen ${share(j.loadgen_cpu_s)} CPU  errors ${j.errors}` +
    (rec.problems.length ? `  PROBLEM: ${rec.problems.join('; ')}` : '') +
    (rec.note ? `  NOTE: ${rec.note}` : '')
  );
}

async function runOne({ run, name, proto, host, pinning, loadgenArgs, timeoutMs, conns }) {
  const port = await freePort(host);
  const { file, args } = servers[name].command({ proto, host, port });
  const rec = { run, server: name, port, command: [file, ...args].join(' '), pid: null, result: null, problems: [] };
  let server;
  try {
    server = await startServer({ file, args, cpu: pinning.serverCpu, host, port });
  } catch (e) {
    rec.error = `${name} did not start: ${e.message}`;
    rec.problems = runProblems(rec, conns);
    return rec;
  }
  rec.pid = server.child.pid;
  rec.server_comm = commOf(rec.pid);
  const lg = await runLoadgen({
    file: loadgenPath,
    args: [...loadgenArgs, '--host', host, '--port', String(port), '--server-pid', String(rec.pid)],
    cpu: pinning.loadgenCpu,
    timeoutMs,
  });
  const diedDuringRun = server.child.exitCode !== null || server.child.signalCode !== null;
  const stopped = await stopServer(server);
  rec.server_exit = stopped;
  rec.loadgen_exit = { code: lg.code, signal: lg.signal };
  rec.result = lg.json;
  if (lg.stderr) rec.loadgen_stderr = lg.stderr;
  if (!lg.json) {
    rec.error = `load generator gave no result (exit ${lg.code ?? lg.signal}): ${lg.stderr || 'no output'}`;
  } else if (diedDuringRun) {
    rec.error = `${name} exited during the run (${stopped.signal ?? stopped.code})\n${server.output()}`;
  }
  rec.problems = runProblems(rec, conns);
  rec.note = saturationNote(rec.result);
  return rec;
}

// With enough in flight, one side of a closed loop runs near 100% of its CPU. When neither does,
// something else set the pace: too little in flight (the round-trip latency bounds the rate),
// another process on the machine, or a server that stalls (missed wake-ups, timers). Such a run
// is kept but flagged.
export function saturationNote(j) {
  if (!j || j.server_cpu_s == null || j.messages === 0) return undefined;
  const server = j.server_cpu_s / j.duration_s;
  const loadgen = j.loadgen_cpu_s / j.duration_s;
  if (server >= 0.9 || loadgen >= 0.9) return undefined;
  return `neither side saturated (server ${Math.round(server * 100)}%, loadgen ${Math.round(loadgen * 100)}% CPU): latency-bound, contention, or a server stall`;
}

// opts: the scenario's parsed options (numbers), including runs, warmup, duration, conns.
export async function runMatrix({ proto, serverNames, opts, host, pinning, loadgenArgs, log }) {
  const timeoutMs = (opts.warmup + opts.duration + 30) * 1000;
  const runs = [];
  for (let r = 0; r < opts.runs; r++) {
    for (const name of rotation(serverNames, r)) {
      const rec = await runOne({ run: r + 1, name, proto, host, pinning, loadgenArgs, timeoutMs, conns: opts.conns });
      runs.push(rec);
      log(progressLine(rec, opts.runs));
    }
  }
  return runs;
}
