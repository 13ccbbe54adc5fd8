// The Socket.IO load generator: `--conns` socket.io-client connections (WebSocket transport,
// the `ws` client), each keeping `--inflight` acknowledged 'echo' emits on their way; every
// acknowledgement is checked against what was sent. Prints one JSON line with the fields of
// netloop-loadgen's echo result (rtt_per_sec, p50_us, p99_us, server_cpu_us_per_msg, ...), so
// the harness's echo tables and charts take it as they are.
//
//   node bench/socketio-loadgen.js --host H --port P --server-pid PID
//        [--conns 100] [--inflight 4] [--size 64] [--duration 3] [--warmup 1]
//
// JavaScript, in a child process pinned to its own CPU: Socket.IO's client protocol (engine.io
// packets, acks) is what is measured against, and a native generator would have to
// reimplement it. It saturates before the servers do at high rates (see loadgen CPU).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    'server-pid': { type: 'string' },
    conns: { type: 'string', default: '100' },
    inflight: { type: 'string', default: '4' },
    size: { type: 'string', default: '64' },
    duration: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    'connect-timeout': { type: 'string', default: '30' },
  },
});
const conns = Number(values.conns);
const inflight = Number(values.inflight);
const size = Number(values.size);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const serverPid = Number(values['server-pid'] ?? 0);
const CLK_TCK = 100; // Linux's USER_HZ, as /proc/PID/stat counts

function serverTicks() {
  if (!serverPid) return null;
  try {
    const stat = readFileSync(`/proc/${serverPid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  } catch {
    return null;
  }
}

const payload = 'x'.repeat(size);
const samples = [];
let messages = 0;
let errors = 0;
let verifyFailures = 0;
let measuring = false;
let stopping = false;

const sockets = [];
await Promise.all(
  Array.from({ length: conns }, () =>
    new Promise((resolve) => {
      const s = io(`http://${values.host}:${values.port}`, { transports: ['websocket'], reconnection: false, timeout: Number(values['connect-timeout']) * 1000 });
      sockets.push(s);
      s.once('connect', () => resolve(true));
      s.once('connect_error', () => {
        errors++;
        resolve(false);
      });
    }),
  ),
);
const healthy = sockets.filter((s) => s.connected);

function loop(s) {
  if (stopping || !s.connected) return;
  const sent = process.hrtime.bigint();
  s.emit('echo', payload, (echoed) => {
    if (measuring) {
      messages++;
      samples.push(Number(process.hrtime.bigint() - sent) / 1000);
      if (echoed !== payload) verifyFailures++;
    }
    loop(s);
  });
}
for (const s of healthy) for (let i = 0; i < inflight; i++) loop(s);

await new Promise((r) => setTimeout(r, warmup * 1000));
measuring = true;
const srv0 = serverTicks();
const self0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
await new Promise((r) => setTimeout(r, duration * 1000));
measuring = false;
const wall = Number(process.hrtime.bigint() - t0) / 1e9;
const srv1 = serverTicks();
const self = process.cpuUsage(self0);
stopping = true;
for (const s of sockets) s.close();

samples.sort((a, b) => a - b);
const pct = (p) => (samples.length ? Math.round(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]) : null);
const serverCpu = srv0 !== null && srv1 !== null ? (srv1 - srv0) / CLK_TCK : null;
const loadgenCpu = (self.user + self.system) / 1e6;
process.stdout.write(
  JSON.stringify({
    proto: 'socketio',
    conns,
    inflight,
    size,
    duration_s: wall,
    messages,
    rtt_per_sec: messages / wall,
    bytes_per_sec: (messages * size) / wall,
    p50_us: pct(0.5),
    p99_us: pct(0.99),
    max_us: samples.length ? Math.round(samples.at(-1)) : null,
    errors,
    verify_failures: verifyFailures,
    conns_ok: healthy.length,
    server_cpu_s: serverCpu,
    server_cpu_us_per_msg: serverCpu !== null && messages > 0 ? (serverCpu * 1e6) / messages : null,
    threads: 1,
    warmup_s: warmup,
    loadgen_cpu_s: loadgenCpu,
    loadgen_cpu_us_per_msg: messages > 0 ? (loadgenCpu * 1e6) / messages : null,
  }) + '\n',
);
process.exit(0);
