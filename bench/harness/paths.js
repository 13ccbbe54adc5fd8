// Where the harness finds things. One place, so an override is honoured everywhere.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const benchDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const repoRoot = path.dirname(benchDir);
// NETLOOP_BENCH_RESULTS_DIR: somewhere else for the JSON and SVG of each run (the smoke test
// writes to a temporary directory).
export const resultsDir = process.env.NETLOOP_BENCH_RESULTS_DIR
  ? path.resolve(process.env.NETLOOP_BENCH_RESULTS_DIR)
  : path.join(benchDir, 'results');

// The native programs (netloop-loadgen, netloop-echo-c). node-gyp puts them in build/Release;
// NETLOOP_BENCH_BIN_DIR points elsewhere (e.g. binaries compiled by hand while developing).
export const binDir = process.env.NETLOOP_BENCH_BIN_DIR
  ? path.resolve(process.env.NETLOOP_BENCH_BIN_DIR)
  : path.join(repoRoot, 'build', 'Release');

export const loadgenPath = path.join(binDir, 'netloop-loadgen');
export const echoCPath = path.join(binDir, 'netloop-echo-c');

// The netloop CLI. NETLOOP_BENCH_NETLOOP_CLI replaces it (any script taking the same arguments).
export const netloopCliPath = process.env.NETLOOP_BENCH_NETLOOP_CLI
  ? path.resolve(process.env.NETLOOP_BENCH_NETLOOP_CLI)
  : path.join(repoRoot, 'dist', 'cli.js');

export const buildHint =
  'build them with `npx node-gyp build` (build/Release), or by hand:\n' +
  '  g++ -O2 -std=c++17 -Wall -Wextra -pthread bench/native/loadgen.cc -o DIR/netloop-loadgen\n' +
  '  gcc -O2 -Wall -Wextra bench/native/echo_server.c -o DIR/netloop-echo-c\n' +
  'and set NETLOOP_BENCH_BIN_DIR=DIR';
