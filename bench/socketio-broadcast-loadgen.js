// The Socket.IO broadcast load generator (the fanout scenario's Socket.IO cases): --conns
// socket.io-client connections (WebSocket transport) in the room; connection 0 publishes, at most
// --inflight broadcasts on their way to everyone at once (a closed loop: a broadcast is done when
// every connection, the publisher included, has it). Each payload carries its publish time
// (process.hrtime: CLOCK_MONOTONIC, the same clock in every process) and sequence number; every
// delivery is checked (payload bytes, sequence in order) and counted. Prints one JSON line with
// the fields of netloop-loadgen's broadcast result (deliveries_per_sec, p50_us, p99_us,
// fanout_p99_us, server_cpu_us_per_delivery, loadgen_cpu_s, ...).
//
//   node bench/socketio-broadcast-loadgen.js --host H --port P --server-pid PID
//        [--conns 1000] [--inflight 4] [--size 64] [--duration 5] [--warmup 1] [--processes 2]
//
// JavaScript (Socket.IO's client protocol is what is measured against): the subscribers other
// than the publisher are split over --processes child processes (this script again, --child);
// loadgen_cpu_s is all of them together, so a reader sees when the generator saturated.
// server CPU: the server process and its descendants (a cluster's workers).
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    'server-pid': { type: 'string' },
    conns: { type: 'string', default: '1000' },
    inflight: { type: 'string', default: '4' },
    size: { type: 'string', default: '64' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    processes: { type: 'string', default: '2' },
    'connect-timeout': { type: 'string', default: '60' },
    child: { type: 'string' }, // internal: this many subscribers in a child process
  },
});
const size = Number(values.size);
const url = `http://${values.host}:${values.port}`;
const expected = 'x'.repeat(size);

// Subscribers in this process: each checks every delivery and records its latency (while measuring).
function subscribers(count, onDelivery) {
  const stats = { deliveries: 0, verifyFailures: 0, errors: 0, samples: [], measuring: false };
  const connect = () =>
    new Promise((resolve) => {
      const s = io(url, { transports: ['websocket'], reconnection: false, timeout: Number(values['connect-timeout']) * 1000 });
      let last = -1;
      s.on('msg', (m) => {
        const now = process.hrtime.bigint();
        if (typeof m !== 'object' || m === null || m.data !== expected || (last >= 0 && m.seq !== last + 1)) stats.verifyFailures++;
        last = m?.seq ?? last;
        if (stats.measuring) {
          stats.deliveries++;
          stats.samples.push(Number(now - BigInt(m.t)) / 1000);
        }
        onDelivery(m.seq);
      });
      s.once('connect', () => resolve(s));
      s.once('connect_error', () => {
        stats.errors++;
        resolve(s);
      });
      s.on('disconnect', (why) => { if (why !== 'io client disconnect') stats.errors++; });
    });
  return { stats, connect };
}

async function connectAll(connect, count) {
  const out = [];
  // a few hundred handshakes at once
  for (let i = 0; i < count; i += 200) out.push(...(await Promise.all(Array.from({ length: Math.min(200, count - i) }, connect))));
  return out;
}

if (values.child !== undefined) {
  // A child: its subscribers; per sequence number, tell the parent when all of them have it.
  const count = Number(values.child);
  const got = new Map();
  const { stats, connect } = subscribers(count, (seq) => {
    const n = (got.get(seq) ?? 0) + 1;
    if (n === count) {
      got.delete(seq);
      process.send({ done: seq });
    } else got.set(seq, n);
  });
  const sockets = await connectAll(connect, count);
  let cpu0;
  process.on('message', (m) => {
    if (m === 'measure') {
      stats.measuring = true;
      cpu0 = process.cpuUsage();
    } else if (m === 'stop') {
      stats.measuring = false;
      const cpu = process.cpuUsage(cpu0);
      process.send({ result: { deliveries: stats.deliveries, verifyFailures: stats.verifyFailures, errors: stats.errors, samples: stats.samples, connected: sockets.filter((s) => s.connected).length, cpuS: (cpu.user + cpu.system) / 1e6 } }, () => {
        for (const s of sockets) s.close();
        process.exit(0);
      });
    }
  });
  process.send({ ready: true });
} else {
  await main();
}

// CPU ticks of the server and its descendants (/proc/PID/task/*/children).
function treeTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let ticks = Number(f[11]) + Number(f[12]);
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    for (const c of children ? children.split(' ') : []) ticks += treeTicks(Number(c)) ?? 0;
    return ticks;
  } catch {
    return null;
  }
}

