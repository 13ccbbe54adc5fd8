// Summaries across runs and the markdown reports: echo (throughput) and hold (memory).

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const nums = (xs) => xs.filter((x) => typeof x === 'number' && Number.isFinite(x));
const min = (xs) => (nums(xs).length ? Math.min(...nums(xs)) : null);
const max = (xs) => (nums(xs).length ? Math.max(...nums(xs)) : null);
const spread = (xs) => ({ median: median(xs), min: min(xs), max: max(xs) });

// Per server: medians (and spreads) over its clean runs: a run with a problem (no result, verify
// failures, missing connections) is reported, never averaged in.
export function summarize(runs, serverNames, kind = 'echo') {
  const out = {};
  for (const name of serverNames) {
    const mine = runs.filter((r) => r.server === name);
    const ok = mine.filter((r) => r.result && r.problems.length === 0);
    const res = ok.map((r) => r.result);
    const failed = mine.filter((r) => r.problems.length > 0);
    const common = {
      runs: mine.length,
      ok_runs: ok.length,
      failed_runs: failed.length,
      first_problem: failed[0]?.problems[0] ?? null,
      contended_runs: mine.filter((r) => r.notes?.some((x) => x.startsWith('contended'))).length,
      other_cpu: median(mine.map((r) => r.other_cpu)),
    };
    if (kind === 'hold') {
      out[name] = {
        ...common,
        conns_ok: median(res.map((j) => j.conns_ok)),
        rss_per_conn_bytes: spread(res.map((j) => j.rss_per_conn_bytes)),
        rss_before_bytes: median(res.map((j) => j.rss_before_bytes)),
        rss_idle_bytes: median(res.map((j) => j.rss_idle_bytes)),
        rss_end_bytes: median(res.map((j) => j.rss_end_bytes)),
        connect_time_s: spread(res.map((j) => j.connect_time_s)),
        connects_per_sec: median(res.map((j) => j.connects_per_sec)),
        // Server CPU per connection for accept + upgrade, and per ping answered.
        connect_cpu_us_per_conn: median(res.map((j) => (j.server_connect_cpu_s == null || !j.conns_ok ? null : (j.server_connect_cpu_s * 1e6) / j.conns_ok))),
        hold_cpu_us_per_pong: median(res.map((j) => (j.server_hold_cpu_s == null || !j.pongs_received ? null : (j.server_hold_cpu_s * 1e6) / j.pongs_received))),
        pings_sent: median(res.map((j) => j.pings_sent)),
        pongs_received: median(res.map((j) => j.pongs_received)),
        ping_p99_us: median(res.map((j) => j.ping_p99_us)),
        // hold (levels): the fixed cost (the line's intercept), the kernel's side per connection
        // (both ends of a loopback connection), the server's processes and the generator's CPU.
        rss_fixed_bytes: median(res.map((j) => j.rss_fixed_bytes)),
        rss_per_conn_from_start_bytes: median(res.map((j) => j.rss_per_conn_from_start_bytes)),
        kernel_slab_bytes_per_conn: median(res.map((j) => j.kernel?.slab_bytes_per_conn)),
        kernel_tcp_mem_bytes_per_conn: median(res.map((j) => j.kernel?.tcp_mem_bytes_per_conn)),
        kernel_slab_caches: res.find((j) => j.kernel)?.kernel.slab_caches ?? null,
        server_processes: median(res.map((j) => j.server_processes)),
        loadgen_cpu_s: median(res.map((j) => j.loadgen_cpu_s)),
      };
      continue;
    }
    const cpuShare = (key) => res.map((j) => (j[key] == null ? null : j[key] / j.duration_s));
    out[name] = {
      ...common,
      rtt_per_sec: spread(res.map((j) => j.rtt_per_sec)),
      p50_us: median(res.map((j) => j.p50_us)),
      p99_us: median(res.map((j) => j.p99_us)),
      max_us: median(res.map((j) => j.max_us)),
      server_cpu_us_per_msg: median(res.map((j) => j.server_cpu_us_per_msg)),
      loadgen_cpu_us_per_msg: median(res.map((j) => j.loadgen_cpu_us_per_msg)),
      server_cpu_share: median(cpuShare('server_cpu_s')),
      loadgen_cpu_share: median(cpuShare('loadgen_cpu_s')),
    };
  }
  return out;
}

