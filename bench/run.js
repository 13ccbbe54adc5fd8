#!/usr/bin/env node
// The benchmark harness: npm run bench -- <scenario> [flags]. See bench/README.md.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { crossRunNotes, runMatrix } from './harness/matrix.js';
import { machineInfo } from './harness/machine.js';
import { buildHint, binDir, loadgenPath, resultsDir } from './harness/paths.js';
import { liveChildren, planPinning } from './harness/proc.js';
import { markdownReport, summarize } from './harness/report.js';
import { scenarios } from './scenarios/index.js';
import { servers } from './servers/index.js';

// Flags every scenario takes.
const commonOptions = {
  servers: { help: 'comma-separated servers to compare (default: the scenario\'s)' },
  runs: { default: 5, min: 1, integer: true, help: 'runs per server' },
  host: { help: 'address the servers listen on (default 127.0.0.1)' },
  'server-cpu': { default: '0', help: 'CPUs the server is pinned to (a taskset list: 0 or 0,2 or 0-1)' },
  'loadgen-cpu': { default: '1', help: 'CPUs the load generator is pinned to (a taskset list)' },
  'node-flags': { help: 'flags for every Node server alike, e.g. "--max-semi-space-size=1" (V8 young generation, MiB)' },
};
const stringOptions = new Set(['servers', 'host', 'server-cpu', 'loadgen-cpu', 'node-flags']);

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
    lines.push('usage: npm run bench -- <scenario> [flags]     (or: node bench/run.js <scenario> [flags])', '', 'scenarios:');
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
    '  NETLOOP_BENCH_BIN_DIR      directory of netloop-loadgen and netloop-echo-c (default build/Release)',
    '  NETLOOP_BENCH_NETLOOP_CLI  script started as the netloop server instead of dist/cli.js',
    '',
    'Prints a progress line per run on stderr, a markdown table on stdout, and writes every run to',
    'bench/results/<scenario>-<timestamp>.json. Exits 1 if any run failed, 2 on bad usage.',
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
  for (const k of Object.keys(specs)) parseSpec[k] = { type: 'string' };
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
  const host = values.host ?? '127.0.0.1';
  const serverNames = values.servers ? values.servers.split(',').map((s) => s.trim()).filter(Boolean) : scenario.defaultServers;
  if (serverNames.length === 0) fail('--servers is empty', scenario);
  if (new Set(serverNames).size !== serverNames.length) fail('--servers lists a server twice', scenario);
  for (const n of serverNames) {
    if (!servers[n]) fail(`unknown server "${n}" (have: ${Object.keys(servers).join(', ')})`, scenario);
    if (!servers[n].protocols.includes(scenario.proto)) fail(`server "${n}" does not serve ${scenario.proto}`, scenario);
  }
  return { scenario, opts, host, serverNames };
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

async function main() {
  const { scenario, opts, host, serverNames } = parse(process.argv.slice(2));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // Without the load generator nothing can run. A server that cannot start is reported as failed
  // with the reason (in every run, in the table), and the others are still measured.
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
  for (const n of serverNames) {
    const why = servers[n].missing();
    if (why) log(`bench: server ${n} is not available (${why}): its runs will be reported as failed`);
  }
  const phases = scenario.kind === 'hold'
    ? `connect + ${opts.settle} s settle + ${opts.duration} s hold`
    : `${opts.warmup}+${opts.duration} s`;
  log(`bench ${scenario.name}: servers ${serverNames.join(', ')}; ${opts.runs} run(s) of ${phases}; ${pinning.note}`);

  const runs = await runMatrix({ scenario, serverNames, opts, host, pinning, log });
  if (scenario.kind === 'echo') crossRunNotes(runs, serverNames);

  const problems = runs.flatMap((r) => r.problems.map((p) => `run ${r.run} ${r.server}: ${p}`));
  const ok = problems.length === 0;
  const notes = runs.flatMap((r) => (r.notes ?? []).map((x) => `run ${r.run} ${r.server}: ${x}`));
  const summary = summarize(runs, serverNames, scenario.kind);
  const scenarioOptions = Object.fromEntries(Object.keys(scenario.options).map((k) => [k, opts[k]]));
  const shownOptions = { ...scenarioOptions, runs: opts.runs, servers: serverNames.join(','), ...(opts['node-flags'] ? { 'node-flags': opts['node-flags'] } : {}) };
  const report = markdownReport({
    scenario,
    title: scenario.title(opts),
    summary,
    serverNames,
    machine,
    pinning,
    command,
    options: shownOptions,
    ok,
    problems,
    notes,
  });
  process.stdout.write(`${report}\n`);

  const stamp = startedAt.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const file = path.join(resultsDir, `${scenario.name}-${stamp}.json`);
  mkdirSync(resultsDir, { recursive: true });
  const record = {
    scenario: scenario.name,
    command,
    argv: process.argv.slice(2),
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    machine,
    pinning,
    options: { ...scenarioOptions, runs: opts.runs, host, 'server-cpu': opts['server-cpu'], 'loadgen-cpu': opts['loadgen-cpu'], ...(opts['node-flags'] ? { 'node-flags': opts['node-flags'] } : {}) },
    servers: serverNames,
    binaries: { dir: binDir },
    summary,
    runs,
    ok,
    problems,
    notes,
    report,
  };
  writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
  log(`results: ${path.relative(process.cwd(), file)}`);
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  for (const child of liveChildren) child.kill('SIGKILL');
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  process.exit(1);
});
