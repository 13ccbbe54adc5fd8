// modes: netloop's three I/O modes side by side in one run, each server started with
// `--mode nonblocking|blocking|mixed`: echo throughput at 1, 100 and 1,000 connections, latency
// p50/p99 at one connection (one message in flight: the round trip itself), and RSS per held
// connection. Any other server (ws, c, net) may be added with --servers for reference.
// Note: mixed is blocking up to maxBlockingOnline (1,000 by default) online connections, so at
// 1,000 connections or fewer it runs every connection blocking unless --max-blocking says
// otherwise (passed to the CLI as --max-blocking).
import { echoArgs, int, protoOption, sizeLabel, threadsOption } from './common.js';

const fmtInt = (x) => (x == null ? '-' : Math.round(x).toLocaleString('en-US'));
const fmt = (x, d) => (x == null ? '-' : x.toFixed(d));

export default {
  name: 'modes',
  summary: 'the three I/O modes side by side: 1/100/1,000 connections, latency at 1, RSS per connection',
  defaultServers: ['netloop-nonblocking', 'netloop-blocking', 'netloop-mixed'],
  options: {
    proto: protoOption,
    conns: { type: 'list', default: '1,100,1000', min: 1, help: 'connection counts for throughput (a list; 1 also gives latency)' },
    inflight: { default: 4, min: 1, integer: true, help: 'messages in flight per connection above one connection (at one: 1)' },
    size: { default: 64, min: 1, integer: true, help: 'payload bytes' },
    'hold-conns': { default: 1000, min: 0, integer: true, help: 'connections held for the RSS figure (0: skip)' },
    // 3 s: netloop gives the burst's memory back a second after it (releaseMemoryAfterBurst).
    'hold-settle': { default: 3, min: 0, help: 'seconds between all held connections up and the RSS sample' },
    'hold-duration': { default: 2, min: 0.1, help: 'seconds the connections are held (and pinged every second) after it' },
    // 100: at 1,000 connections mixed is then 100 threads and 900 on the poller, the case it is for.
    'max-blocking': { default: 100, min: 0, integer: true, help: 'mixed: connections served by a thread at most, passed to the netloop servers as --max-blocking (0: their default, 1,000)' },
    duration: { default: 3, min: 0.1, help: 'measured seconds per echo run' },
    warmup: { default: 1, min: 0, help: 'seconds from all connected to measuring' },
    threads: threadsOption,
  },
  commonDefaults: { runs: 3 },
  title: (o) => `modes (${o.proto}): ${o.conns.map(int).join(' / ')} connections, ${sizeLabel(o.size)}; RSS at ${int(o['hold-conns'])} held${o['max-blocking'] ? `; mixed: ${int(o['max-blocking'])} blocking at most` : ''}`,
  cases(o) {
    const out = [];
    for (const conns of o.conns) {
      const inflight = conns === 1 ? 1 : o.inflight;
      out.push({
        id: `echo-c${conns}`,
        label: `${int(conns)} conn${conns === 1 ? '' : 's'} x ${inflight} in flight`,
        kind: 'echo',
        proto: o.proto,
        conns,
        ratioAgainst: ['netloop-nonblocking'],
        loadgenArgs: echoArgs({ proto: o.proto, msgType: 'binary', conns, inflight, size: o.size, duration: o.duration, warmup: o.warmup, threads: o.threads }),
        timeoutS: 30 + o.warmup + o.duration + 30,
        // At one connection with one message in flight the round trip is the latency.
        ...(conns === 1 ? {
          extraFigures: [
            { key: 'p50_us', label: 'p50 latency', unit: 'us', better: 'lower', get: (j) => j.p50_us },
            { key: 'p99_us', label: 'p99 latency', unit: 'us', better: 'lower', get: (j) => j.p99_us },
          ],
        } : {}),
      });
    }
    if (o['hold-conns'] > 0) {
      out.push({
        id: 'hold',
        label: `${int(o['hold-conns'])} idle connections`,
        kind: 'hold',
        proto: o.proto,
        conns: o['hold-conns'],
        loadgenArgs: [
          '--hold', '--proto', o.proto, '--conns', String(o['hold-conns']), '--duration', String(o['hold-duration']),
          '--settle', String(o['hold-settle']), ...(o.proto === 'ws' ? ['--ping-interval', String(Math.min(1, o['hold-duration'] / 2))] : []),
          '--connect-timeout', '60', '--threads', String(o.threads),
        ],
        timeoutS: 60 + o['hold-settle'] + o['hold-duration'] + 5 + 30,
        pauseS: 1,
      });
    }
    return out;
  },
  // One line per server with the figures of every case.
  overview(cases, byCase, serverNames) {
    const echo = cases.filter((c) => c.kind === 'echo');
    const one = echo.find((c) => c.conns === 1);
    const hold = cases.find((c) => c.kind === 'hold');
    const head = ['server', ...echo.map((c) => `rtt/s at ${int(c.conns)}`), ...(one ? ['p50 us at 1', 'p99 us at 1'] : []),
      ...(hold ? [`RSS/conn B (${int(hold.conns)} held)`] : []), ...echo.map((c) => `server us/msg at ${int(c.conns)}`)];
    const rows = [`| ${head.join(' | ')} |`, `|---|${'---:|'.repeat(head.length - 1)}`];
    for (const name of serverNames) {
      const get = (c) => byCase[c.id]?.[name];
      const ok = (s) => s && s.ok_runs > 0;
      rows.push(`| ${name} | ${[
        ...echo.map((c) => (ok(get(c)) ? fmtInt(get(c).rtt_per_sec.median) : 'failed')),
        ...(one ? [ok(get(one)) ? fmt(get(one).p50_us, 0) : '-', ok(get(one)) ? fmt(get(one).p99_us, 0) : '-'] : []),
        ...(hold ? [ok(get(hold)) ? fmtInt(get(hold).rss_per_conn_bytes.median) : 'failed'] : []),
        ...echo.map((c) => (ok(get(c)) ? fmt(get(c).server_cpu_us_per_msg, 2) : '-')),
      ].join(' | ')} |`);
    }
    return rows.join('\n');
  },
};