async function main() {
  const conns = Number(values.conns);
  const inflight = Number(values.inflight);
  const duration = Number(values.duration);
  const warmup = Number(values.warmup);
  const serverPid = Number(values['server-pid'] ?? 0);
  const nProc = Math.max(1, Math.min(Number(values.processes), conns - 1));
  const CLK_TCK = 100;

  // Broadcast bookkeeping: a broadcast is done when the publisher and every child have it.
  const pending = new Map(); // seq -> { t, left }
  const fanout = [];
  let seq = 0;
  let measuring = false;
  let stopping = false;
  let broadcasts = 0;
  let publisher;
  const finish = (s) => {
    const p = pending.get(s);
    if (!p || --p.left > 0) return;
    pending.delete(s);
    if (measuring) {
      broadcasts++;
      fanout.push(Number(process.hrtime.bigint() - p.t) / 1000);
    }
    publish();
  };
  function publish() {
    if (stopping || !publisher?.connected) return;
    const t = process.hrtime.bigint();
    pending.set(seq, { t, left: 1 + nProc });
    publisher.emit('pub', { seq, t: t.toString(), data: expected });
    seq++;
  }

  const per = Array.from({ length: nProc }, (_, k) => Math.floor((conns - 1) / nProc) + (k < (conns - 1) % nProc ? 1 : 0));
  const children = per.map((count) => {
    const child = fork(new URL(import.meta.url).pathname, [...process.argv.slice(2), '--child', String(count)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.on('message', (m) => { if (m.done !== undefined) finish(m.done); });
    return child;
  });
  await Promise.all(children.map((c) => new Promise((resolve, reject) => {
    c.on('message', (m) => { if (m.ready) resolve(); });
    c.once('exit', (code) => reject(new Error(`a subscriber process exited (code ${code})`)));
  })));
  const own = subscribers(1, finish);
  [publisher] = await connectAll(own.connect, 1);
  for (let i = 0; i < inflight; i++) publish();

  await new Promise((r) => setTimeout(r, warmup * 1000));
  measuring = true;
  own.stats.measuring = true;
  for (const c of children) c.send('measure');
  const srv0 = serverPid ? treeTicks(serverPid) : null;
  const self0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, duration * 1000));
  measuring = false;
  own.stats.measuring = false;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const srv1 = serverPid ? treeTicks(serverPid) : null;
  const selfCpu = process.cpuUsage(self0);
  stopping = true;
  const results = await Promise.all(children.map((c) => new Promise((resolve) => {
    c.on('message', (m) => { if (m.result) resolve(m.result); });
    c.send('stop');
  })));
  const publisherConnected = publisher.connected;
  publisher.close();

  const all = [own.stats, ...results.map((r) => ({ ...r }))];
  const samples = all.flatMap((s) => s.samples).sort((a, b) => a - b);
  fanout.sort((a, b) => a - b);
  const pct = (xs, p) => (xs.length ? Math.round(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]) : null);
  const deliveries = all.reduce((a, s) => a + s.deliveries, 0);
  const serverCpu = srv0 !== null && srv1 !== null ? (srv1 - srv0) / CLK_TCK : null;
  const loadgenCpu = (selfCpu.user + selfCpu.system) / 1e6 + results.reduce((a, r) => a + r.cpuS, 0);
  process.stdout.write(
    JSON.stringify({
      mode: 'broadcast',
      proto: 'socketio',
      conns,
      inflight,
      size,
      duration_s: wall,
      warmup_s: warmup,
      deliveries,
      deliveries_per_sec: deliveries / wall,
      broadcasts,
      broadcasts_per_sec: broadcasts / wall,
      p50_us: pct(samples, 0.5),
      p99_us: pct(samples, 0.99),
      max_us: samples.length ? Math.round(samples.at(-1)) : null,
      fanout_p50_us: pct(fanout, 0.5),
      fanout_p99_us: pct(fanout, 0.99),
      fanout_max_us: fanout.length ? Math.round(fanout.at(-1)) : null,
      errors: all.reduce((a, s) => a + s.errors, 0),
      verify_failures: all.reduce((a, s) => a + s.verifyFailures, 0),
      handshake_failures: 0,
      conns_ok: (publisherConnected ? 1 : 0) + results.reduce((a, r) => a + r.connected, 0),
      server_cpu_s: serverCpu,
      server_cpu_us_per_delivery: serverCpu !== null && deliveries > 0 ? (serverCpu * 1e6) / deliveries : null,
      loadgen_cpu_s: loadgenCpu,
      loadgen_processes: 1 + nProc,
      threads: 1,
    }) + '\n',
  );
  process.exit(0);
}
