#!/usr/bin/env node
// Draws the chart of a harness run again from its results file, e.g. after changing the chart's
// layout:  node bench/chart.js bench/results/echo-<timestamp>.json [out.svg]
// (default out: the same path with .svg). The figures come from the file alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { chartOfRecord } from './harness/svg.js';

const [input, output] = process.argv.slice(2);
if (!input) {
  process.stderr.write('usage: node bench/chart.js RESULTS.json [OUT.svg]\n');
  process.exit(2);
}
const out = output ?? input.replace(/\.json$/, '.svg');
writeFileSync(out, chartOfRecord(JSON.parse(readFileSync(input, 'utf8'))));
process.stderr.write(`chart: ${out}\n`);
