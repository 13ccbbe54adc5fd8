#!/usr/bin/env node
// Draws the chart of a harness run again from its results file, e.g. after changing the chart's
// layout:  node bench/chart.js bench/results/echo-<timestamp>.json [out.svg]
// (default out: the same path with .svg). The figures come from the file alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { chartOfRecord } from './harness/svg.js';
import { scenarios } from './scenarios/index.js';

const [input, output] = process.argv.slice(2);
if (!input) {
  process.stderr.write('usage: node bench/chart.js RESULTS.json [OUT.svg]\n');
  process.exit(2);
}
const out = output ?? input.replace(/\.json$/, '.svg');
const rec = JSON.parse(readFileSync(input, 'utf8'));
// A scenario that reports its own way (soak) draws its own chart from its record.
const own = scenarios[rec.scenario]?.chart;
writeFileSync(out, own ? own(rec.title, rec, { machine: rec.machine, command: rec.command, startedAt: new Date(rec.started_at) }) : chartOfRecord(rec));
process.stderr.write(`chart: ${out}\n`);
