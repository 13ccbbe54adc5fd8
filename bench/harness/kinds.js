// What each kind of measurement reports: the problems that fail a run, its progress line, the
// per-server summary over runs, its markdown table and the figures its chart shows.
//
//   echo       closed-loop echo (netloop-loadgen's default mode): round trips per second
//   latency    open-loop echo at a fixed rate (--rate): latency percentiles from when each
//              message was due
//   hold       idle connections held (--hold): RSS per connection, connect time
//   broadcast  one publisher, every message to every connection (--broadcast): deliveries/s
//   churn      connect, (upgrade,) one message, close, again (--churn): cycles per second
//
// `figures` are what the charts and the smoke test use: each is { key, label, unit, better, get }
// and its summary is { median, min, max } over the server's clean runs.
import { holdTable, markdownTable, median, summarize as summarizeOld } from './report.js';

const nums = (xs) => xs.filter((x) => typeof x === 'number' && Number.isFinite(x));
export const spread = (xs) => {
  const v = nums(xs);
  return { median: median(v), min: v.length ? Math.min(...v) : null, max: v.length ? Math.max(...v) : null };
};

const fmtInt = (x) => (x == null ? '-' : Math.round(x).toLocaleString('en-US'));
const fmt = (x, d) => (x == null ? '-' : x.toFixed(d));
const pct = (x) => (x == null ? '-' : `${Math.round(x * 100)}%`);
const cell = (s) => String(s).replace(/\|/g, '\\|').slice(0, 160);
const n = (x, d = 0) => (x == null ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d }));
const mb = (x) => (x == null ? '-' : `${(x / 1048576).toFixed(1)} MB`);
const share = (j, key) => (j[key] == null ? null : j[key] / j.duration_s);

function failedRow(name, s, columns) {
  const why = s?.first_problem ? `no clean run: ${cell(s.first_problem)}` : 'no clean run';
  return `| ${name} | ${why} |${' - |'.repeat(columns - 2)}`;
}

function table(head, serverNames, summary, row) {
  const rows = [`| ${head.join(' | ')} |`, `|---|${'---:|'.repeat(head.length - 1)}`];
  for (const name of serverNames) {
    const s = summary[name];
    if (!s || s.ok_runs === 0) rows.push(failedRow(name, s, head.length));
    else rows.push(`| ${name} | ${row(s).join(' | ')} |`);
  }
  return rows.join('\n');
}

function commonProblems(j, conns) {
  const p = [];
  if (j.verify_failures > 0) p.push(`${j.verify_failures} verify failure(s)`);
  if (j.errors > 0) p.push(`${j.errors} connection error(s)`);
  if (j.conns_ok < conns) p.push(`only ${j.conns_ok} of ${conns} connections healthy`);
  return p;
}

const spreadCell = (s, d = 0) => (d === 0 ? `${fmtInt(s.median)} (${fmtInt(s.min)}–${fmtInt(s.max)})` : `${fmt(s.median, d)} (${fmt(s.min, d)}–${fmt(s.max, d)})`);