const fmtInt = (x) => (x == null ? '-' : Math.round(x).toLocaleString('en-US'));
const fmt = (x, d) => (x == null ? '-' : x.toFixed(d));
const pct = (x) => (x == null ? '-' : `${Math.round(x * 100)}%`);
const mib = (x) => (x == null ? '-' : (x / 1048576).toFixed(1));
const cell = (s) => String(s).replace(/\|/g, '\\|').slice(0, 160);

export function ratio(summary, name, ref) {
  const a = summary[name]?.rtt_per_sec?.median;
  const b = summary[ref]?.rtt_per_sec?.median;
  return a == null || b == null || b === 0 ? null : a / b;
}

function failedRow(name, s, columns) {
  const why = s?.first_problem ? `no clean run: ${cell(s.first_problem)}` : 'no clean run';
  return `| ${name} | ${why} |${' - |'.repeat(columns - 2)}`;
}

export function markdownTable(summary, serverNames, ratioAgainst = ['net', 'c']) {
  const head = ['server', 'rtt/s median (min–max)', 'p50 us', 'p99 us', 'server CPU us/msg', 'server CPU', 'loadgen CPU',
    ...ratioAgainst.map((r) => `ratio vs ${r}`)];
  const rows = [`| ${head.join(' | ')} |`, `|---|${'---:|'.repeat(head.length - 1)}`];
  for (const name of serverNames) {
    const s = summary[name];
    if (!s || s.ok_runs === 0) {
      rows.push(failedRow(name, s, head.length));
      continue;
    }
    const r = s.rtt_per_sec;
    const ratios = ratioAgainst.map((ref) => {
      const x = ratio(summary, name, ref);
      return x == null ? '-' : `${fmt(x, 2)}x`;
    });
    rows.push(
      `| ${name} | ${fmtInt(r.median)} (${fmtInt(r.min)}–${fmtInt(r.max)}) | ${fmt(s.p50_us, 0)} | ${fmt(s.p99_us, 0)} | ` +
        `${fmt(s.server_cpu_us_per_msg, 2)} | ${pct(s.server_cpu_share)} | ${pct(s.loadgen_cpu_share)} |${ratios.map((x) => ` ${x} |`).join('')}`,
    );
  }
  return rows.join('\n');
}

export function holdTable(summary, serverNames) {
  // Levelled holds (hold) add the fixed cost and the kernel's side; ws-hold keeps its columns.
  const levelled = serverNames.some((n) => summary[n]?.rss_fixed_bytes != null);
  const head = ['server', 'held', `RSS per conn, bytes${levelled ? ' (slope)' : ''}: median (min–max)`, ...(levelled ? ['fixed MiB', 'kernel slab B/conn', 'TCP buffers B/conn'] : []),
    'RSS MiB before → idle → end', 'connect time s: median (min–max)', 'connects/s', 'server CPU us per connect', 'server CPU us per pong', 'ping p99 us'];
  const rows = [`| ${head.join(' | ')} |`, `|---|${'---:|'.repeat(head.length - 1)}`];
  for (const name of serverNames) {
    const s = summary[name];
    if (!s || s.ok_runs === 0) {
      rows.push(failedRow(name, s, head.length));
      continue;
    }
    const r = s.rss_per_conn_bytes;
    const c = s.connect_time_s;
    rows.push(
      `| ${name} | ${fmtInt(s.conns_ok)} | ${fmtInt(r.median)} (${fmtInt(r.min)}–${fmtInt(r.max)}) | ` +
        (levelled ? `${mib(s.rss_fixed_bytes)} | ${fmtInt(s.kernel_slab_bytes_per_conn)} | ${fmtInt(s.kernel_tcp_mem_bytes_per_conn)} | ` : '') +
        `${mib(s.rss_before_bytes)} → ${mib(s.rss_idle_bytes)} → ${mib(s.rss_end_bytes)} | ` +
        `${fmt(c.median, 2)} (${fmt(c.min, 2)}–${fmt(c.max, 2)}) | ${fmtInt(s.connects_per_sec)} | ` +
        `${fmt(s.connect_cpu_us_per_conn, 0)} | ${fmt(s.hold_cpu_us_per_pong, 1)} | ${fmt(s.ping_p99_us, 0)} |`,
    );
  }
  // Where the kernel's bytes go (system-wide, both ends of each loopback connection).
  const caches = serverNames.filter((n) => summary[n]?.kernel_slab_caches?.length);
  if (caches.length) rows.push('', ...caches.map((n) => `kernel slab growth per connection, ${n} run (both ends): ${summary[n].kernel_slab_caches.slice(0, 8).map((k) => `${k.cache} ${fmtInt(k.bytes_per_conn)} B`).join(', ')}`));
  return rows.join('\n');
}
