#!/usr/bin/env node
// The benchmark harness: npm run bench -- <scenario> [flags]. See bench/README.md.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { figuresOf, kindOf, summarizeCase } from './harness/kinds.js';
import { crossRunNotes, isScaled, runMatrix, serves } from './harness/matrix.js';
import { machineInfo } from './harness/machine.js';
import { buildHint, binDir, loadgenPath, prepareNativePrograms, repoRoot, resultsDir } from './harness/paths.js';
import { liveChildren, planPinning } from './harness/proc.js';
import { chartOfRecord } from './harness/svg.js';
import { casesOf, scenarios } from './scenarios/index.js';
import { servers } from './servers/index.js';

// Flags every scenario takes.
const commonOptions = {
  servers: { help: 'comma-separated servers to compare (default: the scenario\'s)' },
  runs: { default: 5, min: 1, integer: true, help: 'runs per server' },
  host: { help: 'address the servers listen on (default 127.0.0.1)' },
  'server-cpu': { default: '0', help: 'CPUs the server is pinned to (a taskset list: 0 or 0,2 or 0-1)' },
  'loadgen-cpu': { default: '1', help: 'CPUs the load generator is pinned to (a taskset list)' },
  'node-flags': { help: 'flags for every Node server alike, e.g. "--max-semi-space-size=1" (V8 young generation, MiB)' },
  chart: { help: 'also write the SVG chart to this file (e.g. bench/charts/echo.svg for the README)' },
};
const stringOptions = new Set(['servers', 'host', 'server-cpu', 'loadgen-cpu', 'node-flags', 'chart']);

function usage(scenario) {
  const flagLines = (opts) =>
    Object.entries(opts).map(([k, o]) => {
      const def = scenario?.commonDefaults?.[k] ?? o.default;
      const shown = def === undefined || def === '' ? '' : ` (default ${def})`;
      const choices = o.choices ? ` [${o.choices.join('|')}]` : '';
      return `  --${k.padEnd(20)} ${o.help}${choices}${shown}`;
    });
  const lines = [];
  if (!scenario) {
    lines.push('usage: npm run bench -- <scenario> [flags]     (or: npx netloop bench <scenario>, node bench/run.js <scenario>)', '', 'scenarios:');
    for (const s of Object.values(scenarios)) lines.push(`  ${s.name.padEnd(14)} ${s.summary}`);
  } else {
    lines.push(`usage: npm run bench -- ${scenario.name} [flags]`, '', scenario.summary, '', 'scenario flags:');
    lines.push(...flagLines(scenario.options));
  }
  lines.push('', 'common flags:', ...flagLines(commonOptions), `  --${'help'.padEnd(20)} this text`, '', 'servers:');
  for (const [name, s] of Object.entries(servers)) lines.push(`  ${name.padEnd(14)} ${s.describe} [${s.protocols.join(', ')}]`);
  lines.push(
    '',
    'environment:',
    '  NETLOOP_BENCH_BIN_DIR      directory of prebuilt netloop-loadgen and netloop-echo-c (default: built into bench/native/bin)',
    '  NETLOOP_BENCH_NETLOOP_CLI  script started as the netloop server instead of dist/cli/main.js',
    '',
    'List flags take comma-separated values (--size 64,1024): one case per combination.',
    'Prints a progress line per run on stderr, markdown tables on stdout, and writes every run to',
    'bench/results/<scenario>-<timestamp>.json with a chart beside it (.svg). Exits 1 if any run',
    'failed, 2 on bad usage.',
  );
  return lines.join('\n');
}

function fail(msg, scenario) {
  process.stderr.write(`bench: ${msg}\n\n${usage(scenario)}\n`);
  process.exit(2);
}

function toNumber(name, raw, spec, scenario) {
  const v = Number(raw);
  if (raw === '' || !Number.isFinite(v) || (spec.integer && !Number.isInteger(v)) || (spec.min !== undefined && v < spec.min)) {
    fail(`--${name} must be ${spec.integer ? 'an integer' : 'a number'}${spec.min !== undefined ? ` >= ${spec.min}` : ''}, got "${raw}"`, scenario);
  }
  return v;
}