export const kinds = {
  echo: {
    figures: [{ key: 'rtt_per_sec', label: 'round trips/s', unit: '/s', better: 'higher', get: (j) => j.rtt_per_sec }],
    problems(j, conns) {
      const p = [];
      if (j.verify_failures > 0) p.push(`${j.verify_failures} verify failure(s)`);
      if (j.conns_ok < conns) p.push(`only ${j.conns_ok} of ${conns} connections healthy`);
      return p;
    },
    progress: (j) =>
      `${n(j.rtt_per_sec).padStart(11)} rtt/s  p50 ${n(j.p50_us)} us  p99 ${n(j.p99_us)} us  ` +
      `server ${n(j.server_cpu_us_per_msg, 3)} us/msg (${pct(share(j, 'server_cpu_s'))} CPU)  loadgen ${pct(share(j, 'loadgen_cpu_s'))} CPU  errors ${j.errors}`,
    summarize: (runs, names) => summarizeOld(runs, names, 'echo'),
    table: (summary, names, c) => markdownTable(summary, names, (c.ratioAgainst ?? []).filter((r) => names.includes(r))),
    legend:
      'Medians over clean runs. server CPU and loadgen CPU: share of one core during the measured period ' +
      '(a generator near 100% means the generator, not the server, set the pace).',
  },

  latency: {
    figures: [
      { key: 'p50_us', label: 'p50 latency', unit: 'us', better: 'lower', get: (j) => j.p50_us },
      { key: 'p99_us', label: 'p99 latency', unit: 'us', better: 'lower', get: (j) => j.p99_us },
      { key: 'p999_us', label: 'p99.9 latency', unit: 'us', better: 'lower', get: (j) => j.p999_us },
    ],
    problems: (j, conns) => commonProblems(j, conns),
    notes(j) {
      // Open loop: if the server did not keep up, its latency is the queue it built, and the
      // figures are about that queue; flagged, kept.
      if (j.target_per_sec && j.rtt_per_sec < 0.97 * j.target_per_sec) {
        return [`behind the schedule: ${n(j.rtt_per_sec)} of ${n(j.target_per_sec)} messages/s echoed (${n(j.backlog_at_end)} due but not echoed at the end)`];
      }
      return [];
    },
    progress: (j) =>
      `${n(j.rtt_per_sec).padStart(9)}/${n(j.target_per_sec)} msg/s  p50 ${n(j.p50_us)}  p90 ${n(j.p90_us)}  p99 ${n(j.p99_us)}  ` +
      `p99.9 ${n(j.p999_us)}  max ${n(j.max_us)} us  send lag p99 ${n(j.send_lag_p99_us)} us  server ${pct(share(j, 'server_cpu_s'))} CPU  errors ${j.errors}`,
    summarize(runs) {
      const res = runs.map((r) => r.result);
      return {
        rtt_per_sec: spread(res.map((j) => j.rtt_per_sec)),
        target_per_sec: median(res.map((j) => j.target_per_sec)),
        p50_us: spread(res.map((j) => j.p50_us)),
        p90_us: median(res.map((j) => j.p90_us)),
        p99_us: spread(res.map((j) => j.p99_us)),
        p999_us: median(res.map((j) => j.p999_us)),
        max_us: median(res.map((j) => j.max_us)),
        send_lag_p99_us: median(res.map((j) => j.send_lag_p99_us)),
        server_cpu_us_per_msg: median(res.map((j) => j.server_cpu_us_per_msg)),
        server_cpu_share: median(res.map((j) => share(j, 'server_cpu_s'))),
      };
    },
    table: (summary, names) =>
      table(
        ['server', 'msg/s (target)', 'p50 us: median (min–max)', 'p90 us', 'p99 us: median (min–max)', 'p99.9 us', 'max us', 'generator send lag p99 us', 'server CPU us/msg', 'server CPU'],
        names,
        summary,
        (s) => [
          `${fmtInt(s.rtt_per_sec.median)} (${fmtInt(s.target_per_sec)})`, spreadCell(s.p50_us), fmt(s.p90_us, 0), spreadCell(s.p99_us),
          fmt(s.p999_us, 0), fmt(s.max_us, 0), fmt(s.send_lag_p99_us, 0), fmt(s.server_cpu_us_per_msg, 2), pct(s.server_cpu_share),
        ],
      ),
    legend:
      'Open loop: every connection sends on a fixed schedule whatever the echoes do; latency runs from when each ' +
      'message was due (not when it was sent), so a server that falls behind shows it here. Medians over clean runs ' +
      '(p50 and p99 with their min–max). "generator send lag" is how late the generator itself sent: a lag near the ' +
      'latency would mean the generator, not the server, is measured.',
  },

  hold: {
    figures: [
      { key: 'rss_per_conn_bytes', label: 'RSS per connection', unit: 'B', better: 'lower', get: (j) => j.rss_per_conn_bytes },
      { key: 'connect_time_s', label: 'connect time (all upgraded)', unit: 's', better: 'lower', get: (j) => j.connect_time_s },
    ],
    problems(j, conns) {
      const p = [];
      if (j.errors > 0) {
        const parts = [];
        if (j.failed_conns) parts.push(`${j.failed_conns} failed connection(s)${j.handshake_failures ? `, ${j.handshake_failures} in the handshake` : ''}`);
        if (j.pings_unanswered) parts.push(`${j.pings_unanswered} unanswered ping(s)`);
        p.push(`${j.errors} error(s): ${parts.join('; ')}`);
      }
      if (j.conns_ok < conns) p.push(`only ${j.conns_ok} of ${conns} connections held`);
      if (j.rss_per_conn_bytes == null) p.push('server RSS unknown');
      return p;
    },
    notes(j) {
      // RSS is sampled, not attributed: a garbage collection or the allocator returning memory
      // between the samples can outweigh a few hundred connections.
      return j.rss_per_conn_bytes != null && j.rss_per_conn_bytes <= 0
        ? [`RSS did not grow (${n(j.rss_per_conn_bytes)} B per connection): too few connections to measure it against GC and allocator noise`]
        : [];
    },
    progress: (j) =>
      `${n(j.conns_ok)}/${n(j.conns)} up in ${n(j.connect_time_s, 2)} s  ` +
      `RSS/conn ${n(j.rss_per_conn_bytes)} B (before ${mb(j.rss_before_bytes)}, idle ${mb(j.rss_idle_bytes)}, end ${mb(j.rss_end_bytes)})  ` +
      `pongs ${n(j.pongs_received)}/${n(j.pings_sent)}  errors ${j.errors}`,
    summarize: (runs, names) => summarizeOld(runs, names, 'hold'),
    table: (summary, names) => holdTable(summary, names),
    legend:
      'Medians over clean runs, a fresh server each run. hold: RSS per conn (slope) = the growth of the server\'s RSS ' +
      'per connection between the held levels (least squares; each level sampled after the settle time), fixed = the ' +
      'line\'s intercept (per-process costs, not per connection); kernel slab and TCP buffers: growth of /proc/slabinfo ' +
      '(every cache) and /proc/net/sockstat TCP mem between the first and last level, per connection, both ends of the ' +
      'loopback connection counted (machine-wide). ws-hold: RSS per conn = (RSS when all are upgraded and idle after ' +
      'the settle time - RSS before the first connect) / connections held. "end" is after the hold and its pings. ' +
      'connect time: first connect to last upgrade. server CPU per connect: accept + upgrade; per pong: CPU during ' +
      'the hold / pongs.',
  },

  broadcast: {
    figures: [{ key: 'deliveries_per_sec', label: 'deliveries/s', unit: '/s', better: 'higher', get: (j) => j.deliveries_per_sec }],
    problems: (j, conns) => commonProblems(j, conns),
    progress: (j) =>
      `${n(j.deliveries_per_sec).padStart(11)} deliveries/s (${j.broadcasts_per_sec < 10 ? j.broadcasts_per_sec : n(j.broadcasts_per_sec)} broadcasts/s to ${n(j.conns)})  ` +
      `p50 ${n(j.p50_us)} us  p99 ${n(j.p99_us)} us  fan-out p99 ${n(j.fanout_p99_us)} us  ` +
      `server ${n(j.server_cpu_us_per_delivery, 3)} us/delivery (${pct(share(j, 'server_cpu_s'))} CPU)  loadgen ${pct(share(j, 'loadgen_cpu_s'))} CPU  errors ${j.errors}`,
    summarize(runs) {
      const res = runs.map((r) => r.result);
      return {
        deliveries_per_sec: spread(res.map((j) => j.deliveries_per_sec)),
        broadcasts_per_sec: median(res.map((j) => j.broadcasts_per_sec)),
        p50_us: median(res.map((j) => j.p50_us)),
        p99_us: median(res.map((j) => j.p99_us)),
        fanout_p99_us: median(res.map((j) => j.fanout_p99_us)),
        server_cpu_us_per_delivery: median(res.map((j) => j.server_cpu_us_per_delivery)),
        server_cpu_share: median(res.map((j) => share(j, 'server_cpu_s'))),
        loadgen_cpu_share: median(res.map((j) => share(j, 'loadgen_cpu_s'))),
      };
    },
    // broadcasts/s with 2 decimals below 10 (100,000 subscribers: about one a second)
    table: (summary, names, c) =>
      table(
        ['server', 'deliveries/s median (min–max)', 'broadcasts/s', 'delivery p50 us', 'delivery p99 us', 'fan-out p99 us', 'server CPU us/delivery', 'server CPU', 'loadgen CPU',
          ...(c.ratioAgainst ?? []).filter((r) => names.includes(r)).map((r) => `ratio vs ${r}`)],
        names,
        summary,
        (s) => [
          spreadCell(s.deliveries_per_sec), s.broadcasts_per_sec != null && s.broadcasts_per_sec < 10 ? fmt(s.broadcasts_per_sec, 2) : fmtInt(s.broadcasts_per_sec), fmt(s.p50_us, 0), fmt(s.p99_us, 0), fmt(s.fanout_p99_us, 0),
          fmt(s.server_cpu_us_per_delivery, 3), pct(s.server_cpu_share), pct(s.loadgen_cpu_share),
          ...(c.ratioAgainst ?? []).filter((r) => names.includes(r)).map((r) => {
            const a = s.deliveries_per_sec.median;
            const b = summary[r]?.deliveries_per_sec?.median;
            return a == null || !b ? '-' : `${fmt(a / b, 2)}x`;
          }),
        ],
      ),
    legend:
      'Connection 0 publishes; the server sends each message to every connection (the publisher included); every ' +
      'connection checks every byte. At most --inflight messages are on their way to everyone at once (a closed ' +
      'loop). deliveries/s = messages received by all connections together; delivery latency: publish to each ' +
      'receipt; fan-out: publish to the last receipt. Medians over clean runs.',
  },

  churn: {
    figures: [{ key: 'cycles_per_sec', label: 'connections/s (connect, message, close)', unit: '/s', better: 'higher', get: (j) => j.cycles_per_sec }],
    problems(j, conns) {
      const p = commonProblems(j, conns);
      if (!(j.cycles > 0)) p.push('no cycle completed');
      return p;
    },
    progress: (j) =>
      `${n(j.cycles_per_sec).padStart(9)} conns/s  cycle p50 ${n(j.p50_us)} us  p99 ${n(j.p99_us)} us  ` +
      `server ${n(j.server_cpu_us_per_cycle, 1)} us/conn (${pct(share(j, 'server_cpu_s'))} CPU)  loadgen ${pct(share(j, 'loadgen_cpu_s'))} CPU  errors ${j.errors}`,
    summarize(runs) {
      const res = runs.map((r) => r.result);
      return {
        cycles_per_sec: spread(res.map((j) => j.cycles_per_sec)),
        p50_us: median(res.map((j) => j.p50_us)),
        p99_us: median(res.map((j) => j.p99_us)),
        server_cpu_us_per_cycle: median(res.map((j) => j.server_cpu_us_per_cycle)),
        server_cpu_share: median(res.map((j) => share(j, 'server_cpu_s'))),
        loadgen_cpu_share: median(res.map((j) => share(j, 'loadgen_cpu_s'))),
        connect_retries: median(res.map((j) => j.connect_retries)),
        // --tls: the share of handshakes that resumed a session (the server's ticket policy).
        tls_resumed_share: median(res.map((j) => (j.tls_handshakes > 0 ? j.tls_resumed / j.tls_handshakes : null))),
      };
    },
    table: (summary, names, c) =>
      table(
        [
          'server', 'connections/s median (min–max)', 'cycle p50 us', 'cycle p99 us', 'server CPU us/conn', 'server CPU', 'loadgen CPU', 'connect retries',
          ...(c?.tls ? ['TLS resumed'] : []),
        ],
        names,
        summary,
        (s) => [
          spreadCell(s.cycles_per_sec), fmt(s.p50_us, 0), fmt(s.p99_us, 0), fmt(s.server_cpu_us_per_cycle, 1), pct(s.server_cpu_share),
          pct(s.loadgen_cpu_share), fmtInt(s.connect_retries), ...(c?.tls ? [pct(s.tls_resumed_share)] : []),
        ],
      ),
    legend:
      'Each slot loops: connect, (WebSocket upgrade,) one message echoed and checked, close (ws: close frame 1000, ' +
      'the server answers and closes; tcp: the client shuts down its side, the server closes), connect again. ' +
      'connections/s = cycles completed per second; cycle time: first connect attempt to the server\'s FIN. Medians over clean runs.',
  },
};

