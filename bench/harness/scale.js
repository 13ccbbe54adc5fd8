// hold past one process: more connections than one process may keep open (20,000 descriptors
// here, server or generator alike). The server runs as supervised worker processes sharing the
// port (netloop echo --workers W, SO_REUSEPORT); the generator runs as L processes, each holding
// its share from its own source addresses (127.0.<i>.1-2: every source address has about 28,000
// ephemeral ports towards one server port). The generators start together; the harness itself
// samples the RSS of the server's whole process tree, before the first connect and once every
// connection is up and the settle time has passed, and counts the connections held as the
// server processes' open descriptors. Then the generators hold for the duration, pinging every
// connection, and their results are added up.
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadgenPath } from './paths.js';
import { runLoadgen } from './proc.js';
import { pingInterval } from '../scenarios/ws-hold.js';

/**
 * Connections one process holds, server worker or generator: well under the 20,000 open files.
 * NETLOOP_BENCH_PER_PROCESS lowers it, so that the smoke test runs this path at a tiny size.
 */
export const PER_PROCESS_CONNS = Number(process.env.NETLOOP_BENCH_PER_PROCESS) > 0 ? Number(process.env.NETLOOP_BENCH_PER_PROCESS) : 17000;

/** pid and all its descendants (the supervisor and its workers). */
export function processTree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const c of readFileSync(`/proc/${out[i]}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
      } catch {
        // the task exited meanwhile
      }
    }
  }
  return out;
}

function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function fdsOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

const sum = (pids, f) => pids.reduce((a, p) => a + f(p), 0);

/** How many server worker processes and generator processes a hold of `conns` needs. */
export function scalePlan(conns) {
  const n = Math.ceil(conns / PER_PROCESS_CONNS);
  return { workers: n, loadgens: n };
}

/**
 * Runs the generators of a scaled hold against a started server (its primary's pid) and returns
 * one result in the generator's own format, with the RSS fields measured here over the whole
 * server process tree.
 */
export async function runScaledHold({ c, host, port, serverPid, loadgenCpu, serverReady }) {
  const { loadgens } = scalePlan(c.conns);
  await serverReady(); // every worker listening
  const tree0 = processTree(serverPid);
  const rssBefore = sum(tree0, rssOf);
  const fdsBefore = sum(tree0, fdsOf);
  const o = c.opts;
  const share = (i) => Math.floor(c.conns / loadgens) + (i < c.conns % loadgens ? 1 : 0);
  // Each generator waits (--settle) long enough for the others to connect and for the harness's
  // sample, then holds and pings.
  const waitS = o.settle + 10;
  const started = Date.now();
  const gens = Array.from({ length: loadgens }, (_, i) =>
    runLoadgen({
      file: loadgenPath,
      args: [
        '--hold', '--proto', 'ws', '--host', host, '--port', String(port),
        '--conns', String(share(i)),
        '--duration', String(o.duration),
        '--settle', String(waitS),
        '--ping-interval', String(pingInterval(o)),
        '--connect-concurrency', String(Math.max(1, Math.floor(o['connect-concurrency'] / loadgens))),
        '--connect-timeout', String(o['connect-timeout']),
        '--source-ips', `127.0.${i + 1}.1,127.0.${i + 1}.2`,
      ],
      cpu: loadgenCpu,
      timeoutMs: (waitS + o['connect-timeout'] + o.duration + 60) * 1000,
    }),
  );
  // All up: the server's processes hold one descriptor per connection.
  let held = 0;
  const deadline = Date.now() + o['connect-timeout'] * 1000;
  while (Date.now() < deadline) {
    held = sum(processTree(serverPid), fdsOf) - fdsBefore;
    if (held >= c.conns) break;
    await sleep(250);
  }
  const upAt = Date.now();
  const connectS = (upAt - started) / 1000;
  await sleep(o.settle * 1000);
  const tree = processTree(serverPid);
  const rssIdle = sum(tree, rssOf);
  // "end": near the end of the hold, its pings answered, before the generators hang up (their
  // hold starts waitS after their own connects, which all finished by upAt).
  await sleep(Math.max(0, upAt + (waitS + o.duration * 0.9) * 1000 - Date.now()));
  const rssEnd = sum(processTree(serverPid), rssOf);
  const results = await Promise.all(gens);
  const jsons = results.map((r) => r.json);
  if (jsons.some((j) => j === null)) {
    const bad = results.find((r) => r.json === null);
    return { json: null, stderr: bad.stderr, code: bad.code, signal: bad.signal };
  }
  const add = (k) => jsons.reduce((a, j) => a + (j[k] ?? 0), 0);
  const connsOk = add('conns_ok');
  const json = {
    ...jsons[0],
    conns: add('conns'),
    conns_ok: connsOk,
    errors: add('errors'),
    failed_conns: add('failed_conns'),
    handshake_failures: add('handshake_failures'),
    connect_retries: add('connect_retries'),
    pings_sent: add('pings_sent'),
    pongs_received: add('pongs_received'),
    pings_unanswered: add('pings_unanswered'),
    pongs_unexpected: add('pongs_unexpected'),
    connect_time_s: Math.max(...jsons.map((j) => j.connect_time_s)),
    connects_per_sec: connsOk / Math.max(...jsons.map((j) => j.connect_time_s)),
    loadgen_cpu_s: add('loadgen_cpu_s'),
    rss_before_bytes: rssBefore,
    rss_idle_bytes: rssIdle,
    rss_end_bytes: rssEnd,
    rss_per_conn_bytes: connsOk > 0 ? Math.round((rssIdle - rssBefore) / connsOk) : null,
    server_connect_cpu_s: null,
    server_hold_cpu_s: null,
    server_processes: tree.length,
    server_connections_seen: held,
    harness_connect_s: connectS,
    loadgen_processes: loadgens,
    source_ips: loadgens * 2,
  };
  return { json, stderr: results.map((r) => r.stderr).filter(Boolean).join('\n'), code: 0, signal: null };
}
