// A bar chart as a standalone SVG file, written by hand (no dependency): one panel per figure
// (a case's throughput, a latency percentile, RSS per connection...), the servers side by side in
// each, a bar at the median over the clean runs and a whisker from the min to the max run.
// Each panel has its own scale starting at zero, so bar lengths compare servers, not panels.

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1', '#edc948', '#9c755f', '#bab0ac'];

// The classes both charts use: title, panel title, labels and values, notes, failures, whiskers
// (and fitted lines), axes, grid.
const STYLE =
  '<style>.t{font-size:15px;font-weight:bold}.p{font-size:13px;font-weight:bold}.l,.v{font-size:12px}.n{font-size:10px;fill:#555}' +
  '.f{font-size:11px;fill:#c00}.w{stroke:#222;stroke-width:1.2;fill:none}.a{stroke:#444;stroke-width:1}.g{stroke:#ccc;stroke-dasharray:3 3}</style>';

// The drawn lines as a document of width W: the subtitle's lines (notes) below y, then the
// height that holds them all.
function svgDocument(W, y, lines, subtitle) {
  let bottom = y + 4;
  const notes = subtitle.map((s) => `<text x="12" y="${(bottom += 14)}" class="n">${esc(s)}</text>`);
  const H = bottom + 12;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    STYLE,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    ...lines,
    ...notes,
    '</svg>',
    '',
  ].join('\n');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