export function kindOf(name) {
  const k = kinds[name];
  if (!k) throw new Error(`unknown measurement kind ${name}`);
  return k;
}

// The figures a case is charted by: its kind's, plus any the scenario adds (modes: latency at one
// connection).
export const figuresOf = (c) => [...kindOf(c.kind).figures, ...(c.extraFigures ?? [])];

// Per server, over its runs of one case: the counts every kind shares, the kind's own summary
// (clean runs only: a run with a problem is reported, never averaged in) and the chart figures.
export function summarizeCase(c, runs, serverNames) {
  const kind = kindOf(c.kind);
  const mine = runs.filter((r) => r.case === c.id);
  const out = {};
  const own = kind.summarize === kinds.echo.summarize || kind.summarize === kinds.hold.summarize
    ? kind.summarize(mine, serverNames) // report.js's summarize: it keeps the clean runs itself
    : null;
  for (const name of serverNames) {
    const all = mine.filter((r) => r.server === name);
    if (all.length === 0) continue; // the server does not serve this case
    const ok = all.filter((r) => r.result && r.problems.length === 0);
    const failed = all.filter((r) => r.problems.length > 0);
    const common = {
      runs: all.length,
      ok_runs: ok.length,
      failed_runs: failed.length,
      first_problem: failed[0]?.problems[0] ?? null,
      contended_runs: all.filter((r) => r.notes?.some((x) => x.startsWith('contended'))).length,
      other_cpu: median(all.map((r) => r.other_cpu)),
    };
    const body = own ? own[name] : kind.summarize(ok);
    const figures = {};
    for (const f of figuresOf(c)) figures[f.key] = spread(ok.map((r) => f.get(r.result)));
    out[name] = { ...body, ...common, figures };
  }
  return out;
}

export function progressLine(rec, runs, label) {
  const head = `[run ${rec.run}/${runs}] ${label ? `${label}: ` : ''}${rec.server.padEnd(8)}`;
  const j = rec.result;
  if (!j) return `${head} FAILED: ${(rec.error ?? 'no result').split('\n')[0]}`;
  const tail =
    (rec.problems.length ? `  PROBLEM: ${rec.problems.join('; ')}` : '') +
    (rec.notes?.length ? `  NOTE: ${rec.notes.join('; ')}` : '');
  return `${head} ${kindOf(rec.kind).progress(j)}${tail}`;
}
