// Summaries across runs and the markdown report.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const min = (xs) => (xs.length ? Math.min(...xs) : null);
const max = (xs) => (xs.length ? Math.max(...xs) : null);

// Per server: medians (and the spread of throughput) over its clean runs: a run with a problem
// (no result, verify failures, missing connections) is reported, never averaged in.
export function summarize(runs, serverNames) {
  const out = {};
  for (const name of serverNames) {
    const ok = runs.filter((r) => r.server === name && r.result && r.problems.length === 0);
    const res = ok.map((r) => r.result);
    const rtt = res.map((j) => j.rtt_per_sec);
    const cpuShare = (key) =>
      res.map((j) => (j[key] == null ? null : j[key] / j.duration_s));
    out[name] = {
      runs: runs.filter((r) => r.server === name).length,
      ok_runs: ok.length,
      rtt_per_sec: { median: median(rtt), min: min(rtt), max: max(rtt) },
      p50_us: median(res.map((j) => j.p50_us)),
      p99_us: median(res.map((j) => j.p99_us)),
      max_us: median(res.map((j) => j.max_us)),
      server_cpu_us_per_msg: median(res.map((j) => j.server_cpu_us_per_msg)),
      server_cpu_share: median(cpuShare('server_cpu_s')),
      loadgen_cpu_share: median(cpuShare('loadgen_cpu_s')),
      failed_runs: runs.filter((r) => r.server === name && r.problems.length > 0).length,
    };
  }
  return out;
}

const fmtInt = (x) => (x == null ? '-' : Math.round(x).toLocaleString('en-US'));
const fmt = (x, d) => (x == null ? '-' : x.toFixed(d));
const pct = (x) => (x == null ? '-' : `${Math.round(x * 100)}%`);

export function ratio(summary, name, ref) {
  const a = summary[name]?.rtt_per_sec.median;
  const b = summary[ref]?.rtt_per_sec.median;
  return a == null || b == null || b === 0 ? null : a / b;
}

export function markdownTable(summary, serverNames) {
  const rows = [
    '| server | rtt/s median (min–max) | p50 us | p99 us | server CPU us/msg | server CPU | loadgen CPU | ratio vs net | ratio vs c |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const name of serverNames) {
    const s = summary[name];
    if (!s || s.ok_runs === 0) {
      rows.push(`| ${name} | no clean run | - | - | - | - | - | - | - |`);
      continue;
    }
    const r = s.rtt_per_sec;
    const vsNet = ratio(summary, name, 'net');
    const vsC = ratio(summary, name, 'c');
    rows.push(
      `| ${name} | ${fmtInt(r.median)} (${fmtInt(r.min)}–${fmtInt(r.max)}) | ${fmt(s.p50_us, 0)} | ${fmt(s.p99_us, 0)} | ` +
        `${fmt(s.server_cpu_us_per_msg, 2)} | ${pct(s.server_cpu_share)} | ${pct(s.loadgen_cpu_share)} | ` +
        `${vsNet == null ? '-' : fmt(vsNet, 2) + 'x'} | ${vsC == null ? '-' : fmt(vsC, 2) + 'x'} |`,
    );
  }
  return rows.join('\n');
}

export function markdownReport({ title, summary, serverNames, machine, pinning, command, options, ok, problems, notes = [] }) {
  const lines = [
    `## ${title}`,
    '',
    markdownTable(summary, serverNames),
    '',
    'Medians over clean runs. server CPU and loadgen CPU: share of one core during the measured ' +
      'period (a generator near 100% means the generator, not the server, set the pace).',
    '',
    `- machine: ${machine.nproc} CPUs, ${machine.cpu}, node ${machine.node}, ${machine.kernel}`,
    `- placement: ${pinning.note}`,
    `- options: ${Object.entries(options).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `- command: \`${command}\``,
  ];
  if (notes.length) lines.push('', 'Notes (runs kept in the medians):', ...notes.map((n) => `- ${n}`));
  if (!ok) lines.push('', '**FAILED**:', ...problems.map((p) => `- ${p}`));
  return lines.join('\n');
}