// 1234 -> "1,234"; 1234567 -> "1.23 M"; 0.5 -> "0.50"
export function compact(x) {
  if (x == null || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a >= 1e9) return `${(x / 1e9).toFixed(2)} G`;
  if (a >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (a >= 1e4) return `${(x / 1e3).toFixed(1)} k`;
  if (a >= 100) return Math.round(x).toLocaleString('en-US');
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

// A scale end: the next "nice" number (1, 2, 2.5, 5 x 10^k) above v.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * panels: [{ title, unit, better: 'higher'|'lower', rows: [{ server, median, min, max, problem }] }]
 * servers: every server name, in the order that fixes its colour.
 */
export function chartSvg({ title, subtitle = [], panels, servers }) {
  const W = 860;
  const labelW = 170;
  const valueW = 190;
  const barX = labelW + 10;
  const barW = W - barX - valueW;
  const rowH = 20;
  const lines = [];
  let y = 34;
  lines.push(`<text x="12" y="22" class="t">${esc(title)}</text>`);
  const colour = (name) => PALETTE[Math.max(0, servers.indexOf(name)) % PALETTE.length];
  for (const p of panels) {
    y += 14;
    const better = p.better === 'lower' ? 'lower is better' : 'higher is better';
    lines.push(`<text x="12" y="${y}" class="p">${esc(p.title)}</text>`);
    lines.push(`<text x="${W - 12}" y="${y}" class="n" text-anchor="end">${esc(`${p.unit ? `${p.unit}, ` : ''}${better}; bar: median, whisker: min–max over runs`)}</text>`);
    y += 8;
    const top = Math.max(0, ...p.rows.map((r) => (Number.isFinite(r.max) ? r.max : Number.isFinite(r.median) ? r.median : 0)));
    const scaleMax = niceCeil(top);
    const xOf = (v) => barX + Math.max(0, Math.min(1, v / scaleMax)) * barW;
    const y0 = y;
    for (const r of p.rows) {
      const cy = y + rowH / 2;
      lines.push(`<text x="${labelW}" y="${cy + 4}" class="l" text-anchor="end">${esc(r.server)}</text>`);
      if (!Number.isFinite(r.median)) {
        lines.push(`<text x="${barX + 4}" y="${cy + 4}" class="f">${esc(r.problem ? `no clean run: ${r.problem}`.slice(0, 110) : 'no clean run')}</text>`);
        y += rowH;
        continue;
      }
      const x1 = xOf(r.median);
      lines.push(`<rect x="${barX}" y="${y + 3}" width="${(x1 - barX).toFixed(1)}" height="${rowH - 6}" fill="${colour(r.server)}"/>`);
      if (Number.isFinite(r.min) && Number.isFinite(r.max) && r.max > r.min) {
        const a = xOf(r.min).toFixed(1);
        const b = xOf(r.max).toFixed(1);
        lines.push(`<path d="M${a} ${cy}H${b}M${a} ${cy - 5}V${cy + 5}M${b} ${cy - 5}V${cy + 5}" class="w"/>`);
      }
      const range = Number.isFinite(r.min) && Number.isFinite(r.max) && r.max > r.min ? ` (${compact(r.min)}–${compact(r.max)})` : '';
      lines.push(`<text x="${W - valueW + 8}" y="${cy + 4}" class="v">${esc(`${compact(r.median)}${range}`)}</text>`);
      y += rowH;
    }
    // The axis: zero and the scale's end.
    lines.push(`<path d="M${barX} ${y0}V${y}" class="a"/>`);
    lines.push(`<text x="${barX}" y="${y + 11}" class="n" text-anchor="middle">0</text>`);
    lines.push(`<text x="${barX + barW}" y="${y + 11}" class="n" text-anchor="middle">${esc(compact(scaleMax))}</text>`);
    lines.push(`<path d="M${barX + barW} ${y0}V${y}" class="g"/>`);
    y += 16;
  }
  return svgDocument(W, y, lines, subtitle);
}

// The chart of one harness run, from its results record (bench/results/*.json): one panel per
// case and figure, the servers that ran the case side by side.
export function chartOfRecord(rec) {
  const panels = [];
  for (const c of rec.cases) {
    for (const f of c.figures) {
      panels.push({
        title: rec.cases.length > 1 ? `${c.label}: ${f.label}` : f.label,
        unit: f.unit,
        better: f.better,
        rows: c.servers.map((n) => {
          const s = c.summary[n];
          return { server: n, ...(s.ok_runs > 0 ? s.figures[f.key] : { median: null }), problem: s.first_problem };
        }),
      });
    }
  }
  const m = rec.machine;
  const contended = rec.runs.filter((r) => r.notes?.some((x) => x.startsWith('contended'))).length;
  return chartSvg({
    title: rec.title ?? rec.scenario,
    servers: rec.servers,
    panels,
    subtitle: [
      `${rec.options.runs} run(s) per server, a fresh server each run; ${rec.pinning.note}`,
      `${contended} of ${rec.runs.length} server runs contended (other processes on this machine used more than 0.2 CPU meanwhile)`,
      `${m.nproc} CPUs, ${m.cpu}, node ${m.node}, ${m.kernel}; ${rec.started_at.slice(0, 16).replace('T', ' ')} UTC`,
      `made by: ${rec.command}`,
    ],
  });
}

/**
 * Time series as a standalone SVG (the soak): one panel per series, time on the x axis, each
 * panel with its own y scale from zero; `fit` ({ from, slope, intercept }) draws the fitted
 * line over the part of the run it was fitted on (dashed).
 * panels: [{ title, unit, points: [[tSeconds, value]], fit? }]
 */
export function seriesChartSvg({ title, subtitle = [], panels }) {
  const W = 860;
  const plotX = 70;
  const plotW = W - plotX - 30;
  const plotH = 110;
  const lines = [`<text x="12" y="22" class="t">${esc(title)}</text>`];
  let y = 34;
  const tMax = Math.max(1, ...panels.flatMap((p) => p.points.map(([t]) => t)));
  const xOf = (t) => plotX + (t / tMax) * plotW;
  panels.forEach((p, i) => {
    y += 16;
    lines.push(`<text x="12" y="${y}" class="p">${esc(p.title)}</text>`);
    if (p.unit) lines.push(`<text x="${W - 12}" y="${y}" class="n" text-anchor="end">${esc(p.unit)}</text>`);
    y += 6;
    const top = niceCeil(Math.max(0, ...p.points.map(([, v]) => (Number.isFinite(v) ? v : 0))));
    const yOf = (v) => y + plotH - (Math.max(0, v) / top) * plotH;
    lines.push(`<path d="M${plotX} ${y}V${y + plotH}H${plotX + plotW}" class="a"/>`);
    lines.push(`<path d="M${plotX} ${y}H${plotX + plotW}" class="g"/>`);
    lines.push(`<text x="${plotX - 4}" y="${y + 4}" class="n" text-anchor="end">${esc(compact(top))}</text>`);
    lines.push(`<text x="${plotX - 4}" y="${y + plotH + 3}" class="n" text-anchor="end">0</text>`);
    const pts = p.points.filter(([, v]) => Number.isFinite(v));
    if (pts.length > 0) {
      const d = pts.map(([t, v], k) => `${k ? 'L' : 'M'}${xOf(t).toFixed(1)} ${yOf(v).toFixed(1)}`).join('');
      lines.push(`<path d="${d}" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="1.5"/>`);
    }
    if (p.fit && Number.isFinite(p.fit.slope)) {
      const a = p.fit.from;
      const v0 = p.fit.intercept + p.fit.slope * a;
      const v1 = p.fit.intercept + p.fit.slope * tMax;
      lines.push(`<path d="M${xOf(a).toFixed(1)} ${yOf(v0).toFixed(1)}L${xOf(tMax).toFixed(1)} ${yOf(v1).toFixed(1)}" class="w" stroke-dasharray="5 3"/>`);
    }
    y += plotH;
    lines.push(`<text x="${plotX}" y="${y + 12}" class="n" text-anchor="middle">0 s</text>`);
    lines.push(`<text x="${plotX + plotW}" y="${y + 12}" class="n" text-anchor="middle">${esc(`${compact(tMax)} s`)}</text>`);
    y += 14;
  });
  return svgDocument(W, y, lines, subtitle);
}