function parse(argv) {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(`${usage()}\n`);
    process.exit(argv.length === 0 ? 2 : 0);
  }
  const scenario = scenarios[argv[0]];
  if (!scenario) fail(`unknown scenario "${argv[0]}"`);
  const specs = { ...commonOptions, ...scenario.options };
  const parseSpec = { help: { type: 'boolean', short: 'h' } };
  for (const [k, spec] of Object.entries(specs)) parseSpec[k] = { type: spec.type === 'boolean' ? 'boolean' : 'string' };
  let values;
  try {
    ({ values } = parseArgs({ args: argv.slice(1), options: parseSpec, strict: true, allowPositionals: false }));
  } catch (e) {
    fail(e.message, scenario);
  }
  if (values.help) {
    process.stdout.write(`${usage(scenario)}\n`);
    process.exit(0);
  }
  const opts = {};
  for (const [k, spec] of Object.entries(specs)) {
    if (stringOptions.has(k)) continue;
    const def = scenario.commonDefaults?.[k] ?? spec.default;
    if (spec.type === 'boolean') {
      opts[k] = values[k] ?? def ?? false; // a switch: --tls
      continue;
    }
    if (spec.type === 'list') {
      // Comma-separated: numbers (integers >= min) or, with choices, words.
      const items = String(values[k] ?? def).split(',').map((x) => x.trim()).filter(Boolean);
      if (items.length === 0) fail(`--${k} is empty`, scenario);
      if (new Set(items).size !== items.length) fail(`--${k} lists a value twice`, scenario);
      if (spec.choices) {
        for (const v of items) if (!spec.choices.includes(v)) fail(`--${k} values must be among ${spec.choices.join(', ')}; got "${v}"`, scenario);
        opts[k] = items;
      } else {
        opts[k] = items.map((v) => toNumber(k, v, { integer: true, min: spec.min }, scenario));
      }
      continue;
    }
    if (spec.type === 'string') {
      const v = values[k] ?? def;
      if (spec.choices && !spec.choices.includes(v)) fail(`--${k} must be one of ${spec.choices.join(', ')}; got "${v}"`, scenario);
      if (spec.pattern && !spec.pattern.test(v)) fail(`--${k}: unexpected value "${v}"`, scenario);
      opts[k] = v;
      continue;
    }
    opts[k] = values[k] === undefined ? def : toNumber(k, values[k], spec, scenario);
  }
  for (const k of ['server-cpu', 'loadgen-cpu']) {
    opts[k] = values[k] ?? specs[k].default;
    if (!/^\d+([-,]\d+)*$/.test(opts[k])) fail(`--${k} must be a CPU list like 0, 0,2 or 0-3; got "${opts[k]}"`, scenario);
  }
  if (values['node-flags'] !== undefined) opts['node-flags'] = values['node-flags'];
  if (values.chart !== undefined) opts.chart = values.chart;
  const host = values.host ?? '127.0.0.1';
  const defaults = typeof scenario.defaultServers === 'function' ? scenario.defaultServers(opts) : scenario.defaultServers;
  const serverNames = values.servers ? values.servers.split(',').map((s) => s.trim()).filter(Boolean) : defaults;
  if (serverNames.length === 0) fail('--servers is empty', scenario);
  if (new Set(serverNames).size !== serverNames.length) fail('--servers lists a server twice', scenario);
  let cases;
  try {
    cases = casesOf(scenario, opts); // a scenario may refuse options it cannot run (fanout: too few server processes for --conns)
  } catch (e) {
    fail(e.message, scenario);
  }
  for (const n of serverNames) {
    if (!servers[n]) fail(`unknown server "${n}" (have: ${Object.keys(servers).join(', ')})`, scenario);
    if (!cases.some((c) => serves(servers[n], c))) {
      const c = cases[0];
      if (c.manyServerProcesses) fail(`server "${n}" runs in one process, which cannot hold ${c.conns} connections here (20,000 open files per process): impossible on this machine; servers with worker processes can (netloop-workers, netloop-redis)`, scenario);
      if (isScaled(c)) fail(`server "${n}" cannot hold ${c.conns} connections: past one process's open files only a server with worker processes can (netloop)`, scenario);
      fail(`server "${n}" does not serve ${c.proto}${c.tls ? ' over TLS' : ''}${c.role && c.role !== 'echo' ? ` as a ${c.role} server` : ''}`, scenario);
    }
  }
  return { scenario, opts, host, serverNames, cases, serversGiven: Boolean(values.servers) };
}

