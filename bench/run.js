#!/usr/bin/env node
// The benchmark harness: npm run bench -- <scenario> [flags]. See bench/README.md.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runMatrix, runProblems } from './harness/matrix.js';
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
};
const stringOptions = new Set(['servers', 'host', 'server-cpu', 'loadgen-cpu']);

function usage(scenario) {
  const flagLines = (opts) =>
    Object.entries(opts).map(([k, o]) => `  --${k.padEnd(12)} ${o.help}${o.default !== undefined ? ` (default ${o.default})` : ''}`);
  const lines = [];
  if (!scenario) {
    lines.push('usage: npm run bench -- <scenario> [flags]     (or: node bench/run.js <scenario> [flags])', '', 'scenarios:');
    for (const s of Object.values(scenarios)) lines.push(`  ${s.name.padEnd(14)} ${s.summary}`);
  } else {
    lines.push(`usage: npm run bench -- ${scenario.name} [flags]`, '', scenario.summary, '', 'scenario flags:');
    lines.push(...flagLines(scenario.options));
  }
  lines.push('', 'common flags:', ...flagLines(commonOptions), '  --help         this text', '', 'servers:');
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
    opts[k] = values[k] === undefined ? spec.default : toNumber(k, values[k], spec, scenario);
  }
  for (const k of ['server-cpu', 'loadgen-cpu']) {
    opts[k] = values[k] ?? specs[k].default;
    if (!/^\d+([-,]\d+)*$/.test(opts[k])) fail(`--${k} must be a CPU list like 0, 0,2 or 0-3; got "${opts[k]}"`, scenario);
  }
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

  const missing = [];
  if (!existsSync(loadgenPath)) missing.push(`load generator ${loadgenPath} not found (NETLOOP_BENCH_BIN_DIR=${binDir})`);
  for (const n of serverNames) {
    const why = servers[n].missing();
    if (why) missing.push(`server ${n}: ${why}`);
  }
  if (missing.length) {
    process.stderr.write(`bench: cannot start:\n${missing.map((m) => `  - ${m}`).join('\n')}\n` +
      (missing.some((m) => m.includes('netloop-')) ? `\nThe native programs: ${buildHint}\n` : ''));
    process.exit(2);
  }

  const pinning = planPinning(opts['server-cpu'], opts['loadgen-cpu']);
  const machine = machineInfo();
  const command = commandLine();
  const startedAt = new Date();
  const log = (line) => process.stderr.write(`${line}\n`);
  log(`bench ${scenario.name}: servers ${serverNames.join(', ')}; ${opts.runs} run(s) of ${opts.warmup}+${opts.duration} s; ${pinning.note}`);

  const runs = await runMatrix({
    proto: scenario.proto,
    serverNames,
    opts,
    host,
    pinning,
    loadgenArgs: scenario.loadgenArgs(opts),
    log,
  });

  const problems = runs.flatMap((r) => runProblems(r, opts.conns).map((p) => `run ${r.run} ${r.server}: ${p}`));
  const ok = problems.length === 0;
  const notes = runs.filter((r) => r.note).map((r) => `run ${r.run} ${r.server}: ${r.note}`);
  const summary = summarize(runs, serverNames);
  const scenarioOptions = Object.fromEntries(Object.keys(scenario.options).map((k) => [k, opts[k]]));
  const shownOptions = { ...scenarioOptions, runs: opts.runs, servers: serverNames.join(',') };
  const report = markdownReport({
    title: `${scenario.name}: ${opts.conns} conns, ${opts.inflight} in flight, ${opts.size} B`,
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
    options: { ...scenarioOptions, runs: opts.runs, host, 'server-cpu': opts['server-cpu'], 'loadgen-cpu': opts['loadgen-cpu'] },
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
