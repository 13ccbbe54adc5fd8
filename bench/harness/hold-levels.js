// hold, measured as a slope: the server's memory per idle connection is the growth of its RSS
// between two or more held levels, not the difference from a fresh server (which counts
// per-process fixed costs and start-up garbage, and comes out negative when the engine gives
// memory back after the burst). Fixed costs are reported apart (the line's intercept).
//
// The harness drives the generators. For each level (--levels, a list of totals) it starts the
// generator processes for the increment (each at most PER_PROCESS_CONNS connections, from its own
// two source addresses 127.0.<i>.1-2: about 8,500 connections per address keeps connects fast),
// waits until each says every connection of its share is upgraded (`--barrier`: it then waits),
// lets the server settle, and samples: the RSS and CPU of the server's whole process tree (a
// netloop supervisor and its workers past one process's open files) and the
// kernel's side from /proc/net/sockstat (TCP sockets, TCP buffer pages) and /proc/slabinfo
// (every cache's bytes). Then every generator is let go at once: each holds for --duration,
// pinging every connection (every pong required), and reports. RSS per connection is the
// least-squares slope of RSS over the connections held.
//
// The kernel figures are system-wide: both ends of each loopback connection (the generator's
// socket too) and whatever else runs on the machine meanwhile. They are reported per
// connection as the slope between the first and last level, cache by cache.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadgenPath } from './paths.js';
import { pinnedCommand, track } from './proc.js';
import { pingInterval } from '../scenarios/ws-hold.js';

/**
 * Connections one process holds, server worker or generator: well under the 20,000 open files.
 * NETLOOP_BENCH_PER_PROCESS lowers it, so that the smoke test runs the multi-process path at a
 * tiny size.
 */
export const PER_PROCESS_CONNS = Number(process.env.NETLOOP_BENCH_PER_PROCESS) > 0 ? Number(process.env.NETLOOP_BENCH_PER_PROCESS) : 17000;

/** Server worker processes a hold of `conns` needs (0: one process, no --workers). */
export function workersFor(conns) {
  return conns > PER_PROCESS_CONNS ? Math.ceil(conns / PER_PROCESS_CONNS) : 0;
}

/** The held levels: --levels (ascending, ending at --conns) or three evenly spaced ones. */
export function holdLevels(conns, levels) {
  const given = (levels ?? []).filter((n) => n > 0 && n < conns);
  const out = given.length > 0 ? given : [Math.round(conns / 3), Math.round((2 * conns) / 3)];
  return [...new Set([...out.filter((n) => n > 0), conns])].sort((a, b) => a - b);
}

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


// utime + stime of one process in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after
// the command name, which may contain spaces).
function cpuTicksOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}
const TICKS_PER_S = 100; // USER_HZ on Linux

const sum = (pids, f) => pids.reduce((a, p) => a + f(p), 0);

/** TCP line of /proc/net/sockstat: { inuse, orphan, tw, alloc, mem } (mem in pages). */
export function tcpSockstat() {
  try {
    const m = /^TCP: (.*)$/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
    const out = {};
    const f = m[1].trim().split(/\s+/);
    for (let i = 0; i + 1 < f.length; i += 2) out[f[i]] = Number(f[i + 1]);
    return out;
  } catch {
    return null;
  }
}

/** Bytes in use per slab cache (active objects x object size), or null without /proc/slabinfo (not root). */
export function slabBytes() {
  try {
    const out = {};
    for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n').slice(2)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3) out[f[0]] = Number(f[1]) * Number(f[3]);
    }
    return out;
  } catch {
    return null;
  }
}