function commandLine() {
  const args = process.argv.slice(2).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`));
  const viaNpm = process.env.npm_lifecycle_event === 'bench';
  const env = ['NETLOOP_BENCH_BIN_DIR', 'NETLOOP_BENCH_NETLOOP_CLI']
    .filter((k) => process.env[k])
    .map((k) => `${k}=${process.env[k]} `)
    .join('');
  return viaNpm ? `${env}npm run bench -- ${args.join(' ')}` : `${env}node bench/run.js ${args.join(' ')}`;
}

function onSignal(sig) {
  for (const child of liveChildren) child.kill('SIGKILL');
  process.stderr.write(`\nbench: interrupted by ${sig}\n`);
  process.exit(130);
}

// The markdown: a heading, then per case its table (and the scenario's overview first, if any),
// the legend of each kind, the machine, placement, options, command and notes.
function markdown({ scenario, title, cases, byCase, serverNames, machine, pinning, command, options, ok, problems, notes, skipped }) {
  const lines = [`## ${title}`, ''];
  if (scenario.overview) lines.push(scenario.overview(cases, byCase, serverNames), '');
  for (const c of cases) {
    const names = serverNames.filter((n) => byCase[c.id][n]);
    if (cases.length > 1) lines.push(`### ${c.label}`, '');
    lines.push(kindOf(c.kind).table(byCase[c.id], names, c), '');
  }
  for (const k of [...new Set(cases.map((c) => c.kind))]) lines.push(kindOf(k).legend, '');
  lines.push(
    `- machine: ${machine.nproc} CPUs, ${machine.cpu}, node ${machine.node}, ${machine.kernel}`,
    `- placement: ${pinning.note}`,
    `- options: ${Object.entries(options).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `- command: \`${command}\``,
  );
  if (skipped.length) lines.push('', 'Skipped (optional peers that cannot run here):', ...skipped.map((n) => `- ${n}`));
  if (notes.length) lines.push('', 'Notes (runs kept in the medians):', ...notes.map((n) => `- ${n}`));
  if (!ok) lines.push('', '**FAILED**:', ...problems.map((p) => `- ${p}`));
  return lines.join('\n');
}

// Writes a run's record (bench/results/<scenario>-<stamp>.json) and its chart beside it (and to
// --chart), names them on stderr, and exits: 0 if the run was clean, 1 if not.
function writeResults({ scenario, opts, startedAt, record, svg, log }) {
  const stamp = startedAt.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const file = path.join(resultsDir, `${scenario.name}-${stamp}.json`);
  const svgFile = path.join(resultsDir, `${scenario.name}-${stamp}.svg`);
  mkdirSync(resultsDir, { recursive: true });
  const charts = [path.relative(repoRoot, svgFile)];
  if (opts.chart) charts.push(path.relative(repoRoot, path.resolve(opts.chart)));
  writeFileSync(file, `${JSON.stringify({ ...record, charts }, null, 2)}\n`);
  writeFileSync(svgFile, svg);
  if (opts.chart) {
    mkdirSync(path.dirname(path.resolve(opts.chart)), { recursive: true });
    writeFileSync(path.resolve(opts.chart), svg);
  }
  log(`results: ${path.relative(process.cwd(), file)}; chart: ${charts.join(', ')}`);
  process.exit(record.ok ? 0 : 1);
}

// What every results record starts with: which scenario, how it was asked for, when and where.
function recordHead({ scenario, title, command, startedAt, machine }) {
  return {
    scenario: scenario.name,
    title,
    command,
    argv: process.argv.slice(2),
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    machine,
  };
}

// A scenario that drives its servers itself (soak: JS generators, samples over time) instead of
// the load generator's run matrix: its run() measures, its markdown() and chart() report.
async function runOwn({ scenario, opts, host }) {
  const machine = machineInfo();
  const command = commandLine();
  const startedAt = new Date();
  const log = (line) => process.stderr.write(`${line}\n`);
  const title = scenario.title(opts);
  const result = await scenario.run({ opts, host, log });
  const report = scenario.markdown(title, result, { machine, command });
  process.stdout.write(`${report}\n`);
  const options = Object.fromEntries(Object.keys(scenario.options).map((k) => [k, opts[k]]));
  const record = {
    ...recordHead({ scenario, title, command, startedAt, machine }),
    options: { ...options, host },
    ...result,
    report,
  };
  writeResults({ scenario, opts, startedAt, record, svg: scenario.chart(title, result, { machine, command, startedAt }), log });
}

