// The run loop shared by the scenarios: every run starts each server in turn, drives it with the
// native load generator, stops it and waits until its connections are released. The order
// rotates by one server per run (run 1: a b c, run 2: b c a, ...) so no server always goes first
// on a cold or a warm machine.
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { servers } from '../servers/index.js';
import { kindOf, progressLine } from './kinds.js';
import { loadgenPath } from './paths.js';
import { PER_PROCESS_CONNS, raiseTcpMem, runLevelHold, workersFor } from './hold-levels.js';
import {
  commOf, freePort, machineBusyTicks, pidTicks, runLoadgen, selfAndChildrenTicks, startServer, stopServer, waitReleased,
} from './proc.js';

export function rotation(names, run) {
  const k = run % names.length;
  return [...names.slice(k), ...names.slice(0, k)];
}

// What makes a run count as failed (the harness then exits non-zero): no result, or what the
// case's kind says (harness/kinds.js).
export function runProblems(rec, kind, conns) {
  const p = [];
  if (rec.error) p.push(rec.error.split('\n')[0]);
  if (rec.result) p.push(...kindOf(kind).problems(rec.result, conns));
  return p;
}

let clkTck = null;
function ticksPerSecond() {
  if (clkTck === null) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clkTck = Number(r.stdout?.trim()) || 100;
  }
  return clkTck;
}

// CPU the rest of the machine used while the load generator ran: all CPUs' busy time minus the
// server's, the generator's and the harness's own. Other engineers' builds and tests share
// these CPUs; above CONTENDED_CPU (in cores) the run is flagged. It also catches kernel threads
// doing the benchmark's own network work (ksoftirqd), which is small on loopback.
const CONTENDED_CPU = 0.2;

function cpuSnapshot(serverPid) {
  return { at: process.hrtime.bigint(), busy: machineBusyTicks(), mine: selfAndChildrenTicks(), server: pidTicks(serverPid) };
}

function otherCpu(a, b) {
  if ([a.busy, b.busy, a.mine, b.mine, a.server, b.server].some((v) => v == null)) return null;
  const wall = Number(b.at - a.at) / 1e9;
  const other = (b.busy - a.busy) - (b.mine - a.mine) - (b.server - a.server);
  return wall > 0 ? Math.max(0, other / ticksPerSecond() / wall) : null;
}