/** Least-squares line through (x, y) points: { slope, intercept }. */
export function fitLine(points) {
  const n = points.length;
  if (n < 2) return { slope: null, intercept: null };
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  if (sxx === 0) return { slope: null, intercept: null };
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

// Kernel memory per connection between two samples: the TCP buffer pages (sockstat) and every
// slab cache that grew by at least 8 bytes per connection, largest first.
function kernelPerConn(a, b, conns) {
  if (conns <= 0) return null;
  const out = { conns, tcp_sockets_per_conn: null, tcp_mem_bytes_per_conn: null, slab_bytes_per_conn: null, slab_caches: [] };
  if (a.sockstat && b.sockstat) {
    out.tcp_sockets_per_conn = round((b.sockstat.inuse - a.sockstat.inuse) / conns, 2);
    out.tcp_mem_bytes_per_conn = round(((b.sockstat.mem - a.sockstat.mem) * 4096) / conns, 1);
  }
  if (a.slab && b.slab) {
    let total = 0;
    for (const [name, bytes] of Object.entries(b.slab)) {
      const per = (bytes - (a.slab[name] ?? 0)) / conns;
      total += per;
      if (per >= 8) out.slab_caches.push({ cache: name, bytes_per_conn: round(per, 1) });
    }
    out.slab_caches.sort((x, y) => y.bytes_per_conn - x.bytes_per_conn);
    out.slab_bytes_per_conn = round(total, 1);
  }
  return out;
}

const round = (x, d) => Math.round(x * 10 ** d) / 10 ** d;

// One generator process: started pinned, holding `conns` from its own source addresses, waiting
// at the barrier. Resolves `up` with its connected count; `go()` lets it hold; `done` resolves
// with its JSON result (or null) and stderr.
function startGenerator({ index, conns, host, port, o, cpu, concurrency }) {
  const args = [
    '--hold', '--barrier', '--proto', 'ws', '--host', host, '--port', String(port),
    '--conns', String(conns),
    '--duration', String(o.duration),
    '--settle', '0',
    '--ping-interval', String(pingInterval(o)),
    '--connect-concurrency', String(concurrency),
    '--connect-timeout', String(o['connect-timeout']),
    '--source-ips', `127.0.${index + 1}.1,127.0.${index + 1}.2`,
  ];
  const cmd = pinnedCommand(cpu, loadgenPath, args);
  const child = track(spawn(cmd.file, cmd.args, { stdio: ['pipe', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  let resolveUp;
  const up = new Promise((r) => (resolveUp = r));
  child.stdout.setEncoding('utf8').on('data', (s) => {
    stdout += s;
    const m = /\{"phase":"connected","conns_ok":(\d+)\}/.exec(stdout);
    if (m) resolveUp(Number(m[1]));
  });
  child.stderr.setEncoding('utf8').on('data', (s) => (stderr = (stderr + s).slice(-8192)));
  child.stdin.on('error', () => {}); // the generator may be gone: its exit says why
  const done = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      resolveUp(-1);
      const line = stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{') && !l.includes('"phase"'))
        .pop();
      let json = null;
      try {
        json = line ? JSON.parse(line) : null;
      } catch {
        json = null;
      }
      resolve({ json, stderr: stderr.trim(), code, signal });
    });
  });
  return { conns, up, go: () => child.stdin.end('\n'), kill: () => child.kill('SIGKILL'), done };
}

// TCP buffer memory (net.ipv4.tcp_mem, pages: low, pressure, high) is machine-wide; past the
// pressure mark the kernel shrinks every socket's buffers, past the high mark it refuses to
// allocate. Both ends of every loopback connection count, and 1.25 million idle sockets once
// took about 297,000 pages here (docs/scaling.md). For a large hold the limits are raised, when
// allowed (root), to at least these many pages per connection held, and put back afterwards;
// the result says what was changed.
const TCP_MEM_PATH = '/proc/sys/net/ipv4/tcp_mem';
const TCP_MEM_PAGES_PER_CONN = [2, 3, 4];
const TCP_MEM_FROM_CONNS = 100000;

export function raiseTcpMem(conns) {
  if (conns < TCP_MEM_FROM_CONNS) return null;
  let before;
  try {
    before = readFileSync(TCP_MEM_PATH, 'utf8').trim().split(/\s+/).map(Number);
  } catch (e) {
    return { changed: false, note: `cannot read ${TCP_MEM_PATH}: ${e.message}` };
  }
  const want = TCP_MEM_PAGES_PER_CONN.map((f, i) => Math.max(before[i], Math.ceil(f * conns)));
  if (want.every((w, i) => w === before[i])) return { changed: false, before, note: `net.ipv4.tcp_mem ${before.join(' ')} left as it was (enough for ${conns} connections)` };
  try {
    writeFileSync(TCP_MEM_PATH, want.join(' '));
  } catch (e) {
    return { changed: false, before, note: `net.ipv4.tcp_mem ${before.join(' ')} could not be raised to ${want.join(' ')} (${e.code ?? e.message}): the kernel may shrink or refuse socket buffers` };
  }
  return {
    changed: true,
    before,
    after: want,
    note: `net.ipv4.tcp_mem raised from ${before.join(' ')} to ${want.join(' ')} pages for the run, restored afterwards`,
    restore: () => {
      try {
        writeFileSync(TCP_MEM_PATH, before.join(' '));
      } catch {
        // reported by the caller's note: the value stays raised
      }
    },
  };
}

/**
 * Runs a hold at levels against a started server (its pid; a supervisor's, past one process) and
 * returns one result in the generator's own format plus the levels, the slope and the kernel's
 * side. `serverReady` resolves once every worker listens.
 */
export async function runLevelHold({ c, host, port, serverPid, loadgenCpu, serverReady, log = () => {} }) {
  const o = c.opts;
  const levels = c.levels ?? holdLevels(c.conns, []);
  await serverReady();
  const sample = () => {
    const tree = processTree(serverPid);
    return {
      // Not the descriptors: listing /proc/PID/fd makes the kernel build an inode and a dentry
      // per descriptor (about 2 KB each), which would show up as the connections' cost.
      rss: sum(tree, rssOf),
      cpu_ticks: sum(tree, cpuTicksOf),
      processes: tree.length,
      sockstat: tcpSockstat(),
      slab: slabBytes(),
      at: Date.now(),
    };
  };
  const base = sample();
  const gens = [];
  const points = [];
  const started = Date.now();
  let held = 0;
  let failed = null;
  for (const level of levels) {
    const increment = level - held;
    const n = Math.ceil(increment / PER_PROCESS_CONNS);
    const t0 = Date.now();
    const cpu0 = sum(processTree(serverPid), cpuTicksOf);
    const fresh = Array.from({ length: n }, (_, k) =>
      startGenerator({
        index: gens.length + k,
        conns: Math.floor(increment / n) + (k < increment % n ? 1 : 0),
        host,
        port,
        o,
        cpu: loadgenCpu,
        concurrency: Math.max(1, Math.floor(o['connect-concurrency'] / n)),
      }),
    );
    gens.push(...fresh);
    const ups = await Promise.all(fresh.map((g) => g.up));
    const upS = (Date.now() - t0) / 1000;
    const connectTicks = sum(processTree(serverPid), cpuTicksOf) - cpu0;
    if (ups.some((u) => u < 0)) {
      failed = `a generator exited before its connections were up (level ${level})`;
      break;
    }
    held += ups.reduce((a, u) => a + u, 0);
    await sleep(o.settle * 1000);
    const s = sample();
    points.push({ level, held, connect_s: upS, connects_per_sec: round(increment / upS, 1), server_connect_cpu_s: connectTicks / TICKS_PER_S, ...s });
    log(`  level ${level.toLocaleString('en-US')}: ${held.toLocaleString('en-US')} held in ${upS.toFixed(1)} s, server RSS ${(s.rss / 2 ** 20).toFixed(1)} MiB over ${s.processes} process(es)`);
  }
  // Everyone holds and pings at once (or, after a failure, hangs up at once).
  const goAt = Date.now();
  const cpuGo = sum(processTree(serverPid), cpuTicksOf);
  for (const g of gens) failed ? g.kill() : g.go();
  let rssEnd = null;
  let cpuEnd = null;
  if (!failed) {
    await sleep(o.duration * 900);
    rssEnd = sum(processTree(serverPid), rssOf);
    cpuEnd = sum(processTree(serverPid), cpuTicksOf);
  }
  const results = await Promise.all(gens.map((g) => g.done));
  if (failed || results.every((r) => r.json === null)) {
    const bad = results.find((r) => r.json === null) ?? results[0];
    return { json: null, stderr: `${failed ? `${failed}: ` : ''}${bad?.stderr ?? ''}`, code: bad?.code ?? 1, signal: bad?.signal ?? null };
  }
  // A generator that gave no report (killed by its watchdog, say) still held what it said at its
  // barrier: its connections count as failed, the others' reports and the levels stand.
  const lost = results.filter((r) => r.json === null);
  const jsons = results.map((r, i) =>
    r.json ?? { conns: gens[i].conns, conns_ok: 0, errors: gens[i].conns, failed_conns: gens[i].conns, loadgen_cpu_s: 0 },
  );
  const add = (k) => jsons.reduce((a, j) => a + (j[k] ?? 0), 0);
  const connsOk = add('conns_ok');
  const fit = fitLine(points.map((p) => ({ x: p.held, y: p.rss })));
  const first = points[0];
  const last = points[points.length - 1];
  const pongs = add('pongs_received');
  const p99s = jsons.map((j) => j.ping_p99_us).filter((x) => x != null);
  const json = {
    ...results.find((r) => r.json !== null).json,
    conns: add('conns'),
    conns_ok: connsOk,
    errors: add('errors'),
    failed_conns: add('failed_conns'),
    handshake_failures: add('handshake_failures'),
    connect_retries: add('connect_retries'),
    pings_sent: add('pings_sent'),
    pongs_received: pongs,
    pings_unanswered: add('pings_unanswered'),
    pongs_unexpected: add('pongs_unexpected'),
    ping_p99_us: p99s.length ? Math.max(...p99s) : null,
    connect_time_s: round(points.reduce((a, p) => a + p.connect_s, 0), 3),
    connects_per_sec: round(connsOk / points.reduce((a, p) => a + p.connect_s, 0), 1),
    loadgen_cpu_s: round(add('loadgen_cpu_s'), 3),
    rss_before_bytes: base.rss,
    rss_idle_bytes: last.rss,
    rss_end_bytes: rssEnd,
    // The headline: bytes per connection as the slope over the levels.
    rss_per_conn_bytes: fit.slope === null ? null : round(fit.slope, 1),
    rss_fixed_bytes: fit.intercept === null ? null : Math.round(fit.intercept),
    // The old measure, for comparison: (RSS idle - RSS of the fresh server) / connections.
    rss_per_conn_from_start_bytes: connsOk > 0 ? round((last.rss - base.rss) / connsOk, 1) : null,
    rss_levels: points.map((p) => ({ level: p.level, held: p.held, rss_bytes: p.rss, connect_s: round(p.connect_s, 3), connects_per_sec: p.connects_per_sec })),
    kernel: kernelPerConn(first, last, last.held - first.held),
    kernel_tcp_mem_pages: last.sockstat?.mem ?? null,
    server_connect_cpu_s: round(points.reduce((a, p) => a + p.server_connect_cpu_s, 0), 3),
    server_hold_cpu_s: cpuEnd === null ? null : round((cpuEnd - cpuGo) / TICKS_PER_S, 3),
    server_hold_s: round((Date.now() - goAt) / 1000, 3),
    server_processes: last.processes,
    harness_connect_s: round((points[points.length - 1].at - started) / 1000, 3),
    loadgen_processes: gens.length,
    source_ips: gens.length * 2,
  };
  if (lost.length) json.generators_without_report = lost.length;
  return { json, stderr: results.map((r) => r.stderr).filter(Boolean).join('\n'), code: 0, signal: null };
}