async function main() {
  const { scenario, opts, host, serverNames: asked, cases, serversGiven } = parse(process.argv.slice(2));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (scenario.run) return runOwn({ scenario, opts, host });

  // Without the load generator nothing can run. A server that cannot start is reported as failed
  // with the reason (in every run, in the table), and the others are still measured.
  try {
    prepareNativePrograms((line) => process.stderr.write(`${line}\n`));
  } catch (err) {
    process.stderr.write(`bench: cannot start: ${err.message}\n\nThe native programs: ${buildHint}\n`);
    process.exit(2);
  }
  if (!existsSync(loadgenPath)) {
    process.stderr.write(`bench: cannot start: load generator ${loadgenPath} not found (NETLOOP_BENCH_BIN_DIR=${binDir})\n\n` +
      `The native programs: ${buildHint}\n`);
    process.exit(2);
  }

  const pinning = planPinning(opts['server-cpu'], opts['loadgen-cpu']);
  const machine = machineInfo();
  const command = commandLine();
  const startedAt = new Date();
  const log = (line) => process.stderr.write(`${line}\n`);
  // An optional peer (uWS.js: installed on demand, a binary per Node ABI) that cannot run here is
  // left out of a default run with a note, not reported as failed; named in --servers, it fails.
  const skipped = [];
  const serverNames = asked.filter((n) => {
    const why = !serversGiven && servers[n].optional ? servers[n].missing() : null;
    if (why) skipped.push(`${n}: ${why}`);
    return !why;
  });
  for (const line of skipped) log(`bench: skipped ${line}`);
  for (const n of serverNames) {
    const why = servers[n].missing();
    if (why) log(`bench: server ${n} is not available (${why}): its runs will be reported as failed`);
  }
  const total = cases.reduce((a, c) => a + serverNames.filter((n) => serves(servers[n], c)).length, 0) * opts.runs;
  log(`bench ${scenario.name}: ${cases.length} case(s) x servers ${serverNames.join(', ')}; ${opts.runs} run(s); ${total} server runs; ${pinning.note}`);

  const runs = await runMatrix({ cases, serverNames, opts, host, pinning, log });
  for (const c of cases) if (c.kind === 'echo') crossRunNotes(runs, serverNames, c.id);

  const problems = runs.flatMap((r) => r.problems.map((p) => `run ${r.run} ${cases.length > 1 ? `${r.case} ` : ''}${r.server}: ${p}`));
  const ok = problems.length === 0;
  const notes = runs.flatMap((r) => (r.notes ?? []).map((x) => `run ${r.run} ${cases.length > 1 ? `${r.case} ` : ''}${r.server}: ${x}`));
  const byCase = Object.fromEntries(cases.map((c) => [c.id, summarizeCase(c, runs, serverNames)]));
  const scenarioOptions = Object.fromEntries(Object.keys(scenario.options).map((k) => [k, Array.isArray(opts[k]) ? opts[k].join(',') : opts[k]]));
  const shownOptions = { ...scenarioOptions, runs: opts.runs, servers: serverNames.join(','), ...(opts['node-flags'] ? { 'node-flags': opts['node-flags'] } : {}) };
  const title = scenario.title(opts);
  const report = markdown({ scenario, title, cases, byCase, serverNames, machine, pinning, command, options: shownOptions, ok, problems, notes, skipped });
  process.stdout.write(`${report}\n`);

  const record = {
    ...recordHead({ scenario, title, command, startedAt, machine }),
    pinning,
    options: { ...scenarioOptions, runs: opts.runs, host, 'server-cpu': opts['server-cpu'], 'loadgen-cpu': opts['loadgen-cpu'], ...(opts['node-flags'] ? { 'node-flags': opts['node-flags'] } : {}) },
    servers: serverNames,
    skipped,
    binaries: { dir: binDir },
    // One entry per case: what ran and, per server that serves it, the summary over the runs
    // (figures: the charted numbers as median/min/max over clean runs).
    cases: cases.map((c) => ({
      id: c.id,
      label: c.label,
      kind: c.kind,
      proto: c.proto,
      role: c.role ?? 'echo',
      conns: c.conns,
      loadgen_args: c.loadgenArgs,
      servers: serverNames.filter((n) => byCase[c.id][n]),
      figures: figuresOf(c).map(({ key, label, unit, better }) => ({ key, label, unit, better })),
      summary: byCase[c.id],
    })),
    // A one-case scenario's summary, where tcp-echo/ws-echo/ws-hold always had it.
    ...(cases.length === 1 ? { summary: byCase[cases[0].id] } : {}),
    runs,
    ok,
    problems,
    notes,
    report,
  };
  // The chart is drawn from the record alone, so bench/chart.js can draw it again from the file.
  writeResults({ scenario, opts, startedAt, record, svg: chartOfRecord(record), log });
}

main().catch((e) => {
  for (const child of liveChildren) child.kill('SIGKILL');
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  process.exit(1);
});