async function runOne({ run, name, c, host, pinning, opts, log }) {
  const scenario = c; // the case: proto, role, kind, loadgenArgs, timeoutS, conns, pauseS
  const conns = c.conns;
  const port = await freePort(host);
  const scaled = isScaled(c);
  const workers = scaled ? workersFor(conns) : 0;
  const { file, args } = servers[name].command({ proto: c.proto, role: c.role ?? 'echo', host, port, nodeFlags: opts['node-flags'], opts, workers, tls: c.tls });
  const rec = {
    run, case: c.id, kind: c.kind, server: name, port, command: [file, ...args].join(' '), pid: null, result: null, problems: [], notes: [],
  };
  const why = servers[name].missing() ?? (c.tls ? servers[name].tlsMissing?.() : null);
  if (why) {
    rec.error = `${name} not available: ${why}`;
    rec.problems = runProblems(rec, scenario.kind, conns);
    return rec;
  }
  let server;
  try {
    server = await startServer({ file, args, cpu: pinning.serverCpu, host, port, timeoutMs: 10_000 + workers * 2000 });
  } catch (e) {
    rec.error = `${name} did not start: ${e.message}`;
    rec.problems = runProblems(rec, scenario.kind, conns);
    return rec;
  }
  rec.pid = server.child.pid;
  rec.server_comm = commOf(rec.pid);
  const before = cpuSnapshot(rec.pid);
  // hold (levels) and any hold past one process: the harness drives the generators level by level.
  const levelled = Boolean(c.levels || scaled);
  const tcpMem = levelled ? raiseTcpMem(conns) : null;
  if (tcpMem) {
    log(`  ${tcpMem.note}`);
    rec.notes.push(tcpMem.note);
    rec.tcp_mem = { changed: tcpMem.changed, before: tcpMem.before ?? null, after: tcpMem.after ?? null };
  }
  let lg;
  try {
    lg = levelled
      ? await runLevelHold({
          c: { ...c, opts },
          host,
          port,
          serverPid: rec.pid,
          loadgenCpu: pinning.loadgenCpu,
          // The supervisor prints its worker pids once every worker listens.
          serverReady: async () => {
            const end = Date.now() + 30_000 + workers * 2000; // dozens of Node processes start on one core
            while (workers > 0 && !/worker processes/.test(server.output()) && Date.now() < end) await sleep(50);
          },
          log,
        })
      : await runLoadgen({
          // A case may bring its own generator (a Node script printing the same JSON line).
          file: c.generator ? process.execPath : loadgenPath,
          args: [...(c.generator ? [c.generator] : []), ...c.loadgenArgs, '--host', host, '--port', String(port), '--server-pid', String(rec.pid)],
          cpu: pinning.loadgenCpu,
          timeoutMs: c.timeoutS * 1000,
        });
  } catch (e) {
    tcpMem?.restore?.();
    throw e;
  }
  if (scaled) rec.notes.push(`past one process: ${workers} server worker processes (--workers), ${lg.json?.loadgen_processes ?? '?'} generator processes`);
  const after = cpuSnapshot(rec.pid);
  rec.other_cpu = otherCpu(before, after);
  const diedDuringRun = server.child.exitCode !== null || server.child.signalCode !== null;
  const stopped = await stopServer(server);
  // Let the kernel tear down every connection of this server before the next one starts, so
  // the next run neither competes with that work nor finds the memory still taken.
  const released = await waitReleased(port);
  rec.release_s = released.seconds;
  tcpMem?.restore?.(); // once the sockets are gone: their teardown needed the room too
  if (!released.released) rec.notes.push(`${released.left} socket(s) of port ${port} still not released after ${released.seconds.toFixed(0)} s`);
  // Then a pause for the kernel's deferred work (freeing socket memory, timers) after runs with
  // many connections (scenario.pauseS).
  if (scenario.pauseS) await sleep(scenario.pauseS * 1000);
  rec.server_exit = stopped;
  rec.loadgen_exit = { code: lg.code, signal: lg.signal };
  rec.result = lg.json;
  if (lg.stderr) rec.loadgen_stderr = lg.stderr;
  if (!lg.json) {
    rec.error = `load generator gave no result (exit ${lg.code ?? lg.signal}): ${lg.stderr || 'no output'}`;
  } else if (diedDuringRun) {
    rec.error = `${name} exited during the run (${stopped.signal ?? stopped.code})\n${server.output()}`;
  } else if (lg.json.conns_ok === 0 && lg.stderr) {
    // Nothing worked: the generator's first complaint is the reason (e.g. a failed handshake).
    rec.error = `${name}: no healthy connection: ${lg.stderr.split('\n')[0]}`;
  }
  rec.problems = runProblems(rec, scenario.kind, conns);
  if (scenario.kind === 'echo') {
    const note = saturationNote(rec.result);
    if (note) rec.notes.push(note);
  }
  if (rec.result && kindOf(scenario.kind).notes) rec.notes.push(...kindOf(scenario.kind).notes(rec.result));
  if (rec.other_cpu != null && rec.other_cpu > CONTENDED_CPU) {
    rec.notes.push(`contended: other processes used ${rec.other_cpu.toFixed(2)} CPU while it ran`);
  }
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

// A hold with more connections than one process may keep open: several server and generator
// processes (harness/hold-levels.js).
export function isScaled(c) {
  return c.kind === 'hold' && c.conns > PER_PROCESS_CONNS;
}

// Whether a server can take part in a case (its protocol and role; past one process, whether it
// can run as several processes on one port).
export function serves(server, c) {
  const tlsOk = c.tls ? (server.tls ?? []).includes(c.proto) : !server.tlsOnly;
  return tlsOk && server.protocols.includes(c.proto) && (server.roles ?? ['echo']).includes(c.role ?? 'echo') && (!isScaled(c) || server.workers === true) &&
    (!c.manyServerProcesses || server.manyProcesses === true);
}

// Every run, every case, every server that serves the case, in an order that rotates by one each
// run. opts: the parsed options (runs, node-flags, ...).
export async function runMatrix({ cases, serverNames, opts, host, pinning, log }) {
  const runs = [];
  for (let r = 0; r < opts.runs; r++) {
    for (const c of cases) {
      const names = serverNames.filter((s) => serves(servers[s], c));
      for (const name of rotation(names, r)) {
        const rec = await runOne({ run: r + 1, name, c, host, pinning, opts, log });
        runs.push(rec);
        log(progressLine(rec, opts.runs, cases.length > 1 ? c.label : ''));
      }
    }
  }
  return runs;
}

// After all runs (echo scenarios): a run whose server CPU per message is well above that server's
// median got slower per message, not just less work. When no other process in this machine was
// busy (the contention note), the cause is outside it: a busy host, its other guests, a lower
// clock. Here both sides then slowed alike (c and generator from 1.15 to 1.47 us/msg, ws from
// 6.7 to 7.6) with other_cpu near 0. Such runs are kept but flagged.
const SLOWER_PER_MSG = 1.1;

export function crossRunNotes(runs, serverNames, caseId) {
  for (const name of serverNames) {
    const clean = runs.filter((r) => r.server === name && r.case === caseId && r.result && r.problems.length === 0 && r.result.server_cpu_us_per_msg != null);
    const costs = clean.map((r) => r.result.server_cpu_us_per_msg).sort((a, b) => a - b);
    if (costs.length < 3) continue;
    const m = costs.length >> 1;
    const med = costs.length % 2 ? costs[m] : (costs[m - 1] + costs[m]) / 2;
    for (const r of clean) {
      const c = r.result.server_cpu_us_per_msg;
      if (c <= med * SLOWER_PER_MSG) continue;
      const inside = r.notes.some((x) => x.startsWith('contended'));
      r.notes.push(
        `slower per message: server ${c.toFixed(2)} us/msg vs its median ${med.toFixed(2)} (+${Math.round((c / med - 1) * 100)}%)` +
          (inside ? '' : ', with no other process here busy: likely contention outside this machine (host, other guests)'),
      );
    }
  }
}
